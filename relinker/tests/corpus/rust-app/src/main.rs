//! Corpus program: threads, a channel, a mutex, a child process spawned with
//! `std::process::Command`, a panic caught with `catch_unwind` (and one in a thread), file I/O.
//! Output is deterministic; `rust-app child N` prints a line and exits with N.

use std::io::{Read, Seek, SeekFrom, Write};
use std::panic;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() > 2 && args[1] == "child" {
        let code: i32 = args[2].parse().unwrap_or(1);
        println!("child {code} here");
        eprintln!("child {code} on stderr");
        std::process::exit(code);
    }
    threads();
    children(&args[0]);
    unwinding();
    file_io();
    std::process::exit(if args.len() > 1 {
        args[1].parse().unwrap_or(2)
    } else {
        0
    });
}

/// Threads, a channel and a mutex.
fn threads() {
    let total = Arc::new(Mutex::new(0u64));
    let (tx, rx) = mpsc::channel();
    let handles: Vec<_> = (0..4u64)
        .map(|i| {
            let total = Arc::clone(&total);
            let tx = tx.clone();
            thread::spawn(move || {
                let sum: u64 = (1..=10_000 * (i + 1)).sum();
                *total.lock().unwrap() += sum;
                tx.send((i, sum)).unwrap();
                i * 10
            })
        })
        .collect();
    drop(tx);
    let joined: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut got: Vec<(u64, u64)> = rx.iter().collect();
    got.sort();
    println!(
        "threads returned {joined:?}, sent {got:?}, total {}",
        *total.lock().unwrap()
    );
}

/// Child processes: this program again (output piped, then inherited) and a missing program.
fn children(me: &str) {
    let out = Command::new(me)
        .args(["child", "7"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("spawn the child");
    println!(
        "child status {:?}, stdout {:?}, stderr {:?}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let status = Command::new(me)
        .args(["child", "0"])
        .status()
        .expect("spawn");
    println!("inherited-stdout child: {:?}", status.code());
    match Command::new("/nonexistent/program").status() {
        Ok(s) => println!("missing program ran: {s:?}"),
        Err(e) => println!("missing program: {:?}", e.kind()),
    }
}

/// Unwinding: a panic caught in this thread and one that ends another thread.
fn unwinding() {
    panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        eprintln!("panic hook: {msg}");
    }));
    let caught = panic::catch_unwind(|| {
        let v: Vec<u32> = Vec::new();
        let guard = Noisy("dropped while unwinding");
        let _ = &guard;
        if v.is_empty() {
            panic!("deliberate panic {}", 42);
        }
        v[0]
    });
    println!(
        "catch_unwind: {}",
        if caught.is_err() {
            "caught"
        } else {
            "no panic"
        }
    );
    let r = thread::spawn(|| -> u32 { panic!("thread panic") }).join();
    println!(
        "panicking thread joined: {}",
        if r.is_err() { "Err" } else { "Ok" }
    );
}

/// File I/O in a directory of its own.
fn file_io() {
    let dir = std::env::temp_dir().join(format!("corpus-rust-app-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join("data.txt");
    {
        let mut f = std::fs::File::create(&path).expect("create");
        for i in 0..100 {
            writeln!(f, "line {i}").unwrap();
        }
        f.sync_all().unwrap();
    }
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    f.seek(SeekFrom::Start(5)).unwrap();
    f.write_all(b"X").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::rename(&path, dir.join("renamed.txt")).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    std::fs::remove_dir_all(&dir).unwrap();
    println!(
        "file: {} bytes, {} lines, first {:?}, last {:?}, dir {:?}",
        len,
        s.lines().count(),
        s.lines().next().unwrap_or(""),
        s.lines().last().unwrap_or(""),
        names
    );
}

struct Noisy(&'static str);

impl Drop for Noisy {
    fn drop(&mut self) {
        println!("drop: {}", self.0);
    }
}

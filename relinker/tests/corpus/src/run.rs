//! Running programs: with stdin from /dev/null, output captured and a time limit.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::work_dir;

/// How long one corpus program may run (each does well under a second).
pub const RUN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: bool,
    pub elapsed: Duration,
}

impl Output {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    /// "exit 3", "signal 9", "timed out".
    pub fn how(&self) -> String {
        if self.timed_out {
            "timed out".to_string()
        } else {
            status_text(self.status)
        }
    }
    /// Exit status and both streams, for comparisons.
    pub fn observable(&self) -> (String, Vec<u8>, Vec<u8>) {
        (self.how(), self.stdout.clone(), self.stderr.clone())
    }
    /// Everything, for a failure message.
    pub fn describe(&self) -> String {
        format!(
            "{} after {:.2}s\n--- stdout ---\n{}--- stderr ---\n{}",
            self.how(),
            self.elapsed.as_secs_f64(),
            clip(&self.stdout()),
            clip(&self.stderr())
        )
    }
}

pub fn status_text(s: ExitStatus) -> String {
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => format!("{s:?}"),
    }
}

fn clip(s: &str) -> String {
    const MAX: usize = 4000;
    let mut s = if s.len() > MAX {
        let mut cut = MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}... ({} bytes)", &s[..cut], s.len())
    } else {
        s.to_string()
    };
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

fn drain(mut r: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

/// Runs `cmd` with stdin from /dev/null and stdout and stderr captured; kills it after
/// `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let start = Instant::now();
    let mut child: Child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > timeout {
            timed_out = true;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        thread::sleep(Duration::from_millis(2));
    };
    // A grandchild that kept the pipes open would block these forever: give up on them then.
    let stdout = join_for(out, Duration::from_secs(5));
    let stderr = join_for(err, Duration::from_secs(5));
    Output {
        status,
        stdout,
        stderr,
        timed_out,
        elapsed: start.elapsed(),
    }
}

fn join_for(h: thread::JoinHandle<Vec<u8>>, limit: Duration) -> Vec<u8> {
    let start = Instant::now();
    while !h.is_finished() {
        if start.elapsed() > limit {
            return b"<output still open: a leftover process holds the pipe>".to_vec();
        }
        thread::sleep(Duration::from_millis(2));
    }
    h.join().unwrap()
}

/// Runs a build step, panicking with its output when it fails.
pub fn must(cmd: &mut Command) -> Output {
    let out = run_with_timeout(cmd, Duration::from_secs(300));
    assert!(
        out.status.success() && !out.timed_out,
        "{cmd:?} failed: {}",
        out.describe()
    );
    out
}

/// The controlled environment every corpus program runs in.
pub fn program_env(cmd: &mut Command) -> &mut Command {
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LANG", "C")
        .env("CORPUS_VAR", "corpus value")
        .env("TMPDIR", work_dir().join("tmp"))
}

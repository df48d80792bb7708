//! Faults while writing: lupine-relink writing to a full filesystem, or killed with SIGKILL at
//! any point, leaves the previous output whole and no temporary file (the new one has no name
//! until it is complete; see src/output.rs).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use test_support::Tmpfs;

const BIN: &str = env!("CARGO_BIN_EXE_lupine-relink");
/// Debian's busybox-static: 2 MB, thousands of system call sites.
const INPUT: &str = "/bin/busybox";
const OLD: &[u8] = b"the previous output";

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "lupine-relink-faults.{}.{name}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn relink(out: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.arg(INPUT).arg("-o").arg(out);
    c
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

#[test]
fn killed_at_any_point_the_previous_output_stays_whole_and_nothing_is_left() {
    let d = scratch("kill");
    let out = d.join("busybox");
    let start = Instant::now();
    assert!(relink(&out).status().unwrap().success());
    let full = start.elapsed();
    let new = fs::read(&out).unwrap();
    for i in 0..12u32 {
        fs::write(&out, OLD).unwrap();
        let mut child = relink(&out).spawn().unwrap();
        std::thread::sleep(full * i / 10);
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        let now = fs::read(&out).unwrap();
        assert!(
            now == OLD || now == new,
            "killed after {:?}: {} bytes, neither the old output nor the new one",
            full * i / 10,
            now.len()
        );
        assert_eq!(names(&d), ["busybox"], "killed after {:?}", full * i / 10);
    }
    fs::remove_dir_all(&d).unwrap();
}

#[test]
#[ignore = "needs root"]
fn a_full_filesystem_fails_cleanly() {
    let d = scratch("full");
    let tmpfs = Tmpfs::mount(&d, "1m");
    let out = d.join("busybox");
    fs::write(&out, OLD).unwrap();
    let o = relink(&out).output().unwrap();
    let (kept, left) = (fs::read(&out).unwrap(), names(&d));
    drop(tmpfs);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(
        stderr.contains(out.to_str().unwrap()),
        "names the output: {stderr}"
    );
    assert_eq!(kept, OLD);
    assert_eq!(left, ["busybox"]);
    fs::remove_dir_all(&d).unwrap();
}

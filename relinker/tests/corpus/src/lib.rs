//! `relink_corpus`: the test corpus of static x86-64 programs (the C programs, `regs.S`,
//! `rust-app/` and Debian's busybox next to this crate), built with musl-gcc, gcc and cargo,
//! and run with a time limit in a controlled environment. Shared by lupine-relink's integration
//! tests and the guest test that runs the relinked corpus under real KML; relinking is theirs.
//!
//! Everything is built under `target/relink-corpus/<test binary>.<pid>/`, once per test process.

mod dynamic;
mod programs;
mod run;

pub use dynamic::*;
pub use programs::*;
pub use run::*;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where the corpus sources are (this crate's directory).
pub fn corpus_src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Cargo's target directory: `CARGO_TARGET_DIR` if set, else `<workspace>/target` (the
/// convention of guest-tests).
fn target_dir() -> PathBuf {
    // This crate is `<workspace>/relinker/tests/corpus`.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(3)
        .expect("crate inside the workspace");
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    }
}

/// `target/relink-corpus`.
pub fn corpus_root() -> PathBuf {
    target_dir().join("relink-corpus")
}

/// `target/relink-corpus/<this test binary>/`, emptied on first use by this process.
pub fn work_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let stem = exe.file_stem().unwrap().to_string_lossy().into_owned();
        let test = stem.split('-').next().unwrap_or("test").to_string();
        // One directory per process, so that two runs at once (two checkouts' cargo test, or
        // a developer's and an editor's) never pull files from under each other; directories
        // of processes that are gone are removed.
        let root = corpus_root();
        fs::create_dir_all(&root).unwrap();
        for e in fs::read_dir(&root).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix(&format!("{test}.")) {
                if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = root.join(format!("{test}.{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    })
}

/// A fresh empty directory under the work directory.
pub fn scratch(name: &str) -> PathBuf {
    let d = work_dir().join("scratch").join(name);
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

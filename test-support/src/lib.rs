//! Helpers shared by the tests of several workspace crates. A crate of its own, depending on
//! none of them, so that lupine-init's and lupine-image's tests can use it as well as
//! guest-tests (which depends on lupine-image) without a dependency cycle.

pub mod fuzz;

use std::env;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The musl target lupine-init is built for: static, so it runs as PID 1 of any root.
const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

/// A test helper's failure, with the output that explains it (cargo's, when building
/// lupine-init failed; a console or a command's, in guest-tests).
#[derive(Clone)]
pub struct Error(pub String);

// Debug prints the text as is, so an `unwrap()` shows cargo's output readably.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error(e.to_string())
    }
}

/// The static lupine-init: `LUPINE_INIT` if set (it must be a file; `scripts/test.sh` sets
/// it), else built with cargo for the musl target, once per process.
pub fn lupine_init() -> Result<PathBuf, Error> {
    static INIT: OnceLock<Result<PathBuf, Error>> = OnceLock::new();
    INIT.get_or_init(|| match env::var_os("LUPINE_INIT") {
        Some(path) => existing(PathBuf::from(path), "LUPINE_INIT"),
        None => build_lupine_init(),
    })
    .clone()
}

/// `cargo build --release -p lupine-init --target MUSL_TARGET` in the workspace.
fn build_lupine_init() -> Result<PathBuf, Error> {
    // `cargo test` sets CARGO to the cargo that runs us; cargo's own lock serialises
    // concurrent builds.
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root()).args([
        "build",
        "--release",
        "-p",
        "lupine-init",
        "--target",
        MUSL_TARGET,
    ]);
    let out = cmd
        .output()
        .map_err(|e| Error(format!("cannot run {cmd:?}: {e}")))?;
    if !out.status.success() {
        return Err(Error(format!(
            "{cmd:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    existing(
        target_dir().join(MUSL_TARGET).join("release/lupine-init"),
        "cargo build output",
    )
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate inside the workspace")
}

/// Cargo's target directory: `CARGO_TARGET_DIR` if set, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

fn existing(path: PathBuf, what: &str) -> Result<PathBuf, Error> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error(format!("{what}: {} is not a file", path.display())))
    }
}

/// A small tmpfs mounted on a directory for a test that fills a filesystem (needs root);
/// unmounted when dropped.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=`, e.g. `1m`) on `dir`.
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(mounted.success(), "mount a small tmpfs (needs root)");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

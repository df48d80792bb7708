//! Per-test scratch directories (no tempfile dependency needed for this much).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::{target_dir, Result};

/// A fresh directory under `target/guest-tests/tmp`, removed on drop unless the test is
/// panicking: then it is kept (and named on stderr) so its images and logs can be inspected.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Result<TempDir> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = target_dir()
            .join("guest-tests/tmp")
            .join(format!("{name}-{}-{n}", std::process::id()));
        // A leftover from an earlier process with the same pid would otherwise leak in.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("keeping {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

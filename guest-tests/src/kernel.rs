//! The two build products every guest needs, located or built once per test process.

use std::env;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::{run, target_dir, workspace_root, Error, Result};

/// The guest kernel's bzImage: `LUPINE_KERNEL` if set, else `kernel-patches/build.sh
/// guest-test target/guest-tests/kernel` (cached by build.sh; minutes when cold).
pub fn kernel() -> Result<PathBuf> {
    static KERNEL: OnceLock<Result<PathBuf>> = OnceLock::new();
    KERNEL
        .get_or_init(|| {
            if let Some(path) = env::var_os("LUPINE_KERNEL") {
                return existing(PathBuf::from(path), "LUPINE_KERNEL");
            }
            // build.sh serialises builds and installs its outputs by rename.
            let dir = target_dir().join("guest-tests/kernel");
            run(
                Command::new(workspace_root().join("kernel-patches/build.sh"))
                    .arg("guest-test")
                    .arg(&dir),
            )?;
            let bzimage = dir.join("bzImage");
            existing(bzimage, "build.sh output")
        })
        .clone()
}

/// The static lupine-init: `LUPINE_INIT` if set, else built with cargo for the musl target.
pub fn lupine_init() -> Result<PathBuf> {
    static INIT: OnceLock<Result<PathBuf>> = OnceLock::new();
    INIT.get_or_init(|| {
        if let Some(path) = env::var_os("LUPINE_INIT") {
            return existing(PathBuf::from(path), "LUPINE_INIT");
        }
        const TARGET: &str = "x86_64-unknown-linux-musl";
        // `cargo test` sets CARGO to the cargo that runs us; cargo's own lock serialises
        // concurrent builds.
        let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        run(Command::new(cargo).current_dir(workspace_root()).args([
            "build",
            "--release",
            "-p",
            "lupine-init",
            "--target",
            TARGET,
        ]))?;
        existing(
            target_dir().join(TARGET).join("release/lupine-init"),
            "cargo build output",
        )
    })
    .clone()
}

fn existing(path: PathBuf, what: &str) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error(format!("{what}: {} is not a file", path.display())))
    }
}

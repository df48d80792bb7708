//! The build products guests need (kernels, lupine-init, applications), located or built once
//! per test process.

use std::collections::BTreeMap;
use std::env;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::{run, target_dir, workspace_root, Error, Result};

/// `lupine-base` plus every application fragment: the kernel most guest tests boot.
pub const GENERAL: &str = "lupine-general";
/// The smallest Lupine kernel: serial console, virtio-mmio, ext4, initramfs, IPv4.
pub const BASE: &str = "lupine-base";
/// Firecracker's guest configuration, unchanged: the baseline.
pub const MICROVM: &str = "microvm";

/// The bzImage of a kernel profile (see `kernel-patches/build.sh`): with `LUPINE_KERNEL_DIR`
/// set, `$LUPINE_KERNEL_DIR/PROFILE/bzImage`, which must exist (`scripts/test.sh` builds the
/// profiles there); else `kernel-patches/build.sh PROFILE target/guest-tests/kernel/PROFILE`,
/// once per profile per process (cached by build.sh; minutes when cold).
pub fn kernel(profile: &str) -> Result<PathBuf> {
    static KERNELS: Mutex<BTreeMap<String, Result<PathBuf>>> = Mutex::new(BTreeMap::new());
    // Held while building: one profile builds at a time, and only once.
    let mut kernels = KERNELS.lock().unwrap_or_else(|e| e.into_inner());
    kernels
        .entry(profile.to_string())
        .or_insert_with(|| {
            if let Some(dir) = env::var_os("LUPINE_KERNEL_DIR") {
                let path = PathBuf::from(dir).join(profile).join("bzImage");
                return existing(path, "LUPINE_KERNEL_DIR");
            }
            // build.sh serialises builds of a profile and installs its outputs by rename.
            let dir = target_dir().join("guest-tests/kernel").join(profile);
            run(
                Command::new(workspace_root().join("kernel-patches/build.sh"))
                    .arg(profile)
                    .arg(&dir),
            )?;
            existing(dir.join("bzImage"), "build.sh output")
        })
        .clone()
}

/// The build of an application of `apps/` (see `apps/build.sh`): a directory holding `rootfs/`,
/// `lupine.json` and `build-info.json`. With `LUPINE_APPS_DIR` set, `$LUPINE_APPS_DIR/APP`,
/// which must exist (`scripts/test.sh` builds the apps there); else `apps/build.sh APP
/// target/guest-tests/apps`, once per app per process (cached by apps/build.sh).
pub fn app(name: &str) -> Result<PathBuf> {
    static APPS: Mutex<BTreeMap<String, Result<PathBuf>>> = Mutex::new(BTreeMap::new());
    let mut apps = APPS.lock().unwrap_or_else(|e| e.into_inner());
    apps.entry(name.to_string())
        .or_insert_with(|| {
            let dir = match env::var_os("LUPINE_APPS_DIR") {
                Some(dir) => PathBuf::from(dir).join(name),
                None => {
                    let dir = target_dir().join("guest-tests/apps");
                    run(Command::new(workspace_root().join("apps/build.sh"))
                        .arg(name)
                        .arg(&dir))?;
                    dir.join(name)
                }
            };
            existing(dir.join("lupine.json"), "app build")?;
            Ok(dir)
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

//! The build products guests need (kernels, applications), located or built once per test
//! process; lupine-init comes from `test_support`.

use std::collections::BTreeMap;
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

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
/// target/guest-tests/apps` (`apps/debian.sh` for APP-deb), once per app per process (cached
/// by the scripts).
pub fn app(name: &str) -> Result<PathBuf> {
    static APPS: Mutex<BTreeMap<String, Result<PathBuf>>> = Mutex::new(BTreeMap::new());
    let mut apps = APPS.lock().unwrap_or_else(|e| e.into_inner());
    apps.entry(name.to_string())
        .or_insert_with(|| {
            let dir = match env::var_os("LUPINE_APPS_DIR") {
                Some(dir) => PathBuf::from(dir).join(name),
                None => {
                    let dir = target_dir().join("guest-tests/apps");
                    // NAME-deb: Debian's package of NAME (apps/debian.sh).
                    let (script, arg) = match name.strip_suffix("-deb") {
                        Some(stem) => ("apps/debian.sh", stem),
                        None => ("apps/build.sh", name),
                    };
                    run(Command::new(workspace_root().join(script))
                        .arg(arg)
                        .arg(&dir))?;
                    dir.join(name)
                }
            };
            existing(dir.join("lupine.json"), "app build")?;
            Ok(dir)
        })
        .clone()
}

/// The profile `lupine-derived`: `lupine-base` plus `fragment`, built by a copy of
/// `kernel-patches/build.sh` (with lupine-base's fragment and ignore list) in `dir`, cached by
/// build.sh like any other profile. Returns its bzImage.
pub fn derived_kernel(dir: &Path, fragment: &str) -> Result<PathBuf> {
    let kp = workspace_root().join("kernel-patches");
    let copy = dir.join("kernel-patches");
    std::fs::create_dir_all(copy.join("configs/apps"))?;
    std::fs::copy(kp.join("build.sh"), copy.join("build.sh"))?;
    for f in ["lupine-base.config", "lupine-base.ignore"] {
        if kp.join("configs").join(f).exists() {
            std::fs::copy(kp.join("configs").join(f), copy.join("configs").join(f))?;
        }
    }
    std::fs::write(copy.join("configs/apps/derived.config"), fragment)?;
    let out = dir.join("kernel-derived");
    run(Command::new(copy.join("build.sh"))
        .arg("lupine-derived")
        .arg(&out))?;
    existing(out.join("bzImage"), "build.sh lupine-derived output")
}

fn existing(path: PathBuf, what: &str) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error(format!("{what}: {} is not a file", path.display())))
    }
}

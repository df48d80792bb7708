//! Harness for booting lupine-init in a QEMU microvm (TCG) and checking what the guest app and
//! the host see.
//!
//! - [`kernel()`] and [`lupine_init()`] locate (or build once per process) the kernel of a
//!   profile ([`GENERAL`], [`BASE`], [`MICROVM`]) and the static init.
//! - [`Initramfs`] packs lupine-init, busybox and a manifest into a newc cpio (lupine-image's
//!   writer); [`ext4_image`] makes a disk with `mkfs.ext4 -d`.
//! - [`Vm`] runs QEMU with a timeout and returns the console text and QEMU's exit status.
//! - [`mmds::Server`] and [`syslog::Udp`]/[`syslog::Tcp`] are host servers for guests to reach
//!   (Firecracker's metadata service, a syslog collector), recording what they receive.

mod image;
mod interleave;
mod kernel;
pub mod mmds;
mod oci;
pub mod syslog;
mod tmp;
mod vm;

use std::process::{Command, Output};

pub use image::{ext4_image, Initramfs, APPLETS};
pub use kernel::{app, derived_kernel, kernel, BASE, GENERAL, MICROVM};
pub use oci::{app_image, hello_image, oci_layout, AppImage};
/// A harness failure; carries the console or command output that explains it.
pub use test_support::Error;
pub use test_support::{lupine_init, target_dir, workspace_root};
pub use tmp::TempDir;
pub use vm::{Outcome, Running, Vm, DEBUGCON_PORT, EXIT_PORT};

pub type Result<T> = std::result::Result<T, Error>;

/// Runs a command to completion; an error names it and includes its output.
fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .output()
        .map_err(|e| Error(format!("cannot run {cmd:?}: {e}")))?;
    if !out.status.success() {
        return Err(Error(format!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(out)
}

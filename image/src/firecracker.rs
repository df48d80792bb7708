//! A Firecracker `--config-file` for the root filesystem lupine-image writes: `boot-source` (the
//! uncompressed `vmlinux` that `kernel-patches/build.sh` writes, and the boot arguments a
//! Lupine guest needs), `drives` (the ext4 root disk) or an `initrd_path` (an initramfs),
//! `machine-config`, and, when asked, `network-interfaces`, `mmds-config`, `logger` and
//! `metrics`. The objects and their keys are those of Firecracker's API definition
//! (`FullVmConfiguration`); paths are absolute, so that Firecracker finds them from any
//! working directory.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::{self, Error, Result};
use crate::Format;

/// Memory when not given: `bench/apps.py` found 32-39 MiB the least that redis and nginx (the
/// project's static builds and Debian's packages) boot and serve in on Lupine kernels; 64 MiB
/// leaves a margin over that.
pub const DEFAULT_MEM_MIB: u64 = 64;

/// The boot arguments of a Lupine guest under Firecracker: the serial console, `reboot=k`
/// (lupine-init's power-off ends Firecracker), no PCI probing, and how to find lupine-init.
/// Firecracker adds `virtio_mmio.device=` for each device itself.
pub fn boot_args(format: Format) -> &'static str {
    match format {
        Format::Ext4 => "console=ttyS0 reboot=k panic=1 pci=off root=/dev/vda rw init=/lupine-init",
        Format::Initramfs => "console=ttyS0 reboot=k panic=1 pci=off rdinit=/lupine-init",
    }
}

/// What the config file says beyond the root filesystem.
#[derive(Debug, Clone)]
pub struct Firecracker {
    /// Where to write the config file.
    pub config: PathBuf,
    /// The kernel: an uncompressed ELF `vmlinux`.
    pub kernel: PathBuf,
    /// Words added to [`boot_args`].
    pub extra_boot_args: Option<String>,
    pub vcpus: u64,
    pub mem_mib: u64,
    /// A tap device on the host for `eth0`, and the guest's MAC address on it.
    pub tap: Option<String>,
    pub mac: Option<String>,
    /// Firecracker's metadata service (MMDS, version 2) on `eth0`, at 169.254.169.254.
    pub mmds: bool,
    /// Firecracker's own log and metrics files.
    pub log: Option<PathBuf>,
    pub metrics: Option<PathBuf>,
}

fn refuse(option: &str, what: impl Into<String>) -> Error {
    Error::Firecracker {
        option: option.into(),
        what: what.into(),
    }
}

impl Firecracker {
    /// A config for `kernel` written to `config`: 1 vCPU, [`DEFAULT_MEM_MIB`], no network.
    pub fn new(config: PathBuf, kernel: PathBuf) -> Firecracker {
        Firecracker {
            config,
            kernel,
            extra_boot_args: None,
            vcpus: 1,
            mem_mib: DEFAULT_MEM_MIB,
            tap: None,
            mac: None,
            mmds: false,
            log: None,
            metrics: None,
        }
    }

    /// Checks what can be checked before the image is built: the kernel is an ELF file, the
    /// machine and network settings are ones Firecracker takes.
    pub fn check(&self) -> Result<()> {
        let kernel = self.kernel.display();
        let mut magic = [0u8; 4];
        let read = fs::File::open(&self.kernel)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic));
        read.map_err(error::io(&kernel, "read"))?;
        if &magic != b"\x7fELF" {
            return Err(refuse(
                "--kernel",
                format!(
                    "{kernel}: not an ELF vmlinux (a bzImage?): Firecracker boots the \
                     uncompressed vmlinux that kernel-patches/build.sh writes beside the bzImage"
                ),
            ));
        }
        if !(1..=32).contains(&self.vcpus) {
            return Err(refuse(
                "--vcpus",
                format!("{}: Firecracker takes 1 to 32", self.vcpus),
            ));
        }
        if self.mem_mib == 0 {
            return Err(refuse("--mem", "0 MiB"));
        }
        if let Some(mac) = &self.mac {
            if self.tap.is_none() {
                return Err(refuse(
                    "--mac",
                    "needs --tap (the interface it is the address on)",
                ));
            }
            if !is_mac(mac) {
                return Err(refuse(
                    "--mac",
                    format!("{mac:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"),
                ));
            }
        }
        if self.mmds && self.tap.is_none() {
            return Err(refuse(
                "--mmds",
                "needs --tap (MMDS answers on a network interface)",
            ));
        }
        Ok(())
    }

    /// The config file's JSON for the root filesystem at `rootfs` in `format`.
    pub fn config(&self, rootfs: &Path, format: Format) -> Result<Value> {
        let abs = |p: &Path| -> Result<String> {
            let p = fs::canonicalize(p).map_err(error::io(p.display(), "find"))?;
            Ok(p.display().to_string())
        };
        let mut args = boot_args(format).to_string();
        if let Some(extra) = &self.extra_boot_args {
            args = format!("{args} {extra}");
        }
        let mut boot = json!({"kernel_image_path": abs(&self.kernel)?, "boot_args": args});
        let mut drives = vec![];
        match format {
            Format::Ext4 => drives.push(json!({
                "drive_id": "rootfs",
                "path_on_host": abs(rootfs)?,
                "is_root_device": true,
                "is_read_only": false,
            })),
            Format::Initramfs => boot["initrd_path"] = abs(rootfs)?.into(),
        }
        let mut config = json!({
            "boot-source": boot,
            "drives": drives,
            "machine-config": {"vcpu_count": self.vcpus, "mem_size_mib": self.mem_mib, "smt": false},
            "network-interfaces": [],
        });
        if let Some(tap) = &self.tap {
            let mut iface = json!({"iface_id": "eth0", "host_dev_name": tap});
            if let Some(mac) = &self.mac {
                iface["guest_mac"] = mac.as_str().into();
            }
            config["network-interfaces"] = json!([iface]);
        }
        if self.mmds {
            config["mmds-config"] = json!({
                "version": "V2",
                "network_interfaces": ["eth0"],
                "ipv4_address": "169.254.169.254",
            });
        }
        // Firecracker opens these files (or named pipes) but does not create them, so they
        // need not exist yet: made absolute, not resolved.
        let absolute = |p: &Path| -> Result<String> {
            let cwd = std::env::current_dir().map_err(error::io(".", "find"))?;
            Ok(cwd.join(p).display().to_string())
        };
        if let Some(log) = &self.log {
            config["logger"] = json!({"log_path": absolute(log)?, "level": "Info"});
        }
        if let Some(metrics) = &self.metrics {
            config["metrics"] = json!({"metrics_path": absolute(metrics)?});
        }
        Ok(config)
    }
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_addresses() {
        assert!(is_mac("06:00:ac:10:00:02"));
        assert!(is_mac("AA:bb:CC:dd:EE:ff"));
        for bad in [
            "",
            "06:00:ac:10:00",
            "06:00:ac:10:00:02:03",
            "06-00-ac-10-00-02",
            "0g:00:ac:10:00:02",
            "6:00:ac:10:00:02",
        ] {
            assert!(!is_mac(bad), "{bad}");
        }
    }
}

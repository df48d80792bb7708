//! Guest images: the initramfs every test boots, and ext4 data disks.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cpio::Cpio;
use crate::{lupine_init, run, Result};

/// busybox applets linked into /bin: what the tests' app scripts use.
pub const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "hostname", "env", "pwd", "ip", "nc", "httpd", "mount", "sleep", "ls",
    "grep", "true", "false", "reboot",
];

/// The host's static busybox (Debian's busybox-static).
const BUSYBOX: &str = "/bin/busybox";

/// An initramfs: `/lupine-init`, `/bin/busybox` with [`APPLETS`], `/etc/lupine.json` and the
/// directories lupine-init mounts on; more files can be added before [`Initramfs::write`].
pub struct Initramfs {
    cpio: Cpio,
}

impl Initramfs {
    /// busybox, its applets and the directories; no init (boot it with `rdinit=/bin/sh ...`).
    pub fn busybox() -> Result<Initramfs> {
        let mut cpio = Cpio::new();
        for dir in ["/dev", "/proc", "/sys", "/etc", "/run", "/root", "/bin"] {
            cpio.dir(dir, 0o755);
        }
        cpio.dir("/tmp", 0o1777);
        // The kernel opens /dev/console for PID 1's stdio before devtmpfs is mounted.
        cpio.char_dev("/dev/console", 0o600, 5, 1);
        cpio.file(BUSYBOX, 0o755, &fs::read(BUSYBOX)?);
        for applet in APPLETS {
            cpio.symlink(&format!("/bin/{applet}"), "busybox");
        }
        Ok(Initramfs { cpio })
    }

    /// [`Initramfs::busybox`] plus `/lupine-init` and `manifest` as `/etc/lupine.json`.
    pub fn new(manifest: &str) -> Result<Initramfs> {
        Ok(Initramfs::busybox()?
            .file("/lupine-init", 0o755, fs::read(lupine_init()?)?)
            .file("/etc/lupine.json", 0o644, manifest))
    }

    /// Adds a file (parent directories are created).
    pub fn file(mut self, path: &str, mode: u32, data: impl AsRef<[u8]>) -> Initramfs {
        self.cpio.file(path, mode, data.as_ref());
        self
    }

    pub fn dir(mut self, path: &str) -> Initramfs {
        self.cpio.dir(path, 0o755);
        self
    }

    /// Writes the archive to `path` and returns it.
    pub fn write(self, path: impl Into<PathBuf>) -> Result<PathBuf> {
        let path = path.into();
        fs::write(&path, self.cpio.finish())?;
        Ok(path)
    }
}

/// Makes an ext4 image of `size_mb` MiB at `path` holding `files` (relative path, contents),
/// staged in `<path>.d` and copied in by `mkfs.ext4 -d`.
pub fn ext4_image(path: &Path, size_mb: u32, files: &[(&str, &str)]) -> Result<PathBuf> {
    let stage = path.with_extension("d");
    fs::create_dir_all(&stage)?;
    for (name, contents) in files {
        let file = stage.join(name);
        fs::create_dir_all(file.parent().expect("file in the staging dir"))?;
        fs::write(file, contents)?;
    }
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&stage)
        .arg(path)
        .arg(format!("{size_mb}M")))?;
    Ok(path.to_path_buf())
}

//! Guest images: the initramfs every test boots, and ext4 data disks.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;

use lupine_image::layers::{Kind, Tree};

use crate::{lupine_init, run, Error, Result};

/// busybox applets linked into /bin: what the tests' app scripts use.
pub const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "hostname", "env", "pwd", "ip", "nc", "httpd", "mount", "sleep", "ls",
    "grep", "true", "false", "reboot",
];

/// The host's static busybox (Debian's busybox-static).
const BUSYBOX: &str = "/bin/busybox";

/// An initramfs: `/lupine-init`, `/bin/busybox` with [`APPLETS`], `/etc/lupine.json` and the
/// directories lupine-init mounts on; more files can be added before [`Initramfs::write`].
/// Written by lupine-image's newc cpio writer (root-owned, no compression: the test kernels
/// need no decompressor).
pub struct Initramfs {
    tree: Tree,
    /// The first entry that could not be added (a non-directory where a directory goes),
    /// reported by [`Initramfs::write`] so that adding stays chainable.
    error: Option<Error>,
}

impl Initramfs {
    /// busybox, its applets and the directories; no init (boot it with `rdinit=/bin/sh ...`).
    pub fn busybox() -> Result<Initramfs> {
        let mut initrd = Initramfs {
            tree: Tree::new(),
            error: None,
        };
        for dir in ["/dev", "/proc", "/sys", "/etc", "/run", "/root", "/bin"] {
            initrd.ensure_dir(dir, 0o755);
        }
        initrd.ensure_dir("/tmp", 0o1777);
        // The kernel opens /dev/console for PID 1's stdio before devtmpfs is mounted.
        initrd.add("/dev/console", Kind::Char(5, 1), 0o600);
        initrd.add(BUSYBOX, Kind::File(Rc::new(fs::read(BUSYBOX)?)), 0o755);
        for applet in APPLETS {
            let link = Kind::Symlink("busybox".into());
            initrd.add(&format!("/bin/{applet}"), link, 0o777);
        }
        Ok(initrd)
    }

    /// [`Initramfs::busybox`] plus `/lupine-init` and `manifest` as `/etc/lupine.json`.
    pub fn new(manifest: &str) -> Result<Initramfs> {
        Ok(Initramfs::busybox()?
            .file("/lupine-init", 0o755, fs::read(lupine_init()?)?)
            .file("/etc/lupine.json", 0o644, manifest))
    }

    /// [`Initramfs::new`] with a manifest whose app is busybox `sh` with `args` (`-c SCRIPT`, or
    /// a script file added with [`Initramfs::file`]).
    pub fn sh(args: &[&str]) -> Result<Initramfs> {
        let manifest = serde_json::json!({
            "version": 1,
            "app": {"path": "/bin/sh", "args": args},
        });
        Initramfs::new(&manifest.to_string())
    }

    /// Adds a file, or replaces the one at `path` (parent directories are created).
    pub fn file(mut self, path: &str, mode: u32, data: impl AsRef<[u8]>) -> Initramfs {
        self.add(path, Kind::File(Rc::new(data.as_ref().to_vec())), mode);
        self
    }

    pub fn dir(mut self, path: &str) -> Initramfs {
        self.ensure_dir(path, 0o755);
        self
    }

    /// Writes the archive to `path` and returns it.
    pub fn write(self, path: impl Into<PathBuf>) -> Result<PathBuf> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let path = path.into();
        let mut out = BufWriter::new(File::create(&path)?);
        lupine_image::cpio::write(&self.tree, &mut out)?;
        Ok(path)
    }

    /// Adds a root-owned node at the absolute `path`, and its parent directories.
    fn add(&mut self, path: &str, kind: Kind, mode: u32) {
        let path = path.trim_start_matches('/');
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.ensure_dir(parent, 0o755);
        }
        self.tree.add(path, kind, mode);
    }

    /// Makes the absolute `path` a directory (and its parents) unless it is one already.
    fn ensure_dir(&mut self, path: &str, mode: u32) {
        if let Err(e) = self.tree.ensure_dir(path.trim_start_matches('/'), mode) {
            self.error.get_or_insert(Error(e.to_string()));
        }
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

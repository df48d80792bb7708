//! A writer for uncompressed `newc` cpio archives, the format the kernel unpacks as an
//! initramfs (no compression: the test kernel needs no decompressor configured).

use std::collections::BTreeSet;

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// An archive being built in memory. Parent directories are added on demand because the
/// kernel's unpacker does not create them.
#[derive(Default)]
pub struct Cpio {
    buf: Vec<u8>,
    next_ino: u32,
    dirs: BTreeSet<String>,
}

impl Cpio {
    pub fn new() -> Cpio {
        Cpio::default()
    }

    /// Adds a directory (and its parents); adding one twice is harmless.
    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Cpio {
        let name = relative(path);
        if name.is_empty() || self.dirs.contains(name) {
            return self;
        }
        self.parents(name);
        self.dirs.insert(name.to_string());
        self.entry(name, S_IFDIR | mode, 2, (0, 0), b"")
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> &mut Cpio {
        let name = relative(path);
        self.parents(name);
        self.entry(name, S_IFREG | mode, 1, (0, 0), data)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Cpio {
        let name = relative(path);
        self.parents(name);
        self.entry(name, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    pub fn char_dev(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> &mut Cpio {
        let name = relative(path);
        self.parents(name);
        self.entry(name, S_IFCHR | mode, 1, (major, minor), b"")
    }

    /// The archive with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), b"");
        self.buf
    }

    fn parents(&mut self, name: &str) {
        if let Some((parent, _)) = name.rsplit_once('/') {
            self.dir(parent, 0o755);
        }
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> &mut Cpio {
        self.next_ino += 1;
        let namesize = name.len() + 1;
        let fields = [
            self.next_ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            data.len() as u32,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            namesize as u32,
            0, // check
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    /// Header+name and data each end on a 4-byte boundary.
    fn pad(&mut self) {
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }
}

fn relative(path: &str) -> &str {
    path.trim_start_matches('/').trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// busybox cpio (installed with busybox-static) must read back what we wrote.
    #[test]
    fn busybox_cpio_lists_entries() {
        let mut c = Cpio::new();
        c.file("/a/b/file.txt", 0o644, b"hello")
            .symlink("/bin/sh", "busybox")
            .char_dev("/dev/console", 0o600, 5, 1);
        let archive = c.finish();
        assert_eq!(archive.len() % 4, 0);
        let mut child = Command::new("busybox")
            .args(["cpio", "-t"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("busybox");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&archive).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let listing = String::from_utf8(out.stdout).unwrap();
        let names: Vec<&str> = listing.lines().collect();
        assert_eq!(
            names,
            [
                "a",
                "a/b",
                "a/b/file.txt",
                "bin",
                "bin/sh",
                "dev",
                "dev/console"
            ]
        );
    }
}

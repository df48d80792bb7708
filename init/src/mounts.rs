//! The default filesystems every app expects, and the manifest's own mounts.

use std::collections::BTreeSet;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{symlink, DirBuilderExt, MetadataExt};
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};

use crate::error::Fatal;
use crate::manifest::Mount;

const NOSUID_NODEV: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);

/// (target, fstype, flags, data), in order: later targets live inside earlier ones.
const DEFAULTS: [(&str, &str, MsFlags, &str); 7] = [
    ("/proc", "proc", NOSUID_NODEV.union(MsFlags::MS_NOEXEC), ""),
    ("/sys", "sysfs", NOSUID_NODEV.union(MsFlags::MS_NOEXEC), ""),
    ("/dev", "devtmpfs", MsFlags::MS_NOSUID, "mode=0755"),
    (
        "/dev/pts",
        "devpts",
        MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        "mode=0620,ptmxmode=0666",
    ),
    ("/dev/shm", "tmpfs", NOSUID_NODEV, "mode=1777"),
    ("/tmp", "tmpfs", NOSUID_NODEV, "mode=1777"),
    ("/run", "tmpfs", NOSUID_NODEV, "mode=0755"),
];

const LINKS: [(&str, &str); 5] = [
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
    ("/dev/ptmx", "pts/ptmx"),
];

/// Mounts the default filesystems and makes the /dev links. Nothing here is fatal: a
/// specialised kernel may lack a filesystem the app never uses, so each problem is a warning
/// (one per missing filesystem type).
pub fn defaults() {
    let mut missing_fs = BTreeSet::new();
    for (target, fstype, flags, data) in DEFAULTS {
        if missing_fs.contains(fstype) {
            continue;
        }
        if is_mount_point(target) {
            log::debug!("{target} is already mounted");
            continue;
        }
        if let Err(e) = fs::DirBuilder::new().mode(0o755).create(target) {
            if e.kind() != ErrorKind::AlreadyExists {
                log::warn!("mkdir {target}: {e}; {fstype} not mounted");
                continue;
            }
        }
        match mount(Some(fstype), target, Some(fstype), flags, Some(data)) {
            Ok(()) | Err(Errno::EBUSY) => {}
            Err(Errno::ENODEV) => {
                log::warn!("the kernel has no {fstype} filesystem: {target} not mounted");
                missing_fs.insert(fstype);
            }
            Err(e) => log::warn!("mount {fstype} on {target}: {e}"),
        }
    }
    for (link, target) in LINKS {
        // symlink_metadata: a dangling link still counts as present.
        if fs::symlink_metadata(link).is_err() {
            if let Err(e) = symlink(target, link) {
                log::debug!("symlink {link} -> {target}: {e}");
            }
        }
    }
}

/// True when `path` is on another device than its parent (works before /proc is mounted,
/// and tmpfs/ramfs roots make magic-number checks useless).
fn is_mount_point(path: &str) -> bool {
    let parent = Path::new(path).parent().unwrap_or(Path::new("/"));
    match (fs::metadata(path), fs::metadata(parent)) {
        (Ok(p), Ok(q)) => p.dev() != q.dev(),
        _ => false,
    }
}

/// Mounts the manifest's filesystems, in order. Any failure is fatal: the app needs them.
pub fn manifest_mounts(mounts: &[Mount]) -> Result<(), Fatal> {
    for m in mounts {
        let what = format!("{} on {} ({})", m.source, m.target, m.fstype);
        let (flags, data) = parse_options(&m.options);
        if m.source.starts_with("/dev/") {
            wait_for(&m.source, m.wait_s);
        }
        if m.mkdir {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&m.target)
                .map_err(|e| Fatal::new("mount", format!("{what}: mkdir {}: {e}", m.target)))?;
        }
        let fstype = (!flags.contains(MsFlags::MS_BIND)).then_some(m.fstype.as_str());
        let data = (!data.is_empty()).then_some(data.as_str());
        mount(
            Some(m.source.as_str()),
            m.target.as_str(),
            fstype,
            flags,
            data,
        )
        .map_err(|e| {
            let hint = match e {
                Errno::ENODEV => " (the kernel has no such filesystem)",
                Errno::ENOENT if !Path::new(&m.target).exists() => {
                    " (the target does not exist: set \"mkdir\": true)"
                }
                Errno::ENOENT | Errno::ENXIO => " (no such device: raise \"wait_s\"?)",
                _ => "",
            };
            Fatal::new("mount", format!("{what}: {}{hint}", e.desc()))
        })?;
        log::debug!("mounted {what}");
    }
    Ok(())
}

/// Waits up to `seconds` for a device node: virtio-blk may probe after init starts.
pub fn wait_for(path: &str, seconds: f64) {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    while !Path::new(path).exists() && Instant::now() < deadline {
        sleep(Duration::from_millis(10));
    }
}

/// Splits mount(8)-style options into flags and the filesystem's own data string.
pub fn parse_options(options: &str) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for opt in options.split(',').filter(|o| !o.is_empty()) {
        let (set, clear) = match opt {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "lazytime" => (MsFlags::MS_LAZYTIME, MsFlags::empty()),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            other => {
                data.push(other);
                continue;
            }
        };
        flags = (flags | set) - clear;
    }
    (flags, data.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let (flags, data) = parse_options("noatime,ro,data=ordered,nosuid,errors=remount-ro");
        assert_eq!(
            flags,
            MsFlags::MS_NOATIME | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID
        );
        assert_eq!(data, "data=ordered,errors=remount-ro");
    }

    #[test]
    fn later_options_win() {
        assert_eq!(parse_options("ro,rw").0, MsFlags::empty());
        assert_eq!(parse_options("rbind").0, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert_eq!(parse_options(""), (MsFlags::empty(), String::new()));
    }

    #[test]
    fn root_is_not_a_mount_point_of_itself_but_proc_is() {
        assert!(is_mount_point("/proc"));
        assert!(!is_mount_point("/etc"));
    }
}

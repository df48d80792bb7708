//! The libraries a dynamically linked program loads, found inside an image root as its dynamic
//! linker would find them: `DT_NEEDED` names searched in `DT_RUNPATH` (or `DT_RPATH`, `$ORIGIN`
//! expanded), then the system directories (glibc's `/etc/ld.so.conf`, musl's
//! `/etc/ld-musl-x86_64.path`, then the defaults of Debian and Alpine), transitively.

use crate::elf::{Elf, Kind};
use std::collections::{BTreeSet, VecDeque};
use std::path::{Component, Path, PathBuf};

/// Reads a file of the image by its absolute path (symbolic links followed inside the image);
/// `None` when there is none.
pub type ReadFile<'a> = dyn Fn(&str) -> Option<Vec<u8>> + 'a;

/// A library, by its `DT_NEEDED` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    pub name: String,
    /// Where it was found in the image, `None` when nowhere.
    pub path: Option<String>,
    /// The first object that needs it.
    pub needed_by: String,
    pub data: Option<Vec<u8>>,
}

/// Directories searched after the object's own `DT_RUNPATH`, for a program whose interpreter is
/// `interpreter`.
fn system_dirs(interpreter: &str, read: &ReadFile<'_>) -> Vec<String> {
    let mut dirs = Vec::new();
    if interpreter.contains("ld-musl") {
        let conf = format!(
            "/etc/{}.path",
            interpreter
                .rsplit('/')
                .next()
                .unwrap_or("")
                .trim_end_matches(".so.1")
        );
        match read(&conf) {
            Some(text) => dirs.extend(
                String::from_utf8_lossy(&text)
                    .split([':', '\n'])
                    .filter(|d| d.starts_with('/'))
                    .map(String::from),
            ),
            None => dirs.extend(["/lib", "/usr/local/lib", "/usr/lib"].map(String::from)),
        }
        return dirs;
    }
    ld_so_conf("/etc/ld.so.conf", read, &mut dirs, &mut BTreeSet::new(), 0);
    dirs.extend(
        [
            "/lib/x86_64-linux-gnu",
            "/usr/lib/x86_64-linux-gnu",
            "/lib64",
            "/usr/lib64",
            "/lib",
            "/usr/lib",
        ]
        .map(String::from),
    );
    dirs
}

/// The directories of glibc's `ld.so.conf` and the files it includes (`include DIR/*.conf`).
/// Each file is read once (`seen`): files that include each other, or one included many times,
/// would otherwise cost reads exponential in the depth.
fn ld_so_conf(
    path: &str,
    read: &ReadFile<'_>,
    dirs: &mut Vec<String>,
    seen: &mut BTreeSet<String>,
    depth: u32,
) {
    if depth >= 8 || !seen.insert(path.to_string()) {
        return;
    }
    let Some(text) = read(path) else {
        return;
    };
    for line in String::from_utf8_lossy(&text).lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(pattern) = line.strip_prefix("include") {
            let pattern = pattern.trim();
            // Only the common `DIR/*.conf` form; a ReadFile cannot list a directory, so the
            // files Debian ships there are tried.
            if let Some(dir) = pattern.strip_suffix("/*.conf") {
                for f in [
                    "libc.conf",
                    "x86_64-linux-gnu.conf",
                    "fakeroot-x86_64-linux-gnu.conf",
                ] {
                    ld_so_conf(&format!("{dir}/{f}"), read, dirs, seen, depth + 1);
                }
            }
        } else if line.starts_with('/') {
            dirs.push(line.to_string());
        }
    }
}

/// `DT_RUNPATH` entries of the object at `path`, `$ORIGIN` expanded.
fn runpath(elf: &Elf<'_>, path: &str) -> Vec<String> {
    let origin = path.rsplit_once('/').map_or("/", |(d, _)| d);
    elf.dynamic
        .runpath
        .iter()
        .map(|d| d.replace("${ORIGIN}", origin).replace("$ORIGIN", origin))
        .collect()
}

/// The names musl's dynamic linker answers itself (it is the C library): `libc.so` and the
/// libraries glibc splits off.
fn musl_builtin(name: &str) -> bool {
    let stem = name.split(".so").next().unwrap_or(name);
    name.contains(".so")
        && matches!(
            stem,
            "libc"
                | "libc.musl-x86_64"
                | "libpthread"
                | "librt"
                | "libm"
                | "libdl"
                | "libutil"
                | "libxnet"
                | "libresolv"
                | "libcrypt"
        )
}

/// Every library the program `elf` (at `path` in the image) needs, directly or through others,
/// in the order found, its interpreter (`PT_INTERP`) first.
pub fn resolve(elf: &Elf<'_>, path: &str, read: &ReadFile<'_>) -> Vec<Library> {
    let interpreter = match &elf.kind {
        Kind::Dynamic { interpreter } => interpreter.clone(),
        _ => String::new(),
    };
    let musl = interpreter.contains("ld-musl");
    let system = system_dirs(&interpreter, read);
    let mut out = Vec::new();
    // The dynamic linker answers for its own name (glibc's libc.so.6 needs ld-linux).
    let mut interp_soname = None;
    if !interpreter.is_empty() {
        let data = read(&interpreter);
        interp_soname = data
            .as_ref()
            .and_then(|d| Elf::parse(&interpreter, d).ok()?.dynamic.soname);
        out.push(Library {
            name: interpreter.clone(),
            path: data.as_ref().map(|_| interpreter.clone()),
            needed_by: path.to_string(),
            data,
        });
    }
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut queue: VecDeque<(String, String, Vec<String>)> = elf
        .dynamic
        .needed
        .iter()
        .map(|n| (n.clone(), path.to_string(), runpath(elf, path)))
        .collect();
    while let Some((name, by, own_dirs)) = queue.pop_front() {
        let builtin = (musl && musl_builtin(&name)) || interp_soname.as_ref() == Some(&name);
        if !seen.insert(name.clone()) || builtin {
            continue;
        }
        let found = if name.contains('/') {
            read(&name).map(|d| (name.clone(), d))
        } else {
            own_dirs.iter().chain(&system).find_map(|dir| {
                let p = format!("{}/{name}", dir.trim_end_matches('/'));
                read(&p).map(|d| (p, d))
            })
        };
        let (lib_path, data) = match found {
            Some((p, d)) => (Some(p), Some(d)),
            None => (None, None),
        };
        if let (Some(p), Some(d)) = (&lib_path, &data) {
            if let Ok(lib) = Elf::parse(p, d) {
                let dirs = runpath(&lib, p);
                for n in &lib.dynamic.needed {
                    queue.push_back((n.clone(), p.clone(), dirs.clone()));
                }
            }
        }
        out.push(Library {
            name,
            path: lib_path,
            needed_by: by,
            data,
        });
    }
    out
}

/// What is at an absolute path of an image, for [`resolve_links`].
pub enum Entry {
    /// A symbolic link, and its target.
    Link(String),
    /// Anything else, or nothing.
    Other,
}

/// `path` (absolute, as inside an image) with every symbolic link on the way followed as the
/// image sees it (an absolute target starts again from the image's root, `..` never leaves it),
/// asking `entry` what each path is; `None` for a loop.
pub fn resolve_links(path: &str, entry: &dyn Fn(&str) -> Entry) -> Option<String> {
    let mut hops = 0;
    let mut todo: VecDeque<String> = split(path);
    let mut at: Vec<String> = Vec::new();
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            at.pop();
            continue;
        }
        let here = format!(
            "/{}",
            at.iter().chain([&c]).cloned().collect::<Vec<_>>().join("/")
        );
        match entry(&here) {
            Entry::Link(target) => {
                hops += 1;
                if hops > 40 {
                    return None;
                }
                if target.starts_with('/') {
                    at.clear();
                }
                for (k, part) in split(&target).into_iter().enumerate() {
                    todo.insert(k, part);
                }
            }
            Entry::Other => at.push(c),
        }
    }
    Some(format!("/{}", at.join("/")))
}

/// Reads `path` (absolute, as inside the image) under the directory `root`, following symbolic
/// links as the image sees them.
pub fn read_in_root(root: &Path, path: &str) -> Option<Vec<u8>> {
    let under = |p: &str| root.join(p.trim_start_matches('/'));
    let entry = |p: &str| match std::fs::read_link(under(p)) {
        Ok(t) => Entry::Link(t.to_string_lossy().into_owned()),
        Err(_) => Entry::Other,
    };
    std::fs::read(under(&resolve_links(path, &entry)?)).ok()
}

/// The normal components of a path (`.` and empty ones dropped, `..` kept).
fn split(path: &str) -> VecDeque<String> {
    PathBuf::from(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// Whether the file carries lupine-relink's marker (it was relinked already).
pub fn is_relinked(data: &[u8]) -> bool {
    Elf::parse("", data).is_ok_and(|e| crate::relink::is_relinked(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn reads_inside_the_root_through_symlinks() {
        let d = std::env::temp_dir().join(format!("lupine-needed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("lib/x86_64-linux-gnu")).unwrap();
        std::fs::create_dir_all(d.join("lib64")).unwrap();
        std::fs::write(d.join("lib/x86_64-linux-gnu/ld.so"), b"ld").unwrap();
        symlink("/lib/x86_64-linux-gnu/ld.so", d.join("lib64/ld-abs")).unwrap();
        symlink("../lib/x86_64-linux-gnu/ld.so", d.join("lib64/ld-rel")).unwrap();
        symlink("../../../../../etc/passwd", d.join("lib64/escape")).unwrap();
        symlink("loop", d.join("lib64/loop")).unwrap();
        for p in [
            "/lib64/ld-abs",
            "/lib64/ld-rel",
            "lib/x86_64-linux-gnu/ld.so",
        ] {
            assert_eq!(read_in_root(&d, p).as_deref(), Some(&b"ld"[..]), "{p}");
        }
        assert_eq!(
            read_in_root(&d, "/lib64/escape"),
            None,
            "never leaves the root"
        );
        assert_eq!(read_in_root(&d, "/lib64/loop"), None);
        assert_eq!(read_in_root(&d, "/nothing"), None);
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// An ld.so.conf that includes itself, many times over (found by fuzzing lupine-config):
    /// each file is read once, not 60^8 times.
    #[test]
    fn ld_so_conf_includes_are_read_once() {
        let conf = "/usr/local/lib\n".to_string() + &"include /etc/c/*.conf\n".repeat(20);
        let reads = std::cell::Cell::new(0);
        let read = |p: &str| {
            reads.set(reads.get() + 1);
            (p == "/etc/ld.so.conf" || p.starts_with("/etc/c/")).then(|| conf.clone().into_bytes())
        };
        let dirs = system_dirs("/lib64/ld-linux-x86-64.so.2", &read);
        assert_eq!(
            reads.get(),
            4,
            "ld.so.conf and the three files tried in /etc/c"
        );
        assert_eq!(dirs.iter().filter(|d| *d == "/usr/local/lib").count(), 4);
        assert!(dirs.ends_with(&["/lib".to_string(), "/usr/lib".to_string()]));
    }
}

//! ext4 output without root: `mkfs.ext4 -d` copies a staged tree (written with the caller's
//! own uid and safe modes), then a `debugfs -w` script sets the exact mode (type bits included,
//! so setuid/setgid/sticky survive), owner and mtime of every inode and creates the device
//! nodes and fifos that an unprivileged user cannot stage.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::{symlink, DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use crate::error::{io, Error, Result};
use crate::layers::{Kind, Tree};

const MIB: u64 = 1 << 20;
const BLOCK: u64 = 4096;

/// The computed size: content (each file rounded to whole blocks, one block per other inode)
/// times 1.3, plus 16 MiB for metadata and the journal, in MiB.
pub fn default_size_mib(tree: &Tree) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut bytes = 0u64;
    for n in tree.nodes.values() {
        match &n.kind {
            Kind::File(d) if seen.insert(n.ino) => {
                bytes += (d.len() as u64).div_ceil(BLOCK) * BLOCK
            }
            Kind::File(_) => {}
            _ => bytes += BLOCK,
        }
    }
    (bytes * 13 / 10).div_ceil(MIB) + 16
}

/// debugfs reads whitespace-separated words; double quotes keep a path with spaces together
/// but cannot contain a double quote themselves.
fn quote(path: &str) -> Result<String> {
    if path.contains(['"', '\n', '\r', '\\']) {
        return Err(Error::Output {
            path: path.into(),
            what: "a name with a double quote, backslash or newline cannot be written to ext4 by debugfs; use --format initramfs".into(),
        });
    }
    Ok(format!("\"{path}\""))
}

/// Writes the tree's directories, files (hard links as hard links) and symlinks under `root`
/// (an empty directory), owned by the caller with safe modes; device nodes and fifos are left to
/// debugfs.
pub fn stage(tree: &Tree, root: &Path) -> Result<()> {
    let mut first: HashMap<u64, std::path::PathBuf> = HashMap::new();
    for (path, n) in &tree.nodes {
        if path.is_empty() {
            continue;
        }
        let p = root.join(path);
        let w = io(p.display(), "stage");
        match &n.kind {
            Kind::Dir => fs::DirBuilder::new().mode(0o755).create(&p).map_err(w)?,
            Kind::File(d) => {
                if let Some(orig) = first.get(&n.ino) {
                    fs::hard_link(orig, &p).map_err(w)?;
                } else {
                    fs::write(&p, &d[..]).map_err(w)?;
                    fs::set_permissions(&p, fs::Permissions::from_mode(0o644))
                        .map_err(io(p.display(), "stage"))?;
                    first.insert(n.ino, p);
                }
            }
            Kind::Symlink(t) => symlink(t, &p).map_err(w)?,
            // Created by debugfs.
            Kind::Char(..) | Kind::Block(..) | Kind::Fifo => {}
        }
    }
    Ok(())
}

fn script(tree: &Tree) -> Result<String> {
    let mut s = String::new();
    for (path, n) in &tree.nodes {
        let abs = format!("/{path}");
        let q = quote(&abs)?;
        let node = match n.kind {
            Kind::Char(a, b) => Some(format!("c {a} {b}")),
            Kind::Block(a, b) => Some(format!("b {a} {b}")),
            Kind::Fifo => Some("p".to_string()),
            _ => None,
        };
        if let Some(spec) = node {
            // debugfs's mknod takes a name in the current directory, not a path.
            let (dir, name) = abs.rsplit_once('/').unwrap_or(("", &abs));
            let dir = if dir.is_empty() { "/" } else { dir };
            let _ = writeln!(s, "cd {}\nmknod {} {spec}\ncd /", quote(dir)?, quote(name)?);
        }
        let _ = writeln!(
            s,
            "sif {q} mode 0{:o}\nsif {q} uid {}\nsif {q} gid {}\nsif {q} mtime @{}",
            n.type_bits() | n.mode,
            n.uid,
            n.gid,
            n.mtime
        );
    }
    Ok(s)
}

fn run(cmd: &mut Command, tool: &str) -> Result<std::process::Output> {
    let out = cmd.output().map_err(|e| Error::Tool {
        tool: tool.into(),
        what: format!("cannot run: {e}"),
    })?;
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Err(Error::Tool {
            tool: tool.into(),
            what: format!("{}: {}", out.status, one_line(&all)),
        });
    }
    Ok(out)
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Writes the tree as an ext4 image at `out`, staging in `work` (an empty directory).
pub fn write(tree: &Tree, work: &Path, out: &Path, size_mib: Option<u64>) -> Result<()> {
    let root = work.join("root");
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&root)
        .map_err(io(root.display(), "create"))?;
    stage(tree, &root)?;
    let script_text = script(tree)?;
    let size = size_mib.unwrap_or_else(|| default_size_mib(tree));
    run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096", "-I", "256", "-i", "4096"])
            .args(["-E", "root_owner=0:0", "-d"])
            .arg(&root)
            .arg(out)
            .arg(format!("{size}M")),
        "mkfs.ext4",
    )?;
    let script_file = work.join("debugfs.script");
    fs::write(&script_file, script_text).map_err(io(script_file.display(), "write"))?;
    let o = run(
        Command::new("debugfs")
            .arg("-w")
            .arg("-f")
            .arg(&script_file)
            .arg(out),
        "debugfs",
    )?;
    // debugfs exits 0 even when a command fails: anything on stderr but its banner is an error.
    let errors: Vec<&str> = std::str::from_utf8(&o.stderr)
        .unwrap_or("(non-UTF-8 output)")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("debugfs 1."))
        .collect();
    if !errors.is_empty() {
        return Err(Error::Tool {
            tool: "debugfs".into(),
            what: errors.join("; "),
        });
    }
    Ok(())
}

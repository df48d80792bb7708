//! The root filesystem as an in-memory tree, built by applying layers in order with OCI
//! whiteout semantics, refusing any entry that could reach outside the root.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::rc::Rc;

use tar::EntryType;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Rc<Vec<u8>>),
    Symlink(String),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky (07777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
    /// Hard links share an inode number (and the file's data and metadata).
    pub ino: u64,
}

impl Node {
    /// The file-type bits of `st_mode`.
    pub fn type_bits(&self) -> u32 {
        match self.kind {
            Kind::Dir => 0o040000,
            Kind::File(_) => 0o100000,
            Kind::Symlink(_) => 0o120000,
            Kind::Char(..) => 0o020000,
            Kind::Block(..) => 0o060000,
            Kind::Fifo => 0o010000,
        }
    }
}

/// Paths are relative to the root, without a leading `/`; the root itself is `""`. In a
/// BTreeMap, a directory sorts before everything under it.
pub struct Tree {
    pub nodes: BTreeMap<String, Node>,
    next_ino: u64,
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

fn entry_err(layer: &str, path: &str, what: impl Into<String>) -> Error {
    Error::Entry {
        layer: layer.into(),
        path: path.into(),
        what: what.into(),
    }
}

/// Lexically normalises an entry name; absolute names and `..` above the root are refused.
fn normalize(layer: &str, raw: &str) -> Result<String> {
    if raw.starts_with('/') {
        return Err(entry_err(layer, raw, "absolute path"));
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(entry_err(
                        layer,
                        raw,
                        "path escapes the root through \"..\"",
                    ));
                }
            }
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map(|(p, _)| p).unwrap_or("")
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

impl Tree {
    pub fn new() -> Tree {
        let mut t = Tree {
            nodes: BTreeMap::new(),
            next_ino: 1,
        };
        let ino = t.ino();
        t.nodes.insert(
            String::new(),
            Node {
                kind: Kind::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime: 0,
                ino,
            },
        );
        t
    }

    fn ino(&mut self) -> u64 {
        self.next_ino += 1;
        self.next_ino
    }

    /// Keys strictly under `path` (a directory).
    fn descendants(&self, path: &str) -> Vec<String> {
        if path.is_empty() {
            return self
                .nodes
                .keys()
                .filter(|k| !k.is_empty())
                .cloned()
                .collect();
        }
        // '0' is the character after '/'.
        let (lo, hi) = (format!("{path}/"), format!("{path}0"));
        self.nodes.range(lo..hi).map(|(k, _)| k.clone()).collect()
    }

    /// Removes `path` and everything under it, except what `keep` holds.
    fn remove(&mut self, path: &str, keep: &HashSet<String>) {
        for k in self.descendants(path) {
            if !keep.contains(&k) {
                self.nodes.remove(&k);
            }
        }
        if !path.is_empty() && !keep.contains(path) {
            self.nodes.remove(path);
        }
    }

    /// Makes sure every ancestor of `path` is a directory, creating missing ones; an ancestor
    /// that is a symlink is refused rather than followed.
    fn parents(
        &mut self,
        layer: &str,
        path: &str,
        mtime: u64,
        added: &mut HashSet<String>,
    ) -> Result<()> {
        let mut cur = String::new();
        let comps: Vec<&str> = path.split('/').collect();
        for c in &comps[..comps.len().saturating_sub(1)] {
            cur = join(&cur, c);
            match self.nodes.get(&cur).map(|n| &n.kind) {
                // A lower layer's directory that this layer's entry lives in is this layer's
                // too: an opaque whiteout later in the layer must not remove it.
                Some(Kind::Dir) => {
                    added.insert(cur.clone());
                }
                Some(Kind::Symlink(_)) => {
                    return Err(entry_err(
                        layer,
                        path,
                        format!("parent {cur:?} is a symlink (not followed)"),
                    ))
                }
                Some(_) => {
                    return Err(entry_err(
                        layer,
                        path,
                        format!("parent {cur:?} is not a directory"),
                    ))
                }
                None => {
                    let ino = self.ino();
                    self.nodes.insert(
                        cur.clone(),
                        Node {
                            kind: Kind::Dir,
                            mode: 0o755,
                            uid: 0,
                            gid: 0,
                            mtime,
                            ino,
                        },
                    );
                    added.insert(cur.clone());
                }
            }
        }
        Ok(())
    }

    /// Puts a node at `path`: a directory over a directory keeps its contents; anything else
    /// replaces what was there, with its subtree.
    fn put(&mut self, path: &str, node: Node) {
        let keep_children =
            node.kind == Kind::Dir && self.nodes.get(path).is_some_and(|n| n.kind == Kind::Dir);
        if !keep_children {
            self.remove(path, &HashSet::new());
        }
        self.nodes.insert(path.to_string(), node);
    }

    /// Applies one layer (an uncompressed tar stream) on top of the tree.
    pub fn apply_layer(&mut self, layer: &str, reader: impl Read) -> Result<()> {
        let mut ar = tar::Archive::new(reader);
        // Whiteouts hide lower layers only, never what this layer adds.
        let mut added = HashSet::new();
        for entry in ar.entries().map_err(|e| not_tar(layer, e))? {
            let mut e = entry.map_err(|e| not_tar(layer, e))?;
            self.apply_entry(layer, &mut e, &mut added)?;
        }
        self.check_symlinks(layer)
    }

    /// Refuses a relative symlink that leads outside the root when it is resolved through the
    /// other symlinks of the tree, as on the host: with `s -> .`, `t -> s/../x` escapes although
    /// each target stays inside on its own (and a later layer can make an earlier link escape
    /// by replacing a directory with a link). Absolute targets are root-relative in the VM and
    /// not followed; a chain of more than 40 links (a loop) leads nowhere.
    fn check_symlinks(&self, layer: &str) -> Result<()> {
        for (path, n) in &self.nodes {
            let Kind::Symlink(target) = &n.kind else {
                continue;
            };
            if target.starts_with('/') {
                continue;
            }
            if let Some(via) = self.escape_through_links(path, target) {
                return Err(entry_err(
                    layer,
                    path,
                    format!(
                        "symlink target {target:?} escapes the root through the symlink {via:?}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The first symlink followed when the relative `target` of the symlink at `path` resolves
    /// to above the root; `None` when it stays inside.
    fn escape_through_links(&self, path: &str, target: &str) -> Option<String> {
        let mut cur: Vec<&str> = parent_of(path)
            .split('/')
            .filter(|c| !c.is_empty())
            .collect();
        let mut pending: Vec<&str> = target.split('/').rev().collect();
        let mut first: Option<String> = None;
        let mut hops = 0;
        while let Some(c) = pending.pop() {
            match c {
                "" | "." => {}
                ".." => {
                    if cur.pop().is_none() {
                        return Some(first.unwrap_or_else(|| path.to_string()));
                    }
                }
                name => {
                    cur.push(name);
                    let here = cur.join("/");
                    let Some(Node {
                        kind: Kind::Symlink(t),
                        ..
                    }) = self.nodes.get(&here)
                    else {
                        continue;
                    };
                    hops += 1;
                    if hops > 40 || t.starts_with('/') {
                        return None;
                    }
                    first.get_or_insert(here);
                    cur.pop();
                    pending.extend(t.split('/').rev());
                }
            }
        }
        None
    }

    /// Applies one tar entry: a whiteout, a hard link or a node of its own. `added` holds the
    /// paths this layer has added so far.
    fn apply_entry<R: Read>(
        &mut self,
        layer: &str,
        e: &mut tar::Entry<'_, R>,
        added: &mut HashSet<String>,
    ) -> Result<()> {
        let raw = entry_name(layer, e)?;
        let h = e.header();
        let etype = h.entry_type();
        if matches!(etype, EntryType::XGlobalHeader | EntryType::XHeader) {
            return Ok(());
        }
        let path = normalize(layer, &raw)?;
        let mtime = h.mtime().unwrap_or(0);
        let (uid, gid, mode) = owner_and_mode(layer, &raw, h)?;
        self.parents(layer, &path, mtime, added)?;
        let name = path.rsplit('/').next().unwrap_or_default();
        if let Some(hidden) = name.strip_prefix(".wh.") {
            self.whiteout(&path, hidden, added);
            return Ok(());
        }
        // A hard link named "." too: it would replace the root with a file.
        if path.is_empty() && etype != EntryType::Directory {
            return Err(entry_err(layer, &raw, "the root must be a directory"));
        }
        if etype == EntryType::Link {
            return self.hard_link(layer, &raw, path, e, added);
        }
        let kind = entry_kind(layer, &raw, &path, e)?;
        let ino = self.ino();
        self.put(
            &path,
            Node {
                kind,
                mode,
                uid,
                gid,
                mtime,
                ino,
            },
        );
        added.insert(path);
        Ok(())
    }

    /// The whiteout at `path`, named `.wh.` + `hidden`, removes its sibling `hidden` from lower
    /// layers; the opaque whiteout `.wh..wh..opq` removes everything lower in its directory.
    fn whiteout(&mut self, path: &str, hidden: &str, added: &HashSet<String>) {
        let dir = parent_of(path);
        if hidden == ".wh..opq" {
            for k in self.descendants(dir) {
                if !added.contains(&k) {
                    self.nodes.remove(&k);
                }
            }
        } else if !hidden.starts_with(".wh.") && !hidden.is_empty() {
            let target = join(dir, hidden);
            self.remove(&target, added);
        }
    }

    /// Puts at `path` a link to the inode of the hard link entry's target, which must exist
    /// and not be a directory.
    fn hard_link<R: Read>(
        &mut self,
        layer: &str,
        raw: &str,
        path: String,
        e: &tar::Entry<'_, R>,
        added: &mut HashSet<String>,
    ) -> Result<()> {
        let target = link_name(layer, raw, e)?;
        let target = normalize(layer, &target).map_err(|_| {
            entry_err(
                layer,
                raw,
                format!("hard link target {target:?} escapes the root"),
            )
        })?;
        let node = match self.nodes.get(&target) {
            None => {
                return Err(entry_err(
                    layer,
                    raw,
                    format!("hard link to missing {target:?}"),
                ))
            }
            Some(n) if n.kind == Kind::Dir => {
                return Err(entry_err(
                    layer,
                    raw,
                    format!("hard link to directory {target:?}"),
                ))
            }
            Some(n) => n.clone(),
        };
        if target != path {
            self.put(&path, node);
        }
        added.insert(path);
        Ok(())
    }

    /// Makes `path` a directory (creating parents) unless it is one already.
    pub fn ensure_dir(&mut self, path: &str, mode: u32) -> Result<()> {
        let mut cur = String::new();
        for c in path.split('/') {
            cur = join(&cur, c);
            match self.nodes.get(&cur).map(|n| &n.kind) {
                Some(Kind::Dir) => {}
                Some(_) => {
                    return Err(Error::Output {
                        path: format!("/{cur}"),
                        what: "must be a directory (lupine-init mounts on it or writes in it), but the image has something else there".into(),
                    })
                }
                None => {
                    let ino = self.ino();
                    let mtime = self.max_mtime();
                    self.nodes.insert(
                        cur.clone(),
                        Node {
                            kind: Kind::Dir,
                            mode,
                            uid: 0,
                            gid: 0,
                            mtime,
                            ino,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// Adds or replaces a root-owned regular file; its directory must exist.
    pub fn put_file(&mut self, path: &str, data: Vec<u8>, mode: u32) {
        self.add(path, Kind::File(Rc::new(data)), mode);
    }

    /// Adds or replaces a root-owned node with a new inode; its directory must exist.
    pub fn add(&mut self, path: &str, kind: Kind, mode: u32) {
        let ino = self.ino();
        let mtime = self.max_mtime();
        self.put(
            path,
            Node {
                kind,
                mode,
                uid: 0,
                gid: 0,
                mtime,
                ino,
            },
        );
    }

    /// The newest mtime in the tree: added files get it, so the output stays reproducible.
    pub fn max_mtime(&self) -> u64 {
        self.nodes.values().map(|n| n.mtime).max().unwrap_or(0)
    }

    /// Replaces the data of every link to inode `ino`.
    pub fn set_data(&mut self, ino: u64, data: Rc<Vec<u8>>) {
        for n in self.nodes.values_mut() {
            if n.ino == ino {
                n.kind = Kind::File(data.clone());
            }
        }
    }
}

fn not_tar(layer: &str, e: std::io::Error) -> Error {
    Error::Layer {
        layer: layer.into(),
        what: format!("not a valid tar archive: {e}"),
    }
}

/// The entry's name as it is in the archive.
fn entry_name<R: Read>(layer: &str, e: &tar::Entry<'_, R>) -> Result<String> {
    let raw_bytes = e.path_bytes().into_owned();
    String::from_utf8(raw_bytes.clone()).map_err(|_| {
        entry_err(
            layer,
            &String::from_utf8_lossy(&raw_bytes),
            "name is not UTF-8",
        )
    })
}

/// The entry's uid, gid and permission bits.
fn owner_and_mode(layer: &str, raw: &str, h: &tar::Header) -> Result<(u32, u32, u32)> {
    let num = |v: std::io::Result<u64>, what: &str| -> Result<u32> {
        v.ok()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| entry_err(layer, raw, format!("bad {what}")))
    };
    let (uid, gid) = (num(h.uid(), "uid")?, num(h.gid(), "gid")?);
    let mode = num(h.mode().map(u64::from), "mode")? & 0o7777;
    Ok((uid, gid, mode))
}

/// The kind of node an entry other than a hard link makes at `path`, with a file's data.
fn entry_kind<R: Read>(
    layer: &str,
    raw: &str,
    path: &str,
    e: &mut tar::Entry<'_, R>,
) -> Result<Kind> {
    let etype = e.header().entry_type();
    Ok(match etype {
        EntryType::Directory => Kind::Dir,
        EntryType::Regular | EntryType::Continuous => {
            // The header's size is untrusted: cap the up-front allocation.
            let mut data = Vec::with_capacity(e.size().min(1 << 24) as usize);
            e.read_to_end(&mut data).map_err(|e| not_tar(layer, e))?;
            Kind::File(Rc::new(data))
        }
        EntryType::Symlink => {
            let target = link_name(layer, raw, e)?;
            check_symlink(layer, raw, path, &target)?;
            Kind::Symlink(target)
        }
        EntryType::Char | EntryType::Block => {
            let h = e.header();
            let dev = |v: std::io::Result<Option<u32>>| v.ok().flatten().unwrap_or(0);
            let (ma, mi) = (dev(h.device_major()), dev(h.device_minor()));
            if etype == EntryType::Char {
                Kind::Char(ma, mi)
            } else {
                Kind::Block(ma, mi)
            }
        }
        EntryType::Fifo => Kind::Fifo,
        other => {
            return Err(entry_err(
                layer,
                raw,
                format!("unsupported tar entry type {other:?}"),
            ))
        }
    })
}

fn link_name<R: Read>(layer: &str, raw: &str, e: &tar::Entry<'_, R>) -> Result<String> {
    let l = e
        .link_name_bytes()
        .ok_or_else(|| entry_err(layer, raw, "link without a target"))?;
    String::from_utf8(l.into_owned()).map_err(|_| entry_err(layer, raw, "link target is not UTF-8"))
}

/// A relative symlink target must stay inside the root when resolved lexically from the link's
/// directory; absolute targets are root-relative inside the VM and always fine.
fn check_symlink(layer: &str, raw: &str, path: &str, target: &str) -> Result<()> {
    if target.is_empty() {
        return Err(entry_err(layer, raw, "empty symlink target"));
    }
    if target.starts_with('/') {
        return Ok(());
    }
    let mut depth = parent_of(path).split('/').filter(|c| !c.is_empty()).count();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if depth == 0 {
                    return Err(entry_err(
                        layer,
                        raw,
                        format!("symlink target {target:?} escapes the root"),
                    ));
                }
                depth -= 1;
            }
            _ => depth += 1,
        }
    }
    Ok(())
}

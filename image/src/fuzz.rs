//! The bodies of the fuzz targets `oci` and `layer` (`fuzz/fuzz_targets/`), shared with the
//! corpus replay test (`tests/fuzz_corpus.rs`) so that the two cannot drift apart. Each takes the
//! fuzzer's bytes, returns quietly when lupine-image refuses them, and panics when lupine-image
//! panics or a property fails.
//!
//! Input formats (a flags byte, then parts separated by [`SEP`]):
//!
//! - [`layer`]: up to four layers, each a tar stream (with its header checksums fixed up, unless
//!   [`NO_FIXUP`]: a mutated header then still reaches the applier), optionally gzip-compressed
//!   here ([`GZIP`]) or handed over as stored bytes for legacy sniffing ([`SNIFF`]). They are
//!   applied in order by the real applier ([`Tree::apply_layer`] through
//!   [`oci::uncompressed`]); a tree that is accepted is then written to a fresh directory by the
//!   real ext4 staging ([`ext4::stage`]) and as a cpio ([`cpio::write`]), and the written tree is
//!   checked: every entry inside the root and as the tree says, the directory beside the root
//!   untouched, no symlink followed while writing, no relative symlink that leads outside the
//!   root, cpio names relative without `..`.
//! - [`oci`]: `index.json` (or `manifest.json` with [`LEGACY`]), the image manifest, the image
//!   config, a nested index, then up to four layer blobs. Tokens in the documents are replaced by
//!   what the fuzzer cannot compute: `@C`, `@M`, `@N`, `@0`..`@3` by the digests of the config,
//!   manifest, nested index and layers (`blobs/sha256/HEX` member names with [`LEGACY`]), `#C`,
//!   `#M`, `#N`, `#0`..`#3` by their sizes, `%0`..`%3` by the layers' diff_ids. The layout is
//!   written to a fresh directory (or as a `docker save` tarball, [`TARBALL`]) and read by
//!   [`crate::read_tree`], with `--ref latest` when [`REF`]; an accepted image's config is then
//!   turned into a manifest.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs;
use std::io::{Cursor, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::layers::{Kind, Tree};
use crate::{cpio, ext4, manifest, oci};

/// Separates the parts of an input.
pub const SEP: &[u8] = b"\n=====\n";

/// `layer` and `oci`: gzip the layers here (media type `tar+gzip`).
pub const GZIP: u8 = 1;
/// `layer`: hand the bytes over as a legacy layer whose compression is sniffed.
pub const SNIFF: u8 = 2;
/// `layer` and `oci`: leave the tar header checksums as they are.
pub const NO_FIXUP: u8 = 4;
/// `oci`: a `docker save` tarball rather than a directory.
pub const TARBALL: u8 = 8;
/// `oci`: a legacy `manifest.json` rather than an OCI `index.json`.
pub const LEGACY: u8 = 16;
/// `oci`: ask for the image named `latest`.
pub const REF: u8 = 32;

const MAX_LAYERS: usize = 4;

/// An input: the flags byte and the parts.
pub fn input(flags: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut v = vec![flags];
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            v.extend_from_slice(SEP);
        }
        v.extend_from_slice(p);
    }
    v
}

fn split(data: &[u8]) -> Vec<&[u8]> {
    // Byte by byte rather than with slice comparisons: libFuzzer intercepts memcmp.
    let mut parts = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < data.len() {
        if data[i] == SEP[0] && data[i..].starts_with(SEP) {
            parts.push(&data[start..i]);
            i += SEP.len();
            start = i;
        } else {
            i += 1;
        }
    }
    parts.push(&data[start..]);
    parts
}

/// A fresh directory for one run, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!(
            "lupine-fuzz-{what}.{}.{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("harness: cannot create {}: {e}", dir.display()));
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Recomputes the checksum of every header block of a tar stream, skipping each entry's data as
/// its header's size says; stops at the first zero block.
pub fn fix_tar_checksums(raw: &[u8]) -> Vec<u8> {
    let mut v = raw.to_vec();
    let mut pos = 0usize;
    while let Some(block) = v.get_mut(pos..pos.saturating_add(512)) {
        if block.iter().all(|&b| b == 0) {
            break;
        }
        let mut h = tar::Header::new_old();
        h.as_mut_bytes().copy_from_slice(block);
        h.set_cksum();
        block.copy_from_slice(h.as_bytes());
        let size = h.entry_size().unwrap_or(0);
        let data = usize::try_from(size.div_ceil(512).saturating_mul(512)).unwrap_or(usize::MAX);
        pos = pos.saturating_add(512).saturating_add(data);
    }
    v
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("harness: gzip into memory");
    e.finish().expect("harness: gzip into memory")
}

// ---------------------------------------------------------------------------------------------
// layer

/// The `layer` target; whether the layers were accepted.
pub fn layer(data: &[u8]) -> bool {
    let Some((&flags, rest)) = data.split_first() else {
        return false;
    };
    let mut tree = Tree::new();
    for (i, raw) in split(rest).into_iter().take(MAX_LAYERS).enumerate() {
        let tar = if flags & NO_FIXUP == 0 {
            fix_tar_checksums(raw)
        } else {
            raw.to_vec()
        };
        let (stored, compression) = if flags & GZIP != 0 {
            (gzip(&tar), oci::Compression::Gzip)
        } else if flags & SNIFF != 0 {
            (tar, oci::Compression::Sniff)
        } else {
            (tar, oci::Compression::None)
        };
        let Ok(r) = oci::uncompressed(Cursor::new(stored), compression) else {
            return false;
        };
        let mut r = oci::Hashing::new(r);
        if tree.apply_layer(&format!("layer{i}"), &mut r).is_err() {
            // Refused: lupine-image stops here too.
            return false;
        }
        let _ = std::io::copy(&mut r, &mut std::io::sink());
    }
    check_tree(&tree);
    check_written(&tree);
    true
}

/// What the tree itself says: names normalised, every ancestor a directory.
fn check_tree(tree: &Tree) {
    assert!(
        matches!(tree.nodes.get("").map(|n| &n.kind), Some(Kind::Dir)),
        "the root is not a directory"
    );
    for path in tree.nodes.keys().filter(|p| !p.is_empty()) {
        assert!(
            path.split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".."),
            "tree path {path:?} is not normalised"
        );
        let mut cur = String::new();
        let comps: Vec<&str> = path.split('/').collect();
        for c in &comps[..comps.len() - 1] {
            cur = if cur.is_empty() {
                c.to_string()
            } else {
                format!("{cur}/{c}")
            };
            assert!(
                matches!(tree.nodes.get(&cur).map(|n| &n.kind), Some(Kind::Dir)),
                "{path:?}: ancestor {cur:?} is not a directory in the tree"
            );
        }
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Every entry under `root` (symlinks not followed), by path relative to it.
fn walk(root: &Path, rel: &str, out: &mut BTreeMap<String, fs::Metadata>) {
    let dir = root.join(rel);
    let entries = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("harness: cannot list {}: {e}", dir.display()));
    for e in entries {
        let e = e.unwrap_or_else(|e| panic!("harness: cannot list {}: {e}", dir.display()));
        let name = e.file_name().into_string().unwrap_or_else(|n| {
            panic!("written name {n:?} in {rel:?} is not UTF-8, the tree's are")
        });
        let p = join(rel, &name);
        let m = fs::symlink_metadata(root.join(&p))
            .unwrap_or_else(|e| panic!("harness: lstat {p:?}: {e}"));
        let is_dir = m.file_type().is_dir();
        out.insert(p.clone(), m);
        if is_dir {
            walk(root, &p, out);
        }
    }
}

/// Resolves the relative symlink `target` of the entry `link` under `root` on the host, as the
/// kernel would, following the relative symlinks it meets (absolute ones are root-relative in
/// the VM: not followed); whether it goes above `root`. Returns the symlinks followed.
fn escapes_on_disk(root: &Path, link: &str, target: &str) -> Option<Vec<String>> {
    let mut cur: Vec<String> = link.split('/').map(String::from).collect();
    cur.pop();
    let mut pending: VecDeque<String> = target.split('/').map(String::from).collect();
    let mut followed = Vec::new();
    while let Some(c) = pending.pop_front() {
        match c.as_str() {
            "" | "." => {}
            ".." => {
                if cur.pop().is_none() {
                    return Some(followed);
                }
            }
            name => {
                cur.push(name.to_string());
                let p = root.join(cur.join("/"));
                let is_link = fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink());
                if !is_link {
                    continue;
                }
                if followed.len() >= 40 {
                    return None; // ELOOP: leads nowhere
                }
                let t = fs::read_link(&p).expect("harness: readlink");
                let t = t.to_str().expect("harness: symlink target is not UTF-8");
                followed.push(cur.join("/"));
                if t.starts_with('/') {
                    return None;
                }
                cur.pop();
                for c in t.split('/').rev() {
                    pending.push_front(c.to_string());
                }
            }
        }
    }
    None
}

/// Writes the tree with the ext4 staging code and as a cpio and checks what was written.
fn check_written(tree: &Tree) {
    let s = Scratch::new("layer");
    let root = s.0.join("root");
    let beside = s.0.join("beside");
    fs::create_dir(&root).expect("harness: mkdir root");
    fs::create_dir(&beside).expect("harness: mkdir beside");
    // A failure to write (a name too long for the host, say) is an error, not a property.
    let staged = ext4::stage(tree, &root).is_ok();

    // Nothing beside the root.
    let mut around: Vec<String> = fs::read_dir(&s.0)
        .expect("harness: list scratch")
        .map(|e| {
            e.expect("harness: list scratch")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    around.sort();
    assert_eq!(
        around,
        ["beside", "root"],
        "entries written beside the root"
    );
    assert!(
        fs::read_dir(&beside)
            .expect("harness: list")
            .next()
            .is_none(),
        "an entry was written into the directory beside the root"
    );

    let mut disk = BTreeMap::new();
    walk(&root, "", &mut disk);
    let root_dev = fs::symlink_metadata(&root)
        .expect("harness: lstat root")
        .dev();
    let mut inodes: HashMap<u64, u64> = HashMap::new();
    for (p, m) in &disk {
        assert_eq!(m.dev(), root_dev, "{p:?} is on another file system");
        let node = tree
            .nodes
            .get(p)
            .unwrap_or_else(|| panic!("{p:?} was written but is not in the tree"));
        let ft = m.file_type();
        match &node.kind {
            Kind::Dir => assert!(
                ft.is_dir(),
                "{p:?}: a directory in the tree, {ft:?} on disk"
            ),
            Kind::File(d) => {
                assert!(ft.is_file(), "{p:?}: a file in the tree, {ft:?} on disk");
                let on_disk = fs::read(root.join(p)).expect("harness: read");
                assert!(
                    on_disk == **d,
                    "{p:?}: the written data differ from the tree's"
                );
                // Links to one inode in the tree are links to one inode on disk.
                let ino = *inodes.entry(node.ino).or_insert(m.ino());
                assert_eq!(ino, m.ino(), "{p:?}: hard link written as another inode");
            }
            Kind::Symlink(t) => {
                assert!(
                    ft.is_symlink(),
                    "{p:?}: a symlink in the tree, {ft:?} on disk"
                );
                let on_disk = fs::read_link(root.join(p)).expect("harness: readlink");
                assert_eq!(on_disk, Path::new(t), "{p:?}: symlink target");
                if !t.starts_with('/') {
                    if let Some(via) = escapes_on_disk(&root, p, t) {
                        panic!(
                            "{p:?} -> {t:?} leads outside the root on the host (following {via:?})"
                        );
                    }
                }
            }
            Kind::Char(..) | Kind::Block(..) | Kind::Fifo => {
                panic!("{p:?}: a device or fifo was staged (debugfs makes those)")
            }
        }
    }
    if staged {
        for (p, n) in tree.nodes.iter().filter(|(p, _)| !p.is_empty()) {
            let stageable = matches!(n.kind, Kind::Dir | Kind::File(_) | Kind::Symlink(_));
            assert_eq!(
                disk.contains_key(p),
                stageable,
                "{p:?} ({:?}) written: {}; a symlink followed while writing?",
                n.kind,
                disk.contains_key(p)
            );
        }
    }

    // The cpio: every name relative, no "..", one member per node.
    let mut archive = Vec::new();
    if cpio::write(tree, &mut archive).is_ok() {
        let names = cpio_names(&archive);
        assert_eq!(names.last().map(String::as_str), Some("TRAILER!!!"));
        for n in &names[..names.len() - 1] {
            assert!(
                n == "." || (!n.starts_with('/') && n.split('/').all(|c| c != ".." && c != ".")),
                "cpio member name {n:?} leaves the root"
            );
        }
        assert_eq!(names.len() - 1, tree.nodes.len(), "cpio members");
    }
}

/// The member names of a newc cpio archive.
fn cpio_names(a: &[u8]) -> Vec<String> {
    let field = |at: usize, i: usize| -> usize {
        let s = std::str::from_utf8(&a[at + 6 + 8 * i..at + 14 + 8 * i]).expect("cpio: hex");
        usize::from_str_radix(s, 16).expect("cpio: hex")
    };
    let pad = |v: usize| v.div_ceil(4) * 4;
    let mut names = Vec::new();
    let mut at = 0;
    while at + 110 <= a.len() {
        assert_eq!(&a[at..at + 6], b"070701", "cpio magic at {at}");
        let (filesize, namesize) = (field(at, 6), field(at, 11));
        let name = &a[at + 110..at + 110 + namesize - 1];
        names.push(String::from_utf8(name.to_vec()).expect("cpio: name"));
        at = pad(at + 110 + namesize) + pad(filesize);
        if name == b"TRAILER!!!" {
            break;
        }
    }
    names
}

// ---------------------------------------------------------------------------------------------
// oci

/// Replaces every token of `subst` in `doc`.
fn substitute(doc: &[u8], subst: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(doc.len());
    let mut i = 0;
    'outer: while i < doc.len() {
        if !matches!(doc[i], b'@' | b'#' | b'%') {
            out.push(doc[i]);
            i += 1;
            continue;
        }
        for (token, value) in subst {
            if doc[i..].starts_with(token.as_bytes()) {
                out.extend_from_slice(value.as_bytes());
                i += token.len();
                continue 'outer;
            }
        }
        out.push(doc[i]);
        i += 1;
    }
    out
}

/// The `oci` target; whether the image was accepted.
pub fn oci(data: &[u8]) -> bool {
    let Some((&flags, rest)) = data.split_first() else {
        return false;
    };
    let parts = split(rest);
    let part = |i: usize| parts.get(i).copied().unwrap_or_default();
    let legacy = flags & LEGACY != 0;
    // How a blob is named in the documents.
    let name = |digest: &str| {
        if legacy {
            format!("blobs/sha256/{}", &digest[7..])
        } else {
            digest.to_string()
        }
    };
    let mut subst: Vec<(String, String)> = Vec::new();
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, raw) in parts.iter().skip(4).take(MAX_LAYERS).enumerate() {
        let tar = if flags & NO_FIXUP == 0 {
            fix_tar_checksums(raw)
        } else {
            raw.to_vec()
        };
        let diff_id = oci::sha256_digest(&tar);
        let blob = if flags & GZIP != 0 { gzip(&tar) } else { tar };
        let d = oci::sha256_digest(&blob);
        subst.push((format!("@{i}"), name(&d)));
        subst.push((format!("#{i}"), blob.len().to_string()));
        subst.push((format!("%{i}"), diff_id));
        blobs.push((d, blob));
    }
    for (i, letter) in [(2, 'C'), (1, 'M'), (3, 'N')] {
        let doc = substitute(part(i), &subst);
        let d = oci::sha256_digest(&doc);
        subst.push((format!("@{letter}"), name(&d)));
        subst.push((format!("#{letter}"), doc.len().to_string()));
        blobs.push((d, doc));
    }
    let top = substitute(part(0), &subst);
    let mut files: Vec<(String, Vec<u8>)> = if legacy {
        vec![("manifest.json".into(), top)]
    } else {
        vec![
            (
                "oci-layout".into(),
                br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            ),
            ("index.json".into(), top),
        ]
    };
    for (d, b) in blobs {
        files.push((format!("blobs/sha256/{}", &d[7..]), b));
    }

    let s = Scratch::new("oci");
    let image = if flags & TARBALL != 0 {
        let p = s.0.join("image.tar");
        let mut b = tar::Builder::new(Vec::new());
        for (n, data) in &files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, n, &data[..])
                .expect("harness: tar into memory");
        }
        let bytes = b.into_inner().expect("harness: tar into memory");
        fs::write(&p, bytes).expect("harness: write the tarball");
        p
    } else {
        let p = s.0.join("image");
        fs::create_dir_all(p.join("blobs/sha256")).expect("harness: mkdir");
        for (n, data) in &files {
            fs::write(p.join(n), data).expect("harness: write a blob");
        }
        p
    };
    let want_ref = (flags & REF != 0).then_some("latest");
    let Ok((img, tree)) = crate::read_tree(&image, want_ref) else {
        return false;
    };
    check_tree(&tree);
    let mut config = img.config.clone();
    manifest::ConfigOverrides::default().apply(&mut config);
    if let Ok(m) = manifest::build(&img.config_name, &config, None) {
        assert!(
            m["app"]["path"].is_string(),
            "manifest without app.path: {m}"
        );
    }
    true
}

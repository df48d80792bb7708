//! Shared by the integration tests: building small layers, OCI layouts and docker-save
//! tarballs; finding lupine-init; running lupine-image; reading ext4 images with debugfs.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
pub use test_support::lupine_init;

pub fn sha(data: &[u8]) -> String {
    let h = Sha256::digest(data);
    format!(
        "sha256:{}",
        h.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// A layer tar built entry by entry, with raw names (so tests can write `../x`).
pub struct LayerTar {
    b: tar::Builder<Vec<u8>>,
}

impl Default for LayerTar {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerTar {
    pub fn new() -> Self {
        LayerTar {
            b: tar::Builder::new(Vec::new()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn raw(
        mut self,
        path: &str,
        t: tar::EntryType,
        mode: u32,
        uid: u64,
        gid: u64,
        data: &[u8],
        link: &str,
        dev: (u32, u32),
    ) -> Self {
        let mut h = tar::Header::new_gnu();
        {
            let g = h.as_gnu_mut().unwrap();
            g.name[..path.len()].copy_from_slice(path.as_bytes());
            g.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(t);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        if matches!(t, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(dev.0).unwrap();
            h.set_device_minor(dev.1).unwrap();
        }
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }
    pub fn dir(self, p: &str, mode: u32) -> Self {
        self.raw(p, tar::EntryType::Directory, mode, 0, 0, b"", "", (0, 0))
    }
    pub fn file(self, p: &str, data: &[u8], mode: u32) -> Self {
        self.raw(p, tar::EntryType::Regular, mode, 0, 0, data, "", (0, 0))
    }
    pub fn owned(self, p: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> Self {
        self.raw(p, tar::EntryType::Regular, mode, uid, gid, data, "", (0, 0))
    }
    pub fn symlink(self, p: &str, target: &str) -> Self {
        self.raw(p, tar::EntryType::Symlink, 0o777, 0, 0, b"", target, (0, 0))
    }
    pub fn hardlink(self, p: &str, target: &str) -> Self {
        self.raw(p, tar::EntryType::Link, 0o644, 0, 0, b"", target, (0, 0))
    }
    pub fn chardev(self, p: &str, major: u32, minor: u32, mode: u32) -> Self {
        self.raw(p, tar::EntryType::Char, mode, 0, 0, b"", "", (major, minor))
    }
    pub fn fifo(self, p: &str, mode: u32) -> Self {
        self.raw(p, tar::EntryType::Fifo, mode, 0, 0, b"", "", (0, 0))
    }
    pub fn whiteout(self, p: &str) -> Self {
        self.file(p, b"", 0o644)
    }
    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// An image: layers (uncompressed tars), the config's `config` section.
pub struct Spec {
    pub layers: Vec<Vec<u8>>,
    pub config: Value,
    /// Store layers gzip-compressed in OCI layouts.
    pub gzip: bool,
}

impl Spec {
    pub fn new(layers: Vec<Vec<u8>>, config: Value) -> Self {
        Spec {
            layers,
            config,
            gzip: true,
        }
    }
    fn config_blob(&self) -> Vec<u8> {
        let diff_ids: Vec<String> = self.layers.iter().map(|l| sha(l)).collect();
        serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux", "config": self.config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids}
        }))
        .unwrap()
    }
}

/// Stores `data` under `dir/blobs/sha256`; its digest and size.
pub fn put_blob(dir: &Path, data: &[u8]) -> (String, u64) {
    let d = sha(data);
    let p = dir.join("blobs/sha256").join(&d[7..]);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
    (d, data.len() as u64)
}

pub fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256").join(&digest[7..])
}

/// Writes the image manifest blob for `spec`; returns its descriptor.
fn oci_manifest(dir: &Path, spec: &Spec, media_type: Option<&str>) -> Value {
    let (cd, cs) = put_blob(dir, &spec.config_blob());
    let layers: Vec<Value> = spec
        .layers
        .iter()
        .map(|l| {
            let (data, mt) = if spec.gzip {
                (gzip(l), "application/vnd.oci.image.layer.v1.tar+gzip")
            } else {
                (l.clone(), "application/vnd.oci.image.layer.v1.tar")
            };
            let (d, s) = put_blob(dir, &data);
            json!({"mediaType": media_type.unwrap_or(mt), "digest": d, "size": s})
        })
        .collect();
    let m = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": layers
    });
    let (d, s) = put_blob(dir, &serde_json::to_vec(&m).unwrap());
    json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": s})
}

fn write_index(dir: &Path, manifests: Vec<Value>) {
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": manifests})).unwrap(),
    )
    .unwrap();
}

/// An OCI layout at `dir` holding one image (tagged `ref_name`).
pub fn oci(dir: &Path, spec: &Spec) {
    oci_tagged(dir, &[(spec, "latest", "amd64")], None);
}

/// Several images in one layout, each with a ref name and an architecture; with `nest`, they
/// sit in a nested image index that the top index points to under that ref name.
pub fn oci_tagged(dir: &Path, images: &[(&Spec, &str, &str)], nest: Option<&str>) {
    fs::create_dir_all(dir).unwrap();
    let mut descs = Vec::new();
    for (spec, name, arch) in images {
        let mut d = oci_manifest(dir, spec, None);
        if nest.is_none() {
            d["annotations"] = json!({"org.opencontainers.image.ref.name": name});
        }
        d["platform"] = json!({"os": "linux", "architecture": arch});
        descs.push(d);
    }
    if let Some(tag) = nest {
        let idx = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": descs});
        let (d, s) = put_blob(dir, &serde_json::to_vec(&idx).unwrap());
        descs = vec![
            json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d, "size": s,
            "annotations": {"org.opencontainers.image.ref.name": tag}}),
        ];
    }
    write_index(dir, descs);
}

/// An OCI layout whose layers carry `media_type`.
pub fn oci_with_media_type(dir: &Path, spec: &Spec, media_type: &str) {
    fs::create_dir_all(dir).unwrap();
    let d = oci_manifest(dir, spec, Some(media_type));
    write_index(dir, vec![d]);
}

/// The single image manifest of a layout: (path of its blob, parsed).
pub fn manifest_of(dir: &Path) -> (PathBuf, Value) {
    let idx: Value = serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let d = idx["manifests"][0]["digest"].as_str().unwrap().to_string();
    let p = blob_path(dir, &d);
    let v = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
    (p, v)
}

/// Rewrites the single image manifest (and the index descriptor that points to it).
pub fn edit_manifest(dir: &Path, f: impl FnOnce(&mut Value)) {
    let (_, mut m) = manifest_of(dir);
    f(&mut m);
    let (d, s) = put_blob(dir, &serde_json::to_vec(&m).unwrap());
    let mut idx: Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    idx["manifests"][0]["digest"] = json!(d);
    idx["manifests"][0]["size"] = json!(s);
    fs::write(dir.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
}

/// Tars up a directory (an OCI layout) the way docker ≥ 25 `docker save` does.
pub fn tar_dir(dir: &Path, out: &Path) {
    let mut b = tar::Builder::new(fs::File::create(out).unwrap());
    b.append_dir_all(".", dir).unwrap();
    b.finish().unwrap();
}

/// A legacy `docker save` tarball: manifest.json, `<hex>.json` config, `<id>/layer.tar`.
pub fn docker_save(out: &Path, spec: &Spec, tag: &str) {
    let mut b = tar::Builder::new(fs::File::create(out).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data).unwrap();
    };
    let config = spec.config_blob();
    let cname = format!("{}.json", &sha(&config)[7..]);
    add(&cname, &config);
    let mut names = Vec::new();
    for (i, l) in spec.layers.iter().enumerate() {
        let n = format!("layer{i:02}/layer.tar");
        add(&n, l);
        names.push(n);
    }
    let m = json!([{"Config": cname, "RepoTags": [tag], "Layers": names}]);
    add("manifest.json", &serde_json::to_vec(&m).unwrap());
    b.into_inner().unwrap();
}

/// A fresh scratch directory under the target dir (removed by the test on success).
pub fn scratch(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "lupine-image-test.{}.{name}.{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

pub fn options(image: &Path, output: &Path) -> lupine_image::Options {
    lupine_image::Options::new(
        image.to_path_buf(),
        output.to_path_buf(),
        lupine_init().unwrap(),
    )
}

/// Names in a directory (for "nothing left behind" checks).
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

pub fn debugfs(img: &Path, req: &str) -> String {
    let o: Output = Command::new("debugfs")
        .arg("-R")
        .arg(req)
        .arg(img)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `debugfs ls -l DIR`: name → (full mode, uid, gid, inode).
pub fn ext4_ls(img: &Path, dir: &str) -> BTreeMap<String, (u32, u32, u32, u64)> {
    let mut m = BTreeMap::new();
    for l in debugfs(img, &format!("ls -l \"{dir}\"")).lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() < 9 {
            continue;
        }
        let mode = u32::from_str_radix(w[1], 8).unwrap();
        m.insert(
            w[w.len() - 1].to_string(),
            (
                mode,
                w[3].parse().unwrap(),
                w[4].parse().unwrap(),
                w[0].parse().unwrap(),
            ),
        );
    }
    m
}

/// The contents of a file in an ext4 image.
pub fn ext4_cat(img: &Path, path: &str) -> Vec<u8> {
    let o = Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat \"{path}\""))
        .arg(img)
        .output()
        .unwrap();
    o.stdout
}

/// Extracts a cpio archive with GNU cpio (as root here, so owners are kept).
pub fn cpio_extract(archive: &Path, dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cpio -idm --no-absolute-filenames --quiet < '{}'",
            archive.display()
        ))
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(st.success());
}

/// Two layers exercising replacement, whiteouts, opaque directories and metadata.
pub fn two_layers() -> Vec<Vec<u8>> {
    let l1 = LayerTar::new()
        .dir("bin", 0o755)
        .file("bin/app", b"app v1", 0o755)
        .dir("etc", 0o755)
        .file("etc/keep", b"keep", 0o644)
        .file("etc/gone", b"gone", 0o644)
        .dir("opq", 0o755)
        .file("opq/lower", b"lower", 0o644)
        .dir("swap", 0o755)
        .file("swap/inner", b"i", 0o644)
        .file("flip", b"file", 0o644)
        .dir("work", 0o700)
        .finish();
    let l2 = LayerTar::new()
        .file("bin/app", b"app v2", 0o755)
        .whiteout("etc/.wh.gone")
        .whiteout("opq/.wh..wh..opq")
        .file("opq/upper", b"upper", 0o644)
        .file("swap", b"now a file", 0o600)
        .dir("flip", 0o750)
        .file("flip/child", b"c", 0o644)
        .owned("bin/suid", b"s", 0o4755, 0, 0)
        .owned("bin/sgid", b"g", 0o2711, 1000, 50)
        .dir("shared", 0o1777)
        .owned("home-file", b"h", 0o640, 1234, 5678)
        .symlink("bin/sh", "/bin/busybox")
        .symlink("etc/rel", "../bin/app")
        .hardlink("bin/app-link", "bin/app")
        .chardev("dev-null", 1, 3, 0o666)
        .fifo("pipe", 0o620)
        .dir("sp ace", 0o755)
        .owned("sp ace/a file", b"spaced", 0o600, 3, 4)
        .fifo("sp ace/a fifo", 0o640)
        .finish();
    vec![l1, l2]
}

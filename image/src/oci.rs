//! Reading the input image: an OCI image layout (directory, or inside a `docker save` tarball)
//! or a legacy `docker save` tarball. Every blob is checked against its digest (and size) before
//! it is used; layer contents are also checked against the config's `rootfs.diff_ids`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{io, Error, Result};

const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Where the image's files live: a directory, or members of a tarball (read in place).
enum Store {
    Dir(PathBuf),
    Tar {
        file: PathBuf,
        members: HashMap<String, (u64, u64)>,
    },
}

impl Store {
    fn open(path: &Path) -> Result<Store> {
        let meta = std::fs::metadata(path).map_err(io(path.display(), "read"))?;
        if meta.is_dir() {
            return Ok(Store::Dir(path.to_path_buf()));
        }
        let f = File::open(path).map_err(io(path.display(), "open"))?;
        let mut ar = tar::Archive::new(f);
        let mut members = HashMap::new();
        let bad = |e: io::Error| Error::Image {
            file: path.display().to_string(),
            what: format!("not an OCI layout directory nor a readable tar archive: {e}"),
        };
        for entry in ar.entries().map_err(bad)? {
            let entry = entry.map_err(bad)?;
            if entry.header().entry_type().is_file() {
                let name = entry.path().map_err(bad)?.to_string_lossy().into_owned();
                let name = name.trim_start_matches("./").to_string();
                members.insert(name, (entry.raw_file_position(), entry.size()));
            }
        }
        Ok(Store::Tar {
            file: path.to_path_buf(),
            members,
        })
    }

    fn describe(&self, name: &str) -> String {
        match self {
            Store::Dir(d) => d.join(name).display().to_string(),
            Store::Tar { file, .. } => format!("{}:{name}", file.display()),
        }
    }

    /// A reader over one member, with its size, or None when it does not exist.
    fn reader(&self, name: &str) -> Result<Option<(Box<dyn Read>, u64)>> {
        match self {
            Store::Dir(d) => {
                let p = d.join(name);
                match File::open(&p) {
                    Ok(f) => {
                        let meta = f.metadata().map_err(io(p.display(), "read"))?;
                        if !meta.is_file() {
                            return Ok(None);
                        }
                        Ok(Some((Box::new(f), meta.len())))
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io(p.display(), "open")(e)),
                }
            }
            Store::Tar { file, members } => {
                let Some(&(off, size)) = members.get(name) else {
                    return Ok(None);
                };
                let mut f = File::open(file).map_err(io(file.display(), "open"))?;
                f.seek(SeekFrom::Start(off))
                    .map_err(io(file.display(), "seek"))?;
                Ok(Some((Box::new(f.take(size)), size)))
            }
        }
    }

    fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let Some((mut r, _)) = self.reader(name)? else {
            return Ok(None);
        };
        let mut buf = Vec::new();
        r.read_to_end(&mut buf)
            .map_err(io(self.describe(name), "read"))?;
        Ok(Some(buf))
    }
}

/// `blobs/sha256/HEX` for a digest; anything but a well-formed sha256 digest is refused, which
/// also keeps a digest from naming a path outside the blob store.
fn blob_name(digest: &str) -> Result<String> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if is_hex64(hex) => Ok(format!("blobs/sha256/{hex}")),
        _ => Err(Error::Image {
            file: digest.into(),
            what: "not a sha256 digest (sha256:<64 lowercase hex digits>)".into(),
        }),
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

fn check(digest: &str, size: Option<u64>, actual_digest: String, actual_size: u64) -> Result<()> {
    if let Some(expected) = size {
        if expected != actual_size {
            return Err(Error::Size {
                digest: digest.into(),
                expected,
                actual: actual_size,
            });
        }
    }
    if actual_digest != digest {
        return Err(Error::Digest {
            digest: digest.into(),
            actual: actual_digest,
        });
    }
    Ok(())
}

fn parse_json(file: &str, data: &[u8]) -> Result<Value> {
    serde_json::from_slice(data).map_err(|e| Error::Json {
        file: file.into(),
        what: e.to_string(),
    })
}

fn json_err(file: &str, what: impl Into<String>) -> Error {
    Error::Json {
        file: file.into(),
        what: what.into(),
    }
}

/// How a layer's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    /// Legacy docker save: sniff the gzip magic.
    Sniff,
}

#[derive(Debug, Clone)]
pub struct Layer {
    /// The name used in messages: the blob digest, or the diff_id for legacy layers.
    pub digest: String,
    member: String,
    /// Checked before the layer is read (None for legacy layers, which have only a diff_id).
    blob: Option<(String, Option<u64>)>,
    pub diff_id: Option<String>,
    pub compression: Compression,
}

pub struct Image {
    store: Store,
    /// Where the config came from, for messages.
    pub config_name: String,
    pub config: Value,
    pub layers: Vec<Layer>,
}

/// A candidate image manifest found in an index.
struct Candidate {
    digest: String,
    size: Option<u64>,
    ref_name: Option<String>,
    platform: Option<(String, String)>,
}

impl Image {
    /// Opens an OCI layout directory or a docker-save tarball and picks one image.
    pub fn open(path: &Path, want_ref: Option<&str>) -> Result<Image> {
        let store = Store::open(path)?;
        if store.reader("index.json")?.is_some() && store.reader("oci-layout")?.is_some() {
            return Self::open_oci(store, want_ref);
        }
        if store.reader("manifest.json")?.is_some() {
            return Self::open_legacy(store, want_ref);
        }
        Err(Error::Image {
            file: path.display().to_string(),
            what: "neither an OCI image layout (oci-layout + index.json), a docker save tarball (manifest.json), nor a root filesystem directory".into(),
        })
    }

    /// Reads a whole blob and checks its digest and size.
    fn blob(store: &Store, digest: &str, size: Option<u64>) -> Result<Vec<u8>> {
        let name = blob_name(digest)?;
        let data = store.read(&name)?.ok_or_else(|| Error::MissingBlob {
            digest: digest.into(),
        })?;
        check(digest, size, sha256_digest(&data), data.len() as u64)?;
        Ok(data)
    }

    fn open_oci(store: Store, want_ref: Option<&str>) -> Result<Image> {
        let file = store.describe("index.json");
        let data = store.read("index.json")?.unwrap_or_default();
        let index = parse_json(&file, &data)?;
        let mut found = Vec::new();
        collect(&store, &file, &index, None, &mut found, 0)?;
        let chosen = choose(&file, found, want_ref)?;
        let mfile = format!("manifest {}", chosen.digest);
        let manifest = parse_json(&mfile, &Self::blob(&store, &chosen.digest, chosen.size)?)?;
        let (cdigest, csize) = descriptor(&mfile, &manifest["config"])?;
        let config_name = format!("config {cdigest}");
        let config = parse_json(&config_name, &Self::blob(&store, &cdigest, csize)?)?;
        let diff_ids = diff_ids(&config_name, &config)?;
        let descs = manifest["layers"]
            .as_array()
            .ok_or_else(|| json_err(&mfile, "\"layers\" is not an array"))?;
        if descs.len() != diff_ids.len() {
            return Err(json_err(
                &mfile,
                format!(
                    "{} layers but the config lists {} diff_ids",
                    descs.len(),
                    diff_ids.len()
                ),
            ));
        }
        let mut layers = Vec::new();
        for (d, diff_id) in descs.iter().zip(diff_ids) {
            let (digest, size) = descriptor(&mfile, d)?;
            let media_type = d["mediaType"].as_str().unwrap_or("(none)");
            let compression = match media_type {
                "application/vnd.oci.image.layer.v1.tar"
                | "application/vnd.oci.image.layer.nondistributable.v1.tar"
                | "application/vnd.docker.image.rootfs.diff.tar" => Compression::None,
                "application/vnd.oci.image.layer.v1.tar+gzip"
                | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
                | "application/vnd.docker.image.rootfs.diff.tar.gzip"
                | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Compression::Gzip,
                other => {
                    return Err(Error::MediaType {
                        digest,
                        media_type: other.into(),
                    })
                }
            };
            layers.push(Layer {
                member: blob_name(&digest)?,
                blob: Some((digest.clone(), size)),
                digest,
                diff_id: Some(diff_id),
                compression,
            });
        }
        Ok(Image {
            store,
            config_name,
            config,
            layers,
        })
    }

    fn open_legacy(store: Store, want_ref: Option<&str>) -> Result<Image> {
        let file = store.describe("manifest.json");
        let data = store.read("manifest.json")?.unwrap_or_default();
        let list = parse_json(&file, &data)?;
        let list = list
            .as_array()
            .ok_or_else(|| json_err(&file, "not an array of images"))?;
        let tags = |m: &Value| -> Vec<String> {
            m["RepoTags"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let picked: Vec<&Value> = match want_ref {
            Some(r) => list
                .iter()
                .filter(|m| tags(m).iter().any(|t| t == r))
                .collect(),
            None => list.iter().collect(),
        };
        let m = match picked.as_slice() {
            [m] => *m,
            [] => {
                return Err(Error::Ambiguous {
                    file,
                    what: match want_ref {
                        Some(r) => format!("no image tagged {r:?}"),
                        None => "lists no image".into(),
                    },
                })
            }
            _ => {
                let all: Vec<String> = picked.iter().flat_map(|m| tags(m)).collect();
                return Err(Error::Ambiguous {
                    file,
                    what: format!(
                        "{} images ({}): choose one with --ref",
                        picked.len(),
                        all.join(", ")
                    ),
                });
            }
        };
        let cname = m["Config"]
            .as_str()
            .ok_or_else(|| json_err(&file, "\"Config\" is not a string"))?;
        let cdata = store.read(cname)?.ok_or_else(|| Error::Image {
            file: store.describe(cname),
            what: "config missing from the tarball".into(),
        })?;
        // The config's name is its digest (HEX.json or blobs/sha256/HEX).
        let stem = cname
            .trim_end_matches(".json")
            .rsplit('/')
            .next()
            .unwrap_or_default();
        if is_hex64(stem) {
            check(
                &format!("sha256:{stem}"),
                None,
                sha256_digest(&cdata),
                cdata.len() as u64,
            )?;
        }
        let config_name = store.describe(cname);
        let config = parse_json(&config_name, &cdata)?;
        let diff_ids = diff_ids(&config_name, &config)?;
        let names = m["Layers"]
            .as_array()
            .ok_or_else(|| json_err(&file, "\"Layers\" is not an array"))?;
        if names.len() != diff_ids.len() {
            return Err(json_err(
                &file,
                format!(
                    "{} layers but the config lists {} diff_ids",
                    names.len(),
                    diff_ids.len()
                ),
            ));
        }
        let mut layers = Vec::new();
        for (n, diff_id) in names.iter().zip(diff_ids) {
            let member = n
                .as_str()
                .ok_or_else(|| json_err(&file, "a layer name is not a string"))?
                .trim_start_matches("./")
                .to_string();
            // Newer docker stores legacy-listed layers as content-addressed blobs: check those too.
            let blob = member
                .strip_prefix("blobs/sha256/")
                .filter(|h| is_hex64(h))
                .map(|h| (format!("sha256:{h}"), None));
            layers.push(Layer {
                digest: blob
                    .as_ref()
                    .map(|b| b.0.clone())
                    .unwrap_or_else(|| diff_id.clone()),
                member,
                blob,
                diff_id: Some(diff_id),
                compression: Compression::Sniff,
            });
        }
        Ok(Image {
            store,
            config_name,
            config,
            layers,
        })
    }

    /// The uncompressed tar stream of a layer. The blob digest is checked first (one pass over
    /// it); the returned reader checks the diff_id when it reaches the end (see [`Checked`]).
    pub fn layer_reader(&self, layer: &Layer) -> Result<Hashing<Box<dyn Read>>> {
        let open = || -> Result<(Box<dyn Read>, u64)> {
            self.store
                .reader(&layer.member)?
                .ok_or_else(|| match &layer.blob {
                    Some((d, _)) => Error::MissingBlob { digest: d.clone() },
                    None => Error::Layer {
                        layer: layer.digest.clone(),
                        what: format!("{} missing from the tarball", layer.member),
                    },
                })
        };
        if let Some((digest, size)) = &layer.blob {
            let (mut r, _) = open()?;
            let mut h = Hashing::new(&mut r);
            io::copy(&mut h, &mut io::sink())
                .map_err(io(self.store.describe(&layer.member), "read"))?;
            let (d, n) = h.finish();
            check(digest, *size, d, n)?;
        }
        let (r, _) = open()?;
        let inner = uncompressed(io::BufReader::new(r), layer.compression)
            .map_err(io(self.store.describe(&layer.member), "read"))?;
        Ok(Hashing::new(inner))
    }
}

/// The uncompressed tar stream of a layer's stored bytes.
pub fn uncompressed<R: io::BufRead + 'static>(
    mut r: R,
    compression: Compression,
) -> io::Result<Box<dyn Read>> {
    let gzip = match compression {
        Compression::Gzip => true,
        Compression::None => false,
        Compression::Sniff => r.fill_buf()?.starts_with(&[0x1f, 0x8b]),
    };
    Ok(if gzip {
        Box::new(flate2::read::GzDecoder::new(r))
    } else {
        Box::new(r)
    })
}

/// Follows (nested) indexes and collects the image manifests they list.
fn collect(
    store: &Store,
    file: &str,
    index: &Value,
    inherited_ref: Option<String>,
    out: &mut Vec<Candidate>,
    depth: u32,
) -> Result<()> {
    if depth > 8 {
        return Err(json_err(file, "image indexes nested more than 8 deep"));
    }
    let list = index["manifests"]
        .as_array()
        .ok_or_else(|| json_err(file, "\"manifests\" is not an array"))?;
    for d in list {
        let (digest, size) = descriptor(file, d)?;
        let ref_name = d["annotations"][REF_NAME]
            .as_str()
            .map(String::from)
            .or_else(|| inherited_ref.clone());
        let media_type = d["mediaType"].as_str().unwrap_or_default();
        if INDEX_TYPES.contains(&media_type) {
            let sub_file = format!("index {digest}");
            let sub = parse_json(&sub_file, &Image::blob(store, &digest, size)?)?;
            collect(store, &sub_file, &sub, ref_name, out, depth + 1)?;
            continue;
        }
        // BuildKit's attestation manifests are not runnable images.
        if d["annotations"]["vnd.docker.reference.type"].as_str() == Some("attestation-manifest") {
            continue;
        }
        let platform = d["platform"]["os"]
            .as_str()
            .zip(d["platform"]["architecture"].as_str())
            .map(|(o, a)| (o.to_string(), a.to_string()));
        out.push(Candidate {
            digest,
            size,
            ref_name,
            platform,
        });
    }
    Ok(())
}

fn choose(file: &str, found: Vec<Candidate>, want_ref: Option<&str>) -> Result<Candidate> {
    let mut c: Vec<Candidate> = match want_ref {
        Some(r) => found
            .into_iter()
            .filter(|c| c.ref_name.as_deref() == Some(r))
            .collect(),
        None => found,
    };
    if c.len() > 1 {
        let amd64: Vec<bool> = c
            .iter()
            .map(|c| {
                c.platform
                    .as_ref()
                    .is_some_and(|(o, a)| o == "linux" && a == "amd64")
            })
            .collect();
        if amd64.iter().filter(|x| **x).count() == 1 {
            let i = amd64.iter().position(|x| *x).unwrap_or(0);
            return Ok(c.swap_remove(i));
        }
    }
    match c.len() {
        1 => Ok(c.remove(0)),
        0 => Err(Error::Ambiguous {
            file: file.into(),
            what: match want_ref {
                Some(r) => format!("no image manifest with {REF_NAME} {r:?}"),
                None => "lists no image manifest".into(),
            },
        }),
        n => {
            let names: Vec<String> = c
                .iter()
                .map(|c| {
                    let p = c
                        .platform
                        .as_ref()
                        .map(|(o, a)| format!("{o}/{a}"))
                        .unwrap_or_default();
                    format!("{} {} {p}", c.ref_name.as_deref().unwrap_or("-"), c.digest)
                })
                .collect();
            Err(Error::Ambiguous {
                file: file.into(),
                what: format!(
                    "{n} image manifests and no single linux/amd64 one ({}): choose one with --ref",
                    names.join("; ")
                ),
            })
        }
    }
}

fn descriptor(file: &str, d: &Value) -> Result<(String, Option<u64>)> {
    let digest = d["digest"]
        .as_str()
        .ok_or_else(|| json_err(file, "a descriptor has no \"digest\" string"))?;
    blob_name(digest)?;
    let size = match &d["size"] {
        Value::Null => None,
        v => Some(v.as_u64().ok_or_else(|| {
            json_err(
                file,
                format!("descriptor {digest}: \"size\" is not a count"),
            )
        })?),
    };
    Ok((digest.to_string(), size))
}

fn diff_ids(file: &str, config: &Value) -> Result<Vec<String>> {
    let a = config["rootfs"]["diff_ids"]
        .as_array()
        .ok_or_else(|| json_err(file, "\"rootfs.diff_ids\" is not an array"))?;
    a.iter()
        .map(|v| {
            let s = v
                .as_str()
                .ok_or_else(|| json_err(file, "a diff_id is not a string"))?;
            blob_name(s)?;
            Ok(s.to_string())
        })
        .collect()
}

/// A reader that hashes what passes through it.
pub struct Hashing<R> {
    inner: R,
    hash: Sha256,
    len: u64,
}

impl<R: Read> Hashing<R> {
    pub fn new(inner: R) -> Self {
        Hashing {
            inner,
            hash: Sha256::new(),
            len: 0,
        }
    }
    /// The digest and length of everything read.
    pub fn finish(self) -> (String, u64) {
        (format!("sha256:{}", hex(&self.hash.finalize())), self.len)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// Reads the rest of a layer stream and checks it against the layer's diff_id.
pub fn finish_layer(layer: &Layer, mut r: Hashing<Box<dyn Read>>) -> Result<()> {
    io::copy(&mut r, &mut io::sink()).map_err(|e| Error::Layer {
        layer: layer.digest.clone(),
        what: format!("cannot read: {e}"),
    })?;
    let (d, _) = r.finish();
    match &layer.diff_id {
        Some(want) if *want != d => Err(Error::Layer {
            layer: layer.digest.clone(),
            what: format!("uncompressed content hashes to {d}, the config's diff_id is {want}"),
        }),
        _ => Ok(()),
    }
}

//! `lupine_image`: turns a container image (OCI image layout, or a `docker save` tarball) into a
//! bootable Lupine root filesystem: ext4 (boot with `init=/lupine-init`) or a cpio initramfs
//! (`rdinit=/lupine-init`), with `lupine-init` at `/lupine-init` and `/etc/lupine.json` derived
//! from the image config.
//!
//! In order: read and verify the image ([`oci`]) and apply its layers ([`layers`]), or read a
//! root filesystem directory ([`rootfs`]); build and check
//! the manifest ([`manifest`]), optionally relink static programs ([`relink`]), write the output
//! ([`ext4`], [`cpio`]) to a temporary name next to OUTPUT and rename it into place.

pub mod cpio;
pub mod error;
pub mod ext4;
pub mod firecracker;
pub mod fragment;
/// The bodies of the fuzz targets (`fuzz/`), shared with the corpus replay test.
pub mod fuzz;
pub mod layers;
pub mod manifest;
pub mod oci;
pub mod relink;
pub mod rootfs;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

pub use error::{Error, Result};
use layers::Tree;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ext4,
    Initramfs,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// An OCI image layout, a `docker save` tarball, or a root filesystem directory.
    pub image: PathBuf,
    pub output: PathBuf,
    pub init: PathBuf,
    pub manifest: Option<PathBuf>,
    pub relink: bool,
    pub format: Format,
    pub size_mib: Option<u64>,
    pub ref_name: Option<String>,
    /// `--entrypoint`, `--cmd`, `--env`, `--workdir`, `--user` over the image config.
    pub config: manifest::ConfigOverrides,
    pub report: Option<PathBuf>,
    /// Where to write the Kconfig fragment the entry point and what it loads need.
    pub kernel_fragment: Option<PathBuf>,
    /// Also write a Firecracker config file for the output.
    pub firecracker: Option<firecracker::Firecracker>,
    /// Print one line per relinked or skipped program to stderr.
    pub verbose: bool,
}

impl Options {
    /// Building `image` into an ext4 `output` with `init`, nothing else asked, quietly.
    pub fn new(image: PathBuf, output: PathBuf, init: PathBuf) -> Options {
        Options {
            image,
            output,
            init,
            manifest: None,
            relink: false,
            format: Format::Ext4,
            size_mib: None,
            ref_name: None,
            config: manifest::ConfigOverrides::default(),
            report: None,
            kernel_fragment: None,
            firecracker: None,
            verbose: false,
        }
    }
}

/// What was built.
#[derive(Debug)]
pub struct Built {
    pub manifest: Value,
    pub relink: Option<relink::Summary>,
}

/// A scratch directory next to OUTPUT, removed when dropped (on success and on error).
struct WorkDir(PathBuf);

impl WorkDir {
    fn new(output: &Path) -> Result<WorkDir> {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = output.file_name().unwrap_or_default().to_string_lossy();
        // What a run killed with SIGKILL left beside the same output.
        lupine_relink::remove_stale_temporaries(&parent(output), &format!(".{name}.lupine-image."));
        let dir = parent(output).join(format!(
            ".{name}.lupine-image.{}.{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&dir).map_err(error::io(dir.display(), "create"))?;
        Ok(WorkDir(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn parent(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Reads the image and applies its layers.
pub fn read_tree(image: &Path, ref_name: Option<&str>) -> Result<(oci::Image, Tree)> {
    let img = oci::Image::open(image, ref_name)?;
    let mut tree = Tree::new();
    for layer in &img.layers {
        let mut r = img.layer_reader(layer)?;
        tree.apply_layer(&layer.digest, &mut r)?;
        oci::finish_layer(layer, r)?;
    }
    Ok((img, tree))
}

fn read_fragment(path: &Path) -> Result<Value> {
    let text = fs::read(path).map_err(error::io(path.display(), "read"))?;
    let v: Value = serde_json::from_slice(&text).map_err(|e| Error::Json {
        file: path.display().to_string(),
        what: e.to_string(),
    })?;
    if !v.is_object() {
        return Err(Error::Json {
            file: path.display().to_string(),
            what: "a manifest fragment must be a JSON object".into(),
        });
    }
    Ok(v)
}

pub fn build(o: &Options) -> Result<Built> {
    // The output must not land in the input (the input is never modified).
    let abs = |p: &Path| fs::canonicalize(p).ok();
    if let (Some(img), Some(out_dir)) = (abs(&o.image), abs(&parent(&o.output))) {
        let out = out_dir.join(o.output.file_name().unwrap_or_default());
        if out == img || out.starts_with(&img) {
            return Err(Error::Output {
                path: o.output.display().to_string(),
                what: "is the input image or inside it".into(),
            });
        }
    }
    if let Some(fc) = &o.firecracker {
        fc.check()?;
    }
    let fragment = o.manifest.as_deref().map(read_fragment).transpose()?;
    let init = fs::read(&o.init).map_err(error::io(o.init.display(), "read"))?;
    let work = WorkDir::new(&o.output)?;
    let (config_name, mut config, mut tree) = if rootfs::is_rootfs(&o.image) {
        let (config, tree) = rootfs::read(&o.image, &work.0.join("rootfs.tar"))?;
        (o.image.display().to_string(), config, tree)
    } else {
        let (img, tree) = read_tree(&o.image, o.ref_name.as_deref())?;
        (img.config_name, img.config, tree)
    };
    o.config.apply(&mut config);
    let manifest = manifest::build(&config_name, &config, fragment.as_ref())?;

    manifest::validate(&o.init, &manifest, &work.0.join("lupine.json"))?;
    for d in ["dev", "proc", "sys", "run", "etc"] {
        tree.ensure_dir(d, 0o755)?;
    }
    tree.ensure_dir("tmp", 0o1777)?;
    tree.put_file("lupine-init", init, 0o755);
    let text = serde_json::to_string_pretty(&manifest).unwrap_or_default() + "\n";
    tree.put_file("etc/lupine.json", text.into_bytes(), 0o644);

    let fragment_text = match &o.kernel_fragment {
        Some(_) => Some(fragment::derive(&tree, &manifest)?),
        None => None,
    };
    let relinked = o
        .relink
        .then(|| relink::relink_tree(&mut tree, &["lupine-init"], o.verbose));

    let tmp = work.0.join("output");
    match o.format {
        Format::Ext4 => ext4::write(&tree, &work.0, &tmp, o.size_mib)?,
        Format::Initramfs => {
            write_cpio(&tree, &tmp, o.output.extension().is_some_and(|e| e == "gz"))?
        }
    }
    if let (Some(path), Some(s)) = (&o.report, &relinked) {
        let text = serde_json::to_string_pretty(s).unwrap_or_default() + "\n";
        fs::write(path, text).map_err(error::io(path.display(), "write"))?;
    }
    if let (Some(path), Some(text)) = (&o.kernel_fragment, &fragment_text) {
        write_atomically(path, text)?;
    }
    fs::rename(&tmp, &o.output).map_err(error::io(o.output.display(), "rename into place"))?;
    if let Some(fc) = &o.firecracker {
        let config = fc.config(&o.output, o.format)?;
        write_atomically(
            &fc.config,
            &(serde_json::to_string_pretty(&config).unwrap_or_default() + "\n"),
        )?;
    }
    Ok(Built {
        manifest,
        relink: relinked,
    })
}

/// Writes `text` to `path` through a temporary file renamed into place.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    lupine_relink::write_atomically(path, text.as_bytes(), 0o644).map_err(|e| Error::Io {
        file: path.display().to_string(),
        op: "write",
        source: std::io::Error::other(e.to_string()),
    })
}

fn write_cpio(tree: &Tree, path: &Path, gzip: bool) -> Result<()> {
    let f = fs::File::create(path).map_err(error::io(path.display(), "create"))?;
    let w = std::io::BufWriter::new(f);
    let res = if gzip {
        let mut gz = flate2::write::GzEncoder::new(w, flate2::Compression::default());
        cpio::write(tree, &mut gz).and_then(|_| gz.finish().map(drop))
    } else {
        let mut w = w;
        cpio::write(tree, &mut w)
    };
    res.map_err(error::io(path.display(), "write"))
}

//! Packs a directory tree as a one-layer OCI image layout, as a registry pull would leave it:
//! what `lupine-image` takes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{run, Error, Result};

/// Writes an OCI image layout at `out` whose one layer is `tree` (all files owned by root)
/// and whose image config is `config` (the JSON object of `Entrypoint`, `Cmd`, `Env`, ...).
pub fn oci_layout(tree: &Path, config: &str, out: &Path) -> Result<PathBuf> {
    let blobs = out.join("blobs/sha256");
    fs::create_dir_all(&blobs)?;
    let layer = out.join("layer.tar");
    run(Command::new("tar")
        .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner"])
        .arg("-C")
        .arg(tree)
        .arg("-cf")
        .arg(&layer)
        .arg("."))?;
    let layer_digest = sha256(&layer)?;
    let layer_size = fs::metadata(&layer)?.len();
    fs::rename(&layer, blobs.join(&layer_digest))?;

    let image_config = format!(
        r#"{{"architecture": "amd64", "os": "linux", "config": {config},
 "rootfs": {{"type": "layers", "diff_ids": ["sha256:{layer_digest}"]}}}}"#
    );
    let (config_digest, config_size) = blob(&blobs, &image_config)?;
    let manifest = format!(
        r#"{{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
 "config": {{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:{config_digest}", "size": {config_size}}},
 "layers": [{{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:{layer_digest}", "size": {layer_size}}}]}}"#
    );
    let (manifest_digest, manifest_size) = blob(&blobs, &manifest)?;
    fs::write(
        out.join("index.json"),
        format!(
            r#"{{"schemaVersion": 2, "manifests": [{{"mediaType": "application/vnd.oci.image.manifest.v1+json",
 "digest": "sha256:{manifest_digest}", "size": {manifest_size},
 "platform": {{"architecture": "amd64", "os": "linux"}}}}]}}"#
        ),
    )?;
    fs::write(out.join("oci-layout"), r#"{"imageLayoutVersion": "1.0.0"}"#)?;
    Ok(out.to_path_buf())
}

/// Stores `text` as a blob; its digest (hex) and size.
fn blob(blobs: &Path, text: &str) -> Result<(String, usize)> {
    let tmp = blobs.join("new");
    fs::write(&tmp, text)?;
    let digest = sha256(&tmp)?;
    fs::rename(&tmp, blobs.join(&digest))?;
    Ok((digest, text.len()))
}

fn sha256(path: &Path) -> Result<String> {
    let out = run(Command::new("sha256sum").arg(path))?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .map(str::to_string)
        .ok_or_else(|| Error(format!("sha256sum {}: no digest", path.display())))
}

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

/// An app of `target/apps` as its container image would be: what [`app_image`] writes.
pub struct AppImage {
    /// The OCI image layout.
    pub image: PathBuf,
    /// The rest of the app's `lupine.json` and the VM's network, for `lupine-image --manifest`.
    pub fragment: PathBuf,
    /// The app's `app` object from `lupine.json` (`path`, `args`, `cwd`).
    pub start: serde_json::Value,
}

/// The image of the app built in `build` (target/apps/APP: `lupine.json`) with `rootfs` as its
/// one layer, written under `dir`: its config starts `entry` followed by the app's path
/// (`Entrypoint`), with the app's arguments (`Cmd`), `PATH` and working directory, as its
/// Docker image would; the manifest fragment gives eth0 10.0.2.15/24 via QEMU's 10.0.2.2.
pub fn app_image(build: &Path, rootfs: &Path, entry: &[&str], dir: &Path) -> Result<AppImage> {
    use serde_json::{json, Value};
    let text = fs::read(build.join("lupine.json"))?;
    let mut manifest: Value = serde_json::from_slice(&text).map_err(|e| Error(e.to_string()))?;
    let start = manifest
        .as_object_mut()
        .and_then(|m| m.remove("app"))
        .ok_or_else(|| Error(format!("{}: no app", build.display())))?;
    let mut entrypoint: Vec<Value> = entry.iter().map(|e| json!(e)).collect();
    entrypoint.push(start["path"].clone());
    let mut config = json!({
        "Entrypoint": entrypoint,
        "Cmd": start["args"],
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    });
    if let Some(cwd) = start.get("cwd") {
        config["WorkingDir"] = cwd.clone();
    }
    manifest["network"] = json!({
        "interfaces": [{"name": "eth0", "addresses": ["10.0.2.15/24"]}],
        "routes": [{"destination": "default", "gateway": "10.0.2.2"}],
        "wait_s": 2,
    });
    let fragment = dir.join("fragment.json");
    fs::write(&fragment, manifest.to_string())?;
    let image = oci_layout(rootfs, &config.to_string(), &dir.join("oci"))?;
    Ok(AppImage {
        image,
        fragment,
        start,
    })
}

/// The image of a static program (musl) that prints `line` and exits 0, written under `dir`:
/// the smallest app a VM can show it ran.
pub fn hello_image(dir: &Path, line: &str) -> Result<PathBuf> {
    let tree = dir.join("hello-tree");
    fs::create_dir_all(&tree)?;
    let src = dir.join("hello.c");
    let text = format!("{line}\n");
    fs::write(
        &src,
        format!(
            "#include <unistd.h>\nint main(void) {{ return write(1, {text:?}, {}) != {}; }}\n",
            text.len(),
            text.len()
        ),
    )?;
    run(Command::new("musl-gcc")
        .args(["-static", "-Os", "-o"])
        .arg(tree.join("hello"))
        .arg(&src))?;
    oci_layout(&tree, r#"{"Entrypoint": ["/hello"]}"#, &dir.join("oci"))
}

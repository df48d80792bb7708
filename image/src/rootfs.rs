//! A plain root filesystem directory as the image (what `apps/build.sh` writes, or a tree
//! unpacked from packages): its files become the one layer, with their modes, owners,
//! symbolic links, device nodes and fifos as they are on disk (hard links become copies), and
//! the image config is what the command line says (`--entrypoint`, `--cmd`, ...).

use std::fs;
use std::path::Path;

use serde_json::{json, Value};

use crate::error::{io, Result};
use crate::layers::Tree;

/// Whether `path` is a root filesystem rather than an image: a directory, not empty, that is
/// neither an OCI image layout (`oci-layout`, `index.json`) nor an unpacked `docker save`
/// (`manifest.json`).
pub fn is_rootfs(path: &Path) -> bool {
    let not_empty = fs::read_dir(path).is_ok_and(|mut d| d.next().is_some());
    not_empty
        && ["oci-layout", "index.json", "manifest.json"]
            .iter()
            .all(|f| !path.join(f).exists())
}

/// The tree of `dir` and an empty image config, through a tar written to `scratch` (the tree
/// reads what a layer holds, so a directory is read as one layer).
pub fn read(dir: &Path, scratch: &Path) -> Result<(Value, Tree)> {
    let name = dir.display().to_string();
    let tar = fs::File::create(scratch).map_err(io(scratch.display(), "create"))?;
    let mut builder = tar::Builder::new(std::io::BufWriter::new(tar));
    builder.follow_symlinks(false);
    builder
        .append_dir_all(".", dir)
        .and_then(|_| builder.into_inner().map(drop))
        .map_err(io(&name, "read"))?;
    let mut tree = Tree::new();
    let tar = fs::File::open(scratch).map_err(io(scratch.display(), "read"))?;
    tree.apply_layer(&name, std::io::BufReader::new(tar))?;
    let _ = fs::remove_file(scratch); // the tree holds what it needs
    Ok((json!({"config": {}}), tree))
}

//! `--kernel-fragment`: the Kconfig fragment that the image's entry point needs, derived by
//! lupine-config from the program the manifest starts and, when it is dynamically linked,
//! every library it loads from the image (see `lupine_config::derive_dynamic`), plus what
//! lupine-init does for it on the manifest's word (sysctls, a user to run as).

use lupine_relink::elf::{Elf, Kind as ElfKind};
use lupine_relink::needed::{resolve_links, Entry};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::layers::{Kind, Tree};

/// The file at the absolute `path` of `tree`, symbolic links followed inside the tree.
fn read(tree: &Tree, path: &str) -> Option<Vec<u8>> {
    let entry = |p: &str| match tree.nodes.get(p.trim_start_matches('/')).map(|n| &n.kind) {
        Some(Kind::Symlink(t)) => Entry::Link(t.clone()),
        _ => Entry::Other,
    };
    let resolved = resolve_links(path, &entry)?;
    match &tree.nodes.get(resolved.trim_start_matches('/'))?.kind {
        Kind::File(d) => Some(d.to_vec()),
        _ => None,
    }
}

/// The fragment for the program `manifest` starts (`app.path`), as lupine-config prints it.
/// A `#!` script stands for its interpreter (the programs it runs are not followed).
pub fn derive(tree: &Tree, manifest: &Value) -> Result<String> {
    let app = manifest["app"]["path"].as_str().unwrap_or_default();
    let err = |what: String| Error::Fragment {
        path: app.to_string(),
        what,
    };
    if !app.starts_with('/') {
        return Err(err("app.path is not absolute".into()));
    }
    let mut path = app.to_string();
    let mut data = read(tree, &path).ok_or_else(|| err("not a file in the image".into()))?;
    let mut extra = manifest_needs(manifest);
    if let Some(line) = data.strip_prefix(b"#!") {
        let line = String::from_utf8_lossy(line.split(|&c| c == b'\n').next().unwrap_or(b""));
        path = line
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        data = read(tree, &path)
            .ok_or_else(|| err(format!("its interpreter {path} is not a file in the image")))?;
        extra.push_str(&format!(
            "# {app} is a #! script run by {path} (what it runs is not followed).\n\
             CONFIG_BINFMT_SCRIPT=y\n"
        ));
    }
    let elf = Elf::parse(&path, &data).map_err(|e| err(e.to_string()))?;
    let findings = match elf.kind {
        ElfKind::Static => lupine_config::derive_bytes(&path, &data).map(|f| vec![f]),
        _ => lupine_config::derive_dynamic(&path, &path, &data, &|p| read(tree, p)),
    }
    .map_err(|e| err(e.to_string()))?;
    Ok(lupine_config::render(&findings, None) + &extra)
}

/// The options lupine-init needs to do what the manifest asks for the app.
fn manifest_needs(manifest: &Value) -> String {
    let mut s = String::new();
    let sysctls = manifest["sysctl"]
        .as_object()
        .is_some_and(|m| !m.is_empty());
    if sysctls {
        s.push_str("# The manifest's sysctls: lupine-init writes them under /proc/sys.\n");
        s.push_str("CONFIG_SYSCTL=y\nCONFIG_PROC_SYSCTL=y\n");
    }
    if manifest["app"]["user"].is_string() {
        s.push_str("# The manifest's user: lupine-init switches to it (setuid, setgroups).\n");
        s.push_str("CONFIG_MULTIUSER=y\n");
    }
    s
}

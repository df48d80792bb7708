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
pub fn derive(tree: &Tree, manifest: &Value) -> Result<String> {
    let path = manifest["app"]["path"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let err = |what: String| Error::Fragment {
        path: path.clone(),
        what,
    };
    if !path.starts_with('/') {
        return Err(err("app.path is not absolute".into()));
    }
    let data = read(tree, &path).ok_or_else(|| err("not a file in the image".into()))?;
    let elf = Elf::parse(&path, &data).map_err(|e| err(e.to_string()))?;
    let findings = match elf.kind {
        ElfKind::Static => vec![lupine_config::derive_bytes(&path, &data)],
        _ => match lupine_config::derive_dynamic(&path, &path, &data, &|p| read(tree, p)) {
            Ok(f) => f.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        },
    };
    let findings = findings
        .into_iter()
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    Ok(lupine_config::render(&findings, None) + &manifest_needs(manifest))
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

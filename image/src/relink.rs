//! `--relink`: replaces each x86-64 ELF file of the tree that has syscall sites (static and
//! dynamically linked programs, shared libraries, the dynamic linker) by its lupine-relink'ed
//! version. What the relinker refuses (Go, already relinked, text relocations, not a program
//! or shared object...) or what has no syscall site is left as it is, with a note: it still
//! runs, only without the KML fast path.

use std::collections::HashSet;
use std::rc::Rc;

use lupine_relink::Error as RelinkError;
use serde::Serialize;

use crate::layers::{Kind, Tree};

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub relinked: Vec<Relinked>,
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Serialize)]
pub struct Relinked {
    pub path: String,
    pub sites: u64,
    pub rewritten: u64,
    pub kept: u64,
    pub bytes_added: u64,
}

#[derive(Debug, Serialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// An x86-64 ELF executable or shared object: worth asking the relinker about (it decides).
fn is_x86_64_program(d: &[u8]) -> bool {
    d.len() >= 64
        && d.starts_with(b"\x7fELF")
        && d[4] == 2
        && d[5] == 1
        && matches!(u16::from_le_bytes([d[16], d[17]]), 2 | 3)
        && u16::from_le_bytes([d[18], d[19]]) == 62
}

/// Relinks in place; `skip` lists paths to leave alone (e.g. `lupine-init`). Prints one line
/// per program to stderr when `verbose`.
pub fn relink_tree(tree: &mut Tree, skip: &[&str], verbose: bool) -> Summary {
    let mut summary = Summary::default();
    let mut seen = HashSet::new();
    let files: Vec<(String, u64, Rc<Vec<u8>>)> = tree
        .nodes
        .iter()
        .filter_map(|(p, n)| match &n.kind {
            Kind::File(d) if is_x86_64_program(d) && !skip.contains(&p.as_str()) => {
                Some((format!("/{p}"), n.ino, d.clone()))
            }
            _ => None,
        })
        .collect();
    for (path, ino, data) in files {
        // Hard links share the data: relink it once.
        if !seen.insert(ino) {
            continue;
        }
        match lupine_relink::relink_bytes(&path, &path, &data) {
            Ok(r) if r.report.counts.sites == 0 => {
                if verbose {
                    eprintln!("lupine-image: left {path} as it is: no syscall sites");
                }
                summary.skipped.push(Skipped {
                    path,
                    reason: "no syscall sites".into(),
                });
            }
            Ok(r) => {
                let c = &r.report.counts;
                if verbose {
                    eprintln!(
                        "lupine-image: relinked {path}: {} syscall sites, {} rewritten, {} kept; {} bytes added",
                        c.sites, c.rewritten, c.kept, r.report.bytes_added
                    );
                }
                summary.relinked.push(Relinked {
                    path,
                    sites: c.sites,
                    rewritten: c.rewritten,
                    kept: c.kept,
                    bytes_added: r.report.bytes_added,
                });
                tree.set_data(ino, Rc::new(r.bytes));
            }
            Err(e) => {
                let reason = match &e {
                    RelinkError::TextRelocations { .. } => "text relocations",
                    RelinkError::AlreadyRelinked { .. } => "already relinked",
                    RelinkError::Go { .. } => "Go program",
                    RelinkError::NotProgram { .. } => "not a program",
                    _ => "not relinkable",
                };
                if verbose {
                    eprintln!("lupine-image: skipped {path}: {reason}: {e}");
                }
                summary.skipped.push(Skipped {
                    path,
                    reason: format!("{reason}: {e}"),
                });
            }
        }
    }
    if verbose {
        eprintln!(
            "lupine-image: relinked {} programs, skipped {}",
            summary.relinked.len(),
            summary.skipped.len()
        );
    }
    summary
}

//! The body of lupine-config's fuzz target (`fuzz/fuzz_targets/config.rs`), here so that the
//! target (nightly, libFuzzer) and the replay of its corpus and crash inputs
//! (`tests/fuzz_corpus.rs`, stable) run the same code.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use lupine_relink::Error;

use crate::{derive_bytes, derive_dynamic, options, parse_base, render, table, Findings, Table};

/// What lupine-config reads from its user: a program (input starting with the ELF magic), or
/// a text, read both as a `--base` Kconfig fragment and as a `kconfig-map.tsv` table.
///
/// Properties: an error says something (a table's names its line); a program's findings count
/// no more constant sites than sites; with a base fragment, an option it sets `=y` is never
/// printed, every other option is, once.
pub fn config(data: &[u8]) {
    if data.starts_with(b"\x7fELF") {
        program(data);
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    base(text);
    match Table::parse(text) {
        Ok(t) => {
            for (n, r) in t.syscalls.iter().chain(&t.families) {
                assert_eq!(r.number, Some(*n), "line {}", r.line);
            }
        }
        Err(e) => assert!(e.starts_with("line "), "{e}"),
    }
}

/// Findings that need every option of the built-in table.
fn everything() -> &'static Findings {
    static F: OnceLock<Findings> = OnceLock::new();
    F.get_or_init(|| {
        let mut f = Findings {
            input: "/bin/everything".into(),
            ..Findings::default()
        };
        let t = table();
        for n in t.syscalls.keys() {
            f.add_syscall(*n, crate::Evidence::Site);
        }
        for n in t.families.keys() {
            f.families
                .entry(*n)
                .or_default()
                .insert(crate::Evidence::Site);
        }
        f
    })
}

/// `--base FILE`: the options it sets leave the fragment.
fn base(text: &str) {
    let set: BTreeSet<String> = parse_base(text);
    for o in &set {
        assert!(text.contains(&format!("CONFIG_{o}=y")), "{o:?}");
    }
    let findings = std::slice::from_ref(everything());
    let out = render(findings, Some(("base.config", &set)));
    let lines: Vec<&str> = out.lines().collect();
    for o in options(findings).keys() {
        let line = format!("CONFIG_{o}=y");
        let n = lines.iter().filter(|l| **l == line).count();
        assert_eq!(n, usize::from(!set.contains(o)), "{line}");
    }
}

/// `lupine-config [--root DIR] PROGRAM`: a static program alone; a dynamically linked one (or a
/// shared object) with its image, where every library it needs is this same input.
fn program(data: &[u8]) {
    let name = "/bin/app";
    let findings = match derive_bytes(name, data) {
        Ok(f) => vec![f],
        Err(Error::NotProgram { .. }) => {
            let read = |_: &str| Some(data.to_vec());
            match derive_dynamic(name, name, data, &read) {
                Ok(f) => f,
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    return;
                }
            }
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    for f in &findings {
        assert!(f.constant_sites <= f.sites, "{f:?}");
    }
    let out = render(&findings, None);
    assert!(out.starts_with("# lupine-config: derived from "), "{out}");
}

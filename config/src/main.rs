//! `lupine-config [--base FILE] [--root DIR] BINARY...`: prints a Kconfig application fragment
//! derived from the system call sites of x86-64 programs (see `lupine_config`).

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: lupine-config [--base BASE.config] [--root DIR] BINARY...

Prints a Kconfig fragment (for kernel-patches/configs/apps/NAME.config) with the options the
system calls of the given x86-64 programs need, one comment per option. With --base, options
already =y in BASE.config are left out. A dynamically linked program needs --root, the root of
its image: its libraries are read there (DT_NEEDED), and what it imports from the C library
counts.";

fn main() -> ExitCode {
    let mut inputs: Vec<PathBuf> = Vec::new();
    let mut base: Option<PathBuf> = None;
    let mut root: Option<PathBuf> = None;
    let mut args = std::env::args_os().skip(1);
    let mut only_files = false;
    let usage_err = |msg: String| {
        eprintln!("lupine-config: {msg}\n{USAGE}");
        ExitCode::from(2)
    };
    while let Some(a) = args.next() {
        match a.to_str() {
            _ if only_files => inputs.push(a.into()),
            Some("--") => only_files = true,
            Some("-h") | Some("--help") => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            Some("-V") | Some("--version") => {
                println!("lupine-config {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            Some("--base") => match args.next() {
                Some(v) if base.is_none() => base = Some(v.into()),
                Some(_) => return usage_err("--base given twice".into()),
                None => return usage_err("--base needs a path".into()),
            },
            Some("--root") => match args.next() {
                Some(v) if root.is_none() => root = Some(v.into()),
                Some(_) => return usage_err("--root given twice".into()),
                None => return usage_err("--root needs a directory".into()),
            },
            Some(s) if s.starts_with('-') && s.len() > 1 => {
                return usage_err(format!("unknown option {s}"))
            }
            _ => inputs.push(a.into()),
        }
    }
    if inputs.is_empty() {
        return usage_err("no BINARY given".into());
    }
    let base_set = match &base {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => Some((p.display().to_string(), lupine_config::parse_base(&t))),
            Err(e) => {
                eprintln!(
                    "lupine-config: {}: cannot read the base fragment: {e}",
                    p.display()
                );
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    if let Some(r) = root.as_deref().filter(|r| !r.is_dir()) {
        eprintln!("lupine-config: {}: --root is not a directory", r.display());
        return ExitCode::FAILURE;
    }
    let mut findings = Vec::new();
    for i in &inputs {
        match derive(i, root.as_deref()) {
            Ok(f) => findings.extend(f),
            Err(e) => {
                eprintln!("lupine-config: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let text = lupine_config::render(&findings, base_set.as_ref().map(|(n, s)| (n.as_str(), s)));
    print!("{text}");
    ExitCode::SUCCESS
}

/// The findings of `input`: a static program alone, a dynamically linked one with its libraries
/// in the image at `root`.
fn derive(
    input: &std::path::Path,
    root: Option<&std::path::Path>,
) -> Result<Vec<lupine_config::Findings>, lupine_relink::Error> {
    let Some(root) = root else {
        return lupine_config::derive_file(input).map(|f| vec![f]);
    };
    let data = lupine_relink::read_input(input)?;
    let name = input.display().to_string();
    let elf = lupine_relink::elf::Elf::parse(&name, &data)?;
    if elf.kind == lupine_relink::elf::Kind::Static {
        return lupine_config::derive_bytes(&name, &data).map(|f| vec![f]);
    }
    let path = lupine_relink::image_path(root, input);
    let read = |p: &str| lupine_relink::needed::read_in_root(root, p);
    lupine_config::derive_dynamic(&name, &path, &data, &read)
}

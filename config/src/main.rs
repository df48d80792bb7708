//! `lupine-config [--base FILE] BINARY...`: prints a Kconfig application fragment derived from
//! the system call sites of static x86-64 programs (see `lupine_config`).

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: lupine-config [--base BASE.config] BINARY...

Prints a Kconfig fragment (for kernel-patches/configs/apps/NAME.config) with the options the
system calls of the given static x86-64 programs need, one comment per option. With --base,
options already =y in BASE.config are left out.";

fn main() -> ExitCode {
    let mut inputs: Vec<PathBuf> = Vec::new();
    let mut base: Option<PathBuf> = None;
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
    let mut findings = Vec::new();
    for i in &inputs {
        match lupine_config::derive_file(i) {
            Ok(f) => findings.push(f),
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

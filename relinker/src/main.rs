//! `lupine-relink INPUT -o OUTPUT [--report REPORT.json] [--root DIR]`

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: lupine-relink INPUT -o OUTPUT [--report REPORT.json] [--root DIR]

Rewrites the syscall instructions of an x86-64 program (static or dynamically linked) or shared
library into calls through Kernel Mode Linux's AT_SYSINFO entry, falling back to a real syscall
on other kernels. With --root (the root of the image the program belongs to), the report lists
the libraries it loads, found there, and which of them still need relinking.";

fn main() -> ExitCode {
    let mut input: Option<PathBuf> = None;
    let mut output: Option<PathBuf> = None;
    let mut report: Option<PathBuf> = None;
    let mut root: Option<PathBuf> = None;
    let mut args = std::env::args_os().skip(1);
    let usage_err = |msg: String| {
        eprintln!("lupine-relink: {msg}\n{USAGE}");
        ExitCode::from(2)
    };
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("-h") | Some("--help") => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            Some("-V") | Some("--version") => {
                println!("lupine-relink {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            Some("-o") | Some("--output") => match args.next() {
                Some(v) if output.is_none() => output = Some(v.into()),
                Some(_) => return usage_err("-o given twice".into()),
                None => return usage_err("-o needs a path".into()),
            },
            Some("--report") => match args.next() {
                Some(v) if report.is_none() => report = Some(v.into()),
                Some(_) => return usage_err("--report given twice".into()),
                None => return usage_err("--report needs a path".into()),
            },
            Some("--root") => match args.next() {
                Some(v) if root.is_none() => root = Some(v.into()),
                Some(_) => return usage_err("--root given twice".into()),
                None => return usage_err("--root needs a directory".into()),
            },
            Some(s) if s.starts_with('-') && s.len() > 1 => {
                return usage_err(format!("unknown option {s}"))
            }
            _ => {
                if input.is_some() {
                    return usage_err(format!("unexpected argument {}", a.to_string_lossy()));
                }
                input = Some(a.into());
            }
        }
    }
    let (Some(input), Some(output)) = (input, output) else {
        return usage_err("INPUT and -o OUTPUT are required".into());
    };
    if let Some(r) = root.as_deref().filter(|r| !r.is_dir()) {
        eprintln!("lupine-relink: {}: --root is not a directory", r.display());
        return ExitCode::FAILURE;
    }
    match lupine_relink::relink_file(&input, &output, report.as_deref(), root.as_deref()) {
        Ok(r) => {
            eprintln!(
                "lupine-relink: {} -> {}: {} syscall sites, {} rewritten, {} kept; {} bytes added",
                input.display(),
                output.display(),
                r.counts.sites,
                r.counts.rewritten,
                r.counts.kept,
                r.bytes_added
            );
            for l in r.libraries.iter().flatten() {
                let at = l.path.as_deref().unwrap_or("-");
                eprintln!("lupine-relink: needs {} ({at}): {}", l.name, l.status);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lupine-relink: {e}");
            ExitCode::FAILURE
        }
    }
}

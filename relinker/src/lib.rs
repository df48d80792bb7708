//! `lupine_relink`: rewrites the `syscall` instructions of x86-64 programs and shared objects
//! into calls through Kernel Mode Linux's `AT_SYSINFO` entry, with a real `syscall` as the
//! fallback.
//!
//! ```no_run
//! let report = lupine_relink::relink_file(
//!     "hello".as_ref(), "hello.kml".as_ref(), Some("hello.json".as_ref()), None)?;
//! println!("{} of {} sites rewritten", report.counts.rewritten, report.counts.sites);
//! # Ok::<(), lupine_relink::Error>(())
//! ```
//!
//! What it does, in order:
//! 1. Reads and checks the input ([`elf`]): an x86-64 program (static `ET_EXEC` or static-PIE,
//!    or dynamically linked) or shared object ([`elf::Kind`]); anything else (32-bit, another
//!    machine, not ELF, truncated or malformed headers, text relocations, a Go program, a file
//!    already relinked) is refused with an [`Error`] whose `Display` is one line naming the file.
//!    [`needed`] finds a dynamic program's libraries in an image root.
//! 2. Decodes the code and collects branch targets ([`analyze`]): direct branches and calls,
//!    symbol starts and ends, RIP-relative operands, immediates and absolute displacements that
//!    point into code, static-PIE relocation addends (`R_X86_64_RELATIVE`, `IRELATIVE`),
//!    `.eh_frame` FDE starts and LSDA landing pads ([`ehframe`]), section starts, 8-byte code
//!    pointers in non-executable data, and position-independent jump tables (32-bit offsets
//!    from a `lea`'d base).
//! 3. Chooses, for each `syscall`, a window of at least 5 bytes (the syscall and neighbouring
//!    instructions of its basic block, no branch target after its first byte) or keeps it a
//!    real syscall with a reason ([`analyze::KeptReason`]): PC-sensitive code (by symbol or
//!    byte pattern), constant numbers 15, 56, 58, 60, 435, no window, undecodable bytes nearby,
//!    a relocation inside the window, or a trampoline that cannot be encoded. A C library's
//!    cancellation point is moved whole instead ([`cancel`]), when it can be identified for
//!    certain.
//! 4. Lays out and writes the output ([`relink`]): the windows become `jmp rel32` + `int3` to
//!    trampolines from [`kml_shim`], in one new R+X segment with the moved program header table
//!    and the entry stub (in a shared object, the probe that asks the kernel for the entry:
//!    [`kml_shim::probe`]), with the copies of moved cancellation points (their functions' first
//!    instructions jump there, and the handler's bounds name the copy's); the slot is one new
//!    R+W segment. Trampolines and copies inside functions that have unwind information get
//!    FDEs that mirror the original rows ([`cfi`]), found through a new `.eh_frame_hdr`
//!    (`PT_GNU_EH_FRAME`, added when the program had none), so backtraces and forced unwinding
//!    from a signal handler pass through them as through the original.
//!
//! The output needs Linux ≥ 5.18, which derives `AT_PHDR` from the `PT_LOAD` that contains
//! `e_phoff` (earlier kernels assume the program header table is in the first segment).
//! The JSON report is [`Report`].

pub mod analyze;
pub mod cancel;
pub mod cfi;
pub mod ehframe;
pub mod elf;
pub mod error;
/// The bodies of the fuzz targets (`fuzz/`), shared with the corpus replay test.
pub mod fuzz;
pub mod needed;
pub mod output;
pub mod relink;
pub mod report;
pub mod syscalls;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

pub use error::Error;
pub use output::{remove_stale_temporaries, write_atomically};
pub use relink::{relink_bytes, Relinked};
pub use report::Report;

use std::path::Path;

/// Reads a file for relinking, with the error the CLI prints.
pub fn read_input(input: &Path) -> Result<Vec<u8>, Error> {
    let name = input.display().to_string();
    let meta = std::fs::metadata(input).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound { file: name.clone() },
        _ => Error::Io {
            file: name.clone(),
            op: "read",
            source: e,
        },
    })?;
    if meta.is_dir() {
        return Err(Error::IsDirectory { file: name });
    }
    std::fs::read(input).map_err(|e| Error::Io {
        file: name,
        op: "read",
        source: e,
    })
}

/// Analyses a program without writing anything (for checks and tests).
pub fn analyze_bytes<'a>(input: &str, data: &'a [u8]) -> Result<analyze::Analysis<'a>, Error> {
    let elf = elf::Elf::parse(input, data)?;
    Ok(analyze::analyze(&elf))
}

/// Checks the windows an analysis chose: each holds its syscall, lies in the code, and has no
/// known branch target strictly after its first byte. Returns one line per violation.
pub fn verify_windows(an: &analyze::Analysis<'_>) -> Vec<String> {
    let mut bad = Vec::new();
    let mut prev_end = 0;
    for s in &an.sites {
        let Some((start, end)) = s.window else {
            continue;
        };
        if !(start <= s.address && s.address + 2 <= end && end - start >= 5) {
            bad.push(format!(
                "site {:#x}: window {start:#x}..{end:#x} does not hold it",
                s.address
            ));
        }
        if !an.in_code(start) || !an.in_code(end - 1) {
            bad.push(format!("site {:#x}: window outside the code", s.address));
        }
        if start < prev_end {
            bad.push(format!(
                "site {:#x}: window overlaps the previous one",
                s.address
            ));
        }
        prev_end = end;
        let i = an.targets.partition_point(|&t| t <= start);
        if let Some(&t) = an.targets.get(i).filter(|&&t| t < end) {
            bad.push(format!(
                "site {:#x}: branch target {t:#x} inside window {start:#x}..{end:#x}",
                s.address
            ));
        }
    }
    bad
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// The path of `file` inside the image at `root`: its path below `root`, else `/` and its name.
pub fn image_path(root: &Path, file: &Path) -> String {
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    match abs(file).strip_prefix(abs(root)) {
        Ok(rel) => format!("/{}", rel.display()),
        Err(_) => format!(
            "/{}",
            file.file_name().unwrap_or_default().to_string_lossy()
        ),
    }
}

/// The libraries of `elf` (at `path` in the image at `root`), each with what it needs.
pub fn libraries(elf: &elf::Elf<'_>, path: &str, root: &Path) -> Vec<report::Library> {
    let read = |p: &str| needed::read_in_root(root, p);
    needed::resolve(elf, path, &read)
        .into_iter()
        .map(|l| {
            let status = match &l.data {
                None => "not found".to_string(),
                Some(d) if needed::is_relinked(d) => "relinked".to_string(),
                Some(d) => match analyze_bytes(&l.name, d) {
                    Ok(an) if an.sites.is_empty() => "no syscall sites".into(),
                    Ok(an) => format!("needs relinking ({} syscall sites)", an.sites.len()),
                    Err(e) => format!("cannot be relinked: {e}"),
                },
            };
            report::Library {
                name: l.name,
                path: l.path,
                needed_by: l.needed_by,
                status,
            }
        })
        .collect()
}

/// Relinks `input` into `output` (and writes the JSON report to `report` if given). With
/// `root`, an image root that holds the program, the report lists where its libraries are
/// in it and which still need relinking. On error nothing is written and the input is
/// untouched.
pub fn relink_file(
    input: &Path,
    output: &Path,
    report: Option<&Path>,
    root: Option<&Path>,
) -> Result<Report, Error> {
    use std::os::unix::fs::PermissionsExt;
    let data = read_input(input)?;
    let in_name = input.display().to_string();
    if same_file(input, output) || report.is_some_and(|r| same_file(input, r)) {
        return Err(Error::SameFile { file: in_name });
    }
    let out_name = output.display().to_string();
    let mut r = relink_bytes(&in_name, &out_name, &data)?;
    if let Some(root) = root {
        let elf = elf::Elf::parse(&in_name, &data)?;
        r.report.libraries = Some(libraries(&elf, &image_path(root, input), root));
    }
    let mode = std::fs::metadata(input)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o755);
    let json = match report {
        Some(_) => Some(serde_json::to_vec_pretty(&r.report).map_err(|e| Error::Io {
            file: in_name.clone(),
            op: "serialise the report",
            source: std::io::Error::other(e),
        })?),
        None => None,
    };
    write_atomically(output, &r.bytes, mode)?;
    if let (Some(p), Some(mut j)) = (report, json) {
        j.push(b'\n');
        write_atomically(p, &j, 0o644)?;
    }
    Ok(r.report)
}

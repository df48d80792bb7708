//! Shared by the relinker's integration tests: the corpus (built and run by `relink_corpus`),
//! relinking it with the `lupine-relink` binary, reading reports and ELF headers, and the
//! emulated-KML launcher `kmlrun`.

#![allow(dead_code)]

pub use relink_corpus::*;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub fn relinker() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lupine-relink"))
}

pub fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Problems of one program, each prefixed with its name.
pub struct Problems<'a> {
    pub name: &'a str,
    pub list: &'a mut Vec<String>,
}

impl Problems<'_> {
    /// Records `what` unless `ok`.
    pub fn check(&mut self, ok: bool, what: String) {
        if !ok {
            self.list.push(format!("{}: {what}", self.name));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// strace -f -i -k

/// A syscall line: instruction pointer, name, result, and the first frame (file, offset).
pub type Entry = (u64, String, String, Option<(String, u64)>);

/// Parses `[ip] name(...) = result` lines and each one's first ` > path(...) [0xoffset]`.
pub fn entries(trace: &str) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    let mut want_frame = false;
    for line in trace.lines() {
        if let Some(frame) = line.strip_prefix(" > ") {
            if want_frame {
                want_frame = false;
                // "/path/prog(sym+0x12) [0x1234]" or "/path/prog() [0x1234]"
                let off = frame
                    .rsplit_once(" [0x")
                    .and_then(|(_, h)| u64::from_str_radix(h.trim_end_matches(']'), 16).ok());
                let path = frame.split('(').next().unwrap_or("").trim().to_string();
                if let (Some(off), Some(last)) = (off, out.last_mut()) {
                    last.3 = Some((path, off));
                }
            }
            continue;
        }
        want_frame = false;
        let Some(rest) = line.strip_prefix('[') else {
            continue;
        };
        let Some((ip, call)) = rest.split_once("] ") else {
            continue;
        };
        if call.starts_with("---") || call.starts_with("+++") {
            continue;
        }
        let Ok(ip) = u64::from_str_radix(ip, 16) else {
            continue;
        };
        let name = call.split('(').next().unwrap_or("").to_string();
        let result = call
            .rsplit_once(") = ")
            .map(|(_, r)| r.to_string())
            .unwrap_or_default();
        out.push((ip, name, result, None));
        want_frame = true;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Relinking

/// `lupine-relink IN -o OUT [--report R]`.
pub fn relink(input: &Path, output: &Path, report: Option<&Path>) -> Output {
    let mut cmd = Command::new(relinker());
    cmd.arg(input).arg("-o").arg(output);
    if let Some(r) = report {
        cmd.arg("--report").arg(r);
    }
    run_with_timeout(&mut cmd, Duration::from_secs(120))
}

/// A panic of the relinker, whatever its exit status says.
pub fn panicked(out: &Output) -> bool {
    out.status.code() == Some(101) || out.stderr().contains("panicked")
}

pub struct Relinked {
    pub program: Program,
    /// The relinked copy (same file name as the original, in `relinked/`).
    pub path: PathBuf,
    pub report_path: PathBuf,
    /// The relinker's own output.
    pub output: Output,
    pub elapsed: Duration,
}

impl Relinked {
    pub fn ok(&self) -> bool {
        self.output.status.success() && self.path.exists()
    }
    /// The report, through the library's own type (a change of shape breaks the build here).
    pub fn report(&self) -> lupine_relink::Report {
        let text = fs::read_to_string(&self.report_path).unwrap_or_else(|e| {
            panic!(
                "{}: no report {}: {e}",
                self.program.name,
                self.report_path.display()
            )
        });
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: report does not parse: {e}", self.program.name))
    }
}

/// The whole corpus relinked into `<work dir>/relinked/`, once per test process.
pub fn relinked() -> &'static [Relinked] {
    static RELINKED: OnceLock<Vec<Relinked>> = OnceLock::new();
    RELINKED.get_or_init(|| {
        let c = corpus();
        let out_dir = work_dir().join("relinked");
        let rep_dir = work_dir().join("reports");
        fs::create_dir_all(&out_dir).unwrap();
        fs::create_dir_all(&rep_dir).unwrap();
        let mut all = Vec::new();
        for p in &c.programs {
            let path = out_dir.join(&p.name);
            let report_path = rep_dir.join(format!("{}.json", p.name));
            let start = Instant::now();
            let output = relink(&p.path, &path, Some(&report_path));
            all.push(Relinked {
                program: p.clone(),
                path,
                report_path,
                output,
                elapsed: start.elapsed(),
            });
        }
        all
    })
}

/// The relinked copy of a program, or a panic that says why there is none.
pub fn relinked_program(name: &str) -> &'static Relinked {
    let r = relinked()
        .iter()
        .find(|r| r.program.name == name)
        .unwrap_or_else(|| panic!("no corpus program {name}"));
    assert!(
        r.ok(),
        "lupine-relink {} failed: {}",
        r.program.path.display(),
        r.output.describe()
    );
    r
}

// ---------------------------------------------------------------------------------------------
// Reports

/// A `"0x..."` address of a report.
pub fn addr(name: &str, what: &str, s: &str) -> u64 {
    lupine_relink::report::parse_hex(s)
        .unwrap_or_else(|| panic!("{name}: report field {what} is not a 0x address: {s:?}"))
}

/// A report site in numbers.
#[derive(Debug, Clone)]
pub struct Site {
    pub address: u64,
    pub rewritten: bool,
    pub window: Option<(u64, u64)>,
    pub trampoline: Option<u64>,
    pub trampoline_syscall: Option<u64>,
    pub reason_kind: Option<String>,
    pub reason: Option<String>,
    pub symbol: Option<String>,
    pub number: Option<u64>,
    /// A moved cancellation point (see `lupine_relink::cancel`).
    pub moved: Option<Moved>,
}

/// A cancellation point moved whole: its range, the jump at its start, its copy, and the
/// operands that name a bound (`(instruction, field, is the end)`).
#[derive(Debug, Clone)]
pub struct Moved {
    pub range: (u64, u64),
    pub entry_window: (u64, u64),
    pub copy: (u64, u64),
    pub retargeted: Vec<(u64, u64, bool)>,
}

pub fn sites(name: &str, r: &lupine_relink::Report) -> Vec<Site> {
    r.sites
        .iter()
        .map(|s| {
            let opt = |what: &str, v: &Option<String>| v.as_deref().map(|x| addr(name, what, x));
            let window = match (
                opt("window_start", &s.window_start),
                opt("window_end", &s.window_end),
            ) {
                (Some(a), Some(b)) => Some((a, b)),
                _ => None,
            };
            Site {
                address: addr(name, "address", &s.address),
                rewritten: s.status == "rewritten",
                window,
                trampoline: opt("trampoline", &s.trampoline),
                trampoline_syscall: opt("trampoline_syscall", &s.trampoline_syscall),
                reason_kind: s.reason_kind.clone(),
                reason: s.reason.clone(),
                symbol: s.symbol.clone(),
                number: s.syscall_number,
                moved: s.cancellation_point.as_ref().map(|m| {
                    let pair = |what: &str, v: &[String; 2]| {
                        (addr(name, what, &v[0]), addr(name, what, &v[1]))
                    };
                    Moved {
                        range: pair("range", &m.range),
                        entry_window: pair("entry_window", &m.entry_window),
                        copy: pair("copy", &m.copy),
                        retargeted: m
                            .retargeted
                            .iter()
                            .map(|[i, f, e]| {
                                (
                                    addr(name, "retargeted", i),
                                    addr(name, "retargeted", f),
                                    e == "end",
                                )
                            })
                            .collect(),
                    }
                }),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// ELF facts, through the `object` crate

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub p_type: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

impl Segment {
    pub fn exec(&self) -> bool {
        self.flags & object::elf::PF_X != 0
    }
    pub fn write(&self) -> bool {
        self.flags & object::elf::PF_W != 0
    }
    pub fn end(&self) -> u64 {
        self.vaddr + self.memsz
    }
    pub fn contains(&self, a: u64) -> bool {
        a >= self.vaddr && a < self.end()
    }
}

pub struct ElfInfo {
    pub e_type: u16,
    pub entry: u64,
    pub phoff: u64,
    pub phnum: u64,
    pub segments: Vec<Segment>,
}

impl ElfInfo {
    pub fn loads(&self) -> impl Iterator<Item = &Segment> {
        self.segments
            .iter()
            .filter(|s| s.p_type == object::elf::PT_LOAD)
    }
    /// The virtual address of a file offset, through the PT_LOAD that maps it.
    pub fn offset_to_vaddr(&self, off: u64) -> Option<u64> {
        self.loads()
            .find(|s| off >= s.offset && off < s.offset + s.filesz)
            .map(|s| s.vaddr + (off - s.offset))
    }
}

pub fn elf_info(path: &Path) -> ElfInfo {
    use object::read::elf::{FileHeader, ProgramHeader};
    let data = fs::read(path).unwrap();
    let e = object::elf::FileHeader64::<object::LittleEndian>::parse(&*data)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    let end = e.endian().unwrap();
    let segments = e
        .program_headers(end, &*data)
        .unwrap()
        .iter()
        .map(|p| Segment {
            p_type: p.p_type(end),
            flags: p.p_flags(end),
            offset: p.p_offset(end),
            vaddr: p.p_vaddr(end),
            filesz: p.p_filesz(end),
            memsz: p.p_memsz(end),
            align: p.p_align(end),
        })
        .collect();
    ElfInfo {
        e_type: e.e_type(end),
        entry: e.e_entry(end),
        phoff: e.e_phoff(end),
        phnum: e.e_phnum(end) as u64,
        segments,
    }
}

/// Executable address ranges of the relinked file that the original did not have: the
/// trampolines.
pub fn added_code(original: &Path, relinked: &Path) -> Vec<(u64, u64)> {
    let a = elf_info(original);
    let b = elf_info(relinked);
    let old: Vec<(u64, u64)> = a
        .loads()
        .filter(|s| s.exec())
        .map(|s| (s.vaddr, s.end()))
        .collect();
    b.loads()
        .filter(|s| s.exec())
        .filter(|s| !old.iter().any(|&(lo, hi)| s.vaddr < hi && lo < s.end()))
        .map(|s| (s.vaddr, s.end()))
        .collect()
}

/// The executable ranges of a file.
pub fn code_ranges(path: &Path) -> Vec<(u64, u64)> {
    elf_info(path)
        .loads()
        .filter(|s| s.exec())
        .map(|s| (s.vaddr, s.end()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The emulated-KML launcher

/// `kmlrun`, built once per test process with gcc (freestanding static-PIE).
pub fn kmlrun() -> &'static Path {
    static K: OnceLock<PathBuf> = OnceLock::new();
    K.get_or_init(|| {
        let out = work_dir().join("kmlrun");
        must(
            Command::new("gcc")
                .args([
                    "-static-pie",
                    "-nostdlib",
                    "-ffreestanding",
                    "-fno-stack-protector",
                    "-fno-builtin",
                    "-mgeneral-regs-only",
                    "-O2",
                    "-Wall",
                    "-Werror",
                    "-o",
                ])
                .arg(&out)
                .arg(crate_dir().join("tests/support/kmlrun.c")),
        );
        // Nothing would apply relocations: there must be none.
        let info = elf_info(&out);
        assert_eq!(
            info.e_type,
            object::elf::ET_DYN,
            "kmlrun must be position-independent"
        );
        assert!(
            !info
                .segments
                .iter()
                .any(|s| s.p_type == object::elf::PT_INTERP),
            "kmlrun must be static"
        );
        let relocs = must(Command::new("readelf").arg("-rW").arg(&out)).stdout();
        assert!(
            relocs.contains("There are no relocations"),
            "kmlrun has relocations nothing applies:\n{relocs}"
        );
        out
    })
}

/// A run under kmlrun and what the launcher reported: pid -> calls through the stand-in entry
/// (highest report per pid), and the pids that started.
pub struct KmlRun {
    pub output: Output,
    pub calls: BTreeMap<u64, u64>,
    pub started: Vec<u64>,
}

impl KmlRun {
    pub fn total_calls(&self) -> u64 {
        self.calls.values().sum()
    }
}

pub fn run_under_kmlrun(path: &Path, case: &Case, extra_env: &[(&str, &str)]) -> KmlRun {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let count_file = work_dir().join(format!("kmlrun-counts-{n}.txt"));
    let _ = fs::remove_file(&count_file);
    let cf = count_file.to_string_lossy().into_owned();
    let mut env: Vec<(&str, &str)> = vec![("KMLRUN_COUNT_FILE", cf.as_str())];
    env.extend_from_slice(extra_env);
    let output = run_case(path, case, Some(kmlrun()), &env);
    let text = fs::read_to_string(&count_file).unwrap_or_default();
    let mut calls = BTreeMap::new();
    let mut started = Vec::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["kmlrun:", "pid", pid, "start"] => started.push(pid.parse().unwrap()),
            ["kmlrun:", "pid", pid, "calls", n] => {
                let e = calls.entry(pid.parse().unwrap()).or_insert(0);
                *e = (*e).max(n.parse().unwrap());
            }
            _ => panic!("kmlrun count file: unexpected line {line:?}"),
        }
    }
    KmlRun {
        output,
        calls,
        started,
    }
}

//! Dynamically linked variants of the C programs (`musl-gcc` and `gcc` without `-static`), and
//! the system's C libraries they load. A run goes through a dynamic linker named on the command
//! line, so that a relinked copy of the C library stands in for the system's without touching
//! the system: `DIR/libc.so PROG` for musl (its `libc.so` is also its dynamic linker),
//! `DIR/ld-linux-x86-64.so.2 --library-path DIR PROG` for glibc.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::{corpus_src, run_jobs, work_dir, Case, C_PROGRAMS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Libc {
    Musl,
    Glibc,
}

impl Libc {
    pub const ALL: [Libc; 2] = [Libc::Musl, Libc::Glibc];

    /// The static corpus kind whose originals behave the same (for `check_original`).
    pub fn kind(self) -> crate::Kind {
        match self {
            Libc::Musl => crate::Kind::Musl,
            Libc::Glibc => crate::Kind::Glibc,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Libc::Musl => "musl",
            Libc::Glibc => "glibc",
        }
    }

    /// The system's files of this C library that carry `syscall` instructions: musl's
    /// `libc.so` (also its dynamic linker), glibc's `libc.so.6` and its dynamic linker.
    pub fn system_libraries(self) -> &'static [&'static str] {
        match self {
            Libc::Musl => &["/usr/lib/x86_64-linux-musl/libc.so"],
            Libc::Glibc => &[
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2",
            ],
        }
    }

    /// The command that runs `prog` with the C library found in `lib_dir`.
    pub fn command(self, lib_dir: &Path, prog: &Path) -> Command {
        match self {
            Libc::Musl => {
                let mut c = Command::new(lib_dir.join("libc.so"));
                c.arg(prog);
                c
            }
            Libc::Glibc => {
                let mut c = Command::new(lib_dir.join("ld-linux-x86-64.so.2"));
                c.arg("--library-path").arg(lib_dir).arg(prog);
                c
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct DynProgram {
    pub name: String,
    pub libc: Libc,
    pub path: PathBuf,
}

pub struct DynCorpus {
    pub programs: Vec<DynProgram>,
    pub cases: Vec<Case>,
    /// The system's C libraries, copied (`orig/`), as a directory per C library.
    pub system_libs: PathBuf,
}

impl DynCorpus {
    pub fn program(&self, name: &str) -> &DynProgram {
        self.programs
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no dynamic corpus program {name}"))
    }

    /// A directory with the system's copy of `libc`'s libraries.
    pub fn system_lib_dir(&self, libc: Libc) -> PathBuf {
        self.system_libs.join(libc.name())
    }
}

/// Builds the dynamic corpus into `<work dir>/dyn/`, once per test process.
pub fn dynamic_corpus() -> &'static DynCorpus {
    static CORPUS: OnceLock<DynCorpus> = OnceLock::new();
    CORPUS.get_or_init(build)
}

fn build() -> DynCorpus {
    let dir = work_dir().join("dyn");
    fs::create_dir_all(&dir).unwrap();
    fs::create_dir_all(work_dir().join("tmp")).unwrap();
    let mut programs = Vec::new();
    let mut cases = Vec::new();
    let mut jobs = Vec::new();
    for (name, runs) in C_PROGRAMS {
        for libc in Libc::ALL {
            let file = format!("{name}-{}-dyn", libc.name());
            let path = dir.join(&file);
            let mut cmd = Command::new(match libc {
                Libc::Musl => "musl-gcc",
                Libc::Glibc => "gcc",
            });
            cmd.args(crate::c_flags(name, libc.kind()))
                .arg("-o")
                .arg(&path)
                .arg(corpus_src().join(format!("{name}.c")));
            jobs.push((cmd, file.clone()));
            for args in runs.iter() {
                cases.push(Case {
                    program: file.clone(),
                    args: args.iter().map(|s| s.to_string()).collect(),
                    kmlrun_ok: false,
                });
            }
            programs.push(DynProgram {
                name: file,
                libc,
                path,
            });
        }
    }
    run_jobs(jobs);
    let system_libs = dir.join("system-libs");
    for libc in Libc::ALL {
        let d = system_libs.join(libc.name());
        fs::create_dir_all(&d).unwrap();
        for lib in libc.system_libraries() {
            let name: OsString = Path::new(lib).file_name().unwrap().into();
            fs::copy(lib, d.join(name)).unwrap_or_else(|e| panic!("copy {lib}: {e}"));
        }
    }
    DynCorpus {
        programs,
        cases,
        system_libs,
    }
}

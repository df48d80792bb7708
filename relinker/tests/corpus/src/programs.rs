//! The corpus: its programs, how they are built, their runs, and what the originals must do.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use crate::{corpus_root, corpus_src, program_env, run_with_timeout, status_text, work_dir};
use crate::{Output, RUN_TIMEOUT};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `musl-gcc -static` (ET_EXEC).
    Musl,
    /// `gcc -static`, glibc (ET_EXEC).
    Glibc,
    /// `gcc -static-pie`, glibc.
    GlibcPie,
    /// Hand-written assembly, no libc, `-static` and `-static-pie`.
    Asm,
    AsmPie,
    /// Rust for x86_64-unknown-linux-musl (static-PIE).
    Rust,
    /// Debian's busybox-static (glibc, ET_EXEC, stripped).
    Busybox,
}

impl Kind {
    pub fn is_musl(self) -> bool {
        matches!(self, Kind::Musl | Kind::Rust)
    }
}

#[derive(Debug, Clone)]
pub struct Program {
    /// File name, unique in the corpus (busybox keeps its name: it picks the applet by it).
    pub name: String,
    pub kind: Kind,
    pub path: PathBuf,
}

/// One run of a program: its arguments, and whether it makes sense under kmlrun (a program
/// that re-executes /proc/self/exe would start kmlrun instead of itself).
#[derive(Debug, Clone)]
pub struct Case {
    pub program: String,
    pub args: Vec<String>,
    pub kmlrun_ok: bool,
}

impl Case {
    pub fn label(&self) -> String {
        if self.args.is_empty() {
            self.program.clone()
        } else {
            format!("{} {}", self.program, self.args.join(" "))
        }
    }
}

pub struct Corpus {
    pub dir: PathBuf,
    pub programs: Vec<Program>,
    pub cases: Vec<Case>,
}

impl Corpus {
    pub fn program(&self, name: &str) -> &Program {
        self.programs
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no corpus program {name}"))
    }
}

/// The C programs, each built by the three C toolchains, with its extra flags and its runs.
pub const C_PROGRAMS: &[(&str, &[&[&str]])] = &[
    (
        "hello",
        &[&[], &["3"], &["255", "_exit"], &["42", "an argument"]],
    ),
    ("threads", &[&[]]),
    ("fork", &[&[]]),
    ("spawn", &[&[]]),
    ("signals", &[&[]]),
    ("cancel", &[&[]]),
    ("cancel-arch", &[&[]]),
    ("epoll", &[&[]]),
    ("sockets", &[&[]]),
    ("backtrace", &[&["fault"], &["raise"], &["syscall"]]),
];

pub const C_KINDS: [(Kind, &str); 3] = [
    (Kind::Musl, "musl"),
    (Kind::Glibc, "glibc"),
    (Kind::GlibcPie, "glibc-pie"),
];

/// busybox runs: (arguments, fine under kmlrun).
pub fn busybox_cases() -> Vec<(Vec<String>, bool)> {
    let sh = |s: &str| vec!["sh".to_string(), "-c".to_string(), s.to_string()];
    let hello = corpus_src().join("hello.c").to_string_lossy().into_owned();
    vec![
        (vec!["echo".into(), "hello from busybox".into()], true),
        (sh("echo $((6 * 7)); exit 3"), true),
        (
            sh("i=0; while [ $i -lt 3 ]; do i=$((i + 1)); echo loop $i; done"),
            true,
        ),
        (
            sh("seq 5 | sort -r | head -n 2; echo \"pipeline status $?\""),
            true,
        ),
        (
            sh("trap 'echo got USR1' USR1; kill -USR1 $$; echo after the trap"),
            true,
        ),
        // sleep is run through /proc/self/exe, which is kmlrun under kmlrun.
        (sh("sleep 0.05 & wait $!; echo waited for $?"), false),
        (
            sh("(exit 7); echo subshell $?; false || echo false failed"),
            true,
        ),
        (vec!["sha256sum".into(), hello.clone()], true),
        (vec!["wc".into(), "-l".into(), hello], true),
        (vec!["false".into()], true),
        (vec!["no-such-applet".into()], true),
    ]
}

pub fn c_flags(program: &str, kind: Kind) -> Vec<&'static str> {
    let mut f = vec!["-O2", "-pthread", "-Wall"];
    if program == "backtrace" {
        f = vec!["-O1", "-fno-inline", "-funwind-tables", "-pthread", "-Wall"];
        if kind == Kind::Musl {
            f.push("-Wl,--eh-frame-hdr");
        }
    }
    f
}

fn compiler(kind: Kind) -> (&'static str, &'static [&'static str]) {
    match kind {
        Kind::Musl => ("musl-gcc", &["-static"]),
        Kind::Glibc => ("gcc", &["-static"]),
        Kind::GlibcPie => ("gcc", &["-static-pie"]),
        Kind::Asm => ("gcc", &["-nostdlib", "-static"]),
        Kind::AsmPie => ("gcc", &["-nostdlib", "-static-pie"]),
        _ => unreachable!(),
    }
}

/// Builds the corpus into `<work dir>/orig/`, once per test process.
pub fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(build_corpus)
}

fn build_corpus() -> Corpus {
    let started = Instant::now();
    let dir = work_dir().join("orig");
    fs::create_dir_all(&dir).unwrap();
    fs::create_dir_all(work_dir().join("tmp")).unwrap();
    let mut plan = CorpusPlan {
        dir,
        programs: Vec::new(),
        cases: Vec::new(),
        jobs: Vec::new(),
    };
    plan.add_c_programs();
    plan.add_asm_programs();
    let rust_target = corpus_root().join("rust-app");
    plan.jobs
        .push((rust_app_build(&rust_target), "rust-app".to_string()));
    run_jobs(std::mem::take(&mut plan.jobs));
    plan.add_rust_app(&rust_target);
    plan.add_busybox();

    let CorpusPlan {
        dir,
        programs,
        cases,
        ..
    } = plan;
    eprintln!(
        "corpus: {} programs, {} runs, built in {:.1}s",
        programs.len(),
        cases.len(),
        started.elapsed().as_secs_f64()
    );
    Corpus {
        dir,
        programs,
        cases,
    }
}

/// The corpus as it is planned: programs into `dir`, their runs, and the commands that build
/// them (with a name for their logs).
struct CorpusPlan {
    dir: PathBuf,
    programs: Vec<Program>,
    cases: Vec<Case>,
    jobs: Vec<(Command, String)>,
}

impl CorpusPlan {
    fn add_program(&mut self, name: &str, kind: Kind) -> PathBuf {
        let path = self.dir.join(name);
        self.programs.push(Program {
            name: name.to_string(),
            kind,
            path: path.clone(),
        });
        path
    }

    /// Each of [`C_PROGRAMS`] by each of [`C_KINDS`].
    fn add_c_programs(&mut self) {
        let src = corpus_src();
        for (name, runs) in C_PROGRAMS {
            for (kind, suffix) in C_KINDS {
                let file = format!("{name}-{suffix}");
                let out = self.add_program(&file, kind);
                let (cc, mode) = compiler(kind);
                let mut cmd = Command::new(cc);
                cmd.args(mode).args(c_flags(name, kind)).arg("-o").arg(&out);
                cmd.arg(src.join(format!("{name}.c")));
                if kind == Kind::GlibcPie {
                    // libgcc_eh's FDE lookup needs glibc's _dl_find_object, which a static-PIE
                    // link only pulls in when libc comes again after libgcc_eh.
                    cmd.arg("-lc");
                }
                self.jobs.push((cmd, file.clone()));
                for args in runs.iter() {
                    // Under kmlrun a signal that arrives during a system call interrupts the
                    // launcher's stand-in entry, whose code the program's unwinder cannot see
                    // (it is not in the program's .eh_frame_hdr): a backtrace from the handler
                    // stops there. A real KML kernel reports the trampoline's return address
                    // instead.
                    let interrupts_a_syscall =
                        *name == "backtrace" && args.first().is_some_and(|m| *m != "fault");
                    self.cases.push(Case {
                        program: file.clone(),
                        args: args.iter().map(|s| s.to_string()).collect(),
                        kmlrun_ok: !interrupts_a_syscall,
                    });
                }
            }
        }
    }

    /// regs.S, static and static-PIE.
    fn add_asm_programs(&mut self) {
        for (kind, file) in [(Kind::Asm, "regs-asm"), (Kind::AsmPie, "regs-asm-pie")] {
            let out = self.add_program(file, kind);
            let (cc, mode) = compiler(kind);
            let mut cmd = Command::new(cc);
            cmd.args(mode)
                .arg("-o")
                .arg(&out)
                .arg(corpus_src().join("regs.S"));
            self.jobs.push((cmd, file.to_string()));
            self.cases.push(Case {
                program: file.to_string(),
                args: vec![],
                kmlrun_ok: true,
            });
        }
    }

    /// The Rust program, once built into `rust_target`.
    fn add_rust_app(&mut self, rust_target: &Path) {
        let rust_bin = rust_target.join("x86_64-unknown-linux-musl/release/corpus-rust-app");
        let rust_out = self.add_program("rust-app", Kind::Rust);
        fs::copy(&rust_bin, &rust_out).unwrap();
        for args in [vec![], vec!["5".to_string()]] {
            self.cases.push(Case {
                program: "rust-app".into(),
                args,
                kmlrun_ok: true,
            });
        }
    }

    /// Debian's busybox-static.
    fn add_busybox(&mut self) {
        let bb = self.add_program("busybox", Kind::Busybox);
        fs::copy("/bin/busybox", &bb).expect("Debian's busybox-static at /bin/busybox");
        fs::set_permissions(&bb, fs::Permissions::from_mode(0o755)).unwrap();
        for (args, kmlrun_ok) in busybox_cases() {
            self.cases.push(Case {
                program: "busybox".into(),
                args,
                kmlrun_ok,
            });
        }
    }
}

/// `cargo build` of the Rust corpus program into `rust_target`.
fn rust_app_build(rust_target: &Path) -> Command {
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(corpus_src().join("rust-app"))
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            "x86_64-unknown-linux-musl",
        ])
        .arg("--target-dir")
        .arg(rust_target)
        // Our own flags, not the workspace's (its .cargo/config.toml is for lupine-init):
        // static-PIE, the target's default, with unwind tables for catch_unwind.
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET");
    cargo
}

/// Runs the build commands a few at a time (the machine has two cores; compilers wait on I/O
/// too), their output in `<work dir>/build-logs/`; panics with the log of one that fails.
pub fn run_jobs(jobs: Vec<(Command, String)>) {
    let mut pending = jobs.into_iter();
    let mut running: Vec<(Child, String, PathBuf, PathBuf)> = Vec::new();
    let logs = work_dir().join("build-logs");
    fs::create_dir_all(&logs).unwrap();
    loop {
        while running.len() < 3 {
            let Some((mut cmd, what)) = pending.next() else {
                break;
            };
            let log_out = logs.join(format!("{what}.out"));
            let log_err = logs.join(format!("{what}.err"));
            let child = cmd
                .stdin(Stdio::null())
                .stdout(fs::File::create(&log_out).unwrap())
                .stderr(fs::File::create(&log_err).unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
            running.push((child, what, log_out, log_err));
        }
        if running.is_empty() {
            break;
        }
        let (mut child, what, _o, e) = running.remove(0);
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "building corpus program {what} failed ({}):\n{}",
            status_text(status),
            fs::read_to_string(&e).unwrap_or_default()
        );
    }
}

/// Runs a case's program (`path` stands in for the program: its relinked copy, say), in the
/// corpus environment, from the work directory.
pub fn run_case(path: &Path, case: &Case, wrapper: Option<&Path>, env: &[(&str, &str)]) -> Output {
    let mut cmd = match wrapper {
        Some(w) => {
            let mut c = Command::new(w);
            c.arg(path);
            c
        }
        None => Command::new(path),
    };
    cmd.args(&case.args).current_dir(work_dir());
    program_env(&mut cmd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_with_timeout(&mut cmd, RUN_TIMEOUT)
}

/// Expectations about the originals themselves, so that "the same as the original" cannot
/// hold vacuously (both broken alike). Returns a problem, if any.
pub fn check_original(case: &Case, kind: Kind, out: &Output) -> Option<String> {
    let stdout = out.stdout();
    let expect = |cond: bool, what: &str| -> Option<String> {
        if cond {
            None
        } else {
            Some(format!(
                "original {}: {what}\n{}",
                case.label(),
                out.describe()
            ))
        }
    };
    if out.timed_out {
        return Some(format!("original {} timed out", case.label()));
    }
    // The C program's name without its kind ("cancel-arch-glibc-pie": "cancel-arch"; the
    // dynamic corpus's "cancel-arch-musl-dyn" too).
    let program = case.program.strip_suffix("-dyn").unwrap_or(&case.program);
    let base = C_KINDS
        .iter()
        .find_map(|(_, suffix)| program.strip_suffix(&format!("-{suffix}")))
        .unwrap_or_else(|| program.split('-').next().unwrap_or(""));
    match base {
        "hello" => {
            let code: i32 = case.args.first().map(|a| a.parse().unwrap()).unwrap_or(0);
            expect(
                out.status.code() == Some(code) && stdout.contains("hello, world (tls 42)"),
                "hello",
            )
        }
        "threads" => expect(
            stdout.contains("detached done 4, threads left 1"),
            "threads",
        ),
        "fork" => expect(stdout.contains("middle child: exited 20"), "fork"),
        "spawn" => expect(
            stdout.contains("vfork+execve: exited 7") && stdout.contains("posix_spawn: exited 32"),
            "spawn",
        ),
        "signals" => expect(
            stdout.contains("SA_RESTART: read returned 1 'x' after 2 alarms")
                && stdout.contains("no SA_RESTART: read returned -1 (EINTR)"),
            "signals",
        ),
        "cancel" => expect(
            stdout.contains("reader: canceled") && stdout.contains("cleanups 3"),
            "cancel",
        ),
        "cancel-arch" => expect(
            stdout == "read 1 'x' after a restart\ncancelled\nchild: exit 0\ncancelled\n",
            "cancel-arch",
        ),
        "epoll" => expect(stdout.contains("timer: 1 ready, id 4"), "epoll"),
        "sockets" => expect(stdout.contains("client got 4: pong"), "sockets"),
        "backtrace" => {
            let mode = case.args[0].as_str();
            // musl's libc has no unwind tables: only a fault in the program's own code
            // unwinds past the signal frame there.
            let through = kind != Kind::Musl || mode == "fault";
            expect(
                !through || stdout.contains("_Unwind_Backtrace: level2 level1 main"),
                "backtrace through the signal frame",
            )
            .or_else(|| {
                expect(
                    kind == Kind::Musl || stdout.contains("backtrace(): level2 level1 main"),
                    "glibc backtrace() through the signal frame",
                )
            })
        }
        "regs" => expect(out.status.success() && stdout.contains("regs: ok"), "regs"),
        "rust" => expect(stdout.contains("catch_unwind: caught"), "rust-app"),
        "busybox" if case.args.len() == 3 && case.args[2].starts_with("echo $((6 * 7))") => expect(
            stdout == "42\n" && out.status.code() == Some(3),
            "busybox sh",
        ),
        _ => None,
    }
}

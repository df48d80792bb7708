//! Shared by the relinker's integration tests: building the corpus (C with musl-gcc and gcc,
//! assembly, a Rust program, Debian's busybox), running programs with a time limit, relinking,
//! reading reports, and the emulated-KML launcher `kmlrun`.
//!
//! Everything is built under `target/relink-corpus/<test binary>.<pid>/`, once per test process.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// How long one corpus program may run (each does well under a second).
pub const RUN_TIMEOUT: Duration = Duration::from_secs(30);

pub fn relinker() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lupine-relink"))
}

pub fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn corpus_src() -> PathBuf {
    crate_dir().join("tests/corpus")
}

/// `target/relink-corpus`.
pub fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("relink-corpus")
}

/// `target/relink-corpus/<this test binary>/`, emptied on first use by this process.
pub fn work_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let stem = exe.file_stem().unwrap().to_string_lossy().into_owned();
        let test = stem.split('-').next().unwrap_or("test").to_string();
        // One directory per process, so that two runs at once (two checkouts' cargo test, or
        // a developer's and an editor's) never pull files from under each other; directories
        // of processes that are gone are removed.
        let root = corpus_root();
        fs::create_dir_all(&root).unwrap();
        for e in fs::read_dir(&root).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix(&format!("{test}.")) {
                if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = root.join(format!("{test}.{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    })
}

/// A fresh empty directory under the work directory.
pub fn scratch(name: &str) -> PathBuf {
    let d = work_dir().join("scratch").join(name);
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

// ---------------------------------------------------------------------------------------------
// Running programs

#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: bool,
    pub elapsed: Duration,
}

impl Output {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    /// "exit 3", "signal 9", "timed out".
    pub fn how(&self) -> String {
        if self.timed_out {
            "timed out".to_string()
        } else {
            status_text(self.status)
        }
    }
    /// Exit status and both streams, for comparisons.
    pub fn observable(&self) -> (String, Vec<u8>, Vec<u8>) {
        (self.how(), self.stdout.clone(), self.stderr.clone())
    }
    /// Everything, for a failure message.
    pub fn describe(&self) -> String {
        format!(
            "{} after {:.2}s\n--- stdout ---\n{}--- stderr ---\n{}",
            self.how(),
            self.elapsed.as_secs_f64(),
            clip(&self.stdout()),
            clip(&self.stderr())
        )
    }
}

pub fn status_text(s: ExitStatus) -> String {
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => format!("{s:?}"),
    }
}

fn clip(s: &str) -> String {
    const MAX: usize = 4000;
    let mut s = if s.len() > MAX {
        let mut cut = MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}... ({} bytes)", &s[..cut], s.len())
    } else {
        s.to_string()
    };
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

fn drain(mut r: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

/// Runs `cmd` with stdin from /dev/null and stdout and stderr captured; kills it after
/// `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let start = Instant::now();
    let mut child: Child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > timeout {
            timed_out = true;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        thread::sleep(Duration::from_millis(2));
    };
    // A grandchild that kept the pipes open would block these forever: give up on them then.
    let stdout = join_for(out, Duration::from_secs(5));
    let stderr = join_for(err, Duration::from_secs(5));
    Output {
        status,
        stdout,
        stderr,
        timed_out,
        elapsed: start.elapsed(),
    }
}

fn join_for(h: thread::JoinHandle<Vec<u8>>, limit: Duration) -> Vec<u8> {
    let start = Instant::now();
    while !h.is_finished() {
        if start.elapsed() > limit {
            return b"<output still open: a leftover process holds the pipe>".to_vec();
        }
        thread::sleep(Duration::from_millis(2));
    }
    h.join().unwrap()
}

/// Runs a build step, panicking with its output when it fails.
pub fn must(cmd: &mut Command) -> Output {
    let out = run_with_timeout(cmd, Duration::from_secs(300));
    assert!(
        out.status.success() && !out.timed_out,
        "{cmd:?} failed: {}",
        out.describe()
    );
    out
}

/// The controlled environment every corpus program runs in.
pub fn program_env(cmd: &mut Command) -> &mut Command {
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LANG", "C")
        .env("CORPUS_VAR", "corpus value")
        .env("TMPDIR", work_dir().join("tmp"))
}

// ---------------------------------------------------------------------------------------------
// The corpus

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

fn c_flags(program: &str, kind: Kind) -> Vec<&'static str> {
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
fn run_jobs(jobs: Vec<(Command, String)>) {
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
    let base = case.program.split('-').next().unwrap_or("");
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

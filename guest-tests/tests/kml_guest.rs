//! The whole corpus, relinked, under real Kernel Mode Linux: every program under `/trusted` of
//! a `lupine-general+kml+userns+preempt+kprobes+debug-entry` guest booted with `kml=on` and 2
//! vCPUs (the cancellation programs with 1 vCPU too), run with the arguments, environment, working
//! directory and stdin of the host runs. Each must print the same
//! stdout and stderr and end the same way as the original on the host, with its rewritten
//! sites calling the KML entry (the call-entry count of /proc/kml rises during each run, which
//! happens only at CPL 0: no other process gets AT_SYSINFO), and the kernel log must stay free
//! of warnings.
//!
//! The dynamically linked variants of the C programs too, unmodified under `/trusted`, with the
//! relinked musl `libc.so` and glibc `libc.so.6` and `ld-linux-x86-64.so.2` in place: their
//! calls go through the KML entry from the libraries' probing trampolines. An interpreter that
//! is not owned by root or is writable by group or others (or under such a directory) keeps
//! the program at CPL 3, with the kernel's notice.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;

use guest_tests::{Initramfs, Outcome, TempDir, Vm};
use relink_corpus::{
    corpus, corpus_src, dynamic_corpus, run_case, work_dir, Case, Corpus, Libc, Output, Program,
};

#[path = "kml/common.rs"]
mod common;
use common::GENERAL_KML as PROFILE;

/// A corpus program relinked by lupine-relink, as it goes under `/trusted`.
fn relinked(program: &Program) -> Vec<u8> {
    let original = std::fs::read(&program.path).unwrap();
    lupine_relink::relink_bytes(&program.name, &program.name, &original)
        .unwrap_or_else(|e| panic!("lupine-relink {}: {e}", program.path.display()))
        .bytes
}

/// What the shell's `$?` says for a host exit status.
fn shell_status(out: &Output) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (out.status.code(), out.status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        _ => panic!("no status: {out:?}"),
    }
}

/// `od -An -v -tx1` output back to bytes.
fn from_od(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap_or_else(|_| panic!("bad od byte {h:?}")))
        .collect()
}

/// The guest script: each case run as on the host, its streams written to /o/N.out and
/// /o/N.err, then `case N status S calls C`; at the end every stream in hex and the kernel
/// log's warnings.
fn script(cases: &[(String, &Case)]) -> String {
    let work = work_dir().display().to_string();
    let tmp = work_dir().join("tmp").display().to_string();
    let hello = corpus_src().join("hello.c");
    let hello_dir = corpus_src().display().to_string();
    let hello = hello.display().to_string();
    // The host paths are made here, not in the initramfs: they may lie under /tmp, where
    // lupine-init mounts a tmpfs.
    let mut s = format!(
        "B=/bin/busybox\n\
         calls() {{ $B awk '/^cpu/ {{ n += $3 }} END {{ print n }}' /proc/kml; }}\n\
         $B mkdir -p /o {tmp} {hello_dir} && $B cp /hello.c {hello}\n"
    );
    for (n, (path, case)) in cases.iter().enumerate() {
        let args: String = case
            .args
            .iter()
            .map(|a| format!(" '{}'", a.replace('\'', r"'\''")))
            .collect();
        writeln!(
            s,
            "a=$(calls); (cd {work} && $B env -i PATH=/usr/bin:/bin LANG=C \
             'CORPUS_VAR=corpus value' TMPDIR={tmp} {path}{args} </dev/null >/o/{n}.out \
             2>/o/{n}.err); st=$?; b=$(calls); echo \"case {n} status $st calls $((b - a))\""
        )
        .unwrap();
    }
    for n in 0..cases.len() {
        writeln!(
            s,
            "echo out {n}; $B od -An -v -tx1 /o/{n}.out; echo err {n}; $B od -An -v -tx1 \
             /o/{n}.err; echo end {n}"
        )
        .unwrap();
    }
    s.push_str(
        "echo dmesg-begin; $B dmesg | $B grep -E 'WARNING|BUG|Oops|Call Trace'; echo dmesg-end\n",
    );
    s
}

#[test]
fn relinked_corpus_runs_under_real_kml_like_the_originals_on_the_host() {
    run_corpus("kml-corpus", 2, |_| true);
}

/// The cancellation programs (musl's `__syscall_cp_asm` and glibc's `__syscall_cancel_arch`,
/// moved by lupine-relink) on one vCPU too: cancellation depends on where a signal finds the
/// thread, and one CPU interleaves the threads differently.
#[test]
fn cancellation_points_run_under_real_kml_on_one_vcpu() {
    run_corpus("kml-cancel", 1, |case| case.program.starts_with("cancel"));
}

/// Runs the corpus cases that `select` takes under /trusted of a guest with `smp` vCPUs and
/// compares each with the host's run.
fn run_corpus(name: &str, smp: u32, select: fn(&Case) -> bool) {
    let c = corpus();
    let tmp = TempDir::new(name).unwrap();
    let (initrd, cases, programs) = corpus_initramfs(c, &tmp, select);
    run_like_the_host(&initrd, smp, &cases, |case| {
        c.program(&case.program).path.clone()
    });
    println!(
        "{} runs of {} relinked programs at CPL 0 with {smp} vCPUs, same as on the host",
        cases.len(),
        programs
    );
}

/// Boots `initrd` (its script from [`script`]) on `smp` vCPUs with `kml=on`; every case must
/// end and print as on the host (the program at `host_path(case)`) and call through the KML
/// entry, and the kernel log must have no warning. Returns the guest's output.
fn run_like_the_host(
    initrd: &std::path::Path,
    smp: u32,
    cases: &[(String, &Case)],
    host_path: impl Fn(&Case) -> std::path::PathBuf,
) -> Outcome {
    let out = Vm::lupine_on(PROFILE, initrd)
        .unwrap()
        .smp(smp)
        .append("kml=on")
        .timeout(Duration::from_secs(600))
        .run()
        .unwrap();
    out.assert_exit_status(0);
    let console = Console {
        out: &out,
        lines: out.lines().collect(),
    };
    let dmesg = console.section("dmesg-begin", "dmesg-end");
    assert!(dmesg.is_empty(), "kernel log:\n{dmesg}\n{out}");
    let mut problems = Vec::new();
    for (n, (path, case)) in cases.iter().enumerate() {
        let host = run_case(&host_path(case), case, None, &[]);
        compare_with_host(&host, &console, n, path, case, &mut problems);
    }
    assert!(
        problems.is_empty(),
        "{} of {} runs failed:\n\n{}",
        problems.len(),
        cases.len(),
        problems.join("\n\n")
    );
    out
}

/// The guest's initramfs in `tmp`: each relinked program under /trusted and the script of
/// every case. Returns it, the cases with their guest paths, and the number of programs.
fn corpus_initramfs<'c>(
    c: &'c Corpus,
    tmp: &TempDir,
    select: fn(&Case) -> bool,
) -> (std::path::PathBuf, Vec<(String, &'c Case)>, usize) {
    let mut initrd = Initramfs::sh(&["/corpus.sh"])
        .unwrap()
        // Read by busybox sha256sum and wc at its host path (see script()).
        .file(
            "/hello.c",
            0o644,
            std::fs::read(corpus_src().join("hello.c")).unwrap(),
        );
    let mut placed = BTreeSet::new();
    let mut cases = Vec::new();
    for case in c.cases.iter().filter(|c| select(c)) {
        // busybox picks its applet by the name it is run as: keep the file names.
        let path = format!("/trusted/{}", case.program);
        if placed.insert(path.clone()) {
            initrd = initrd.file(&path, 0o755, relinked(c.program(&case.program)));
        }
        cases.push((path, case));
    }
    let initrd = initrd
        .file("/corpus.sh", 0o644, script(&cases))
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    (initrd, cases, placed.len())
}

/// The guest's console, split at the script's marker lines.
struct Console<'a> {
    out: &'a Outcome,
    lines: Vec<&'a str>,
}

impl Console<'_> {
    /// The lines between the lines `start` and `end`.
    fn section(&self, start: &str, end: &str) -> String {
        let from = self
            .lines
            .iter()
            .position(|l| *l == start)
            .unwrap_or_else(|| panic!("no {start:?} line\n{}", self.out));
        let to = from
            + self.lines[from..]
                .iter()
                .position(|l| *l == end)
                .unwrap_or_else(|| panic!("no {end:?} line\n{}", self.out));
        self.lines[from + 1..to].join("\n")
    }
}

/// Case `n` (at `path` in the guest) must end and print as the original did on the host
/// (`host`), and call through the KML entry.
fn compare_with_host(
    host: &Output,
    console: &Console<'_>,
    n: usize,
    path: &str,
    case: &Case,
    problems: &mut Vec<String>,
) {
    let prefix = format!("case {n} status ");
    let Some(line) = console.lines.iter().find_map(|l| l.strip_prefix(&prefix)) else {
        problems.push(format!("{}: no result line", case.label()));
        return;
    };
    let (status, calls) = line
        .split_once(" calls ")
        .unwrap_or_else(|| panic!("bad line {line:?}"));
    let stdout = from_od(&console.section(&format!("out {n}"), &format!("err {n}")));
    let stderr = from_od(&console.section(&format!("err {n}"), &format!("end {n}")));
    let want = (shell_status(host), host.stdout.clone(), host.stderr.clone());
    let got = (status.parse::<i32>().unwrap(), stdout, stderr);
    if got != want {
        problems.push(format!(
            "{} ({path}): differs from the host\n=== host: {}=== guest: status {}\n\
             --- stdout ---\n{}--- stderr ---\n{}",
            case.label(),
            host.describe(),
            got.0,
            String::from_utf8_lossy(&got.1),
            String::from_utf8_lossy(&got.2),
        ));
    }
    if calls.parse::<u64>().unwrap_or(0) == 0 {
        problems.push(format!(
            "{}: no call through the KML entry (calls {calls})",
            case.label()
        ));
    }
}

/// The guest paths of the C libraries the dynamic programs load (where the host has them) and
/// their relinked copies, with glibc's `libgcc_s.so.1` as it is (cancellation and backtraces
/// load it; it makes no system call).
fn relinked_c_libraries() -> Vec<(String, Vec<u8>)> {
    let mut libs = Vec::new();
    for (guest, host) in [
        ("/lib/ld-musl-x86_64.so.1", Libc::Musl.system_libraries()[0]),
        (
            "/lib/x86_64-linux-gnu/libc.so.6",
            Libc::Glibc.system_libraries()[0],
        ),
        (
            "/lib64/ld-linux-x86-64.so.2",
            Libc::Glibc.system_libraries()[1],
        ),
    ] {
        let original = std::fs::read(host).unwrap();
        let r = lupine_relink::relink_bytes(host, guest, &original)
            .unwrap_or_else(|e| panic!("lupine-relink {host}: {e}"));
        assert_eq!(r.report.kind, "shared");
        libs.push((guest.to_string(), r.bytes));
    }
    let gcc_s = "/lib/x86_64-linux-gnu/libgcc_s.so.1";
    libs.push((gcc_s.to_string(), std::fs::read(gcc_s).unwrap()));
    libs
}

/// What the interpreter checks do to the musl interpreter, and restore after.
const INTERPRETER_CHECKS: [(&str, &str, &str); 3] = [
    (
        "group-writable",
        "$B chmod 775 /lib/ld-musl-x86_64.so.1",
        "$B chmod 755 /lib/ld-musl-x86_64.so.1",
    ),
    (
        "other owner",
        "$B chown 65534 /lib/ld-musl-x86_64.so.1",
        "$B chown 0 /lib/ld-musl-x86_64.so.1",
    ),
    (
        "writable directory",
        "$B chmod 777 /lib",
        "$B chmod 755 /lib",
    ),
];

/// The dynamic corpus, unmodified under /trusted with the relinked C libraries in place, on 2
/// vCPUs: the same as on the host with the system's libraries, with calls through the KML entry;
/// then a musl program whose interpreter fails each ownership rule runs at CPL 3 (no call
/// through the entry, the kernel's notice), and at CPL 0 again once it is restored.
#[test]
fn dynamic_programs_run_at_cpl0_through_relinked_c_libraries() {
    let c = dynamic_corpus();
    let tmp = TempDir::new("kml-dynamic").unwrap();
    let mut initrd = Initramfs::sh(&["/corpus.sh"]).unwrap().file(
        "/hello.c",
        0o644,
        std::fs::read(corpus_src().join("hello.c")).unwrap(),
    );
    for (path, bytes) in relinked_c_libraries() {
        initrd = initrd.file(&path, 0o755, bytes);
    }
    let mut placed = BTreeSet::new();
    let mut cases = Vec::new();
    for case in &c.cases {
        let path = format!("/trusted/{}", case.program);
        if placed.insert(path.clone()) {
            initrd = initrd.file(
                &path,
                0o755,
                std::fs::read(&c.program(&case.program).path).unwrap(),
            );
        }
        cases.push((path, case));
    }
    let hello = c
        .cases
        .iter()
        .position(|k| k.program == "hello-musl-dyn")
        .unwrap();
    let mut sh = script(&cases);
    let (hello_path, _) = &cases[hello];
    for (what, break_it, restore) in INTERPRETER_CHECKS.iter().chain([&("restored", ":", ":")]) {
        writeln!(
            sh,
            "{break_it}; a=$(calls); {hello_path} >/dev/null; b=$(calls); {restore}; \
             echo \"interpreter {what}: calls $((b - a))\""
        )
        .unwrap();
    }
    sh.push_str("echo notices-begin; $B dmesg | $B grep 'runs at CPL 3'; echo notices-end\n");
    let initrd = initrd
        .file("/corpus.sh", 0o644, sh)
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let out = run_like_the_host(&initrd, 2, &cases, |case| {
        c.program(&case.program).path.clone()
    });
    let console = Console {
        out: &out,
        lines: out.lines().collect(),
    };

    let calls = |what: &str| -> u64 {
        let prefix = format!("interpreter {what}: calls ");
        out.lines()
            .find_map(|l| l.strip_prefix(&prefix).map(|n| n.parse().unwrap()))
            .unwrap_or_else(|| panic!("no {prefix:?} line\n{out}"))
    };
    for (what, _, _) in INTERPRETER_CHECKS {
        assert_eq!(calls(what), 0, "{what}: the program ran at CPL 0\n{out}");
    }
    assert!(calls("restored") > 0, "not at CPL 0 once restored\n{out}");
    let notices = console.section("notices-begin", "notices-end");
    assert_eq!(
        notices
            .matches("hello-musl-dyn runs at CPL 3: its ELF interpreter, or a directory above it")
            .count(),
        INTERPRETER_CHECKS.len(),
        "{notices}"
    );
}

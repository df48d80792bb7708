//! Shared objects: the system's C libraries (musl's `libc.so`, glibc's `libc.so.6` and
//! `ld-linux-x86-64.so.2`) relinked, and the dynamically linked variants of the corpus's C
//! programs run through them, unmodified, on this host (no KML: every probe finds no
//! `AT_SYSINFO`).
//!
//! - Each run prints and exits as it does with the system's libraries.
//! - Under `strace -f -i -k`, the system calls made from the relinked libraries come from the
//!   code the relinker added (trampolines, moved cancellation points, the probe), but for the
//!   sites a rule keeps real (clone, vfork, exit, rt_sigreturn); at least 99% of the others.
//! - The relinked libraries are deterministic, keep their dynamic linking information, and are
//!   refused when relinked again.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use support::*;

/// A relinked system library: where it is and what its report says.
struct RelinkedLib {
    path: PathBuf,
    report: lupine_relink::Report,
}

/// The system's libraries relinked into `<work dir>/dyn/relinked/<libc>/`, once per process.
fn relinked_libs() -> &'static BTreeMap<&'static str, Vec<RelinkedLib>> {
    static LIBS: OnceLock<BTreeMap<&'static str, Vec<RelinkedLib>>> = OnceLock::new();
    LIBS.get_or_init(|| {
        let mut all = BTreeMap::new();
        for libc in Libc::ALL {
            let dir = relinked_dir(libc);
            fs::create_dir_all(&dir).unwrap();
            let mut libs = Vec::new();
            for lib in libc.system_libraries() {
                let name = Path::new(lib).file_name().unwrap();
                let out = dir.join(name);
                let rep = dir.join(format!("{}.json", name.to_string_lossy()));
                let o = relink(Path::new(lib), &out, Some(&rep));
                assert!(o.status.success(), "lupine-relink {lib}: {}", o.describe());
                let report = serde_json::from_str(&fs::read_to_string(&rep).unwrap()).unwrap();
                libs.push(RelinkedLib { path: out, report });
            }
            all.insert(libc.name(), libs);
        }
        all
    })
}

fn relinked_dir(libc: Libc) -> PathBuf {
    work_dir().join("dyn/relinked").join(libc.name())
}

fn run_dyn(libc: Libc, lib_dir: &Path, prog: &Path, case: &Case) -> Output {
    let mut cmd = libc.command(lib_dir, prog);
    cmd.args(&case.args).current_dir(work_dir());
    program_env(&mut cmd);
    run_with_timeout(&mut cmd, RUN_TIMEOUT)
}

#[test]
fn relinked_c_libraries_are_shared_objects_with_a_probe() {
    for (libc, libs) in relinked_libs() {
        for l in libs {
            let r = &l.report;
            let name = l.path.display();
            assert_eq!(r.kind, "shared", "{name}");
            assert!(r.entry.stub.is_none() && r.entry.probe.is_some(), "{name}");
            assert!(r.counts.rewritten > 0, "{name}: nothing rewritten");
            let again = relink(&l.path, &l.path.with_extension("again"), None);
            assert!(
                !again.status.success() && again.stderr().contains("already relinked"),
                "{name}: relinked twice: {}",
                again.describe()
            );
        }
        let libc_so = &libs[0].report;
        if *libc == "musl" {
            let moved = libc_so
                .sites
                .iter()
                .filter(|s| s.cancellation_point.is_some())
                .count();
            assert_eq!(moved, 1, "musl's __syscall_cp_asm is moved whole");
        } else {
            assert_eq!(libc_so.soname.as_deref(), Some("libc.so.6"));
            assert_eq!(libc_so.needed, ["ld-linux-x86-64.so.2"]);
        }
    }
    // Deterministic: the same input gives the same bytes.
    let lib = Libc::Musl.system_libraries()[0];
    let again = work_dir().join("dyn/libc.so.again");
    assert!(relink(Path::new(lib), &again, None).status.success());
    assert_eq!(
        fs::read(&again).unwrap(),
        fs::read(relinked_dir(Libc::Musl).join("libc.so")).unwrap()
    );
}

#[test]
fn dynamic_programs_behave_the_same_with_relinked_c_libraries() {
    let c = dynamic_corpus();
    relinked_libs();
    let mut problems = Vec::new();
    for case in &c.cases {
        let p = c.program(&case.program);
        let orig = run_dyn(p.libc, &c.system_lib_dir(p.libc), &p.path, case);
        if let Some(why) = check_original(case, p.libc.kind(), &orig) {
            problems.push(format!("corpus problem, not the relinker's: {why}"));
            continue;
        }
        let new = run_dyn(p.libc, &relinked_dir(p.libc), &p.path, case);
        if orig.observable() != new.observable() {
            problems.push(format!(
                "{}: differs with the relinked {} libraries\n=== original: {}=== relinked: {}",
                case.label(),
                p.libc.name(),
                orig.describe(),
                new.describe()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// Calls from the relinked libraries, by where they were made.
#[derive(Default, Debug)]
struct Tally {
    added: u64,
    /// Calls from kept sites, by system call.
    kept: BTreeMap<String, u64>,
    /// Calls from other files (the program, the vDSO, libgcc_s).
    elsewhere: u64,
    errors: Vec<String>,
}

/// The calls a rule keeps real: they cannot return through a call (musl's `__unmapself`
/// unmaps the stack of the thread that calls it, then exits).
const KEPT_CALLS: [&str; 6] = [
    "rt_sigreturn",
    "clone",
    "clone3",
    "vfork",
    "exit",
    "munmap in __unmapself",
];

fn tally(trace: &str, libs: &[RelinkedLib], t: &mut Tally) {
    for (_, name, result, frame) in entries(trace) {
        if name == "execve" && result.trim() == "0" {
            continue; // the frame is the new image's entry point
        }
        if name == "rt_sigreturn" {
            // strace shows where it returned to; its site is checked to be kept below.
            *t.kept.entry(name).or_default() += 1;
            continue;
        }
        let Some((path, off)) = frame else {
            t.elsewhere += 1;
            continue;
        };
        let Some(lib) = libs.iter().find(|l| Path::new(&path) == l.path) else {
            t.elsewhere += 1;
            continue;
        };
        // Shared objects are laid out with file offsets equal to addresses.
        let r = &lib.report;
        let code = parse_hex(&r.code_segment.vaddr);
        if off >= code && off < code + r.code_segment.size {
            t.added += 1;
            continue;
        }
        let site = off - 2;
        match r.sites.iter().find(|s| parse_hex(&s.address) == site) {
            Some(s) if s.status == "kept" => {
                let unmapself = s
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.contains("__unmapself"));
                let call = match (name.as_str(), unmapself) {
                    ("munmap", true) => "munmap in __unmapself".to_string(),
                    _ => name,
                };
                *t.kept.entry(call).or_default() += 1
            }
            Some(_) => t.errors.push(format!(
                "{name} made at {site:#x} of {path}, a site the report says is rewritten"
            )),
            None => t.errors.push(format!(
                "{name} made at {site:#x} of {path}, a site the report does not list"
            )),
        }
    }
}

fn parse_hex(s: &str) -> u64 {
    lupine_relink::report::parse_hex(s).unwrap_or_else(|| panic!("not an address: {s}"))
}

#[test]
fn calls_come_from_the_added_code_of_the_relinked_c_libraries() {
    assert!(Path::new("/usr/bin/strace").exists(), "strace is needed");
    let c = dynamic_corpus();
    let libs = relinked_libs();
    let mut per_libc: BTreeMap<&str, Tally> = BTreeMap::new();
    for (n, case) in c.cases.iter().enumerate() {
        let p = c.program(&case.program);
        let dir = work_dir().join(format!("dyn/strace-{n}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let inner = p.libc.command(&relinked_dir(p.libc), &p.path);
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-qq", "-i", "-k", "-ff", "-o"])
            .arg(dir.join("t"))
            .arg("--")
            .arg(inner.get_program())
            .args(inner.get_args())
            .args(&case.args)
            .current_dir(work_dir());
        program_env(&mut cmd);
        let out = run_with_timeout(&mut cmd, RUN_TIMEOUT * 2);
        let t = per_libc.entry(p.libc.name()).or_default();
        if out.timed_out {
            t.errors
                .push(format!("{} timed out under strace", case.label()));
            continue;
        }
        for e in fs::read_dir(&dir).unwrap() {
            tally(
                &fs::read_to_string(e.unwrap().path()).unwrap(),
                &libs[p.libc.name()],
                t,
            );
        }
    }
    let mut problems = Vec::new();
    for (libc, t) in &per_libc {
        let kept: u64 = t.kept.values().sum();
        let other: u64 = t
            .kept
            .iter()
            .filter(|(k, _)| !KEPT_CALLS.contains(&k.as_str()))
            .map(|(_, v)| v)
            .sum();
        let share = t.added as f64 / (t.added + other).max(1) as f64;
        eprintln!(
            "{libc}: {} calls from the relinked libraries: {} from the added code ({:.2}% of \
             those not kept by rule), {kept} from kept sites {:?}; {} from elsewhere",
            t.added + kept,
            t.added,
            share * 100.0,
            t.kept,
            t.elsewhere
        );
        if share < 0.99 || t.added == 0 {
            problems.push(format!(
                "{libc}: only {:.2}% from the added code",
                share * 100.0
            ));
        }
        if other > 0 {
            problems.push(format!(
                "{libc}: calls from kept sites not kept by rule: {:?}",
                t.kept
            ));
        }
        problems.extend(t.errors.iter().map(|e| format!("{libc}: {e}")));
    }
    assert_eq!(per_libc.len(), 2);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

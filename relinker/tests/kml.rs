//! The emulated KML: `kmlrun` (tests/support/kmlrun.c) loads a static program itself and gives
//! it an AT_SYSINFO entry that counts calls, clobbers the 16 bytes below its caller's stack
//! like the real kernel entry, and makes the real syscall.
//!
//! - The launcher itself: unrelinked programs behave the same under it and never call the
//!   entry; the assembly test calling the entry by hand passes (and fails, naming the red
//!   zone, when it calls without skipping the red zone: the check can fail).
//! - Relinked programs take the call path (count > 0), keep every register, the flags and the
//!   red zone (the assembly test), and behave the same as the originals run natively.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use support::*;

fn case(program: &str) -> Case {
    Case {
        program: program.into(),
        args: vec![],
        kmlrun_ok: true,
    }
}

/// regs.S with `-DKML_CALL=n`, static and static-PIE.
fn regs_variant(kml_call: u32, pie: bool) -> PathBuf {
    static BUILT: OnceLock<std::sync::Mutex<Vec<(u32, bool, PathBuf)>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut b = built.lock().unwrap();
    if let Some((_, _, p)) = b.iter().find(|(k, q, _)| *k == kml_call && *q == pie) {
        return p.clone();
    }
    let out = work_dir().join(format!(
        "regs-kml{kml_call}{}",
        if pie { "-pie" } else { "" }
    ));
    must(
        Command::new("gcc")
            .arg(if pie { "-static-pie" } else { "-static" })
            .arg("-nostdlib")
            .arg(format!("-DKML_CALL={kml_call}"))
            .arg("-o")
            .arg(&out)
            .arg(corpus_src().join("regs.S")),
    );
    b.push((kml_call, pie, out.clone()));
    out
}

#[test]
fn launcher_self_check_calls_made_by_hand() {
    for pie in [false, true] {
        // Sites that call AT_SYSINFO themselves, skipping the red zone: all 11 calls counted.
        let good = regs_variant(1, pie);
        let r = run_under_kmlrun(&good, &case("regs-kml1"), &[]);
        assert!(
            r.output.status.success(),
            "pie={pie}: {}",
            r.output.describe()
        );
        assert!(
            r.output.stdout().contains("regs: ok"),
            "{}",
            r.output.describe()
        );
        assert_eq!(
            r.started.len(),
            1,
            "pie={pie}: kmlrun did not report its start"
        );
        assert_eq!(r.total_calls(), 11, "pie={pie}: calls {:?}", r.calls);
        // The counts can go to a descriptor instead of a file.
        let file = work_dir().join(format!("fd-counts-{pie}.txt"));
        let out = run_with_timeout(
            Command::new("sh")
                .args([
                    "-c",
                    "exec 3>\"$1\"; KMLRUN_COUNT_FD=3 exec \"$2\" \"$3\"",
                    "sh",
                ])
                .arg(&file)
                .arg(kmlrun())
                .arg(&good),
            RUN_TIMEOUT,
        );
        assert!(out.status.success(), "{}", out.describe());
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.contains(" start\n") && text.contains(" calls 11\n"),
            "KMLRUN_COUNT_FD: {text:?}"
        );
        // Without AT_SYSINFO the same program takes its syscall path.
        let r = run_under_kmlrun(&good, &case("regs-kml1"), &[("KMLRUN_NO_SYSINFO", "1")]);
        assert!(r.output.status.success(), "{}", r.output.describe());
        assert_eq!(r.total_calls(), 0);
        // Natively too.
        let native = run_case(&good, &case("regs-kml1"), None, &[]);
        assert!(native.status.success(), "{}", native.describe());

        // Calling without skipping the red zone: the stand-in's clobbering is caught.
        let bad = regs_variant(2, pie);
        let r = run_under_kmlrun(&bad, &case("regs-kml2"), &[]);
        assert_eq!(
            r.output.status.code(),
            Some(1),
            "pie={pie}: {}",
            r.output.describe()
        );
        assert!(
            r.output
                .stderr()
                .contains("regs: the red zone below rsp changed at site 1"),
            "pie={pie}: {}",
            r.output.describe()
        );
    }
}

#[test]
fn unrelinked_programs_run_unchanged_and_never_call_the_entry() {
    let c = corpus();
    let mut problems = Vec::new();
    for case in c.cases.iter().filter(|c| c.kmlrun_ok) {
        let prog = c.program(&case.program);
        let native = run_case(&prog.path, case, None, &[]);
        let k = run_under_kmlrun(&prog.path, case, &[]);
        if native.observable() != k.output.observable() {
            problems.push(format!(
                "{}: differs under kmlrun\n=== native: {}=== kmlrun: {}",
                case.label(),
                native.describe(),
                k.output.describe()
            ));
        }
        if k.total_calls() != 0 {
            problems.push(format!(
                "{}: unrelinked, yet calls {:?}",
                case.label(),
                k.calls
            ));
        }
        if k.started.is_empty() {
            problems.push(format!("{}: kmlrun reported no start", case.label()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn relinked_assembly_keeps_registers_flags_and_red_zone() {
    for name in ["regs-asm", "regs-asm-pie"] {
        let r = relinked_program(name);
        let orig = run_case(&r.program.path, &case(name), None, &[]);
        let k = run_under_kmlrun(&r.path, &case(name), &[]);
        assert!(
            k.output.status.success() && k.output.stdout().contains("regs: ok"),
            "{name} relinked under kmlrun: {}",
            k.output.describe()
        );
        assert_eq!(orig.observable(), k.output.observable(), "{name}");
        // The call path was taken. The main path makes 11 calls (site 4 three times);
        // when every site of _start and leaf is rewritten, each is counted.
        let total = k.total_calls();
        assert!(total > 0, "{name}: no call went through AT_SYSINFO");
        assert!(
            total <= 11,
            "{name}: {total} calls counted, the program makes 11"
        );
        let sites = sites(name, &r.report());
        let main_path_kept: Vec<_> = sites
            .iter()
            .filter(|s| {
                let sym = s.symbol.as_deref().unwrap_or("");
                (sym.starts_with("_start+") || sym.starts_with("leaf+")) && !s.rewritten
            })
            .collect();
        if main_path_kept.is_empty() {
            assert_eq!(total, 11, "{name}: every main-path site is rewritten");
        }
        // Natively (no AT_SYSINFO) the relinked copy takes the real-syscall path.
        let native = run_case(&r.path, &case(name), None, &[]);
        assert_eq!(orig.observable(), native.observable(), "{name} natively");
        // And the original under kmlrun never calls the entry.
        let k0 = run_under_kmlrun(&r.program.path, &case(name), &[]);
        assert!(k0.output.status.success(), "{}", k0.output.describe());
        assert_eq!(k0.total_calls(), 0, "{name} original under kmlrun");
    }
}

#[test]
fn relinked_corpus_under_kmlrun_behaves_like_the_originals() {
    let c = corpus();
    let mut problems = Vec::new();
    for case in c.cases.iter().filter(|c| c.kmlrun_ok) {
        let prog = c.program(&case.program);
        let r = relinked()
            .iter()
            .find(|r| r.program.name == case.program)
            .unwrap();
        if !r.ok() {
            problems.push(format!(
                "{}: lupine-relink failed: {}",
                case.label(),
                r.output.describe()
            ));
            continue;
        }
        let native = run_case(&prog.path, case, None, &[]);
        let k = run_under_kmlrun(&r.path, case, &[]);
        if native.observable() != k.output.observable() {
            problems.push(format!(
                "{}: relinked under kmlrun differs from the original\n=== original: {}=== relinked under kmlrun: {}",
                case.label(),
                native.describe(),
                k.output.describe()
            ));
            continue;
        }
        // The first process made calls through the entry (it ends with exit_group through it,
        // unless it was killed).
        let first = k.started.first().copied();
        let first_calls = first.and_then(|p| k.calls.get(&p)).copied().unwrap_or(0);
        if first_calls == 0 && !native.how().starts_with("signal") {
            problems.push(format!(
                "{}: the program made no call through AT_SYSINFO (counts {:?}, started {:?})",
                case.label(),
                k.calls,
                k.started
            ));
        }
        // Forked children count their own calls.
        if case.program.starts_with("fork-") {
            let busy = k.calls.values().filter(|&&n| n > 0).count();
            if busy < 4 {
                problems.push(format!(
                    "{}: expected the parent and forked children to report calls: {:?}",
                    case.label(),
                    k.calls
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

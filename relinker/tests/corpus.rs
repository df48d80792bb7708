//! The corpus (C built with musl-gcc -static, gcc -static and gcc -static-pie; assembly; a Rust
//! program for x86_64-unknown-linux-musl; Debian's busybox-static), relinked: each relinked
//! program prints the same and exits the same as its original; reports add up; relinking is
//! deterministic, leaves the input alone and refuses its own output.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use support::*;

#[test]
fn relinked_programs_behave_like_the_originals() {
    let c = corpus();
    let mut problems = Vec::new();
    let mut compared = 0;
    for case in &c.cases {
        let prog = c.program(&case.program);
        let orig = run_case(&prog.path, case, None, &[]);
        if let Some(p) = check_original(case, prog.kind, &orig) {
            problems.push(format!("corpus problem, not the relinker's: {p}"));
            continue;
        }
        let r = relinked()
            .iter()
            .find(|r| r.program.name == case.program)
            .unwrap();
        if !r.ok() {
            problems.push(format!(
                "lupine-relink {} failed: {}",
                prog.path.display(),
                r.output.describe()
            ));
            continue;
        }
        let new = run_case(&r.path, case, None, &[]);
        compared += 1;
        if orig.observable() != new.observable() {
            problems.push(format!(
                "{}: the relinked copy differs\n=== original: {}=== relinked {}: {}",
                case.label(),
                orig.describe(),
                r.path.display(),
                new.describe()
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} runs failed:\n\n{}",
        problems.len(),
        c.cases.len(),
        problems.join("\n\n")
    );
    assert_eq!(compared, c.cases.len());
}

#[test]
fn every_corpus_program_is_relinked_with_a_sane_report() {
    let mut problems = Vec::new();
    for r in relinked() {
        let name = &r.program.name;
        if !r.ok() {
            problems.push(format!(
                "{name}: lupine-relink failed: {}",
                r.output.describe()
            ));
            continue;
        }
        let rep = r.report();
        let sites = sites(name, &rep);
        let mut p = Problems {
            name,
            list: &mut problems,
        };
        check_counts_and_sizes(&mut p, r, &rep, &sites);
        let orig_code = code_ranges(&r.program.path);
        let mut seen = BTreeSet::new();
        for s in &sites {
            p.check(
                seen.insert(s.address),
                format!("site {:#x} listed twice", s.address),
            );
            p.check(
                orig_code
                    .iter()
                    .any(|&(lo, hi)| s.address >= lo && s.address + 2 <= hi),
                format!("site {:#x} is not in the original code", s.address),
            );
            if s.rewritten {
                check_rewritten_site(&mut p, s);
            } else {
                check_kept_site(&mut p, s);
            }
            // Unstripped programs name each site's function.
            if r.program.kind != Kind::Busybox {
                p.check(
                    s.symbol.as_deref().is_some_and(|x| x.contains('+')),
                    format!("site {:#x} has no symbol+offset: {:?}", s.address, s.symbol),
                );
            }
        }
        if r.program.kind == Kind::Asm || r.program.kind == Kind::AsmPie {
            check_asm_numbers(&mut p, &sites);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The report's counts add up and its sizes are the files'.
fn check_counts_and_sizes(
    p: &mut Problems<'_>,
    r: &Relinked,
    rep: &lupine_relink::Report,
    sites: &[Site],
) {
    p.check(
        rep.counts.sites == rep.counts.rewritten + rep.counts.kept,
        format!("counts do not add up: {:?}", rep.counts),
    );
    p.check(
        rep.counts.sites as usize == sites.len(),
        format!("{} sites counted, {} listed", rep.counts.sites, sites.len()),
    );
    let rewritten = sites.iter().filter(|s| s.rewritten).count() as u64;
    p.check(
        rewritten == rep.counts.rewritten,
        format!("{rewritten} sites say rewritten"),
    );
    let by_reason: u64 = rep.kept_by_reason.values().sum();
    p.check(
        by_reason == rep.counts.kept,
        format!("kept_by_reason sums to {by_reason}"),
    );
    p.check(rep.counts.sites > 0, "no syscall sites found".into());
    p.check(rep.counts.rewritten > 0, "nothing rewritten".into());
    p.check(rep.bytes_added > 0, "no bytes added".into());
    let out_size = fs::metadata(&r.path).unwrap().len();
    let in_size = fs::metadata(&r.program.path).unwrap().len();
    p.check(
        rep.output_size == out_size && rep.input_size == in_size,
        format!(
            "sizes: report says {} -> {}, files are {in_size} -> {out_size}",
            rep.input_size, rep.output_size
        ),
    );
}

/// A rewritten site has a window of at least 5 bytes around its syscall, a trampoline and no
/// reason; or it is a moved cancellation point.
fn check_rewritten_site(p: &mut Problems<'_>, s: &Site) {
    if let Some(m) = &s.moved {
        return check_moved_site(p, s, m);
    }
    let ok = matches!(s.window, Some((a, b)) if a <= s.address && s.address + 2 <= b && b - a >= 5);
    p.check(
        ok,
        format!("rewritten site {:#x} has window {:?}", s.address, s.window),
    );
    p.check(
        s.trampoline.is_some() && s.reason.is_none(),
        format!(
            "rewritten site {:#x}: trampoline or reason wrong",
            s.address
        ),
    );
}

/// A moved cancellation point: its range ends just after its syscall, a jump of at least 5
/// bytes replaces its start, its copy is the trampoline and ends just after the copy's
/// syscall, and both bounds are retargeted.
fn check_moved_site(p: &mut Problems<'_>, s: &Site, m: &Moved) {
    let (b, e) = m.range;
    let (wb, we) = m.entry_window;
    p.check(
        b < s.address && s.address + 2 == e && wb == b && we - wb >= 5 && we <= s.address,
        format!(
            "moved site {:#x}: range {b:#x}..{e:#x}, entry window {wb:#x}..{we:#x}",
            s.address
        ),
    );
    p.check(
        s.window.is_none()
            && s.reason.is_none()
            && s.trampoline == Some(m.copy.0)
            && s.trampoline_syscall.map(|a| a + 2) == Some(m.copy.1),
        format!(
            "moved site {:#x}: copy {:?} and trampoline {:?}/{:?}",
            s.address, m.copy, s.trampoline, s.trampoline_syscall
        ),
    );
    for end in [false, true] {
        p.check(
            m.retargeted.iter().any(|r| r.2 == end),
            format!(
                "moved site {:#x}: no reference to its {} retargeted",
                s.address,
                if end { "end" } else { "start" }
            ),
        );
    }
}

/// A kept site has a reason and no window; `__restore_rt`'s has the number 15.
fn check_kept_site(p: &mut Problems<'_>, s: &Site) {
    let has_reason = s.reason.as_deref().is_some_and(|t| !t.trim().is_empty())
        && s.reason_kind
            .as_deref()
            .is_some_and(|t| !t.trim().is_empty());
    p.check(
        has_reason,
        format!("kept site {:#x} has no reason", s.address),
    );
    p.check(
        s.window.is_none(),
        format!("kept site {:#x} has a window", s.address),
    );
    // __restore_rt is `mov $15,%rax; syscall`: its number is a constant.
    let restorer = s
        .symbol
        .as_deref()
        .is_some_and(|x| x.starts_with("__restore_rt+"))
        || s.reason
            .as_deref()
            .is_some_and(|x| x.contains("__restore_rt"));
    p.check(
        !restorer || s.number == Some(15),
        format!(
            "__restore_rt site {:#x}: number {:?}, not 15",
            s.address, s.number
        ),
    );
}

/// The constants at the sites of the hand-written program are known.
fn check_asm_numbers(p: &mut Problems<'_>, sites: &[Site]) {
    // (110 is set before a jump to its syscall: a constant, if the analysis follows it.)
    let numbers: BTreeSet<Option<u64>> = sites.iter().map(|s| s.number).collect();
    let want: BTreeSet<Option<u64>> = [Some(1), Some(24), Some(39), Some(231), None]
        .into_iter()
        .collect();
    let extra: BTreeSet<Option<u64>> = numbers.difference(&want).copied().collect();
    p.check(
        want.is_subset(&numbers) && extra.iter().all(|n| *n == Some(110)),
        format!("syscall numbers {numbers:?}, expected {want:?} (and perhaps 110)"),
    );
    p.check(
        sites.len() == 13,
        format!("{} sites, the source has 13", sites.len()),
    );
}

#[test]
fn relinking_is_deterministic() {
    let dir = scratch("deterministic");
    let mut problems = Vec::new();
    for r in relinked() {
        if !r.ok() {
            problems.push(format!("{}: lupine-relink failed", r.program.name));
            continue;
        }
        let other = dir.join(&r.program.name);
        let out = relink(&r.program.path, &other, None);
        if !out.status.success() {
            problems.push(format!(
                "{}: second relink failed: {}",
                r.program.name,
                out.describe()
            ));
            continue;
        }
        if fs::read(&other).unwrap() != fs::read(&r.path).unwrap() {
            problems.push(format!(
                "{}: {} and {} differ",
                r.program.name,
                r.path.display(),
                other.display()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn input_is_left_alone_and_output_replaces_atomically() {
    let dir = scratch("atomic");
    for p in &corpus().programs {
        let before = fs::read(&p.path).unwrap();
        let meta = fs::metadata(&p.path).unwrap();
        let out = dir.join(&p.name);
        // An existing output is replaced.
        fs::write(&out, b"old contents").unwrap();
        let r = relink(&p.path, &out, None);
        assert!(r.status.success(), "{}: {}", p.name, r.describe());
        assert!(!panicked(&r), "{}: {}", p.name, r.describe());
        let after = fs::metadata(&p.path).unwrap();
        assert!(
            fs::read(&p.path).unwrap() == before,
            "{}: the input changed",
            p.name
        );
        assert_eq!(
            (meta.mtime(), meta.mtime_nsec(), meta.ino()),
            (after.mtime(), after.mtime_nsec(), after.ino()),
            "{}: the input was touched",
            p.name
        );
        assert_ne!(
            fs::read(&out).unwrap(),
            b"old contents",
            "{}: output not replaced",
            p.name
        );
        let mode = fs::metadata(&out).unwrap().permissions().mode();
        assert!(
            mode & 0o111 != 0,
            "{}: output is not executable ({mode:o})",
            p.name
        );
    }
    // Nothing but the outputs: no temporary files left behind.
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want: Vec<String> = corpus().programs.iter().map(|p| p.name.clone()).collect();
    want.sort();
    assert_eq!(names, want, "stray files next to the outputs");
}

#[test]
fn relinking_a_relinked_program_is_refused() {
    let dir = scratch("twice");
    for r in relinked() {
        assert!(r.ok(), "{}: {}", r.program.name, r.output.describe());
        let before = fs::read(&r.path).unwrap();
        let out = dir.join(&r.program.name);
        let res = relink(&r.path, &out, Some(&dir.join("report.json")));
        let err = res.stderr();
        assert!(
            !panicked(&res),
            "{}: relinker panicked: {}",
            r.program.name,
            res.describe()
        );
        assert!(
            !res.status.success(),
            "{}: relinking twice succeeded",
            r.program.name
        );
        assert!(
            err.contains("already relinked") && err.contains(&*r.path.to_string_lossy()),
            "{}: message should name the file and say it is already relinked: {err}",
            r.program.name
        );
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{}: not one line: {err}",
            r.program.name
        );
        assert!(!out.exists(), "{}: an output was written", r.program.name);
        assert!(
            !dir.join("report.json").exists(),
            "{}: a report was written",
            r.program.name
        );
        assert!(
            fs::read(&r.path).unwrap() == before,
            "{}: the input changed",
            r.program.name
        );
    }
}

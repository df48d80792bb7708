//! Coverage under `strace -f -i -k`, as the user experiences it: where each executed system
//! call of a relinked program was made. Its instruction pointer must lie in the code the
//! relinker added (a trampoline's real-syscall path, or a moved cancellation point) rather than
//! the original code. The share of all calls from the added code is printed per program, kept
//! sites included; the calls that do not come from there may only be those a rule keeps real
//! (rt_sigreturn, clone, clone3, vfork, exit: they cannot return through a call), and every
//! other call of the corpus (cancellation points included) must come from the added code. A
//! call from the original code at a site the report says it rewrote, or does not list, is an
//! error.
//!
//! `-i` gives the address after the syscall instruction; for static-PIE programs the first
//! frame of `-k` gives its file offset, which the program headers turn into a link-time address.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use support::*;

#[derive(Debug, Default, Clone)]
struct Tally {
    /// Calls made in the added code.
    added: u64,
    /// Calls made in the original code, by the report's reason for keeping the site.
    kept: BTreeMap<String, u64>,
    /// The same calls by system call name.
    kept_calls: BTreeMap<String, u64>,
    /// Calls from elsewhere (the vDSO, another program after an exec).
    elsewhere: u64,
    /// Calls whose address could not be placed (an exec by a vfork child of a static-PIE).
    unplaced: u64,
    /// What must not happen, with the syscall line.
    errors: Vec<String>,
}

impl Tally {
    fn original(&self) -> u64 {
        self.kept.values().sum()
    }
    fn add(&mut self, o: &Tally) {
        self.added += o.added;
        for (k, v) in &o.kept {
            *self.kept.entry(k.clone()).or_insert(0) += v;
        }
        for (k, v) in &o.kept_calls {
            *self.kept_calls.entry(k.clone()).or_insert(0) += v;
        }
        self.elsewhere += o.elsewhere;
        self.unplaced += o.unplaced;
        self.errors.extend(o.errors.iter().cloned());
    }
}

const SIGRETURN: &str = "rt_sigreturn";

/// The system calls whose sites stay real by rule (see `lupine_relink::analyze::KEPT_NUMBERS`):
/// the only ones a relinked program may make from its original code. musl's `__unmapself`
/// unmaps the stack of the thread that calls it, then exits: its munmap cannot return through
/// a call either.
const KEPT_CALLS: [&str; 6] = [
    SIGRETURN,
    "clone",
    "clone3",
    "vfork",
    "exit",
    "munmap in __unmapself",
];

/// Reasons for keeping a site that the issue prescribes (PC-sensitive code, numbers that must
/// stay real syscalls): calls from such sites are expected.
fn by_rule(reason: &str) -> bool {
    reason == "pc-sensitive" || reason == "syscall-number" || reason == SIGRETURN
}

struct Layout {
    elf: ElfInfo,
    added: Vec<(u64, u64)>,
    original: Vec<(u64, u64)>,
    /// Report sites by address.
    sites: BTreeMap<u64, Site>,
}

fn inside(ranges: &[(u64, u64)], a: u64) -> bool {
    ranges.iter().any(|&(lo, hi)| a >= lo && a < hi)
}

/// Load bases seen in a run's traces: ip minus the link-time address of its first frame.
fn bases(layout: &Layout, me: &str, trace: &str, into: &mut Vec<u64>) {
    for (ip, name, result, frame) in entries(trace) {
        if name == "execve" && result.trim() == "0" {
            continue;
        }
        if let Some((path, off)) = &frame {
            if path == me {
                if let Some(v) = layout.elf.offset_to_vaddr(*off) {
                    let b = ip.wrapping_sub(v);
                    if !into.contains(&b) {
                        into.push(b);
                    }
                }
            }
        }
    }
}

fn place(layout: &Layout, site: u64, name: &str, t: &mut Tally) {
    if inside(&layout.added, site) {
        t.added += 1;
    } else if inside(&layout.original, site) {
        let unmapself = layout.sites.get(&site).is_some_and(|s| {
            s.symbol
                .as_deref()
                .is_some_and(|x| x.starts_with("__unmapself"))
                || s.reason
                    .as_deref()
                    .is_some_and(|x| x.contains("__unmapself"))
        });
        let call = match (name, unmapself) {
            ("munmap", true) => "munmap in __unmapself".to_string(),
            _ => name.to_string(),
        };
        *t.kept_calls.entry(call).or_insert(0) += 1;
        match layout.sites.get(&site) {
            Some(s) if !s.rewritten => {
                let k = s.reason_kind.clone().unwrap_or_else(|| "?".into());
                *t.kept.entry(k).or_insert(0) += 1;
            }
            Some(_) => {
                *t.kept.entry("REWRITTEN".into()).or_insert(0) += 1;
                t.errors.push(format!(
                    "{name} made at {site:#x}, a site the report says is rewritten"
                ));
            }
            None => {
                *t.kept.entry("NOT IN REPORT".into()).or_insert(0) += 1;
                t.errors.push(format!(
                    "{name} made at {site:#x} in the original code, a site the report does not list"
                ));
            }
        }
    } else {
        t.elsewhere += 1;
    }
}

/// Whether a link-time syscall address is one this program could have made a call from.
fn plausible(layout: &Layout, site: u64) -> bool {
    inside(&layout.added, site) || layout.sites.contains_key(&site)
}

fn classify(layout: &Layout, me: &str, trace: &str, run_bases: &[u64], t: &mut Tally) {
    let exec = layout.elf.e_type == object::elf::ET_EXEC;
    let mut base: Option<u64> = if exec { Some(0) } else { None };
    for (ip, name, result, frame) in entries(trace) {
        if name == "rt_sigreturn" {
            // strace shows where it returned to, not where it was made; it is made by
            // __restore_rt, which must stay a real syscall (checked against the report below).
            *t.kept.entry(SIGRETURN.into()).or_insert(0) += 1;
            *t.kept_calls.entry(SIGRETURN.into()).or_insert(0) += 1;
            continue;
        }
        let exec_ok = name == "execve" && result.trim() == "0";
        if !exec_ok {
            if let Some((path, off)) = &frame {
                if path != me {
                    t.elsewhere += 1; // the vDSO, or another program
                    continue;
                }
                if let Some(v) = layout.elf.offset_to_vaddr(*off) {
                    base = Some(ip.wrapping_sub(v));
                    place(layout, v.wrapping_sub(2), &name, t);
                    continue;
                }
            }
        }
        // No usable frame (or a successful execve, whose frame is the new image): the address
        // through the current base, or through any base of the run (a vfork child shares its
        // parent's image).
        let site = match base {
            Some(b) => Some(ip.wrapping_sub(b).wrapping_sub(2)),
            None => run_bases
                .iter()
                .map(|b| ip.wrapping_sub(*b).wrapping_sub(2))
                .find(|&s| plausible(layout, s)),
        };
        match site {
            Some(s) => place(layout, s, &name, t),
            // The first execve of a trace is strace starting the program from its own code.
            None if exec_ok => t.elsewhere += 1,
            None => t.unplaced += 1,
        }
        if exec_ok && !exec {
            base = None; // a new image, loaded elsewhere
        }
    }
}

fn trace_case(r: &Relinked, case: &Case, layout: &Layout, n: usize) -> Tally {
    let dir = scratch(&format!("strace-{n}"));
    let prefix = dir.join("t");
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-i", "-k", "-ff", "-o"])
        .arg(&prefix)
        .arg("--")
        .arg(&r.path)
        .args(&case.args)
        .current_dir(work_dir());
    program_env(&mut cmd);
    let out = run_with_timeout(&mut cmd, RUN_TIMEOUT * 2);
    let mut t = Tally::default();
    if out.timed_out {
        t.errors
            .push(format!("{} timed out under strace", case.label()));
        return t;
    }
    let me = fs::canonicalize(&r.path)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let texts: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    let mut run_bases = Vec::new();
    for text in &texts {
        bases(layout, &me, text, &mut run_bases);
    }
    for text in &texts {
        classify(layout, &me, text, &run_bases, &mut t);
    }
    if texts.is_empty() {
        t.errors.push(format!(
            "{}: strace wrote nothing: {}",
            case.label(),
            out.describe()
        ));
    }
    t
}

fn layout_of(r: &Relinked) -> Layout {
    let rep = r.report();
    let added = added_code(&r.program.path, &r.path);
    Layout {
        elf: elf_info(&r.path),
        added,
        original: code_ranges(&r.program.path),
        sites: sites(&r.program.name, &rep)
            .into_iter()
            .map(|s| (s.address, s))
            .collect(),
    }
}

#[test]
fn executed_system_calls_come_from_the_added_code() {
    assert!(Path::new("/usr/bin/strace").exists(), "strace is needed");
    let c = corpus();
    let mut per_program: BTreeMap<String, Tally> = BTreeMap::new();
    for (n, case) in c.cases.iter().enumerate() {
        let r = relinked_program(&case.program);
        let layout = layout_of(r);
        assert!(
            !layout.added.is_empty(),
            "{}: no added executable segment",
            case.program
        );
        let t = trace_case(r, case, &layout, n);
        per_program.entry(case.program.clone()).or_default().add(&t);
    }

    let mut total = Tally::default();
    let mut problems = Vec::new();
    eprintln!(
        "{:<22} {:>6} {:>6} {:>7} {:>6} {:>6} {:>5} {:>5}  calls from kept sites",
        "program", "calls", "added", "share", "rule", "other", "else", "unpl."
    );
    let (mut all_discretionary, mut all_rule) = (0, 0);
    for (name, t) in &per_program {
        let (rule, discretionary) = check_program(name, c.program(name).kind, t, &mut problems);
        all_rule += rule;
        all_discretionary += discretionary;
        total.add(t);
    }
    check_overall(&total, all_rule, all_discretionary, &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Prints a program's row and checks its calls: some from the added code, from kept sites only
/// by rule for musl programs, rt_sigreturn only from a kept `__restore_rt`. Returns its calls
/// from sites kept by rule and from other kept sites.
fn check_program(name: &str, kind: Kind, t: &Tally, problems: &mut Vec<String>) -> (u64, u64) {
    let rule: u64 = t
        .kept
        .iter()
        .filter(|(k, _)| by_rule(k))
        .map(|(_, v)| v)
        .sum();
    let discretionary = t.original() - rule;
    eprintln!(
        "{:<22} {:>6} {:>6} {:>6.2}% {:>6} {:>6} {:>5} {:>5}  {:?}",
        name,
        t.added + t.original() + t.elsewhere + t.unplaced,
        t.added,
        t.added as f64 * 100.0 / (t.added + t.original()).max(1) as f64,
        rule,
        discretionary,
        t.elsewhere,
        t.unplaced,
        t.kept_calls
    );
    let not_by_rule: Vec<_> = t
        .kept_calls
        .keys()
        .filter(|c| !KEPT_CALLS.contains(&c.as_str()))
        .collect();
    if !not_by_rule.is_empty() {
        problems.push(format!(
            "{name}: {not_by_rule:?} made from the original code: only {KEPT_CALLS:?} may be"
        ));
    }
    for e in &t.errors {
        problems.push(format!("{name}: {e}"));
    }
    if t.added == 0 {
        problems.push(format!("{name}: no system call from the added code"));
    }
    let musl_like = kind.is_musl() || kind == Kind::Asm || kind == Kind::AsmPie;
    if musl_like && discretionary > 0 {
        problems.push(format!(
            "{name}: {discretionary} calls from sites kept for other reasons than the \
             PC-sensitive rules ({:?}); musl programs may keep only those",
            t.kept
        ));
    }
    if t.kept.contains_key(SIGRETURN) && !keeps_a_restorer(name) {
        problems.push(format!(
            "{name}: rt_sigreturn was called, but the report keeps no __restore_rt site"
        ));
    }
    (rule, discretionary)
}

/// Whether the report of the relinked `name` keeps a `__restore_rt` site.
fn keeps_a_restorer(name: &str) -> bool {
    let r = relinked_program(name);
    sites(name, &r.report()).iter().any(|s| {
        !s.rewritten
            && (s.number == Some(15)
                || s.symbol
                    .as_deref()
                    .is_some_and(|x| x.starts_with("__restore"))
                || s.reason
                    .as_deref()
                    .is_some_and(|x| x.contains("__restore_rt")))
    })
}

/// Prints the totals; at least 99% of the calls not at sites kept by rule come from the added
/// code, and few calls are unplaced.
fn check_overall(total: &Tally, all_rule: u64, all_discretionary: u64, problems: &mut Vec<String>) {
    let placed = total.added + total.original();
    let raw = total.added as f64 / placed.max(1) as f64;
    let share = total.added as f64 / (total.added + all_discretionary).max(1) as f64;
    eprintln!(
        "overall: {} calls placed; {} from the added code ({:.2}% of all; {:.2}% of those not \
         at sites kept by rule), {} at sites kept by rule, {} at other kept sites; {} elsewhere, \
         {} unplaced",
        placed,
        total.added,
        raw * 100.0,
        share * 100.0,
        all_rule,
        all_discretionary,
        total.elsewhere,
        total.unplaced
    );
    if share < 0.99 {
        problems.push(format!(
            "only {:.2}% of executed calls not at PC-sensitive sites come from the added code",
            share * 100.0
        ));
    }
    // Calls that could not be placed must stay rare, or the measurement means little.
    if total.unplaced * 100 > placed {
        problems.push(format!("{} calls unplaced of {placed}", total.unplaced));
    }
}

//! What the KML guest tests (`kml.rs`, `kml_security.rs`) share: booting a `+kml` profile with
//! every kernel message on the console, checking that console, and building a relinked musl
//! test program. (Each test crate uses a part of it.)
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use guest_tests::{Outcome, Vm};

/// The `+kml` profile with users, namespaces (user namespaces too) and networking of
/// lupine-general, its preemption model chosen at boot (`preempt=`, default none), and kprobes.
pub const GENERAL_KML: &str = "lupine-general+kml+userns+preempt+kprobes+debug-entry";

/// Boots `profile` from `initrd` on `smp` vCPUs of CPU model `cpu`, every kernel message on
/// the console (`ignore_loglevel`) and `cmdline` added; the console must be clean.
pub fn run_on(profile: &str, initrd: &Path, smp: u32, cpu: &str, cmdline: &str) -> Outcome {
    let out = run_unchecked(profile, initrd, smp, cpu, cmdline);
    assert_clean(&out);
    out
}

/// [`run_on`] without the console check.
pub fn run_unchecked(profile: &str, initrd: &Path, smp: u32, cpu: &str, cmdline: &str) -> Outcome {
    Vm::lupine_on(profile, initrd)
        .unwrap()
        .smp(smp)
        .cpu(cpu)
        .append(&format!("ignore_loglevel {cmdline}"))
        .timeout(Duration::from_secs(240))
        .run()
        .unwrap()
}

/// `src` built with `musl-gcc -static -O2 -pthread` into `exe`, then relinked by lupine-relink
/// (some site must be rewritten).
pub fn relinked_musl(src: &Path, exe: &Path) -> Vec<u8> {
    let out = Command::new("musl-gcc")
        .args(["-static", "-O2", "-pthread", "-o"])
        .arg(exe)
        .arg(src)
        .output()
        .expect("musl-gcc (musl-tools) runs");
    assert!(out.status.success(), "musl-gcc: {out:?}");
    let original = std::fs::read(exe).unwrap();
    let relinked = lupine_relink::relink_bytes("program", "program", &original).unwrap();
    assert!(relinked.report.counts.rewritten > 0, "nothing rewritten");
    relinked.bytes
}

/// No kernel warning, BUG, oops or stack dump on the console. A kernel #GP reads "general
/// protection fault: 0000 [#1]" or "general protection fault, probably for ..."; a process's
/// (also a kernel-mode one's) "traps: prog[pid] general protection fault ip:..." is no error.
#[track_caller]
pub fn assert_clean(out: &Outcome) {
    assert_clean_but_backtraces(out);
    assert!(
        !out.console.contains("Call Trace"),
        "console has a call trace\n{out}"
    );
}

/// [`assert_clean`] for a run that asked for NMI backtraces (sysrq l): call traces only in
/// those.
#[track_caller]
pub fn assert_clean_but_backtraces(out: &Outcome) {
    assert_no_kernel_errors(out);
    let traces = out.console.matches("Call Trace").count();
    let backtraces = out.console.matches("NMI backtrace for cpu").count();
    assert!(
        traces <= backtraces,
        "{traces} call traces, {backtraces} NMI backtraces\n{out}"
    );
}

/// No kernel warning, BUG or oops on the console (call traces not counted).
#[track_caller]
pub fn assert_no_kernel_errors(out: &Outcome) {
    for bad in [
        "WARNING:",
        "BUG:",
        "kernel BUG",
        "Oops",
        "general protection fault:",
        "general protection fault,",
    ] {
        assert!(!out.console.contains(bad), "console has {bad:?}\n{out}");
    }
}

/// The NMIs of all CPUs in each `NMI:` line of /proc/interrupts the script greps.
pub fn nmi_counts(out: &Outcome) -> Vec<u64> {
    out.lines()
        .filter_map(|l| l.trim_start().strip_prefix("NMI:"))
        .map(all_cpus)
        .collect()
}

/// The sum of the per-CPU counts that start the rest of a /proc/interrupts line.
pub fn all_cpus(counts: &str) -> u64 {
    counts
        .split_whitespace()
        .map_while(|w| w.parse::<u64>().ok())
        .sum()
}

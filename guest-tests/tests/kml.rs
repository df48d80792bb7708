//! Kernel Mode Linux (`kernel-patches/patches/kml/`): on `lupine-base+kml` booted with
//! `kml=on`, a program under `/trusted/` runs at CPL 0 and makes its system calls through the
//! call entry the kernel gives it in `AT_SYSINFO`; the same program elsewhere, or with KML off,
//! runs at CPL 3 with no `AT_SYSINFO`.
//!
//! The program is `tests/kml/kmltest.S` (no libc, `gcc -nostdlib -static`): it reads CS, looks
//! for `AT_SYSINFO` and `AT_SECURE`, asks whether it is dumpable, makes 100000 `getpid` calls
//! (through the entry as lupine-relink's trampolines do, or with `syscall`), checking each
//! result and that every register but rax, rcx and r11, and the carry flag, survive each call;
//! moves itself 100 times between CPU 0 and CPU 1 (`sched_setaffinity`, checked with `getcpu`:
//! the GS of a kernel-mode process must follow it), then writes one line and exits (through
//! the entry too, in kernel mode). Every case runs with 1 and 2 vCPUs on QEMU's `qemu64` (no
//! SMEP, SMAP or FSGSBASE) and `max` (all three) CPU models. No run may print a kernel
//! warning, BUG or oops (`ignore_loglevel` puts every kernel message on the console).
//!
//! Interrupts, exceptions and page faults at CPL 0 are checked by `tests/kml/kml2test.c` (no
//! libc either): red-zone canaries under timer interrupts, deep recursion and fresh mmap'd
//! memory, faults that must kill with the right signal, and two CPU hogs sharing CPU 0; the
//! relinked musl program fills `malloc`ed memory.
//!
//! Signals, fork, threads, exec and vfork are checked by `tests/kml/kml3test.c` (musl,
//! relinked): handlers at CPL 0 returning through musl's raw-`syscall` restorer, a sigaltstack,
//! an SA_RESTART read, forks, two threads migrating between two CPUs, exec both ways, vfork +
//! exec.
//!
//! Raw `syscall` instructions at CPL 0 (counted apart from the call entry's calls in
//! /proc/kml): unmodified Debian busybox under /trusted, and a relinked musl program mixing call
//! entries, raw syscalls and the vDSO.
//!
//! On [`GENERAL_KML`] (users, namespaces): the selection rules, and `tests/kml/kml5test.c`
//! for the interrupt and fault counters and what a tracer may do.

use std::path::Path;
use std::process::Command;

use guest_tests::{Initramfs, Outcome, TempDir};

#[path = "kml/common.rs"]
mod common;
use common::{
    all_cpus, assert_clean_but_backtraces, nmi_counts, relinked_musl, run_on, run_unchecked,
    GENERAL_KML,
};

const PROFILE: &str = "lupine-base+kml";
const CALLS: u64 = 100_000;

/// Builds `tests/kml/kmltest.S`.
fn kmltest(dir: &Path) -> Vec<u8> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kml/kmltest.S");
    let bin = dir.join("kmltest");
    let out = Command::new("gcc")
        .args(["-nostdlib", "-static", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("gcc runs");
    assert!(
        out.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(bin).unwrap()
}

/// Boots `lupine-base+kml` on `smp` vCPUs of CPU model `cpu` with `cmdline` added, running
/// `manifest` with the test program at each of `files` (path, mode; owned by root).
fn boot(
    name: &str,
    smp: u32,
    cpu: &str,
    cmdline: &str,
    manifest: &str,
    files: &[(&str, u32)],
) -> Outcome {
    let tmp = TempDir::new(&format!("kml-{name}-smp{smp}-{cpu}")).unwrap();
    let bin = kmltest(tmp.path());
    let mut initrd = Initramfs::new(manifest).unwrap();
    for &(path, mode) in files {
        initrd = initrd.file(path, mode, &bin);
    }
    let initrd = initrd.write(tmp.join("initramfs.cpio")).unwrap();
    let out = run(&initrd, smp, cpu, cmdline);
    for line in out.lines_starting("kmltest: ") {
        println!("{name} smp={smp} cpu={cpu}: {line}");
    }
    out
}

/// Boots `lupine-base+kml` from `initrd` on `smp` vCPUs of CPU model `cpu`, every kernel
/// message on the console (`ignore_loglevel`) and `cmdline` added; the console must be clean.
fn run(initrd: &Path, smp: u32, cpu: &str, cmdline: &str) -> Outcome {
    run_on(PROFILE, initrd, smp, cpu, cmdline)
}

/// What a `kmltest: ` line on `smp` vCPUs starts with when every call went right: half of
/// the 100 moves go to CPU 1, which exists only with 2 vCPUs.
fn ok_line(mode: &str, smp: u32) -> String {
    let migrations = if smp > 1 { 100 } else { 50 };
    format!("{mode} calls={CALLS} migrations={migrations} ok ticks/call=")
}

/// The one `kmltest: ` line; it must be [`ok_line`].
#[track_caller]
fn assert_kmltest(out: &Outcome, mode: &str, smp: u32) {
    let lines = out.lines_starting("kmltest: ");
    assert_eq!(lines.len(), 1, "{out}");
    let prefix = ok_line(mode, smp);
    assert!(lines[0].starts_with(&prefix), "want {prefix:?}...\n{out}");
}

/// CPL 0 (CS is __KERNEL_CS), the call entry, AT_SECURE, not dumpable.
const KERNEL_MODE: &str = "kmltest: cs=0x10 sysinfo=yes secure=1 dumpable=0";
/// CPL 3 (__USER_CS), no AT_SYSINFO, an ordinary process.
const USER_MODE: &str = "kmltest: cs=0x33 sysinfo=no secure=0 dumpable=1";

/// The three cases on one machine: `/trusted/kmltest` with `kml=on` at CPL 0; the same file
/// outside `/trusted` with `kml=on`, and in `/trusted` with KML off, at CPL 3 (off by default
/// with 1 vCPU, `kml=off` with 2).
fn trusted_kernel_mode(smp: u32, cpu: &str) {
    let out = boot(
        "trusted",
        smp,
        cpu,
        "kml=on",
        r#"{"version": 1, "app": {"path": "/trusted/kmltest"}}"#,
        &[("/trusted/kmltest", 0o755)],
    );
    assert!(
        out.console
            .contains("kml: Kernel Mode Linux on: programs under /trusted/ run at CPL 0"),
        "no boot message\n{out}"
    );
    assert!(
        out.console
            .contains("kml: /trusted/kmltest runs in kernel mode"),
        "{out}"
    );
    assert_kmltest(&out, KERNEL_MODE, smp);
    out.assert_exit_status(0);

    let out = boot(
        "untrusted",
        smp,
        cpu,
        "kml=on",
        r#"{"version": 1, "app": {"path": "/kmltest"}}"#,
        &[("/kmltest", 0o755)],
    );
    assert_kmltest(&out, USER_MODE, smp);
    assert!(!out.console.contains("runs in kernel mode"), "{out}");
    out.assert_exit_status(0);

    let out = boot(
        "off",
        smp,
        cpu,
        if smp > 1 { "kml=off" } else { "" },
        r#"{"version": 1, "app": {"path": "/trusted/kmltest"}}"#,
        &[("/trusted/kmltest", 0o755)],
    );
    assert!(
        out.console
            .contains("kml: Kernel Mode Linux available but off (boot with kml=on)"),
        "{out}"
    );
    assert_kmltest(&out, USER_MODE, smp);
    out.assert_exit_status(0);
}

#[test]
fn trusted_kernel_mode_smp1_qemu64() {
    trusted_kernel_mode(1, "qemu64");
}

#[test]
fn trusted_kernel_mode_smp1_max() {
    trusted_kernel_mode(1, "max");
}

#[test]
fn trusted_kernel_mode_smp2_qemu64() {
    trusted_kernel_mode(2, "qemu64");
}

#[test]
fn trusted_kernel_mode_smp2_max() {
    trusted_kernel_mode(2, "max");
}

// busybox sh runs the program from a normal process (fork, then exec into kernel mode), reads
// /proc/kml, switches KML off with the sysctl and runs it again, and runs a group-writable copy.
const SCRIPT: &str = "/trusted/kmltest; echo status=$?; cat /proc/kml; \
    echo 0 > /proc/sys/kernel/kml; /trusted/kmltest; cat /proc/kml; \
    echo 1 > /proc/sys/kernel/kml; /trusted/kmltest-gw; echo done";

/// The sum of the `cpuN calls M` lines of the `n`th (0-based) /proc/kml read in the console.
fn calls(out: &Outcome, n: usize) -> u64 {
    let mut reads = Vec::new();
    for line in out.lines() {
        if line.starts_with("enabled ") {
            reads.push(0);
        } else if let (Some(last), Some(rest)) = (reads.last_mut(), line.strip_prefix("cpu")) {
            let count = rest.split_whitespace().nth(2).unwrap_or("x");
            *last += count
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("bad /proc/kml line {line:?}\n{out}"));
        }
    }
    assert!(reads.len() > n, "no /proc/kml read {n}\n{out}");
    reads[n]
}

fn policy(smp: u32, cpu: &str) {
    let manifest =
        format!(r#"{{"version": 1, "app": {{"path": "/bin/sh", "args": ["-c", "{SCRIPT}"]}}}}"#);
    let out = boot(
        "policy",
        smp,
        cpu,
        "kml=on",
        &manifest,
        &[("/trusted/kmltest", 0o755), ("/trusted/kmltest-gw", 0o775)],
    );
    let lines = out.lines_starting("kmltest: ");
    assert_eq!(lines.len(), 3, "{out}");
    for (line, mode) in lines.iter().zip([KERNEL_MODE, USER_MODE, USER_MODE]) {
        let want = ok_line(mode, smp);
        assert!(line.starts_with(&want), "want {want:?}...\n{out}");
    }
    assert!(out.has_line("status=0"), "{out}");
    assert!(out.has_line("enabled 1"), "{out}");
    assert!(out.has_line("enabled 0"), "{out}");
    // Every system call of the kernel-mode run went through the entry: prctl, getpid, the
    // loop, 100 sched_setaffinity, a getcpu after each move that succeeded, write and
    // exit_group. None once KML is off.
    let migrations = if smp > 1 { 100 } else { 50 };
    let total = 1 + 1 + CALLS + 100 + migrations + 1 + 1;
    assert_eq!(calls(&out, 0), total, "{out}");
    assert_eq!(calls(&out, 1), total, "{out}");
    assert!(out.has_line("done"), "{out}");
    out.assert_exit_status(0);
}

#[test]
fn policy_and_counters_smp2_max() {
    policy(2, "max");
}

#[test]
fn policy_and_counters_smp1_qemu64() {
    policy(1, "qemu64");
}

/// A C program (musl, static) that reads CS, makes 100000 `getpid` calls, fills 32 MB of
/// `malloc`ed memory (fresh pages: faults at CPL 0 in kernel mode) and prints.
const RELINKED_C: &str = r#"#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(void) {
    unsigned short cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    long sum = 0;
    for (int i = 0; i < 100000; i++)
        sum += getpid() - getpid() + 1;
    size_t n = 32 << 20;
    char *p = malloc(n);
    if (!p)
        return 2;
    memset(p, 7, n);
    long heap = 0;
    for (size_t i = 0; i < n; i += 4096)
        heap += p[i];
    printf("relinked: cs=%#x sum=%ld heap=%ld\n", cs, sum, heap);
    return 0;
}
"#;

/// The real consumer: a musl program rewritten by lupine-relink, whose trampolines find the
/// entry in `AT_SYSINFO` at start, runs in kernel mode under `/trusted` and makes its system
/// calls through the entry (its startup, the loop, printf's write; exit stays a real
/// `syscall` and is not counted), and at CPL 3 elsewhere. Its `malloc` (an mmap) and the page
/// faults on that memory are handled at CPL 0.
fn relinked(smp: u32, cpu: &str) {
    let tmp = TempDir::new(&format!("kml-relinked-smp{smp}-{cpu}")).unwrap();
    let (src, exe) = (tmp.join("relinked.c"), tmp.join("relinked"));
    std::fs::write(&src, RELINKED_C).unwrap();
    let relinked = relinked_musl(&src, &exe);
    let script = "/trusted/relinked; echo status=$?; cat /proc/kml; /relinked; echo status=$?";
    let initrd = Initramfs::sh(&["-c", script])
        .unwrap()
        .file("/trusted/relinked", 0o755, &relinked)
        .file("/relinked", 0o755, &relinked)
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let out = run(&initrd, smp, cpu, "kml=on");
    assert_eq!(
        out.lines_starting("relinked: "),
        [
            "relinked: cs=0x10 sum=100000 heap=57344",
            "relinked: cs=0x33 sum=100000 heap=57344"
        ],
        "{out}"
    );
    assert_eq!(
        out.lines_starting("status="),
        ["status=0", "status=0"],
        "{out}"
    );
    // 200000 getpid calls and more (start-up, write), all through the entry.
    assert!(calls(&out, 0) > 200_000, "{out}");
    out.assert_exit_status(0);
}

#[test]
fn relinked_program_smp2_max() {
    relinked(2, "max");
}

#[test]
fn relinked_program_smp1_qemu64() {
    relinked(1, "qemu64");
}

/// Builds `tests/kml/kml2test.c` (no libc).
fn kml2test(dir: &Path) -> Vec<u8> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kml/kml2test.c");
    let bin = dir.join("kml2test");
    let out = Command::new("gcc")
        .args([
            "-O1",
            "-nostdlib",
            "-static",
            "-fno-builtin",
            "-fno-stack-protector",
            "-fno-pie",
            "-no-pie",
            "-o",
        ])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("gcc runs");
    assert!(
        out.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(bin).unwrap()
}

// kml2test under /trusted, from busybox sh (a normal process that forks and execs each run into
// kernel mode and reports its wait status as 128+signal): red-zone canaries under timer
// interrupts, 7 MB of recursion, 64 MB of fresh mmap'd memory, faults that must become signals
// (among them a recursion without end and a return to a bad address from a signal handler), a
// program that single-steps itself (#DB) through a system call, and two pure CPU hogs pinned to
// CPU 0 (only timer preemption lets the second one, and the shell, run while the first spins).
const FAULTS_SCRIPT: &str = "K=/trusted/kml2test; grep -E 'LOC:|timer$' /proc/interrupts; \
    $K redzone; grep -E 'LOC:|timer$' /proc/interrupts; $K recurse; $K mmap; \
    $K null; echo null=$?; $K noncanon; echo noncanon=$?; $K ud2; echo ud2=$?; $K div0; echo div0=$?; \
    $K int3; echo int3=$?; $K overflow; echo overflow=$?; $K badiret; echo badiret=$?; $K step; \
    $K hog & H=$!; $K hog; wait $H; echo hogs done";

// With two vCPUs, NMIs all along: the shell asks for a backtrace of every CPU five times a
// second (sysrq l), which the kernel takes by NMI on the other CPU, mostly the one running the
// KML program, and at least 30 times (the script's length varies with the host). The
// backtraces go to the console as the kernel prints them, so the script's output goes to a
// file, shown once a message to /dev/kmsg has flushed the console.
const NMI_START: &str = "grep NMI: /proc/interrupts; \
    (n=0; while [ ! -e /tmp/nmi-stop ] || [ $n -lt 30 ]; do echo l > /proc/sysrq-trigger; \
    n=$((n + 1)); sleep 0.2; done) & (";
const NMI_STOP: &str = ") > /tmp/kml2test.out 2>&1; touch /tmp/nmi-stop; wait; \
    echo kml2test done > /dev/kmsg; grep NMI: /proc/interrupts; cat /tmp/kml2test.out";

/// The timer interrupts of all CPUs in each snapshot of /proc/interrupts the script greps: the
/// local APIC timers (`LOC:`, which ends a snapshot) plus IRQ 0 (`0: ... timer`), which ticks
/// instead when the kernel finds the APIC timer unusable (it can, on a loaded host under TCG).
fn timer_interrupts(out: &Outcome) -> Vec<u64> {
    let mut snapshots = Vec::new();
    let mut irq0 = 0;
    for l in out.lines().map(str::trim_start) {
        if let Some(counts) = l.strip_prefix("0:").filter(|_| l.ends_with("timer")) {
            irq0 = all_cpus(counts);
        } else if let Some(counts) = l.strip_prefix("LOC:") {
            snapshots.push(irq0 + all_cpus(counts));
            irq0 = 0;
        }
    }
    snapshots
}

/// A line that starts with the shell's `echo NAME=$?` output `want`: the kernel's report of the
/// fault that killed the program (`traps: ...`, printed as the shell runs on) can land on the
/// same console line after it.
fn has_status(out: &Outcome, want: &str) -> bool {
    out.lines().any(|l| {
        l.strip_prefix(want)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('['))
    })
}

/// `start=` and `end=` (ms) of a `kml2: hog` line.
fn hog_times(line: &str) -> (u64, u64) {
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
    };
    (field("start="), field("end="))
}

fn faults_and_interrupts(smp: u32, cpu: &str) {
    let tmp = TempDir::new(&format!("kml-faults-smp{smp}-{cpu}")).unwrap();
    let bin = kml2test(tmp.path());
    let script = if smp > 1 {
        format!("{NMI_START}{FAULTS_SCRIPT}{NMI_STOP}")
    } else {
        FAULTS_SCRIPT.to_string()
    };
    let initrd = Initramfs::sh(&["-c", &script])
        .unwrap()
        .file("/trusted/kml2test", 0o755, &bin)
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let out = run_unchecked(PROFILE, &initrd, smp, cpu, "kml=on");
    assert_clean_but_backtraces(&out);
    for line in out.lines_starting("kml2: ") {
        println!("faults smp={smp} cpu={cpu}: {line}");
    }
    let lines = out.lines_starting("kml2: ");
    for (mode, rest) in [
        ("redzone", " bad=0 gaps="),
        ("recurse", " depth=1800 sum="),
        ("mmap", " pages=16384"),
        // Every step of the program's own TF reported in its code, none in the call entry.
        ("step", " traps=8 kernel=0 getppid=same"),
    ] {
        let prefix = format!("kml2: {mode} cs=0x10{rest}");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&prefix) && l.ends_with(" ok")),
            "want {prefix:?}... ok\n{out}"
        );
    }
    // The red-zone loop really was interrupted: the timer ticked (HZ=250) while it ran, on
    // the CPU it kept busy for 2 s without a system call.
    let loc = timer_interrupts(&out);
    assert_eq!(loc.len(), 2, "{out}");
    assert!(loc[1] >= loc[0] + 200, "timer interrupts {loc:?}\n{out}");
    // SIGSEGV (#PF and #GP; the user stack's limit; an iretq that faults), SIGILL, SIGFPE,
    // SIGTRAP.
    for want in [
        "null=139",
        "noncanon=139",
        "ud2=132",
        "div0=136",
        "int3=133",
        "overflow=139",
        "badiret=139",
    ] {
        assert!(has_status(&out, want), "want {want}\n{out}");
    }
    assert!(!out.console.contains("survived"), "{out}");
    let hogs: Vec<_> = lines
        .iter()
        .filter(|l| l.starts_with("kml2: hog cs=0x10 ") && l.ends_with(" ok"))
        .map(|l| hog_times(l))
        .collect();
    assert_eq!(hogs.len(), 2, "{out}");
    // Each ran while the other did: they shared CPU 0.
    let ((s0, e0), (s1, e1)) = (hogs[0], hogs[1]);
    assert!(s0 < e1 && s1 < e0, "hogs did not overlap: {hogs:?}\n{out}");
    assert!(out.has_line("hogs done"), "{out}");
    if smp > 1 {
        // NMIs came, and some found the KML program in its own code: their backtrace shows
        // its registers as those of a user context (the real CS, 0010, and the user-mode dump:
        // FS and GS bases, no knlGS, no kernel stack to unwind), never its code as kernel
        // context; and no dump shows the KML mark that pt_regs carries (7fff0013).
        let nmis = nmi_counts(&out);
        assert_eq!(nmis.len(), 2, "{out}");
        assert!(nmis[1] >= nmis[0] + 20, "NMIs {nmis:?}\n{out}");
        let lines: Vec<_> = out.lines().collect();
        // Each dump: from the RIP line after "Comm: kml2test" to its FS and GS line.
        let fs_gs_in_its_code: Vec<&str> = (0..lines.len())
            .filter(|&i| lines[i].contains(" Comm: kml2test "))
            .filter(|&i| {
                lines[i + 1..]
                    .first()
                    .is_some_and(|l| l.contains("RIP: 0010:0x00000000004"))
            })
            .filter_map(|i| lines[i + 1..].iter().find(|l| l.contains("FS:")).copied())
            .collect();
        assert!(
            fs_gs_in_its_code.iter().any(|l| l.contains(" GS:  ")),
            "no NMI backtrace of kml2test in its code\n{out}"
        );
        assert!(
            !fs_gs_in_its_code.iter().any(|l| l.contains("knlGS:")),
            "{out}"
        );
        assert!(!out.console.contains("7fff0013"), "{out}");
    }
    out.assert_exit_status(0);
}

#[test]
fn faults_and_interrupts_smp1_qemu64() {
    faults_and_interrupts(1, "qemu64");
}

#[test]
fn faults_and_interrupts_smp1_max() {
    faults_and_interrupts(1, "max");
}

#[test]
fn faults_and_interrupts_smp2_qemu64() {
    faults_and_interrupts(2, "qemu64");
}

#[test]
fn faults_and_interrupts_smp2_max() {
    faults_and_interrupts(2, "max");
}

/// Builds `tests/kml/kml3test.c` with musl (static, with threads) and relinks it with
/// lupine-relink, as a program for `/trusted` would be.
fn kml3test(dir: &Path) -> Vec<u8> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kml/kml3test.c");
    let exe = dir.join("kml3test");
    relinked_musl(&src, &exe)
}

// kml3test under /trusted, from busybox sh: a 1 kHz SIGALRM (sent by a child process: Lupine
// kernels have no POSIX timers, so no setitimer) over a register-checksum loop, a
// handler on a sigaltstack, an SA_RESTART read, 20 forks, two threads moving between CPU 0 and
// CPU 1 (TLS in FS checked), exec to a user-mode program and back, vfork + exec. The same
// file outside /trusted runs each mode at CPL 3.
const SIGNALS_SCRIPT: &str = "for m in signal altstack restart fork threads exec vfork; do \
    /trusted/kml3test $m; echo $m=$?; done; /kml3test signal; /kml3test threads; echo done";

fn signals_fork_threads_exec(smp: u32, cpu: &str) {
    let tmp = TempDir::new(&format!("kml-signals-smp{smp}-{cpu}")).unwrap();
    let bin = kml3test(tmp.path());
    let initrd = Initramfs::sh(&["-c", SIGNALS_SCRIPT])
        .unwrap()
        .file("/trusted/kml3test", 0o755, &bin)
        .file("/kml3test", 0o755, &bin)
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let out = run(&initrd, smp, cpu, "kml=on");
    for line in out.lines_starting("kml3: ") {
        println!("signals smp={smp} cpu={cpu}: {line}");
    }
    let lines = out.lines_starting("kml3: ");
    let cpus = smp.min(2);
    let want: Vec<String> = [
        "signal cs=0x10 handler_cs=0x10 alarms>=200=1 bad=0 ok".to_string(),
        "altstack cs=0x10 handler_cs=0x10 on_altstack=1 ok".to_string(),
        "restart cs=0x10 handler_cs=0x10 read=1 alarms=1 ok".to_string(),
        "fork cs=0x10 children=20 status=42 ok".to_string(),
        format!("threads cs=0x10 cpus={cpus} moves=10000 bad=0 tls=99 ok"),
        // Kernel mode execs a user-mode program, which execs the kernel-mode one again.
        "exec cs=0x10 to /kml3test ok".to_string(),
        "exec cs=0x33 to /trusted/kml3test ok".to_string(),
        "cs cs=0x10 ok".to_string(),
        // The vfork child execs the user-mode program; the parent goes on at CPL 0.
        "cs cs=0x33 ok".to_string(),
        "vfork cs=0x10 status=0 ok".to_string(),
        // The same program at CPL 3.
        "signal cs=0x33 handler_cs=0x33 alarms>=200=1 bad=0 ok".to_string(),
        format!("threads cs=0x33 cpus={cpus} moves=10000 bad=0 tls=99 ok"),
    ]
    .iter()
    .map(|l| format!("kml3: {l}"))
    .collect();
    assert_eq!(lines, want, "{out}");
    for m in [
        "signal", "altstack", "restart", "fork", "threads", "exec", "vfork",
    ] {
        assert!(has_status(&out, &format!("{m}=0")), "want {m}=0\n{out}");
    }
    assert!(out.has_line("done"), "{out}");
    out.assert_exit_status(0);
}

#[test]
fn signals_fork_threads_exec_smp1_qemu64() {
    signals_fork_threads_exec(1, "qemu64");
}

#[test]
fn signals_fork_threads_exec_smp2_max() {
    signals_fork_threads_exec(2, "max");
}

#[test]
fn signals_fork_threads_exec_smp2_qemu64() {
    signals_fork_threads_exec(2, "qemu64");
}

/// The `cpuN calls M syscalls R interrupts I faults F` lines of the `n`th (0-based) /proc/kml
/// read in the console: the sums of the call-entry (M) and raw-`syscall` (R) counts.
fn counts(out: &Outcome, n: usize) -> (u64, u64) {
    let mut reads: Vec<(u64, u64)> = Vec::new();
    for line in out.lines() {
        if line.starts_with("enabled ") {
            reads.push((0, 0));
        } else if let (Some(last), Some(rest)) = (reads.last_mut(), line.strip_prefix("cpu")) {
            let words: Vec<&str> = rest.split_whitespace().collect();
            assert!(
                words.len() == 9
                    && words[1] == "calls"
                    && words[3] == "syscalls"
                    && words[5] == "interrupts"
                    && words[7] == "faults",
                "bad /proc/kml line {line:?}\n{out}"
            );
            let num = |w: &str| {
                w.parse::<u64>()
                    .unwrap_or_else(|_| panic!("bad /proc/kml line {line:?}\n{out}"))
            };
            last.0 += num(words[2]);
            last.1 += num(words[4]);
        }
    }
    assert!(reads.len() > n, "no /proc/kml read {n}\n{out}");
    reads[n]
}

// Raw syscalls (a): a shell script run by Debian's static busybox (glibc, unmodified, not
// relinked: every system call is a raw `syscall`), as /trusted/busybox at CPL 0 and as
// /bin/busybox at CPL 3. Each output line starts with "bb: ".
const BUSYBOX_SCRIPT: &str = r#"echo "bb: hello $0"
echo "bb: pipe $(echo one two three | cat | cat)"
x=outer; (x=inner; echo "bb: subshell $x"); echo "bb: after $x"
echo "bb: arith $(( (7 * 6) + 2 ** 10 - 100 / 3 ))"
i=0; s=0; while [ $i -lt 1000 ]; do i=$((i + 1)); s=$((s + i * i)); done
echo "bb: loop i=$i s=$s"
while read k v rest; do case $k in Name:|State:|Uid:) echo "bb: status $k $v";; esac; done < /proc/self/status
echo "bb: statuslines $(cat /proc/self/status | grep -c '^Name:')"
n=0; for w in a b c d e f g h; do n=$((n + 1)); done; echo "bb: words $n"
f() { echo "bb: func $1 $#"; return 3; }; f x y z; echo "bb: ret $?"
echo "bb: done"
"#;

/// The lines of the console between the `from` and `to` marker lines that start with "bb: ".
fn bb_lines<'a>(out: &'a Outcome, from: &str, to: &str) -> Vec<&'a str> {
    out.lines()
        .skip_while(|l| *l != from)
        .take_while(|l| *l != to)
        .filter(|l| l.starts_with("bb: "))
        .collect()
}

fn busybox_trusted(smp: u32, cpu: &str) {
    let tmp = TempDir::new(&format!("kml-busybox-smp{smp}-{cpu}")).unwrap();
    let busybox = std::fs::read("/bin/busybox").expect("the host's static busybox");
    let script = "cat /proc/kml; echo mark-k; /trusted/busybox sh /trusted/script.sh; \
        echo status=$?; echo mark-u; cat /proc/kml; /bin/busybox sh /trusted/script.sh; \
        echo status=$?; echo mark-e; cat /proc/kml; echo done";
    let initrd = Initramfs::sh(&["-c", script])
        .unwrap()
        .file("/trusted/busybox", 0o755, &busybox)
        .file("/trusted/script.sh", 0o644, BUSYBOX_SCRIPT)
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let out = run(&initrd, smp, cpu, "kml=on");
    let kernel = bb_lines(&out, "mark-k", "mark-u");
    let user = bb_lines(&out, "mark-u", "mark-e");
    for line in &kernel {
        println!("busybox smp={smp} cpu={cpu}: {line}");
    }
    assert_eq!(kernel.len(), 14, "{out}");
    assert_eq!(kernel, user, "{out}");
    assert!(kernel.contains(&"bb: loop i=1000 s=333833500"), "{out}");
    assert!(kernel.contains(&"bb: pipe one two three"), "{out}");
    assert_eq!(
        out.lines_starting("status="),
        ["status=0", "status=0"],
        "{out}"
    );
    let (c0, s0) = counts(&out, 0);
    let (c1, s1) = counts(&out, 1);
    let (c2, s2) = counts(&out, 2);
    println!(
        "busybox smp={smp} cpu={cpu}: raw syscalls at CPL 0: {}",
        s1 - s0
    );
    // Unrelinked: no call through the entry, every system call a counted raw syscall (the
    // shell's, and its forked children's); none counted for the run at CPL 3.
    assert_eq!(c1, c0, "{out}");
    assert!(s1 - s0 > 100, "{out}");
    assert_eq!((c2, s2), (c1, s1), "{out}");
    assert!(out.has_line("done"), "{out}");
    out.assert_exit_status(0);
}

#[test]
fn busybox_trusted_smp1_qemu64() {
    busybox_trusted(1, "qemu64");
}

#[test]
fn busybox_trusted_smp2_max() {
    busybox_trusted(2, "max");
}

/// Raw syscalls (b): a relinked musl program mixing call-entry `getpid` (libc, rewritten by
/// lupine-relink), a raw `syscall` (inline asm that lupine-relink keeps: its bytes follow the
/// `__restore_rt` pattern, jumped over) and vDSO `clock_gettime(CLOCK_MONOTONIC)`, each in a
/// loop of 1000, reading /proc/kml itself around each loop (the reads' own system calls are
/// measured by two reads with nothing between).
const MIXED_C: &str = r#"#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <time.h>
#include <unistd.h>
#define N 1000
static void snap(long *c, long *s) {
    static char buf[8192];
    int fd = open("/proc/kml", O_RDONLY);
    if (fd < 0)
        exit(10);
    long n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        exit(11);
    buf[n] = 0;
    *c = *s = 0;
    for (char *p = buf; (p = strstr(p, "calls ")); ) {
        char *e;
        *c += strtol(p + 6, &e, 10);
        p = strstr(e, "syscalls ");
        if (!p)
            exit(12);
        *s += strtol(p + 9, &e, 10);
        p = e;
    }
}
static long raw_getpid(void) {
    long r;
    __asm__ volatile("mov $39, %%eax\n\tjmp 1f\n\tmov $15, %%rax\n1:\tsyscall"
                     : "=a"(r) : : "rcx", "r11", "memory");
    return r;
}
int main(void) {
    unsigned short cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    long c[8], s[8];
    snap(&c[0], &s[0]);
    snap(&c[1], &s[1]);
    long oc = c[1] - c[0], os = s[1] - s[0];
    pid_t pid = getpid();
    int bad = 0;
    snap(&c[2], &s[2]);
    for (int i = 0; i < N; i++)
        bad += getpid() != pid;
    snap(&c[3], &s[3]);
    for (int i = 0; i < N; i++)
        bad += raw_getpid() != pid;
    snap(&c[4], &s[4]);
    struct timespec t0, prev, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    prev = t0;
    for (int i = 0; i < N - 1; i++) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec < prev.tv_sec || (t.tv_sec == prev.tv_sec && t.tv_nsec < prev.tv_nsec))
            bad++;
        prev = t;
    }
    snap(&c[5], &s[5]);
    /* Outside the counted loops: a clocksource without a vDSO mode may be jiffies-coarse. */
    struct timespec nap = {0, 20000000};
    nanosleep(&nap, 0);
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (t.tv_sec < prev.tv_sec || (t.tv_sec == prev.tv_sec && t.tv_nsec < prev.tv_nsec))
        bad++;
    int advanced = t.tv_sec > t0.tv_sec || (t.tv_sec == t0.tv_sec && t.tv_nsec > t0.tv_nsec);
    printf("mixed: cs=%#x vdso=%d bad=%d advanced=%d getpid=%ld/%ld raw=%ld/%ld vdso=%ld/%ld\n",
           cs, getauxval(AT_SYSINFO_EHDR) != 0, bad, advanced,
           c[3] - c[2] - oc, s[3] - s[2] - os, c[4] - c[3] - oc, s[4] - s[3] - os,
           c[5] - c[4] - oc, s[5] - s[4] - os);
    return 0;
}
"#;

fn mixed(smp: u32, cpu: &str) {
    let tmp = TempDir::new(&format!("kml-mixed-smp{smp}-{cpu}")).unwrap();
    let (src, exe) = (tmp.join("mixed.c"), tmp.join("mixed"));
    std::fs::write(&src, MIXED_C).unwrap();
    let relinked = relinked_musl(&src, &exe);
    let initrd = Initramfs::sh(&["-c", "/trusted/mixed; echo status=$?"])
        .unwrap()
        .file("/trusted/mixed", 0o755, &relinked)
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let out = run(&initrd, smp, cpu, "kml=on");
    let lines = out.lines_starting("mixed: ");
    for line in &lines {
        println!("mixed smp={smp} cpu={cpu}: {line}");
    }
    assert_eq!(lines.len(), 1, "{out}");
    // 1000 getpid through the entry, 1000 raw syscalls, and the vDSO loop entering no system
    // call through the entry; the vDSO itself makes a raw syscall per call only if the
    // clocksource has no vDSO mode (never a mix: the boot has settled on one by then).
    let prefix = "mixed: cs=0x10 vdso=1 bad=0 advanced=1 getpid=1000/0 raw=0/1000 vdso=0/";
    assert!(lines[0].starts_with(prefix), "want {prefix:?}...\n{out}");
    let vdso_raw = &lines[0][prefix.len()..];
    assert!(vdso_raw == "0" || vdso_raw == "1000", "{out}");
    assert_eq!(out.lines_starting("status="), ["status=0"], "{out}");
    out.assert_exit_status(0);
}

#[test]
fn mixed_entries_smp1_qemu64() {
    mixed(1, "qemu64");
}

#[test]
fn mixed_entries_smp2_max() {
    mixed(2, "max");
}

// Selection rules, on GENERAL_KML (lupine-base has no users but root): the selection
// rules, one kmltest line each, in this order: a file other users may write, a file owned by
// another user, a copy run under chroot, the file run in another mount namespace, the file
// reached through a bind mount outside /trusted (all CPL 3); the file itself (CPL 0). The rules
// are about the file, not the caller: counters_and_ptrace runs /trusted/kml5test as nobody at
// CPL 0.
const SELECTION_SCRIPT: &str = "B=/bin/busybox; /trusted/kmltest-ow; \
    $B chown 1000 /trusted/kmltest-u; /trusted/kmltest-u; \
    $B mkdir -p /jail/trusted; $B cp /trusted/kmltest /jail/trusted/; \
    $B chroot /jail /trusted/kmltest; \
    $B unshare -m /trusted/kmltest; \
    $B mkdir /elsewhere; mount --bind /trusted /elsewhere; /elsewhere/kmltest; \
    /trusted/kmltest; echo done";

fn selection(smp: u32, cpu: &str) {
    let tmp = TempDir::new(&format!("kml-selection-smp{smp}-{cpu}")).unwrap();
    let bin = kmltest(tmp.path());
    let initrd = Initramfs::sh(&["-c", SELECTION_SCRIPT])
        .unwrap()
        .file("/trusted/kmltest", 0o755, &bin)
        .file("/trusted/kmltest-ow", 0o757, &bin)
        .file("/trusted/kmltest-u", 0o755, &bin)
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let out = run_on(GENERAL_KML, &initrd, smp, cpu, "kml=on");
    let lines = out.lines_starting("kmltest: ");
    for line in &lines {
        println!("selection smp={smp} cpu={cpu}: {line}");
    }
    let modes = [
        USER_MODE,
        USER_MODE,
        USER_MODE,
        USER_MODE,
        USER_MODE,
        KERNEL_MODE,
    ];
    assert_eq!(lines.len(), modes.len(), "{out}");
    for (line, mode) in lines.iter().zip(modes) {
        let want = ok_line(mode, smp);
        assert!(line.starts_with(&want), "want {want:?}...\n{out}");
    }
    assert!(out.has_line("done"), "{out}");
    out.assert_exit_status(0);
}

#[test]
fn selection_rules_smp1_qemu64() {
    selection(1, "qemu64");
}

#[test]
fn selection_rules_smp2_max() {
    selection(2, "max");
}

// Counters and ptrace, on GENERAL_KML: tests/kml/kml5test.c, relinked, as /trusted/kml5test
// (CPL 0) and /kml5test (CPL 3): its page faults and interrupts in /proc/kml, what a root
// tracer may do to it, and who may attach to it.
const COUNTERS_PTRACE_SCRIPT: &str = "/trusted/kml5test counters; /kml5test counters; \
    /kml5test ptrace /trusted/kml5test; /kml5test ptrace /kml5test; \
    /kml5test attach /trusted/kml5test; /kml5test attach /kml5test; echo done";

fn counters_and_ptrace(smp: u32, cpu: &str) {
    let tmp = TempDir::new(&format!("kml-counters-ptrace-smp{smp}-{cpu}")).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kml/kml5test.c");
    let bin = relinked_musl(&src, &tmp.join("kml5test"));
    let initrd = Initramfs::sh(&["-c", COUNTERS_PTRACE_SCRIPT])
        .unwrap()
        .file("/trusted/kml5test", 0o755, &bin)
        .file("/kml5test", 0o755, &bin)
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let out = run_on(GENERAL_KML, &initrd, smp, cpu, "kml=on");
    let lines = out.lines_starting("kml5: ");
    for line in &lines {
        println!("counters_and_ptrace smp={smp} cpu={cpu}: {line}");
    }
    let want = [
        // 2000 fresh pages, 2000 page faults at CPL 0, each also an exception entry; 300 ms
        // of spinning: timer interrupts (HZ=250), no fault. Nothing counted at CPL 3.
        "counters cs=0x10 faults=2000 touch_interrupts>=faults=1 spin_faults=0 \
         spin_interrupts=many",
        "counters cs=0x33 faults=0 touch_interrupts>=faults=1 spin_faults=0 spin_interrupts=0",
        // The tracee runs at CPL 0 and ptrace says so; a tracer may write back what it read
        // but not change CS, the GS base, the trap flag or a debug register, nor single-step
        // it; syscall stops work (1000 getppid, an entry and an exit stop each).
        "work cs=0x10 bad=0",
        "ptrace /trusted/kml5test cs=0x10 ss=0x18 same=0 cs_change=EIO gsbase=EIO tf=EIO dr=EIO \
         step=EIO getppid_stops=2000 status=0",
        "work cs=0x33 bad=0",
        "ptrace /kml5test cs=0x33 ss=0x2b same=0 cs_change=0 gsbase=0 tf=0 dr=0 step=0 \
         getppid_stops=2000 status=0",
        // A kernel-mode process is not dumpable: its own user cannot attach, root can.
        "attach /trusted/kml5test (cs=0x10 uid=65534) nobody=EPERM root=0",
        "attach /kml5test (cs=0x33 uid=65534) nobody=0 root=0",
    ]
    .map(|l| format!("kml5: {l}"));
    assert_eq!(lines, want, "{out}");
    assert!(out.has_line("done"), "{out}");
    out.assert_exit_status(0);
}

#[test]
fn counters_and_ptrace_smp1_qemu64() {
    counters_and_ptrace(1, "qemu64");
}

#[test]
fn counters_and_ptrace_smp2_max() {
    counters_and_ptrace(2, "max");
}

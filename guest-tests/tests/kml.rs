//! Kernel Mode Linux, stage 1 (`kernel-patches/patches/kml/`): on `lupine-base+kml` booted with
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
//! Stage 2 (interrupts, exceptions and page faults at CPL 0) uses `tests/kml/kml2test.c` (no
//! libc either): red-zone canaries under timer interrupts, deep recursion and fresh mmap'd
//! memory, faults that must kill with the right signal, and two CPU hogs sharing CPU 0; and
//! the relinked musl program now fills `malloc`ed memory.
//!
//! Stage 3 (signals, fork, threads, exec, vfork) uses `tests/kml/kml3test.c` (musl, relinked):
//! handlers at CPL 0 returning through musl's raw-`syscall` restorer, a sigaltstack, an SA_RESTART
//! read, forks, two threads migrating between two CPUs, exec both ways, vfork + exec.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use guest_tests::{Initramfs, Outcome, TempDir, Vm};

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
    let out = Vm::lupine_on(PROFILE, &initrd)
        .unwrap()
        .smp(smp)
        .cpu(cpu)
        .append(&format!("ignore_loglevel {cmdline}"))
        .timeout(Duration::from_secs(240))
        .run()
        .unwrap();
    assert_clean(&out);
    for line in out.lines_starting("kmltest: ") {
        println!("{name} smp={smp} cpu={cpu}: {line}");
    }
    out
}

/// No kernel warning, BUG, oops or stack dump on the console. A kernel #GP reads "general
/// protection fault: 0000 [#1]" or "general protection fault, probably for ..."; a process's
/// (stage 2: also at CPL 0) "traps: prog[pid] general protection fault ip:..." is no error.
#[track_caller]
fn assert_clean(out: &Outcome) {
    for bad in [
        "WARNING:",
        "BUG:",
        "kernel BUG",
        "Oops",
        "Call Trace",
        "general protection fault:",
        "general protection fault,",
    ] {
        assert!(!out.console.contains(bad), "console has {bad:?}\n{out}");
    }
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
fn stage1(smp: u32, cpu: &str) {
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
fn smp1_qemu64() {
    stage1(1, "qemu64");
}

#[test]
fn smp1_max() {
    stage1(1, "max");
}

#[test]
fn smp2_qemu64() {
    stage1(2, "qemu64");
}

#[test]
fn smp2_max() {
    stage1(2, "max");
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
/// faults on that memory are handled at CPL 0 (stage 2).
fn relinked(smp: u32, cpu: &str) {
    let tmp = TempDir::new(&format!("kml-relinked-smp{smp}-{cpu}")).unwrap();
    let (src, exe) = (tmp.join("relinked.c"), tmp.join("relinked"));
    std::fs::write(&src, RELINKED_C).unwrap();
    let out = Command::new("musl-gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .expect("musl-gcc (musl-tools) runs");
    assert!(out.status.success(), "musl-gcc: {out:?}");
    let original = std::fs::read(&exe).unwrap();
    let relinked = lupine_relink::relink_bytes("relinked", "relinked", &original).unwrap();
    assert!(relinked.report.counts.rewritten > 0, "nothing rewritten");
    let manifest = r#"{"version": 1, "app": {"path": "/bin/sh", "args": ["-c",
        "/trusted/relinked; echo status=$?; cat /proc/kml; /relinked; echo status=$?"]}}"#;
    let initrd = Initramfs::new(manifest)
        .unwrap()
        .file("/trusted/relinked", 0o755, &relinked.bytes)
        .file("/relinked", 0o755, &relinked.bytes)
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let out = Vm::lupine_on(PROFILE, &initrd)
        .unwrap()
        .smp(smp)
        .cpu(cpu)
        .append("ignore_loglevel kml=on")
        .timeout(Duration::from_secs(240))
        .run()
        .unwrap();
    assert_clean(&out);
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

// Stage 2 under /trusted, from busybox sh (a normal process that forks and execs each run into
// kernel mode and reports its wait status as 128+signal): red-zone canaries under timer
// interrupts, 7 MB of recursion, 64 MB of fresh mmap'd memory, five faults that must become
// signals, and two pure CPU hogs pinned to CPU 0 (only timer preemption lets the second one,
// and the shell, run while the first spins).
const STAGE2_SCRIPT: &str = "K=/trusted/kml2test; grep LOC: /proc/interrupts; $K redzone; \
    grep LOC: /proc/interrupts; $K recurse; $K mmap; \
    $K null; echo null=$?; $K noncanon; echo noncanon=$?; $K ud2; echo ud2=$?; $K div0; echo div0=$?; \
    $K int3; echo int3=$?; $K hog & $K hog; wait; echo hogs done";

/// The local timer interrupts of all CPUs in each `LOC:` line of /proc/interrupts.
fn timer_interrupts(out: &Outcome) -> Vec<u64> {
    out.lines_starting("LOC:")
        .iter()
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .map_while(|w| w.parse::<u64>().ok())
                .sum()
        })
        .collect()
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

fn stage2(smp: u32, cpu: &str) {
    let tmp = TempDir::new(&format!("kml-stage2-smp{smp}-{cpu}")).unwrap();
    let bin = kml2test(tmp.path());
    let manifest = format!(
        r#"{{"version": 1, "app": {{"path": "/bin/sh", "args": ["-c", "{STAGE2_SCRIPT}"]}}}}"#
    );
    let initrd = Initramfs::new(&manifest)
        .unwrap()
        .file("/trusted/kml2test", 0o755, &bin)
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let out = Vm::lupine_on(PROFILE, &initrd)
        .unwrap()
        .smp(smp)
        .cpu(cpu)
        .append("ignore_loglevel kml=on")
        .timeout(Duration::from_secs(240))
        .run()
        .unwrap();
    assert_clean(&out);
    for line in out.lines_starting("kml2: ") {
        println!("stage2 smp={smp} cpu={cpu}: {line}");
    }
    let lines = out.lines_starting("kml2: ");
    for (mode, rest) in [
        ("redzone", " bad=0 gaps="),
        ("recurse", " depth=1800 sum="),
        ("mmap", " pages=16384"),
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
    // SIGSEGV (#PF and #GP), SIGILL, SIGFPE, SIGTRAP.
    for want in [
        "null=139",
        "noncanon=139",
        "ud2=132",
        "div0=136",
        "int3=133",
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
    out.assert_exit_status(0);
}

#[test]
fn stage2_smp1_qemu64() {
    stage2(1, "qemu64");
}

#[test]
fn stage2_smp1_max() {
    stage2(1, "max");
}

#[test]
fn stage2_smp2_qemu64() {
    stage2(2, "qemu64");
}

#[test]
fn stage2_smp2_max() {
    stage2(2, "max");
}

/// Builds `tests/kml/kml3test.c` with musl (static, with threads) and relinks it with
/// lupine-relink, as a program for `/trusted` would be.
fn kml3test(dir: &Path) -> Vec<u8> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kml/kml3test.c");
    let exe = dir.join("kml3test");
    let out = Command::new("musl-gcc")
        .args(["-static", "-O2", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .expect("musl-gcc (musl-tools) runs");
    assert!(out.status.success(), "musl-gcc: {out:?}");
    let original = std::fs::read(&exe).unwrap();
    let relinked = lupine_relink::relink_bytes("kml3test", "kml3test", &original).unwrap();
    assert!(relinked.report.counts.rewritten > 0, "nothing rewritten");
    relinked.bytes
}

// Stage 3 under /trusted, from busybox sh: a 1 kHz SIGALRM (sent by a child process: Lupine
// kernels have no POSIX timers, so no setitimer) over a register-checksum loop, a
// handler on a sigaltstack, an SA_RESTART read, 20 forks, two threads moving between CPU 0 and
// CPU 1 (TLS in FS checked), exec to a user-mode program and back, vfork + exec. The same
// file outside /trusted runs each mode at CPL 3.
const STAGE3_SCRIPT: &str = "for m in signal altstack restart fork threads exec vfork; do \
    /trusted/kml3test $m; echo $m=$?; done; /kml3test signal; /kml3test threads; echo done";

fn stage3(smp: u32, cpu: &str) {
    let tmp = TempDir::new(&format!("kml-stage3-smp{smp}-{cpu}")).unwrap();
    let bin = kml3test(tmp.path());
    let manifest = format!(
        r#"{{"version": 1, "app": {{"path": "/bin/sh", "args": ["-c", "{STAGE3_SCRIPT}"]}}}}"#
    );
    let initrd = Initramfs::new(&manifest)
        .unwrap()
        .file("/trusted/kml3test", 0o755, &bin)
        .file("/kml3test", 0o755, &bin)
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let out = Vm::lupine_on(PROFILE, &initrd)
        .unwrap()
        .smp(smp)
        .cpu(cpu)
        .append("ignore_loglevel kml=on")
        .timeout(Duration::from_secs(240))
        .run()
        .unwrap();
    assert_clean(&out);
    for line in out.lines_starting("kml3: ") {
        println!("stage3 smp={smp} cpu={cpu}: {line}");
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
fn stage3_smp1_qemu64() {
    stage3(1, "qemu64");
}

#[test]
fn stage3_smp2_max() {
    stage3(2, "max");
}

#[test]
fn stage3_smp2_qemu64() {
    stage3(2, "qemu64");
}

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

/// No kernel warning, BUG, oops or stack dump on the console.
#[track_caller]
fn assert_clean(out: &Outcome) {
    for bad in [
        "WARNING:",
        "BUG:",
        "kernel BUG",
        "Oops",
        "Call Trace",
        "general protection",
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

/// A C program (musl, static) that reads CS, makes 100000 `getpid` calls and prints.
const RELINKED_C: &str = r#"#include <stdio.h>
#include <unistd.h>
int main(void) {
    unsigned short cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    long sum = 0;
    for (int i = 0; i < 100000; i++)
        sum += getpid() - getpid() + 1;
    printf("relinked: cs=%#x sum=%ld\n", cs, sum);
    return 0;
}
"#;

/// The real consumer: a musl program rewritten by lupine-relink, whose trampolines find the
/// entry in `AT_SYSINFO` at start, runs in kernel mode under `/trusted` and makes its system
/// calls through the entry (its startup, the loop, printf's write; exit stays a real
/// `syscall` and is not counted), and at CPL 3 elsewhere. Stage 1 only: the program must not
/// touch memory mapped after exec (no malloc), which would fault at CPL 0.
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
            "relinked: cs=0x10 sum=100000",
            "relinked: cs=0x33 sum=100000"
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

//! Kernel Mode Linux's security model and fault containment: only a root-owned, not-writable
//! executable under `/trusted` of the initial mount namespace runs at CPL 0, nobody but root
//! looks inside it, and a bug in it ends it with a signal, not the kernel.
//!
//! `tests/kml/kml6test.c` (musl, relinked) is both the attacker and the target: a CPL 3 copy
//! (`/kml6test`) tries each way in on `/trusted/kml6test` (ptrace before exec, no_new_privs, a
//! shared fs_struct, a user namespace, dumpability asked back, perf events opened before exec,
//! writable directories, a hard link, a `#!` script); the trusted copy executes `int $N` for
//! vectors of every kind, and spins on a stack pointer that is not a user address. On
//! [`common::GENERAL_KML`] (users, user namespaces, preemption chosen at boot, kprobes) with 1
//! vCPU under `preempt=full` and 2 vCPUs, every kernel message on the console, none of them a
//! warning or oops. With 2 vCPUs, NMIs whose handlers hit an int3 while the program takes
//! page faults in a loop.
//!
//! A kernel that cannot be built: KML with 16-bit segments (ESPFIX).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use guest_tests::{workspace_root, Initramfs, TempDir, Vm};

#[path = "kml/common.rs"]
mod common;
use common::{assert_no_kernel_errors, nmi_counts, relinked_musl, run_on, GENERAL_KML as PROFILE};

/// The attacks, each followed by its CPL 3 control where one tells something, then the
/// faults (which on a kernel without the fixes end the run).
const SCRIPT: &str = "B=/bin/busybox; T=/trusted/kml6test; U=/kml6test
echo hardlinks=$(cat /proc/sys/fs/protected_hardlinks) symlinks=$(cat /proc/sys/fs/protected_symlinks)
$U traceme $T
$U nnp $T
$U sharefs $T
$U userns $T
$U dumpable $T prctl
echo 1 > /proc/sys/fs/suid_dumpable; $U dumpable $T setuid; echo 0 > /proc/sys/fs/suid_dumpable
$U dumpable $U prctl
$U perf $T
$U perf $U
$B mkdir -m 777 /trusted/wdir; $B cp $T /trusted/wdir/; /trusted/wdir/kml6test cs
$B mkdir /trusted/odir; $B cp $T /trusted/odir/; $B chown 65534 /trusted/odir; /trusted/odir/kml6test cs
$B mkdir -p /trusted/a/b; $B cp $T /trusted/a/b/; /trusted/a/b/kml6test cs
$B mkdir -m 1777 /pub; $U link $T /pub/kml6test
/script.sh
/trusted/script.sh
$T sysctl-off $T
$T execloop $U 300
$U ints
$T ints
$T badrsp
$T badrsp-handler
$T badrsp-kernel
echo done";

/// `kml6test ints`, at CPL 3 and CPL 0 alike: the signal each `int $N` ends the program with.
const INTS: &str = "kml6: ints 0x00:11 0x02:11 0x03:5 0x04:11 0x06:11 0x07:11 0x08:11 0x0d:11 \
                    0x0e:11 0x12:11 0x14:11 0x1f:11 0x20:11 0x30:11 0x80:11 0xec:11 0xf8:11 0xff:11";

/// `SCRIPT`'s lines, in order.
const WANT: &[&str] = &[
    // lupine-init's defaults.
    "hardlinks=1 symlinks=1",
    // A tracer attached before the exec: the program runs at CPL 3 (tracer and program agree).
    "kml6: traceme tracer_cs=0x33",
    "kml6: cs=0x33",
    "kml6: traceme status=0",
    // no_new_privs, a shared fs_struct, a user namespace: CPL 3.
    "kml6: cs=0x33",
    "kml6: cs=0x33",
    "kml6: sharefs status=0",
    "kml6: cs=0x33",
    // Dumpability asked back (prctl, or setuid with fs.suid_dumpable=1): still not dumpable,
    // and neither its own user nor a user namespace's root may attach or write its memory.
    "kml6: dumpable prctl dumpable=0 nobody_attach=EPERM nobody_mem=EACCES \
     userns_attach=EPERM userns_mem=EACCES root_attach=0",
    "kml6: dumpable setuid dumpable=0 nobody_attach=EPERM nobody_mem=EACCES \
     userns_attach=EPERM userns_mem=EACCES root_attach=0",
    // (A user namespace's root may not look into its parent namespace's processes at all.)
    "kml6: dumpable prctl dumpable=1 nobody_attach=0 nobody_mem=0 userns_attach=EPERM \
     userns_mem=EACCES root_attach=0",
    // A perf event opened before the exec stops counting at it (CPL 3: counts the spin).
    "kml6: perf counted_spin=no",
    "kml6: perf counted_spin=yes",
    // A directory others may write, or owned by another user, on the way: CPL 3; root's own
    // subdirectories: CPL 0. Nobody may hard-link root's file.
    "kml6: cs=0x33",
    "kml6: cs=0x33",
    "kml6: cs=0x10",
    "kml6: link EPERM",
    // A script outside /trusted runs its /trusted interpreter at CPL 3; one inside, at CPL 0.
    "kml6: cs=0x33",
    "kml6: cs=0x10",
    // kernel.kml=0 leaves running programs and their forks at CPL 0; their execs leave it.
    "kml6: sysctl-off self=0x10 fork=0x10",
    "kml6: cs=0x33",
    "kml6: sysctl-off status=0",
    // Leaving kernel mode at exec, next to a CPU hog: no per-CPU GS base left behind.
    "kml6: execloop n=300 gs_leaks=0 failed=0",
    // "int $N" for exceptions with and without an error code, NMI, #DF, #MC, a vector with no
    // gate (0x14), device and IPI vectors, 0x80, spurious: where CPL 3 gets #GP (SIGSEGV), so
    // does CPL 0; int3 and into, open to CPL 3, give SIGTRAP and SIGSEGV at both.
    INTS,
    INTS,
    // A stack pointer that is not a user address: SIGSEGV at the next tick; time goes on.
    "kml6: badrsp signal=11 sleep_1s=ok",
    "kml6: badrsp-handler signal=11 sleep_1s=ok",
    "kml6: badrsp-kernel signal=11 sleep_1s=ok",
    "done",
];

/// `tests/kml/kml6test.c`, relinked, built in `tmp`.
fn kml6test(tmp: &TempDir) -> Vec<u8> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kml/kml6test.c");
    relinked_musl(&src, &tmp.join("kml6test"))
}

fn security(smp: u32, cpu: &str, cmdline: &str) {
    let tmp = TempDir::new(&format!("kml-security-smp{smp}-{cpu}")).unwrap();
    let bin = kml6test(&tmp);
    let script = "#!/trusted/kml6test cs\n";
    let initrd = Initramfs::sh(&["-c", SCRIPT])
        .unwrap()
        .file("/trusted/kml6test", 0o755, &bin)
        .file("/kml6test", 0o755, &bin)
        .file("/trusted/script.sh", 0o755, script)
        .file("/script.sh", 0o755, script)
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let out = run_on(PROFILE, &initrd, smp, cpu, &format!("kml=on {cmdline}"));
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("kml6: ") || l.starts_with("hardlinks=") || *l == "done")
        .collect();
    for line in &lines {
        println!("security smp={smp} cpu={cpu}: {line}");
    }
    assert_eq!(lines, WANT, "{out}");
    // Each refusal says why in the kernel log.
    for why in [
        "runs at CPL 3: traced",
        "runs at CPL 3: no_new_privs",
        "runs at CPL 3: fs_struct shared with another process",
        "runs at CPL 3: in a user namespace",
        "runs at CPL 3: interpreter of a script that does not qualify",
    ] {
        assert!(out.console.contains(why), "no {why:?} notice\n{out}");
    }
    out.assert_exit_status(0);
}

#[test]
fn ways_in_and_faults_smp1_qemu64_preempt_full() {
    security(1, "qemu64", "preempt=full");
}

#[test]
fn ways_in_and_faults_smp2_max() {
    security(2, "max", "");
}

/// An NMI that interrupts the frame-moving prologue of a kernel-mode process's page fault, and
/// whose handler then hits an int3 (a kprobe on `show_regs`, which every NMI backtrace calls),
/// which enters on the same KML IST stack: its frame must not land on the one being moved. The
/// program faults in a page on CPU 1 as fast as it can for 20 s while CPU 0 asks for NMI
/// backtraces without pause (thousands: sysrq prints them all on the console, where those of
/// the two CPUs interleave, so call traces are not counted); no warning or oops.
#[test]
fn nmi_and_int3_in_the_prologue_smp2_max() {
    const SCRIPT: &str = "B=/bin/busybox; T=/sys/kernel/tracing
$B mount -t tracefs none $T
echo 0 > /proc/sys/debug/kprobes-optimization
echo 'p:kml/nmi show_regs' > $T/kprobe_events; echo 1 > $T/events/kml/nmi/enable
$B grep NMI: /proc/interrupts
/trusted/kml6test faultloop 20000 > /tmp/faultloop &
while kill -0 $! 2>/dev/null; do echo l > /proc/sysrq-trigger; done
wait
$B sleep 1 # the last backtraces reach the console first
cat /tmp/faultloop
$B grep NMI: /proc/interrupts
echo kprobe $(cat $T/kprobe_profile)
echo done";
    let tmp = TempDir::new("kml-nmi-prologue").unwrap();
    let bin = kml6test(&tmp);
    let initrd = Initramfs::sh(&["-c", SCRIPT])
        .unwrap()
        .file("/trusted/kml6test", 0o755, &bin)
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let out = Vm::lupine_on(PROFILE, &initrd)
        .unwrap()
        .smp(2)
        .cpu("max")
        .append("kml=on")
        .timeout(Duration::from_secs(240))
        .run()
        .unwrap();
    assert_no_kernel_errors(&out);
    let faults = out.lines_starting("kml6: faultloop done");
    assert_eq!(faults.len(), 1, "{out}");
    let nmis = nmi_counts(&out);
    assert_eq!(nmis.len(), 2, "{out}");
    let hits = out.lines_starting("kprobe nmi ");
    println!(
        "{} NMIs; {}; {}",
        nmis[1] - nmis[0],
        faults[0],
        hits.join("")
    );
    assert!(nmis[1] >= nmis[0] + 1000, "{nmis:?}\n{out}");
    let hits: u64 = hits[0].split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(hits >= 1000, "{out}");
    assert!(out.has_line("done"), "{out}");
    out.assert_exit_status(0);
}

/// KML and 16-bit segments (MODIFY_LDT_SYSCALL, X86_16BIT: ESPFIX64) exclude each other: a
/// fault of ESPFIX's iretq would enter on the KML IST stack instead of as the double fault
/// that repairs it. build.sh refuses the profile at its configuration check (Kconfig leaves out
/// an option whose dependencies are unmet).
#[test]
fn kml_excludes_espfix() {
    let tmp = TempDir::new("kml-espfix").unwrap();
    let out = Command::new(workspace_root().join("kernel-patches/build.sh"))
        .arg("lupine-base+kml+x86-16bit")
        .arg(tmp.join("kernel"))
        .output()
        .expect("build.sh runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "built:\n{stderr}");
    assert!(
        stderr.contains("configs/features/kml.config: CONFIG_KML=y (got: absent)"),
        "{stderr}"
    );
}

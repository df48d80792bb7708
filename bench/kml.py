#!/usr/bin/env python3
"""bench/kml.py: what Kernel Mode Linux saves per system call, as one table, one guest boot a row.

bench/kml_syscalls.c (musl-gcc -static) counts TSC ticks per call for N calls of getppid
(lmbench's `lat_syscall null`), a one-byte read from /dev/zero and a one-byte write to
/dev/null. It runs as the app of lupine-init in an initramfs, seven ways:
- relinked (lupine-relink), under /trusted, on lupine-base+kml booted with kml=on: CPL 0,
  every rewritten site calls the KML entry;
- the same with pthread_cancel linked (built with -DCANCEL_POINTS), so that musl makes read and
  write through its cancellation point, which lupine-relink moves whole;
- the original program under /trusted: CPL 0 with raw `syscall` instructions, which return
  without iretq in the common case;
- the same relinked file outside /trusted, same kernel: CPL 3, the trampolines' real-syscall
  path;
- the original program, same kernel: plain `syscall`;
- the original program, same kernel booted without kml=on: what the +kml configuration costs
  apart from KML being on (the KML IST stack for every vector);
- the original program on lupine-base (the same configuration without KML; the +kml feature
  also turns SMP on, which the entry needs).
Each row is the median of RUNS boots; ratios are to the last row. Ticks, not nanoseconds:
rdtsc reads the same clock at either privilege level, with no vDSO involved.

Under QEMU TCG (this machine has no usable KVM) `syscall`/`sysretq` and `call`/`ret` are both
emulated instructions with no privilege-switch cost of their own, so the ratio here says that
the KML path adds nothing, not what it saves on hardware (the paper: 40% less null-syscall
latency on KVM).

usage: [LUPINE_ACCEL=kvm] bench/kml.py [RUNS] [CALLS]   (defaults 5 and 200000; TCG)
"""
import os, re, shutil, statistics, subprocess, sys, tempfile

import lib
from lib import HERE, sh

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
CALLS = int(sys.argv[2]) if len(sys.argv) > 2 else 200000
ACCEL = lib.accel("bench/kml")
CMDLINE = "console=ttyS0 quiet panic=-1 reboot=t rdinit=/lupine-init"
# (label, kernel profile, extra command line, program path in the guest)
ROWS = [
    ("relinked, /trusted, KML on (CPL 0, call entry)", "lupine-base+kml", "kml=on",
     "/trusted/kml_syscalls"),
    ("relinked, pthread_cancel linked, /trusted (CPL 0; read and write through the moved "
     "cancellation point)", "lupine-base+kml", "kml=on", "/trusted/kml_syscalls_cp"),
    ("original, /trusted, KML on (CPL 0, raw syscall)", "lupine-base+kml", "kml=on",
     "/trusted/original_kml_syscalls"),
    ("relinked, outside /trusted (CPL 3, trampoline's syscall)", "lupine-base+kml", "kml=on",
     "/relinked/kml_syscalls"),
    ("original, KML kernel (CPL 3, syscall)", "lupine-base+kml", "kml=on",
     "/original/kml_syscalls"),
    ("original, KML kernel booted without kml=on", "lupine-base+kml", "",
     "/original/kml_syscalls"),
    ("original, lupine-base (no KML)", "lupine-base", "", "/original/kml_syscalls"),
]
LINE = re.compile(r"kml_syscalls: cs=(0x[0-9a-f]+) null=([\d.]+) read=([\d.]+) write=([\d.]+)")


def initramfs(work):
    """lupine-init, the program (original and relinked) at the three paths, and a manifest
    per path: /etc/lupine-N.json, chosen with lupine.manifest= on the command line."""
    root = lib.initramfs_root(work, ("trusted", "relinked", "original"))
    relinker = lib.cargo_release("lupine-relink")
    original = os.path.join(root, "original/kml_syscalls")
    sh("musl-gcc", "-static", "-O2", "-o", original, os.path.join(HERE, "kml_syscalls.c"))
    relinked = os.path.join(root, "relinked/kml_syscalls")
    sh(relinker, original, "-o", relinked, stdout=subprocess.DEVNULL)
    shutil.copy(relinked, os.path.join(root, "trusted/kml_syscalls"))
    shutil.copy(original, os.path.join(root, "trusted/original_kml_syscalls"))
    # With pthread_cancel linked, musl makes read and write through __syscall_cp_asm.
    cp = os.path.join(work, "kml_syscalls_cp")
    sh("musl-gcc", "-static", "-O2", "-DCANCEL_POINTS", "-pthread", "-o", cp,
       os.path.join(HERE, "kml_syscalls.c"))
    sh(relinker, cp, "-o", os.path.join(root, "trusted/kml_syscalls_cp"),
       stdout=subprocess.DEVNULL)
    for i, (_, _, _, path) in enumerate(ROWS):
        with open(os.path.join(root, f"etc/lupine-{i}.json"), "w") as f:
            f.write('{"version": 1, "app": {"path": "%s", "args": ["%d"]}}' % (path, CALLS))
    return lib.pack_initramfs(root, os.path.join(work, "initramfs.cpio"))


def boot(profile, kernel, initrd, row, extra):
    cmdline = f"{CMDLINE} lupine.manifest=/etc/lupine-{row}.json {extra}".strip()
    cmd = lib.qemu(profile, kernel, 256, "stdio", cmdline, ACCEL) + ["-initrd", initrd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout
    m = LINE.search(out)
    if not m or "lupine: exit status 0" not in out:
        sys.exit(f"bench/kml: row {row} gave no result:\n{out}")
    return m.group(1), [float(x) for x in m.groups()[1:]]


def main():
    work = tempfile.mkdtemp(prefix="lupine-bench-kml-")
    try:
        initrd = initramfs(work)
        results = []
        for i, (label, profile, extra, _) in enumerate(ROWS):
            kernel = os.path.join(lib.kernel_dir(profile), "bzImage")
            runs = [boot(profile, kernel, initrd, i, extra) for _ in range(RUNS)]
            cs = {c for c, _ in runs}
            if len(cs) != 1:
                sys.exit(f"bench/kml: {label}: CS changed between boots: {cs}")
            med = [statistics.median(r[1][k] for r in runs) for k in range(3)]
            results.append((label, cs.pop(), med))
    finally:
        shutil.rmtree(work)

    if results[0][1] != "0x10":
        sys.exit(f"bench/kml: the /trusted program ran with CS {results[0][1]}, not at CPL 0")
    base = results[-1][2]
    where = "QEMU TCG on this machine (not KVM)" if ACCEL == "tcg" else "KVM"
    print(f"bench/kml: {where}, TSC ticks per call, median of {RUNS} "
          f"boots of {CALLS:,} calls each; ratios to the last row")
    print("| program | CS | null (getppid) | read 1 byte | write 1 byte |")
    print("|---|---|---|---|---|")
    for label, cs, med in results:
        cells = " | ".join(f"{v:.0f} ({v / b:.2f})" for v, b in zip(med, base))
        print(f"| {label} | {cs} | {cells} |")


if __name__ == "__main__":
    main()

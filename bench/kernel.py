#!/usr/bin/env python3
"""bench/kernel.py: image size, boot time and memory footprint per kernel profile, as ratios to
the `microvm` baseline (Firecracker's 6.1 guest config), measured in one run.

Every VM boots the same initramfs: lupine-init, a static hello-world (relinker/tests/corpus/
hello.c, musl-gcc -static) and a manifest with a boot marker (byte 123 to I/O port 0x402,
recorded by QEMU's debugcon). Under QEMU TCG on this machine (not KVM: only the ratios carry
over):
- image size: vmlinux and bzImage bytes (build.sh's manifest.json);
- boot time: from starting QEMU to the boot marker appearing in the debugcon file (written by
  lupine-init just before it execs the app), median of RUNS boots;
- memory: the least `-m` (MiB) with which the profile boots and the app prints its greeting,
  found by bisection.
Lupine profiles boot on `-M microvm,acpi=off` (virtio-mmio devices on the command line);
microvm's config finds devices through ACPI, so it boots on `-M microvm` with `pci=off`. Every
profile gets `tsc_early_khz=2000000` (without it microvm's TSC calibration can hang under TCG).

usage: [LUPINE_ACCEL=kvm] bench/kernel.py [RUNS]   (default 10; TCG)
"""
import json, os, shutil, statistics, subprocess, sys, tempfile, time

import lib
from lib import TOP, sh

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
ACCEL = lib.accel("bench/kernel")
PROFILES = ["microvm", "lupine-base", "lupine-general"]
MARKER = 123
CMDLINE = "console=ttyS0 quiet panic=-1 reboot=t tsc_early_khz=2000000 rdinit=/lupine-init"


def initramfs(work):
    root = lib.initramfs_root(work, ("bin",))
    sh("musl-gcc", "-static", "-O2", "-o", os.path.join(root, "bin/hello"),
       os.path.join(TOP, "relinker/tests/corpus/hello.c"))
    with open(os.path.join(root, "etc/lupine.json"), "w") as f:
        json.dump({"version": 1, "app": {"path": "/bin/hello"},
                   "boot_marker": {"ioport": 0x402, "value": MARKER}}, f)
    return lib.pack_initramfs(root, os.path.join(work, "initramfs.cpio"))


def qemu(profile, kernel, initrd, mem, debugcon):
    return lib.qemu(profile, kernel, mem, "stdio", CMDLINE, ACCEL) + [
        "-initrd", initrd, "-debugcon", "file:" + debugcon,
        "-global", "isa-debugcon.iobase=0x402"]


def boot(profile, kernel, initrd, mem, work):
    """One boot: (seconds to the boot marker or None, whether the app greeted)."""
    debugcon = os.path.join(work, "debugcon")
    open(debugcon, "wb").close()
    start = time.monotonic()
    proc = subprocess.Popen(qemu(profile, kernel, initrd, mem, debugcon),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    marked = None
    while proc.poll() is None and time.monotonic() - start < 60:
        if marked is None and os.path.getsize(debugcon) > 0:
            marked = time.monotonic() - start
        time.sleep(0.0005)
    if proc.poll() is None:
        proc.kill()
    out = proc.communicate()[0].decode(errors="replace")
    if marked is None and os.path.getsize(debugcon) > 0:
        marked = time.monotonic() - start
    with open(debugcon, "rb") as f:
        ok_marker = f.read() == bytes([MARKER])
    return (marked if ok_marker else None), "hello, world" in out and "exit status 0" in out


def least_memory(profile, kernel, initrd, work):
    lo, hi = 8, 256  # lo fails (assumed), hi must work
    if not boot(profile, kernel, initrd, hi, work)[1]:
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if boot(profile, kernel, initrd, mid, work)[1]:
            hi = mid
        else:
            lo = mid
    return hi


def main():
    work = tempfile.mkdtemp(prefix="lupine-bench-kernel-")
    try:
        initrd = initramfs(work)
        rows = {}
        for p in PROFILES:
            out = lib.kernel_dir(p)
            with open(os.path.join(out, "manifest.json")) as f:
                m = json.load(f)
            kernel = os.path.join(out, "bzImage")
            times = []
            for _ in range(RUNS):
                t, ok = boot(p, kernel, initrd, 256, work)
                if t is None or not ok:
                    sys.exit(f"bench/kernel: {p} did not boot to the app")
                times.append(t)
            rows[p] = (m["vmlinux_bytes"], m["bzImage_bytes"], statistics.median(times),
                       least_memory(p, kernel, initrd, work))
    finally:
        shutil.rmtree(work)

    base = rows["microvm"]
    where = "QEMU TCG on this machine (not KVM: compare ratios)" if ACCEL == "tcg" else "KVM"
    print(f"bench/kernel: {where}, "
          f"boot = median of {RUNS} boots to lupine-init's boot marker")
    print("| profile | vmlinux | bzImage | boot | least -m |")
    print("|---|---|---|---|---|")
    for p, (vml, bz, t, mem) in rows.items():
        memtxt = f"{mem} MiB ({mem / base[3]:.2f})" if mem and base[3] else "n/a"
        print(f"| {p} | {vml:,} ({vml / base[0]:.2f}) | {bz:,} ({bz / base[1]:.2f}) | "
              f"{t * 1000:.0f} ms ({t / base[2]:.2f}) | {memtxt} |")


if __name__ == "__main__":
    main()

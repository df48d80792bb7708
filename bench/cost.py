#!/usr/bin/env python3
"""bench/cost.py: exact cost figures, counted, not timed (a first part of the deterministic
measurement: boot only).

QEMU's TCG runs the guest with `-icount shift=0,sleep=off` (virtual time follows the
instruction count, so a run is reproducible) and loads bench/cost/lupine_cost.c, a TCG plugin
that counts executed instructions by where they are (the upper half of the address space:
kernel text; the lower half: everything else, which during a boot is the kernel's decompressor
and early code at physical addresses, and then the programs) and privileged events found in
the instructions' bytes (syscall, sysretq, iretq, swapgs, mov to CR3, wrmsr, verw, lfence).
The plugin is built against QEMU 7.2's plugin header from Debian's source package
(`apt-get source --download-only qemu`), cached in ~/.cache/lupine/plugins by a hash of its
source and the header.

Rows: for each profile, a boot from reset (the bzImage, its decompressor first) to the end of
a guest whose app (a static `int main(){return 0;}`) exits at once: lupine-init's power-off;
split at the marker instruction lupine-init executes just before it execs the app (reset to
the marker: the kernel's boot and lupine-init's set-up; the marker to the end: the app's exec,
run and exit, and the power-off). Each is run twice; the residue column is the largest
difference between the two runs, which icount leaves (a few thousand of some hundred
million).

Per-call rows (bench/cost/calls.c, musl-gcc -static: N getppid(), N one-byte reads of
/dev/zero, N one-byte writes to /dev/null, each loop between two markers) on lupine-base+kml
booted with kml=on: the original program and its relinked copy outside /trusted (CPL 3: a
`syscall`, and the trampoline's real `syscall`), the relinked copy under /trusted (CPL 0, the
KML call entry) and the original under /trusted (CPL 0, raw `syscall`). Instructions in the
kernel and in the program, and privileged events, per call (N = 10,000).

usage: bench/cost.py [PROFILE...]   (default: lupine-base lupine-general microvm)
"""
import glob, hashlib, json, os, shutil, subprocess, sys, tempfile

import lib
from lib import HERE, TOP, sh

CACHE = os.environ.get("LUPINE_CACHE", os.path.expanduser("~/.cache/lupine"))
PROFILES = sys.argv[1:] or ["lupine-base", "lupine-general", "microvm"]
KEYS = ["kernel", "program", "syscall", "sysretq", "iretq", "swapgs", "mov_cr3", "wrmsr",
        "verw", "lfence"]


def plugin():
    """The built plugin, from QEMU 7.2's plugin header (Debian's source package)."""
    src = os.path.join(HERE, "cost", "lupine_cost.c")
    apt = os.path.join(CACHE, "src", "apt")
    os.makedirs(apt, exist_ok=True)
    if not glob.glob(os.path.join(apt, "qemu_*.orig.tar.xz")):
        sh("apt-get", "source", "-qq", "--download-only", "qemu", cwd=apt,
           stdout=subprocess.DEVNULL)
    tarball = sorted(glob.glob(os.path.join(apt, "qemu_*.orig.tar.xz")))[-1]
    inc = os.path.join(CACHE, "plugins", "include-" + os.path.basename(tarball))
    if not os.path.exists(os.path.join(inc, "qemu-plugin.h")):
        tmp = tempfile.mkdtemp(dir=os.path.join(CACHE, "plugins") if os.path.isdir(
            os.path.join(CACHE, "plugins")) else None)
        sh("tar", "-xJf", tarball, "-C", tmp, "--wildcards", "*/include/qemu/qemu-plugin.h")
        os.makedirs(inc, exist_ok=True)
        shutil.copy(glob.glob(os.path.join(tmp, "*/include/qemu/qemu-plugin.h"))[0], inc)
        shutil.rmtree(tmp)
    h = hashlib.sha256()
    for p in (src, os.path.join(inc, "qemu-plugin.h")):
        with open(p, "rb") as f:
            h.update(f.read())
    out = os.path.join(CACHE, "plugins", f"lupine_cost-{h.hexdigest()[:16]}.so")
    if not os.path.exists(out):
        sh("gcc", "-O2", "-shared", "-fPIC", "-Wall", "-Wno-unused-parameter", "-I", inc,
           "-o", out + ".tmp", src)
        os.rename(out + ".tmp", out)
    return out


def boot_counts(so, profile, initrd, work, n, markers=1, extra=""):
    """The plugin's lines of one boot of `profile` to the app's exit: at each of `markers`
    markers (lupine-init's first), and at the end."""
    out = os.path.join(work, f"{profile}-{n}.json")
    # No tsc_early_khz (bench/apps.py's, for a loaded host): under icount the calibration is
    # deterministic, and a claimed 2 GHz makes the delay loops spin 200M instructions longer.
    cmdline = "console=ttyS0 quiet panic=-1 reboot=t rdinit=/lupine-init" + extra
    cmd = lib.qemu(profile, os.path.join(lib.kernel_dir(profile), "bzImage"), 256, "stdio",
                   cmdline, "tcg")
    cmd[cmd.index("-accel") + 2:cmd.index("-accel") + 2] = ["-icount", "shift=0,sleep=off"]
    run = subprocess.run(cmd + ["-initrd", initrd, "-plugin", f"{so},out={out}"],
                         capture_output=True, text=True, timeout=900)
    if "lupine: exit status 0" not in run.stdout:
        sys.exit(f"bench/cost: {profile} did not run its app:\n{run.stdout[-2000:]}")
    with open(out) as f:
        lines = [json.loads(l) for l in f]
    want = [f"marker {k}" for k in range(1, markers + 1)] + ["exit"]
    if [l["at"] for l in lines] != want:
        sys.exit(f"bench/cost: {profile}: expected {want}: {lines}\n{run.stdout[-2000:]}")
    return lines


def initrd(work, files, app):
    """An initramfs in `work`: lupine-init, a console, `files` ({path in the guest: host
    file}) and a manifest that runs `app` (its path and args)."""
    root = lib.initramfs_root(work, ["trusted"])
    for name, src in files.items():
        shutil.copy(src, os.path.join(root, name))
    with open(os.path.join(root, "etc", "lupine.json"), "w") as f:
        json.dump({"version": 1, "app": app}, f)
    os.mknod(os.path.join(root, "dev", "console"), 0o600 | 0o020000, os.makedev(5, 1))
    return lib.pack_initramfs(root, os.path.join(work, "initrd.cpio"))


CALLS = 10000
VARIANTS = [("original, CPL 3", "/calls"), ("relinked, CPL 3 (trampoline's syscall)",
            "/calls-relinked"), ("relinked, /trusted, kml=on (CPL 0, call entry)",
            "/trusted/calls"), ("original, /trusted, kml=on (CPL 0, raw syscall)",
            "/trusted/calls-orig")]


def call_rows(so, work):
    """Per-call counts of bench/cost/calls.c in each of VARIANTS on lupine-base+kml."""
    exe = os.path.join(work, "calls")
    sh("musl-gcc", "-static", "-O2", "-o", exe, os.path.join(HERE, "cost", "calls.c"))
    relinker = lib.cargo_release("lupine-relink")
    sh(relinker, exe, "-o", exe + "-relinked", stderr=subprocess.DEVNULL)
    files = {"calls": exe, "calls-relinked": exe + "-relinked",
             "trusted/calls": exe + "-relinked", "trusted/calls-orig": exe}
    rows = []
    for n, (label, path) in enumerate(VARIANTS):
        w = os.path.join(work, f"calls-{n}")
        image = initrd(w, files, {"path": path, "args": [str(CALLS)]})
        lines = boot_counts(so, "lupine-base+kml", image, w, 1, markers=5, extra=" kml=on")
        for k, call in enumerate(("getppid", "read 1 byte", "write 1 byte")):
            d = {key: (lines[k + 2][key] - lines[k + 1][key]) / CALLS for key in KEYS}
            ev = " / ".join(f"{d[key]:.2f}" for key in ("syscall", "sysretq", "iretq", "swapgs"))
            rows.append(f"| {call} | {label} | {d['kernel']:.1f} | {d['program']:.1f} | {ev} |")
    return rows


def main():
    so = plugin()
    with tempfile.TemporaryDirectory(prefix="lupine-bench-cost-") as work:
        with open(os.path.join(work, "exit.c"), "w") as f:
            f.write("int main(void) { return 0; }\n")
        sh("musl-gcc", "-static", "-O2", "-o", os.path.join(work, "exit"),
           os.path.join(work, "exit.c"))
        boot_image = initrd(os.path.join(work, "boot"), {"exit": os.path.join(work, "exit")},
                            {"path": "/exit"})
        print("| boot (bzImage, -m 256, -smp 1) | interval | instructions | kernel "
              "(upper half) | lower half | syscall / sysretq / iretq / swapgs / CR3 / wrmsr | "
              "residue (2 runs) |")
        print("|---|---|---|---|---|---|---|")
        for profile in PROFILES:
            a, b = (boot_counts(so, profile, boot_image, work, n) for n in (1, 2))
            for label, lo, hi in (("reset to the marker", None, 0),
                                  ("marker to the end", 0, 1), ("reset to the end", None, 1)):
                d = {k: a[hi][k] - (a[lo][k] if lo is not None else 0) for k in KEYS}
                e = {k: b[hi][k] - (b[lo][k] if lo is not None else 0) for k in KEYS}
                residue = max(abs(d[k] - e[k]) for k in KEYS)
                events = " / ".join(f"{d[k]:,}" for k in
                                    ("syscall", "sysretq", "iretq", "swapgs", "mov_cr3", "wrmsr"))
                print(f"| {profile} | {label} | {d['kernel'] + d['program']:,} | "
                      f"{d['kernel']:,} | {d['program']:,} | {events} | {residue:,} |")
        print(f"\n| per call ({CALLS:,} calls, lupine-base+kml) | program | kernel instructions "
              "| program instructions | syscall / sysretq / iretq / swapgs |")
        print("|---|---|---|---|---|")
        for row in call_rows(so, work):
            print(row)


if __name__ == "__main__":
    main()

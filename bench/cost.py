#!/usr/bin/env python3
"""bench/cost.py: exact cost figures, counted, not timed.

QEMU's TCG runs the guest with `-smp 1 -icount shift=0,sleep=off` (virtual time follows the
instruction count, so a run is reproducible) and loads bench/cost/lupine_cost.c, a TCG plugin
that counts executed instructions by where they are (the upper half of the address space:
kernel text; the lower half: everything else, which during a boot is the kernel's decompressor
and early code at physical addresses, and then the programs), privileged events found in the
instructions' bytes (syscall, sysretq, iretq, swapgs, mov to CR3, wrmsr, verw, lfence), and,
given the kernel's text symbols from its vmlinux, the instructions executed in each kernel
function and the interrupts and exceptions delivered (executions of the asm_* entry stubs). It
writes the counts at each execution of a marker instruction (`nopl 0x4e50554c(%rax,%rax,1)`:
lupine-init executes it just before it execs the app, the benchmark programs around their
loops) and at the end. The plugin is built against QEMU 7.2's plugin header from Debian's
source package (`apt-get source --download-only qemu`), cached in ~/.cache/lupine/plugins by a
hash of its source and the header. A bzImage with KASLR (microvm's config) puts the kernel
at a random address, where vmlinux's symbols do not apply: its rows have no interrupt and
exception counts (`nokaslr` is no way out: the kernel passes that word on to lupine-init,
which takes it for the app).

Sections (all by default):
- boot: for each profile, a boot of bench/cost/hello.c (static, musl) from reset to the
  power-off, from the bzImage (the kernel's decompressor first) and from the uncompressed
  vmlinux through its PVH entry (as Firecracker boots it, no decompressor), split at
  lupine-init's marker (reset to there: the kernel's boot and lupine-init's set-up) and at the
  app's own marker, its first act in main (lupine-init's marker to there: the exec and the C
  library's start-up). Each boot runs twice; the residue is the largest difference between
  the two (icount leaves a few thousand of some hundred million). With --symbols, the kernel
  functions each vmlinux boot spends the most instructions in.
- calls: bench/cost/calls.c (static, musl: 10,000 getppid(), one-byte reads of /dev/zero,
  one-byte writes to /dev/null, each loop between markers) on lupine-base (the original), and
  on lupine-base+kml booted with kml=on: the original and its relinked copy outside /trusted
  (CPL 3: a `syscall`, the trampoline's real `syscall`), the relinked copy under /trusted (CPL
  0, the KML call entry) and the original under /trusted (CPL 0, raw `syscall`). Per call:
  instructions in the kernel and in the program, privileged events, and the modelled cycles
  (MODEL below). With --symbols, the kernel functions each getppid() runs through.
- requests: per request of redis and nginx on each profile, KML on and off
  (bench/cost_requests.py).

usage: bench/cost.py [--symbols] [boot] [calls] [requests]
       bench/cost.py budget   (lupine-base's boot as one JSON line: the test suite's guard)
"""
import glob, hashlib, json, os, shutil, subprocess, sys, tempfile

import lib
from lib import HERE, sh

CACHE = os.environ.get("LUPINE_CACHE", os.path.expanduser("~/.cache/lupine"))
KEYS = ["kernel", "program", "syscall", "sysretq", "iretq", "swapgs", "mov_cr3", "wrmsr",
        "verw", "lfence", "interrupts", "exceptions"]
BOOT_PROFILES = ["microvm", "lupine-base", "lupine-general", "lupine-redis", "lupine-redis+kml"]

# The modelled hardware column: cycles on an Intel Skylake(-SP) core, estimated from the counts
# as every instruction at CPI plus, for the privileged events with a published cost, that cost
# in place of the event's instruction(s). A model, not a measurement: each constant comes from
# a public measurement named beside it, on Skylake parts, and the model leaves out caches, TLBs
# and branch prediction. Events with no published cost of their own (swapgs, wrmsr, verw) count
# as ordinary instructions; under TCG the guest's CPU model has no MDS, so the kernel executes
# no verw anyway.
MODEL = {
    # Cycles per instruction: B. Gregg, "Linux Performance 2018" (slides, 2018): a MySQL
    # server on an EC2 c5.9xlarge (Skylake-SP), whole system, IPC 1.04.
    "cpi": 1.0,
    # A syscall and its return: J. Stecklina, "1001 ways of implementing a system call"
    # (x86.lol, 2019): syscall + sysretq round trip about 70-76 cycles on a Xeon E3-1270 v5
    # (Skylake). Charged per syscall instruction (the sysretq, or a CPL-0 return, free).
    "syscall": 76,
    "sysretq": 0,
    # An interrupt or exception and its iretq: same source, int + iretq about 614 cycles.
    # Charged per iretq.
    "iretq": 614,
    # A CR3 write with PCID: K. Garloff (T-Systems), "KPTI/IBRS/Retpoline Microbenchmarks"
    # (2018), Xeon Gold 6161 (Skylake-SP): getppid() 120 cycles without PTI, 520 with PTI and
    # PCID, two CR3 writes a call: at most 200 each.
    "mov_cr3": 200,
    # lfence: P. Cordes, Stack Overflow answer to question 51986046 (2018), Skylake: about
    # 9.3 cycles besides the front end's refill.
    "lfence": 10,
}


def modelled_cycles(d):
    """MODEL's estimate of the cycles of counts `d`."""
    events = [k for k in MODEL if k != "cpi"]
    plain = d["kernel"] + d["program"] - sum(d[k] for k in events)
    return plain * MODEL["cpi"] + sum(d[k] * MODEL[k] for k in events)


def plugin():
    """The built plugin, from QEMU 7.2's plugin header (Debian's source package)."""
    src = os.path.join(HERE, "cost", "lupine_cost.c")
    apt = os.path.join(CACHE, "src", "apt")
    plugins = os.path.join(CACHE, "plugins")
    os.makedirs(apt, exist_ok=True)
    os.makedirs(plugins, exist_ok=True)
    if not glob.glob(os.path.join(apt, "qemu_*.orig.tar.xz")):
        sh("apt-get", "source", "-qq", "--download-only", "qemu", cwd=apt,
           stdout=subprocess.DEVNULL)
    tarball = sorted(glob.glob(os.path.join(apt, "qemu_*.orig.tar.xz")))[-1]
    inc = os.path.join(plugins, "include-" + os.path.basename(tarball))
    if not os.path.exists(os.path.join(inc, "qemu-plugin.h")):
        tmp = tempfile.mkdtemp(dir=plugins)
        sh("tar", "-xJf", tarball, "-C", tmp, "--wildcards", "*/include/qemu/qemu-plugin.h")
        os.makedirs(inc, exist_ok=True)
        shutil.copy(glob.glob(os.path.join(tmp, "*/include/qemu/qemu-plugin.h"))[0], inc)
        shutil.rmtree(tmp)
    h = hashlib.sha256()
    for p in (src, os.path.join(inc, "qemu-plugin.h")):
        with open(p, "rb") as f:
            h.update(f.read())
    out = os.path.join(plugins, f"lupine_cost-{h.hexdigest()[:16]}.so")
    if not os.path.exists(out):
        sh("gcc", "-O2", "-shared", "-fPIC", "-Wall", "-Wno-unused-parameter", "-I", inc,
           "-o", out + ".tmp", src)
        os.rename(out + ".tmp", out)
    return out


def symbol_file(profile, work):
    """WORK/PROFILE.syms: the kernel's code symbols from its vmlinux ("START END NAME", hex,
    sorted; each ends where the next starts, or its section does), as the plugin's syms= reads
    them. The executable sections are .text and the init code (.init.text: the boot runs
    there), among others."""
    out = os.path.join(work, profile + ".syms")
    if os.path.exists(out):
        return out
    vmlinux = os.path.join(lib.kernel_dir(profile), "vmlinux")
    sections = []
    for line in sh("readelf", "-SW", vmlinux, capture_output=True, text=True).stdout.splitlines():
        f = line.replace("[ ", "[").split()
        if len(f) > 7 and f[0].startswith("[") and "X" in f[7]:
            start = int(f[3], 16)
            sections.append((start, start + int(f[5], 16)))
    nm = sh("nm", "-n", "--defined-only", vmlinux, capture_output=True, text=True).stdout
    syms = [(int(r[0], 16), r[2]) for r in (l.split() for l in nm.splitlines())
            if len(r) == 3 and r[1] in "tTwW"]
    with open(out, "w") as f:
        for lo, hi in sections:
            inside = [sym for sym in syms if lo <= sym[0] < hi]
            for (start, name), (end, _) in zip(inside, inside[1:] + [(hi, "")]):
                if start < end:
                    f.write(f"{start:x} {end:x} {name}\n")
    return out


def boot_counts(so, profile, initrd, out, markers, extra="", image="bzImage", syms=None):
    """The plugin's lines of one boot of `profile`'s `image` (bzImage or vmlinux) with
    `initrd` to the app's exit: at each of `markers` markers, and at the end."""
    # No tsc_early_khz (bench/apps.py's, for a loaded host): under icount the calibration is
    # deterministic, and a claimed 2 GHz makes the delay loops spin 200M instructions longer.
    cmdline = "console=ttyS0 quiet panic=-1 reboot=t rdinit=/lupine-init" + extra
    cmd = lib.qemu(profile, os.path.join(lib.kernel_dir(profile), image), 256, "stdio",
                   cmdline, "tcg")
    cmd[cmd.index("-accel") + 2:cmd.index("-accel") + 2] = ["-icount", "shift=0,sleep=off"]
    arg = f"{so},out={out}" + (f",syms={syms}" if syms else "")
    run = subprocess.run(cmd + ["-initrd", initrd, "-plugin", arg], capture_output=True,
                         text=True, timeout=900)
    if "lupine: exit status 0" not in run.stdout:
        sys.exit(f"bench/cost: {profile} ({image}) did not run its app:\n{run.stdout[-2000:]}"
                 f"{run.stderr[-1000:]}")
    with open(out) as f:
        lines = [json.loads(l) for l in f]
    want = [f"marker {k}" for k in range(1, markers + 1)] + ["exit"]
    if [l["at"] for l in lines] != want:
        sys.exit(f"bench/cost: {profile}: expected {want}, got {[l['at'] for l in lines]}\n"
                 f"{run.stdout[-2000:]}")
    return lines


def between(a, b):
    """Counts of KEYS from line `a` (None: reset) to line `b`."""
    return {k: b.get(k, 0) - (a.get(k, 0) if a else 0) for k in KEYS}


def musl_static(name, work):
    """bench/cost/NAME.c built with musl-gcc -static into WORK/NAME."""
    exe = os.path.join(work, name)
    sh("musl-gcc", "-static", "-O2", "-o", exe, os.path.join(HERE, "cost", name + ".c"))
    return exe


def initrd(work, files, app):
    """WORK/initrd.cpio: lupine-init, a console, `files` ({path in the guest: host file}) and a
    manifest that runs `app` (its path and args)."""
    root = lib.initramfs_root(work, ["trusted"])
    for name, src in files.items():
        shutil.copy(src, os.path.join(root, name))
    with open(os.path.join(root, "etc", "lupine.json"), "w") as f:
        json.dump({"version": 1, "app": app}, f)
    os.mknod(os.path.join(root, "dev", "console"), 0o600 | 0o020000, os.makedev(5, 1))
    return lib.pack_initramfs(root, os.path.join(work, "initrd.cpio"))


# --- boot ------------------------------------------------------------------------------------

BOOT_INTERVALS = [("reset to lupine-init's marker", None, 0),
                  ("lupine-init's marker to the app's main", 0, 1),
                  ("the app's main to the end (exit, power-off)", 1, 2),
                  ("reset to the end", None, 2)]


def hello_initrd(work):
    """The boot rows' initramfs: hello under /trusted (so that on a +kml kernel booted with
    kml=on it runs at CPL 0)."""
    hello = musl_static("hello", work)
    return initrd(os.path.join(work, "boot"), {"trusted/hello": hello}, {"path": "/trusted/hello"})


def kaslr(profile, image):
    """Whether `profile`'s `image` boots at a random address (a bzImage with KASLR)."""
    with open(os.path.join(lib.kernel_dir(profile), ".config")) as f:
        return image == "bzImage" and "CONFIG_RANDOMIZE_BASE=y\n" in f.read()


def boot(so, profile, image, work, initrd_path, n):
    extra = " kml=on" if "+kml" in profile else ""
    out = os.path.join(work, f"boot-{profile}-{image}-{n}.json")
    syms = None if kaslr(profile, image) else symbol_file(profile, work)
    return boot_counts(so, profile, initrd_path, out, 2, extra, image, syms)


def boot_rows(so, work, symbols=False):
    image = hello_initrd(work)
    tops = []
    rows = ["| boot (-m 256, -smp 1) | kernel image | interval | instructions | kernel (upper "
            "half) | lower half | syscall / sysretq / iretq / swapgs / CR3 / wrmsr | "
            "interrupts / exceptions | residue (2 runs) |", "|---|---|---|---|---|---|---|---|---|"]
    for profile in BOOT_PROFILES:
        for kernel in ("bzImage", "vmlinux"):
            a, b = (boot(so, profile, kernel, work, image, n) for n in (1, 2))
            if symbols and kernel == "vmlinux":
                tops.append(top_functions(profile, a[-1]))
            for label, lo, hi in BOOT_INTERVALS:
                d = between(a[lo] if lo is not None else None, a[hi])
                e = between(b[lo] if lo is not None else None, b[hi])
                residue = max(abs(d[k] - e[k]) for k in KEYS)
                events = " / ".join(f"{d[k]:,}" for k in
                                    ("syscall", "sysretq", "iretq", "swapgs", "mov_cr3", "wrmsr"))
                entries = ("n/a (KASLR)" if kaslr(profile, kernel)
                           else f"{d['interrupts']:,} / {d['exceptions']:,}")
                rows.append(f"| {profile} | {kernel} | {label} | {d['kernel'] + d['program']:,} "
                            f"| {d['kernel']:,} | {d['program']:,} | {events} | {entries} | "
                            f"{residue:,} |")
    return rows + ([""] + [row for top in tops for row in top] if symbols else [])


def top_functions(profile, end, n=8):
    """The `n` kernel functions that `profile`'s boot from vmlinux spends the most
    instructions in, from the plugin's line `end`."""
    total = end["kernel"] + end["program"]
    top = sorted(end["symbols"].items(), key=lambda kv: -kv[1])[:n]
    return [f"| {profile}: top kernel functions, reset to the end ({total:,}) | instructions "
            "| share |", "|---|---|---|"] + [
        f"| `{name}` | {count:,} | {count / total:.1%} |" for name, count in top] + [""]


def budget():
    """lupine-base's boot of hello from its bzImage, reset to the end, as one JSON line."""
    so = plugin()
    with tempfile.TemporaryDirectory(prefix="lupine-bench-cost-") as work:
        lines = boot(so, "lupine-base", "bzImage", work, hello_initrd(work), 1)
        print(json.dumps(between(None, lines[-1])))


# --- calls -----------------------------------------------------------------------------------

CALLS = 10000
CALL_NAMES = ("getppid", "read 1 byte", "write 1 byte")
# (label, kernel profile, path of the program in the guest)
VARIANTS = [
    ("original, lupine-base", "lupine-base", "/calls"),
    ("original, CPL 3", "lupine-base+kml", "/calls"),
    ("relinked, CPL 3 (the trampoline's syscall)", "lupine-base+kml", "/calls-relinked"),
    ("relinked, /trusted (CPL 0, the call entry)", "lupine-base+kml", "/trusted/calls"),
    ("original, /trusted (CPL 0, raw syscall)", "lupine-base+kml", "/trusted/calls-orig"),
]


def call_counts(so, work, symbols):
    """{(call, variant label): per-call counts (and per-call "symbols" with `symbols`)}."""
    exe = musl_static("calls", work)
    sh(lib.cargo_release("lupine-relink"), exe, "-o", exe + "-relinked",
       stderr=subprocess.DEVNULL)
    files = {"calls": exe, "calls-relinked": exe + "-relinked",
             "trusted/calls": exe + "-relinked", "trusted/calls-orig": exe}
    counts = {}
    for n, (label, profile, path) in enumerate(VARIANTS):
        w = os.path.join(work, f"calls-{n}")
        image = initrd(w, files, {"path": path, "args": [str(CALLS)]})
        syms = symbol_file(profile, work) if symbols else None
        extra = " kml=on" if "+kml" in profile else ""
        lines = boot_counts(so, profile, image, os.path.join(w, "counts.json"), 5, extra,
                            syms=syms)
        for k, call in enumerate(CALL_NAMES):
            a, b = lines[k + 1], lines[k + 2]
            d = {key: v / CALLS for key, v in between(a, b).items()}
            if symbols:
                d["symbols"] = {s: (c - a["symbols"].get(s, 0)) / CALLS
                                for s, c in b["symbols"].items() if c > a["symbols"].get(s, 0)}
            counts[call, label] = d
    return counts


def call_rows(counts):
    rows = [f"| per call ({CALLS:,} calls) | program | kernel instructions | program "
            "instructions | total (x original, same kernel) | syscall / sysretq / iretq / swapgs "
            "| modelled cycles (x original) |", "|---|---|---|---|---|---|---|"]
    for call in CALL_NAMES:
        base = counts[call, VARIANTS[1][0]]
        for label, _, _ in VARIANTS:
            d = counts[call, label]
            total, base_total = d["kernel"] + d["program"], base["kernel"] + base["program"]
            ev = " / ".join(f"{d[k]:.2f}" for k in ("syscall", "sysretq", "iretq", "swapgs"))
            cycles = modelled_cycles(d)
            rows.append(f"| {call} | {label} | {d['kernel']:.1f} | {d['program']:.1f} | "
                        f"{total:.1f} ({total / base_total:.3f}) | {ev} | {cycles:.0f} "
                        f"({cycles / modelled_cycles(base):.2f}) |")
    return rows


def symbol_rows(counts, call="getppid", least=1.0):
    """The kernel functions of one `call`, instructions per call, by variant."""
    labels = [label for label, _, _ in VARIANTS]
    names = sorted({s for label in labels for s, v in counts[call, label]["symbols"].items()
                    if v >= least}, key=lambda s: -max(counts[call, l]["symbols"].get(s, 0)
                                                       for l in labels))
    rows = [f"| {call}: kernel function | " + " | ".join(labels) + " |",
            "|---|" + "---|" * len(labels)]
    for s in names:
        rows.append(f"| `{s}` | " + " | ".join(
            f"{counts[call, l]['symbols'].get(s, 0):.1f}" for l in labels) + " |")
    return rows


def main():
    args = sys.argv[1:]
    if args == ["budget"]:
        return budget()
    symbols = "--symbols" in args
    sections = [a for a in args if a != "--symbols"] or ["boot", "calls", "requests"]
    for s in sections:
        if s not in ("boot", "calls", "requests"):
            sys.exit(f"bench/cost: unknown section {s!r}: use boot, calls, requests or budget")
    so = plugin()
    with tempfile.TemporaryDirectory(prefix="lupine-bench-cost-") as work:
        if "boot" in sections:
            print("\n".join(boot_rows(so, work, symbols)) + "\n", flush=True)
        if "calls" in sections:
            counts = call_counts(so, work, symbols)
            print("\n".join(call_rows(counts)) + "\n", flush=True)
            if symbols:
                print("\n".join(symbol_rows(counts)) + "\n", flush=True)
        if "requests" in sections:
            import cost_requests
            print("\n".join(cost_requests.request_rows(so, work)), flush=True)


if __name__ == "__main__":
    main()

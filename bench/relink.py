#!/usr/bin/env python3
"""bench/relink.py: what lupine-relink costs and covers, as one table.

- The cost of a null system call (getppid() in a loop, as lmbench's `lat_syscall null`;
  bench/null_syscall.c, musl-gcc -static): the relinked copy over the original on this
  machine's kernel (no KML: the trampoline's real-syscall path; goal at most 1.03), and the
  relinked copy under the emulated KML launcher (relinker/tests/support/kmlrun.c: every call
  goes through its AT_SYSINFO stand-in, which counts it and makes the real syscall). Medians
  of RUNS runs of CALLS calls each, the variants interleaved.
- The share of syscall sites rewritten in each program of the test corpus (from the reports).
- Rewriting speed for Debian's busybox-static (/bin/busybox): input size over the median
  wall time of the release build of lupine-relink.

usage: bench/relink.py [RUNS] [CALLS]   (defaults 9 and 2000000)
"""
import json, os, shutil, statistics, subprocess, sys, time

import lib
from lib import HERE, MUSL, TOP, sh

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 9
CALLS = int(sys.argv[2]) if len(sys.argv) > 2 else 2000000
OUT = os.path.join(TOP, "target", "relink-bench")
CORPUS = os.path.join(TOP, "relinker", "tests", "corpus")
C_PROGRAMS = ["hello", "threads", "fork", "spawn", "signals", "cancel", "epoll", "sockets",
              "backtrace"]
C_KINDS = [("musl", ["musl-gcc", "-static"]), ("glibc", ["gcc", "-static"]),
           ("glibc-pie", ["gcc", "-static-pie"])]


def out(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw).stdout


def build():
    """The release relinker, kmlrun, the null-syscall program and the corpus."""
    relinker = lib.cargo_release("lupine-relink")
    os.makedirs(os.path.join(OUT, "orig"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "relinked"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "reports"), exist_ok=True)
    kmlrun = os.path.join(OUT, "kmlrun")
    sh("gcc", "-static-pie", "-nostdlib", "-ffreestanding", "-fno-stack-protector",
       "-fno-builtin", "-mgeneral-regs-only", "-O2", "-o", kmlrun,
       os.path.join(TOP, "relinker", "tests", "support", "kmlrun.c"))
    null = os.path.join(OUT, "orig", "null_syscall")
    sh("musl-gcc", "-static", "-O2", "-o", null, os.path.join(HERE, "null_syscall.c"))

    corpus = []
    for prog in C_PROGRAMS:
        for kind, cc in C_KINDS:
            name = f"{prog}-{kind}"
            dest = os.path.join(OUT, "orig", name)
            flags = ["-O2", "-pthread"]
            if prog == "backtrace":
                flags = ["-O1", "-fno-inline", "-funwind-tables", "-pthread"]
                if kind == "musl":
                    flags.append("-Wl,--eh-frame-hdr")
            extra = ["-lc"] if kind == "glibc-pie" else []
            sh(*cc, *flags, "-o", dest, os.path.join(CORPUS, prog + ".c"), *extra)
            corpus.append(name)
    for name, mode in [("regs-asm", "-static"), ("regs-asm-pie", "-static-pie")]:
        sh("gcc", mode, "-nostdlib", "-o", os.path.join(OUT, "orig", name),
           os.path.join(CORPUS, "regs.S"))
        corpus.append(name)
    rust_target = os.path.join(TOP, "target", "relink-corpus", "rust-app")
    env = dict(os.environ, RUSTFLAGS="-C target-feature=+crt-static")
    env.pop("CARGO_ENCODED_RUSTFLAGS", None)
    sh("cargo", "build", "-q", "--release", "--target", MUSL,
       "--target-dir", rust_target, cwd=os.path.join(CORPUS, "rust-app"), env=env)
    shutil.copy(os.path.join(rust_target, MUSL, "release", "corpus-rust-app"),
                os.path.join(OUT, "orig", "rust-app"))
    corpus.append("rust-app")
    shutil.copy("/bin/busybox", os.path.join(OUT, "orig", "busybox"))
    corpus.append("busybox")
    return relinker, kmlrun, null, corpus


def relink(relinker, name):
    src = os.path.join(OUT, "orig", name)
    dst = os.path.join(OUT, "relinked", name)
    rep = os.path.join(OUT, "reports", name + ".json")
    sh(relinker, src, "-o", dst, "--report", rep, stderr=subprocess.DEVNULL)
    with open(rep) as f:
        return dst, json.load(f)


def null_cost(cmd):
    return float(out(*cmd, str(CALLS)).strip())


def main():
    relinker, kmlrun, null, corpus = build()
    null_relinked, null_report = relink(relinker, "null_syscall")
    getppid = [s for s in null_report["sites"] if s.get("syscall_number") == 110]
    if not getppid or any(s["status"] != "rewritten" for s in getppid):
        sys.exit("bench/relink: getppid's site was not rewritten: %s" % getppid)

    variants = {
        "original": [null],
        "relinked": [null_relinked],
        "relinked, kmlrun": [kmlrun, null_relinked],
        "original, kmlrun": [kmlrun, null],
    }
    times = {k: [] for k in variants}
    for _ in range(RUNS):
        for k, cmd in variants.items():
            times[k].append(null_cost(cmd))
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["original"]

    rows = []
    rows.append(("null syscall (getppid), original, this kernel",
                 f"{base:.1f} ns", ""))
    rows.append(("null syscall, relinked, this kernel (no KML: real-syscall path)",
                 f"{med['relinked']:.1f} ns", f"{med['relinked'] / base:.3f} (goal <= 1.03)"))
    rows.append(("null syscall, relinked, under the emulated KML entry (kmlrun)",
                 f"{med['relinked, kmlrun']:.1f} ns", f"{med['relinked, kmlrun'] / base:.3f}"))
    rows.append(("null syscall, original, under kmlrun (no call through the entry)",
                 f"{med['original, kmlrun']:.1f} ns", f"{med['original, kmlrun'] / base:.3f}"))

    for name in corpus:
        _, rep = relink(relinker, name)
        c = rep["counts"]
        kept = ", ".join(f"{k} {v}" for k, v in sorted(rep.get("kept_by_reason", {}).items()))
        rows.append((f"sites rewritten: {name}",
                     f"{c['rewritten']} of {c['sites']}",
                     f"{100.0 * c['rewritten'] / max(c['sites'], 1):.1f}%"
                     + (f" (kept: {kept})" if kept else "")))

    bb = "/bin/busybox"
    size = os.path.getsize(bb)
    dst = os.path.join(OUT, "relinked", "busybox-speed")
    walls = []
    for _ in range(max(RUNS, 5)):
        t0 = time.perf_counter()
        sh(relinker, bb, "-o", dst, stderr=subprocess.DEVNULL)
        walls.append(time.perf_counter() - t0)
    wall = statistics.median(walls)
    rows.append((f"rewriting speed, busybox-static ({size / 1e6:.2f} MB)",
                 f"{size / 1e6 / wall:.1f} MB/s", f"{wall * 1000:.0f} ms"))

    print(f"| bench/relink: {RUNS} runs of {CALLS} calls, medians | value | ratio / note |")
    print("|---|---|---|")
    for a, b, c in rows:
        print(f"| {a} | {b} | {c} |")


if __name__ == "__main__":
    main()

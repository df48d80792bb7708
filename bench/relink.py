#!/usr/bin/env python3
"""bench/relink.py: what lupine-relink costs and covers, as one table.

- The cost of a null system call (getppid() in a loop, as lmbench's `lat_syscall null`;
  bench/null_syscall.c, musl-gcc -static): the relinked copy over the original on this
  machine's kernel (no KML: the trampoline's real-syscall path; goal at most 1.03), and the
  relinked copy under the emulated KML launcher (relinker/tests/support/kmlrun.c: every call
  goes through its AT_SYSINFO stand-in, which counts it and makes the real syscall). Medians
  of RUNS runs of CALLS calls each, the variants interleaved.
- The same null system call in a dynamically linked program through the C library relinked
  (musl's libc.so; glibc's libc.so.6 and ld-linux-x86-64.so.2), as a ratio to the system's
  copy of the library, both run through the dynamic linker named on the command line
  (`DIR/libc.so PROG`, `DIR/ld-linux-x86-64.so.2 --library-path DIR PROG`): the probing
  trampoline's real-syscall path (goal at most 1.03).
- The share of syscall sites rewritten in each program of the test corpus and in each of the
  C libraries (from the reports).
- Rewriting speed for Debian's busybox-static (/bin/busybox) and glibc's libc.so.6: input size
  over the median CPU time (user + system) of the release build of lupine-relink, and over its
  median wall time, which includes waiting for the disk to take the output (lupine-relink
  fsyncs it before the rename) (goal for libc.so.6: at least 50 MB/s).
- Coverage as a user meets it: of all the system calls a relinked program makes at run time
  (under `strace -f -i -k`, kept sites included), the share made from the code lupine-relink
  added. For each corpus program (run once, without arguments) and for the apps of apps/
  (apps/build.sh) on this machine under a benchmark load: redis under redis-benchmark, nginx
  under ab (with and without keep-alive), memcached under a small client's sets and gets.
  What the added code did not make is listed by name; by rule those can only be rt_sigreturn,
  clone, clone3, vfork, exit and munmap in musl's __unmapself (they cannot return through a
  call). The same for the dynamically linked apps (apps/debian.sh's redis, nginx and
  memcached, glibc;
  apps/build.sh's redis-musl): every library of the image that has syscall sites is relinked,
  the program (unmodified) runs through the relinked dynamic linker, and a call counts as from
  the added code when its first frame is in the added segment of a relinked library.

usage: bench/relink.py [RUNS] [CALLS]   (defaults 9 and 2000000)
"""
import glob, json, os, re, shutil, signal, socket, statistics, struct, subprocess, sys, tempfile
import time

import lib
from lib import HERE, MUSL, TOP, sh

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 9
CALLS = int(sys.argv[2]) if len(sys.argv) > 2 else 2000000
OUT = os.path.join(TOP, "target", "relink-bench")
CORPUS = os.path.join(TOP, "relinker", "tests", "corpus")
C_PROGRAMS = ["hello", "threads", "fork", "spawn", "signals", "cancel", "cancel-arch", "epoll",
              "sockets", "backtrace"]
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


# --- Run-time coverage -----------------------------------------------------------------------

APPS = os.path.join(TOP, "target", "apps")
# strace -ff -i -k: a call's line, `[ip] name(...`, then its first frame, ` > path(...) [0xoff]`.
CALL = re.compile(r"^\[([0-9a-f]+)\] ([a-z_0-9]+)\(")
FRAME = re.compile(r"^ > (\S+?)\(.*\) \[0x([0-9a-f]+)\]$")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what):
    for _ in range(200):
        if proc.poll() is not None:
            sys.exit(f"bench/relink: {what} exited early ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"bench/relink: {what} does not listen on {port}")


def redis_load(exe, work):
    """redis-benchmark -n 3000 -c 5 -t get,set,incr,lpush"""
    port = free_port()
    cmd = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
           "--dir", work]
    def load():
        sh("redis-benchmark", "-p", str(port), "-n", "3000", "-c", "5", "-q",
           "-t", "get,set,incr,lpush", stdout=subprocess.DEVNULL)
    return cmd, port, load


def nginx_load(exe, work):
    """ab -n 2000 -c 5, then ab -k -n 2000 -c 5"""
    port = free_port()
    prefix = os.path.join(work, "prefix")
    shutil.copytree(os.path.join(APPS, "nginx", "rootfs", "etc", "nginx"), prefix)
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf) as f:
        text = f.read().replace("listen 80 ", f"listen 127.0.0.1:{port} ")
    with open(conf, "w") as f:
        f.write(text)
    cmd = [exe, "-p", prefix + "/", "-c", conf]
    def load():
        for keepalive in ([], ["-k"]):
            sh("ab", "-q", *keepalive, "-n", "2000", "-c", "5", f"http://127.0.0.1:{port}/",
               stdout=subprocess.DEVNULL)
    return cmd, port, load


def memcached_load(exe, work):
    """5 clients x 400 sets and gets"""
    port = free_port()
    cmd = [exe, "-u", "nobody", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "64"]
    def load():
        for c in range(5):
            with socket.create_connection(("127.0.0.1", port)) as s:
                f = s.makefile("rwb")
                for i in range(400):
                    f.write(b"set k%d-%d 0 0 5\r\nvalue\r\nget k%d-%d\r\n" % (c, i, c, i))
                    f.flush()
                    if f.readline() != b"STORED\r\n":
                        sys.exit("bench/relink: memcached did not store")
                    while f.readline() != b"END\r\n":
                        pass
    return cmd, port, load


APP_LOADS = {"redis": redis_load, "nginx": nginx_load, "memcached": memcached_load}
APP_BINARIES = {"redis": "usr/local/bin/redis-server", "nginx": "usr/sbin/nginx",
                "memcached": "usr/bin/memcached"}


def traced(cmd, trace, load=None, port=None, what=""):
    """Runs `cmd` under strace -f -ff -i -k into files `trace`.PID; with a load, as a server:
    waits for it to listen on `port`, runs the load, then stops the server with SIGTERM."""
    st = ["strace", "-f", "-ff", "-qq", "-i", "-k", "-o", trace, "--", *cmd]
    if load is None:
        subprocess.run(st, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        return
    proc = subprocess.Popen(st, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc, what)
        load()
    finally:
        # SIGTERM to the server itself: strace ends when its tracee does.
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
            for pid in f.read().split():
                os.kill(int(pid), signal.SIGTERM)
        proc.wait(timeout=60)


def loads(exe):
    """The PT_LOADs of an ELF file: (file offset, vaddr, file size)."""
    with open(exe, "rb") as f:
        data = f.read()
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    out = []
    for i in range(phnum):
        p_type, _, off, vaddr, _, filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if p_type == 1:
            out.append((off, vaddr, filesz))
    return out


def runtime_share(trace, exe, report):
    """(calls from the added code, all calls, the others by name) from the traces of `exe`,
    whose relinking `report` describes. A call is placed by its first frame (a file offset, so
    static-PIE programs too), or by its address and the load bias of the program's other calls
    when it has none (a call that a process's exit cut short); rt_sigreturn is __restore_rt's,
    whatever strace shows."""
    seg = report["code_segment"]
    lo = int(seg["vaddr"], 16)
    hi = lo + seg["size"]
    segments = loads(exe)
    me = os.path.realpath(exe)
    calls, bias = [], None  # (name, address after the syscall, link-time one or None)
    for name in glob.glob(trace + ".*"):
        with open(name) as f:
            for line in f:
                m = CALL.match(line)
                if m:
                    if m.group(2) != "execve":
                        calls.append([m.group(2), int(m.group(1), 16), None])
                    continue
                fm = FRAME.match(line)
                if fm and calls and calls[-1][2] is None and fm.group(1) == me:
                    off = int(fm.group(2), 16)
                    v = next((v + off - o for o, v, n in segments if o <= off < o + n), None)
                    calls[-1][2] = v
                    if v is not None:
                        bias = calls[-1][1] - v
    added, others = 0, {}
    for call, ip, v in calls:
        if v is None and bias is not None:
            v = ip - bias
        if call != "rt_sigreturn" and v is not None and lo <= v - 2 < hi:
            added += 1
        else:
            others[call] = others.get(call, 0) + 1
    return added, len(calls), others


def runtime_row(label, name, load):
    """The share of run-time calls of the relinked `name` (a corpus program, or an app under
    `load`) made from the added code."""
    relinker = lib.cargo_release("lupine-relink")
    work = tempfile.mkdtemp(prefix="lupine-bench-relink-")
    try:
        if load is None:
            exe, report = relink(relinker, name)
            cmd, port, run = [exe], None, None
        else:
            src = os.path.join(work, name)
            shutil.copy(os.path.join(APPS, name, "rootfs", APP_BINARIES[name]), src)
            exe = os.path.join(work, name + ".relinked")
            sh(relinker, src, "-o", exe, "--report", src + ".json", stderr=subprocess.DEVNULL)
            with open(src + ".json") as f:
                report = json.load(f)
            cmd, port, run = load(exe, work)
        trace = os.path.join(work, "trace")
        traced(cmd, trace, run, port, name)
        added, total, others = runtime_share(trace, exe, report)
    finally:
        shutil.rmtree(work)
    rest = ", ".join(f"{k} {v}" for k, v in sorted(others.items()))
    return (label, f"{added} of {total}",
            f"{100.0 * added / max(total, 1):.2f}%" + (f" (others: {rest})" if rest else ""))


def null_cost(cmd):
    return float(out(*cmd, str(CALLS)).strip())


# Dynamically linked apps: (image, its program, its C library, the static app whose load it takes).
DYNAMIC_APPS = {"redis-deb": ("usr/bin/redis-server", "glibc", "redis"),
                "nginx-deb": ("usr/sbin/nginx", "glibc", "nginx"),
                "memcached-deb": ("usr/bin/memcached", "glibc", "memcached"),
                "redis-musl": ("usr/local/bin/redis-server", "musl", "redis")}
IMAGE_LIBS = ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "lib", "usr/lib"]


def relink_image_libs(relinker, rootfs, into):
    """Relinks every shared object of the image that has syscall sites into `into`; returns
    {path of the copy: its report}."""
    done, seen = {}, set()
    for d in IMAGE_LIBS:
        for f in sorted(glob.glob(os.path.join(rootfs, d, "*"))):
            real = os.path.realpath(f)
            name = os.path.basename(f)
            if not os.path.isfile(real) or real in seen or ".so" not in name:
                continue
            seen.add(real)
            dst = os.path.join(into, name)
            r = subprocess.run([relinker, real, "-o", dst, "--report", dst + ".json"],
                               capture_output=True)
            if r.returncode == 0:
                with open(dst + ".json") as fh:
                    rep = json.load(fh)
                if rep["counts"]["sites"]:
                    done[os.path.realpath(dst)] = rep
                else:
                    os.remove(dst)
    return done


def dynamic_runtime_row(relinker, app):
    """The share of run-time calls from the added code of an image's relinked libraries, with
    the image's program (unmodified) under its static counterpart's load."""
    program, libc, load_of = DYNAMIC_APPS[app]
    if not os.path.exists(os.path.join(APPS, app, "lupine.json")):
        script = "debian.sh" if app.endswith("-deb") else "build.sh"
        sh(os.path.join(TOP, "apps", script), app.removesuffix("-deb"), APPS,
           stdout=subprocess.DEVNULL)
    rootfs = os.path.join(APPS, app, "rootfs")
    work = tempfile.mkdtemp(prefix="lupine-bench-relink-dyn-")
    try:
        rel = os.path.join(work, "lib")
        os.makedirs(rel)
        libs = relink_image_libs(relinker, rootfs, rel)
        exe = os.path.join(rootfs, program)
        if libc == "musl":
            shutil.copy(os.path.join(rel, "ld-musl-x86_64.so.1"), os.path.join(rel, "libc.so"))
            loader = [os.path.join(rel, "libc.so")]
            libs[os.path.realpath(os.path.join(rel, "libc.so"))] = \
                libs[os.path.realpath(os.path.join(rel, "ld-musl-x86_64.so.1"))]
        else:
            path = ":".join([rel] + [os.path.join(rootfs, d) for d in IMAGE_LIBS])
            loader = [os.path.join(rel, "ld-linux-x86-64.so.2"), "--library-path", path]
        cmd, port, run = APP_LOADS[load_of](exe, work)
        if load_of == "nginx":
            # Debian's nginx keeps its temporary files under /var/lib/nginx: here, the prefix.
            conf = cmd[-1]
            with open(conf) as f:
                text = f.read().replace("http {", "http {\n" + "".join(
                    f"    {m}_temp_path {work}/{m};\n"
                    for m in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")), 1)
            with open(conf, "w") as f:
                f.write(text)
        trace = os.path.join(work, "trace")
        traced(loader + cmd, trace, run, port, app)
        added, total, others = 0, 0, {}
        for name in glob.glob(trace + ".*"):
            call = None
            with open(name) as f:
                for line in f:
                    m = CALL.match(line)
                    if m:
                        call = m.group(2) if m.group(2) != "execve" else None
                        total += call is not None
                        continue
                    fm = FRAME.match(line)
                    if fm and call:
                        rep = libs.get(os.path.realpath(fm.group(1)))
                        seg = rep and rep["code_segment"]
                        off = int(fm.group(2), 16)
                        lo = int(seg["vaddr"], 16) if seg else 0
                        if call != "rt_sigreturn" and seg and lo <= off - 2 < lo + seg["size"]:
                            added += 1
                        else:
                            where = "" if rep else f" in {os.path.basename(fm.group(1))}"
                            others[call + where] = others.get(call + where, 0) + 1
                        call = None
    finally:
        shutil.rmtree(work)
    rest = ", ".join(f"{k} {v}" for k, v in sorted(others.items()))
    relinked = len({id(r) for r in libs.values()})
    return (f"run-time calls from the added code: {app} ({libc}, {relinked} libraries "
            f"relinked) under {APP_LOADS[load_of].__doc__}",
            f"{added} of {total}",
            f"{100.0 * added / max(total, 1):.2f}%" + (f" (others: {rest})" if rest else ""))


def speed_row(relinker, path, label, goal=""):
    """Rewriting speed for `path`: MB/s by median CPU time, and by median wall time."""
    import resource
    size = os.path.getsize(path)
    dst = os.path.join(OUT, "relinked", os.path.basename(path) + "-speed")
    cpus, walls = [], []
    for _ in range(max(RUNS, 5)):
        r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        sh(relinker, path, "-o", dst, stderr=subprocess.DEVNULL)
        r1, t1 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        cpus.append(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
        walls.append(t1 - t0)
    cpu, wall = statistics.median(cpus), statistics.median(walls)
    return (f"rewriting speed, {label} ({size / 1e6:.2f} MB): by CPU time; by wall time",
            f"{size / 1e6 / max(cpu, 1e-6):.1f} MB/s; {size / 1e6 / wall:.1f} MB/s",
            f"{cpu * 1000:.0f} ms CPU, {wall * 1000:.0f} ms wall{goal}")


# The system's C libraries with syscall sites, per C library, and how a program is run with the
# copies in a directory.
LIBS = {"musl": ["/usr/lib/x86_64-linux-musl/libc.so"],
        "glibc": ["/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"]}


def through(libc, d, prog):
    if libc == "musl":
        return [os.path.join(d, "libc.so"), prog]
    return [os.path.join(d, "ld-linux-x86-64.so.2"), "--library-path", d, prog]


def dynamic_rows(relinker):
    """Null system call through each relinked C library, its sites, libc.so.6's speed."""
    rows, variants = [], {}
    for libc, libs in LIBS.items():
        orig, new = (os.path.join(OUT, "libs", k, libc) for k in ("orig", "relinked"))
        os.makedirs(orig, exist_ok=True)
        os.makedirs(new, exist_ok=True)
        for lib_path in libs:
            name = os.path.basename(lib_path)
            shutil.copy(lib_path, os.path.join(orig, name))
            rep = os.path.join(new, name + ".json")
            sh(relinker, lib_path, "-o", os.path.join(new, name), "--report", rep,
               stderr=subprocess.DEVNULL)
            with open(rep) as f:
                c = json.load(f)["counts"]
            rows.append((f"sites rewritten: {libc} {name}", f"{c['rewritten']} of {c['sites']}",
                         f"{100.0 * c['rewritten'] / max(c['sites'], 1):.1f}%"))
        prog = os.path.join(OUT, "orig", f"null_syscall-{libc}-dyn")
        sh("musl-gcc" if libc == "musl" else "gcc", "-O2", "-o", prog,
           os.path.join(HERE, "null_syscall.c"))
        variants[(libc, "system")] = through(libc, orig, prog)
        variants[(libc, "relinked")] = through(libc, new, prog)
    times = {k: [] for k in variants}
    for _ in range(RUNS):
        for k, cmd in variants.items():
            times[k].append(null_cost(cmd))
    med = {k: statistics.median(v) for k, v in times.items()}
    for libc in LIBS:
        base, r = med[(libc, "system")], med[(libc, "relinked")]
        rows.append((f"null syscall, dynamically linked, {libc}'s library as the system has it",
                     f"{base:.1f} ns", ""))
        rows.append((f"null syscall, dynamically linked, through the relinked {libc} library "
                     "(no KML: probe once, then real-syscall path)",
                     f"{r:.1f} ns", f"{r / base:.3f} (goal <= 1.03)"))
    rows.append(speed_row(relinker, LIBS["glibc"][0], "glibc libc.so.6", " (goal >= 50 MB/s)"))
    return rows


def main():
    sh(os.path.join(TOP, "apps", "build.sh"), "all", APPS, stdout=subprocess.DEVNULL)
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

    rows.append(speed_row(relinker, "/bin/busybox", "busybox-static"))

    rows.extend(dynamic_rows(relinker))

    for name in corpus:
        rows.append(runtime_row(f"run-time calls from the added code: {name}", name, None))
    for app, load in APP_LOADS.items():
        rows.append(runtime_row(f"run-time calls from the added code: {app} under {load.__doc__}",
                                app, load))
    for app in DYNAMIC_APPS:
        rows.append(dynamic_runtime_row(relinker, app))

    print(f"| bench/relink: {RUNS} runs of {CALLS} calls, medians | value | ratio / note |")
    print("|---|---|---|")
    for a, b, c in rows:
        print(f"| {a} | {b} | {c} |")


if __name__ == "__main__":
    main()

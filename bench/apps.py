#!/usr/bin/env python3
"""bench/apps.py: application throughput, boot-to-first-request and memory footprint per kernel
profile, as ratios to the `microvm` baseline (Firecracker's 6.1 guest config): the paper's
Table 4 ("A Linux in Unikernel Clothing", EuroSys '20) on this machine.

Apps: redis and nginx as apps/build.sh builds them (target/apps/APP: rootfs/, lupine.json), and
redis-deb and nginx-deb, Debian 12's own packages as apps/debian.sh unpacks them (dynamically
linked: on the +kml disks lupine-image relinks their libc.so.6 and ld.so; their columns use the
static app's profiles, lupine-redis and lupine-nginx). Each
becomes an OCI image layout (a tar of rootfs/ owned by root; a config starting the app with
Entrypoint/Cmd/WorkingDir from lupine.json's "app", as its Docker image would) plus a manifest
fragment (the rest of lupine.json, and eth0 10.0.2.15/24 with its default route via QEMU's
10.0.2.2), and lupine-image turns those into an ext4 root disk, booted with
`root=/dev/vda init=/lupine-init` (snapshot=on: every boot starts from the same disk). The
binaries are not relinked, except on the `+kml` columns' disk: there the app's executable moves
to /trusted (its old path becomes a symlink to it, so the manifest is unchanged) and
`lupine-image --relink` rewrites it.

Columns are the kernel profiles of kernel-patches/build.sh: microvm, lupine-general, the app's
own profile (lupine-redis, lupine-nginx), and that profile with KML (lupine-APP+kml: the same
options plus Kernel Mode Linux, which brings SMP, BUG and DEBUG_ENTRY and drops PTI) booted
twice: with `kml=on`, where the app runs at CPL 0 and its rewritten system calls call the KML
entry, and without, where the same relinked binary runs at CPL 3 with the trampolines' plain
`syscall`, which prices the kernel's options apart from KML itself (the kernel's "runs in
kernel mode" notice, at loglevel=6 on both, must be on the console with kml=on only). On those
disks bench/kml_counts.c starts the app and answers a second forwarded port with /proc/kml,
read before and after each load: the rows "KML calls / raw syscalls" give the app's call-entry
system calls and its raw `syscall` instructions during the load (a share of calls below 99%
ends the benchmark; both must be 0 with kml=off). Under QEMU TCG on this machine (not KVM: only the ratios carry over),
each row is the median of RUNS runs, one fresh boot per run:
- redis-get, redis-set: `redis-benchmark -t get,set` requests/s (Debian redis-tools);
- nginx-conn: `ab` requests/s, a new connection per request;
- nginx-sess: `ab -k` requests/s, keep-alive sessions (nginx.conf: 100 requests a connection);
- boot-to-first-request: from starting QEMU to the first answered request (redis: PING answered
  +PONG; nginx: GET /index.html answered 200), a new attempt every 10 ms; from the same boots;
- kernel start to ready: lupine-init's `lupine: ready in N ms`, printed once the app listens on
  its manifest's `ready` port (seen in /proc/net/tcp, polled every 5 ms), counted from the
  kernel's start (CLOCK_BOOTTIME), so without QEMU's start-up and the host's polling, but in
  the guest's clock, which under TCG with `tsc_early_khz` keeps its own pace (it can come out
  longer than the first-request time measured on the host);
- least memory: the least `-m` (MiB) with which the VM boots, answers the first request within
  BOOT_TIMEOUT and then serves a short load (1000 redis SETs, 200 nginx GETs), found by
  bisection between 8 and 256 MiB, one boot per probe.
Lupine profiles boot on `-M microvm,acpi=off` (virtio-mmio devices on the command line);
microvm's config finds devices through ACPI, so it boots on `-M microvm` with `pci=off`. Every
profile gets `tsc_early_khz=2000000` (without it microvm's TSC calibration can hang under TCG)
and `tsc=reliable`: under TCG the clocksource watchdog finds the TSC skewed and falls back to
jiffies, which has no vDSO mode, so that every clock_gettime became a system call made from the
vDSO (two or three per request for redis, on every column; raw `syscall` instructions at CPL 0
on the +kml columns, where lupine-relink cannot reach them).
QEMU forwards a free port on the host's 127.0.0.1 to the app's port (user networking). Its
listening socket has a backlog of 1, so clients are kept to 10 connections (not
redis-benchmark's default 50, with which runs often hang for ~100 s in a handshake), and a run
that still stalls or sees a connection reset is retried on a fresh boot (twice at most);
failed requests, non-2xx answers or a wrong reply end the benchmark instead.

usage: [LUPINE_ACCEL=kvm] bench/apps.py [RUNS] [--quick] [--apps redis,nginx,redis-deb,nginx-deb]
       (default RUNS=5; TCG)
  --quick: RUNS=1, small loads, memory to 16 MiB: a smoke run.
"""
import hashlib, io, json, os, re, select, socket, statistics, subprocess, sys, tarfile
import shutil, tempfile, time

import lib
from lib import TOP, sh

APPS = {  # app: (guest port, first-request probe, its good answer's start, benchmark rows)
    "redis": (6379, b"PING\r\n", b"+PONG\r\n", ["redis-get", "redis-set"]),
    "nginx": (80, b"GET /index.html HTTP/1.0\r\n\r\n", b"HTTP/1.1 200 ",
              ["nginx-conn", "nginx-sess"]),
}
APPS["redis-deb"] = APPS["redis"]
APPS["nginx-deb"] = APPS["nginx"]


def kind(app):
    """redis or nginx: the server an app is (its load, its profile)."""
    return app.removesuffix("-deb")
# Profile per column, APP standing for the app's name; a +kml profile is booted with kml=on
# unless the column ends in " kml=off".
COLUMNS = ["microvm", "lupine-general", "lupine-APP", "lupine-APP+kml kml=off", "lupine-APP+kml"]
CMDLINE = ("console=ttyS0 quiet panic=-1 reboot=t tsc_early_khz=2000000 tsc=reliable "
           "root=/dev/vda rootfstype=ext4 rw init=/lupine-init")
KML_PORT = 7777      # the guest port where kml_counts answers with /proc/kml
BOOT_TIMEOUT = 60    # s from QEMU start to the first answered request
LOAD_TIMEOUT = 60    # s for one benchmark tool run (a few s normally): past it, a stall
STALL_RETRIES = 2    # fresh boots to retry a run that stalled (see Stalled)
MEM_LO, MEM_HI = 8, 256


def usage(msg):
    sys.exit(f"bench/apps: {msg}\nusage: bench/apps.py [RUNS] [--quick] [--apps redis,nginx]")


def parse_args(argv):
    runs, quick, apps = None, False, list(APPS)
    it = iter(argv)
    for a in it:
        if a == "--quick":
            quick = True
        elif a == "--apps" or a.startswith("--apps="):
            v = a.split("=", 1)[1] if "=" in a else next(it, None)
            apps = (v or "").split(",")
            if not v or any(x not in APPS for x in apps):
                usage(f"--apps takes some of {','.join(APPS)}, not {v!r}")
        elif a.isdigit() and int(a) > 0:
            runs = int(a)
        else:
            usage(f"unknown argument {a!r}")
    if runs is None:
        runs = 1 if quick else 5
    return runs, quick, apps


RUNS, QUICK, SELECTED = parse_args(sys.argv[1:])
ACCEL = lib.accel("bench/apps")
# Loads: a few seconds a run under TCG. 10 clients, not redis-benchmark's default 50: QEMU's
# hostfwd socket listens with a backlog of 1, and 50 clients connecting at once often leave one
# stuck in the handshake until the host resets it ~100 s later (see Stalled).
REDIS_N, REDIS_C = (2000, 10) if QUICK else (20000, 10)
NGINX_N, NGINX_C = (500, 10) if QUICK else (5000, 10)
MEM_STEP = 16 if QUICK else 1  # bisection resolution, MiB


def log(msg):
    print(f"bench/apps: {msg}", file=sys.stderr, flush=True)


def profile_of(column, app):
    return column.split()[0].replace("APP", kind(app))


def kml_on(column):
    """Whether the column boots its +kml kernel with kml=on."""
    return "+kml" in column and not column.endswith(" kml=off")


def relinked(profile):
    """Whether the column's disk has relinked binaries under /trusted (the +kml profiles)."""
    return "+kml" in profile


# --- disks -----------------------------------------------------------------------------------

def blob(blobs, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(data)
    return digest, len(data)


def oci_layout(tree, config, out):
    """An OCI image layout at `out`: one layer, the tar of `tree` (owned by root)."""
    blobs = os.path.join(out, "blobs/sha256")
    os.makedirs(blobs)

    def root_owned(info):
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirs, files in os.walk(tree):
            dirs.sort()
            for name in sorted(dirs + files):
                path = os.path.join(dirpath, name)
                tar.add(path, "./" + os.path.relpath(path, tree), recursive=False,
                        filter=root_owned)
    layer_digest, layer_size = blob(blobs, layer.getvalue())
    image_config = {"architecture": "amd64", "os": "linux", "config": config,
                    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + layer_digest]}}
    config_digest, config_size = blob(blobs, json.dumps(image_config).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": "sha256:" + config_digest, "size": config_size},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": "sha256:" + layer_digest, "size": layer_size}]}
    manifest_digest, manifest_size = blob(blobs, json.dumps(manifest).encode())
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": "sha256:" + manifest_digest, "size": manifest_size,
             "platform": {"architecture": "amd64", "os": "linux"}}]}, f)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    return out


def disk(app, relink, lupine_image, init, work):
    """The app's ext4 root disk, as guest-tests/tests/apps.rs builds it."""
    build = os.path.join(TOP, "target/apps", app)
    with open(os.path.join(build, "lupine.json")) as f:
        manifest = json.load(f)
    start = manifest.pop("app")
    config = {"Entrypoint": [start["path"]], "Cmd": start.get("args", []),
              "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}
    if "cwd" in start:
        config["WorkingDir"] = start["cwd"]
    manifest["network"] = {
        "interfaces": [{"name": "eth0", "addresses": ["10.0.2.15/24"]}],
        "routes": [{"destination": "default", "gateway": "10.0.2.2"}],
        "wait_s": 2,
    }
    d = os.path.join(work, f"{app}-relinked" if relink else app)
    os.makedirs(d)
    fragment = os.path.join(d, "fragment.json")
    with open(fragment, "w") as f:
        json.dump(manifest, f)
    tree = os.path.join(build, "rootfs")
    if relink:
        # The executable under /trusted (KML's selection), its old path a symlink to it, and
        # kml_counts in front of it.
        tree = os.path.join(d, "rootfs")
        shutil.copytree(os.path.join(build, "rootfs"), tree, symlinks=True)
        # (Debian's /usr/bin/redis-server is a relative link to redis-check-rdb.)
        exe = os.path.basename(start["path"])
        os.makedirs(os.path.join(tree, "trusted"))
        shutil.copy(os.path.realpath(tree + start["path"]), os.path.join(tree, "trusted", exe))
        os.remove(tree + start["path"])
        os.symlink("/trusted/" + exe, tree + start["path"])
        sh("musl-gcc", "-static", "-O2", "-o", os.path.join(tree, "kml_counts"),
           os.path.join(lib.HERE, "kml_counts.c"))
        config["Entrypoint"] = ["/kml_counts", str(KML_PORT), start["path"]]
    image = oci_layout(tree, config, os.path.join(d, "oci"))
    out = os.path.join(d, "root.ext4")
    sh(lupine_image, image, "-o", out, "--init", init, "--manifest", fragment, "--quiet",
       *(["--relink"] if relink else []))
    return out


# --- VMs -------------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Vm:
    """One boot of `disk` on the `column`'s kernel (APP substituted) with `mem` MiB, the app's
    port forwarded to a free host port; the console goes to a file. Killed on leaving the `with`
    block."""

    def __init__(self, column, kernel, disk_path, mem, guest_port, work):
        self.column, self.profile, self.kernel = column, column.split()[0], kernel
        self.disk, self.mem, self.guest_port, self.work = disk_path, mem, guest_port, work
        self.proc = None

    def command(self):
        cmdline = CMDLINE
        if "+kml" in self.profile:
            # loglevel: the "runs in kernel mode" notice, on both +kml columns alike.
            cmdline += " loglevel=6" + (" kml=on" if kml_on(self.column) else "")
        qemu = lib.qemu(self.profile, self.kernel, self.mem, "file:" + self.console_path,
                        cmdline, ACCEL)
        return qemu + [
            "-smp", "1",
            "-drive", f"file={self.disk},if=none,id=d0,format=raw,snapshot=on",
            "-device", "virtio-blk-device,drive=d0",
            "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{self.port}-:{self.guest_port}"
            + (f",hostfwd=tcp:127.0.0.1:{self.kml_port}-:{KML_PORT}"
               if "+kml" in self.profile else ""),
            "-device", "virtio-net-device,netdev=n0"]

    def __enter__(self):
        self.console_path = os.path.join(self.work, "console")
        self.stderr_path = os.path.join(self.work, "qemu.stderr")
        for _ in range(5):
            self.port, self.kml_port = free_port(), free_port()
            self.stderr = open(self.stderr_path, "wb")
            self.start = time.monotonic()
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=self.stderr)
            # QEMU binds the forwarded port before the guest runs; if someone took it
            # meanwhile, QEMU quits at once: try another.
            time.sleep(0.05)
            if self.proc.poll() is None or "forwarding" not in self.qemu_stderr():
                return self
            self.proc.wait()
            self.stderr.close()
        raise RuntimeError("no free loopback port for QEMU after 5 tries")

    def __exit__(self, *exc):
        self.kill()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        if self.proc:
            self.proc.wait()
        self.stderr.close()

    def console(self):
        try:
            with open(self.console_path, "rb") as f:
                return f.read().decode(errors="replace").replace("\r", "")
        except FileNotFoundError:
            return ""

    def qemu_stderr(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def failed(self):
        """Why the guest cannot serve any more (QEMU ended, panic, OOM), or None."""
        if self.proc.poll() is not None:
            return f"QEMU ended ({self.proc.returncode})"
        c = self.console()
        for bad in ("Kernel panic", "Out of memory", "lupine: fatal"):
            if bad in c:
                return f"console: {bad}"
        return None

    def kml_counts(self):
        """(call-entry system calls, raw syscall instructions) of kernel-mode processes so far,
        all CPUs, from /proc/kml through kml_counts."""
        with socket.create_connection(("127.0.0.1", self.kml_port), timeout=10) as s:
            text = b""
            while chunk := s.recv(4096):
                text += chunk
        counts = re.findall(r"^cpu\d+ calls (\d+) syscalls (\d+)", text.decode(), re.M)
        if not counts:
            raise RuntimeError(f"no /proc/kml from the guest: {text!r}\n{self.describe()}")
        return tuple(sum(int(c[k]) for c in counts) for k in (0, 1))

    def describe(self):
        return (f"{self.column} -m {self.mem}\n--- console ---\n{self.console()[-3000:]}"
                f"--- qemu stderr ---\n{self.qemu_stderr()[-1000:]}")

    def first_request(self, probe, answer, timeout):
        """Seconds from QEMU start to the first `probe` answered with `answer`, or None.

        Until the guest listens, QEMU accepts on the host side and then the connection is
        reset; a SYN sent before the guest's network is up waits for QEMU's retransmission
        (up to seconds). So a new attempt starts every 10 ms, each kept for up to 0.5 s."""
        attempts = {}  # socket: (started, bytes so far)
        next_try = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                if now - self.start > timeout or self.failed():
                    return None
                if now >= next_try:
                    next_try = now + 0.01
                    s = socket.socket()
                    try:
                        s.settimeout(0.5)
                        s.connect(("127.0.0.1", self.port))
                        s.setblocking(False)
                        s.send(probe)
                        attempts[s] = (now, b"")
                    except OSError:
                        s.close()
                for s in [s for s, (t, _) in attempts.items() if now - t > 0.5]:
                    s.close()
                    del attempts[s]
                wait = max(0.0, next_try - time.monotonic())
                ready = select.select(list(attempts), [], [], wait)[0] if attempts \
                    else time.sleep(wait) or []
                for s in ready:
                    try:
                        data = s.recv(4096)
                    except OSError:
                        data = b""
                    if not data:
                        s.close()
                        del attempts[s]
                        continue
                    got = attempts[s][1] + data
                    if got.startswith(answer):
                        return time.monotonic() - self.start
                    if len(got) >= len(answer):  # a wrong answer: the server is up but odd
                        raise RuntimeError(f"unexpected answer {got[:200]!r}\n{self.describe()}")
                    attempts[s] = (attempts[s][0], got)
        finally:
            for s in attempts:
                s.close()


# --- loads -----------------------------------------------------------------------------------

class Stalled(RuntimeError):
    """A load that hung or had a connection reset: QEMU's hostfwd listening socket has a
    backlog of 1, so a burst of connects can overflow the host's accept queue and leave a client
    stuck in its handshake. The run is retried on a fresh boot (STALL_RETRIES)."""


def run_tool(args, vm):
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=LOAD_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise Stalled(f"{' '.join(args)}: still running after {LOAD_TIMEOUT} s")
    if r.returncode != 0 and re.search(r"reset by peer|timed out|timeout", r.stdout + r.stderr,
                                       re.I):
        raise Stalled(f"{' '.join(args)}: {(r.stdout + r.stderr).strip()[-300:]}")
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit status {r.returncode}\n{r.stdout}{r.stderr}"
                           f"\n{vm.describe()}")
    return r.stdout + r.stderr


def resp(*words):
    """A redis command in RESP, redis's wire protocol."""
    return (f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)).encode()


def redis_cmd(port, *words):
    """One redis command over a raw socket (RESP); the reply's first line."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(resp(*words))
        reply = b""
        while b"\r\n" not in reply:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.split(b"\r\n")[0].decode(errors="replace")


def redis_bench(vm, n, c):
    """{"redis-get": req/s, "redis-set": req/s}."""
    out = run_tool(["redis-benchmark", "-h", "127.0.0.1", "-p", str(vm.port),
                    "-t", "get,set", "-n", str(n), "-c", str(c), "--csv"], vm)
    rates = {}
    for line in out.splitlines():
        f = [x.strip('"') for x in line.split(",")]
        if len(f) >= 2 and f[0] in ("GET", "SET"):
            rates["redis-" + f[0].lower()] = float(f[1])
    if set(rates) != {"redis-get", "redis-set"} or min(rates.values()) <= 0 or \
            re.search(r"error|could not connect", out, re.I):
        raise RuntimeError(f"redis-benchmark: unexpected output\n{out}\n{vm.describe()}")
    # The SETs stored the benchmark's value ("xxx") under its one key.
    check = redis_cmd(vm.port, "STRLEN", "key:__rand_int__")
    if check != ":3":
        raise RuntimeError(f"redis after the benchmark: STRLEN {check!r}\n{vm.describe()}")
    return rates


def ab(vm, n, c, keepalive):
    args = ["ab", *(["-k"] if keepalive else []), "-n", str(n), "-c", str(c), "-s", "60",
            f"http://127.0.0.1:{vm.port}/index.html"]
    out = run_tool(args, vm)

    def field(name):
        m = re.search(rf"^{name}:\s+([\d.]+)", out, re.M)
        return float(m.group(1)) if m else None

    problems = []
    if field("Complete requests") != n:
        problems.append("complete requests != n")
    if field("Failed requests") != 0:
        problems.append("failed requests")
    if "Non-2xx responses" in out:
        problems.append("non-2xx responses")
    if keepalive and not field("Keep-Alive requests"):
        problems.append("no keep-alive requests")
    rate = field("Requests per second")
    if problems or not rate:
        raise RuntimeError(f"{' '.join(args)}: {', '.join(problems) or 'no rate'}\n{out}"
                           f"\n{vm.describe()}")
    return rate


def bench(app, vm):
    if kind(app) == "redis":
        return redis_bench(vm, REDIS_N, REDIS_C)
    return {"nginx-conn": ab(vm, NGINX_N, NGINX_C, False),
            "nginx-sess": ab(vm, NGINX_N, NGINX_C, True)}


def short_load(app, vm):
    """1000 redis SETs / 200 nginx GETs, all answered."""
    if kind(app) == "redis":
        out = run_tool(["redis-benchmark", "-h", "127.0.0.1", "-p", str(vm.port), "-t", "set",
                        "-n", "1000", "-c", "2", "--csv"], vm)
        if not re.search(r'^"SET","[\d.]+"', out, re.M) or \
                redis_cmd(vm.port, "STRLEN", "key:__rand_int__") != ":3":
            raise RuntimeError(out)
    else:
        ab(vm, 200, 2, False)


# --- measurements ----------------------------------------------------------------------------

def serves(app, column, kernel, disk_path, mem, work):
    """Whether one boot with `mem` MiB answers the first request and then a short load."""
    port, probe, answer, _ = APPS[app]
    for _ in range(STALL_RETRIES + 1):
        with Vm(column, kernel, disk_path, mem, port, work) as vm:
            if vm.first_request(probe, answer, BOOT_TIMEOUT) is None:
                return False
            try:
                short_load(app, vm)
            except Stalled as e:
                if vm.failed():
                    return False
                log(f"{app} on {column}: -m {mem} stalled, booting again: {e}")
                continue
            except (RuntimeError, OSError):
                return False
            return vm.failed() is None
    return False


def least_memory(app, column, kernel, disk_path, work):
    """By bisection; MEM_HI serves (the benchmark runs used it), MEM_LO is assumed to fail."""
    lo, hi = MEM_LO, MEM_HI
    while hi - lo > MEM_STEP:
        mid = (lo + hi) // 2
        ok = serves(app, column, kernel, disk_path, mid, work)
        log(f"{app} on {column}: -m {mid} {'serves' if ok else 'fails'}")
        if ok:
            hi = mid
        else:
            lo = mid
    return hi


def measure(app, column, kernel, disk_path, work):
    """{row: median} for the app's benchmark rows, boot (s) and memory (MiB)."""
    port, probe, answer, rows = APPS[app]
    samples = {r: [] for r in rows + ["boot", "ready"]}
    for i in range(RUNS):
        for attempt in range(STALL_RETRIES + 1):
            with Vm(column, kernel, disk_path, MEM_HI, port, work) as vm:
                t = vm.first_request(probe, answer, BOOT_TIMEOUT)
                if t is None:
                    sys.exit(f"bench/apps: {app} on {column}: no answer within {BOOT_TIMEOUT} s"
                             f" ({vm.failed() or 'timeout'})\n{vm.describe()}")
                in_kernel_mode = "runs in kernel mode" in vm.console()
                if "+kml" in column and in_kernel_mode != kml_on(column):
                    sys.exit(f"bench/apps: {app} on {column}: the app is "
                             f"{'' if in_kernel_mode else 'not '}in kernel mode\n"
                             f"{vm.describe()}")
                try:
                    before = vm.kml_counts() if "+kml" in column else None
                    rates = bench(app, vm)
                    kml = kml_delta(app, column, before, vm)
                except Stalled as e:
                    log(f"{app} on {column}: run {i + 1} stalled: {e}")
                    if attempt == STALL_RETRIES:
                        sys.exit(f"bench/apps: {app} on {column}: stalled {attempt + 1} times\n"
                                 f"{vm.describe()}")
                    continue
                if vm.failed():
                    sys.exit(f"bench/apps: {app} on {column}: {vm.failed()} during the load\n"
                             f"{vm.describe()}")
                break
        samples["boot"].append(t)
        samples["ready"].append(ready_ms(vm.console(), f"{app} on {column}"))
        for r, v in rates.items():
            samples[r].append(v)
        if kml:
            samples.setdefault("kml", []).append(kml)
        log(f"{app} on {column}: run {i + 1}/{RUNS}: first request {t * 1000:.0f} ms, "
            + ", ".join(f"{r} {v:,.0f} req/s" for r, v in rates.items()))
    result = {r: statistics.median(v) for r, v in samples.items() if r != "kml"}
    if "kml" in samples:
        # The run with the median share of calls.
        result["kml"] = sorted(samples["kml"], key=lambda c: c[0] / max(sum(c), 1))[RUNS // 2]
    result["memory"] = least_memory(app, column, kernel, disk_path, work)
    log(f"{app} on {column}: least memory {result['memory']} MiB")
    return result


def ready_ms(console, what):
    """lupine-init's "lupine: ready in N ms" (the manifest's `ready` socket listening, counted
    from the kernel's start): N."""
    found = re.findall(r"^lupine: ready in (\d+) ms$", console, re.M)
    if len(found) != 1:
        sys.exit(f"bench/apps: {what}: {len(found)} 'lupine: ready' lines on the console\n"
                 f"{console[-3000:]}")
    return int(found[0])


def kml_delta(app, column, before, vm):
    """The app's (calls, raw syscalls) during the load, from /proc/kml before and after it; at
    least 99% of them through the call entry with kml=on, none with kml=off."""
    if before is None:
        return None
    after = vm.kml_counts()
    calls, raw = after[0] - before[0], after[1] - before[1]
    if kml_on(column) and calls < 0.99 * (calls + raw):
        sys.exit(f"bench/apps: {app} on {column}: {calls} call-entry system calls and {raw} raw "
                 f"syscalls during the load: less than 99% through the entry\n{vm.describe()}")
    if not kml_on(column) and calls + raw:
        sys.exit(f"bench/apps: {app} on {column}: kernel-mode system calls without kml=on")
    return calls, raw


def cell(value, base, fmt):
    if value is None:
        return "n/a"
    ratio = f"{value / base:.2f}" if base else "n/a"
    return f"{fmt(value)} ({ratio})"


def main():
    began = time.monotonic()
    lupine_image = lib.cargo_release("lupine-image")
    init = lib.lupine_init()
    for app in SELECTED:
        if not os.path.exists(os.path.join(TOP, "target/apps", app, "lupine.json")):
            script = "apps/debian.sh" if app.endswith("-deb") else "apps/build.sh"
            sh(os.path.join(TOP, script), kind(app), os.path.join(TOP, "target/apps"),
               stdout=subprocess.DEVNULL)
    results = {}  # (app, column): measure()
    with tempfile.TemporaryDirectory(prefix="lupine-bench-apps-") as work:
        disks = {}
        for app in SELECTED:
            for col in COLUMNS:
                profile = profile_of(col, app)
                log(f"kernel {profile}")
                kernel = os.path.join(lib.kernel_dir(profile), "bzImage")
                relink = relinked(profile)
                if (app, relink) not in disks:
                    log(f"disk for {app}{' (relinked)' if relink else ''}")
                    disks[app, relink] = disk(app, relink, lupine_image, init, work)
                results[app, col] = measure(app, col.replace("APP", kind(app)), kernel,
                                            disks[app, relink], work)

    head = " | ".join(COLUMNS)
    print(f"| {'row':<34} | {head} |")
    print("|" + "---|" * (len(COLUMNS) + 1))

    def row(label, app, key, fmt):
        base = results[app, COLUMNS[0]][key]
        cells = [cell(results[app, c][key], base, fmt) for c in COLUMNS]
        print(f"| {label:<34} | " + " | ".join(cells) + " |")

    for app in SELECTED:
        for r in APPS[app][3]:
            label = r if app == kind(app) else f"{r} ({app})"
            row(f"{label} (req/s)", app, r, lambda v: f"{v:,.0f}")
    for app in SELECTED:
        row(f"{app} boot-to-first-request (ms)", app, "boot", lambda v: f"{v * 1000:,.0f}")
        row(f"{app} kernel start to ready (ms)", app, "ready", lambda v: f"{v:,.0f}")
    for app in SELECTED:
        row(f"{app} least memory (MiB)", app, "memory", lambda v: f"{v}")
    for app in SELECTED:
        cells = []
        for c in COLUMNS:
            k = results[app, c].get("kml")
            cells.append(f"{k[0]:,} / {k[1]:,} ({100 * k[0] / max(sum(k), 1):.2f}%)" if k
                         else "n/a")
        print(f"| {app + ' KML calls / raw syscalls':<34} | " + " | ".join(cells) + " |")
    with open("/proc/cpuinfo") as f:
        cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    loads = (f"redis-benchmark -n {REDIS_N} -c {REDIS_C}; ab -n {NGINX_N} -c {NGINX_C}; "
             f"memory to {MEM_STEP} MiB")
    where = "QEMU TCG (not KVM: compare ratios)" if ACCEL == "tcg" else "KVM"
    print(f"\n{where} on this machine: {os.cpu_count()} CPUs "
          f"(nproc {len(os.sched_getaffinity(0))}), {cpu}; -smp 1, median of {RUNS} "
          f"run{'s' if RUNS > 1 else ''}, one boot each ({loads}); ratios are to microvm. "
          f"The paper (KVM/Firecracker): lupine-general throughput 1.19-1.33x microVM, "
          f"memory -28%, boot -59%.")
    log(f"done in {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()

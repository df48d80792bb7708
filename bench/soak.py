#!/usr/bin/env python3
"""bench/soak.py: hours in minutes. A KML guest serves a load in a loop while its answers,
kernel log and memory are watched. Not part of the test suite: 30 minutes per app by default.

For each app, the relinked executable under /trusted of a `+kml` kernel booted with `kml=on`
and 2 vCPUs (so it runs at CPL 0 and its system calls take the KML call entry), as
bench/apps.py builds it, with bench/kml_counts.c in front answering /proc/kml and
/proc/meminfo on a second port:

- redis (lupine-redis+kml): `redis-benchmark -t get,set` rounds, plus 1,000 keys of known
  values set at the start, 100 of them read back after every round, all of them and DBSIZE at
  the end;
- nginx (lupine-nginx+kml): `ab` rounds, with and without keep-alive, and the page fetched and
  compared after every round;
- memcached (lupine-general+kml: there is no memcached+kml profile): rounds of sets and gets of
  10,000 keys of known values in turn on one connection, every answer checked.

Fails on any error reply, wrong or lost value, kernel warning (WARNING:, BUG:, Oops, a call
trace) or lupine line on the console, QEMU ending, or memory that grows after warm-up
(MemAvailable at the end more than 4 MiB below its level after the first tenth of the time).
Prints a table: rounds, requests, rounds that stalled in QEMU's port forwarding (see
bench/apps.py; not counted, the soak goes on), KML call entries and raw syscalls of
kernel-mode processes during the soak, and MemAvailable after warm-up, lowest, at the end.

usage: bench/soak.py [--minutes N] [--apps redis,nginx,memcached]
"""
import os, random, re, socket, subprocess, sys, tempfile, time

ARGS = sys.argv[1:]
sys.argv[1:] = []  # bench/apps.py reads its own arguments when imported
import apps  # noqa: E402
import lib  # noqa: E402

PROFILES = {"redis": "lupine-redis+kml", "nginx": "lupine-nginx+kml",
            "memcached": "lupine-general+kml"}
PORTS = {"redis": 6379, "nginx": 80, "memcached": 11211}
MEM = 256
KEYS = 1000
WARNINGS = re.compile(r"WARNING:|BUG:|Oops|Call Trace|Out of memory|lupine: (fatal|exit|killed)")


def parse_args(argv):
    minutes, chosen = 30.0, list(PROFILES)
    it = iter(argv)
    for a in it:
        if a == "--minutes":
            minutes = float(next(it, "0"))
        elif a == "--apps":
            chosen = next(it, "").split(",")
        else:
            sys.exit(f"bench/soak: unknown argument {a!r}\n{__doc__.splitlines()[-1]}")
    if minutes <= 0 or any(a not in PROFILES for a in chosen):
        sys.exit(f"bench/soak: --minutes > 0, --apps some of {','.join(PROFILES)}")
    return minutes, chosen


class SoakVm(apps.Vm):
    """bench/apps.py's VM, with 2 vCPUs."""

    def command(self):
        cmd = super().command()
        i = cmd.index("-smp")
        cmd[i + 1] = "2"
        return cmd

    def meminfo(self):
        """MemAvailable in KiB, through kml_counts."""
        with socket.create_connection(("127.0.0.1", self.kml_port), timeout=10) as s:
            text = b""
            while chunk := s.recv(4096):
                text += chunk
        m = re.search(rb"^MemAvailable:\s+(\d+) kB", text, re.M)
        if not m:
            raise RuntimeError(f"no /proc/meminfo from the guest: {text[-300:]!r}")
        return int(m.group(1))


def redis_pipeline(port, commands):
    """The reply lines of pipelined commands whose replies are one line or one bulk string."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(b"".join(apps.resp(*c) for c in commands))
        f = s.makefile("rb")
        replies = []
        for _ in commands:
            line = f.readline().rstrip(b"\r\n").decode()
            if line.startswith("$") and line != "$-1":
                line = f.readline().rstrip(b"\r\n").decode()
            replies.append(line)
        return replies


def value(i):
    return f"value-{i}-" + "x" * (i % 50)


class Redis:
    def __init__(self, vm):
        self.vm = vm
        got = redis_pipeline(vm.port, [("SET", f"soak:{i}", value(i)) for i in range(KEYS)])
        if got != ["+OK"] * KEYS:
            raise RuntimeError(f"redis: SET of the known keys: {set(got)}")

    def round(self):
        rates = apps.redis_bench(self.vm, 20000, 10)
        self.check(random.sample(range(KEYS), 100))
        return 40000, rates

    def check(self, keys):
        got = redis_pipeline(self.vm.port, [("GET", f"soak:{i}") for i in keys])
        wrong = [i for i, g in zip(keys, got) if g != value(i)]
        if wrong:
            raise RuntimeError(f"redis: {len(wrong)} known keys lost or wrong, e.g. soak:{wrong[0]}")

    def finish(self):
        self.check(range(KEYS))
        size = redis_pipeline(self.vm.port, [("DBSIZE",)])[0]
        if size != f":{KEYS + 1}":  # the known keys and redis-benchmark's one key
            raise RuntimeError(f"redis: DBSIZE {size}, want {KEYS + 1}")


class Nginx:
    def __init__(self, vm):
        self.vm = vm
        self.page = self.get()

    def get(self):
        with socket.create_connection(("127.0.0.1", self.vm.port), timeout=30) as s:
            s.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200 "):
            raise RuntimeError(f"nginx: {head[:100]!r}")
        return body

    def round(self):
        rates = {"nginx-conn": apps.ab(self.vm, 2000, 10, False),
                 "nginx-sess": apps.ab(self.vm, 2000, 10, True)}
        if self.get() != self.page:
            raise RuntimeError("nginx: the page changed")
        return 4000, rates

    def finish(self):
        pass


class Memcached:
    def __init__(self, vm):
        self.vm, self.n = vm, 0

    def round(self):
        ops = 2000
        with socket.create_connection(("127.0.0.1", self.vm.port), timeout=60) as s:
            f = s.makefile("rb")
            # 10,000 distinct keys, set again round after round: the data stops growing once
            # they all exist, so memory must too.
            for i in (j % 10_000 for j in range(self.n, self.n + ops // 2)):
                v = value(i).encode()
                s.sendall(b"set soak:%d 0 0 %d\r\n%s\r\n" % (i, len(v), v))
                if f.readline() != b"STORED\r\n":
                    raise RuntimeError(f"memcached: set soak:{i} not stored")
                s.sendall(b"get soak:%d\r\n" % i)
                want = b"VALUE soak:%d 0 %d\r\n%s\r\nEND\r\n" % (i, len(v), v)
                got = f.readline() + f.readline() + f.readline()
                if got != want:
                    raise RuntimeError(f"memcached: get soak:{i}: {got!r}")
        self.n += ops // 2
        return ops, {}

    def finish(self):
        pass


LOADS = {"redis": Redis, "nginx": Nginx, "memcached": Memcached}


def soak(app, minutes, lupine_image, init, work):
    profile = PROFILES[app]
    kernel = os.path.join(lib.kernel_dir(profile), "bzImage")
    disk = apps.disk(app, True, lupine_image, init, work)
    with SoakVm(profile, kernel, disk, MEM, PORTS[app], work) as vm:
        probe, answer = {"redis": (b"PING\r\n", b"+PONG\r\n"),
                         "nginx": (b"GET /index.html HTTP/1.0\r\n\r\n", b"HTTP/1.1 200 "),
                         "memcached": (b"version\r\n", b"VERSION ")}[app]
        if vm.first_request(probe, answer, 120) is None:
            raise RuntimeError(f"{app}: never answered\n{vm.describe()}")
        load = LOADS[app](vm)
        calls0, raw0 = vm.kml_counts()
        start = time.monotonic()
        end = start + minutes * 60
        rounds = requests = stalls = 0
        memory = []  # (seconds, MemAvailable KiB)
        while time.monotonic() < end:
            try:
                n, _ = load.round()
            except apps.Stalled as e:  # QEMU's hostfwd backlog, not the guest (bench/apps.py)
                apps.log(f"soak: {app}: {e}")
                stalls += 1
                continue
            rounds, requests = rounds + 1, requests + n
            memory.append((time.monotonic() - start, vm.meminfo()))
            bad = vm.failed() or WARNINGS.search(vm.console())
            if bad:
                raise RuntimeError(f"{app}: {bad}\n{vm.describe()}")
        load.finish()
        calls, raw = (a - b for a, b in zip(vm.kml_counts(), (calls0, raw0)))
        bad = WARNINGS.search(vm.console())
        if bad:
            raise RuntimeError(f"{app}: {bad.group(0)} on the console\n{vm.describe()}")
    warm = next(m for t, m in memory if t >= minutes * 6) if memory[-1][0] >= minutes * 6 \
        else memory[0][1]
    low, last = min(m for _, m in memory), memory[-1][1]
    if last < warm - 4096:
        raise RuntimeError(f"{app}: MemAvailable fell from {warm} to {last} KiB after warm-up")
    return [app, profile, rounds, requests, stalls, calls, raw, warm // 1024, low // 1024,
            last // 1024]


def main():
    minutes, chosen = parse_args(ARGS)
    lupine_image = lib.cargo_release("lupine-image")
    init = lib.lupine_init()
    rows = []
    with tempfile.TemporaryDirectory(prefix="lupine-soak-") as work:
        for app in chosen:
            os.makedirs(os.path.join(work, app))
            apps.log(f"soak: {app}, {minutes:g} min")
            rows.append(soak(app, minutes, lupine_image, init, os.path.join(work, app)))
    print(f"soak of {minutes:g} min per app, kml=on, 2 vCPUs, {MEM} MiB, TCG")
    head = ["app", "kernel", "rounds", "requests", "stalled rounds", "KML call entries",
            "raw syscalls",
            "MemAvailable after warm-up MiB", "lowest", "at the end"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(f"{x:,}" if isinstance(x, int) else str(x) for x in r) + " |")


if __name__ == "__main__":
    main()

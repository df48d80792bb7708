#!/usr/bin/env python3
"""bench/init.py: what lupine-init adds between its start and the exec of the app.

In fresh namespaces (`unshare --pid --mount --net --uts --fork`, a chroot, one veth
interface), bench/stamp.c prints CLOCK_MONOTONIC and execs either the app directly (itself,
printing the time again) or lupine-init, whose manifest runs the same app after what a real
VM needs: the default mounts, loopback, eth0 with an address, a route, resolv.conf, hosts.
Each run measures exec-to-app-start; the difference of the medians is init's cost.

Rows: exec mode (the app replaces init), supervise mode (init forks the app and relays its
output through pipes), supervise with syslog over UDP (init's messages queued and sent), and
supervise with syslog and the per-instance configuration fetched from a metadata service
(`lupine.config=mmds`: a token PUT and a GET over HTTP, the fragment merged and the manifest
validated again). The metadata service is a small Python server in the namespace at
169.254.169.254:80 (reached over loopback: both ends of the veth are in the namespace), the
syslog server a UDP socket at 10.0.2.2:514. The supervise rows mount /proc before init (with
a /proc/cmdline of their own, for `lupine.config`), so init skips that one mount. Needs root.

usage: bench/init.py [RUNS]   (default 30)
"""
import json, os, shutil, statistics, subprocess, sys, tempfile

import lib
from lib import HERE, sh

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 30

NETWORK = {
    "interfaces": [{"name": "eth0", "addresses": ["10.0.2.15/24"]}],
    "routes": [{"destination": "default", "gateway": "10.0.2.2"}],
    "dns": {"nameservers": ["10.0.2.3"]},
}

# Firecracker's MMDS V2, as much as lupine-init asks of it, and a syslog socket that takes
# the datagrams. Writes $READY once both listen.
SERVICES = r"""
import json, os, secrets, socket
from http.server import BaseHTTPRequestHandler, HTTPServer
TOKEN = secrets.token_hex(16)
FRAGMENT = json.dumps({"hostname": "bench-mmds", "app": {"env": {"SECRET": "s3cr3t"}}})
class Mmds(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self, status, body=""):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())
    def do_PUT(self):
        self.answer(200, TOKEN)
    def do_GET(self):
        ok = self.headers.get("X-metadata-token") == TOKEN and self.path == "/lupine"
        self.answer(200, FRAGMENT) if ok else self.answer(401)
    def log_message(self, *args):
        pass
server = HTTPServer(("169.254.169.254", 80), Mmds)
syslog = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
syslog.bind(("10.0.2.2", 514))
open(os.environ["READY"], "w").close()
server.serve_forever()
"""

# name: (manifest changes, kernel command line, services running); the supervise rows all
# have the services running, so that they differ only in what init is asked to do.
ROWS = {
    "app under lupine-init": ({"mode": "exec"}, None, False),
    "supervise": ({"mode": "supervise"}, "", True),
    "supervise + syslog": (
        {"mode": "supervise", "log": {"syslog": {"address": "udp://10.0.2.2:514"}}}, "", True),
    "supervise + syslog + MMDS": (
        {"mode": "supervise", "log": {"syslog": {"address": "udp://10.0.2.2:514"}}},
        "lupine.config=mmds", True),
}


def main():
    if os.geteuid() != 0:
        sys.exit("bench/init: needs root (namespaces)")
    init = lib.lupine_init()
    # tmpfs, like the initramfs of a VM: a disk filesystem would add its rename costs.
    root = tempfile.mkdtemp(prefix="lupine-bench-", dir="/dev/shm")
    try:
        os.makedirs(os.path.join(root, "etc"))
        sh("musl-gcc", "-static", "-O2", "-o", os.path.join(root, "stamp"),
           os.path.join(HERE, "stamp.c"))
        shutil.copy(init, os.path.join(root, "lupine-init"))
        services = os.path.join(root, "services.py")
        with open(services, "w") as f:
            f.write(SERVICES)
        rows = {}
        for name, program, setup in runs(root, services):
            once(root, program, setup)  # warm the page cache
            rows[name] = statistics.median(once(root, program, setup) for _ in range(RUNS)) / 1e6
    finally:
        shutil.rmtree(root)

    size = os.path.getsize(init)
    print(f"lupine-init: {size} bytes ({size / 1024:.0f} KiB), static x86-64")
    print(f"time from exec to the app's first instruction, median of {RUNS} runs")
    print(f"| {'run':<26} | {'median ms':>9} | {'added by init':>13} |")
    print(f"|{'-' * 28}|{'-' * 11}|{'-' * 15}|")
    direct = rows["app directly"]
    for name, ms in rows.items():
        added = f"{ms - direct:13.3f}" if name != "app directly" else f"{'':13}"
        print(f"| {name:<26} | {ms:9.3f} | {added} |")


def runs(root, services):
    """(row name, program to stamp, shell set-up before it) for each row; writes each row's
    manifest and command line into `root` as it goes (the rows run one after another)."""
    yield "app directly", "/stamp", ""
    for name, (changes, cmdline, with_services) in ROWS.items():
        manifest = {"version": 1, "app": {"path": "/stamp"}, "hostname": "bench",
                    "network": NETWORK, **changes}
        setup = []
        if cmdline is not None:
            setup.append(f'echo "{cmdline}" > "$0/cmdline"; mkdir -p "$0/proc"; '
                         'mount -t proc proc "$0/proc"; mount --bind "$0/cmdline" "$0/proc/cmdline"')
        if with_services:
            setup.append("ip addr add 10.0.2.2/24 dev peer0; ip addr add 169.254.169.254/32 dev peer0; "
                         "ip link set peer0 up; ip link set lo up; "
                         f'READY="$0/ready" python3 {services} & '
                         'while [ ! -e "$0/ready" ]; do sleep 0.01; done; rm "$0/ready"; '
                         # until Python has settled in its loop, off the measured CPUs' way
                         "sleep 0.1")
        yield name, "/lupine-init", (manifest, "\n".join(setup))


def once(root, program, setup):
    """Nanoseconds from stamp's exec of `program` to the app's start, in fresh namespaces."""
    if setup:
        manifest, setup = setup
        with open(os.path.join(root, "etc/lupine.json"), "w") as f:
            json.dump(manifest, f)
    script = ("ip link add eth0 type veth peer name peer0\n"
              f"{setup}\n"
              f'exec chroot "$0" /stamp {program}')
    out = subprocess.run(
        ["unshare", "--pid", "--mount", "--net", "--uts", "--fork", "sh", "-ec",
         script, root], capture_output=True, text=True, env={}).stdout
    # No check of the status: a supervising init's reboot(2) ends its PID namespace with
    # SIGHUP, which is how it should end.
    if "lupine: fatal" in out:
        sys.exit(f"bench/init: lupine-init did not run the app:\n{out}")
    before, started = map(int, out.split()[:2])
    return started - before


if __name__ == "__main__":
    main()

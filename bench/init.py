#!/usr/bin/env python3
"""bench/init.py: what lupine-init adds between its start and the exec of the app.

In fresh namespaces (`unshare --pid --mount --net --uts --fork`, a chroot, one veth
interface), bench/stamp.c prints CLOCK_MONOTONIC and execs either the app directly (itself,
printing the time again) or lupine-init, whose manifest runs the same app after what a real
VM needs: the default mounts, loopback, eth0 with an address, a route, resolv.conf, hosts.
Each run measures exec-to-app-start; the difference of the medians is init's cost. Needs
root.

usage: bench/init.py [RUNS]   (default 30)
"""
import json, os, shutil, statistics, subprocess, sys, tempfile

import lib
from lib import HERE, sh

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 30


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
        with open(os.path.join(root, "etc/lupine.json"), "w") as f:
            json.dump({
                "version": 1,
                "app": {"path": "/stamp"},
                "hostname": "bench",
                "network": {
                    "interfaces": [{"name": "eth0", "addresses": ["10.0.2.15/24"]}],
                    "routes": [{"destination": "default", "gateway": "10.0.2.2"}],
                    "dns": {"nameservers": ["10.0.2.3"]},
                },
                "mode": "exec",
            }, f)

        def once(program):
            script = ("ip link add eth0 type veth peer name peer0\n"
                      f'exec chroot "$0" /stamp {program}')
            out = subprocess.run(
                ["unshare", "--pid", "--mount", "--net", "--uts", "--fork", "sh", "-ec",
                 script, root], check=True, capture_output=True, text=True, env={}).stdout
            before, started = map(int, out.split()[:2])
            return started - before

        rows = {}
        for name, program in (("app directly", "/stamp"), ("app under lupine-init", "/lupine-init")):
            once(program)  # warm the page cache
            rows[name] = statistics.median(once(program) for _ in range(RUNS)) / 1e6
    finally:
        shutil.rmtree(root)

    size = os.path.getsize(init)
    print(f"lupine-init: {size} bytes ({size / 1024:.0f} KiB), static x86-64")
    print(f"time from exec to the app's first instruction, median of {RUNS} runs")
    print(f"| {'run':<24} | {'median ms':>9} |")
    print(f"|{'-' * 26}|{'-' * 11}|")
    for name, ms in rows.items():
        print(f"| {name:<24} | {ms:9.3f} |")
    added = rows["app under lupine-init"] - rows["app directly"]
    print(f"| {'added by lupine-init':<24} | {added:9.3f} |")


if __name__ == "__main__":
    main()

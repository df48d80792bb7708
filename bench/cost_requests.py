#!/usr/bin/env python3
"""bench/cost_requests.py: the per-request rows of bench/cost.py, counted, not timed.

The whole load runs inside the guest, so that nothing the host does enters the counts: the
app (redis or nginx as apps/build.sh builds them) and bench/cost/load.c, a small client that
starts it, waits until it accepts on 127.0.0.1, and runs two loads of N requests between
markers, one connection at a time: redis N SETs, then N GETs of the same key (RESP, as
redis-benchmark sends them); nginx N GET /index.html on a new connection each (HTTP/1.0, as
`ab` sends them), then N on keep-alive connections (HTTP/1.1; nginx.conf closes one after 100
requests). A figure is everything the guest's one vCPU executes per request: the server, the
client (two system calls and some hundred instructions a request), the loopback between them
(TCP both ways) and what runs meanwhile (timer ticks, redis's serverCron), apportioned to the
requests. The guest boots the column's vmlinux (through its PVH entry, as Firecracker boots
it, without KASLR, so that the kernel's symbols place the interrupts and exceptions) with an
initramfs of the app's root filesystem, -smp 1, -m 256, under `-icount shift=0,sleep=off`, as the boot rows: with no
device traffic the run is reproducible, and each column boots twice; the residue is the
largest difference of any count per request between the two.

Columns: microvm, lupine-general, the app's profile, and that profile with KML booted without
and with `kml=on` (the server relinked, under /trusted: at CPL 3 with the trampolines' real
`syscall`, and at CPL 0 through the call entry; the client stays at CPL 3 on both).

usage: bench/cost_requests.py [redis] [nginx]
"""
import json, os, shutil, subprocess, sys, tempfile

import cost, lib
from lib import TOP, sh

REQUESTS = 2000
# app: (load.c's load, port, the two loads' names)
APPS = {"redis": ("redis", 6379, ("redis SET", "redis GET")),
        "nginx": ("http", 80, ("nginx, a connection per request", "nginx, keep-alive"))}
EVENTS = ("syscall", "sysretq", "iretq", "swapgs", "mov_cr3")


def columns(app):
    """(label, kernel profile, kml=on) of each column."""
    own = f"lupine-{app}"
    return [("microvm", "microvm", False), ("lupine-general", "lupine-general", False),
            (own, own, False), (f"{own}+kml, kml off (CPL 3)", own + "+kml", False),
            (f"{own}+kml, kml=on (CPL 0)", own + "+kml", True)]


def app_initrd(app, work):
    """WORK/APP/initrd.cpio: lupine-init, the app's root filesystem with its executable
    relinked under /trusted (used by the +kml columns; the others run the original), load, and
    a manifest (the app's lupine.json) whose app is load starting the server."""
    build = os.path.join(TOP, "target/apps", app)
    if not os.path.exists(os.path.join(build, "lupine.json")):
        sh(os.path.join(TOP, "apps/build.sh"), app, os.path.join(TOP, "target/apps"),
           stdout=subprocess.DEVNULL)
    with open(os.path.join(build, "lupine.json")) as f:
        manifest = json.load(f)
    d = os.path.join(work, app)
    root = lib.initramfs_root(d, ["trusted"])
    shutil.copytree(os.path.join(build, "rootfs"), root, symlinks=True, dirs_exist_ok=True)
    server = manifest["app"]
    exe = os.path.join(root, "trusted", os.path.basename(server["path"]))
    sh(lib.cargo_release("lupine-relink"), root + server["path"], "-o", exe,
       stderr=subprocess.DEVNULL)
    shutil.copy(cost.musl_static("load", d), os.path.join(root, "load"))
    load, port, _ = APPS[app]
    manifest["app"] = dict(server, path="/load", args=[
        load, str(port), str(REQUESTS), "--", "SERVER", *server.get("args", [])])
    os.mknod(os.path.join(root, "dev", "console"), 0o600 | 0o020000, os.makedev(5, 1))
    images = {}
    for trusted in (False, True):
        manifest["app"]["args"][4] = "/trusted/" + os.path.basename(exe) if trusted \
            else server["path"]
        with open(os.path.join(root, "etc", "lupine.json"), "w") as f:
            json.dump(manifest, f)
        images[trusted] = lib.pack_initramfs(root, os.path.join(d, f"initrd-{trusted}.cpio"))
    return images


def per_request(lines):
    """Per-request counts of the two loads, from one boot's plugin lines (lupine-init's marker,
    then load's three)."""
    return [{k: v / REQUESTS for k, v in cost.between(lines[i], lines[i + 1]).items()}
            for i in (1, 2)]


def request_rows(so, work, selected=("redis", "nginx")):
    rows = ["| per request (the whole guest) | column | kernel instructions | program "
            "instructions | total (x microvm) | syscall / sysretq / iretq / swapgs / CR3 | "
            "interrupts / exceptions | modelled cycles (x microvm) | residue (2 runs) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for app in selected:
        images = app_initrd(app, work)
        counts = {}
        for label, profile, kml in columns(app):
            runs = []
            for n in (1, 2):
                out = os.path.join(work, f"{app}-{profile}-{kml}-{n}.json")
                lines = cost.boot_counts(so, profile, images["+kml" in profile], out, 4,
                                         " kml=on" if kml else "", "vmlinux",
                                         cost.symbol_file(profile, work))
                runs.append(per_request(lines))
            counts[label] = runs
        for k, load in enumerate(APPS[app][2]):
            base = counts["microvm"][0][k]
            for label, _, _ in columns(app):
                d, e = counts[label][0][k], counts[label][1][k]
                residue = max(abs(d[key] - e[key]) for key in cost.KEYS)
                total = d["kernel"] + d["program"]
                ev = " / ".join(f"{d[key]:.2f}" for key in EVENTS)
                cycles = cost.modelled_cycles(d)
                rows.append(
                    f"| {load} | {label} | {d['kernel']:,.0f} | {d['program']:,.0f} | "
                    f"{total:,.0f} ({total / (base['kernel'] + base['program']):.2f}) | {ev} | "
                    f"{d['interrupts']:.2f} / {d['exceptions']:.2f} | {cycles:,.0f} "
                    f"({cycles / cost.modelled_cycles(base):.2f}) | {residue:,.1f} |")
    return rows


def main():
    selected = sys.argv[1:] or list(APPS)
    for app in selected:
        if app not in APPS:
            sys.exit(f"bench/cost_requests: unknown app {app!r}: use {' or '.join(APPS)}")
    so = cost.plugin()
    with tempfile.TemporaryDirectory(prefix="lupine-bench-cost-") as work:
        print("\n".join(request_rows(so, work, selected)))


if __name__ == "__main__":
    main()

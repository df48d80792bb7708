//! Dynamically linked apps, as real images ship them: Debian 12's own `redis-server`, `nginx`,
//! `memcached` and `lighttpd` packages with their library dependencies (apps/debian.sh: `apt-get
//! download`, `dpkg-deb -x`), linked against glibc, and an Alpine-style redis (apps/build.sh
//! redis-musl: the project's build linked against Debian's musl, whose `libc.so` is the
//! interpreter). Each becomes an OCI image and a relinked ext4 disk through lupine-image, which
//! relinks the C library (glibc's `libc.so.6` and `ld-linux-x86-64.so.2`, musl's `libc.so`); the
//! programs themselves have no syscall site.
//!
//! - On lupine-general they serve the host's redis-benchmark, ab and a memcached client, as the
//!   static builds do; lighttpd, with its error log on `/dev/stderr` as its users configure it,
//!   serves its page after dropping to www-data, and its start-up line reaches the console.
//! - On lupine-general+kml with `kml=on`, the executable under /trusted: the app runs at CPL 0,
//!   and /proc/kml (read through bench/kml_counts.c, the app's parent, on a second port) shows
//!   the call entries rising with the load, at least one per request: the relinked C library's
//!   sites call the KML entry. Same replies, no kernel warning.
//! - A kernel derived from lupine-base plus the fragment `lupine-image --kernel-fragment` writes
//!   for the redis image boots it and serves redis-benchmark.

#[path = "kml/common.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use guest_tests::{
    app, app_image, derived_kernel, lupine_init, workspace_root, Running, TempDir, Vm, GENERAL,
};
use lupine_image::Options;
use serde_json::Value;

/// Where bench/kml_counts.c answers with /proc/kml.
const KML_PORT: u16 = 7777;

/// How a disk is made: on a KML profile the executable moves under /trusted (its old path a
/// symlink to it) and kml_counts starts it.
#[derive(Clone, Copy, PartialEq)]
enum Disk {
    Plain,
    Trusted,
}

/// Moves the program at `path` in `rootfs` (through relative symbolic links, as Debian's
/// `redis-server -> redis-check-rdb`) to /trusted/NAME and leaves a symlink at `path`.
fn move_to_trusted(rootfs: &Path, path: &str) {
    let link = rootfs.join(path.trim_start_matches('/'));
    let real = std::fs::canonicalize(&link).unwrap();
    let name = link.file_name().unwrap();
    let trusted = rootfs.join("trusted");
    std::fs::create_dir_all(&trusted).unwrap();
    std::fs::copy(&real, trusted.join(name)).unwrap();
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(Path::new("/trusted").join(name), &link).unwrap();
}

/// The C library files lupine-image must relink in the image of `app` (target/apps/APP).
fn c_library(app: &str) -> &'static [&'static str] {
    if app.ends_with("-musl") {
        &["ld-musl-x86_64.so.1"]
    } else {
        &["libc.so.6", "ld-linux-x86-64.so.2"]
    }
}

/// The image of `app` (target/apps/APP) as a relinked ext4 disk in `tmp` (and the fragment
/// lupine-image derives for its entry point). Returns the disk and the fragment.
fn disk(app_name: &str, how: Disk, tmp: &TempDir) -> (PathBuf, String) {
    let build = app(app_name).unwrap();
    let rootfs = tmp.join("rootfs");
    let st = Command::new("cp")
        .arg("-a")
        .arg(build.join("rootfs"))
        .arg(&rootfs)
        .status()
        .unwrap();
    assert!(st.success());
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(build.join("lupine.json")).unwrap()).unwrap();
    let path = manifest["app"]["path"].as_str().unwrap().to_string();
    let port = KML_PORT.to_string();
    let mut entry: Vec<&str> = Vec::new();
    if how == Disk::Trusted {
        move_to_trusted(&rootfs, &path);
        let counts = rootfs.join("kml_counts");
        let out = Command::new("musl-gcc")
            .args(["-static", "-O2", "-o"])
            .arg(&counts)
            .arg(workspace_root().join("bench/kml_counts.c"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        entry = vec!["/kml_counts", &port];
    }
    let img = app_image(&build, &rootfs, &entry, tmp.path()).unwrap();
    let output = tmp.join("root.ext4");
    let kernel_fragment = tmp.join("app.config");
    let built = lupine_image::build(&Options {
        manifest: Some(img.fragment),
        relink: true,
        kernel_fragment: Some(kernel_fragment.clone()),
        ..Options::new(img.image, output.clone(), lupine_init().unwrap())
    })
    .unwrap_or_else(|e| panic!("lupine-image: {e}"));
    let summary = built.relink.expect("--relink gives a summary");
    for lib in c_library(app_name) {
        assert!(
            summary.relinked.iter().any(|r| r.path.ends_with(lib)),
            "{lib} not relinked: {summary:?}"
        );
    }
    (output, std::fs::read_to_string(kernel_fragment).unwrap())
}

/// Boots `disk` on `profile` with `cmdline`, the app's `port` (and kml_counts' on a KML
/// profile) forwarded.
fn boot(disk: &Path, profile: &str, cmdline: &str, ports: &[u16]) -> Running {
    let mut vm = Vm::lupine_disk(profile, disk)
        .unwrap()
        .smp(2)
        .append(cmdline)
        .timeout(Duration::from_secs(300));
    for p in ports {
        vm = vm.forward(*p);
    }
    vm.spawn().unwrap()
}

/// Stops the app with SysRq e: a clean exit, and no kernel warning on the console.
fn stop(mut vm: Running) {
    vm.sysrq('e').unwrap();
    let out = vm.wait().unwrap();
    out.assert_exit_status(0);
    common::assert_no_kernel_errors(&out);
}

/// Waits until the guest's `port` answers `probe` with a reply starting with `answer`.
fn wait_ready(vm: &Running, port: u16, probe: &[u8], answer: &[u8]) {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let attempt = || -> std::io::Result<Vec<u8>> {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", vm.host_port(port)))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.write_all(probe)?;
            let mut buf = vec![0u8; 256];
            let n = s.read(&mut buf)?;
            buf.truncate(n);
            Ok(buf)
        };
        match attempt() {
            Ok(b) if b.starts_with(answer) => return,
            _ if std::time::Instant::now() > deadline => {
                panic!("guest port {port} never answered\n{}", vm.console())
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// redis-benchmark's SET and GET (`n` each) and a known key; panics on an error reply.
/// Returns the requests made.
fn redis_load(vm: &Running, n: u32) -> u32 {
    let port = vm.host_port(6379).to_string();
    let out = Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-c",
            "10",
            "-q",
            "-t",
            "set,get",
        ])
        .args(["-n", &n.to_string()])
        .output()
        .expect("redis-benchmark (Debian redis-tools: scripts/setup.sh)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("SET: ") && text.contains("GET: "),
        "redis-benchmark: {out:?}\n{}",
        vm.console()
    );
    let cli = |args: &[&str]| {
        let o = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(cli(&["SET", "debian", "in unikernel clothing"]), "OK");
    assert_eq!(cli(&["GET", "debian"]), "in unikernel clothing");
    2 * n + 2
}

/// `ab -n n -c 10` against nginx's /index.html: every request answered 200 with Debian's page.
/// Returns the requests made.
fn nginx_load(vm: &Running, n: u32) -> u32 {
    let url = format!("http://127.0.0.1:{}/index.html", vm.host_port(80));
    let out = Command::new("ab")
        .args(["-q", "-c", "10", "-n", &n.to_string(), &url])
        .output()
        .expect("ab (apache2-utils: scripts/setup.sh)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && text.contains(&format!("Complete requests:      {n}"))
            && text.contains("Failed requests:        0")
            && !text.contains("Non-2xx"),
        "ab: {text}\n{}",
        vm.console()
    );
    let page = vm.http_get(80, "/index.html").unwrap();
    assert!(
        page.starts_with("HTTP/1.1 200 OK") && page.contains("Welcome to nginx!"),
        "{page}"
    );
    n + 1
}

#[test]
fn debian_redis_serves_redis_benchmark_on_lupine_general() {
    let tmp = TempDir::new("deb-redis-general").unwrap();
    let (disk, _) = disk("redis-deb", Disk::Plain, &tmp);
    let vm = boot(&disk, GENERAL, "", &[6379]);
    wait_ready(&vm, 6379, b"PING\r\n", b"+PONG");
    redis_load(&vm, 2000);
    stop(vm);
}

#[test]
fn debian_nginx_serves_ab_on_lupine_general() {
    let tmp = TempDir::new("deb-nginx-general").unwrap();
    let (disk, _) = disk("nginx-deb", Disk::Plain, &tmp);
    let vm = boot(&disk, GENERAL, "", &[80]);
    wait_ready(&vm, 80, b"GET / HTTP/1.0\r\n\r\n", b"HTTP/1.1 200");
    nginx_load(&vm, 500);
    stop(vm);
}

/// The upstream version of package `name` in the app built in `build` (its build-info.json):
/// Debian's version without epoch and revision, `1.4.69` for `1.4.69-1`.
fn upstream_version(build: &Path, name: &str) -> String {
    let info: Value =
        serde_json::from_slice(&std::fs::read(build.join("build-info.json")).unwrap()).unwrap();
    let version = info["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["package"] == name)
        .unwrap_or_else(|| panic!("no package {name} in {info}"))["version"]
        .as_str()
        .unwrap();
    let version = version.split_once(':').map_or(version, |(_, v)| v);
    version
        .rsplit_once('-')
        .map_or(version, |(v, _)| v)
        .to_string()
}

/// Waits up to 30 s for `text` on the console: the app's output reaches it through init.
fn wait_console(vm: &Running, text: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !vm.console().contains(text) {
        assert!(
            std::time::Instant::now() < deadline,
            "no {text:?} on the console\n{}",
            vm.console()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Debian's lighttpd with `server.errorlog = "/dev/stderr"`, as its users write it
/// (apps/debian/lighttpd.conf): it starts as root, binds port 80, drops to www-data and only
/// then opens /dev/stderr anew (through /proc/self/fd/2), which www-data must be allowed to do
/// with the stderr init gave the app. It serves the image's page and a 404, and its start-up
/// line, "server started (lighttpd/VERSION)", reaches the console.
#[test]
fn debian_lighttpd_serves_with_its_error_log_on_stderr() {
    let tmp = TempDir::new("deb-lighttpd-general").unwrap();
    let (disk, _) = disk("lighttpd-deb", Disk::Plain, &tmp);
    let build = app("lighttpd-deb").unwrap();
    let page = std::fs::read_to_string(build.join("rootfs/var/www/html/index.html")).unwrap();
    let started = format!(
        "server started (lighttpd/{})",
        upstream_version(&build, "lighttpd")
    );
    let vm = boot(&disk, GENERAL, "", &[80]);
    wait_ready(&vm, 80, b"GET / HTTP/1.0\r\n\r\n", b"HTTP/1.0 200");
    let index = vm.http_get(80, "/").unwrap();
    let (head, body) = index.split_once("\r\n\r\n").unwrap_or((&index, ""));
    assert!(
        head.starts_with("HTTP/1.0 200 OK\r\n")
            && head.contains("\r\nContent-Type: text/html")
            && body == page,
        "GET /: {index}\n{}",
        vm.console()
    );
    let missing = vm.http_get(80, "/no-such-page.html").unwrap();
    assert!(missing.starts_with("HTTP/1.0 404 "), "{missing}");
    wait_console(&vm, &started);
    stop(vm);
}

/// `n` memcached sets and gets of distinct keys on one connection, each answered right.
/// Returns the requests made.
fn memcached_load(vm: &Running, n: u32) -> u32 {
    use std::io::{BufRead, BufReader, Write};
    let s = std::net::TcpStream::connect(("127.0.0.1", vm.host_port(11211))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    let mut read = |r: &mut BufReader<std::net::TcpStream>| {
        line.clear();
        r.read_line(&mut line).unwrap();
        line.clone()
    };
    for i in 0..n {
        write!(w, "set k{i} 0 0 5\r\nv{:04}\r\nget k{i}\r\n", i % 10000).unwrap();
        assert_eq!(read(&mut r), "STORED\r\n", "set k{i}");
        assert_eq!(read(&mut r), format!("VALUE k{i} 0 5\r\n"), "get k{i}");
        assert_eq!(read(&mut r), format!("v{:04}\r\n", i % 10000));
        assert_eq!(read(&mut r), "END\r\n");
    }
    2 * n
}

#[test]
fn debian_memcached_serves_sets_and_gets_on_lupine_general() {
    let tmp = TempDir::new("deb-memcached-general").unwrap();
    let (disk, _) = disk("memcached-deb", Disk::Plain, &tmp);
    let vm = boot(&disk, GENERAL, "", &[11211]);
    wait_ready(&vm, 11211, b"version\r\n", b"VERSION ");
    memcached_load(&vm, 1000);
    stop(vm);
}

#[test]
fn debian_memcached_at_cpl0_calls_through_its_relinked_glibc() {
    at_cpl0(
        "memcached-deb",
        11211,
        b"version\r\n",
        b"VERSION ",
        memcached_load,
    );
}

/// Call-entry system calls and raw `syscall` instructions of kernel-mode processes so far.
fn kml_counts(vm: &Running) -> (u64, u64) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", vm.host_port(KML_PORT))).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (mut calls, mut raw, mut cpus) = (0, 0, 0);
    for l in text.lines().filter(|l| l.starts_with("cpu")) {
        let w: Vec<&str> = l.split_whitespace().collect();
        calls += w[2].parse::<u64>().unwrap();
        raw += w[4].parse::<u64>().unwrap();
        cpus += 1;
    }
    assert!(cpus > 0, "no /proc/kml: {text:?}");
    (calls, raw)
}

/// The app at CPL 0 under `load`: the call entries rise by at least one per request, and at
/// least 99% of its system calls come through them.
fn at_cpl0(name: &str, port: u16, probe: &[u8], answer: &[u8], load: fn(&Running, u32) -> u32) {
    let tmp = TempDir::new(&format!("{name}-kml")).unwrap();
    let (disk, _) = disk(name, Disk::Trusted, &tmp);
    // A TSC clocksource (as bench/apps.py boots): under TCG its calibration fails without
    // tsc_early_khz, and with jiffies every clock_gettime becomes a syscall from the vDSO,
    // which no relinking reaches.
    let vm = boot(
        &disk,
        common::GENERAL_KML,
        "kml=on loglevel=6 tsc_early_khz=2000000 tsc=reliable",
        &[port, KML_PORT],
    );
    wait_ready(&vm, port, probe, answer);
    let before = kml_counts(&vm);
    let n = load(&vm, 2000);
    let after = kml_counts(&vm);
    let (calls, raw) = (after.0 - before.0, after.1 - before.1);
    println!("{name} at CPL 0: {n} requests, {calls} call-entry system calls, {raw} raw syscalls");
    assert!(
        vm.console().contains("runs in kernel mode"),
        "{name} did not run at CPL 0\n{}",
        vm.console()
    );
    assert!(
        calls >= u64::from(n) && calls * 100 >= (calls + raw) * 99,
        "{name}: {calls} call entries, {raw} raw syscalls for {n} requests\n{}",
        vm.console()
    );
    stop(vm);
}

#[test]
fn debian_redis_at_cpl0_calls_through_its_relinked_glibc() {
    at_cpl0("redis-deb", 6379, b"PING\r\n", b"+PONG", redis_load);
}

#[test]
fn alpine_style_redis_at_cpl0_calls_through_its_relinked_musl() {
    at_cpl0("redis-musl", 6379, b"PING\r\n", b"+PONG", redis_load);
}

#[test]
fn alpine_style_redis_serves_redis_benchmark_on_lupine_general() {
    let tmp = TempDir::new("redis-musl-general").unwrap();
    let (disk, _) = disk("redis-musl", Disk::Plain, &tmp);
    let vm = boot(&disk, GENERAL, "", &[6379]);
    wait_ready(&vm, 6379, b"PING\r\n", b"+PONG");
    redis_load(&vm, 2000);
    stop(vm);
}

#[test]
fn debian_nginx_at_cpl0_calls_through_its_relinked_glibc() {
    at_cpl0(
        "nginx-deb",
        80,
        b"GET / HTTP/1.0\r\n\r\n",
        b"HTTP/1.1 200",
        nginx_load,
    );
}

/// The fragment lupine-image derives for Debian's redis-server (the program, libc's functions it
/// imports, its libraries, the manifest's sysctls) on lupine-base: the kernel boots the image and
/// serves redis-benchmark, with none of the options lupine-general adds that nothing asked for.
#[test]
fn debian_redis_on_the_kernel_its_image_derives() {
    let tmp = TempDir::new("deb-redis-derived").unwrap();
    let (disk, fragment) = disk("redis-deb", Disk::Plain, &tmp);
    for want in [
        "CONFIG_EPOLL=y",
        "CONFIG_FUTEX=y",
        "CONFIG_UNIX=y",
        "CONFIG_PROC_SYSCTL=y",
    ] {
        assert!(fragment.contains(want), "no {want}:\n{fragment}");
    }
    for unasked in ["CONFIG_AIO=y", "CONFIG_IPV6=y", "CONFIG_BINFMT_SCRIPT=y"] {
        assert!(!fragment.contains(unasked), "{unasked}:\n{fragment}");
    }
    let kernel = derived_kernel(tmp.path(), &fragment).unwrap();
    let vm = Vm::new(&kernel)
        .disk(&disk)
        .forward(6379)
        .append("root=/dev/vda rootfstype=ext4 rw init=/lupine-init")
        .timeout(Duration::from_secs(300))
        .spawn()
        .unwrap();
    wait_ready(&vm, 6379, b"PING\r\n", b"+PONG");
    redis_load(&vm, 2000);
    stop(vm);
}

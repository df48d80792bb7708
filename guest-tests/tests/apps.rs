//! Real applications (redis, nginx, memcached: static musl builds from Debian source, see
//! `apps/`) as container images, turned into relinked ext4 root disks by lupine-image and booted
//! with `root=/dev/vda init=/lupine-init` on lupine-general and on each app's own profile. The
//! host talks to each through a forwarded loopback port, then stops it with SysRq e on the
//! console (SIGTERM to all but init): it must shut down cleanly, `lupine: exit status 0`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use guest_tests::{app, app_image, lupine_init, Running, TempDir, Vm, GENERAL};
use lupine_image::Options;
use serde_json::{json, Value};

/// The app's build as an OCI image whose config starts it (as its Docker image would) and a
/// manifest fragment with the rest of `apps/APP/lupine.json` and the VM's network; then
/// lupine-image with `--relink`. Returns the ext4 disk.
fn disk(name: &str, tmp: &TempDir) -> PathBuf {
    let build = app(name).unwrap();
    let img = app_image(&build, &build.join("rootfs"), &[], tmp.path()).unwrap();

    let output = tmp.join("root.ext4");
    let built = lupine_image::build(&Options {
        manifest: Some(img.fragment),
        relink: true,
        ..Options::new(img.image, output.clone(), lupine_init().unwrap())
    })
    .unwrap_or_else(|e| panic!("lupine-image: {e}"));
    let binary = img.start["path"].as_str().unwrap();
    let summary = built.relink.expect("--relink gives a summary");
    assert!(
        summary.relinked.iter().any(|r| r.path == binary),
        "{binary} not relinked: {summary:?}"
    );
    output
}

/// Boots the app's disk on `profile` with `port` forwarded, runs `client` against it, stops it
/// with SysRq e and checks the clean exit, and that lupine-init saw the app listen (the
/// manifest's `ready`) once.
fn serve(name: &str, profile: &str, port: u16, client: impl FnOnce(&mut Running)) {
    let tmp = TempDir::new(&format!("app-{name}-{profile}")).unwrap();
    let disk = disk(name, &tmp);
    let mut vm = Vm::lupine_disk(profile, &disk)
        .unwrap()
        .forward(port)
        .timeout(Duration::from_secs(120))
        .spawn()
        .unwrap();
    client(&mut vm);
    vm.sysrq('e').unwrap();
    let out = vm.wait().unwrap();
    out.assert_exit_status(0);
    assert_eq!(out.lines_starting("lupine: ready in ").len(), 1, "{out}");
}

/// A connection to the guest's `port`, retried until the server answers `probe` (QEMU accepts
/// on the host side before the guest listens, then the guest resets the connection).
fn connect(vm: &Running, port: u16, probe: &[u8]) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = || -> std::io::Result<TcpStream> {
            let mut s = TcpStream::connect(("127.0.0.1", vm.host_port(port)))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.write_all(probe)?;
            let mut byte = [0u8; 1];
            s.read_exact(&mut byte)?;
            let mut rest = vec![0u8; 4096];
            let n = s.read(&mut rest)?;
            let _ = (byte, n);
            Ok(s)
        };
        match attempt() {
            Ok(s) => return s,
            Err(e) if Instant::now() > deadline => {
                panic!("guest port {port}: {e}\n--- console ---\n{}", vm.console())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn redis_cli(vm: &Running, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &vm.host_port(6379).to_string()])
        .args(args)
        .output()
        .expect("redis-cli (Debian redis-tools: scripts/setup.sh)");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn redis(profile: &str) {
    serve("redis", profile, 6379, |vm| {
        connect(vm, 6379, b"PING\r\n");
        assert_eq!(
            redis_cli(vm, &["SET", "lupine", "in unikernel clothing"]),
            "OK"
        );
        assert_eq!(redis_cli(vm, &["GET", "lupine"]), "in unikernel clothing");
        assert_eq!(redis_cli(vm, &["DBSIZE"]), "1");
    });
}

#[test]
fn redis_on_lupine_general() {
    redis(GENERAL);
}

#[test]
fn redis_on_lupine_redis() {
    redis("lupine-redis");
}

fn nginx(profile: &str) {
    let page = std::fs::read_to_string(
        app("nginx")
            .unwrap()
            .join("rootfs/etc/nginx/html/index.html"),
    )
    .unwrap();
    serve("nginx", profile, 80, |vm| {
        let response = vm.http_get(80, "/index.html").unwrap();
        assert!(
            response.starts_with("HTTP/1.1 200 OK\r\n")
                && response.contains("Server: nginx/1.22.1"),
            "{response}"
        );
        assert!(response.ends_with(&format!("\r\n\r\n{page}")), "{response}");
        let missing = vm.http_get(80, "/missing").unwrap();
        assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
    });
}

#[test]
fn nginx_on_lupine_general() {
    nginx(GENERAL);
}

#[test]
fn nginx_on_lupine_nginx() {
    nginx("lupine-nginx");
}

/// One memcached text-protocol command; reads until the reply ends with `end`.
fn memcached_cmd(s: &mut TcpStream, cmd: &[u8], end: &[u8]) -> Vec<u8> {
    s.write_all(cmd).unwrap();
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while !reply.ends_with(end) {
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "connection closed after {:?}",
            String::from_utf8_lossy(&reply)
        );
        reply.extend_from_slice(&buf[..n]);
    }
    reply
}

fn memcached(profile: &str) {
    serve("memcached", profile, 11211, |vm| {
        let mut s = connect(vm, 11211, b"version\r\n");
        assert_eq!(
            memcached_cmd(&mut s, b"set lupine 0 0 5\r\nhello\r\n", b"\r\n"),
            b"STORED\r\n"
        );
        assert_eq!(
            memcached_cmd(&mut s, b"get lupine\r\n", b"END\r\n"),
            b"VALUE lupine 0 5\r\nhello\r\nEND\r\n"
        );
    });
}

#[test]
fn memcached_on_lupine_general() {
    memcached(GENERAL);
}

#[test]
fn memcached_on_lupine_memcached() {
    memcached("lupine-memcached");
}

/// The image's manifest is the app's own plus what the test added, and the disk is what
/// lupine-image wrote: checked once, on redis's.
#[test]
fn image_manifest_comes_from_the_image_config() {
    let tmp = TempDir::new("app-image-manifest").unwrap();
    let disk = disk("redis", &tmp);
    let manifest = dump(&disk, "/etc/lupine.json", &tmp.join("lupine.json"));
    let manifest: Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(manifest["app"]["path"], "/usr/local/bin/redis-server");
    assert_eq!(manifest["app"]["args"], json!(["/etc/redis/redis.conf"]));
    assert_eq!(manifest["app"]["cwd"], "/var/lib/redis");
    assert_eq!(manifest["mode"], "supervise");
    assert_eq!(manifest["network"]["interfaces"][0]["name"], "eth0");
}

fn dump(disk: &Path, path: &str, out: &Path) -> String {
    let status = Command::new("debugfs")
        .args(["-R", &format!("dump {path} {}", out.display())])
        .arg(disk)
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    std::fs::read_to_string(out).unwrap()
}

//! The kernel profiles other than `lupine-general` (which every other test boots): a static
//! hello-world under lupine-init, and lupine-init's IPv4 network set-up reached from the host,
//! on `lupine-base` (the smallest Lupine kernel) and on `microvm` (Firecracker's
//! configuration, the baseline).

use std::path::Path;
use std::process::Command;

use guest_tests::{Initramfs, TempDir, Vm, BASE, GENERAL, MICROVM};

const HELLO_C: &str = r#"#include <unistd.h>
int main(void) {
    static const char msg[] = "Hello from Lupine!\n";
    return write(1, msg, sizeof msg - 1) == sizeof msg - 1 ? 0 : 1;
}
"#;

/// A static hello-world (musl), like Docker's hello-world image: one write(2), then exit.
fn hello(dir: &Path) -> Vec<u8> {
    let (src, bin) = (dir.join("hello.c"), dir.join("hello"));
    std::fs::write(&src, HELLO_C).unwrap();
    let out = Command::new("musl-gcc")
        .args(["-static", "-Os", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("musl-gcc (musl-tools) runs");
    assert!(out.status.success(), "musl-gcc: {out:?}");
    std::fs::read(bin).unwrap()
}

fn hello_world(profile: &str) {
    let tmp = TempDir::new(&format!("hello-{profile}")).unwrap();
    let initrd = Initramfs::new(r#"{"version": 1, "app": {"path": "/hello"}}"#)
        .unwrap()
        .file("/hello", 0o755, hello(tmp.path()))
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let out = Vm::lupine_on(profile, &initrd).unwrap().run().unwrap();
    assert!(out.has_line("Hello from Lupine!"), "{out}");
    out.assert_exit_status(0);
}

#[test]
fn hello_world_on_lupine_base() {
    hello_world(BASE);
}

#[test]
fn hello_world_on_microvm() {
    hello_world(MICROVM);
}

#[test]
fn hello_world_on_lupine_general() {
    hello_world(GENERAL);
}

const MANIFEST: &str = r#"{"version": 1,
 "app": {"path": "/bin/sh", "args": ["/app.sh"]},
 "network": {"interfaces": [{"name": "eth0", "addresses": ["10.0.2.15/24"]}],
             "routes": [{"destination": "default", "gateway": "10.0.2.2"}],
             "dns": {"nameservers": ["10.0.2.3"]}, "wait_s": 2}}"#;

// No #! scripts: lupine-base has no BINFMT_SCRIPT. nc accepts one connection and runs httpd in
// inetd mode on it (the words after -e are httpd's), then the app exits and the VM ends.
const APP: &str = r#"
ip addr show dev eth0 | while read -r l; do echo "addr: $l"; done
ip route | while read -r l; do echo "route: $l"; done
echo listening
nc -l -p 8080 -e httpd -i -h /www
echo "served: $?"
"#;
const PAGE: &str = "hello over IPv4\n";

fn ipv4_network(profile: &str) {
    let tmp = TempDir::new(&format!("ipv4-{profile}")).unwrap();
    let initrd = Initramfs::new(MANIFEST)
        .unwrap()
        .file("/app.sh", 0o644, APP)
        .file("/www/index.html", 0o644, PAGE)
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let mut vm = Vm::lupine_on(profile, &initrd)
        .unwrap()
        .forward(8080)
        .spawn()
        .unwrap();
    // Connect only once the guest's network is up (see forward.rs).
    vm.wait_for_line("listening").unwrap();
    let response = vm.http_get(8080, "/index.html").unwrap();
    assert!(
        response.starts_with("HTTP/1.") && response.contains(" 200 "),
        "{response}"
    );
    assert!(response.ends_with(&format!("\r\n\r\n{PAGE}")), "{response}");

    let out = vm.wait().unwrap();
    let addr = out.lines_starting("addr: ").join("\n");
    assert!(
        addr.contains("eth0: <") && addr.contains(",UP"),
        "eth0 not up\n{out}"
    );
    assert!(
        addr.contains("addr: inet 10.0.2.15/24 "),
        "no IPv4 address\n{out}"
    );
    for route in [
        "route: default via 10.0.2.2 dev eth0",
        "route: 10.0.2.0/24 dev eth0 scope link  src 10.0.2.15",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(route)),
            "no {route:?}\n{out}"
        );
    }
    assert!(out.has_line("served: 0"), "{out}");
    out.assert_exit_status(0);
}

#[test]
fn ipv4_network_on_lupine_base() {
    ipv4_network(BASE);
}

#[test]
fn ipv4_network_on_microvm() {
    ipv4_network(MICROVM);
}

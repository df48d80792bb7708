//! `ip=` on the kernel command line configures eth0 when the manifest has no network.

use std::io::{ErrorKind, Read};
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use guest_tests::{Initramfs, TempDir, Vm};

const MANIFEST: &str = r#"{"version": 1, "app": {"path": "/bin/sh", "args": ["/app.sh"]}}"#;

#[test]
fn kernel_ip_parameter_configures_eth0() {
    let tmp = TempDir::new("kernel-ip").unwrap();
    // The guest proves the configuration works by calling the host: user networking maps the
    // gateway 10.0.2.2 to the host's loopback.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = format!(
        "echo \"hostname: $(hostname)\"\n\
         ip addr show dev eth0 | while read -r l; do echo \"addr: $l\"; done\n\
         ip route | while read -r l; do echo \"route: $l\"; done\n\
         echo hello-host | nc 10.0.2.2 {port}\n"
    );
    let initrd = Initramfs::new(MANIFEST)
        .unwrap()
        .file("/app.sh", 0o755, app)
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    // Accepting in a thread with a deadline: a guest that never calls must fail, not hang.
    let received = thread::spawn(move || -> std::io::Result<String> {
        listener.set_nonblocking(true)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut s = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(20))
                }
                Err(e) => return Err(e),
            }
        };
        s.set_nonblocking(false)?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(text)
    });
    let out = Vm::lupine(&initrd)
        .unwrap()
        .net()
        .append("ip=10.0.2.16::10.0.2.2:255.255.255.0:ipguest:eth0:off")
        .run()
        .unwrap();

    assert!(out.has_line("hostname: ipguest"), "{out}");
    let addr = out.lines_starting("addr: ").join("\n");
    assert!(addr.contains(",UP"), "eth0 not up\n{out}");
    assert!(
        addr.contains("addr: inet 10.0.2.16/24 "),
        "no address from ip=\n{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("route: default via 10.0.2.2 dev eth0")),
        "no default route from ip=\n{out}"
    );
    assert_eq!(
        out.lines_starting("lupine: exit status"),
        ["lupine: exit status 0"],
        "{out}"
    );
    assert_eq!(received.join().unwrap().unwrap(), "hello-host\n", "{out}");
}

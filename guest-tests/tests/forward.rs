//! A host client reaches a server in the guest through a forwarded loopback port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread::sleep;
use std::time::{Duration, Instant};

use guest_tests::{Initramfs, TempDir, Vm};

const MANIFEST: &str = r#"{"version": 1,
 "app": {"path": "/bin/sh", "args": ["/app.sh"]},
 "network": {"interfaces": [{"name": "eth0", "addresses": ["10.0.2.15/24"]}],
             "routes": [{"destination": "default", "gateway": "10.0.2.2"}]}}"#;

// nc accepts one connection and hands it to httpd in inetd mode: one request served, then the
// app exits and the VM must end by itself.
const APP: &str = "echo listening\nnc -l -p 8080 -e /serve.sh\necho \"served: $?\"\n";
const SERVE: &str = "#!/bin/sh\nexec httpd -i -h /www\n";
const PAGE: &str = "hello from the guest\n";

#[test]
fn host_reaches_guest_server_then_vm_ends() {
    let tmp = TempDir::new("forward").unwrap();
    let initrd = Initramfs::new(MANIFEST)
        .unwrap()
        .file("/app.sh", 0o755, APP)
        .file("/serve.sh", 0o755, SERVE)
        .file("/www/index.html", 0o644, PAGE)
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let mut vm = Vm::lupine(&initrd).unwrap().forward(8080).spawn().unwrap();
    // Connect only once the guest's network is up: earlier, QEMU accepts on the host side but
    // its SYNs to the guest could linger and later take nc's one connection.
    vm.wait_for_line("listening").unwrap();
    let port = vm.host_port(8080);

    // Until nc listens, the guest resets the connection and we read nothing: retry.
    let deadline = Instant::now() + Duration::from_secs(30);
    let response = loop {
        match get(port) {
            Ok(r) if !r.is_empty() => break r,
            other => assert!(
                Instant::now() < deadline,
                "no response ({other:?}); console:\n{}",
                vm.console()
            ),
        }
        sleep(Duration::from_millis(200));
    };
    assert!(
        response.starts_with("HTTP/1.") && response.contains(" 200 "),
        "{response}"
    );
    assert!(response.ends_with(&format!("\r\n\r\n{PAGE}")), "{response}");

    let out = vm.wait().unwrap();
    assert!(out.has_line("served: 0"), "{out}");
    assert_eq!(
        out.lines_starting("lupine: exit status"),
        ["lupine: exit status 0"],
        "{out}"
    );
    assert_eq!(out.code(), Some(0), "{out}");
}

fn get(port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    Ok(response)
}

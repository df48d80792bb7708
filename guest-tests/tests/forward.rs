//! A host client reaches a server in the guest through a forwarded loopback port.

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
    let response = vm.http_get(8080, "/index.html").unwrap();
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

//! The VMM-facing I/O ports: the exit status through isa-debug-exit and the boot marker
//! through debugcon.

use guest_tests::{Initramfs, TempDir, Vm, DEBUGCON_PORT, EXIT_PORT};

#[test]
fn exit_port_carries_app_status_to_qemu() {
    let tmp = TempDir::new("exit-port").unwrap();
    let manifest = format!(
        r#"{{"version": 1, "app": {{"path": "/bin/sh", "args": ["-c", "exit 5"]}},
            "exit_port": {EXIT_PORT}}}"#
    );
    let initrd = Initramfs::new(&manifest)
        .unwrap()
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let out = Vm::lupine(&initrd).unwrap().exit_device().run().unwrap();
    assert_eq!(
        out.lines_starting("lupine: exit status"),
        ["lupine: exit status 5"],
        "{out}"
    );
    // isa-debug-exit: QEMU's status is (value << 1) | 1.
    assert_eq!(out.code(), Some(5 << 1 | 1), "{out}");
}

#[test]
fn boot_marker_reaches_debugcon() {
    let tmp = TempDir::new("boot-marker").unwrap();
    let manifest = format!(
        r#"{{"version": 1, "app": {{"path": "/bin/sh", "args": ["-c", "echo app ran"]}},
            "boot_marker": {{"ioport": {DEBUGCON_PORT}, "value": 123}}}}"#
    );
    let initrd = Initramfs::new(&manifest)
        .unwrap()
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let log = tmp.join("debugcon.bin");
    let out = Vm::lupine(&initrd).unwrap().debugcon(&log).run().unwrap();
    assert!(out.has_line("app ran"), "{out}");
    // Nothing else (firmware, kernel) writes to port 0x402 on this machine: exactly one byte.
    assert_eq!(std::fs::read(&log).unwrap(), [123], "{out}");
    assert_eq!(out.code(), Some(0), "{out}");
}

//! An invalid manifest stops the boot with a fatal line naming each field at fault.

use guest_tests::{Initramfs, TempDir, Vm};

#[test]
fn bad_manifest_is_fatal_and_names_fields() {
    let tmp = TempDir::new("bad-manifest").unwrap();
    // A wrong type and a misspelt key: both must be reported, and the app must not run.
    let manifest = r#"{"version": 1, "app": {"path": "/bin/sh", "args": ["-c", "echo app ran"]},
                       "hostnmae": "typo",
                       "network": {"interfaces": [{"name": "eth0", "mtu": "big"}]}}"#;
    let initrd = Initramfs::new(manifest)
        .unwrap()
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let out = Vm::lupine(&initrd).unwrap().run().unwrap();

    let fatal = out.lines_starting("lupine: fatal:");
    assert_eq!(fatal.len(), 1, "expected one fatal line\n{out}");
    assert!(fatal[0].contains("hostnmae"), "{out}");
    assert!(fatal[0].contains("network.interfaces[0].mtu"), "{out}");
    assert!(!out.has_line("app ran"), "{out}");
    assert!(
        out.lines_starting("lupine: exit status").is_empty(),
        "{out}"
    );
    // The VM ended by itself (no timeout) through a reboot.
    assert_eq!(out.code(), Some(0), "{out}");
}

//! Faults a VM meets in production end it with one clear line and its status: the app killed by
//! the kernel's OOM killer, a data disk that does not mount, a disk that is not there.

use guest_tests::{Initramfs, Outcome, TempDir, Vm, EXIT_PORT};

fn boot(tmp: &TempDir, manifest: &str, vm: impl FnOnce(Vm) -> Vm) -> Outcome {
    let initrd = Initramfs::new(manifest)
        .unwrap()
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    vm(Vm::lupine(&initrd).unwrap()).run().unwrap()
}

/// A shell doubling a string until the kernel has no memory left for it: the OOM killer's
/// SIGKILL is told apart from any other, and the status (128 + 9) reaches `exit_port`.
#[test]
fn an_app_killed_by_the_oom_killer_is_reported_as_out_of_memory() {
    let tmp = TempDir::new("faults-oom").unwrap();
    let manifest = format!(
        r#"{{"version": 1, "exit_port": {EXIT_PORT},
             "app": {{"path": "/bin/sh", "args": ["-c", "x=0123456789abcdef; while :; do x=$x$x; done"]}}}}"#
    );
    let out = boot(&tmp, &manifest, |vm| vm.mem(96).exit_device());
    assert_eq!(
        out.lines_starting("lupine: "),
        ["lupine: killed by signal 9 (out of memory)"],
        "{out}"
    );
    // isa-debug-exit: QEMU ends with (137 << 1) | 1, of which the shell sees the low byte.
    assert_eq!(out.code(), Some(((137 << 1) | 1) & 0xff), "{out}");
}

/// A SIGKILL that is not the OOM killer's stays a plain signal.
#[test]
fn an_app_killed_by_sigkill_is_not_out_of_memory() {
    let tmp = TempDir::new("faults-kill").unwrap();
    let manifest = r#"{"version": 1, "app": {"path": "/bin/sh", "args": ["-c", "kill -9 $$"]}}"#;
    let out = boot(&tmp, manifest, |vm| vm);
    assert_eq!(
        out.lines_starting("lupine: "),
        ["lupine: killed by signal 9"],
        "{out}"
    );
}

/// A data disk that is no filesystem (zeros), and one that is not attached at all.
#[test]
fn a_disk_that_does_not_mount_or_is_missing_is_a_clear_fatal_error() {
    let tmp = TempDir::new("faults-mount").unwrap();
    let manifest = r#"{"version": 1, "app": {"path": "/bin/sh", "args": ["-c", "echo ran"]},
        "mounts": [{"source": "/dev/vda", "target": "/data", "fstype": "ext4", "mkdir": true,
                    "wait_s": 1}]}"#;
    let zeros = tmp.join("zeros.img");
    std::fs::write(&zeros, vec![0u8; 4 << 20]).unwrap();
    let out = boot(&tmp, manifest, |vm| vm.disk(&zeros));
    assert_eq!(
        out.lines_starting("lupine: "),
        ["lupine: fatal: mount: /dev/vda on /data (ext4): Invalid argument"],
        "{out}"
    );
    let out = boot(&tmp, manifest, |vm| vm);
    assert_eq!(
        out.lines_starting("lupine: "),
        [
            "lupine: fatal: mount: /dev/vda on /data (ext4): No such file or directory \
          (no such device: raise \"wait_s\"?)"
        ],
        "{out}"
    );
    assert!(!out.has_line("ran"), "{out}");
}

/// A root disk that does not mount is the kernel's to report, before lupine-init exists: the
/// VM still ends (panic=-1), with the kernel's line naming the device.
#[test]
fn a_root_disk_that_does_not_mount_ends_the_vm_with_the_kernels_line() {
    let tmp = TempDir::new("faults-root").unwrap();
    let zeros = tmp.join("zeros.img");
    std::fs::write(&zeros, vec![0u8; 4 << 20]).unwrap();
    let out = Vm::lupine_disk(guest_tests::GENERAL, &zeros)
        .unwrap()
        .run()
        .unwrap();
    assert!(
        out.console
            .contains("Kernel panic - not syncing: VFS: Unable to mount root fs"),
        "{out}"
    );
    assert_eq!(
        out.code(),
        Some(0),
        "QEMU ended by the panic's reboot: {out}"
    );
}

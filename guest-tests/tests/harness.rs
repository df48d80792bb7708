//! The harness itself, with busybox as init: if this fails, lupine-init is not to blame.

use guest_tests::{ext4_image, Initramfs, TempDir, Vm, GENERAL};

#[test]
fn busybox_init_sees_disk_and_vm_ends() {
    let tmp = TempDir::new("harness").unwrap();
    let script = "#!/bin/sh\nmount -t devtmpfs dev /dev\nmount -t ext4 /dev/vda /mnt\n\
                  echo \"disk says: $(cat /mnt/greeting)\"\nreboot -f\n";
    let initrd = Initramfs::busybox()
        .unwrap()
        .file("/init.sh", 0o755, script)
        .dir("/mnt")
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let disk = ext4_image(&tmp.join("disk.ext4"), 8, &[("greeting", "hello disk")]).unwrap();
    let out = Vm::profile(GENERAL)
        .unwrap()
        .initramfs(&initrd)
        .disk(&disk)
        .append("rdinit=/init.sh")
        .run()
        .unwrap();
    assert!(out.has_line("disk says: hello disk"), "{out}");
    assert_eq!(out.code(), Some(0), "{out}");
}

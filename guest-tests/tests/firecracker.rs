//! `lupine-image --firecracker`: the config file it writes boots its disk. Firecracker cannot
//! run here (no usable KVM), so QEMU plays it: the config's `vmlinux` (lupine-base's, entered
//! through its PVH entry), its boot arguments (QEMU's `-M microvm,acpi=off` adds
//! `virtio_mmio.device=` for the disk, as Firecracker does), its root drive, vCPUs and memory;
//! and lupine-init's boot marker for Firecracker's boot timer reaches the MMIO address that
//! timer watches.

use std::path::PathBuf;

use guest_tests::{hello_image, kernel, lupine_init, TempDir, Vm, BASE};
use lupine_image::firecracker::Firecracker;
use lupine_image::Options;
use serde_json::Value;

#[test]
fn the_config_boots_its_disk() {
    let tmp = TempDir::new("firecracker").unwrap();
    let image = hello_image(tmp.path(), "Hello from Firecracker's config").unwrap();
    // Firecracker's boot timer: 123 written to MMIO 0xc0000000 (through /dev/mem).
    let fragment = tmp.join("marker.json");
    std::fs::write(
        &fragment,
        r#"{"boot_marker": {"mmio": 3221225472, "value": 123}}"#,
    )
    .unwrap();

    let (disk, config) = (tmp.join("root.ext4"), tmp.join("vm.json"));
    let vmlinux: PathBuf = kernel(BASE).unwrap().with_file_name("vmlinux");
    lupine_image::build(&Options {
        manifest: Some(fragment),
        firecracker: Some(Firecracker::new(config.clone(), vmlinux)),
        ..Options::new(image, disk.clone(), lupine_init().unwrap())
    })
    .unwrap_or_else(|e| panic!("lupine-image: {e}"));

    let vm: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    let boot = &vm["boot-source"];
    let machine = &vm["machine-config"];
    let out = Vm::new(boot["kernel_image_path"].as_str().unwrap())
        .append(boot["boot_args"].as_str().unwrap())
        .disk(vm["drives"][0]["path_on_host"].as_str().unwrap().as_ref())
        .smp(machine["vcpu_count"].as_u64().unwrap() as u32)
        .mem(machine["mem_size_mib"].as_u64().unwrap())
        .guest_errors()
        .run()
        .unwrap();
    assert!(out.has_line("Hello from Firecracker's config"), "{out}");
    out.assert_exit_status(0);
    // Nothing is mapped there under QEMU, which logs the write instead of timing it.
    let writes: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("Invalid write at addr 0xC0000000, size 1,"))
        .collect();
    assert_eq!(writes.len(), 1, "{out}");
    assert!(!out.console.contains("boot_marker"), "{out}");
}

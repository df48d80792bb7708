//! `--firecracker VM.json`: the config file, checked against Firecracker's own definitions of
//! its objects (`tests/firecracker/vm-config.schema.json`, converted from its API definition;
//! validated with the `jsonschema` crate, as lupine-init's manifest schema is), and the options
//! it refuses.

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_lupine-image");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Whether `config` is a valid Firecracker config file, or the validator's complaints.
fn validate(config: &Value) -> Result<(), String> {
    let text = include_str!("firecracker/vm-config.schema.json");
    let schema = jsonschema::validator_for(&serde_json::from_str(text).unwrap()).unwrap();
    let errors: Vec<String> = schema.iter_errors(config).map(|e| e.to_string()).collect();
    match errors.is_empty() {
        true => Ok(()),
        false => Err(errors.join("; ")),
    }
}

/// An image whose app is a file, and a stand-in for a vmlinux: lupine-init, an ELF file.
fn setup(name: &str) -> (std::path::PathBuf, String, String) {
    let d = scratch(name);
    let l = LayerTar::new()
        .dir("bin", 0o755)
        .file("bin/app", b"x", 0o755)
        .finish();
    oci(
        &d.join("oci"),
        &Spec::new(vec![l], json!({"Cmd": ["/bin/app"]})),
    );
    let init = lupine_init().unwrap().display().to_string();
    (d, init.clone(), init)
}

fn config(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

#[test]
fn an_ext4_disk_and_its_config() {
    let (d, init, vmlinux) = setup("fc-ext4");
    let (oci, disk, vm) = (d.join("oci"), d.join("root.ext4"), d.join("vm.json"));
    let o = run(&[
        oci.to_str().unwrap(),
        "-o",
        disk.to_str().unwrap(),
        "--init",
        &init,
        "--firecracker",
        vm.to_str().unwrap(),
        "--kernel",
        &vmlinux,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let c = config(&vm);
    let disk = fs::canonicalize(&disk).unwrap().display().to_string();
    let kernel = fs::canonicalize(&vmlinux).unwrap().display().to_string();
    assert_eq!(
        c,
        json!({
            "boot-source": {
                "kernel_image_path": kernel,
                "boot_args": "console=ttyS0 reboot=k panic=1 pci=off root=/dev/vda rw init=/lupine-init",
            },
            "drives": [{"drive_id": "rootfs", "path_on_host": disk, "is_root_device": true, "is_read_only": false}],
            "machine-config": {"vcpu_count": 1, "mem_size_mib": 64, "smt": false},
            "network-interfaces": [],
        })
    );
    validate(&c).unwrap();
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn an_initramfs_with_network_mmds_log_and_metrics() {
    let (d, init, vmlinux) = setup("fc-initramfs");
    let (oci, cpio, vm) = (d.join("oci"), d.join("root.cpio.gz"), d.join("vm.json"));
    let o = run(&[
        oci.to_str().unwrap(),
        "-o",
        cpio.to_str().unwrap(),
        "--init",
        &init,
        "--format",
        "initramfs",
        "--firecracker",
        vm.to_str().unwrap(),
        "--kernel",
        &vmlinux,
        "--vcpus",
        "2",
        "--mem",
        "128",
        "--tap",
        "tap0",
        "--mac",
        "06:00:ac:10:00:02",
        "--mmds",
        "--boot-args",
        "ip=172.16.0.2::172.16.0.1:255.255.255.0::eth0:off",
        "--firecracker-log",
        "fc.log",
        "--firecracker-metrics",
        "/run/fc.metrics",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let c = config(&vm);
    assert_eq!(c["drives"], json!([]));
    assert_eq!(
        c["boot-source"]["initrd_path"],
        json!(fs::canonicalize(&cpio).unwrap().display().to_string())
    );
    assert_eq!(
        c["boot-source"]["boot_args"],
        "console=ttyS0 reboot=k panic=1 pci=off rdinit=/lupine-init \
         ip=172.16.0.2::172.16.0.1:255.255.255.0::eth0:off"
    );
    assert_eq!(
        c["machine-config"],
        json!({"vcpu_count": 2, "mem_size_mib": 128, "smt": false})
    );
    assert_eq!(
        c["network-interfaces"],
        json!([{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "06:00:ac:10:00:02"}])
    );
    assert_eq!(
        c["mmds-config"],
        json!({"version": "V2", "network_interfaces": ["eth0"], "ipv4_address": "169.254.169.254"})
    );
    let log = std::env::current_dir().unwrap().join("fc.log");
    assert_eq!(
        c["logger"],
        json!({"log_path": log.display().to_string(), "level": "Info"})
    );
    assert_eq!(c["metrics"], json!({"metrics_path": "/run/fc.metrics"}));
    validate(&c).unwrap();
    fs::remove_dir_all(&d).unwrap();
}

/// The validator is not a formality: what Firecracker refuses, it refuses.
#[test]
fn the_validator_refuses_what_firecracker_refuses() {
    let good = json!({
        "boot-source": {"kernel_image_path": "/vmlinux", "boot_args": "console=ttyS0"},
        "drives": [],
        "machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
    });
    validate(&good).unwrap();
    for (pointer, bad) in [
        ("/machine-config/vcpu_count", json!("1")),
        ("/machine-config/vcpu_count", json!(33)),
        ("/boot-source/kernel_image_path", Value::Null),
        ("/drives", json!([{"drive_id": "rootfs"}])),
        ("/logger", json!({"log_path": "/x", "level": "Verbose"})),
        ("/machine-config/mem_size_mb", json!(64)),
    ] {
        let mut c = good.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let target = if parent.is_empty() {
            &mut c
        } else {
            c.pointer_mut(parent).unwrap()
        };
        match bad {
            Value::Null => drop(target.as_object_mut().unwrap().remove(key)),
            v => drop(target.as_object_mut().unwrap().insert(key.into(), v)),
        }
        assert!(validate(&c).is_err(), "{pointer} = {c}");
    }
}

#[test]
fn refusals_name_the_option_and_write_nothing() {
    let (d, init, vmlinux) = setup("fc-refusals");
    let not_elf = d.join("bzImage");
    fs::write(&not_elf, b"MZ not an ELF").unwrap();
    let (oci, disk, vm) = (d.join("oci"), d.join("root.ext4"), d.join("vm.json"));
    let base = [
        oci.to_str().unwrap(),
        "-o",
        disk.to_str().unwrap(),
        "--init",
        &init,
    ];
    let fc = ["--firecracker", vm.to_str().unwrap()];
    for (extra, code, needle) in [
        (vec!["--kernel", not_elf.to_str().unwrap()], 1, "--kernel: "),
        (
            vec!["--kernel", "/nonexistent/vmlinux"],
            1,
            "/nonexistent/vmlinux: cannot read",
        ),
        (
            vec!["--kernel", &vmlinux, "--mmds"],
            1,
            "--mmds: needs --tap",
        ),
        (
            vec!["--kernel", &vmlinux, "--tap", "t", "--mac", "06:00"],
            1,
            "--mac: \"06:00\"",
        ),
        (vec!["--kernel", &vmlinux, "--vcpus", "0"], 1, "--vcpus: 0"),
        (
            vec!["--kernel", &vmlinux, "--vcpus", "two"],
            2,
            "--vcpus \"two\"",
        ),
        (vec![], 2, "--firecracker needs --kernel"),
    ] {
        let args: Vec<&str> = base
            .iter()
            .chain(&fc)
            .copied()
            .chain(extra.iter().copied())
            .collect();
        let o = run(&args);
        assert_eq!(o.status.code(), Some(code), "{extra:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{extra:?}: {}", stderr(&o));
        assert!(
            !disk.exists() && !vm.exists(),
            "{extra:?} left output behind"
        );
    }
    for extra in [
        vec!["--tap", "tap0"],
        vec!["--kernel", &vmlinux],
        vec!["--mmds"],
    ] {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("is for --firecracker's config file"),
            "{}",
            stderr(&o)
        );
    }
    fs::remove_dir_all(&d).unwrap();
}

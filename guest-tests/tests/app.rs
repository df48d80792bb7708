//! What the app sees: hostname, environment, cwd, a mounted ext4 disk, addresses, routes,
//! DNS and hosts files; and how its exit is reported.

use guest_tests::{ext4_image, Initramfs, TempDir, Vm, GENERAL, MICROVM};

const MANIFEST: &str = r#"{"version": 1,
 "app": {"path": "/bin/sh", "args": ["/app.sh"], "env": {"KEY": "VALUE"}, "cwd": "/data"},
 "hostname": "guest1",
 "mounts": [{"source": "/dev/vda", "target": "/data", "fstype": "ext4", "mkdir": true, "wait_s": 2}],
 "network": {"interfaces": [{"name": "eth0", "addresses": ["10.0.2.15/24"], "mtu": 1400}],
             "routes": [{"destination": "default", "gateway": "10.0.2.2"}],
             "dns": {"nameservers": ["10.0.2.3"], "search": ["example.internal"]}, "wait_s": 2}}"#;

// Prefixes keep each fact on its own recognisable line. `cat note.txt` is relative: it only
// works if the cwd is the mounted disk.
const APP: &str = r#"
echo "hostname: $(hostname)"
echo "pwd: $(pwd)"
env | while read -r l; do echo "env: $l"; done
echo "file: $(cat note.txt)"
ip addr show dev eth0 | while read -r l; do echo "addr: $l"; done
ip route | while read -r l; do echo "route: $l"; done
while read -r l; do echo "resolv: $l"; done < /etc/resolv.conf
while read -r l; do echo "hosts: $l"; done < /etc/hosts
exit 7
"#;

#[test]
fn app_sees_its_configured_vm() {
    let tmp = TempDir::new("app").unwrap();
    let initrd = Initramfs::new(MANIFEST)
        .unwrap()
        .file("/app.sh", 0o755, APP)
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let disk = ext4_image(&tmp.join("data.ext4"), 8, &[("note.txt", "on the disk")]).unwrap();
    let out = Vm::lupine(&initrd)
        .unwrap()
        .disk(&disk)
        .net()
        .run()
        .unwrap();

    for line in [
        "hostname: guest1",
        "pwd: /data",
        "env: KEY=VALUE",
        "env: TERM=linux",
        "file: on the disk",
        "resolv: nameserver 10.0.2.3",
        "resolv: search example.internal",
    ] {
        assert!(out.has_line(line), "missing {line:?}\n{out}");
    }
    let env = |name: &str| out.lines_starting(&format!("env: {name}=")).concat();
    assert!(
        env("PATH").split([':', '=']).any(|d| d == "/bin"),
        "PATH lacks /bin\n{out}"
    );
    assert!(
        env("HOME").starts_with("env: HOME=/"),
        "no absolute HOME\n{out}"
    );

    let addr = out.lines_starting("addr: ").join("\n");
    assert!(
        addr.contains("eth0: <") && addr.contains(",UP") && addr.contains("mtu 1400"),
        "eth0 not up with mtu 1400\n{out}"
    );
    assert!(
        addr.contains("addr: inet 10.0.2.15/24 "),
        "no IPv4 address\n{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("route: default via 10.0.2.2 dev eth0")),
        "no default route\n{out}"
    );

    let hosts: Vec<Vec<&str>> = out
        .lines_starting("hosts: ")
        .iter()
        .map(|l| l.split_whitespace().skip(1).collect())
        .collect();
    assert!(
        hosts
            .iter()
            .any(|h| h[0] == "127.0.0.1" && h.contains(&"localhost")),
        "{out}"
    );
    assert!(
        hosts.contains(&vec!["10.0.2.15", "guest1"]),
        "hostname not on its address in /etc/hosts\n{out}"
    );

    // No exit_port: lupine-init reboots, which ends QEMU (-no-reboot) with status 0.
    out.assert_exit_status(7);
}

#[test]
fn cmdline_words_after_dashes_replace_the_app() {
    let tmp = TempDir::new("cmdline-app").unwrap();
    let initrd = Initramfs::sh(&["-c", "echo manifest app"])
        .unwrap()
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    // No virtio devices: QEMU microvm would append `virtio_mmio.device=...` after our words.
    let out = Vm::lupine(&initrd)
        .unwrap()
        .append("-- /bin/echo replaced app")
        .run()
        .unwrap();
    assert!(out.has_line("replaced app"), "{out}");
    assert!(!out.has_line("manifest app"), "{out}");
    assert_eq!(
        out.lines_starting("lupine: exit status"),
        ["lupine: exit status 0"],
        "{out}"
    );
}

const IPV6_MANIFEST: &str = r#"{"version": 1,
 "app": {"path": "/bin/sh", "args": ["-c", "ip -6 addr show dev eth0; ip -6 route"]},
 "network": {"interfaces": [{"name": "eth0", "addresses": ["10.0.2.15/24", "fd00::15/64"]}],
             "routes": [{"destination": "fd01::/64", "gateway": "fd00::1"}], "wait_s": 2}}"#;

fn ipv6(profile: &str) -> guest_tests::Outcome {
    let tmp = TempDir::new(&format!("ipv6-{profile}")).unwrap();
    let initrd = Initramfs::new(IPV6_MANIFEST)
        .unwrap()
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    Vm::lupine_on(profile, &initrd)
        .unwrap()
        .net()
        .run()
        .unwrap()
}

// IPv6 is a feature (PROFILE+ipv6), not part of lupine-general; Firecracker's config has it.
#[test]
fn ipv6_addresses_and_routes_on_microvm() {
    let out = ipv6(MICROVM);
    assert!(
        out.lines()
            .any(|l| l.trim().starts_with("inet6 fd00::15/64 ")),
        "no IPv6 address\n{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("fd01::/64 via fd00::1 dev eth0")),
        "no IPv6 route\n{out}"
    );
    out.assert_exit_status(0);
}

#[test]
fn ipv6_address_without_kernel_ipv6_is_a_clear_fatal_error() {
    let out = ipv6(GENERAL);
    let fatal = out.lines_starting("lupine: fatal: ").concat();
    assert!(
        fatal.contains("add address fd00::15/64: the kernel has no IPv6"),
        "{out}"
    );
    assert!(!out.lines().any(|l| l.contains("inet6 fd00::15")), "{out}");
}

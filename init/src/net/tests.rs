use super::*;

use std::process::Command;

fn prefix(s: &str) -> Prefix {
    crate::manifest::parse_prefix(s).expect("test prefix")
}

fn iface(name: &str, addresses: &[&str], mtu: Option<u32>) -> Interface {
    Interface {
        name: name.into(),
        addresses: addresses.iter().map(|a| prefix(a)).collect(),
        mtu,
    }
}

fn route(dest: Option<&str>, gw: Option<&str>, dev: Option<&str>) -> Route {
    Route {
        destination: dest.map(prefix),
        gateway: gw.map(|g| g.parse().expect("test gateway")),
        dev: dev.map(Into::into),
    }
}

#[test]
fn resolv_conf_text() {
    let mut net = Network::default();
    assert_eq!(resolv_conf(&net), None);
    net.nameservers = vec!["10.0.2.3".parse().unwrap(), "fd00::3".parse().unwrap()];
    assert_eq!(
        resolv_conf(&net).as_deref(),
        Some("nameserver 10.0.2.3\nnameserver fd00::3\n")
    );
    net.search = vec!["example.com".into(), "lan".into()];
    assert_eq!(
        resolv_conf(&net).as_deref(),
        Some("nameserver 10.0.2.3\nnameserver fd00::3\nsearch example.com lan\n")
    );
    net.nameservers.clear();
    assert_eq!(
        resolv_conf(&net).as_deref(),
        Some("search example.com lan\n")
    );
}

#[test]
fn destination_host_bits_cleared() {
    assert_eq!(network_of(prefix("10.1.2.3/16")).to_string(), "10.1.0.0");
    assert_eq!(network_of(prefix("10.1.2.3/32")).to_string(), "10.1.2.3");
    assert_eq!(network_of(prefix("10.1.2.3/0")).to_string(), "0.0.0.0");
    assert_eq!(network_of(prefix("fd00::1:2/112")).to_string(), "fd00::1:0");
    assert_eq!(network_of(prefix("fd00::1/0")).to_string(), "::");
    assert_eq!(network_of(prefix("fd00::1/128")).to_string(), "fd00::1");
}

#[test]
fn route_names() {
    let r = route(None, Some("10.0.0.1"), None);
    assert_eq!(show_route(&r, None), "route default via 10.0.0.1");
    let r = route(Some("fd00:1::/64"), Some("fd00::1"), Some("eth0"));
    assert_eq!(
        show_route(&r, Some("eth0")),
        "route fd00:1::/64 via fd00::1 dev eth0"
    );
}

#[test]
fn link_local_gateway_implies_the_only_interface() {
    let one = [iface("eth0", &[], None)];
    let two = [iface("eth0", &[], None), iface("eth1", &[], None)];
    let ll = route(None, Some("fe80::1"), None);
    assert_eq!(implied_dev(&ll, &one), Some("eth0"));
    assert_eq!(implied_dev(&ll, &two), None);
    assert_eq!(implied_dev(&route(None, Some("fd00::1"), None), &one), None);
    assert_eq!(
        implied_dev(&route(None, Some("10.0.0.1"), None), &one),
        None
    );
}

/// Runs `ip` in the calling thread's network namespace; fails the test on error.
fn ip(args: &str) -> String {
    let out = Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .expect("run ip (install iproute2)");
    assert!(
        out.status.success(),
        "ip {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_has(text: &str, needle: &str) {
    assert!(text.contains(needle), "{needle:?} not in:\n{text}");
}

/// Configures veth links for real in a private network namespace. Needs root; skipped
/// otherwise. unshare(CLONE_NEWNET) moves only the calling thread, and children it spawns
/// inherit the namespace, so the test runs in its own thread.
#[test]
fn configure_in_network_namespace() {
    std::thread::spawn(in_namespace)
        .join()
        .expect("network namespace test failed");
}

fn in_namespace() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: configure_in_network_namespace needs root");
        return;
    }
    // SAFETY: unshare takes no pointers; it only changes this thread's network namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        eprintln!("skipped: unshare(CLONE_NEWNET): {}", Errno::last());
        return;
    }

    loopback_up().expect("loopback_up");
    let lo = ip("-o addr show dev lo");
    assert_has(&lo, "inet 127.0.0.1/8");
    assert_has(&lo, "inet6 ::1/128");

    ip("link add eth0 type veth peer name peer0");
    let net = Network {
        interfaces: vec![iface("eth0", &["10.1.2.3/24", "fd00::15/64"], Some(1400))],
        routes: vec![
            route(None, Some("10.1.2.1"), None),
            route(Some("10.9.8.7/16"), None, Some("eth0")),
            route(Some("fd00:1::/64"), Some("fd00::1"), None),
            route(None, Some("fe80::1"), None),
            route(Some("127.1.0.0/16"), None, Some("lo")),
        ],
        nameservers: vec![],
        search: vec![],
        wait_s: 0.0,
    };
    configure(&net).expect("configure");
    // Everything exists now: a second run must succeed as well (EEXIST is success).
    configure(&net).expect("configure again");

    let link = ip("-o link show dev eth0");
    assert_has(&link, "mtu 1400");
    assert_has(&link, "state LOWERLAYERDOWN");
    let addr = ip("-o addr show dev eth0");
    assert_has(&addr, "inet 10.1.2.3/24 brd 10.1.2.255 scope global eth0");
    assert_has(&addr, "inet6 fd00::15/64 scope global nodad");
    assert!(!addr.contains("tentative"), "{addr}");
    let v4 = ip("-d -4 route show table main");
    assert_has(
        &v4,
        "unicast default via 10.1.2.1 dev eth0 proto boot scope global",
    );
    assert_has(&v4, "unicast 10.9.0.0/16 dev eth0 proto boot scope link");
    assert_has(&v4, "unicast 127.1.0.0/16 dev lo proto boot scope link");
    let v6 = ip("-d -6 route show table main");
    assert_has(&v6, "unicast fd00:1::/64 via fd00::1 dev eth0 proto boot");
    assert_has(&v6, "unicast default via fe80::1 dev eth0 proto boot");

    // A link that never appears: the error names it and the time waited.
    let start = Instant::now();
    let missing = Network {
        interfaces: vec![iface("eth9", &[], None)],
        wait_s: 0.3,
        ..Network::default()
    };
    let err = configure(&missing).unwrap_err().to_string();
    assert_eq!(err, "eth9: no such network interface (waited 0.3s)");
    assert!(start.elapsed() >= Duration::from_millis(300));

    // A link that appears late, as a virtio NIC probing after init starts, is waited for.
    let mut late = Command::new("sh")
        .args([
            "-c",
            "sleep 0.2; ip link add eth1 type veth peer name peer1",
        ])
        .spawn()
        .expect("spawn sh");
    let net1 = Network {
        interfaces: vec![iface("eth1", &["192.168.7.2/30"], None)],
        wait_s: 5.0,
        ..Network::default()
    };
    configure(&net1).expect("configure late link");
    assert!(late.wait().expect("wait sh").success());
    assert_has(
        &ip("-o addr show dev eth1"),
        "inet 192.168.7.2/30 brd 192.168.7.3",
    );

    // Kernel errors name the step at fault and carry the errno text.
    std::fs::write("/proc/sys/net/ipv6/conf/eth1/disable_ipv6", "1").expect("disable ipv6");
    let v6_off = Network {
        interfaces: vec![iface("eth1", &["fd00::16/64"], None)],
        ..Network::default()
    };
    assert_eq!(
        configure(&v6_off).unwrap_err().to_string(),
        "eth1: add address fd00::16/64: Permission denied"
    );
    let unreachable = Network {
        routes: vec![route(Some("10.50.0.0/16"), Some("192.0.2.1"), None)],
        ..Network::default()
    };
    assert_eq!(
        configure(&unreachable).unwrap_err().to_string(),
        "add route 10.50.0.0/16 via 192.0.2.1: Network is unreachable"
    );
    let no_dev = Network {
        routes: vec![route(Some("10.50.0.0/16"), None, Some("eth7"))],
        ..Network::default()
    };
    assert_eq!(
        configure(&no_dev).unwrap_err().to_string(),
        "add route 10.50.0.0/16 dev eth7: no such network interface"
    );
}

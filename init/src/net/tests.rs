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

/// Configures veth links for real in a private network namespace. Needs root (ignored unless
/// run with --include-ignored, and then fails without it). unshare(CLONE_NEWNET) moves only
/// the calling thread, and children it spawns inherit the namespace, so the test runs in its
/// own thread.
#[test]
#[ignore = "needs root"]
fn configure_in_network_namespace() {
    std::thread::spawn(in_namespace)
        .join()
        .expect("network namespace test failed");
}

fn in_namespace() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "configure_in_network_namespace needs root (a network namespace and veth links)"
    );
    // SAFETY: unshare takes no pointers; it only changes this thread's network namespace.
    Errno::result(unsafe { libc::unshare(libc::CLONE_NEWNET) })
        .expect("unshare(CLONE_NEWNET) as root");
    // In order: each step uses the links the ones before made.
    loopback_comes_up();
    veth_gets_addresses_and_routes();
    links_are_waited_for();
    kernel_errors_name_the_step();
}

fn loopback_comes_up() {
    loopback_up().expect("loopback_up");
    let lo = ip("-o addr show dev lo");
    assert_has(&lo, "inet 127.0.0.1/8");
    assert_has(&lo, "inet6 ::1/128");
}

fn veth_gets_addresses_and_routes() {
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
}

/// A link that never appears is an error; one that appears late (eth1) is waited for.
fn links_are_waited_for() {
    // A link that never appears: the error names it and the time waited.
    let start = Instant::now();
    let missing = Network {
        interfaces: vec![iface("eth9", &[], None)],
        wait_s: 0.3,
        ..Network::default()
    };
    let err = configure(&missing).unwrap_err().to_string();
    assert_eq!(err, "eth9: no such network interface (waited 300 ms)");
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
}

fn kernel_errors_name_the_step() {
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

/// An encoded request, read by hand along the uapi layouts rather than through the crates.
#[derive(Debug)]
struct Decoded {
    kind: u16,
    flags: u16,
    seq: u32,
    /// The family header: struct ifinfomsg, ifaddrmsg or rtmsg.
    header: Vec<u8>,
    /// struct rtattr type and value (without padding), in order.
    attrs: Vec<(u16, Vec<u8>)>,
}

fn ne16(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn ne32(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn decode(b: &[u8], header_len: usize) -> Decoded {
    // struct nlmsghdr: length (all of the message), type, flags, sequence number, port.
    assert_eq!(ne32(b, 0) as usize, b.len(), "nlmsg_len");
    assert_eq!(b.len() % 4, 0, "requests are 4-byte aligned");
    assert_eq!(ne32(b, 12), 0, "port: the kernel fills it in");
    let mut attrs = Vec::new();
    let mut at = 16 + header_len;
    while at < b.len() {
        // rta_len counts the 4-byte rtattr header and the value, not the padding.
        let len = usize::from(ne16(b, at));
        assert!(len >= 4 && at + len <= b.len(), "rta_len {len} at {at}");
        let padded = (len + 3) & !3;
        assert!(b[at + len..at + padded].iter().all(|&p| p == 0), "padding");
        attrs.push((ne16(b, at + 2), b[at + 4..at + len].to_vec()));
        at += padded;
    }
    assert_eq!(at, b.len(), "attributes end with the message");
    Decoded {
        kind: ne16(b, 4),
        flags: ne16(b, 6),
        seq: ne32(b, 8),
        header: b[16..16 + header_len].to_vec(),
        attrs,
    }
}

/// struct ifinfomsg: family, pad, type (u16), index (i32), flags, change mask.
fn ifinfomsg(index: u32, flags: u32, change: u32) -> Vec<u8> {
    let mut h = vec![0; 4];
    h.extend_from_slice(&index.to_ne_bytes());
    h.extend_from_slice(&flags.to_ne_bytes());
    h.extend_from_slice(&change.to_ne_bytes());
    h
}

// uapi values, written out so that the tests do not share the code's constants.
const REQUEST_ACK: u16 = 0x1 | 0x4; // NLM_F_REQUEST | NLM_F_ACK
const CREATE_EXCL: u16 = 0x400 | 0x200; // NLM_F_CREATE | NLM_F_EXCL

#[test]
fn link_requests() {
    let b = encode(18, 0, 7, &link_by_name("eth0"));
    assert_eq!(
        b.len(),
        16 + 16 + 12,
        "nlmsghdr, ifinfomsg, padded attribute"
    );
    let d = decode(&b, 16);
    assert_eq!((d.kind, d.flags, d.seq), (18, REQUEST_ACK, 7)); // RTM_GETLINK
    assert_eq!(d.header, ifinfomsg(0, 0, 0));
    assert_eq!(d.attrs, [(3, b"eth0\0".to_vec())]); // IFLA_IFNAME, NUL-terminated
    assert_eq!(ne16(&b, 32), 9, "rta_len excludes the padding");
    assert_eq!(&b[36..44], b"eth0\0\0\0\0");

    // RTM_SETLINK with IFF_UP in the flags and the change mask.
    let d = decode(&encode(19, 0, 8, &link_up(7)), 16);
    assert_eq!((d.kind, d.flags, d.seq), (19, REQUEST_ACK, 8));
    assert_eq!(d.header, ifinfomsg(7, 0x1, 0x1));
    assert!(d.attrs.is_empty());

    // RTM_SETLINK with IFLA_MTU, flags untouched.
    let d = decode(&encode(19, 0, 9, &link_mtu(7, 1400)), 16);
    assert_eq!(d.header, ifinfomsg(7, 0, 0));
    assert_eq!(d.attrs, [(4, 1400u32.to_ne_bytes().to_vec())]);
}

#[test]
fn address_requests() {
    // struct ifaddrmsg: family, prefix length, flags, scope, index (u32).
    let ifaddrmsg = |family: u8, len: u8, flags: u8, index: u32| {
        let mut h = vec![family, len, flags, 0]; // RT_SCOPE_UNIVERSE
        h.extend_from_slice(&index.to_ne_bytes());
        h
    };
    let b = encode(
        20,
        CREATE_EXCL,
        3,
        &address_message(&prefix("10.1.2.3/24"), 2),
    );
    let d = decode(&b, 8);
    assert_eq!((d.kind, d.flags, d.seq), (20, REQUEST_ACK | CREATE_EXCL, 3)); // RTM_NEWADDR
    assert_eq!(d.header, ifaddrmsg(2, 24, 0, 2)); // AF_INET
    let v4 = vec![10, 1, 2, 3];
    // IFA_LOCAL, IFA_ADDRESS, IFA_BROADCAST.
    assert_eq!(
        d.attrs,
        [(2, v4.clone()), (1, v4.clone()), (4, vec![10, 1, 2, 255])]
    );

    let d = decode(
        &encode(20, 0, 1, &address_message(&prefix("192.168.7.2/30"), 5)),
        8,
    );
    assert_eq!(d.attrs[2], (4, vec![192, 168, 7, 3]));
    // No broadcast address on /31 and /32 links.
    for p in ["192.168.7.2/31", "192.168.7.2/32"] {
        let d = decode(&encode(20, 0, 1, &address_message(&prefix(p), 5)), 8);
        assert_eq!(d.attrs.len(), 2, "{p}");
    }

    let d = decode(
        &encode(20, 0, 1, &address_message(&prefix("fd00::15/64"), 2)),
        8,
    );
    assert_eq!(d.header, ifaddrmsg(10, 64, 0x2, 2)); // AF_INET6, IFA_F_NODAD
    let v6: Ipv6Addr = "fd00::15".parse().unwrap();
    assert_eq!(d.attrs, [(1, v6.octets().to_vec())]); // IFA_ADDRESS
}

#[test]
fn route_requests() {
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags (u32).
    // RT_TABLE_MAIN 254, RTPROT_BOOT 3, RTN_UNICAST 1.
    let rtmsg = |family: u8, dst_len: u8, scope: u8| {
        vec![family, dst_len, 0, 0, 254, 3, scope, 1, 0, 0, 0, 0]
    };
    // A link route (RT_SCOPE_LINK 253): the destination has its host bits cleared.
    let r = route(Some("10.9.8.7/16"), None, Some("eth0"));
    let b = encode(24, CREATE_EXCL, 4, &route_message(&r, Some(3)));
    let d = decode(&b, 12);
    assert_eq!((d.kind, d.flags, d.seq), (24, REQUEST_ACK | CREATE_EXCL, 4)); // RTM_NEWROUTE
    assert_eq!(d.header, rtmsg(2, 16, 253));
    // RTA_DST, RTA_OIF.
    assert_eq!(
        d.attrs,
        [(1, vec![10, 9, 0, 0]), (4, 3u32.to_ne_bytes().to_vec())]
    );

    // A default route via a gateway (RT_SCOPE_UNIVERSE): no RTA_DST, RTA_GATEWAY.
    let d = decode(
        &encode(
            24,
            0,
            1,
            &route_message(&route(None, Some("10.1.2.1"), None), None),
        ),
        12,
    );
    assert_eq!(d.header, rtmsg(2, 0, 0));
    assert_eq!(d.attrs, [(5, vec![10, 1, 2, 1])]);
    let r = route(Some("10.0.0.0/0"), Some("10.1.2.1"), None);
    let d = decode(&encode(24, 0, 1, &route_message(&r, None)), 12);
    assert_eq!(d.header, rtmsg(2, 0, 0));
    assert_eq!(d.attrs, [(5, vec![10, 1, 2, 1])]);

    let r = route(Some("fd00:1::/64"), Some("fd00::1"), None);
    let d = decode(&encode(24, 0, 1, &route_message(&r, Some(2))), 12);
    assert_eq!(d.header, rtmsg(10, 64, 0));
    let dst: Ipv6Addr = "fd00:1::".parse().unwrap();
    let gw: Ipv6Addr = "fd00::1".parse().unwrap();
    assert_eq!(
        d.attrs,
        [
            (1, dst.octets().to_vec()),
            (5, gw.octets().to_vec()),
            (4, 2u32.to_ne_bytes().to_vec())
        ]
    );
}

/// A reply message: nlmsghdr with `kind` and `seq`, then `payload`, padded.
fn reply(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&[0; 2]);
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&[0; 4]);
    m.extend_from_slice(payload);
    m.resize((m.len() + 3) & !3, 0);
    m
}

const NEWLINK: u16 = 16; // RTM_NEWLINK
const ERROR: u16 = 2; // NLMSG_ERROR

#[test]
fn reply_scanning() {
    let ack = reply(ERROR, 5, &[0; 20]);
    let enodev = reply(ERROR, 5, &(-libc::ENODEV).to_ne_bytes());
    let link = reply(NEWLINK, 5, &ifinfomsg(3, 0, 0));
    let mut index = None;
    assert_eq!(scan(&ack, 5, &mut index), Some(Ok(None)));
    assert_eq!(scan(&enodev, 5, &mut index), Some(Err(Errno::ENODEV)));
    // A reply and its ACK in one datagram.
    let both = [link.clone(), ack.clone()].concat();
    assert_eq!(scan(&both, 5, &mut index), Some(Ok(Some(3))));
    // A reply in one datagram, the ACK in the next.
    let mut index = None;
    assert_eq!(scan(&link, 5, &mut index), None);
    assert_eq!(scan(&ack, 5, &mut index), Some(Ok(Some(3))));
    // Replies to other requests are skipped.
    let mut index = None;
    let stale = [reply(ERROR, 4, &[0xff; 4]), ack.clone()].concat();
    assert_eq!(scan(&stale, 5, &mut index), Some(Ok(None)));
    // A truncated error is an error, never a panic.
    assert_eq!(
        scan(&reply(ERROR, 5, &[0; 2]), 5, &mut index),
        Some(Err(Errno::EBADMSG))
    );
}

#[test]
fn link_reply_attributes_are_not_parsed() {
    // Attributes no crate knows, one of them malformed: the index is still read.
    let mut payload = ifinfomsg(9, 0x1, 0);
    payload.extend_from_slice(&[8, 0, 0xff, 0x7f, 1, 2, 3, 4]); // type 0x7fff
    payload.extend_from_slice(&[0xff, 0xff, 3, 0, b'x']); // IFLA_IFNAME longer than the message
    let datagram = [reply(NEWLINK, 2, &payload), reply(ERROR, 2, &[0; 4])].concat();
    let mut index = None;
    assert_eq!(scan(&datagram, 2, &mut index), Some(Ok(Some(9))));
    // An ifinfomsg cut short yields no index, and no panic.
    let mut index = None;
    let short = [reply(NEWLINK, 2, &[0; 8]), reply(ERROR, 2, &[0; 4])].concat();
    assert_eq!(scan(&short, 2, &mut index), Some(Ok(None)));
}

#[test]
fn malformed_replies_do_not_panic() {
    let ack = reply(ERROR, 1, &[0; 4]);
    let mut index = None;
    for cut in 0..ack.len() {
        assert_eq!(scan(&ack[..cut], 1, &mut index), None, "cut at {cut}");
    }
    let mut bad_len = ack.clone();
    bad_len[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
    assert_eq!(scan(&bad_len, 1, &mut index), None);
    bad_len[0..4].copy_from_slice(&3u32.to_ne_bytes());
    assert_eq!(scan(&bad_len, 1, &mut index), None);
    // Every byte pattern of a short buffer: no panic.
    for b in 0..=255u8 {
        for len in [16, 20, 36, 40] {
            let _ = scan(&vec![b; len], u32::from_ne_bytes([b; 4]), &mut index);
        }
    }
}

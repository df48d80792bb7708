use super::*;

fn v4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse().expect("test address"))
}

fn ok(value: &str) -> IpConfig {
    match parse(value) {
        Ok(c) => c,
        Err(e) => panic!("ip={value}: {e}"),
    }
}

fn err(value: &str) -> String {
    match parse(value) {
        Ok(c) => panic!("ip={value} parsed: {c:?}"),
        Err(e) => e,
    }
}

#[test]
fn firecracker_form() {
    let c = ok("172.16.0.2::172.16.0.1:255.255.255.0::eth0:off");
    assert_eq!(c.hostname, None);
    let net = &c.network;
    assert_eq!(
        net.interfaces,
        vec![Interface {
            name: "eth0".into(),
            addresses: vec![Prefix {
                addr: v4("172.16.0.2"),
                len: 24
            }],
            mtu: None,
        }]
    );
    assert_eq!(
        net.routes,
        vec![Route {
            destination: None,
            gateway: Some(v4("172.16.0.1")),
            dev: Some("eth0".into()),
        }]
    );
    assert!(net.nameservers.is_empty() && net.search.is_empty());
    assert_eq!(net.wait_s, 2.0);
}

#[test]
fn every_field() {
    let c = ok("10.0.2.15:10.0.2.4:10.0.2.2:255.255.255.0:vm1.example:ens3:static:10.0.2.3:1.1.1.1:10.0.2.5");
    assert_eq!(c.hostname.as_deref(), Some("vm1.example"));
    assert_eq!(c.network.interfaces[0].name, "ens3");
    assert_eq!(c.network.routes[0].dev.as_deref(), Some("ens3"));
    assert_eq!(c.network.nameservers, vec![v4("10.0.2.3"), v4("1.1.1.1")]);
}

#[test]
fn short_and_empty_fields() {
    // No gateway, device defaults to eth0, trailing fields omitted.
    let c = ok("192.168.1.9:::255.255.0.0");
    assert_eq!(c.network.interfaces[0].name, "eth0");
    assert_eq!(c.network.interfaces[0].addresses[0].len, 16);
    assert!(c.network.routes.is_empty());
    assert_eq!(c.hostname, None);
    // Empty autoconf, and only the second nameserver.
    let c = ok("10.0.2.15::10.0.2.2:255.255.255.0:vm1:eth0::::");
    assert!(c.network.nameservers.is_empty());
    let c = ok("10.0.2.15::10.0.2.2:255.255.255.0:vm1:eth0:none::10.0.2.3");
    assert_eq!(c.network.nameservers, vec![v4("10.0.2.3")]);
    // 0.0.0.0 means unset, as for the kernel.
    let c = ok("10.0.2.15:0.0.0.0:0.0.0.0:255.255.255.0::eth0:off:0.0.0.0");
    assert!(c.network.routes.is_empty() && c.network.nameservers.is_empty());
}

#[test]
fn netmasks() {
    let len = |m: &str| ok(&format!("10.0.0.2:::{m}")).network.interfaces[0].addresses[0].len;
    assert_eq!(len("255.255.255.255"), 32);
    assert_eq!(len("255.255.255.252"), 30);
    assert_eq!(len("255.128.0.0"), 9);
    assert_eq!(len("0.0.0.0"), 0);
}

#[test]
fn off_and_none_configure_nothing() {
    for v in ["off", "none"] {
        let c = ok(v);
        assert_eq!(c.network, Network::default());
        assert_eq!(c.hostname, None);
    }
}

#[test]
fn dynamic_configuration_refused() {
    for v in ["dhcp", "bootp", "rarp", "any", "on", "both"] {
        assert_eq!(
            err(v),
            format!(
                "autoconf \"{v}\" is not supported: lupine-init does static \
                 configuration only (use \"off\")"
            )
        );
    }
    assert!(err("10.0.0.2::10.0.0.1:255.255.255.0::eth0:dhcp").contains("autoconf \"dhcp\""));
    assert!(err("10.0.0.2::10.0.0.1:255.255.255.0::eth0:yes").contains("autoconf \"yes\""));
}

#[test]
fn errors_quote_the_field() {
    let cases = [
        ("", "client IP is required"),
        (
            "::10.0.0.1:255.255.255.0::eth0:off",
            "client IP is required",
        ),
        ("garbage", "client IP \"garbage\" is not an IPv4 address"),
        ("fd00::2", "client IP \"fd00\" is not an IPv4 address"),
        (
            "0.0.0.0:::255.0.0.0",
            "client IP \"0.0.0.0\" is not a host address",
        ),
        (
            "224.0.0.1:::255.0.0.0",
            "client IP \"224.0.0.1\" is not a host address",
        ),
        (
            "10.0.0.2:nfs:::",
            "server IP \"nfs\" is not an IPv4 address",
        ),
        (
            "10.0.0.2::gw:255.0.0.0",
            "gateway \"gw\" is not an IPv4 address",
        ),
        ("10.0.0.2", "netmask is required"),
        ("10.0.0.2::10.0.0.1", "netmask is required"),
        ("10.0.0.2::::vm1", "netmask is required"),
        ("10.0.0.2:::24", "netmask \"24\" is not an IPv4 netmask"),
        (
            "10.0.0.2:::255.0.255.0",
            "netmask \"255.0.255.0\" is not contiguous",
        ),
        (
            "10.0.0.2:::0.255.255.255",
            "netmask \"0.255.255.255\" is not contiguous",
        ),
        (
            "10.0.0.2:::255.0.0.0:bad_name",
            "hostname \"bad_name\" is not a valid host name",
        ),
        (
            "10.0.0.2:::255.0.0.0::a/b",
            "device \"a/b\" is not an interface name",
        ),
        (
            "10.0.0.2:::255.0.0.0::eth0:off:dns",
            "dns0 \"dns\" is not an IPv4 address",
        ),
        (
            "10.0.0.2:::255.0.0.0::eth0:off::1.2.3",
            "dns1 \"1.2.3\" is not an IPv4 address",
        ),
        (
            "10.0.0.2:::255.0.0.0::eth0:off:::pool.ntp.org",
            "ntp0 \"pool.ntp.org\" is not an IPv4 address",
        ),
        (
            "10.0.0.2::10.0.1.1:255.255.255.0::eth0:off",
            "gateway \"10.0.1.1\" is not in the client's subnet 10.0.0.0/24",
        ),
        (
            "10.0.0.2::10.0.0.1:255.255.255.0::eth0:off::::extra",
            "11 fields, at most 10 expected \
             (client:server:gateway:netmask:hostname:device:autoconf:dns0:dns1:ntp0)",
        ),
    ];
    for (value, message) in cases {
        assert_eq!(err(value), message, "ip={value}");
    }
}

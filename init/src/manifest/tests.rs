use super::*;

mod schema;

/// The full example of the README and the issue.
const FULL: &str = r#"{
  "version": 1,
  "app": {"path": "/usr/bin/redis-server", "args": ["--port", "6379"], "argv0": "redis",
          "env": {"KEY": "VALUE"}, "cwd": "/data", "user": "999:999", "groups": [999],
          "umask": "0022"},
  "hostname": "redis-vm",
  "mounts": [{"source": "/dev/vdb", "target": "/data", "fstype": "ext4",
              "options": "noatime", "mkdir": true, "wait_s": 2}],
  "network": {
    "interfaces": [{"name": "eth0", "addresses": ["10.0.2.15/24", "fd00::15/64"], "mtu": 1500}],
    "routes": [{"destination": "default", "gateway": "10.0.2.2"}],
    "dns": {"nameservers": ["10.0.2.3"], "search": ["example.internal"]},
    "wait_s": 2
  },
  "sysctl": {"net.core.somaxconn": "4096", "vm.overcommit_memory": "1"},
  "rlimits": {"nofile": {"soft": 65536, "hard": 65536}},
  "mode": "supervise",
  "on_exit": "reboot",
  "exit_port": null,
  "boot_marker": {"ioport": 1008, "value": 123},
  "entropy": {"seed_file": null},
  "log": "info"
}"#;

fn problems(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(m) => panic!("expected problems, parsed {m:?}"),
        Err(p) => p.0.iter().map(ToString::to_string).collect(),
    }
}

/// Parses `{"version": 1, <fields>}` and returns its problems.
fn problems_in(fields: &str) -> Vec<String> {
    problems(&format!(r#"{{"version": 1, {fields}}}"#))
}

fn ok(fields: &str) -> Manifest {
    parse(&format!(r#"{{"version": 1, {fields}}}"#)).unwrap_or_else(|p| panic!("{p}"))
}

#[test]
fn full_example_parses_to_every_field() {
    let m = parse(FULL).unwrap();
    assert_eq!(m.app.path.as_deref(), Some("/usr/bin/redis-server"));
    assert_eq!(m.app.args, ["--port", "6379"]);
    assert_eq!(m.app.argv0.as_deref(), Some("redis"));
    assert_eq!(m.app.env.get("KEY").map(String::as_str), Some("VALUE"));
    assert_eq!(m.app.cwd.as_deref(), Some("/data"));
    assert_eq!(
        m.app.user,
        Some(User {
            user: IdOrName::Id(999),
            group: Some(IdOrName::Id(999))
        })
    );
    assert_eq!(m.app.groups, Some(vec![999]));
    assert_eq!(m.app.umask, Some(0o022));
    assert_eq!(m.hostname.as_deref(), Some("redis-vm"));
    assert_eq!(
        m.mounts,
        [Mount {
            source: "/dev/vdb".into(),
            target: "/data".into(),
            fstype: "ext4".into(),
            options: "noatime".into(),
            mkdir: true,
            wait_s: 2.0,
        }]
    );
    let net = m.network.unwrap();
    assert_eq!(net.interfaces[0].name, "eth0");
    assert_eq!(net.interfaces[0].mtu, Some(1500));
    assert_eq!(
        net.interfaces[0].addresses,
        [
            parse_prefix("10.0.2.15/24").unwrap(),
            parse_prefix("fd00::15/64").unwrap()
        ]
    );
    assert_eq!(
        net.routes,
        [Route {
            destination: None,
            gateway: Some("10.0.2.2".parse().unwrap()),
            dev: None
        }]
    );
    assert_eq!(net.nameservers, ["10.0.2.3".parse::<IpAddr>().unwrap()]);
    assert_eq!(net.search, ["example.internal"]);
    assert_eq!(net.wait_s, 2.0);
    assert_eq!(
        m.sysctl,
        [
            ("net.core.somaxconn".to_string(), "4096".to_string()),
            ("vm.overcommit_memory".to_string(), "1".to_string())
        ]
    );
    assert_eq!(
        m.rlimits,
        [Rlimit {
            resource: Resource::Nofile,
            soft: 65536,
            hard: 65536
        }]
    );
    assert_eq!(m.mode, Mode::Supervise);
    assert_eq!(m.on_exit, OnExit::Reboot);
    assert_eq!(m.exit_port, None);
    assert_eq!(
        m.boot_marker,
        Some(BootMarker::IoPort {
            port: 1008,
            value: 123
        })
    );
    assert_eq!(m.entropy_seed, None);
    assert_eq!(m.log, Some(log::LevelFilter::Info));
}

#[test]
fn the_shipped_schema_example_is_this_example() {
    // init/manifest.schema.json carries the full example; it must stay valid.
    let schema: Value = serde_json::from_str(include_str!("../../manifest.schema.json")).unwrap();
    let examples = schema["examples"].as_array().unwrap();
    assert!(!examples.is_empty());
    for example in examples {
        parse(&example.to_string()).unwrap_or_else(|p| panic!("{p}"));
    }
}

#[test]
fn minimal_manifest_gets_defaults() {
    let m = parse(r#"{"version": 1}"#).unwrap();
    assert_eq!(m, Manifest::default());
    assert_eq!(m.mode, Mode::Supervise);
    assert_eq!(m.on_exit, OnExit::Reboot);
}

#[test]
fn version_is_required_and_must_be_1() {
    assert_eq!(
        problems("{}"),
        ["version: missing (this init reads version 1)"]
    );
    assert_eq!(
        problems(r#"{"version": 2}"#),
        ["version: 2 is not a supported version (this init reads 1)"]
    );
}

#[test]
fn not_json_or_not_an_object() {
    let p = problems("{\"version\": 1,");
    assert!(p[0].starts_with("not valid JSON: "), "{p:?}");
    assert_eq!(problems("[]"), ["[] is not an object"]);
}

#[test]
fn unknown_fields_are_errors_at_every_level() {
    assert_eq!(
        problems_in(r#""colour": "red""#),
        ["colour: unknown field (expected one of: version, app, hostname, mounts, network, sysctl, rlimits, mode, on_exit, exit_port, boot_marker, ready, entropy, log)"]
    );
    let p = problems_in(
        r#""app": {"pth": "/x"}, "network": {"interfaces": [{"name": "eth0", "ipv4": "x"}]}"#,
    );
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].starts_with("app.pth: unknown field"), "{p:?}");
    assert!(
        p[1].starts_with("network.interfaces[0].ipv4: unknown field"),
        "{p:?}"
    );
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let p = problems_in(
        r#""network": {"interfaces": [{"name": "eth0", "addresses": ["10.0.2.15/24", "10.0.2.300/24"], "mtu": 20}]},
           "hostname": "bad host", "mode": "daemon""#,
    );
    assert_eq!(
        p,
        [
            "hostname: \"bad host\" is not a hostname (1-64 of a-z, A-Z, 0-9, '-', '.')",
            "network.interfaces[0].addresses[1]: \"10.0.2.300/24\" is not an IP prefix",
            "network.interfaces[0].mtu: 20 is not an MTU from 68 to 65535",
            "mode: \"daemon\" is not \"exec\" or \"supervise\"",
        ]
    );
}

#[test]
fn app_fields_are_checked() {
    let p = problems_in(
        r#""app": {"path": "", "args": ["a", 1], "env": {"A=B": "x", "N": 3}, "cwd": "data",
                   "user": "a:b:c", "groups": [-1], "umask": "0999"}"#,
    );
    assert_eq!(
        p,
        [
            "app.path: is empty",
            "app.args[1]: 1 is not a string",
            "app.env.A=B: is not a valid variable name (empty, or has '=' or NUL)",
            "app.env.N: is not a string (values are not shown)",
            "app.cwd: \"data\" is not an absolute path",
            "app.user: \"a:b:c\" is not \"uid[:gid]\" or \"name[:group]\"",
            "app.groups[0]: -1 is not an integer from 0 to 4294967294",
            "app.umask: \"0999\" is not an octal string from \"0000\" to \"0777\"",
        ]
    );
}

#[test]
fn user_forms() {
    let user = |s: &str| {
        ok(&format!(r#""app": {{"user": "{s}"}}"#))
            .app
            .user
            .unwrap()
    };
    assert_eq!(
        user("999"),
        User {
            user: IdOrName::Id(999),
            group: None
        }
    );
    assert_eq!(
        user("redis"),
        User {
            user: IdOrName::Name("redis".into()),
            group: None
        }
    );
    assert_eq!(
        user("redis:0"),
        User {
            user: IdOrName::Name("redis".into()),
            group: Some(IdOrName::Id(0))
        }
    );
    for bad in ["", ":1", "1:", "a b", "1:2:3"] {
        let p = problems_in(&format!(r#""app": {{"user": "{bad}"}}"#));
        assert_eq!(p.len(), 1, "{bad}: {p:?}");
    }
}

#[test]
fn mounts_need_target_and_fstype() {
    let p = problems_in(
        r#""mounts": [{"source": "/dev/vdb"}, {"target": "rel", "fstype": "ext4", "mkdir": "yes", "wait_s": -1}, 3]"#,
    );
    assert_eq!(
        p,
        [
            "mounts[0].target: missing",
            "mounts[0].fstype: missing",
            "mounts[1].target: \"rel\" is not an absolute path",
            "mounts[1].mkdir: \"yes\" is not true or false",
            "mounts[1].wait_s: -1 is not a number of seconds (0 to 3600)",
            "mounts[2]: 3 is not an object",
        ]
    );
    // The source defaults to the filesystem type (tmpfs, proc, ...).
    let m = ok(r#""mounts": [{"target": "/cache", "fstype": "tmpfs", "options": "size=16m"}]"#);
    assert_eq!(m.mounts[0].source, "tmpfs");
    assert!(!m.mounts[0].mkdir);
}

#[test]
fn interfaces_are_checked() {
    let p = problems_in(
        r#""network": {"interfaces": [{"addresses": "10.0.2.15/24"}, {"name": "a/b"}, {"name": "eth0", "addresses": ["10.0.2.15", "fd00::1/129"]}], "wait_s": "2"}"#,
    );
    assert_eq!(
        p,
        [
            "network.interfaces[0].name: missing",
            "network.interfaces[0].addresses: \"10.0.2.15/24\" is not an array",
            "network.interfaces[1].name: \"a/b\" is not an interface name (1-15 characters, no '/', ':' or spaces)",
            "network.interfaces[2].addresses[0]: \"10.0.2.15\" is not an IP prefix",
            "network.interfaces[2].addresses[1]: \"fd00::1/129\" is not an IP prefix",
            "network.wait_s: \"2\" is not a number of seconds (0 to 3600)",
        ]
    );
}

#[test]
fn routes_default_prefix_and_families() {
    let m = ok(
        r#""network": {"interfaces": [{"name": "eth0", "addresses": ["10.0.2.15/24", "fd00::15/64"]}],
           "routes": [{"destination": "default", "gateway": "10.0.2.2"},
                      {"destination": "default", "gateway": "fd00::1"},
                      {"destination": "192.168.0.0/16"}]}"#,
    );
    let routes = m.network.unwrap().routes;
    assert!(!routes[0].is_ipv6());
    assert!(routes[1].is_ipv6());
    // A gatewayless route on the only interface goes out of it.
    assert_eq!(routes[2].dev.as_deref(), Some("eth0"));
    assert_eq!(routes[2].destination, parse_prefix("192.168.0.0/16"));

    let p = problems_in(
        r#""network": {"interfaces": [{"name": "eth0"}, {"name": "eth1"}],
           "routes": [{"destination": "10.1.0.0/16"},
                      {"destination": "10.0.0.0/8", "gateway": "fd00::1"},
                      {"destination": "nowhere", "gateway": "10.0.0.1"},
                      {"gateway": "10.0.0.1"},
                      {"destination": "default", "gateway": "10.0.0.1", "dev": "eth9"},
                      {"destination": "default", "gateway": "10.0.0.x"}]}"#,
    );
    assert_eq!(
        p,
        [
            "network.routes[0]: needs a \"gateway\" or a \"dev\"",
            "network.routes[1]: destination and gateway are of different IP families",
            "network.routes[2].destination: \"nowhere\" is not \"default\" or an IP prefix",
            "network.routes[3].destination: missing",
            "network.routes[4].dev: \"eth9\" is not one of network.interfaces",
            "network.routes[5].gateway: \"10.0.0.x\" is not an IP address",
        ]
    );
}

#[test]
fn dns_is_checked() {
    let p = problems_in(
        r#""network": {"dns": {"nameservers": ["10.0.2.3", "dns.google"], "search": ["ok.internal", "bad..name"], "port": 53}}"#,
    );
    assert_eq!(
        p,
        [
            "network.dns.port: unknown field (expected one of: nameservers, search)",
            "network.dns.nameservers[1]: \"dns.google\" is not an IP address",
            "network.dns.search[1]: \"bad..name\" is not a domain name",
        ]
    );
}

#[test]
fn sysctls_take_dotted_names_and_string_or_number_values() {
    let m = ok(r#""sysctl": {"net.core.somaxconn": 4096, "kernel.domainname": "x"}"#);
    assert_eq!(m.sysctl[0], ("net.core.somaxconn".into(), "4096".into()));
    let p = problems_in(
        r#""sysctl": {"net..core": "1", "../../etc/passwd": "x", "vm.swappiness": [1], "a b": "1"}"#,
    );
    assert_eq!(p.len(), 4, "{p:?}");
    assert!(p
        .iter()
        .any(|s| s == "sysctl.vm.swappiness: [...] is not a string or number"));
    assert!(p
        .iter()
        .any(|s| s.starts_with("sysctl.../../etc/passwd: is not a sysctl name")));
    assert_eq!(
        problems_in(r#""sysctl": []"#),
        ["sysctl: [] is not an object"]
    );
}

#[test]
fn rlimits_by_name_with_unlimited() {
    let m = ok(
        r#""rlimits": {"core": {"soft": 0}, "memlock": {"soft": "unlimited", "hard": "unlimited"}, "stack": {"hard": 8388608}}"#,
    );
    assert_eq!(
        m.rlimits,
        [
            Rlimit {
                resource: Resource::Core,
                soft: 0,
                hard: 0
            },
            Rlimit {
                resource: Resource::Memlock,
                soft: UNLIMITED,
                hard: UNLIMITED
            },
            Rlimit {
                resource: Resource::Stack,
                soft: 8388608,
                hard: 8388608
            },
        ]
    );
    let p = problems_in(
        r#""rlimits": {"files": {"soft": 1}, "nofile": {"soft": 10, "hard": 5}, "nproc": {}, "as": {"soft": -3}, "cpu": 5}"#,
    );
    assert_eq!(
        p,
        [
            "rlimits.files: unknown resource (expected one of: as, core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack)",
            "rlimits.nofile: soft limit 10 is above hard limit 5",
            "rlimits.nproc: needs \"soft\", \"hard\" or both",
            "rlimits.as.soft: -3 is not a non-negative integer or \"unlimited\"",
            "rlimits.cpu: 5 is not an object",
        ]
    );
}

#[test]
fn modes_exit_port_and_log() {
    let m = ok(r#""mode": "exec", "on_exit": "poweroff", "exit_port": 244, "log": "debug""#);
    assert_eq!(m.mode, Mode::Exec);
    assert_eq!(m.on_exit, OnExit::Poweroff);
    assert_eq!(m.exit_port, Some(0xf4));
    assert_eq!(m.log, Some(log::LevelFilter::Debug));
    assert_eq!(ok(r#""on_exit": "halt""#).on_exit, OnExit::Halt);
    let p = problems_in(r#""on_exit": "explode", "exit_port": 70000, "log": "loud""#);
    assert_eq!(
        p,
        [
            "on_exit: \"explode\" is not \"reboot\", \"poweroff\" or \"halt\"",
            "exit_port: 70000 is not an integer from 0 to 65535",
            "log: \"loud\" is not one of \"off\", \"error\", \"warn\", \"info\", \"debug\", \"trace\"",
        ]
    );
}

#[test]
fn boot_marker_ioport_or_mmio() {
    assert_eq!(
        ok(r#""boot_marker": {"mmio": "0xc0000000", "value": 123}"#).boot_marker,
        Some(BootMarker::Mmio {
            address: 0xc000_0000,
            value: 123
        })
    );
    assert_eq!(
        ok(r#""boot_marker": {"mmio": 3221225472, "value": 1}"#).boot_marker,
        Some(BootMarker::Mmio {
            address: 0xc000_0000,
            value: 1
        })
    );
    assert_eq!(
        problems_in(r#""boot_marker": {"ioport": 1008, "mmio": 1, "value": 1}"#),
        ["boot_marker: needs exactly one of \"ioport\" and \"mmio\""]
    );
    assert_eq!(
        problems_in(r#""boot_marker": {"ioport": 1008, "value": 300}"#),
        ["boot_marker.value: 300 is not an integer from 0 to 255"]
    );
    assert_eq!(
        problems_in(r#""boot_marker": {"mmio": "0xzz", "value": 1}"#),
        ["boot_marker.mmio: \"0xzz\" is not an address (a number or \"0x...\")"]
    );
    assert_eq!(
        problems_in(r#""boot_marker": {"ioport": 1008}"#),
        ["boot_marker.value: missing"]
    );
}

#[test]
fn entropy_seed_must_be_absolute() {
    assert_eq!(
        ok(r#""entropy": {"seed_file": "/var/lib/seed"}"#)
            .entropy_seed
            .as_deref(),
        Some("/var/lib/seed")
    );
    assert_eq!(
        problems_in(r#""entropy": {"seed_file": "seed", "credit": true}"#),
        [
            "entropy.credit: unknown field (expected one of: seed_file)",
            "entropy.seed_file: \"seed\" is not an absolute path"
        ]
    );
}

#[test]
fn long_values_are_shortened_in_messages() {
    let long = "x".repeat(100);
    let p = problems_in(&format!(r#""mode": "{long}""#));
    assert!(p[0].contains("..."), "{p:?}");
    assert!(p[0].len() < 120, "{p:?}");
}

#[test]
fn nul_bytes_are_refused() {
    assert_eq!(
        problems_in(r#""app": {"path": "/bin/a\u0000b"}"#),
        ["app.path: contains a NUL byte"]
    );
}

#[test]
fn prefix_parser() {
    assert_eq!(
        parse_prefix("10.0.2.15/24"),
        Some(Prefix {
            addr: "10.0.2.15".parse().unwrap(),
            len: 24
        })
    );
    for bad in [
        "10.0.2.15",
        "10.0.2.15/33",
        "::1/129",
        "/24",
        "x/1",
        "10.0.2.15/-1",
    ] {
        assert_eq!(parse_prefix(bad), None, "{bad}");
    }
}

#[test]
fn ready_sockets_and_the_marker_written_when_ready() {
    let m = parse(r#"{"version": 1, "ready": {"tcp": 6379}}"#).unwrap();
    assert_eq!(m.ready, Some(Ready::Tcp(6379)));
    assert_eq!(m.boot_marker_at, MarkerAt::Exec);
    let m = parse(
        r#"{"version": 1, "ready": {"unix": "/run/app.sock"},
            "boot_marker": {"ioport": 1008, "value": 123, "at": "ready"}}"#,
    )
    .unwrap();
    assert_eq!(m.ready, Some(Ready::Unix("/run/app.sock".into())));
    assert_eq!(m.boot_marker_at, MarkerAt::Ready);
    for (case, problem) in [
        (
            r#""ready": {"tcp": 0}"#,
            "ready.tcp: 0 is not a port to listen on",
        ),
        (r#""ready": {"tcp": 70000}"#, "ready.tcp: "),
        (r#""ready": {"unix": "run/app.sock"}"#, "ready.unix: "),
        (
            r#""ready": {"tcp": 80, "unix": "/s"}"#,
            "ready: needs exactly one of",
        ),
        (r#""ready": {}"#, "ready: needs exactly one of"),
        (r#""ready": {"udp": 53}"#, "ready.udp: unknown field"),
        (
            r#""ready": {"tcp": 80}, "mode": "exec""#,
            "ready: needs \"mode\": \"supervise\"",
        ),
        (
            r#""boot_marker": {"ioport": 1008, "value": 1, "at": "ready"}"#,
            "boot_marker.at: \"ready\" needs a \"ready\" socket to watch",
        ),
        (
            r#""boot_marker": {"ioport": 1008, "value": 1, "at": "boot"}"#,
            "boot_marker.at: \"boot\" is not \"exec\" or \"ready\"",
        ),
    ] {
        let p = problems_in(case);
        assert!(p.iter().any(|p| p.starts_with(problem)), "{case}: {p:?}");
    }
}

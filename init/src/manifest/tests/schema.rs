//! init/manifest.schema.json and the validator agree: every edge case of the validator's tests
//! (tests.rs, tests/check.rs) goes through both, and so do the cases that once told them apart.
//! Where they differ on purpose, the case is listed with the reason.
//!
//! A case is a whole document when it starts with `{` or `[`, else the fields that follow
//! `"version": 1`. Text that is not JSON is left out: a schema only sees parsed JSON.

use serde_json::Value;

use super::{parse, FULL};

/// Accepted by both.
const VALID: &[&str] = &[
    FULL,
    r#"{"version": 1}"#,
    r#""network": {"interfaces": [{"name": "eth0", "addresses": ["10.0.2.15/24"]}]}"#,
    r#""app": {"user": "999"}"#,
    r#""app": {"user": "redis"}"#,
    r#""app": {"user": "redis:0"}"#,
    r#""app": {"user": "4294967295:_x.y$-1"}"#,
    r#""app": {"umask": "0"}"#,
    r#""app": {"umask": "777"}"#,
    r#""app": {"umask": "0777"}"#,
    r#""app": {"groups": [0, 4294967294]}"#,
    r#""app": {"env": {"A-b c": "x=y"}}"#,
    r#""hostname": "a-0.b""#,
    r#""hostname": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa""#,
    r#""mounts": [{"target": "/cache", "fstype": "tmpfs", "options": "size=16m"}]"#,
    r#""mounts": [{"target": "/", "fstype": "", "wait_s": 3600}]"#,
    r#""network": {"interfaces": [{"name": "abcdefghijklmno", "mtu": 68}, {"name": "...", "mtu": 65535}, {"name": "v@1.2"}], "wait_s": 0.5}"#,
    r#""network": {"interfaces": [{"name": "eth0", "addresses": ["0.0.0.0/0", "255.255.255.255/32", "::/0", "::1/128", "1:2:3:4:5:6:7:8/64", "1::/64", "1::2:3:4:5:6:7/64", "FD00::a/64", "::ffff:10.0.0.1/96", "1:2:3:4:5:6:1.2.3.4/96", "1:2:3:4:5::1.2.3.4/96"]}]}"#,
    r#""network": {"interfaces": [{"name": "eth0", "addresses": ["10.0.2.15/24", "fd00::15/64"]}],
       "routes": [{"destination": "default", "gateway": "10.0.2.2"},
                  {"destination": "default", "gateway": "fd00::1"},
                  {"destination": "192.168.0.0/16"},
                  {"destination": "127.1.0.0/16", "dev": "lo"}]}"#,
    r#""network": {"dns": {"nameservers": ["10.0.2.3", "fd00::3"], "search": ["ok.internal"]}}"#,
    r#""sysctl": {"net.core.somaxconn": 4096, "kernel.domainname": "x", "net.ipv4.conf.eth-0.rp_filter": -1.5}"#,
    r#""rlimits": {"core": {"soft": 0}, "memlock": {"soft": "unlimited", "hard": "unlimited"}, "stack": {"hard": 8388608}}"#,
    r#""rlimits": {"nofile": {"soft": 18446744073709551614}}"#,
    r#""mode": "exec", "on_exit": "poweroff", "exit_port": 244, "log": "debug""#,
    r#""on_exit": "halt""#,
    r#""boot_marker": {"mmio": "0xc0000000", "value": 123}"#,
    r#""boot_marker": {"mmio": 3221225472, "value": 1}"#,
    r#""boot_marker": {"mmio": 18446744073709551615, "value": 0}"#,
    r#""boot_marker": null, "exit_port": null, "entropy": {"seed_file": null}"#,
    r#""entropy": {"seed_file": "/var/lib/seed"}"#,
    r#""ready": {"tcp": 1}, "mode": "supervise""#,
    r#""ready": {"unix": "/run/app.sock"}, "boot_marker": {"mmio": 1, "value": 1, "at": "ready"}"#,
    r#""ready": {"tcp": 65535}, "boot_marker": {"ioport": 1, "value": 1, "at": "exec"}"#,
    r#""ready": null, "boot_marker": {"ioport": 1, "value": 1, "at": null}, "mode": "exec""#,
    r#""log": {"level": "debug", "syslog": {"address": "udp://10.0.2.2:514", "app_name": "redis-1.x", "kmsg": true}}"#,
    r#""log": {"syslog": {"address": "tcp://[fd00::2]:6514"}}"#,
    r#""log": {}"#,
    r#""log": {"level": null, "syslog": null}, "mode": "exec""#,
];

/// Refused by both, each for one reason.
const INVALID: &[&str] = &[
    "{}",
    r#"{"version": 2}"#,
    r#"{"version": "1"}"#,
    "[]",
    r#""colour": "red""#,
    r#""extra": 1"#,
    r#""app": 3"#,
    r#""app": {"pth": "/x"}"#,
    r#""app": {"path": ""}"#,
    r#""app": {"path": "/bin/a\u0000b"}"#,
    r#""app": {"args": ["a", 1]}"#,
    r#""app": {"args": "a"}"#,
    r#""app": {"argv0": 0}"#,
    r#""app": {"env": {"A=B": "x"}}"#,
    r#""app": {"env": {"": "x"}}"#,
    r#""app": {"env": {"A\u0000": "x"}}"#,
    r#""app": {"env": {"N": 3}}"#,
    r#""app": {"env": {"N": "a\u0000"}}"#,
    r#""app": {"env": ["N=1"]}"#,
    r#""app": {"cwd": "data"}"#,
    r#""app": {"cwd": "/a\u0000"}"#,
    r#""app": {"user": "a:b:c"}"#,
    r#""app": {"user": ""}"#,
    r#""app": {"user": ":1"}"#,
    r#""app": {"user": "1:"}"#,
    r#""app": {"user": "a b"}"#,
    r#""app": {"user": "1:2:3"}"#,
    r#""app": {"user": "jo@x"}"#,
    r#""app": {"user": 999}"#,
    r#""app": {"groups": [-1]}"#,
    r#""app": {"groups": [4294967295]}"#,
    r#""app": {"groups": 1}"#,
    r#""app": {"umask": "0999"}"#,
    r#""app": {"umask": "1777"}"#,
    r#""app": {"umask": "01000"}"#,
    r#""app": {"umask": ""}"#,
    r#""app": {"umask": 18}"#,
    r#""hostname": "bad host""#,
    r#""hostname": "bad..name""#,
    r#""hostname": ".a""#,
    r#""hostname": """#,
    r#""hostname": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa""#,
    r#""mounts": [{"source": "/dev/vdb"}]"#,
    r#""mounts": [{"fstype": "ext4"}]"#,
    r#""mounts": [{"target": "/x"}]"#,
    r#""mounts": [{"target": "rel", "fstype": "ext4"}]"#,
    r#""mounts": [{"target": "/x", "fstype": "ext4", "mkdir": "yes"}]"#,
    r#""mounts": [{"target": "/x", "fstype": "ext4", "wait_s": -1}]"#,
    r#""mounts": [{"target": "/x", "fstype": "ext4", "wait_s": 3601}]"#,
    r#""mounts": [{"target": "/x", "fstype": "ext\u0000"}]"#,
    r#""mounts": [{"target": "/x", "fstype": "ext4", "options": 1}]"#,
    r#""mounts": [3]"#,
    r#""mounts": {}"#,
    r#""network": []"#,
    r#""network": {"interfaces": [{"name": "eth0", "ipv4": "x"}]}"#,
    r#""network": {"interfaces": [{"mtu": 1500}]}"#,
    r#""network": {"interfaces": [{"name": "eth0", "addresses": "10.0.2.15/24"}]}"#,
    r#""network": {"interfaces": [{"name": "a/b"}]}"#,
    r#""network": {"interfaces": [{"name": "a b"}]}"#,
    r#""network": {"interfaces": [{"name": "a:b"}]}"#,
    r#""network": {"interfaces": [{"name": "."}]}"#,
    r#""network": {"interfaces": [{"name": ".."}]}"#,
    r#""network": {"interfaces": [{"name": ""}]}"#,
    r#""network": {"interfaces": [{"name": "abcdefghijklmnop"}]}"#,
    r#""network": {"interfaces": [{"name": "eth0", "mtu": 20}]}"#,
    r#""network": {"interfaces": [{"name": "eth0", "mtu": 65536}]}"#,
    r#""network": {"interfaces": [{"name": "eth0", "mtu": "1500"}]}"#,
    r#""network": {"interfaces": [{"name": "eth0", "addresses": ["10.0.2.300/24"]}]}"#,
    r#""network": {"interfaces": [{"name": "eth0", "addresses": ["10.0.2.15"]}]}"#,
    r#""network": {"interfaces": [{"name": "eth0", "addresses": ["fd00::1/129"]}]}"#,
    r#""network": {"interfaces": [{"name": "eth0", "addresses": ["10.0.2.15/33"]}]}"#,
    r#""network": {"interfaces": [{"name": "eth0", "addresses": ["::1/129"]}]}"#,
    r#""network": {"interfaces": [{"name": "eth0", "addresses": ["/24"]}]}"#,
    r#""network": {"interfaces": [{"name": "eth0", "addresses": ["x/1"]}]}"#,
    r#""network": {"interfaces": [{"name": "eth0", "addresses": ["10.0.2.15/-1"]}]}"#,
    r#""network": {"interfaces": [{"name": "eth0", "addresses": ["010.0.2.15/24"]}]}"#,
    r#""network": {"interfaces": [{"name": "eth0", "addresses": ["fe80::1%eth0/64"]}]}"#,
    r#""network": {"interfaces": [{"name": "eth0", "addresses": ["1:2:3:4:5:6:7:8:9/64"]}]}"#,
    r#""network": {"interfaces": [{"name": "eth0", "addresses": ["1:2:3:4:5:6:7/64"]}]}"#,
    r#""network": {"interfaces": [{"name": "eth0", "addresses": ["1::2::3/64"]}]}"#,
    r#""network": {"interfaces": [{"name": "eth0", "addresses": [":::1/64"]}]}"#,
    r#""network": {"interfaces": [{"name": "eth0", "addresses": ["12345::/64"]}]}"#,
    r#""network": {"interfaces": [{"name": "eth0", "addresses": ["1:2:3:4:5:6::1.2.3.4/64"]}]}"#,
    r#""network": {"interfaces": [{"name": "eth0", "addresses": ["1.2.3.4::/64"]}]}"#,
    r#""network": {"interfaces": [{"name": "eth0", "addresses": [" 10.0.2.15/24"]}]}"#,
    r#""network": {"wait_s": "2"}"#,
    r#""network": {"routes": [{"destination": "nowhere", "gateway": "10.0.0.1"}]}"#,
    r#""network": {"routes": [{"gateway": "10.0.0.1"}]}"#,
    r#""network": {"routes": [{"destination": "default", "gateway": "10.0.0.x"}]}"#,
    r#""network": {"routes": [{"destination": "default", "gateway": "10.0.0.1/32"}]}"#,
    r#""network": {"routes": [{"destination": "10.0.0.0/8", "gateway": "fd00::1"}]}"#,
    r#""network": {"routes": [{"destination": "fd00::/8", "gateway": "10.0.0.1"}]}"#,
    r#""network": {"routes": [{"destination": "default", "gateway": "10.0.0.1", "metric": 1}]}"#,
    r#""network": {"dns": {"port": 53}}"#,
    r#""network": {"dns": {"nameservers": ["dns.google"]}}"#,
    r#""network": {"dns": {"search": ["bad..name"]}}"#,
    r#""sysctl": {"net..core": "1"}"#,
    r#""sysctl": {"../../etc/passwd": "x"}"#,
    r#""sysctl": {"vm.swappiness": [1]}"#,
    r#""sysctl": {"vm.swappiness": true}"#,
    r#""sysctl": {"a b": "1"}"#,
    r#""sysctl": {"net/core": "1"}"#,
    r#""sysctl": {"net.core.": "1"}"#,
    r#""sysctl": {"": "1"}"#,
    r#""sysctl": []"#,
    r#""rlimits": {"files": {"soft": 1}}"#,
    r#""rlimits": {"nproc": {}}"#,
    r#""rlimits": {"nproc": {"soft": null}}"#,
    r#""rlimits": {"as": {"soft": -3}}"#,
    r#""rlimits": {"cpu": 5}"#,
    r#""rlimits": {"nofile": {"soft": "lots"}}"#,
    r#""rlimits": {"nofile": {"soft": 18446744073709551615}}"#,
    r#""rlimits": {"nofile": {"soft": 1, "max": 2}}"#,
    r#""rlimits": []"#,
    r#""mode": "daemon""#,
    r#""on_exit": "explode""#,
    r#""exit_port": 70000"#,
    r#""exit_port": -1"#,
    r#""log": "loud""#,
    r#""log": {"level": "loud"}"#,
    r#""log": {"loud": true}"#,
    r#""log": {"syslog": {}}"#,
    r#""log": {"syslog": "udp://10.0.2.2:514"}"#,
    r#""log": {"syslog": {"address": "10.0.2.2:514"}}"#,
    r#""log": {"syslog": {"address": "udp://logs.internal:514"}}"#,
    r#""log": {"syslog": {"address": "http://10.0.2.2:514"}}"#,
    r#""log": {"syslog": {"address": "udp://10.0.2.2"}}"#,
    r#""log": {"syslog": {"address": "udp://10.0.2.2:514", "app_name": "my app"}}"#,
    r#""log": {"syslog": {"address": "udp://10.0.2.2:514", "app_name": ""}}"#,
    r#""log": {"syslog": {"address": "udp://10.0.2.2:514", "app_name": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}}"#,
    r#""log": {"syslog": {"address": "udp://10.0.2.2:514", "kmsg": "yes"}}"#,
    r#""log": {"syslog": {"address": "udp://10.0.2.2:514"}}, "mode": "exec""#,
    r#""boot_marker": {"ioport": 1008, "mmio": 1, "value": 1}"#,
    r#""boot_marker": {"value": 1}"#,
    r#""boot_marker": {"ioport": 1008, "value": 300}"#,
    r#""boot_marker": {"ioport": 70000, "value": 1}"#,
    r#""boot_marker": {"mmio": "0xzz", "value": 1}"#,
    r#""boot_marker": {"mmio": -1, "value": 1}"#,
    r#""boot_marker": {"ioport": 1008}"#,
    r#""boot_marker": 1008"#,
    r#""boot_marker": {"ioport": 1008, "value": 1, "at": "boot"}"#,
    r#""boot_marker": {"ioport": 1008, "value": 1, "at": "ready"}"#,
    r#""ready": {"tcp": 0}"#,
    r#""ready": {"tcp": 65536}"#,
    r#""ready": {"unix": "run/app.sock"}"#,
    r#""ready": {"tcp": 80, "unix": "/s"}"#,
    r#""ready": {}"#,
    r#""ready": {"udp": 53}"#,
    r#""ready": 80"#,
    r#""ready": {"tcp": 80}, "mode": "exec""#,
    r#""entropy": {"seed_file": "/s", "credit": true}"#,
    r#""entropy": {"seed_file": "seed"}"#,
];

/// Refused by the validator only: rules JSON Schema cannot state. The schema accepts these.
const VALIDATOR_ONLY: &[(&str, &[&str])] = &[
    (
        "soft <= hard compares the values of two fields",
        &[r#""rlimits": {"nofile": {"soft": 10, "hard": 5}}"#],
    ),
    (
        "a route with neither gateway nor dev needs exactly one interface: a rule across lists",
        &[
            r#""network": {"interfaces": [{"name": "eth0"}, {"name": "eth1"}], "routes": [{"destination": "10.1.0.0/16"}]}"#,
            r#""network": {"routes": [{"destination": "10.1.0.0/16"}]}"#,
        ],
    ),
    (
        "a route's dev names one of network.interfaces (or lo): a rule across lists",
        &[
            r#""network": {"interfaces": [{"name": "eth0"}], "routes": [{"destination": "default", "gateway": "10.0.0.1", "dev": "eth9"}]}"#,
        ],
    ),
    (
        "integers are integer JSON numbers to the validator, while JSON Schema compares values \
         (2.0 and 1e3 are integers there)",
        &[
            r#"{"version": 1.0}"#,
            r#""app": {"groups": [1e3]}"#,
            r#""exit_port": 244.0"#,
            r#""network": {"interfaces": [{"name": "eth0", "mtu": 1500.0}]}"#,
            r#""rlimits": {"nofile": {"soft": 1.0}}"#,
            r#""boot_marker": {"ioport": 1008, "value": 1.0}"#,
        ],
    ),
    (
        "a number spelled in a string must fit its type: a pattern sees the digits, not the value",
        &[
            r#""app": {"user": "4294967296"}"#,
            r#""app": {"user": "0:4294967296"}"#,
            r#""boot_marker": {"mmio": "18446744073709551616", "value": 1}"#,
            r#""boot_marker": {"mmio": "0x10000000000000000", "value": 1}"#,
        ],
    ),
    (
        "an IP address and port must be in range: a pattern sees the digits, not the value",
        &[
            r#""log": {"syslog": {"address": "udp://10.0.2.256:514"}}"#,
            r#""log": {"syslog": {"address": "tcp://10.0.2.2:65536"}}"#,
            r#""log": {"syslog": {"address": "tcp://[fd00::2::3]:514"}}"#,
        ],
    ),
];

/// Accepted by the validator only: forms it takes that the schema does not document.
const SCHEMA_STRICTER: &[(&str, &[&str])] = &[
    (
        "null stands for an absent field to the validator; the schema allows null where its \
         example uses it (exit_port, boot_marker, entropy.seed_file)",
        &[
            r#""hostname": null"#,
            r#""app": null"#,
            r#""app": {"path": null, "user": null}"#,
            r#""mode": null, "log": null"#,
            r#""log": {"syslog": {"address": "udp://10.0.2.2:514", "app_name": null, "kmsg": null}}"#,
            r#""network": {"interfaces": [{"name": "eth0", "mtu": null}], "dns": null}"#,
            r#""boot_marker": {"ioport": 1008, "mmio": null, "value": 1}"#,
        ],
    ),
    (
        "Rust's integer parsing also takes a '+' sign and extra leading zeros in numbers \
         spelled in strings; the schema documents the plain form",
        &[
            r#""app": {"umask": "+22"}"#,
            r#""app": {"umask": "00022"}"#,
            r#""network": {"interfaces": [{"name": "eth0", "addresses": ["10.0.2.15/024"]}]}"#,
            r#""network": {"interfaces": [{"name": "eth0", "addresses": ["fd00::1/+64"]}]}"#,
            r#""boot_marker": {"mmio": "+5", "value": 1}"#,
            r#""boot_marker": {"mmio": "0x+ff", "value": 1}"#,
        ],
    ),
];

/// The document's text, for the validator, and its JSON value, for the schema.
fn document(case: &str) -> (String, Value) {
    let text = if case.starts_with(['{', '[']) {
        case.to_string()
    } else {
        format!(r#"{{"version": 1, {case}}}"#)
    };
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{case}: {e}"));
    (text, value)
}

/// Every case with what (validator, schema) must say: true for accepted.
fn cases() -> impl Iterator<Item = (&'static str, bool, bool)> {
    let listed = |table: &'static [(&str, &'static [&'static str])]| {
        table.iter().flat_map(|(_, cases)| cases.iter().copied())
    };
    let valid = VALID.iter().map(|c| (*c, true, true));
    let invalid = INVALID.iter().map(|c| (*c, false, false));
    let validator_only = listed(VALIDATOR_ONLY).map(|c| (c, false, true));
    let schema_stricter = listed(SCHEMA_STRICTER).map(|c| (c, true, false));
    valid
        .chain(invalid)
        .chain(validator_only)
        .chain(schema_stricter)
}

#[test]
fn the_schema_and_the_validator_agree() {
    let schema: Value = serde_json::from_str(include_str!("../../../manifest.schema.json"))
        .expect("the schema is JSON");
    let schema = jsonschema::validator_for(&schema).expect("the schema is a valid schema");
    let mut wrong = Vec::new();
    for (case, validator_ok, schema_ok) in cases() {
        let (text, value) = document(case);
        let by_validator = parse(&text);
        let by_schema: Vec<String> = schema.iter_errors(&value).map(|e| e.to_string()).collect();
        if by_validator.is_ok() != validator_ok {
            wrong.push(format!("validator: {case}: {by_validator:?}"));
        }
        if by_schema.is_empty() != schema_ok {
            wrong.push(format!("schema: {case}: {by_schema:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

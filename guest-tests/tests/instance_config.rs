//! Per-instance configuration (`lupine.config=`): a manifest fragment from Firecracker's
//! metadata service (MMDS, V2 session protocol; here a host server behind QEMU's guestfwd at
//! 169.254.169.254:80) or from a raw config drive, merged over the image's manifest before
//! the app starts; every failure ends the VM with `lupine: fatal: config: SOURCE: ...`.

use std::time::Duration;

use guest_tests::{mmds, Initramfs, Outcome, TempDir, Vm};
use serde_json::json;

/// The app shows what the fragment can change: the hostname and the environment.
const MANIFEST: &str = r#"{"version": 1,
  "app": {"path": "/bin/sh",
          "args": ["-c", "echo \"host=$(hostname) secret=$SECRET image=${FROM_IMAGE:-unset}\""],
          "env": {"FROM_IMAGE": "yes"}},
  "hostname": "from-image",
  "network": {"interfaces": [{"name": "eth0", "addresses": ["169.254.169.15/24"]}]}}"#;

const SECRET: &str = "s3cr3t-f0r-this-vm-only";

/// A VM of [`MANIFEST`] with `lupine.config=CONFIG`, on a user network where 169.254.169.254
/// can be forwarded.
fn vm(tmp: &TempDir, config: &str) -> Vm {
    let initrd = Initramfs::new(MANIFEST)
        .unwrap()
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    Vm::lupine(&initrd)
        .unwrap()
        .user_net("169.254.169.0/24")
        .append(&format!("lupine.config={config}"))
}

/// Boots with init's debug log (to check that no message shows the secret) and
/// 169.254.169.254:80 reaching `server`.
fn boot(tmp: &TempDir, config: &str, server: Option<&mmds::Server>) -> Outcome {
    let mut vm = vm(tmp, config)
        .append("lupine.log=debug loglevel=8")
        .timeout(Duration::from_secs(90));
    if let Some(server) = server {
        vm = vm.guestfwd("169.254.169.254", 80, server.port());
    }
    vm.run().unwrap()
}

#[test]
fn mmds_fragment_sets_the_hostname_and_a_secret_never_logged() {
    let tmp = TempDir::new("config-mmds").unwrap();
    let data = json!({"lupine": {"hostname": "vm-7", "app": {"env": {"SECRET": SECRET}}},
                      "other": {"SECRET": "not for lupine"}});
    let server = mmds::Server::start(data).unwrap();
    let out = boot(&tmp, "mmds", Some(&server));
    out.assert_exit_status(0);
    let line = format!("host=vm-7 secret={SECRET} image=yes");
    assert!(out.has_line(&line), "{out}");
    // The app's own line is the only place the secret shows, debug log included.
    assert_eq!(out.console.matches(SECRET).count(), 1, "{out}");
    assert!(
        out.console.contains("lupine: config: applied mmds /lupine"),
        "{out}"
    );

    // The V2 session: a token first, then the GET that carries it, and nothing without one.
    let requests = server.requests();
    let (put, get) = match requests.as_slice() {
        [put, get] => (put, get),
        _ => panic!("expected a PUT and a GET, got {requests:?}"),
    };
    assert_eq!(
        (put.method.as_str(), put.path.as_str()),
        ("PUT", mmds::TOKEN_PATH)
    );
    assert_eq!(put.header("X-metadata-token-ttl-seconds"), Some("60"));
    assert_eq!((get.method.as_str(), get.path.as_str()), ("GET", "/lupine"));
    assert!(get.token().is_some(), "{get:?}");
    assert_eq!(get.header("Accept"), Some("application/json"));
    assert!(server.errors().is_empty(), "{:?}", server.errors());
}

#[test]
fn mmds_key_path_and_null_deletes_a_field_of_the_image() {
    let tmp = TempDir::new("config-mmds-path").unwrap();
    let data = json!({"tenants": {"a": {"app": {"env": {"SECRET": "a", "FROM_IMAGE": null}}}}});
    let server = mmds::Server::start(data).unwrap();
    let out = boot(&tmp, "mmds:/tenants/a", Some(&server));
    out.assert_exit_status(0);
    assert!(
        out.has_line("host=from-image secret=a image=unset"),
        "{out}"
    );
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, [mmds::TOKEN_PATH, "/tenants/a"]);
}

#[test]
fn mmds_failures_end_the_vm_with_a_config_error() {
    let tmp = TempDir::new("config-mmds-fail").unwrap();
    // A service that refuses tokens (a V1-only MMDS, say) is an answer: no retries.
    let refusing = mmds::Server::start_refusing_tokens(json!({"lupine": {}})).unwrap();
    let out = boot(&tmp, "mmds", Some(&refusing));
    assert_fatal(
        &out,
        "lupine: fatal: config: mmds /lupine: PUT /latest/api/token: HTTP 405",
    );
    // No such key.
    let empty = mmds::Server::start(json!({"other": 1})).unwrap();
    let out = boot(&tmp, "mmds", Some(&empty));
    assert_fatal(
        &out,
        "lupine: fatal: config: mmds /lupine: GET /lupine: HTTP 404 (no such path in the metadata)",
    );
    // Nobody at 169.254.169.254: tried again, then given up with a hint.
    let out = boot(&tmp, "mmds", None);
    assert_fatal(
        &out,
        "lupine: fatal: config: mmds /lupine: PUT /latest/api/token: ",
    );
    assert!(
        out.console.contains("(after 4 tries: is MMDS enabled"),
        "{out}"
    );
    // A fragment that makes the manifest invalid names the field, never the value.
    let bad = mmds::Server::start(json!({"lupine": {"app": {"env": {"SECRET": 12345678}}}}));
    let out = boot(&tmp, "mmds", Some(&bad.unwrap()));
    assert_fatal(
        &out,
        "lupine: fatal: config: /etc/lupine.json with mmds /lupine: \
         app.env.SECRET: is not a string (values are not shown)",
    );
    assert!(!out.console.contains("12345678"), "{out}");
    // What is set before the network is up cannot come from the network.
    let net = mmds::Server::start(json!({"lupine": {"network": {"wait_s": 1}}})).unwrap();
    let out = boot(&tmp, "mmds", Some(&net));
    assert_fatal(
        &out,
        "lupine: fatal: config: mmds /lupine: \"network\" cannot come from there",
    );
}

/// A raw drive: the JSON, then zeros to the end of the device.
fn config_drive(tmp: &TempDir, name: &str, json: &str) -> std::path::PathBuf {
    let mut bytes = json.as_bytes().to_vec();
    bytes.resize(4096, 0);
    let path = tmp.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn boot_with_drive(tmp: &TempDir, drive: Option<&std::path::Path>, config: &str) -> Outcome {
    let vm = vm(tmp, config);
    match drive {
        Some(drive) => vm.disk(drive),
        None => vm,
    }
    .run()
    .unwrap()
}

#[test]
fn config_drive_fragment_applies_and_its_failures_name_the_drive() {
    let tmp = TempDir::new("config-drive").unwrap();
    let fragment =
        format!(r#"{{"hostname": "from-drive", "app": {{"env": {{"SECRET": "{SECRET}"}}}}}}"#);
    let good = config_drive(&tmp, "good.img", &fragment);
    let out = boot_with_drive(&tmp, Some(&good), "/dev/vda");
    out.assert_exit_status(0);
    assert!(
        out.has_line(&format!("host=from-drive secret={SECRET} image=yes")),
        "{out}"
    );

    let not_json = config_drive(&tmp, "bad.img", r#"{"hostname": "#);
    let out = boot_with_drive(&tmp, Some(&not_json), "/dev/vda");
    assert_fatal(&out, "lupine: fatal: config: /dev/vda: not valid JSON: ");

    let array = config_drive(&tmp, "array.img", "[1, 2]");
    let out = boot_with_drive(&tmp, Some(&array), "/dev/vda");
    assert_fatal(&out, "lupine: fatal: config: /dev/vda: not a JSON object");

    let out = boot_with_drive(&tmp, None, "/dev/vdb");
    assert_fatal(
        &out,
        "lupine: fatal: config: /dev/vdb: no such device (waited 5 s)",
    );

    let out = boot_with_drive(&tmp, None, "vdb");
    assert_fatal(
        &out,
        "lupine: fatal: config: lupine.config=vdb: expected \"mmds\", \"mmds:/PATH\" or a device \"/dev/NAME\"",
    );
}

/// The VM ended with one fatal line starting with `prefix`, status 1, and the app never ran.
fn assert_fatal(out: &Outcome, prefix: &str) {
    let fatal = out.lines_starting("lupine: fatal:");
    assert!(
        fatal.len() == 1 && fatal[0].starts_with(prefix),
        "want one {prefix:?}\n{out}"
    );
    assert!(out.lines_starting("host=").is_empty(), "{out}");
    assert!(
        out.lines_starting("lupine: exit status").is_empty(),
        "{out}"
    );
}

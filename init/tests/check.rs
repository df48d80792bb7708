//! `lupine-init --check FILE` on the host, and the guard against running outside PID 1.

use std::process::Command;

fn lupine_init(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lupine-init"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(name: &str, text: &str) -> String {
    let path = std::env::temp_dir().join(format!("lupine-check-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn valid_manifest_prints_ok() {
    let schema = include_str!("../manifest.schema.json");
    let example = &serde_json::from_str::<serde_json::Value>(schema).unwrap()["examples"][0];
    let file = write("valid.json", &example.to_string());
    assert_eq!(
        lupine_init(&["--check", &file]),
        (0, "ok\n".into(), String::new())
    );
}

#[test]
fn every_problem_is_printed_with_file_and_path() {
    let file = write(
        "bad.json",
        r#"{"version": 1, "network": {"interfaces": [{"name": "eth0", "addresses": ["10.0.2.15/24", "10.0.2.300/24"]}]}, "rlimits": {"nofile": {"soft": "lots"}}, "extra": 1}"#,
    );
    let (code, out, _) = lupine_init(&["--check", &file]);
    assert_eq!(code, 1);
    assert_eq!(
        out,
        format!(
            "{file}: extra: unknown field (expected one of: version, app, hostname, mounts, network, sysctl, rlimits, mode, on_exit, exit_port, boot_marker, ready, entropy, log)\n\
             {file}: network.interfaces[0].addresses[1]: \"10.0.2.300/24\" is not an IP prefix\n\
             {file}: rlimits.nofile.soft: \"lots\" is not a non-negative integer or \"unlimited\"\n"
        )
    );
}

#[test]
fn unreadable_or_missing_file_argument() {
    let (code, _, err) = lupine_init(&["--check", "/no/such/manifest.json"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("/no/such/manifest.json: "), "{err}");
    let (code, _, err) = lupine_init(&["--check"]);
    assert_eq!(code, 2);
    assert!(err.starts_with("usage:"), "{err}");
    let dir = std::env::temp_dir();
    let (code, _, _) = lupine_init(&["--check", dir.to_str().unwrap()]);
    assert_eq!(code, 1);
}

#[test]
fn refuses_to_run_as_init_outside_pid_1() {
    let (code, _, err) = lupine_init(&[]);
    assert_eq!(code, 2);
    assert!(err.starts_with("lupine-init: not PID 1"), "{err}");
}

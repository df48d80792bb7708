//! The command line: exit codes (0 ok, 1 refused, 2 usage), one-line messages, and a build
//! as an unprivileged user.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::json;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_lupine-image");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn image(dir: &Path) {
    let l = LayerTar::new()
        .dir("bin", 0o755)
        .file("bin/app", b"x", 0o755)
        .finish();
    oci(dir, &Spec::new(vec![l], json!({"Cmd": ["/bin/app"]})));
}

#[test]
fn exit_codes_and_messages() {
    let d = scratch("cli");
    image(&d.join("oci"));
    let init = lupine_init().unwrap();
    let init = init.to_str().unwrap();
    let oci = d.join("oci");
    let oci = oci.to_str().unwrap();
    let out = d.join("root.ext4");
    let out_s = out.to_str().unwrap();

    let o = run(&[oci, "-o", out_s, "--init", init]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(out.is_file());

    for (args, needle) in [
        (vec![], "missing IMAGE"),
        (vec![oci, "--init", init], "missing -o OUTPUT"),
        (vec![oci, "-o", out_s], "missing --init"),
        (
            vec![oci, "-o", out_s, "--init", init, "--format", "squashfs"],
            "unknown --format",
        ),
        (
            vec![oci, "-o", out_s, "--init", init, "--size", "lots"],
            "--size",
        ),
        (
            vec![oci, "-o", out_s, "--init", init, "--bogus"],
            "unknown option --bogus",
        ),
        (vec![oci, "-o"], "-o needs a value"),
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("usage: lupine-image"));
    }

    let o = run(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("usage"));

    let missing = d.join("nope");
    let out2 = d.join("root2.ext4");
    let o = run(&[
        missing.to_str().unwrap(),
        "-o",
        out2.to_str().unwrap(),
        "--init",
        init,
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.starts_with("lupine-image: ") && e.contains("nope"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(!out2.exists());

    // An invalid manifest: lupine-init's message, exit 1.
    fs::write(d.join("frag.json"), br#"{"app": {"cwd": "rel"}}"#).unwrap();
    let o = run(&[
        oci,
        "-o",
        out2.to_str().unwrap(),
        "--init",
        init,
        "--manifest",
        d.join("frag.json").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("app.cwd"), "{}", stderr(&o));
    assert!(!out2.exists());
    fs::remove_dir_all(&d).unwrap();
}

/// As root, run the whole build again as nobody (65534) on copies in a world-readable temp dir.
/// Needs root to switch to nobody; run by scripts/test.sh with --include-ignored.
#[test]
#[ignore = "needs root"]
fn works_without_root() {
    let uid = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
    assert_eq!(
        uid.trim(),
        "0",
        "works_without_root needs root: it runs lupine-image as nobody through setpriv"
    );
    let d = scratch("nonroot");
    fs::set_permissions(&d, fs::Permissions::from_mode(0o777)).unwrap();
    let l = LayerTar::new()
        .dir("bin", 0o755)
        .owned("bin/suid", b"s", 0o4755, 0, 0)
        .owned("secret", b"s", 0o000, 7, 7)
        .dir("locked", 0o000)
        .file("locked/inner", b"i", 0o644)
        .chardev("null", 1, 3, 0o666)
        .fifo("pipe", 0o600)
        .finish();
    let dir = d.join("oci2");
    oci(&dir, &Spec::new(vec![l], json!({"Cmd": ["/bin/suid"]})));
    fs::copy(BIN, d.join("lupine-image")).unwrap();
    fs::copy(lupine_init().unwrap(), d.join("lupine-init")).unwrap();
    Command::new("chmod")
        .arg("-R")
        .arg("a+rX")
        .arg(&d)
        .status()
        .unwrap();
    let out = d.join("out");
    fs::create_dir(&out).unwrap();
    Command::new("chown")
        .arg("65534:65534")
        .arg(&out)
        .status()
        .unwrap();
    for (name, fmt) in [("root.ext4", "ext4"), ("root.cpio", "initramfs")] {
        let o = Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(d.join("lupine-image"))
            .arg(&dir)
            .arg("-o")
            .arg(out.join(name))
            .arg("--init")
            .arg(d.join("lupine-init"))
            .args(["--format", fmt])
            .output()
            .unwrap();
        assert!(o.status.success(), "{fmt}: {}", stderr(&o));
    }
    assert_eq!(listing(&out), vec!["root.cpio", "root.ext4"]);
    let img = out.join("root.ext4");
    assert_eq!(fs::metadata(&img).unwrap().uid(), 65534);
    let root = ext4_ls(&img, "/");
    assert_eq!(root["secret"].0, 0o100000);
    assert_eq!((root["secret"].1, root["secret"].2), (7, 7));
    assert_eq!(root["locked"].0, 0o40000);
    assert_eq!(root["null"].0, 0o20666);
    assert_eq!(root["pipe"].0, 0o10600);
    assert_eq!(root["lupine-init"].1, 0);
    assert_eq!(ext4_ls(&img, "/bin")["suid"].0, 0o104755);
    assert_eq!(ext4_cat(&img, "/locked/inner"), b"i");
    fs::remove_dir_all(&d).unwrap();
}

use std::os::unix::fs::MetadataExt;

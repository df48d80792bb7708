//! `--relink`: static musl programs are relinked (and still run), dynamic ones are skipped.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde_json::json;
use support::*;

const HELLO: &str = r#"
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
    printf("hello from pid %d argc %d\n", getpid() > 0, argc);
    return 7;
}
"#;

fn compile(dir: &Path, cc: &str, flags: &[&str], out: &str) -> Vec<u8> {
    let src = dir.join("hello.c");
    fs::write(&src, HELLO).unwrap();
    let st = Command::new(cc)
        .args(flags)
        .arg("-O2")
        .arg("-o")
        .arg(dir.join(out))
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success(), "{cc} failed");
    fs::read(dir.join(out)).unwrap()
}

#[test]
fn relinks_static_programs_and_skips_dynamic_ones() {
    let d = scratch("relink");
    let stat = compile(&d, "musl-gcc", &["-static"], "hello-static");
    let dynm = compile(&d, "gcc", &[], "hello-dyn");
    let layer = LayerTar::new()
        .dir("bin", 0o755)
        .owned("bin/hello", &stat, 0o4750, 0, 33)
        .hardlink("bin/hello-again", "bin/hello")
        .file("bin/dyn", &dynm, 0o755)
        .file("bin/script", b"#!/bin/sh\necho hi\n", 0o755)
        .finish();
    oci(
        &d.join("oci"),
        &Spec::new(vec![layer], json!({"Cmd": ["/bin/hello"]})),
    );
    let out = d.join("root.ext4");
    let mut o = options(&d.join("oci"), &out);
    o.relink = true;
    o.report = Some(d.join("report.json"));
    let built = lupine_image::build(&o).unwrap();
    let s = built.relink.unwrap();
    assert_eq!(s.relinked.len(), 1, "{s:?}");
    assert_eq!(s.relinked[0].path, "/bin/hello");
    assert!(s.relinked[0].rewritten > 0);
    assert_eq!(s.skipped.len(), 1, "{s:?}");
    assert_eq!(s.skipped[0].path, "/bin/dyn");
    assert!(
        s.skipped[0].reason.contains("dynamically linked"),
        "{}",
        s.skipped[0].reason
    );
    let report: serde_json::Value =
        serde_json::from_slice(&fs::read(d.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["relinked"][0]["path"], "/bin/hello");

    // In the image: relinked, same mode and owner, hard link intact, init untouched.
    let relinked = ext4_cat(&out, "/bin/hello");
    assert_ne!(relinked, stat);
    assert!(
        relinked.windows(12).any(|w| w == b".lupine.text"),
        "carries the relinker's section"
    );
    let bin = ext4_ls(&out, "/bin");
    assert_eq!((bin["hello"].0, bin["hello"].2), (0o104750, 33));
    assert_eq!(bin["hello"].3, bin["hello-again"].3);
    assert_eq!(ext4_cat(&out, "/bin/dyn"), dynm);
    assert_eq!(
        ext4_cat(&out, "/lupine-init"),
        fs::read(lupine_init().unwrap()).unwrap()
    );

    // Dumped and run on the host (no KML: the relinked syscalls fall back to `syscall`).
    let dumped = d.join("dumped");
    let st = Command::new("debugfs")
        .arg("-R")
        .arg(format!("dump /bin/hello {}", dumped.display()))
        .arg(&out)
        .output()
        .unwrap();
    assert!(st.status.success());
    fs::set_permissions(&dumped, fs::Permissions::from_mode(0o755)).unwrap();
    let run = Command::new(&dumped).arg("x").output().unwrap();
    assert_eq!(run.status.code(), Some(7));
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "hello from pid 1 argc 2\n"
    );
    fs::remove_dir_all(&d).unwrap();
}

//! `--relink`: static musl programs and shared libraries are relinked (and still run); a
//! dynamically linked program without syscall sites of its own is left as it is.

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
fn relinks_programs_and_libraries_and_leaves_what_has_no_syscall() {
    let d = scratch("relink");
    let stat = compile(&d, "musl-gcc", &["-static"], "hello-static");
    let dynm = compile(&d, "musl-gcc", &[], "hello-dyn");
    let libc = fs::read("/usr/lib/x86_64-linux-musl/libc.so").unwrap();
    let layer = LayerTar::new()
        .dir("lib", 0o755)
        .file("lib/ld-musl-x86_64.so.1", &libc, 0o755)
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
    let mut relinked: Vec<&str> = s.relinked.iter().map(|r| r.path.as_str()).collect();
    relinked.sort();
    assert_eq!(
        relinked,
        ["/bin/hello", "/lib/ld-musl-x86_64.so.1"],
        "{s:?}"
    );
    assert!(s.relinked.iter().all(|r| r.rewritten > 0));
    assert_eq!(s.skipped.len(), 1, "{s:?}");
    assert_eq!(s.skipped[0].path, "/bin/dyn");
    assert_eq!(s.skipped[0].reason, "no syscall sites");
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
    // The dynamic program, through the image's relinked musl dynamic linker.
    let ld = d.join("ld-musl");
    let st = Command::new("debugfs")
        .arg("-R")
        .arg(format!("dump /lib/ld-musl-x86_64.so.1 {}", ld.display()))
        .arg(&out)
        .output()
        .unwrap();
    assert!(st.status.success());
    assert_ne!(fs::read(&ld).unwrap(), libc);
    fs::set_permissions(&ld, fs::Permissions::from_mode(0o755)).unwrap();
    let run = Command::new(&ld).arg(d.join("hello-dyn")).output().unwrap();
    assert_eq!(run.status.code(), Some(7));
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "hello from pid 1 argc 1\n"
    );
    fs::remove_dir_all(&d).unwrap();
}

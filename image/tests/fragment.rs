//! `--kernel-fragment`: the Kconfig fragment of the image's entry point. A dynamically linked
//! musl program (epoll, eventfd, timerfd, an AF_UNIX socketpair, all through libc.so) gets the
//! options of what it imports, reached through the image's symbolic links; one whose library is
//! missing from the image is refused, naming the library, and nothing is written.

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::json;
use support::*;

const PROBE: &str = include_str!("../../config/tests/kconfig-probe.c");

fn compile(dir: &Path) -> Vec<u8> {
    let src = dir.join("probe.c");
    fs::write(&src, PROBE).unwrap();
    let out = dir.join("probe");
    let st = Command::new("musl-gcc")
        .args(["-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success(), "musl-gcc failed");
    fs::read(out).unwrap()
}

fn build(d: &Path, with_libc: bool) -> (lupine_image::Result<lupine_image::Built>, String) {
    let probe = compile(d);
    let libc = fs::read("/usr/lib/x86_64-linux-musl/libc.so").unwrap();
    let mut layer = LayerTar::new().dir("usr", 0o755).dir("usr/bin", 0o755);
    if with_libc {
        layer = layer
            .dir("usr/lib", 0o755)
            .file("usr/lib/libc.musl-x86_64.so.1", &libc, 0o755)
            .dir("lib", 0o755)
            .symlink(
                "lib/ld-musl-x86_64.so.1",
                "../usr/lib/libc.musl-x86_64.so.1",
            );
    }
    let layer = layer
        .file("usr/bin/probe", &probe, 0o755)
        .symlink("usr/bin/app", "probe")
        .finish();
    let oci_dir = d.join(format!("oci-{with_libc}"));
    oci(
        &oci_dir,
        &Spec::new(vec![layer], json!({"Entrypoint": ["/usr/bin/app"]})),
    );
    let mut o = options(&oci_dir, &d.join("root.ext4"));
    let frag = d.join(format!("app-{with_libc}.config"));
    o.kernel_fragment = Some(frag.clone());
    let r = lupine_image::build(&o);
    (r, fs::read_to_string(&frag).unwrap_or_default())
}

#[test]
fn the_entry_points_fragment_comes_from_what_it_imports() {
    let d = scratch("fragment");
    let (r, text) = build(&d, true);
    r.unwrap();
    for opt in ["EPOLL", "EVENTFD", "TIMERFD", "UNIX"] {
        assert!(
            text.contains(&format!("\nCONFIG_{opt}=y\n")),
            "no {opt}:\n{text}"
        );
    }
    assert!(
        text.contains("loads the C library /lib/ld-musl-x86_64.so.1"),
        "{text}"
    );

    let (r, text) = build(&d, false);
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("/usr/bin/app") && e.contains("ld-musl-x86_64.so.1"),
        "{e}"
    );
    assert!(text.is_empty(), "a fragment was written: {text}");
    fs::remove_dir_all(&d).unwrap();
}

/// A `#!` entry point (as official images' docker-entrypoint.sh): its interpreter's fragment,
/// and BINFMT_SCRIPT.
#[test]
fn a_script_entry_point_stands_for_its_interpreter() {
    let d = scratch("fragment-script");
    let busybox = fs::read("/bin/busybox").unwrap();
    let layer = LayerTar::new()
        .dir("bin", 0o755)
        .file("bin/busybox", &busybox, 0o755)
        .symlink("bin/sh", "busybox")
        .file("entrypoint.sh", b"#!/bin/sh -e\nexec echo hi\n", 0o755)
        .finish();
    oci(
        &d.join("oci"),
        &Spec::new(vec![layer], json!({"Entrypoint": ["/entrypoint.sh"]})),
    );
    let mut o = options(&d.join("oci"), &d.join("root.ext4"));
    let frag = d.join("app.config");
    o.kernel_fragment = Some(frag.clone());
    lupine_image::build(&o).unwrap();
    let text = fs::read_to_string(&frag).unwrap();
    assert!(text.contains("derived from sh"), "{text}");
    assert!(text.contains("\nCONFIG_BINFMT_SCRIPT=y\n"), "{text}");
    assert!(
        text.contains("\nCONFIG_MULTIUSER=y\n"),
        "busybox's setuid:\n{text}"
    );
    fs::remove_dir_all(&d).unwrap();
}

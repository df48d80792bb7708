//! Faults while writing: lupine-image writing to a full filesystem, or killed with SIGKILL at
//! any point, leaves the previous output whole; its temporary work is removed when it fails,
//! and by the next run when it was killed.

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::json;
use support::*;
use test_support::Tmpfs;

const BIN: &str = env!("CARGO_BIN_EXE_lupine-image");

/// An image with 4 MiB of incompressible data, so a build takes long enough to be killed in
/// every phase (reading layers, building the tree, writing ext4, renaming).
fn image(dir: &Path) {
    let mut data = vec![0u8; 4 << 20];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let l = LayerTar::new()
        .dir("bin", 0o755)
        .file("bin/app", b"x", 0o755)
        .file("data", &data, 0o644)
        .finish();
    oci(dir, &Spec::new(vec![l], json!({"Cmd": ["/bin/app"]})));
}

fn build(oci: &Path, out: &Path) -> Command {
    let init = lupine_init().unwrap();
    let mut c = Command::new(BIN);
    c.arg(oci).arg("-o").arg(out).arg("--init").arg(init);
    c
}

/// Names in `dir` other than `keep`.
fn others(dir: &Path, keep: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != keep)
        .collect();
    names.sort();
    names
}

/// Whether `path` is a whole ext4 filesystem holding the image's data (e2fsck finds nothing,
/// debugfs reads the 4 MiB file): ext4 images are not byte for byte reproducible.
fn whole_ext4(path: &Path) -> bool {
    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(path)
        .output()
        .unwrap();
    let stat = Command::new("debugfs")
        .args(["-R", "stat /data"])
        .arg(path)
        .output()
        .unwrap();
    fsck.status.success() && String::from_utf8_lossy(&stat.stdout).contains("Size: 4194304")
}

#[test]
fn killed_at_any_point_the_previous_output_stays_whole() {
    let d = scratch("faults-kill");
    image(&d.join("oci"));
    let out_dir = d.join("out");
    fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("root.ext4");
    // How long a run left alone takes.
    let start = Instant::now();
    assert!(build(&d.join("oci"), &out).status().unwrap().success());
    let full = start.elapsed();
    fs::write(&out, b"the previous output").unwrap();

    let mut left_behind = 0;
    for i in 0..12u32 {
        let mut child = build(&d.join("oci"), &out).spawn().unwrap();
        std::thread::sleep(full * i / 10);
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        let now = fs::read(&out).unwrap();
        assert!(
            now == b"the previous output" || whole_ext4(&out),
            "killed after {:?}: a partial output ({} bytes)",
            full * i / 10,
            now.len()
        );
        // What the killed run left can only be its work directory.
        for name in others(&out_dir, "root.ext4") {
            assert!(name.starts_with(".root.ext4.lupine-image."), "{name}");
            left_behind += 1;
        }
        fs::write(&out, b"the previous output").unwrap();
    }
    assert!(
        left_behind > 0,
        "no kill left a work directory: none tested the clean-up"
    );
    // The next run removes what the killed ones left.
    assert!(build(&d.join("oci"), &out).status().unwrap().success());
    assert!(whole_ext4(&out));
    assert_eq!(others(&out_dir, "root.ext4"), Vec::<String>::new());
    fs::remove_dir_all(&d).unwrap();
}

#[test]
#[ignore = "needs root"]
fn a_full_filesystem_fails_cleanly() {
    let d = scratch("faults-full");
    image(&d.join("oci"));
    let out_dir = d.join("out");
    fs::create_dir(&out_dir).unwrap();
    let tmpfs = Tmpfs::mount(&out_dir, "2m");
    let out = out_dir.join("root.ext4");
    fs::write(&out, b"the previous output").unwrap();
    let o = build(&d.join("oci"), &out).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let kept = fs::read(&out).unwrap();
    let left = others(&out_dir, "root.ext4");
    drop(tmpfs);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert_eq!(kept, b"the previous output");
    assert_eq!(left, Vec::<String>::new());
    fs::remove_dir_all(&d).unwrap();
}

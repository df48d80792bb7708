//! Building images from both input formats: layer order, whiteouts, metadata in ext4 and cpio.

mod support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::{Command, Stdio};

use lupine_image::layers::{Kind, Tree};
use serde_json::json;
use support::*;

fn config() -> serde_json::Value {
    json!({"Entrypoint": ["/bin/app"], "Cmd": ["--flag", "x"], "Env": ["PATH=/bin", "A=b=c"],
           "WorkingDir": "/work", "User": "1000:1000"})
}

fn check_tree(tree: &Tree) {
    use lupine_image::layers::Kind;
    let get = |p: &str| tree.nodes.get(p).unwrap_or_else(|| panic!("{p} missing"));
    assert_eq!(
        get("bin/app").kind,
        Kind::File(std::rc::Rc::new(b"app v2".to_vec()))
    );
    assert!(tree.nodes.contains_key("etc/keep"));
    assert!(!tree.nodes.contains_key("etc/gone"), "whiteout must delete");
    assert!(
        !tree.nodes.contains_key("opq/lower"),
        "opaque dir hides lower contents"
    );
    assert!(
        tree.nodes.contains_key("opq/upper"),
        "opaque dir keeps this layer's contents"
    );
    assert_eq!(
        get("swap").kind,
        Kind::File(std::rc::Rc::new(b"now a file".to_vec()))
    );
    assert!(!tree.nodes.contains_key("swap/inner"));
    assert_eq!(get("flip").kind, Kind::Dir);
    assert!(tree.nodes.contains_key("flip/child"));
    assert_eq!(get("bin/app-link").ino, get("bin/app").ino);
    assert!(!tree.nodes.keys().any(|k| k.contains(".wh.")));
}

#[test]
fn oci_layout_and_both_docker_save_forms_give_the_same_tree() {
    let d = scratch("formats");
    let spec = Spec::new(two_layers(), config());
    oci(&d.join("oci"), &spec);
    let (_, tree) = lupine_image::read_tree(&d.join("oci"), None).unwrap();
    check_tree(&tree);

    docker_save(&d.join("legacy.tar"), &spec, "app:1");
    let (_, t2) = lupine_image::read_tree(&d.join("legacy.tar"), None).unwrap();
    check_tree(&t2);
    let (_, t3) = lupine_image::read_tree(&d.join("legacy.tar"), Some("app:1")).unwrap();
    check_tree(&t3);
    assert!(lupine_image::read_tree(&d.join("legacy.tar"), Some("other:1")).is_err());

    tar_dir(&d.join("oci"), &d.join("oci.tar"));
    let (_, t4) = lupine_image::read_tree(&d.join("oci.tar"), None).unwrap();
    check_tree(&t4);
    assert_eq!(
        tree.nodes.keys().collect::<Vec<_>>(),
        t4.nodes.keys().collect::<Vec<_>>()
    );

    // Uncompressed layers too.
    let mut plain = Spec::new(two_layers(), config());
    plain.gzip = false;
    oci(&d.join("plain"), &plain);
    check_tree(&lupine_image::read_tree(&d.join("plain"), None).unwrap().1);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn index_selection_by_ref_platform_and_nesting() {
    let d = scratch("select");
    let a = Spec::new(
        vec![LayerTar::new().file("which", b"a", 0o644).finish()],
        config(),
    );
    let b = Spec::new(
        vec![LayerTar::new().file("which", b"b", 0o644).finish()],
        config(),
    );
    let which = |dir: &Path, r: Option<&str>| -> Result<Vec<u8>, String> {
        let (_, t) = lupine_image::read_tree(dir, r).map_err(|e| e.to_string())?;
        match &t.nodes["which"].kind {
            Kind::File(d) => Ok(d.to_vec()),
            _ => panic!(),
        }
    };
    let two = d.join("two");
    oci_tagged(&two, &[(&a, "a", "arm64"), (&b, "b", "amd64")], None);
    assert_eq!(which(&two, Some("a")).unwrap(), b"a");
    assert_eq!(
        which(&two, None).unwrap(),
        b"b",
        "linux/amd64 wins without --ref"
    );

    let same = d.join("same");
    oci_tagged(&same, &[(&a, "a", "amd64"), (&b, "b", "amd64")], None);
    let e = which(&same, None).unwrap_err();
    assert!(e.contains("choose one with --ref"), "{e}");
    assert_eq!(which(&same, Some("b")).unwrap(), b"b");

    let nested = d.join("nested");
    oci_tagged(
        &nested,
        &[(&a, "", "arm64"), (&b, "", "amd64")],
        Some("multi"),
    );
    assert_eq!(which(&nested, Some("multi")).unwrap(), b"b");
    assert!(which(&nested, Some("nope"))
        .unwrap_err()
        .contains("no image manifest"));
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn ext4_keeps_owners_modes_links_and_devices() {
    let d = scratch("ext4");
    oci(&d.join("oci"), &Spec::new(two_layers(), config()));
    let out = d.join("out/root.ext4");
    fs::create_dir(d.join("out")).unwrap();
    lupine_image::build(&options(&d.join("oci"), &out)).unwrap();
    assert_eq!(
        listing(&d.join("out")),
        vec!["root.ext4"],
        "no temp files left"
    );

    let root = ext4_ls(&out, "/");
    assert_eq!(root["lupine-init"].0, 0o100755);
    assert_eq!(
        (
            root["home-file"].0,
            root["home-file"].1,
            root["home-file"].2
        ),
        (0o100640, 1234, 5678)
    );
    assert_eq!(root["shared"].0, 0o41777);
    assert_eq!(root["swap"].0, 0o100600);
    assert_eq!(root["flip"].0, 0o40750);
    assert_eq!(root["work"].0, 0o40700);
    assert_eq!(root["dev-null"].0, 0o20666);
    assert_eq!(root["pipe"].0, 0o10620);
    for dir in ["dev", "proc", "sys", "tmp", "run", "etc"] {
        assert_eq!(root[dir].0 & 0o170000, 0o040000, "/{dir} is a directory");
    }
    assert_eq!(root["tmp"].0, 0o41777);
    let bin = ext4_ls(&out, "/bin");
    assert_eq!(bin["suid"].0, 0o104755);
    assert_eq!(
        (bin["sgid"].0, bin["sgid"].1, bin["sgid"].2),
        (0o102711, 1000, 50)
    );
    assert_eq!(bin["sh"].0 & 0o170000, 0o120000);
    assert_eq!(
        bin["app"].3, bin["app-link"].3,
        "hard link shares the inode"
    );
    assert!(debugfs(&out, "stat /bin/app").contains("Links: 2"));
    assert!(debugfs(&out, "stat /bin/sh").contains("Fast link dest: \"/bin/busybox\""));
    assert!(debugfs(&out, "stat /dev-null").contains("Device major/minor number: 01:03"));
    assert_eq!(ext4_cat(&out, "/bin/app"), b"app v2");
    assert_eq!(ext4_cat(&out, "/sp ace/a file"), b"spaced");
    let spaced = debugfs(&out, "stat \"/sp ace/a file\"");
    assert!(spaced.contains("User:     3   Group:     4"), "{spaced}");
    assert!(debugfs(&out, "stat \"/sp ace/a fifo\"").contains("Type: FIFO"));
    assert_eq!(
        ext4_cat(&out, "/lupine-init"),
        fs::read(lupine_init().unwrap()).unwrap()
    );
    let m: serde_json::Value = serde_json::from_slice(&ext4_cat(&out, "/etc/lupine.json")).unwrap();
    assert_eq!(m["app"]["path"], "/bin/app");
    assert!(ext4_ls(&out, "/opq").contains_key("upper"));
    assert!(!ext4_ls(&out, "/opq").contains_key("lower"));
    assert!(!ext4_ls(&out, "/etc").contains_key("gone"));
    // A clean filesystem.
    let fsck = Command::new("e2fsck")
        .args(["-fn"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn ext4_size_option_is_used() {
    let d = scratch("size");
    oci(&d.join("oci"), &Spec::new(two_layers(), config()));
    let out = d.join("root.ext4");
    let mut o = options(&d.join("oci"), &out);
    o.size_mib = Some(40);
    lupine_image::build(&o).unwrap();
    assert_eq!(fs::metadata(&out).unwrap().len(), 40 << 20);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn initramfs_keeps_owners_modes_links_and_devices() {
    let d = scratch("cpio");
    oci(&d.join("oci"), &Spec::new(two_layers(), config()));
    for name in ["root.cpio", "root.cpio.gz"] {
        let out = d.join(name);
        let mut o = options(&d.join("oci"), &out);
        o.format = lupine_image::Format::Initramfs;
        lupine_image::build(&o).unwrap();
        let bytes = fs::read(&out).unwrap();
        let plain = if name.ends_with(".gz") {
            assert_eq!(&bytes[..2], b"\x1f\x8b");
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut v)
                .unwrap();
            v
        } else {
            bytes
        };
        assert!(plain.starts_with(b"070701"));
        let arch = d.join("plain.cpio");
        fs::write(&arch, plain).unwrap();
        let x = d.join(format!("x-{name}"));
        cpio_extract(&arch, &x);
        let md = |p: &str| fs::symlink_metadata(x.join(p)).unwrap();
        assert_eq!(md("bin/suid").mode(), 0o104755);
        assert_eq!(
            (
                md("bin/sgid").mode(),
                md("bin/sgid").uid(),
                md("bin/sgid").gid()
            ),
            (0o102711, 1000, 50)
        );
        assert_eq!((md("home-file").uid(), md("home-file").gid()), (1234, 5678));
        assert_eq!(md("shared").mode(), 0o41777);
        assert!(md("dev-null").file_type().is_char_device());
        assert_eq!(md("dev-null").rdev(), libc_makedev(1, 3));
        assert!(md("pipe").file_type().is_fifo());
        assert_eq!(
            fs::read_link(x.join("bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
        assert_eq!(md("bin/app").ino(), md("bin/app-link").ino());
        assert_eq!(fs::read(x.join("bin/app-link")).unwrap(), b"app v2");
        assert_eq!(md("lupine-init").mode(), 0o100755);
        assert!(md("proc").is_dir() && md("dev").is_dir() && md("run").is_dir());
        assert!(!x.join("opq/lower").exists() && x.join("opq/upper").exists());
    }
    fs::remove_dir_all(&d).unwrap();
}

/// busybox cpio (Debian's busybox-static) reads back a tree built with `Tree`'s own methods
/// (as guest-tests builds its initramfs).
#[test]
fn busybox_cpio_lists_a_tree_written_as_initramfs() {
    let mut tree = Tree::new();
    tree.ensure_dir("a/b", 0o755).unwrap();
    tree.put_file("a/b/file.txt", b"hello".to_vec(), 0o644);
    tree.ensure_dir("bin", 0o755).unwrap();
    tree.add("bin/sh", Kind::Symlink("busybox".into()), 0o777);
    tree.ensure_dir("dev", 0o755).unwrap();
    tree.add("dev/console", Kind::Char(5, 1), 0o600);
    let mut archive = Vec::new();
    lupine_image::cpio::write(&tree, &mut archive).unwrap();
    assert_eq!(archive.len() % 4, 0);
    let mut child = Command::new("busybox")
        .args(["cpio", "-t"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("busybox");
    child.stdin.take().unwrap().write_all(&archive).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let listing = String::from_utf8(out.stdout).unwrap();
    let names: Vec<&str> = listing.lines().collect();
    assert_eq!(
        names,
        [
            ".",
            "a",
            "a/b",
            "a/b/file.txt",
            "bin",
            "bin/sh",
            "dev",
            "dev/console"
        ]
    );
}

fn libc_makedev(major: u64, minor: u64) -> u64 {
    ((major & 0xfff) << 8) | (minor & 0xff) | ((minor & !0xff) << 12) | ((major & !0xfff) << 32)
}

#[test]
fn names_debugfs_cannot_quote_are_refused_for_ext4_only() {
    let d = scratch("quote");
    let l = LayerTar::new()
        .file("bin/app", b"x", 0o755)
        .file("say\"hi\"", b"q", 0o644)
        .finish();
    oci(&d.join("oci"), &Spec::new(vec![l], config()));
    let out = d.join("root.ext4");
    let e = lupine_image::build(&options(&d.join("oci"), &out))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/say\"hi\"") && e.contains("--format initramfs"),
        "{e}"
    );
    assert!(!out.exists());
    assert_eq!(listing(&d), vec!["oci"]);
    let mut o = options(&d.join("oci"), &d.join("root.cpio"));
    o.format = lupine_image::Format::Initramfs;
    lupine_image::build(&o).unwrap();
    fs::remove_dir_all(&d).unwrap();
}

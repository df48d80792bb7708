//! Relinked programs on the guest kernel: lupine-init and busybox, both rewritten by
//! lupine-relink, boot and run the app as the originals do (no KML here: every rewritten site
//! takes its real-syscall path, which must behave exactly like the original).

use guest_tests::{lupine_init, Initramfs, TempDir, Vm};

fn relink(name: &str, path: &std::path::Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    let out = lupine_relink::relink_bytes(name, name, &bytes).unwrap();
    assert!(out.report.counts.rewritten > 0, "{name}: nothing rewritten");
    out.bytes
}

#[test]
fn relinked_init_and_busybox_run_the_app() {
    let tmp = TempDir::new("relinked").unwrap();
    let manifest = r#"{"version": 1, "hostname": "relinked",
        "app": {"path": "/bin/sh", "args": ["-c",
          "echo marks=$(grep -c LUPINE-RELINK /lupine-init)$(grep -c LUPINE-RELINK /bin/busybox); hostname; ip -4 -o addr show eth0 | grep -o 'inet [0-9./]*'; (sleep 0.1; echo child) & wait; exit 4"]},
        "network": {"interfaces": [{"name": "eth0", "addresses": ["10.0.2.15/24"]}], "wait_s": 2}}"#;
    // A file added again replaces the earlier one.
    let initrd = Initramfs::new(manifest)
        .unwrap()
        .file(
            "/lupine-init",
            0o755,
            relink("lupine-init", &lupine_init().unwrap()),
        )
        .file(
            "/bin/busybox",
            0o755,
            relink("busybox", "/bin/busybox".as_ref()),
        )
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let out = Vm::lupine(&initrd).unwrap().net().run().unwrap();
    for line in [
        "marks=11",
        "relinked",
        "inet 10.0.2.15/24",
        "child",
        "lupine: exit status 4",
    ] {
        assert!(out.has_line(line), "no line {line:?}\n{out}");
    }
    assert_eq!(out.code(), Some(0), "{out}");
}

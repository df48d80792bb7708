//! Stopping a VM from its console: SysRq e (a serial break, then `e`) sends SIGTERM to every
//! process but init; the app's handler runs and lupine-init reports how it ended.

use guest_tests::{Initramfs, TempDir, Vm, BASE};

// No #! script: lupine-base has no BINFMT_SCRIPT, so sh runs the file.
const APP: &str = r#"
trap 'echo "app: got TERM"; exit 0' TERM
echo ready
while :; do sleep 1; done
"#;

#[test]
fn sysrq_e_on_the_console_stops_the_app_cleanly() {
    let tmp = TempDir::new("stop").unwrap();
    let initrd = Initramfs::sh(&["/app.sh"])
        .unwrap()
        .file("/app.sh", 0o644, APP)
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let mut vm = Vm::lupine_on(BASE, &initrd).unwrap().spawn().unwrap();
    vm.wait_for_line("ready").unwrap();
    vm.sysrq('e').unwrap();
    let out = vm.wait().unwrap();
    assert!(out.has_line("app: got TERM"), "{out}");
    out.assert_exit_status(0);
}

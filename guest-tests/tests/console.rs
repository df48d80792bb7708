//! The console as the app sees it: its output comes through pipes of its own that init relays
//! (so an app without privileges can reopen /dev/stdout), its last output reaches the host
//! before the VM ends, and ^C typed on the console signals the app (the console's foreground
//! process group), not init.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use guest_tests::{Initramfs, TempDir, Vm, BASE, MICROVM};

// No #! scripts: lupine-base has no BINFMT_SCRIPT, so sh runs the files.

// About 6 KB in one burst, more than the serial driver's 4 KB transmit buffer, so the end is
// still queued when the app exits.
const BURST: &str = r#"
i=0
while [ $i -lt 80 ]; do
  echo "burst $i ............................................................"
  i=$((i + 1))
done
echo "burst end"
"#;

/// Output still queued in the serial driver when the app exits must reach the host. It is
/// queued when the vCPU that takes the UART's interrupt lags behind the app's: an SMP guest
/// on a busy host (two spinning host threads here).
#[test]
fn the_apps_last_output_reaches_the_console() {
    let tmp = TempDir::new("console-burst").unwrap();
    let manifest = r#"{"version": 1, "app": {"path": "/bin/busybox",
                       "args": ["taskset", "1", "/bin/sh", "/burst.sh"]}}"#;
    let initrd = Initramfs::new(manifest)
        .unwrap()
        .file("/burst.sh", 0o644, BURST)
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let out = Vm::lupine_on(MICROVM, &initrd).unwrap().smp(2).run();
    stop.store(true, Ordering::Relaxed);
    spinners.into_iter().for_each(|t| t.join().unwrap());
    let out = out.unwrap();
    assert_eq!(out.lines_starting("burst ").len(), 81, "{out}");
    assert!(out.has_line("burst end"), "{out}");
    out.assert_exit_status(0);
}

const INTERRUPTIBLE: &str = r#"
trap 'echo "app: got INT"; exit 0' INT
read -r stat < /proc/$$/stat
echo "stat $stat"
echo ready
while :; do sleep 1; done
"#;

#[test]
fn ctrl_c_on_the_console_reaches_the_app_only() {
    let tmp = TempDir::new("console-ctrl-c").unwrap();
    let initrd = Initramfs::sh(&["/app.sh"])
        .unwrap()
        .file("/app.sh", 0o644, INTERRUPTIBLE)
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let mut vm = Vm::lupine_on(BASE, &initrd)
        .unwrap()
        .append("lupine.log=debug loglevel=8")
        .spawn()
        .unwrap();
    vm.wait_for_line("ready").unwrap();
    // /proc/PID/stat after the command name: state ppid pgrp session tty_nr tpgid. The app
    // leads its own process group, the console's foreground one, in init's session: it is
    // no session leader, whose exit would hang the console up and drop unsent output.
    let console = vm.console();
    let stat = console
        .lines()
        .find_map(|l| l.strip_prefix("stat "))
        .expect("the app's /proc/self/stat");
    let (pid, rest) = stat.split_once(' ').unwrap();
    let fields: Vec<&str> = rest.rsplit_once(") ").unwrap().1.split(' ').collect();
    let (pgrp, session, tpgid) = (fields[2], fields[3], fields[5]);
    assert_eq!((pgrp, session, tpgid), (pid, "1", pid), "{console}");
    vm.type_console(b"\x03").unwrap();
    let out = vm.wait().unwrap();
    // The console echoes ^C before the handler's line.
    assert!(out.console.contains("app: got INT\n"), "{out}");
    // Init got no SIGINT of its own: at debug level it logs each signal it forwards.
    assert!(
        out.console.contains("lupine: network: "),
        "no debug log\n{out}"
    );
    assert!(!out.console.contains("forwarding"), "{out}");
    // Init, in the background once the app took the foreground, still drained the console.
    assert!(!out.console.contains("console drain"), "{out}");
    out.assert_exit_status(0);
}

/// As under a container runtime, stdout and stderr are the app's own pipes: a user without
/// privileges reopens them by name (the console is root's, 0600), and they are no terminal;
/// stdin is still the console.
#[test]
fn an_app_without_privileges_reopens_its_stdout_and_stderr() {
    let tmp = TempDir::new("console-reopen").unwrap();
    let manifest = r#"{"version": 1, "app": {"path": "/bin/sh", "user": "65534:65534", "args": ["-c",
        "echo reopened-out > /dev/stdout && echo reopened-err > /dev/stderr && { [ -t 1 ] && echo stdout-tty || echo stdout-pipe; } && { [ -t 0 ] && echo stdin-tty || echo stdin-not-tty; }"]}}"#;
    let initrd = Initramfs::new(manifest)
        .unwrap()
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    // lupine-general: lupine-base has no users (MULTIUSER).
    let out = Vm::lupine(&initrd).unwrap().run().unwrap();
    out.assert_exit_status(0);
    for line in ["reopened-out", "reopened-err", "stdout-pipe", "stdin-tty"] {
        assert!(out.has_line(line), "no {line:?}\n{out}");
    }
}

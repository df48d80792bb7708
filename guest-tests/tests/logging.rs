//! `lupine.log=debug` on the kernel command line: lupine-init logs each phase with its duration
//! to /dev/kmsg, which the console shows at loglevel 8.

use guest_tests::{Initramfs, TempDir, Vm};

#[test]
fn debug_level_logs_each_phase_to_kmsg() {
    let tmp = TempDir::new("logging").unwrap();
    let manifest = r#"{"version": 1, "app": {"path": "/bin/sh", "args": ["-c", "echo app ran"]},
                       "log": "warn"}"#;
    let initrd = Initramfs::new(manifest)
        .unwrap()
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    // The kernel parameter wins over the manifest's "warn".
    let out = Vm::lupine(&initrd)
        .unwrap()
        .append("lupine.log=debug loglevel=8")
        .run()
        .unwrap();
    assert!(out.has_line("app ran"), "{out}");
    for phase in [
        "default mounts",
        "manifest",
        "network",
        "mounts, sysctls, app",
    ] {
        let prefix = format!("lupine: {phase}: ");
        let logged = out.console.lines().any(|l| {
            // "[    0.512345] lupine: network: 1.234ms"
            l.split_once("] ")
                .is_some_and(|(_, msg)| msg.starts_with(&prefix) && msg.ends_with('s'))
        });
        assert!(logged, "no {prefix:?} line\n{out}");
    }
    assert!(
        out.console.contains("lupine: started /bin/sh as pid "),
        "{out}"
    );
}

/// At every level, trace included, init's log names the app's environment variables, never
/// their values: the only place a value shows is the app's own output.
#[test]
fn no_log_level_shows_a_value_of_the_apps_environment() {
    let tmp = TempDir::new("logging-secrets").unwrap();
    let secret = "pa55-w0rd-in-app-env";
    let manifest = format!(
        r#"{{"version": 1, "app": {{"path": "/bin/sh", "args": ["-c", "echo app got $DB_PASSWORD"],
            "env": {{"DB_PASSWORD": "{secret}"}}}}, "log": "trace"}}"#
    );
    let initrd = Initramfs::new(&manifest)
        .unwrap()
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    for level in ["trace", "debug", "info"] {
        let out = Vm::lupine(&initrd)
            .unwrap()
            .append(&format!("lupine.log={level} loglevel=8"))
            .run()
            .unwrap();
        out.assert_exit_status(0);
        assert!(out.console.contains("lupine: started /bin/sh"), "{out}");
        assert_eq!(out.console.matches(secret).count(), 1, "{level}\n{out}");
        assert!(out.has_line(&format!("app got {secret}")), "{out}");
    }
}

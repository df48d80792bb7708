//! A kernel built from `lupine-base` plus the fragment `lupine-config` derives runs the programs
//! it was derived from: an epoll/eventfd/timerfd/AF_UNIX program and a hello-world (both
//! `musl-gcc -static`), started by lupine-init and busybox's sh, which the fragment is also
//! derived from since they run in the same VM. Their output must be what they print on the
//! host and what they print on `lupine-general`.
//!
//! The profile is built by a copy of `kernel-patches/build.sh` in a temporary directory with
//! `configs/lupine-base.config` and the derived `configs/apps/derived.config`, as profile
//! `lupine-derived` (build.sh caches it by the hash of its inputs like any other profile).
//! While lupine-base does not set `CONFIG_EXPERT=y`, the test adds it to the derived fragment:
//! without it, the system-call options hidden behind EXPERT all stay at their default, y, and
//! the fragment would change nothing.

use guest_tests::{derived_kernel, lupine_init, workspace_root, Initramfs, TempDir, Vm, GENERAL};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Uses epoll, eventfd, timerfd and AF_UNIX: the options lupine-config must derive.
const EPOLL_C: &str = include_str!("../../config/tests/kconfig-probe.c");

const HELLO_C: &str =
    "#include <stdio.h>\nint main(void) { puts(\"hello: from a derived kernel\"); return 0; }\n";

fn build(dir: &Path, name: &str, src: &str) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    let exe = dir.join(name);
    std::fs::write(&c, src).unwrap();
    let out = Command::new("musl-gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&exe)
        .arg(&c)
        .output()
        .expect("musl-gcc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// The programs' own lines (`hello: `, `epoll: `) and lupine-init's status line.
fn app_lines<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<String> {
    lines
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| {
            l.starts_with("hello: ") || l.starts_with("epoll: ") || l.starts_with("lupine: exit")
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn derived_fragment_runs_its_programs() {
    let tmp = TempDir::new("derived-config").unwrap();
    let ep = build(tmp.path(), "epoll-app", EPOLL_C);
    let hello = build(tmp.path(), "hello-app", HELLO_C);
    let init = lupine_init().unwrap();
    let busybox = Path::new("/bin/busybox");

    // On the host first: what they must print in the guest.
    let mut expected = Vec::new();
    for p in [&hello, &ep] {
        let out = Command::new(p).output().unwrap();
        assert!(out.status.success());
        expected.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(String::from),
        );
    }
    expected.push("lupine: exit status 0".to_string());

    // The fragment, over lupine-base.
    let kp = workspace_root().join("kernel-patches");
    let base_path = kp.join("configs/lupine-base.config");
    let base_text = std::fs::read_to_string(&base_path).expect("configs/lupine-base.config");
    let base = lupine_config::parse_base(&base_text);
    let findings: Vec<_> = [&ep, &hello, &init, &busybox.to_path_buf()]
        .iter()
        .map(|p| lupine_config::derive_file(p).unwrap())
        .collect();
    let fragment =
        lupine_config::render(&findings, Some((&base_path.display().to_string(), &base)));
    for want in [
        "CONFIG_EPOLL=y",
        "CONFIG_EVENTFD=y",
        "CONFIG_TIMERFD=y",
        "CONFIG_UNIX=y",
    ] {
        assert!(fragment.contains(want), "no {want}:\n{fragment}");
    }

    // lupine-derived = lupine-base + the fragment, built by a copy of build.sh.
    // Without CONFIG_EXPERT=y, allnoconfig leaves every `if EXPERT` option (EPOLL, FUTEX,
    // EVENTFD, TIMERFD, MULTIUSER, POSIX_TIMERS, ...) at its default, y, whatever the fragment
    // says; with it they are off unless the fragment turns them on, which is the real test.
    let strict = if base.contains("EXPERT") {
        ""
    } else {
        "# lupine-base does not set EXPERT: set here so that the derived options are needed\nCONFIG_EXPERT=y\n"
    };
    let kernel = derived_kernel(tmp.path(), &format!("{strict}{fragment}")).unwrap();

    let initrd = Initramfs::sh(&["-c", "/hello-app && /epoll-app"])
        .unwrap()
        .file("/epoll-app", 0o755, std::fs::read(&ep).unwrap())
        .file("/hello-app", 0o755, std::fs::read(&hello).unwrap())
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let run = |kernel: &Path| {
        let out = Vm::new(kernel)
            .initramfs(&initrd)
            .append("rdinit=/lupine-init")
            .run()
            .unwrap();
        (app_lines(out.lines()), out.to_string())
    };
    let (derived, console) = run(&kernel);
    assert_eq!(
        derived, expected,
        "on lupine-derived:\n{console}\n{fragment}"
    );

    // And the same as on lupine-general.
    let general = guest_tests::kernel(GENERAL).unwrap();
    let (on_general, console) = run(&general);
    assert_eq!(on_general, derived, "on lupine-general:\n{console}");
}

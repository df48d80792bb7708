//! `lupine-config`: fragments derived from small programs built here with `musl-gcc -static`,
//! from Debian's static busybox, and refusals of bad inputs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const EPOLL_C: &str = include_str!("kconfig-probe.c");

const HELLO_C: &str = "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n";

/// `syscall()` with a constant number: seen at the call.
const SYSCALL_C: &str = r#"
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) { printf("%ld\n", syscall(SYS_flock, 0, 1)); return 0; }
"#;

fn dir() -> &'static Path {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kconfig");
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

/// Builds `name` from `src` with `musl-gcc -static -O2` (once per test run).
fn build(name: &str, src: &str) -> PathBuf {
    let c = dir().join(format!("{name}.c"));
    let exe = dir().join(name);
    std::fs::write(&c, src).unwrap();
    let tmp = dir().join(format!("{name}.{}.tmp", std::process::id()));
    let out = Command::new("musl-gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&tmp)
        .arg(&c)
        .output()
        .expect("musl-gcc runs (scripts/setup.sh installs musl-tools)");
    assert!(
        out.status.success(),
        "musl-gcc {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp, &exe).unwrap();
    exe
}

fn lupine_config(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lupine-config"))
        .args(args)
        .output()
        .unwrap()
}

fn fragment(args: &[&Path]) -> String {
    let out = lupine_config(args);
    assert!(
        out.status.success(),
        "lupine-config {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The `CONFIG_X=y` lines as option names; every one preceded by its comment.
fn options(text: &str) -> BTreeSet<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = BTreeSet::new();
    for (k, l) in lines.iter().enumerate() {
        if let Some(o) = l.strip_prefix("CONFIG_") {
            let o = o.strip_suffix("=y").expect("=y");
            assert!(
                k > 0 && lines[k - 1].starts_with("# ") && lines[k - 1].contains(": "),
                "{o} has no comment:\n{text}"
            );
            out.insert(o.to_string());
        } else {
            assert!(l.starts_with('#'), "unexpected line {l:?}");
        }
    }
    out
}

/// Debian's busybox-static, a declared dependency (scripts/setup.sh): missing, the tests that
/// read it fail rather than pass without reading it.
fn busybox_static() -> &'static Path {
    let bb = Path::new("/bin/busybox");
    assert!(
        bb.is_file(),
        "no /bin/busybox: install busybox-static (scripts/setup.sh does)"
    );
    bb
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn epoll_eventfd_timerfd_unix_program() {
    let exe = build("epoll-kc", EPOLL_C);
    let run = Command::new(&exe).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "epoll: events 1 fd-ok 1 byte x timer 1\n"
    );
    let text = fragment(&[&exe]);
    // FUTEX: musl's stdio locking (__lockfile, __wake) is linked in with printf.
    assert_eq!(
        options(&text),
        set(&["EPOLL", "EVENTFD", "FUTEX", "NET", "TIMERFD", "UNIX"]),
        "{text}"
    );
    assert!(
        text.contains("epoll_create1 (291), epoll_ctl (233)"),
        "{text}"
    );
    assert!(
        text.contains("fs/Makefile obj-$(CONFIG_EPOLL) += eventpoll.o\nCONFIG_EPOLL=y\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "# AF_UNIX (1) sockets: net/Makefile obj-$(CONFIG_UNIX) += unix/\nCONFIG_UNIX=y\n"
        ),
        "{text}"
    );
    assert!(text.starts_with(
        "# lupine-config: derived from epoll-kc (static analysis of syscall sites)\n"
    ));
    // Deterministic.
    assert_eq!(text, fragment(&[&exe]));

    // Stripped: no wrapper symbols, but the constants and the AF_UNIX call remain visible.
    let stripped = dir().join("epoll-kc-stripped");
    std::fs::copy(&exe, &stripped).unwrap();
    assert!(Command::new("strip")
        .arg(&stripped)
        .status()
        .unwrap()
        .success());
    let s = fragment(&[&stripped]);
    assert!(s.contains("no symbols"), "{s}");
    assert_eq!(
        options(&s),
        set(&["EPOLL", "EVENTFD", "FUTEX", "NET", "TIMERFD", "UNIX"]),
        "{s}"
    );
}

#[test]
fn hello_needs_none_of_them() {
    let exe = build("hello-kc", HELLO_C);
    let text = fragment(&[&exe]);
    // musl's stdio lock makes futex statically reachable; nothing else is conditional.
    assert_eq!(options(&text), set(&["FUTEX"]), "{text}");
    // With a base that has it, nothing is left.
    let base = dir().join("base.config");
    std::fs::write(&base, "CONFIG_FUTEX=y\n# CONFIG_EPOLL is not set\n").unwrap();
    let out = lupine_config(&[Path::new("--base"), &base, &exe]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(options(&text).is_empty(), "{text}");
    assert!(
        text.contains("# already =y in base.config: FUTEX"),
        "{text}"
    );
}

#[test]
fn constant_numbers_given_to_syscall_are_seen() {
    let exe = build("syscall-kc", SYSCALL_C);
    let text = fragment(&[&exe]);
    assert!(options(&text).contains("FILE_LOCKING"), "{text}");
    assert!(text.contains("# flock (73): fs/Makefile obj-$(CONFIG_FILE_LOCKING) += locks.o"));
}

#[test]
fn several_programs_give_the_union() {
    let a = build("hello-kc2", HELLO_C);
    let b = build("epoll-kc2", EPOLL_C);
    let text = fragment(&[&a, &b]);
    assert!(text.starts_with("# lupine-config: derived from hello-kc2, epoll-kc2 "));
    assert_eq!(
        options(&text),
        set(&["EPOLL", "EVENTFD", "FUTEX", "NET", "TIMERFD", "UNIX"])
    );
    assert!(text.contains("CONFIG_FUTEX") && text.contains("[hello-kc2, epoll-kc2]"));
}

/// Debian's busybox-static (stripped glibc): checked by hand against its applets: ping/ping6
/// (AF_INET, AF_INET6 raw sockets), arping/udhcpc (AF_PACKET), syslogd/logger (AF_UNIX), ip
/// (AF_NETLINK), syslogd's shared-memory log buffer (shmget, semget: SYSVIPC), swapon/swapoff
/// (SWAP), klogd (syslog: PRINTK), su/chpst-style applets (setuid, setgroups: MULTIUSER).
#[test]
fn busybox() {
    let text = fragment(&[busybox_static()]);
    let got = options(&text);
    for want in [
        "NET",
        "UNIX",
        "INET",
        "IPV6",
        "PACKET",
        "SYSVIPC",
        "SWAP",
        "PRINTK",
        "MULTIUSER",
        "FUTEX",
    ] {
        assert!(got.contains(want), "busybox: no {want}:\n{text}");
    }
    assert!(text.contains("no symbols"), "{text}");
    assert!(text.contains("AF_NETLINK"), "{text}");
}

#[test]
fn bad_inputs_are_refused_with_one_line() {
    let d = dir().join("bad");
    std::fs::create_dir_all(&d).unwrap();
    let text = d.join("notes.txt");
    std::fs::write(&text, "not a program\n").unwrap();
    let missing = d.join("missing");
    let cases: Vec<(PathBuf, &str)> = vec![
        (missing.clone(), "no such file"),
        (d.clone(), "directory"),
        (text, "not an elf"),
        (PathBuf::from("/bin/ls"), "--root"),
        (
            PathBuf::from("/usr/lib/x86_64-linux-musl/libc.so"),
            "shared object",
        ),
    ];
    for (p, why) in cases {
        let out = lupine_config(&[&p]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", p.display());
        assert!(out.stdout.is_empty());
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.starts_with("lupine-config: "), "{err}");
        assert!(err.contains(&*p.to_string_lossy()), "{err}");
        assert!(err.to_lowercase().contains(why), "{}: {err}", p.display());
    }
    // A bad input among good ones still fails, with nothing printed.
    let good = build("hello-kc3", HELLO_C);
    let out = lupine_config(&[&good, &missing]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    // A missing base fragment.
    let out = lupine_config(&[Path::new("--base"), &missing, &good]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("base"), "{err}");
    // Usage errors: exit 2.
    assert_eq!(lupine_config(&[]).status.code(), Some(2));
    assert_eq!(
        lupine_config(&[Path::new("--bogus"), &good]).status.code(),
        Some(2)
    );
    assert_eq!(lupine_config(&[Path::new("--base")]).status.code(), Some(2));
}

/// `analyze::decode_all` sweeps the code as the analysis does: its `syscall` instructions are
/// exactly the analysis' sites.
#[test]
fn decode_all_matches_the_analysis() {
    let exe = build("epoll-kc4", EPOLL_C);
    let programs = vec![exe, busybox_static().to_path_buf()];
    for p in programs {
        let data = std::fs::read(&p).unwrap();
        let name = p.display().to_string();
        let an = lupine_relink::analyze_bytes(&name, &data).unwrap();
        let elf = lupine_relink::elf::Elf::parse(&name, &data).unwrap();
        let ins = lupine_relink::analyze::decode_all(&elf);
        let sys: Vec<u64> = ins
            .iter()
            .filter(|i| i.code() == iced_x86::Code::Syscall)
            .map(|i| i.ip())
            .collect();
        let sites: Vec<u64> = an.sites.iter().map(|s| s.address).collect();
        assert!(!sites.is_empty());
        assert_eq!(sys, sites, "{name}");
    }
}

/// A dynamically linked musl program in an image root: its imports from libc.so give the
/// options (epoll, eventfd, timerfd, AF_UNIX at its `socketpair` stub); without the
/// interpreter in the root, an error naming it.
#[test]
fn dynamic_programs_are_read_with_their_image_root() {
    let root = dir().join("root");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("lib")).unwrap();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    let c = dir().join("epoll-dyn.c");
    std::fs::write(&c, EPOLL_C).unwrap();
    let exe = root.join("bin/epoll-dyn");
    let out = Command::new("musl-gcc")
        .args(["-O2", "-o"])
        .arg(&exe)
        .arg(&c)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let r = Path::new("--root");
    let missing = lupine_config(&[r, &root, &exe]);
    let err = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(1), "{err}");
    assert!(
        err.contains("/lib/ld-musl-x86_64.so.1") && err.contains("not in the image"),
        "{err}"
    );
    std::fs::copy(
        "/usr/lib/x86_64-linux-musl/libc.so",
        root.join("lib/ld-musl-x86_64.so.1"),
    )
    .unwrap();
    let text = fragment(&[r, &root, &exe]);
    for want in ["EPOLL", "EVENTFD", "TIMERFD", "UNIX"] {
        assert!(
            text.contains(&format!("\nCONFIG_{want}=y\n")),
            "no {want}:\n{text}"
        );
    }
    assert!(text.contains("socket families AF_UNIX"), "{text}");
    assert!(
        text.contains("loads the C library /lib/ld-musl-x86_64.so.1"),
        "{text}"
    );
    let not_dir = lupine_config(&[r, &exe, &exe]);
    assert_eq!(not_dir.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&not_dir.stderr).contains("not a directory"));
}

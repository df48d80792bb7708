//! lupine-init as PID 1 on the host, without a VM: `unshare --pid --mount --net --uts --ipc
//! --fork` around a chroot holding the static lupine-init and busybox, with an eth0 (a veth)
//! made in the new network namespace. Needs root, so every test is `#[ignore = "needs root"]`:
//! `cargo test -p lupine-init -- --include-ignored` runs them (scripts/test.sh does, as root).

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Fails the test unless it runs as root: a test that cannot run must not pass.
fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (unshare of PID, mount and network namespaces, chroot); \
         run it as root or leave out --include-ignored"
    );
}

/// A root directory for one test: lupine-init, busybox and its applets, /etc files.
struct Root {
    dir: PathBuf,
}

impl Root {
    fn new(manifest: Option<&str>) -> Root {
        require_root();
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("lupine-ns-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for d in ["bin", "etc", "data", "home/app"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        fs::copy(
            test_support::lupine_init().unwrap(),
            dir.join("lupine-init"),
        )
        .unwrap();
        fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
        for applet in [
            "sh", "echo", "cat", "hostname", "env", "pwd", "ip", "ls", "sleep", "id", "grep",
            "kill", "mount", "sysctl", "ps", "true", "wc", "umask", "stat",
        ] {
            std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
        }
        fs::write(
            dir.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        fs::write(dir.join("etc/group"), "root:x:0:\napp:x:1000:\n").unwrap();
        if let Some(m) = manifest {
            fs::write(dir.join("etc/lupine.json"), m).unwrap();
        }
        Root { dir }
    }

    /// Starts lupine-init as PID 1. `setup` runs first in the new namespaces as a shell
    /// script (it makes eth0); `args` go to init as the kernel's arguments would.
    fn start(&self, setup: &str, args: &[&str]) -> Child {
        let script = format!("{setup}\nexec chroot \"$0\" /lupine-init \"$@\"");
        Command::new("unshare")
            .args([
                "--pid",
                "--mount",
                "--net",
                "--uts",
                "--ipc",
                "--fork",
                "--kill-child",
                "sh",
                "-ec",
                &script,
            ])
            .arg(&self.dir)
            .args(args)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("unshare")
    }

    fn run(&self, setup: &str, args: &[&str]) -> Run {
        finish(self.start(setup, args))
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

const VETH: &str = "ip link add eth0 type veth peer name peer0";

struct Run {
    stdout: String,
    stderr: String,
    elapsed: Duration,
    status: ExitStatus,
}

/// Waits (at most 30 s) for the namespace to end and collects the console.
fn finish(mut child: Child) -> Run {
    let start = Instant::now();
    let read_all = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut s);
            }
            s
        })
    };
    let out = read_all(child.stdout.take().map(|p| Box::new(p) as _));
    let err = read_all(child.stderr.take().map(|p| Box::new(p) as _));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("lupine-init did not end within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        elapsed: start.elapsed(),
        status,
    }
}

fn manifest(app_script: &str, extra: &str) -> String {
    let script = serde_json::to_string(app_script).unwrap();
    format!(r#"{{"version": 1, "app": {{"path": "/bin/sh", "args": ["-c", {script}]}} {extra}}}"#)
}

/// The status lines init printed.
fn status_lines(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.starts_with("lupine: ")).collect()
}

#[test]
#[ignore = "needs root"]
fn full_setup_is_what_the_app_sees() {
    let m = r#"{
      "version": 1,
      "app": {"path": "/bin/sh", "args": ["-c", "echo host=$(hostname); echo cwd=$(pwd); echo key=$KEY; echo path=$PATH; echo home=$HOME; echo nofile=$(ulimit -n); echo umask=$(umask); echo somaxconn=$(cat /proc/sys/net/core/somaxconn); echo uid=$(id -u) gid=$(id -g) groups=$(id -G); ip -4 addr show eth0; ip -6 addr show eth0; ip route; ip -6 route; ip link show eth0; cat /etc/resolv.conf /etc/hosts; cat /proc/mounts; ls -l /dev/fd /dev/stdin /dev/ptmx; stat -c 'shm=%a' /dev/shm; exit 5"],
              "env": {"KEY": "VALUE"}, "cwd": "/home/app", "user": "app", "groups": [1000, 27], "umask": "0027"},
      "hostname": "ns-vm",
      "network": {
        "interfaces": [{"name": "eth0", "addresses": ["10.0.2.15/24", "fd00::15/64"], "mtu": 1400}],
        "routes": [{"destination": "default", "gateway": "10.0.2.2"},
                   {"destination": "default", "gateway": "fd00::1"},
                   {"destination": "192.168.50.0/24", "gateway": "10.0.2.3"}],
        "dns": {"nameservers": ["10.0.2.3", "fd00::3"], "search": ["example.internal"]}
      },
      "sysctl": {"net.core.somaxconn": "1234"},
      "rlimits": {"nofile": {"soft": 2048, "hard": 4096}}
    }"#;
    let root = Root::new(Some(m));
    let run = root.run(VETH, &[]);
    let out = &run.stdout;
    for want in [
        "host=ns-vm",
        "cwd=/home/app",
        "key=VALUE",
        "path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "home=/home/app",
        "nofile=2048",
        "umask=0027",
        "somaxconn=1234",
        "uid=1000 gid=1000 groups=1000 27",
        "inet 10.0.2.15/24",
        "inet6 fd00::15/64",
        "default via 10.0.2.2 dev eth0",
        "default via fd00::1 dev eth0",
        "192.168.50.0/24 via 10.0.2.3 dev eth0",
        "mtu 1400",
        "nameserver 10.0.2.3\nnameserver fd00::3\nsearch example.internal\n",
        "127.0.0.1\tlocalhost\n",
        "::1\tlocalhost",
        "10.0.2.15\tns-vm\n",
        "proc /proc proc rw,nosuid,nodev,noexec",
        "sysfs /sys sysfs",
        "devpts /dev/pts devpts",
        "tmpfs /dev/shm tmpfs",
        "tmpfs /tmp tmpfs",
        "tmpfs /run tmpfs",
        "/dev/fd -> /proc/self/fd",
        "/dev/stdin -> /proc/self/fd/0",
        "shm=1777",
    ] {
        assert!(
            out.contains(want),
            "missing {want:?} in:\n{out}\nstderr:\n{}",
            run.stderr
        );
    }
    assert!(
        out.contains(",UP") || out.contains("<UP"),
        "eth0 not up:\n{out}"
    );
    assert_eq!(status_lines(out), ["lupine: exit status 5"], "{out}");
}

#[test]
#[ignore = "needs root"]
fn orphans_are_reaped() {
    // Each subshell leaves a sleeper that is orphaned to PID 1 and exits; zombies would show
    // as state Z in /proc.
    let script = "for i in 1 2 3 4 5; do (sleep 0.1 &); done; sleep 1; \
                  echo zombies=$(grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l)";
    let root = Root::new(Some(&manifest(script, "")));
    let run = root.run("", &[]);
    assert!(run.stdout.contains("zombies=0"), "{}", run.stdout);
    assert_eq!(status_lines(&run.stdout), ["lupine: exit status 0"]);
}

/// Starts an app that traps `sig`, waits until it is ready, signals init from the host and
/// returns the console.
fn signal_init(sig: i32, trap: &str) -> Run {
    let script =
        format!("trap 'echo got {trap}; exit 3' {trap}; echo ready; while :; do sleep 0.05; done");
    let root = Root::new(Some(&manifest(&script, "")));
    let mut child = root.start("", &[]);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    // unshare --fork's only child is the namespace's PID 1.
    let children = fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).unwrap();
    let init: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    // SAFETY: kill has no memory effects.
    assert_eq!(unsafe { libc::kill(init, sig) }, 0);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    child.stdout = None;
    let run = finish(child);
    Run {
        stdout: rest,
        ..run
    }
}

#[test]
#[ignore = "needs root"]
fn sigterm_is_forwarded_to_the_app() {
    let run = signal_init(libc::SIGTERM, "TERM");
    assert_eq!(run.stdout, "got TERM\nlupine: exit status 3\n");
}

#[test]
#[ignore = "needs root"]
fn sigint_as_from_ctrl_alt_del_stops_the_app() {
    let run = signal_init(libc::SIGINT, "INT");
    assert_eq!(run.stdout, "got INT\nlupine: exit status 3\n");
}

#[test]
#[ignore = "needs root"]
fn sighup_and_sigusr1_are_forwarded() {
    assert_eq!(
        signal_init(libc::SIGHUP, "HUP").stdout,
        "got HUP\nlupine: exit status 3\n"
    );
    assert_eq!(
        signal_init(libc::SIGUSR1, "USR1").stdout,
        "got USR1\nlupine: exit status 3\n"
    );
}

#[test]
#[ignore = "needs root"]
fn leftover_processes_are_stopped_after_the_app_exits() {
    // One leftover exits on SIGTERM, the other ignores it and needs the SIGKILL.
    let script =
        "sleep 100 & (trap '' TERM; while :; do sleep 0.05; done) & sleep 0.2; echo started";
    let root = Root::new(Some(&manifest(script, "")));
    let run = root.run("", &[]);
    assert_eq!(run.stdout, "started\nlupine: exit status 0\n");
    // The grace period is 2 s; SIGKILL ends the rest right after.
    assert!(run.elapsed < Duration::from_secs(10), "{:?}", run.elapsed);
}

#[test]
#[ignore = "needs root"]
fn killed_app_reports_its_signal() {
    let root = Root::new(Some(&manifest("kill -9 $$", "")));
    assert_eq!(root.run("", &[]).stdout, "lupine: killed by signal 9\n");
}

#[test]
#[ignore = "needs root"]
fn app_starts_with_default_signals_and_no_inherited_fds() {
    // SigIgn/SigBlk of 0: Rust's ignored SIGPIPE and init's blocked set are not inherited.
    let script = "grep -E '^Sig(Ign|Blk)' /proc/self/status; ls /proc/self/fd | wc -l";
    let root = Root::new(Some(&manifest(script, "")));
    let out = root.run("", &[]).stdout;
    assert!(
        out.contains("SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"),
        "{out}"
    );
    // 0, 1, 2 and the directory ls reads.
    assert!(out.contains("\n4\n"), "{out}");
}

#[test]
#[ignore = "needs root"]
fn exec_mode_makes_the_app_pid_1() {
    let root = Root::new(Some(&manifest(
        "echo pid=$$; hostname",
        r#", "mode": "exec", "hostname": "execvm""#,
    )));
    let run = root.run("", &[]);
    assert_eq!(run.stdout, "pid=1\nexecvm\n", "{}", run.stderr);
}

#[test]
#[ignore = "needs root"]
fn kernel_arguments_replace_the_app_and_run_without_a_manifest() {
    let root = Root::new(None);
    let run = root.run(
        "",
        &[
            "/bin/sh",
            "-c",
            "echo args=$0,$1 host=$(hostname)",
            "a",
            "b",
        ],
    );
    assert_eq!(
        run.stdout, "args=a,b host=lupine\nlupine: exit status 0\n",
        "{}",
        run.stderr
    );
}

#[test]
#[ignore = "needs root"]
fn missing_app_is_fatal_with_status_127() {
    let root = Root::new(Some(r#"{"version": 1, "app": {"path": "/bin/nope"}}"#));
    let run = root.run("", &[]);
    assert_eq!(
        run.stdout,
        "lupine: fatal: exec: /bin/nope: not found, or not an executable file\n"
    );
}

#[test]
#[ignore = "needs root"]
fn bad_manifest_is_fatal_and_names_the_field() {
    let root = Root::new(Some(
        r#"{"version": 1, "app": {"path": "/bin/sh"}, "network": {"interfaces": [{"name": "eth0", "addresses": ["10.0.2.300/24"]}]}}"#,
    ));
    let run = root.run(VETH, &[]);
    assert_eq!(
        run.stdout,
        "lupine: fatal: manifest: /etc/lupine.json: network.interfaces[0].addresses[0]: \"10.0.2.300/24\" is not an IP prefix\n"
    );
}

#[test]
#[ignore = "needs root"]
fn failing_steps_are_fatal_and_name_what_failed() {
    let cases = [
        (
            r#""network": {"interfaces": [{"name": "eth1"}], "wait_s": 0.2}"#,
            "lupine: fatal: network: eth1: ",
        ),
        (
            r#""sysctl": {"net.core.nosuch": "1"}"#,
            "lupine: fatal: sysctl: net.core.nosuch = \"1\": /proc/sys/net/core/nosuch: ",
        ),
        (
            r#""mounts": [{"source": "/dev/vdz", "target": "/data", "fstype": "ext4"}]"#,
            "lupine: fatal: mount: /dev/vdz on /data (ext4): ",
        ),
        (
            r#""app": {"path": "/bin/sh", "user": "nobody"}"#,
            "lupine: fatal: app.user: no user \"nobody\" in /etc/passwd",
        ),
    ];
    for (fields, want) in cases {
        let m = format!(r#"{{"version": 1, "app": {{"path": "/bin/true"}}, {fields}}}"#);
        // A later "app" key replaces the first.
        let root = Root::new(Some(
            &m.replace(r#""app": {"path": "/bin/true"}, "app""#, r#""app""#),
        ));
        let run = root.run(VETH, &[]);
        assert!(
            run.stdout.starts_with(want),
            "want {want:?}, got {:?}",
            run.stdout
        );
        assert_eq!(status_lines(&run.stdout).len(), 1, "{}", run.stdout);
    }
}

#[test]
#[ignore = "needs root"]
fn links_that_appear_late_are_waited_for() {
    let m = manifest(
        "ip -4 addr show eth0",
        r#", "network": {"interfaces": [{"name": "eth0", "addresses": ["10.9.0.1/16"]}], "wait_s": 5}"#,
    );
    let root = Root::new(Some(&m));
    let run = root.run(&format!("(sleep 0.5; {VETH}) &"), &[]);
    assert!(
        run.stdout.contains("inet 10.9.0.1/16"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
}

#[test]
#[ignore = "needs root"]
fn kernel_command_line_ip_and_manifest_path() {
    // /proc mounted beforehand (init skips it) with a made-up /proc/cmdline over it.
    let root = Root::new(None);
    fs::write(
        root.dir.join("etc/other.json"),
        manifest(
            "ip -4 addr show eth0; ip route; cat /etc/resolv.conf; hostname",
            "",
        ),
    )
    .unwrap();
    fs::write(
        root.dir.join("cmdline"),
        "console=ttyS0 lupine.manifest=/etc/other.json ip=172.16.0.2::172.16.0.1:255.255.255.0:fc-vm:eth0:off:1.1.1.1\n",
    )
    .unwrap();
    let setup = format!(
        "{VETH}\nmkdir -p \"$0/proc\" && mount -t proc proc \"$0/proc\" && mount --bind \"$0/cmdline\" \"$0/proc/cmdline\""
    );
    let run = root.run(&setup, &[]);
    for want in [
        "inet 172.16.0.2/24",
        "default via 172.16.0.1 dev eth0",
        "nameserver 1.1.1.1",
        "fc-vm\nlupine: exit status 0\n",
    ] {
        assert!(
            run.stdout.contains(want),
            "missing {want:?}:\n{}\n{}",
            run.stdout,
            run.stderr
        );
    }
}

#[test]
#[ignore = "needs root"]
fn the_namespace_ends_by_itself() {
    let root = Root::new(Some(&manifest("exit 0", "")));
    let run = root.run("", &[]);
    assert_eq!(run.stdout, "lupine: exit status 0\n");
    assert!(run.elapsed < Duration::from_secs(5), "{:?}", run.elapsed);
}

#[test]
#[ignore = "needs root"]
fn entropy_seed_is_credited_then_replaced() {
    let root = Root::new(Some(&manifest(
        "echo ran",
        r#", "entropy": {"seed_file": "/etc/seed"}"#,
    )));
    let seed = vec![0x5a; 64];
    fs::write(root.dir.join("etc/seed"), &seed).unwrap();
    let run = root.run("", &[]);
    assert_eq!(run.stdout, "ran\nlupine: exit status 0\n", "{}", run.stderr);
    // A new seed of the same size: the old bytes are never credited twice.
    let after = fs::read(root.dir.join("etc/seed")).unwrap();
    assert_eq!(after.len(), seed.len());
    assert_ne!(after, seed);

    let root = Root::new(Some(&manifest(
        "echo ran",
        r#", "entropy": {"seed_file": "/etc/none"}"#,
    )));
    let run = root.run("", &[]);
    assert_eq!(
        run.stdout,
        "lupine: fatal: entropy.seed_file: /etc/none: No such file or directory (os error 2)\n"
    );
}

#[test]
#[ignore = "needs root"]
fn failures_in_the_app_process_are_reported_then_its_status() {
    let root = Root::new(Some(
        r#"{"version": 1, "app": {"path": "/bin/true", "cwd": "/nowhere"}}"#,
    ));
    assert_eq!(
        root.run("", &[]).stdout,
        "lupine: fatal: app.cwd: /nowhere: No such file or directory\nlupine: exit status 1\n"
    );
}

#[test]
#[ignore = "needs root"]
fn on_exit_chooses_the_reboot_call() {
    // In a PID namespace, reboot(2) by its init kills it: SIGHUP for a restart, SIGINT for
    // power-off and halt; unshare re-raises the signal.
    for (on_exit, signal) in [
        ("reboot", libc::SIGHUP),
        ("poweroff", libc::SIGINT),
        ("halt", libc::SIGINT),
    ] {
        let root = Root::new(Some(&manifest(
            "exit 0",
            &format!(r#", "on_exit": "{on_exit}""#),
        )));
        let run = root.run("", &[]);
        assert_eq!(run.stdout, "lupine: exit status 0\n");
        assert_eq!(
            run.status.signal(),
            Some(signal),
            "{on_exit}: {:?}",
            run.status
        );
    }
}

#[test]
#[ignore = "needs root"]
fn readiness_is_reported_once_the_app_listens() {
    // The app listens after 0.3 s, serves 0.3 s more, then exits.
    let script = "sleep 0.3; httpd -f -p 8080 -h /tmp & sleep 0.6; kill $!; echo served";
    let root = Root::new(Some(&manifest(script, r#", "ready": {"tcp": 8080}"#)));
    let run = root.run("", &[]);
    let lines = status_lines(&run.stdout);
    assert_eq!(lines.len(), 2, "{}{}", run.stdout, run.stderr);
    let ms: u64 = lines[0]
        .strip_prefix("lupine: ready in ")
        .and_then(|l| l.strip_suffix(" ms"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(ms > 0, "{ms}");
    assert_eq!(lines[1], "lupine: exit status 0");
    let ready = run.stdout.find("lupine: ready").unwrap();
    assert!(run.stdout.find("served").unwrap() > ready, "{}", run.stdout);

    // Never listening: no ready line.
    let root = Root::new(Some(&manifest("sleep 0.2", r#", "ready": {"tcp": 8080}"#)));
    assert_eq!(root.run("", &[]).stdout, "lupine: exit status 0\n");
}

/// A `mounts` source under /dev that appears after init starts is waited for (`wait_s`); one
/// that never appears ends the VM with the mount's fatal line and the hint.
#[test]
#[ignore = "needs root"]
fn a_mount_source_that_appears_late_is_waited_for_and_one_that_never_does_is_fatal() {
    // Bind mounts of directories init's tmpfs on /dev/shm will hold (this namespace's own).
    let late = r#", "mounts": [{"source": "/dev/shm/late", "target": "/late", "fstype": "",
                   "options": "bind", "mkdir": true, "wait_s": 5}]"#;
    let root = Root::new(Some(&manifest(
        "grep -q ' /late ' /proc/mounts && echo mounted",
        late,
    )));
    let setup = format!("{VETH}\n(sleep 0.5; mkdir \"$0/dev/shm/late\") &");
    let run = root.run(&setup, &[]);
    assert!(run.stdout.contains("mounted\n"), "{}", run.stdout);
    assert_eq!(status_lines(&run.stdout), ["lupine: exit status 0"]);
    assert!(
        run.elapsed >= Duration::from_millis(500),
        "{:?}",
        run.elapsed
    );

    let never = late
        .replace("late", "never")
        .replace("\"wait_s\": 5", "\"wait_s\": 0.3");
    let root = Root::new(Some(&manifest("echo ran", &never)));
    let run = root.run(VETH, &[]);
    assert_eq!(
        status_lines(&run.stdout),
        [
            "lupine: fatal: mount: /dev/shm/never on /never (): No such file or directory \
          (no such device: raise \"wait_s\"?)"
        ],
        "{}",
        run.stdout
    );
}

/// /etc full or read-only: what init must write there (resolv.conf for `network.dns`) is a
/// fatal line naming the file and the reason, and no temporary file stays behind; what it
/// only would like to write (/etc/hosts) is a warning, and without `network.dns` the app runs.
#[test]
#[ignore = "needs root"]
fn a_full_or_read_only_etc_is_a_clear_fatal_error() {
    let dns = r#", "network": {"interfaces": [{"name": "eth0", "addresses": ["10.0.2.15/24"]}],
                  "dns": {"nameservers": ["10.0.2.3"]}}"#;
    // A 64 KiB tmpfs on /etc with init's files, filled up.
    let full = format!(
        "{VETH}\ncp -a \"$0/etc\" \"$0/etc.image\"\nmount -t tmpfs -o size=64k tmpfs \"$0/etc\"\n\
         cp -a \"$0/etc.image/.\" \"$0/etc/\"\n\
         dd if=/dev/zero of=\"$0/etc/filler\" bs=4k 2>/dev/null || true"
    );
    let read_only =
        format!("{VETH}\nmount --bind \"$0/etc\" \"$0/etc\"\nmount -o remount,bind,ro \"$0/etc\"");
    let cases = [
        (&full, "No space left on device (os error 28)"),
        (&read_only, "Read-only file system (os error 30)"),
    ];
    for (setup, reason) in cases {
        let root = Root::new(Some(&manifest("echo ran", dns)));
        let run = root.run(setup, &[]);
        assert_eq!(
            status_lines(&run.stdout),
            [format!(
                "lupine: fatal: network.dns: /etc/resolv.conf: {reason}"
            )],
            "{}",
            run.stdout
        );
        // Without network.dns the app runs, and /etc/hosts, which init could not write,
        // left no temporary file.
        let root = Root::new(Some(&manifest("ls -a /etc; echo ran", "")));
        let run = root.run(setup, &[]);
        assert!(
            run.stdout.contains("ran\n"),
            "{}\n{}",
            run.stdout,
            run.stderr
        );
        assert!(!run.stdout.contains("lupine-tmp"), "{}", run.stdout);
        assert_eq!(status_lines(&run.stdout), ["lupine: exit status 0"]);
    }
}

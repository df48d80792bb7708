//! Logs off the VM (`log.syslog`): the app's stdout and stderr, lupine-init's own messages and
//! the kernel's reach a syslog server on the host (10.0.2.2 from the guest) as RFC 5424
//! messages, over UDP, or over TCP with octet counting, a server that goes away and comes back,
//! a bounded queue that says what it dropped, and an app that writes faster than the console.

use std::time::Duration;

use guest_tests::syslog::{Message, Tcp, Udp};
use guest_tests::{Initramfs, TempDir, Vm};

fn manifest(address: &str, script: &str) -> String {
    let log = serde_json::json!({
        "level": "info",
        "syslog": {"address": address, "app_name": "hello", "kmsg": true}
    });
    let app = serde_json::json!({"path": "/bin/sh", "args": ["-c", script]});
    serde_json::json!({
        "version": 1,
        "app": app,
        "hostname": "vm-syslog",
        "network": {"interfaces": [{"name": "eth0", "addresses": ["10.0.2.15/24"]}],
                    "routes": [{"destination": "default", "gateway": "10.0.2.2"}]},
        "log": log
    })
    .to_string()
}

fn from<'a>(messages: &'a [Message], app: &str, msg: &str) -> Option<&'a Message> {
    messages.iter().find(|m| m.app_name == app && m.msg == msg)
}

#[test]
fn udp_gets_the_apps_lines_inits_messages_and_the_kernels() {
    let tmp = TempDir::new("syslog-udp").unwrap();
    let server = Udp::start().unwrap();
    // stdout and stderr are two pipes: what comes through both at once may reach the console
    // in either order, so the last line comes a second later.
    let script = "echo to-stdout; echo to-stderr >&2; sleep 1; printf 'no newline at exit'; exit 3";
    let address = format!("udp://10.0.2.2:{}", server.port());
    let initrd = Initramfs::new(&manifest(&address, script))
        .unwrap()
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let out = Vm::lupine(&initrd).unwrap().net().run().unwrap();
    out.assert_exit_status(3);
    // The console still shows everything, as it comes.
    assert!(
        out.has_line("to-stdout") && out.has_line("to-stderr"),
        "{out}"
    );
    assert!(out.console.contains("no newline at exit"), "{out}");

    // Everything sent before the VM ended: nothing to wait for.
    let all = server.messages();
    let seen = || format!("{all:#?}");
    assert!(server.errors().is_empty(), "{:?}", server.errors());
    assert!(all.iter().all(|m| m.hostname == "vm-syslog"), "{}", seen());
    let stdout = from(&all, "hello", "to-stdout").unwrap_or_else(|| panic!("{}", seen()));
    assert_eq!((stdout.facility, stdout.severity), (1, 6), "user.info");
    let pid = &stdout.procid;
    assert!(pid.parse::<u32>().is_ok_and(|p| p > 1), "{stdout:?}");
    let stderr = from(&all, "hello", "to-stderr").unwrap_or_else(|| panic!("{}", seen()));
    assert_eq!(
        (stderr.facility, stderr.severity, &stderr.procid),
        (1, 3, pid),
        "user.err"
    );
    assert!(
        from(&all, "hello", "no newline at exit").is_some(),
        "{}",
        seen()
    );

    let started = format!("lupine: started /bin/sh as pid {pid}");
    let started = from(&all, "lupine-init", &started).unwrap_or_else(|| panic!("{}", seen()));
    assert_eq!(
        (started.facility, started.severity, started.procid.as_str()),
        (3, 6, "1")
    );
    // The exit status is the last line, after the app's last output.
    let last = all.last().unwrap();
    assert_eq!(
        (last.app_name.as_str(), last.msg.as_str()),
        ("lupine-init", "lupine: exit status 3")
    );
    assert_eq!((last.facility, last.severity), (3, 5), "daemon.notice");

    // kmsg: the kernel's log from its first line, as facility kern.
    let kernel: Vec<&Message> = all.iter().filter(|m| m.app_name == "kernel").collect();
    assert!(
        kernel
            .first()
            .is_some_and(|m| m.msg.starts_with("Linux version ")),
        "{}",
        seen()
    );
    assert!(
        kernel.iter().all(|m| m.facility == 0 && m.procid == "-"),
        "{}",
        seen()
    );
    // lupine-init's lines went to kmsg too, but reach syslog once, as lupine-init's.
    assert!(
        !kernel.iter().any(|m| m.msg.contains("lupine:")),
        "{}",
        seen()
    );
}

/// 3,000 lines while the server is away: the queue keeps the newest 2,048 messages and says
/// how many it dropped once the server is back; the rest arrive in order, octet-counted, and
/// the exit status before the VM ends.
#[test]
fn tcp_reconnects_and_says_what_it_dropped() {
    let tmp = TempDir::new("syslog-tcp").unwrap();
    let mut server = Tcp::start().unwrap();
    server.stop();
    let script = "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo \"line $i\"; done; \
                  echo burst done; sleep 4; echo after the server came back";
    let address = format!("tcp://10.0.2.2:{}", server.port());
    let initrd = Initramfs::new(&manifest(&address, script))
        .unwrap()
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let mut vm = Vm::lupine(&initrd)
        .unwrap()
        .net()
        .timeout(Duration::from_secs(120))
        .spawn()
        .unwrap();
    vm.wait_for_line("burst done").unwrap();
    assert!(server.messages().is_empty());
    server.restart().unwrap();
    let out = vm.wait().unwrap();
    out.assert_exit_status(0);

    let all = server.messages();
    assert!(server.errors().is_empty(), "{:?}", server.errors());
    let note = all
        .iter()
        .position(|m| m.msg.starts_with("lupine: dropped "))
        .unwrap_or_else(|| panic!("no drop count in {} messages", all.len()));
    let dropped: usize = all[note].msg["lupine: dropped ".len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{:?}", all[note]));
    assert_eq!(note, 0, "the count comes first: {:?}", &all[..3]);
    assert!(all[note]
        .msg
        .ends_with(" log messages while the server was away"));
    // What was queued when the server came back: the 2,048 newest, oldest first.
    let queued = &all[1..=2048];
    assert!(from(queued, "hello", "line 1").is_none());
    assert_eq!(queued.iter().filter(|m| m.msg == "line 3000").count(), 1);
    // Everything queued before the server came back (the kernel's and init's messages, 3,000
    // lines and "burst done") was either dropped or sent.
    let burst = all.iter().position(|m| m.msg == "burst done").unwrap();
    assert!(
        burst <= 2048 && dropped + burst >= 3000,
        "dropped {dropped}, burst at {burst}"
    );
    let lines: Vec<u32> = queued
        .iter()
        .filter_map(|m| m.msg.strip_prefix("line ")?.parse().ok())
        .collect();
    assert!(
        lines.windows(2).all(|w| w[1] == w[0] + 1),
        "in order, none lost"
    );
    assert!(from(&all, "hello", "after the server came back").is_some());
    let last = all.last().unwrap();
    assert_eq!(last.msg, "lupine: exit status 0", "{last:?}");
}

/// 1 MB of lines as fast as the app writes them, four times what the queue holds: a server
/// that reads gets every one, in order, and no drop count.
#[test]
fn tcp_keeps_up_with_an_app_that_writes_without_pause() {
    let tmp = TempDir::new("syslog-tcp-fast").unwrap();
    let server = Tcp::start().unwrap();
    let script = "l=$(printf '%990s' x); i=0; \
                  while [ $i -lt 1000 ]; do i=$((i+1)); echo \"$i $l\"; done";
    let address = format!("tcp://10.0.2.2:{}", server.port());
    let initrd = Initramfs::new(&manifest(&address, script))
        .unwrap()
        .write(tmp.join("initramfs.cpio"))
        .unwrap();
    let out = Vm::lupine(&initrd)
        .unwrap()
        .net()
        .timeout(Duration::from_secs(120))
        .run()
        .unwrap();
    out.assert_exit_status(0);
    let all = server.messages();
    assert!(server.errors().is_empty(), "{:?}", server.errors());
    let dropped = all.iter().find(|m| m.msg.starts_with("lupine: dropped "));
    assert!(dropped.is_none(), "{dropped:?}");
    assert_eq!(numbered(&all), (1..=1000).collect::<Vec<_>>());
}

/// The numbers that start the app's numbered lines, in order.
fn numbered(messages: &[Message]) -> Vec<u32> {
    let numbers = messages.iter().filter(|m| m.app_name == "hello");
    numbers
        .filter_map(|m| m.msg.split_once(' ')?.0.parse().ok())
        .collect()
}

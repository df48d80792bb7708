//! lupine-init's syslog client over TCP, on the host, against a server that hangs: it accepts
//! and reads nothing for a while. The client's queue is one per process, so this file holds a
//! single test.

mod syslog_server;

use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use lupine_init::manifest::{Syslog, Transport};
use lupine_init::syslog::{self, Origin};
use syslog_server::read_messages;

const LINES: u32 = 20_000;

/// 20 MB of lines (far more than the sockets hold) logged while the server reads nothing,
/// then the server reads again: it gets whole frames on the one connection it accepted, the
/// lines the sockets held, the drop count, the newest lines; nothing lost uncounted.
#[test]
fn a_server_that_hangs_gets_whole_frames_and_a_drop_count_on_one_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let config = Syslog {
        transport: Transport::Tcp,
        address: listener.local_addr().unwrap(),
        app_name: None,
        kmsg: false,
    };
    syslog::start(Some(&config), "vm", "app");
    let pad = "x".repeat(1000);
    for i in 1..=LINES {
        syslog::log(
            syslog::USER,
            syslog::INFO,
            Origin::App(7),
            &format!("{i} {pad}"),
        );
        syslog::flush();
    }

    let (server, _) = listener.accept().unwrap();
    let reader = thread::spawn(move || read_messages(server, &format!("{LINES} ")));
    syslog::flush_for(Duration::from_secs(30));
    let messages = reader.join().unwrap();
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "a second connection");

    // Each drop count accounts for the lines between the last sent before it and the first
    // after it.
    let mut next = 1;
    let mut notes = 0;
    for m in &messages {
        if let Some(count) = m.strip_prefix("lupine: dropped ") {
            let count = count.strip_suffix(" log messages while the server was away");
            next += count.and_then(|n| n.parse::<u32>().ok()).unwrap();
            notes += 1;
        } else {
            let n = m.split_once(' ').and_then(|(n, _)| n.parse().ok());
            assert_eq!(n, Some(next), "{:?}", &m[..m.len().min(80)]);
            next += 1;
        }
    }
    assert_eq!(next, LINES + 1);
    assert!(notes > 0 && messages.len() > notes, "{notes} drop counts");
}

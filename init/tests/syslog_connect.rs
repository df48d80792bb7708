//! lupine-init's syslog client over TCP, on the host, against a server whose host does not
//! answer yet: its listen queue is full, so the kernel drops the client's SYNs, as a host
//! that is down or behind a firewall would. The client's queue is one per process, so this
//! file holds a single test.

mod syslog_server;

use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use lupine_init::manifest::{Syslog, Transport};
use lupine_init::syslog::{self, Origin};
use syslog_server::read_messages;

/// While the handshake cannot complete, logging and sending return at once (the messages
/// wait in the queue); once the server takes connections, at the client's next SYN, they all
/// arrive in order.
#[test]
fn init_never_waits_for_a_handshake() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    // SAFETY: listen() again on the listener's own socket only changes its queue's length:
    // with 0, one connection not yet accepted fills it.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let filler = TcpStream::connect(address).unwrap();
    let config = Syslog {
        transport: Transport::Tcp,
        address,
        app_name: None,
        kmsg: false,
    };
    syslog::start(Some(&config), "vm", "app");
    let mut slowest = Duration::ZERO;
    for i in 1..=50 {
        let t = Instant::now();
        syslog::log(syslog::USER, syslog::INFO, Origin::App(7), &format!("{i}"));
        syslog::flush();
        slowest = slowest.max(t.elapsed());
        thread::sleep(Duration::from_millis(10));
    }
    // Blocking, a connect would take its whole timeout (500 ms).
    assert!(
        slowest < Duration::from_millis(400),
        "a flush took {slowest:?}"
    );

    let (_filler, _) = listener.accept().unwrap();
    drop(filler);
    let reader = thread::spawn(move || {
        let (server, _) = listener.accept().unwrap();
        read_messages(server, "50")
    });
    syslog::flush_for(Duration::from_secs(30));
    let messages = reader.join().unwrap();
    let want: Vec<String> = (1..=50).map(|i| i.to_string()).collect();
    assert_eq!(messages, want);
}

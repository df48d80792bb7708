//! Logs off the VM: RFC 5424 messages to a syslog server over UDP, or over TCP with RFC 6587
//! octet counting. Every message passes through one bounded queue, so lines logged before
//! the network is up, or while the server is away or not reading, are sent later; when the
//! queue is full the oldest go, and one message says how many once sending works again.
//! Sending never waits for the server (the TCP socket does not block, not even to connect),
//! so neither the app nor init slows down with it, and a frame the kernel took only part of
//! is finished before the next one: the server never gets a cut frame.

use std::collections::VecDeque;
use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::manifest::{Syslog, Transport};

/// The queue's bounds: what a burst of start-up output or a minute without a server needs,
/// and no more of a small VM's memory.
const MAX_MESSAGES: usize = 2048;
const MAX_BYTES: usize = 256 * 1024;
/// A longer line is sent in pieces of this size.
pub const MAX_LINE: usize = 4096;
/// Between attempts to reach a TCP server that is away.
const RETRY: Duration = Duration::from_secs(1);

/// RFC 5424 facilities.
pub const KERN: u8 = 0;
pub const USER: u8 = 1;
pub const DAEMON: u8 = 3;

/// RFC 5424 severities.
pub const ERR: u8 = 3;
pub const WARNING: u8 = 4;
pub const NOTICE: u8 = 5;
pub const INFO: u8 = 6;
pub const DEBUG: u8 = 7;

/// Who a message is from: the app (its pid), lupine-init, or the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    App(u32),
    Init,
    Kernel,
}

#[derive(Debug)]
struct Pending {
    facility: u8,
    severity: u8,
    time: SystemTime,
    origin: Origin,
    text: String,
}

struct Sink {
    queue: VecDeque<Pending>,
    bytes: usize,
    dropped: u64,
    /// None until the manifest names a server; messages wait in the queue meanwhile.
    out: Option<Out>,
    /// Set when the manifest names none: nothing is queued any more.
    off: bool,
}

struct Out {
    config: Syslog,
    hostname: String,
    app_name: String,
    udp: Option<UdpSocket>,
    tcp: Option<TcpStream>,
    /// A frame the TCP connection took only part of, and how much; sent again whole on the
    /// next connection if this one breaks.
    frame: Vec<u8>,
    written: usize,
    next_try: Instant,
}

static SINK: Mutex<Sink> = Mutex::new(Sink {
    queue: VecDeque::new(),
    bytes: 0,
    dropped: 0,
    out: None,
    off: false,
});

fn sink() -> std::sync::MutexGuard<'static, Sink> {
    SINK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Queues one message (a line without its newline).
pub fn log(facility: u8, severity: u8, origin: Origin, text: &str) {
    let mut s = sink();
    if s.off {
        return;
    }
    let text = text.to_string();
    s.bytes += text.len();
    s.queue.push_back(Pending {
        facility,
        severity,
        time: SystemTime::now(),
        origin,
        text,
    });
    while s.queue.len() > MAX_MESSAGES || s.bytes > MAX_BYTES {
        let Some(old) = s.queue.pop_front() else {
            break;
        };
        s.bytes -= old.text.len();
        s.dropped += 1;
    }
}

/// Sends what is queued to `config`'s server from now on, the app's lines as `app_name`
/// (the manifest's, or its executable's name); with no server, forgets what was queued and
/// queues nothing more.
pub fn start(config: Option<&Syslog>, hostname: &str, app_name: &str) {
    let mut s = sink();
    match config {
        Some(config) => {
            s.out = Some(Out {
                config: config.clone(),
                hostname: hostname.to_string(),
                app_name: config
                    .app_name
                    .clone()
                    .unwrap_or_else(|| app_name.to_string()),
                udp: None,
                tcp: None,
                frame: Vec::new(),
                written: 0,
                next_try: Instant::now(),
            })
        }
        None => {
            s.queue = VecDeque::new();
            s.bytes = 0;
            s.off = true;
        }
    }
}

/// Sends as much of the queue as the server takes now, without waiting for one that is away.
pub fn flush() {
    let mut s = sink();
    let Sink {
        queue,
        bytes,
        dropped,
        out,
        ..
    } = &mut *s;
    let Some(out) = out else {
        return;
    };
    if *dropped > 0 {
        let note = Pending {
            facility: DAEMON,
            severity: WARNING,
            time: SystemTime::now(),
            origin: Origin::Init,
            text: format!("lupine: dropped {dropped} log messages while the server was away"),
        };
        if out.send(&note) {
            *dropped = 0;
        }
    }
    if *dropped > 0 {
        return;
    }
    while let Some(next) = queue.front() {
        if !out.send(next) {
            break;
        }
        *bytes -= next.text.len();
        queue.pop_front();
    }
}

/// Before the VM ends: flushes until the queue is empty and the kernel holds no byte of it
/// any more (a send only hands them to the kernel, and the VM's end discards what it still
/// holds), or until `limit` has passed.
pub fn flush_for(limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        flush();
        let s = sink();
        let done = match &s.out {
            None => true,
            Some(out) => {
                s.queue.is_empty()
                    && s.dropped == 0
                    && out.frame.is_empty()
                    && out.unacknowledged() == 0
            }
        };
        if done || Instant::now() >= deadline {
            return;
        }
        drop(s);
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Out {
    /// SIOCOUTQ: over TCP, bytes the server has not acknowledged yet; over UDP, datagrams
    /// the network device has not sent yet.
    fn unacknowledged(&self) -> i32 {
        let fd = match (&self.tcp, &self.udp) {
            (Some(tcp), _) => tcp.as_raw_fd(),
            (None, Some(udp)) => udp.as_raw_fd(),
            (None, None) => return 0,
        };
        let mut n: libc::c_int = 0;
        // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int.
        let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) };
        if rc == 0 {
            n
        } else {
            0
        }
    }

    /// Sends one message; false when it must wait (it stays queued).
    fn send(&mut self, m: &Pending) -> bool {
        let text = format(m, &self.hostname, &self.app_name);
        match self.config.transport {
            Transport::Udp => self.send_udp(text.as_bytes()),
            Transport::Tcp => self.send_tcp(text.as_bytes()),
        }
    }

    fn send_udp(&mut self, datagram: &[u8]) -> bool {
        if self.udp.is_none() {
            let any: SocketAddr = match self.config.address {
                SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
                SocketAddr::V6(_) => ([0u16; 8], 0).into(),
            };
            self.udp = UdpSocket::bind(any).ok();
        }
        let Some(udp) = &self.udp else {
            return false;
        };
        // No route yet (the network comes up after the manifest is read): keep it for later.
        match udp.send_to(datagram, self.config.address) {
            Ok(_) => true,
            Err(e) => {
                !matches!(
                    e.kind(),
                    ErrorKind::NetworkUnreachable
                        | ErrorKind::HostUnreachable
                        | ErrorKind::WouldBlock
                ) && e.raw_os_error() != Some(libc::ENETUNREACH)
            }
        }
    }

    /// Takes the message once the connection takes some of its frame, the frame before it
    /// whole; false (the message stays queued) until then.
    fn send_tcp(&mut self, message: &[u8]) -> bool {
        if !self.connected() || !self.write_frame() {
            return false;
        }
        // RFC 6587 octet counting: "LEN SP MSG".
        self.frame = format!("{} ", message.len()).into_bytes();
        self.frame.extend_from_slice(message);
        if !self.write_frame() && self.written == 0 {
            self.frame.clear();
            return false;
        }
        true
    }

    /// Whether there is a connection to the server (perhaps still being made: writes wait
    /// until it is), starting one if it is time to try.
    fn connected(&mut self) -> bool {
        if self.tcp.as_ref().is_some_and(peer_closed) {
            self.disconnect();
        }
        if self.tcp.is_none() && Instant::now() >= self.next_try {
            match start_connecting(&self.config.address) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    self.tcp = Some(s);
                }
                Err(_) => self.next_try = Instant::now() + RETRY,
            }
        }
        self.tcp.is_some()
    }

    /// Forgets the connection; the next is tried after [`RETRY`], and the frame in hand goes
    /// on it again whole.
    fn disconnect(&mut self) {
        self.tcp = None;
        self.written = 0;
        self.next_try = Instant::now() + RETRY;
    }

    /// Writes what the connection takes of the frame in hand; true once all of it is sent.
    fn write_frame(&mut self) -> bool {
        while self.written < self.frame.len() {
            let Some(tcp) = &mut self.tcp else {
                return false;
            };
            match tcp.write(&self.frame[self.written..]) {
                Ok(0) => return false,
                Ok(n) => self.written += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(_) => {
                    self.disconnect();
                    return false;
                }
            }
        }
        self.frame.clear();
        self.written = 0;
        true
    }
}

/// A non-blocking TCP socket connecting to `address`: init never waits for the handshake (a
/// server whose host does not answer would hold it for the whole connect timeout). A write
/// meanwhile says WouldBlock; one after the connection failed, the error.
fn start_connecting(address: &SocketAddr) -> std::io::Result<TcpStream> {
    // SAFETY: an all-zero sockaddr_storage is valid, and so is either address inside it (it
    // is large and aligned enough for both).
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let (family, len) = match address {
        SocketAddr::V4(a) => {
            // SAFETY: see above.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            (libc::AF_INET, size_of::<libc::sockaddr_in>())
        }
        SocketAddr::V6(a) => {
            // SAFETY: see above.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            (libc::AF_INET6, size_of::<libc::sockaddr_in6>())
        }
    };
    let flags = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: socket has no memory arguments; the descriptor is new and owned by the stream.
    let fd = unsafe { libc::socket(family, flags, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new socket nothing else owns.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let addr = &storage as *const _ as *const libc::sockaddr;
    // SAFETY: `addr` points to `len` initialised bytes of a socket address.
    if unsafe { libc::connect(fd, addr, len as libc::socklen_t) } == 0 {
        return Ok(stream);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINPROGRESS) => Ok(stream),
        _ => Err(e),
    }
}

/// Whether the server has closed the connection: a write would still succeed once, and its
/// message would be lost.
fn peer_closed(s: &TcpStream) -> bool {
    let mut byte = 0u8;
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT;
    // SAFETY: recv writes at most one byte into `byte`.
    let n = unsafe { libc::recv(s.as_raw_fd(), (&mut byte as *mut u8).cast(), 1, flags) };
    n == 0 || n < 0 && std::io::Error::last_os_error().kind() != ErrorKind::WouldBlock
}

/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID - - MSG`.
fn format(m: &Pending, hostname: &str, app_name: &str) -> String {
    let (app, procid) = match m.origin {
        Origin::App(pid) => (app_name, pid.to_string()),
        Origin::Init => ("lupine-init", "1".to_string()),
        Origin::Kernel => ("kernel", "-".to_string()),
    };
    format!(
        "<{}>1 {} {hostname} {app} {procid} - - {}",
        m.facility * 8 + m.severity,
        timestamp(m.time),
        m.text
    )
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-12-07T10:05:42.123456Z`.
fn timestamp(t: SystemTime) -> String {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (y, mo, d) = civil_from_days((secs / 86400) as i64);
    let s = secs % 86400;
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        since.subsec_micros()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connects_over_ipv4_and_ipv6() {
        use std::io::Read;
        for host in ["127.0.0.1:0", "[::1]:0"] {
            let listener = std::net::TcpListener::bind(host).unwrap();
            let mut client = start_connecting(&listener.local_addr().unwrap()).unwrap();
            let (mut server, peer) = listener.accept().unwrap();
            assert_eq!(Some(peer), client.local_addr().ok());
            client.set_nonblocking(false).unwrap();
            client.write_all(b"hi").unwrap();
            let mut got = [0u8; 2];
            server.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"hi");
        }
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_794), (2026, 12, 7));
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_796_638_542, 123_456_789);
        assert_eq!(timestamp(t), "2026-12-07T10:15:42.123456Z");
    }

    #[test]
    fn rfc5424_lines() {
        let m = Pending {
            facility: USER,
            severity: ERR,
            time: SystemTime::UNIX_EPOCH,
            origin: Origin::App(42),
            text: "boom".into(),
        };
        assert_eq!(
            format(&m, "vm1", "redis"),
            "<11>1 1970-01-01T00:00:00.000000Z vm1 redis 42 - - boom"
        );
        let k = Pending {
            facility: KERN,
            origin: Origin::Kernel,
            severity: NOTICE,
            ..m
        };
        assert_eq!(
            format(&k, "vm1", "redis"),
            "<5>1 1970-01-01T00:00:00.000000Z vm1 kernel - - - boom"
        );
    }
}

//! Host syslog collectors for guests to log to (under QEMU's user networking the gateway,
//! 10.0.2.2, reaches the host's 127.0.0.1): [`Udp`], one message per datagram (RFC 5426), and
//! [`Tcp`], octet-counted frames (RFC 6587 `LEN SP MSG`) over any number of successive
//! connections. Each message is parsed as RFC 5424 ([`Message`]); whatever does not parse, or
//! breaks the framing, is kept in `errors()`, so that a test sees a malformed message instead
//! of missing it.

use std::io::{self, BufRead, BufReader, Read};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// A frame longer than this is taken for garbage rather than waited for.
const MAX_FRAME: usize = 1 << 20;
/// How often the listening threads look whether they should stop.
const POLL: Duration = Duration::from_millis(10);

/// An RFC 5424 message. Header fields are kept as sent, NILVALUE as `-`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// PRI / 8: 1 user, 3 daemon, 16..=23 local0..local7.
    pub facility: u8,
    /// PRI % 8: 0 emerg ... 3 err, 4 warning, 5 notice, 6 info, 7 debug.
    pub severity: u8,
    pub timestamp: String,
    pub hostname: String,
    pub app_name: String,
    pub procid: String,
    pub msgid: String,
    /// `-` or the SD-ELEMENTs as sent (`[id k="v"]...`).
    pub structured_data: String,
    /// MSG without its UTF-8 BOM (and nothing else removed: a trailing newline stays); empty
    /// when absent.
    pub msg: String,
    /// Whether MSG started with the UTF-8 BOM (RFC 5424's MSG-UTF8).
    pub bom: bool,
}

impl Message {
    /// Parses one message (a datagram, or a frame without its length).
    pub fn parse(bytes: &[u8]) -> std::result::Result<Message, String> {
        let mut p = Parser { rest: bytes };
        let pri = p
            .rest
            .strip_prefix(b"<")
            .and_then(|r| {
                let end = r.iter().position(|&b| b == b'>')?;
                let digits = std::str::from_utf8(&r[..end]).ok()?;
                p.rest = &r[end + 1..];
                valid_number(digits, 3).then(|| digits.parse::<u8>().ok())?
            })
            .filter(|&pri| pri <= 191)
            .ok_or("no PRI (<0> to <191>)")?;
        if p.field("VERSION", 3)? != "1" {
            return Err("VERSION is not 1".into());
        }
        let timestamp = p.field("TIMESTAMP", 64)?;
        if timestamp != "-" && !valid_timestamp(&timestamp) {
            return Err(format!(
                "TIMESTAMP {timestamp:?} is not RFC 3339 as RFC 5424 wants"
            ));
        }
        let hostname = p.field("HOSTNAME", 255)?;
        let app_name = p.field("APP-NAME", 48)?;
        let procid = p.field("PROCID", 128)?;
        let msgid = p.field("MSGID", 32)?;
        let structured_data = p.structured_data()?;
        let msg = match p.rest {
            [] => &[][..],
            [b' ', msg @ ..] => msg,
            _ => return Err("no space after STRUCTURED-DATA".into()),
        };
        let (bom, msg) = match msg.strip_prefix(b"\xef\xbb\xbf") {
            Some(utf8) => (
                true,
                String::from_utf8(utf8.to_vec()).map_err(|_| "MSG after a BOM is not UTF-8")?,
            ),
            None => (false, String::from_utf8_lossy(msg).into_owned()),
        };
        Ok(Message {
            facility: pri / 8,
            severity: pri % 8,
            timestamp,
            hostname,
            app_name,
            procid,
            msgid,
            structured_data,
            msg,
            bom,
        })
    }
}

struct Parser<'a> {
    rest: &'a [u8],
}

impl Parser<'_> {
    /// A header field (PRINTUSASCII, at most `max` of them) and the space after it.
    fn field(&mut self, name: &str, max: usize) -> std::result::Result<String, String> {
        let end = self.rest.iter().position(|&b| b == b' ');
        let Some(end) = end else {
            return Err(format!("message ends in or before {name}"));
        };
        let field = &self.rest[..end];
        if field.is_empty() || field.len() > max || !field.iter().all(|b| (33..=126).contains(b)) {
            let field = String::from_utf8_lossy(field);
            return Err(format!(
                "{name} {field:?} is not 1 to {max} printable ASCII characters"
            ));
        }
        self.rest = &self.rest[end + 1..];
        Ok(String::from_utf8_lossy(field).into_owned())
    }

    /// `-` or SD-ELEMENTs: `[`, then up to the `]` outside a quoted PARAM-VALUE (in which `\`
    /// escapes the next character).
    fn structured_data(&mut self) -> std::result::Result<String, String> {
        let bytes = self.rest;
        let mut i = 0;
        if bytes.first() == Some(&b'-') {
            i = 1;
        } else {
            if bytes.first() != Some(&b'[') {
                return Err("STRUCTURED-DATA is neither - nor [...]".into());
            }
            while bytes.get(i) == Some(&b'[') {
                let (mut quoted, mut escaped) = (false, false);
                loop {
                    i += 1;
                    match (bytes.get(i), quoted, escaped) {
                        (None, ..) => return Err("unterminated SD-ELEMENT".into()),
                        (Some(_), true, true) => escaped = false,
                        (Some(b'\\'), true, false) => escaped = true,
                        (Some(b'"'), q, false) => quoted = !q,
                        (Some(b']'), false, _) => break,
                        _ => {}
                    }
                }
                i += 1;
            }
        }
        self.rest = &bytes[i..];
        Ok(String::from_utf8_lossy(&bytes[..i]).into_owned())
    }
}

/// 1 to `max` digits without a leading zero (but `0` itself).
fn valid_number(digits: &str, max: usize) -> bool {
    (1..=max).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
}

/// `YYYY-MM-DDTHH:MM:SS[.1-6 digits](Z|+HH:MM|-HH:MM)`, by shape.
fn valid_timestamp(t: &str) -> bool {
    let shape = |s: &str, pattern: &str| {
        s.len() == pattern.len()
            && s.bytes().zip(pattern.bytes()).all(|(c, p)| match p {
                b'D' => c.is_ascii_digit(),
                _ => c == p,
            })
    };
    if t.len() < 20 || !shape(&t[..19], "DDDD-DD-DDTDD:DD:DD") {
        return false;
    }
    let mut rest = &t[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=6).contains(&n) {
            return false;
        }
        rest = &frac[n..];
    }
    rest == "Z" || (rest.len() == 6 && rest.starts_with(['+', '-']) && shape(&rest[1..], "DD:DD"))
}

/// What a collector has received, shared with its threads.
#[derive(Default)]
struct Inbox {
    state: Mutex<Received>,
    changed: Condvar,
}

#[derive(Default)]
struct Received {
    messages: Vec<Message>,
    errors: Vec<String>,
    connections: usize,
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, Received> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, bytes: &[u8]) {
        let parsed = Message::parse(bytes);
        let mut r = self.lock();
        match parsed {
            Ok(m) => r.messages.push(m),
            Err(e) => r
                .errors
                .push(format!("{e}: {:?}", String::from_utf8_lossy(bytes))),
        }
        self.changed.notify_all();
    }

    fn error(&self, error: String) {
        self.lock().errors.push(error);
        self.changed.notify_all();
    }

    fn wait_for(&self, pred: impl Fn(&Message) -> bool, timeout: Duration) -> Option<Message> {
        let deadline = Instant::now() + timeout;
        let mut r = self.lock();
        loop {
            if let Some(m) = r.messages.iter().find(|m| pred(m)) {
                return Some(m.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            r = self
                .changed
                .wait_timeout(r, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// The methods both collectors share.
macro_rules! collector {
    () => {
        pub fn port(&self) -> u16 {
            self.port
        }

        /// The messages received so far, in order.
        pub fn messages(&self) -> Vec<Message> {
            self.inbox.lock().messages.clone()
        }

        /// Input that was not a message (or, over TCP, not a frame), described with the bytes.
        pub fn errors(&self) -> Vec<String> {
            self.inbox.lock().errors.clone()
        }

        /// Waits until a message satisfies `pred`; returns it, or None after `timeout`.
        pub fn wait_for(
            &self,
            pred: impl Fn(&Message) -> bool,
            timeout: Duration,
        ) -> Option<Message> {
            self.inbox.wait_for(pred, timeout)
        }
    };
}

/// A UDP syslog collector on 127.0.0.1, one message per datagram, until dropped.
pub struct Udp {
    port: u16,
    inbox: Arc<Inbox>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Udp {
    pub fn start() -> Result<Udp> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(POLL))?;
        let port = socket.local_addr()?.port();
        let (inbox, stop) = (Arc::new(Inbox::default()), Arc::new(AtomicBool::new(false)));
        let thread = {
            let (inbox, stop) = (inbox.clone(), stop.clone());
            thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    match socket.recv(&mut buf) {
                        Ok(n) => inbox.add(&buf[..n]),
                        Err(e) if is_timeout(&e) => {}
                        Err(e) => {
                            inbox.error(format!("recv: {e}"));
                            thread::sleep(POLL);
                        }
                    }
                }
            })
        };
        Ok(Udp {
            port,
            inbox,
            stop,
            thread: Some(thread),
        })
    }

    collector!();
}

impl Drop for Udp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// A TCP syslog collector on 127.0.0.1 reading octet-counted frames from any number of
/// connections, until dropped; [`Tcp::stop`] and [`Tcp::restart`] take it away and bring it
/// back on the same port, for testing a client's reconnection.
pub struct Tcp {
    port: u16,
    inbox: Arc<Inbox>,
    listening: Option<Listening>,
}

/// A running listener: its accept thread and the connections it took.
struct Listening {
    stop: Arc<AtomicBool>,
    accept: JoinHandle<()>,
    connections: Connections,
}

/// Each connection (a clone, to shut it down) and the thread reading it.
type Connections = Arc<Mutex<Vec<(TcpStream, JoinHandle<()>)>>>;

impl Tcp {
    pub fn start() -> Result<Tcp> {
        let mut tcp = Tcp {
            port: 0,
            inbox: Arc::new(Inbox::default()),
            listening: None,
        };
        tcp.listen()?;
        Ok(tcp)
    }

    collector!();

    /// How many connections were accepted (across restarts).
    pub fn connections(&self) -> usize {
        self.inbox.lock().connections
    }

    /// Closes the listener and every connection: their senders see them closed (reset if they
    /// write on), and new connections are refused. The messages received so far stay.
    pub fn stop(&mut self) {
        if let Some(l) = self.listening.take() {
            l.stop.store(true, Ordering::Relaxed);
            let _ = l.accept.join();
            let connections = std::mem::take(&mut *lock(&l.connections));
            for (stream, thread) in connections {
                let _ = stream.shutdown(Shutdown::Both);
                let _ = thread.join();
            }
        }
    }

    /// Listens again on the same port (a no-op while listening).
    pub fn restart(&mut self) -> Result<()> {
        match self.listening {
            Some(_) => Ok(()),
            None => self.listen(),
        }
    }

    fn listen(&mut self) -> Result<()> {
        // std sets SO_REUSEADDR, so the port's connections in TIME_WAIT do not keep it.
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .map_err(|e| Error(format!("cannot listen on 127.0.0.1:{}: {e}", self.port)))?;
        self.port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let (inbox, stop, connections) =
                (self.inbox.clone(), stop.clone(), connections.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = stream.set_nonblocking(false);
                            let Ok(clone) = stream.try_clone() else {
                                inbox.error("cannot clone an accepted stream".into());
                                continue;
                            };
                            inbox.lock().connections += 1;
                            let inbox = inbox.clone();
                            let thread = thread::spawn(move || {
                                read_frames(&stream, &inbox);
                                // Closes it for the sender: Tcp::stop holds a clone.
                                let _ = stream.shutdown(Shutdown::Both);
                            });
                            lock(&connections).push((clone, thread));
                        }
                        Err(e) if is_timeout(&e) => thread::sleep(POLL),
                        Err(e) => {
                            inbox.error(format!("accept: {e}"));
                            thread::sleep(POLL);
                        }
                    }
                }
            })
        };
        self.listening = Some(Listening {
            stop,
            accept,
            connections,
        });
        Ok(())
    }
}

impl Drop for Tcp {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads `LEN SP MSG` frames until the connection ends; a framing error is recorded and ends
/// it (the stream cannot be resynchronised), as does a close in the middle of a frame.
fn read_frames(stream: &TcpStream, inbox: &Inbox) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut len = Vec::new();
        match reader.by_ref().take(8).read_until(b' ', &mut len) {
            Ok(0) => return,
            Ok(_) => {}
            // Our own shutdown (Tcp::stop) or the client's reset.
            Err(_) => return,
        }
        let digits = len
            .strip_suffix(b" ")
            .and_then(|d| std::str::from_utf8(d).ok());
        let size = match digits {
            Some(d) if valid_number(d, 7) && d != "0" => d.parse::<usize>().unwrap_or(0),
            _ => {
                // What else has arrived, for the record; reading more could block.
                let more = reader.buffer();
                len.extend_from_slice(&more[..more.len().min(64)]);
                let got = String::from_utf8_lossy(&len);
                return inbox.error(format!("not an octet-counted frame (LEN SP MSG): {got:?}"));
            }
        };
        if size > MAX_FRAME {
            return inbox.error(format!("frame of {size} bytes, more than {MAX_FRAME}"));
        }
        let mut frame = vec![0u8; size];
        if let Err(e) = reader.read_exact(&mut frame) {
            return inbox.error(format!(
                "connection ended inside a frame of {size} bytes: {e}"
            ));
        }
        inbox.add(&frame);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::Shutdown;

    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    #[test]
    fn parses_rfc_5424() {
        let m = Message::parse(
            b"<30>1 2026-12-07T10:00:00.123456+01:00 vm redis 1 start \
              [a@1 k=\"v \\\"]\\\\\"][b@1] \xef\xbb\xbfready \xc3\xa9\n",
        )
        .unwrap();
        assert_eq!((m.facility, m.severity), (3, 6));
        assert_eq!(m.timestamp, "2026-12-07T10:00:00.123456+01:00");
        assert_eq!((m.hostname.as_str(), m.app_name.as_str()), ("vm", "redis"));
        assert_eq!((m.procid.as_str(), m.msgid.as_str()), ("1", "start"));
        assert_eq!(m.structured_data, r#"[a@1 k="v \"]\\"][b@1]"#);
        assert_eq!((m.msg.as_str(), m.bom), ("ready é\n", true));

        let m = Message::parse(b"<0>1 - - - - - -").unwrap();
        assert_eq!((m.facility, m.severity, m.timestamp.as_str()), (0, 0, "-"));
        assert_eq!(
            (m.structured_data.as_str(), m.msg.as_str(), m.bom),
            ("-", "", false)
        );
        let m = Message::parse(b"<191>1 2026-12-07T10:00:00Z h a p m - plain").unwrap();
        assert_eq!((m.facility, m.severity, m.msg.as_str()), (23, 7, "plain"));
    }

    #[test]
    fn rejects_what_is_not_rfc_5424() {
        for bad in [
            &b""[..],
            b"hello",
            b"<192>1 - - - - - -",
            b"<01>1 - - - - - -",
            b"<13>Dec  7 10:00:00 vm app: RFC 3164",
            b"<13>2 - - - - - -",
            b"<13>1 2026-12-07 10:00:00 h a p m -",
            b"<13>1 2026-12-07T10:00:00 h a p m -",
            b"<13>1 - h a p m",
            b"<13>1 - h a p m -msg",
            b"<13>1 - h a p m -[x@1]",
            b"<13>1 - h a p m [x@1 k=\"]\"",
            b"<13>1 - h a p m x",
            b"<13>1 - h a p m - \xef\xbb\xbf\xff",
        ] {
            assert!(
                Message::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long_app = format!("<13>1 - h {} p m -", "a".repeat(49));
        assert!(Message::parse(long_app.as_bytes()).is_err());
    }

    #[test]
    fn udp_one_message_per_datagram() {
        let udp = Udp::start().unwrap();
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.send_to(b"<14>1 - vm app - - - one", ("127.0.0.1", udp.port()))
            .unwrap();
        s.send_to(b"not syslog", ("127.0.0.1", udp.port())).unwrap();
        s.send_to(b"<14>1 - vm app - - - two", ("127.0.0.1", udp.port()))
            .unwrap();
        assert!(udp.wait_for(|m| m.msg == "two", WAIT).is_some());
        let msgs: Vec<String> = udp.messages().into_iter().map(|m| m.msg).collect();
        assert_eq!(msgs, ["one", "two"]);
        let errors = udp.errors();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("not syslog"), "{errors:?}");
        assert!(udp
            .wait_for(|m| m.msg == "three", Duration::from_millis(50))
            .is_none());
    }

    fn frame(msg: &str) -> Vec<u8> {
        format!("{} {msg}", msg.len()).into_bytes()
    }

    #[test]
    fn tcp_octet_counted_frames() {
        let tcp = Tcp::start().unwrap();
        let mut s = TcpStream::connect(("127.0.0.1", tcp.port())).unwrap();
        // Two frames in one write, then one split across writes.
        let mut two = frame("<14>1 - vm app - - - one");
        two.extend(frame("<14>1 - vm app - - - two\nlines"));
        s.write_all(&two).unwrap();
        let third = frame("<14>1 - vm app - - - three");
        s.write_all(&third[..5]).unwrap();
        s.flush().unwrap();
        thread::sleep(Duration::from_millis(50));
        s.write_all(&third[5..]).unwrap();
        assert!(tcp.wait_for(|m| m.msg == "three", WAIT).is_some());
        let msgs: Vec<String> = tcp.messages().into_iter().map(|m| m.msg).collect();
        assert_eq!(msgs, ["one", "two\nlines", "three"]);
        assert!(tcp.errors().is_empty());

        // Non-transparent framing (a line) is not octet counting: recorded, connection ended.
        s.write_all(b"<14>1 - vm app - - - a line\n").unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        let errors = tcp.errors();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("not an octet-counted frame"),
            "{errors:?}"
        );
        // So is a frame cut short, and a frame whose message is malformed.
        let mut s = TcpStream::connect(("127.0.0.1", tcp.port())).unwrap();
        s.write_all(&frame("<14>1 - vm a - -")).unwrap();
        s.write_all(b"10 <14>1 - v").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let _ = s.read_to_end(&mut rest);
        let deadline = Instant::now() + WAIT;
        while tcp.errors().len() < 3 && Instant::now() < deadline {
            thread::sleep(POLL);
        }
        let errors = tcp.errors();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors[1].starts_with("message ends in or before"),
            "{errors:?}"
        );
        assert!(
            errors[2].starts_with("connection ended inside a frame"),
            "{errors:?}"
        );
        assert_eq!(tcp.connections(), 2);
    }

    #[test]
    fn tcp_stop_and_restart_on_the_same_port() {
        let mut tcp = Tcp::start().unwrap();
        let port = tcp.port();
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(&frame("<14>1 - vm app - - - before")).unwrap();
        assert!(tcp.wait_for(|m| m.msg == "before", WAIT).is_some());

        tcp.stop();
        // The client sees its connection closed, and cannot connect again.
        let mut rest = Vec::new();
        assert_eq!(s.read_to_end(&mut rest).unwrap(), 0);
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());

        tcp.restart().unwrap();
        assert_eq!(tcp.port(), port);
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(&frame("<14>1 - vm app - - - after")).unwrap();
        assert!(tcp.wait_for(|m| m.msg == "after", WAIT).is_some());
        let msgs: Vec<String> = tcp.messages().into_iter().map(|m| m.msg).collect();
        assert_eq!(msgs, ["before", "after"]);
        assert_eq!(tcp.connections(), 2);
        assert!(tcp.errors().is_empty(), "{:?}", tcp.errors());
    }
}

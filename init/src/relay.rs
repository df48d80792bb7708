//! The app's stdout and stderr are pipes that init relays to the console as they come, and
//! line by line to syslog when the manifest names a server: as under a container runtime,
//! the app owns them, so one that drops privileges can still reopen /dev/stdout (the console
//! itself is root's). The kernel's own messages can join them (`log.syslog.kmsg`).

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use crate::error::Fatal;
use crate::syslog::{self, Origin};

/// The pipes' write ends, for the app.
pub struct Writers {
    out: OwnedFd,
    err: OwnedFd,
}

impl Writers {
    /// In the app's process: the pipes become its stdout and stderr (stdin stays the console,
    /// so ^C and job control still reach it).
    pub fn install(self) -> Result<(), Fatal> {
        for (fd, target) in [(&self.out, 1), (&self.err, 2)] {
            // SAFETY: dup2 onto a standard descriptor this process owns.
            if unsafe { libc::dup2(fd.as_raw_fd(), target) } < 0 {
                return Err(Fatal::new("app stdio", std::io::Error::last_os_error()));
            }
        }
        Ok(())
    }
}

/// What init reads and passes on while the app runs.
pub struct Relay {
    streams: Vec<Stream>,
    kmsg: Option<File>,
    pid: u32,
}

struct Stream {
    pipe: File,
    console: RawFd,
    severity: u8,
    /// The line being read, until its newline.
    line: Vec<u8>,
    /// Whether the last byte passed to the console ended a line.
    at_line_start: bool,
    open: bool,
}

/// Two pipes, and the kernel log when `kmsg` (read from its oldest record, so the boot's
/// messages are sent too).
pub fn pipes(kmsg: bool) -> Result<(Relay, Writers), Fatal> {
    let (out_r, out) = pipe()?;
    let (err_r, err) = pipe()?;
    let stream = |pipe, console, severity| Stream {
        pipe,
        console,
        severity,
        line: Vec::new(),
        at_line_start: true,
        open: true,
    };
    let kmsg = kmsg.then(open_kmsg);
    let kmsg = match kmsg.transpose() {
        Ok(k) => k,
        Err(e) => {
            log::warn!("log.syslog.kmsg: /dev/kmsg: {e}");
            None
        }
    };
    let relay = Relay {
        streams: vec![
            stream(out_r, 1, syslog::INFO),
            stream(err_r, 2, syslog::ERR),
        ],
        kmsg,
        pid: 0,
    };
    Ok((relay, Writers { out, err }))
}

/// A pipe with a non-blocking read end; both ends close on exec (dup2 clears that flag on
/// the app's copies).
fn pipe() -> Result<(File, OwnedFd), Fatal> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Fatal::new("app stdio", std::io::Error::last_os_error()));
    }
    // SAFETY: both descriptors are new and owned here alone.
    let (r, w) = unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl and fchmod on descriptors we own.
    unsafe {
        libc::fcntl(fds[0], libc::F_SETFL, libc::O_NONBLOCK);
        // Reopening /dev/stdout (/proc/self/fd/1) checks the pipe's own mode, 0600 and
        // root's: after dropping privileges the app could not. Anyone may open it for
        // writing; reaching it at all takes holding it (or ptrace rights over one who does).
        libc::fchmod(fds[1], 0o622);
    }
    Ok((r, w))
}

impl Relay {
    /// The app's pid, for the syslog messages of its lines.
    pub fn set_pid(&mut self, pid: u32) {
        self.pid = pid;
    }

    /// Descriptors to poll for reading.
    pub fn fds(&self) -> Vec<RawFd> {
        let pipes = self.streams.iter().filter(|s| s.open);
        pipes
            .map(|s| s.pipe.as_raw_fd())
            .chain(self.kmsg.as_ref().map(|k| k.as_raw_fd()))
            .collect()
    }

    /// Passes on what can be read now, at most one buffer from each pipe: an app that writes
    /// without pause must not keep its caller from signals and from sending to syslog. True
    /// if a pipe had something.
    pub fn pump(&mut self) -> bool {
        let origin = Origin::App(self.pid);
        let mut read = false;
        for s in self.streams.iter_mut().filter(|s| s.open) {
            read |= s.pump(origin);
        }
        if let Some(kmsg) = &mut self.kmsg {
            pump_kmsg(kmsg);
        }
        read
    }

    /// After the app and everything else has exited: what is left in the pipes, up to their
    /// end or `limit`, and the last lines without a newline.
    pub fn drain(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.streams.iter().any(|s| s.open) && Instant::now() < deadline {
            if !self.pump() {
                std::thread::sleep(Duration::from_millis(5));
            }
            syslog::flush();
        }
        let origin = Origin::App(self.pid);
        for s in &mut self.streams {
            s.end_line(origin);
        }
        // Init's own last line starts a line of its own on the console.
        if self.streams.iter().any(|s| !s.at_line_start) {
            crate::error::say("");
        }
    }
}

impl Stream {
    /// Reads and passes on one buffer's worth; true if there was any.
    fn pump(&mut self, origin: Origin) -> bool {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.pipe.read(&mut buf) {
                Ok(0) => {
                    self.open = false;
                    return false;
                }
                Ok(n) => {
                    self.pass_on(&buf[..n], origin);
                    return true;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false, // WouldBlock: nothing for now
            }
        }
    }

    fn pass_on(&mut self, data: &[u8], origin: Origin) {
        // SAFETY: the console descriptors 1 and 2 stay open for init's whole life; the File
        // is forgotten, not closed.
        let mut console = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(self.console) });
        let _ = console.write_all(data);
        self.at_line_start = data.last() == Some(&b'\n');
        for &b in data {
            if b == b'\n' {
                self.end_line(origin);
            } else {
                self.line.push(b);
                if self.line.len() == syslog::MAX_LINE {
                    self.end_line(origin);
                }
            }
        }
    }

    fn end_line(&mut self, origin: Origin) {
        if self.line.is_empty() {
            return;
        }
        let line = String::from_utf8_lossy(&self.line);
        let line = line.strip_suffix('\r').unwrap_or(&line);
        syslog::log(syslog::USER, self.severity, origin, line);
        self.line.clear();
    }
}

/// The kernel log, to read from its oldest record without waiting.
pub fn open_kmsg() -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
}

/// Calls `each` with the priority and text of every kernel log record there is to read now.
pub fn read_kmsg(kmsg: &mut File, each: &mut dyn FnMut(u32, &str)) {
    let mut buf = [0u8; 8192];
    loop {
        match kmsg.read(&mut buf) {
            Ok(n) if n > 0 => {
                if let Some((pri, text)) = kmsg_record(&buf[..n]) {
                    each(pri, &text);
                }
            }
            // EPIPE: records were overwritten before we read them; go on with the next.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            _ => return,
        }
    }
}

/// Queues the kernel's records (facility 0; what init and others write to /dev/kmsg has
/// another facility and reaches syslog its own way).
fn pump_kmsg(kmsg: &mut File) {
    read_kmsg(kmsg, &mut |pri, text| {
        if pri >> 3 == 0 {
            syslog::log(syslog::KERN, (pri & 7) as u8, Origin::Kernel, text);
        }
    });
}

/// `PRI,SEQ,TIME,FLAGS;TEXT\n` (then continuation lines, dropped): PRI and TEXT.
fn kmsg_record(record: &[u8]) -> Option<(u32, String)> {
    let record = String::from_utf8_lossy(record);
    let (head, rest) = record.split_once(';')?;
    let pri = head.split(',').next()?.parse().ok()?;
    let text = rest.lines().next().unwrap_or("");
    Some((pri, text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmsg_records() {
        assert_eq!(
            kmsg_record(b"6,339,5140900,-;NET: Registered protocol family 10\n SUBSYSTEM=net\n"),
            Some((6, "NET: Registered protocol family 10".into()))
        );
        assert_eq!(
            kmsg_record(b"14,340,5141000,-;lupine: started\n"),
            Some((14, "lupine: started".into()))
        );
        assert_eq!(kmsg_record(b"garbage"), None);
    }
}

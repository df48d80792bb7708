//! `log` backend writing to /dev/kmsg, so messages land in the kernel log with timestamps;
//! falls back to stderr (the console) when /dev/kmsg cannot be opened. Every message also
//! goes to syslog when the manifest names a server.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

use crate::syslog::{self, Origin};

struct Kmsg {
    out: Mutex<Option<File>>,
}

impl log::Log for Kmsg {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let severity = match record.level() {
            log::Level::Error => syslog::ERR,
            log::Level::Warn => syslog::WARNING,
            log::Level::Info => syslog::INFO,
            log::Level::Debug | log::Level::Trace => syslog::DEBUG,
        };
        let line = format!("lupine: {}", record.args());
        syslog::log(syslog::DAEMON, severity, Origin::Init, &line);
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if out.is_none() {
            *out = OpenOptions::new().write(true).open("/dev/kmsg").ok();
        }
        match out.as_mut() {
            // One write per record: kmsg takes each write as one message.
            Some(kmsg) => {
                let _ = kmsg.write_all(format!("<{severity}>{line}\n").as_bytes());
            }
            None => eprintln!("lupine: {}: {}", record.level(), record.args()),
        }
    }

    fn flush(&self) {}
}

static LOGGER: Kmsg = Kmsg {
    out: Mutex::new(None),
};

pub fn init(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

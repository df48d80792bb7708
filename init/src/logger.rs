//! `log` backend writing to /dev/kmsg, so messages land in the kernel log with timestamps;
//! falls back to stderr (the console) when /dev/kmsg cannot be opened.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

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
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if out.is_none() {
            *out = OpenOptions::new().write(true).open("/dev/kmsg").ok();
        }
        match out.as_mut() {
            // One write per record: kmsg takes each write as one message.
            Some(kmsg) => {
                let prio = match record.level() {
                    log::Level::Error => 3,
                    log::Level::Warn => 4,
                    log::Level::Info => 6,
                    log::Level::Debug | log::Level::Trace => 7,
                };
                let _ = kmsg.write_all(format!("<{prio}>lupine: {}\n", record.args()).as_bytes());
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

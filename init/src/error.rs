//! The one error type of lupine-init: a step that failed and why.

use std::fmt;
use std::io::Write;

/// A failed step; printed as `lupine: fatal: <step>: <reason>` before the VM ends.
#[derive(Debug)]
pub struct Fatal {
    pub step: &'static str,
    pub reason: String,
    /// Exit status reported for the VM (127 when the app cannot be executed, as shells do).
    pub status: u8,
}

impl Fatal {
    pub fn new(step: &'static str, reason: impl fmt::Display) -> Fatal {
        Fatal {
            step,
            reason: reason.to_string(),
            status: 1,
        }
    }
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step, self.reason)
    }
}

/// Adds the step name to a lower-level error.
pub trait Context<T> {
    fn step(self, step: &'static str) -> Result<T, Fatal>;
}

impl<T, E: fmt::Display> Context<T> for Result<T, E> {
    fn step(self, step: &'static str) -> Result<T, Fatal> {
        self.map_err(|e| Fatal::new(step, e))
    }
}

/// One line on the console (stdout), written at once.
pub fn say(line: &str) {
    let _ = std::io::stdout().write_all(format!("{line}\n").as_bytes());
}

/// A line on the console that also goes to syslog, from init, when a server is configured.
pub fn announce(line: &str) {
    say(line);
    crate::syslog::log(
        crate::syslog::DAEMON,
        crate::syslog::NOTICE,
        crate::syslog::Origin::Init,
        line,
    );
}

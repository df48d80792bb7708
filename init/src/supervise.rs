//! Supervise mode: init forks the app, forwards stop signals to it, reaps every zombie, and
//! when the app exits stops whatever is left.

use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::error::Fatal;
use crate::relay::Relay;
use crate::syslog;

/// Signals init passes on to the app.
pub const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Time the rest of the processes get between SIGTERM and SIGKILL once the app has exited.
const GRACE: Duration = Duration::from_secs(2);

/// How often init looks for the app's `ready` socket until it appears.
const READY_POLL: Duration = Duration::from_millis(5);

/// What the app's output may still hold once every process is gone.
const DRAIN: Duration = Duration::from_secs(1);

/// How the app ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// SIGKILL from the kernel's OOM killer.
    OutOfMemory,
}

impl Exit {
    /// The one status line init prints on the console.
    pub fn line(self) -> String {
        match self {
            Exit::Code(n) => format!("lupine: exit status {n}"),
            Exit::Signal(s) => format!("lupine: killed by signal {s}"),
            Exit::OutOfMemory => "lupine: killed by signal 9 (out of memory)".to_string(),
        }
    }

    /// The shell's convention: the code, or 128 + the signal.
    pub fn status(self) -> u8 {
        match self {
            Exit::Code(n) => n as u8,
            Exit::Signal(s) => (128 + s) as u8,
            Exit::OutOfMemory => 128 + 9,
        }
    }
}

/// Signals caught and not yet taken by [`Events::next_signal`], one bit each.
static CAUGHT: AtomicU64 = AtomicU64::new(0);

extern "C" fn note_signal(sig: libc::c_int) {
    CAUGHT.fetch_or(1 << sig, Ordering::Relaxed);
}

/// Catches the signals init waits for and blocks them, so that they arrive only while init
/// waits in ppoll (no signalfd: small kernels leave it out). Call before forking; the child
/// resets dispositions and mask before exec.
pub fn catch_signals() {
    let mut set = SigSet::empty();
    for sig in FORWARDED.into_iter().chain([Signal::SIGCHLD]) {
        set.add(sig);
        // SAFETY: the handler only sets a bit in an atomic, which is async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = note_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigaction(sig as libc::c_int, &action, std::ptr::null_mut());
        }
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
}

/// Forks; the child runs `child` (which execs and only returns on failure).
pub fn spawn(child: impl FnOnce() -> Fatal) -> Result<Pid, Fatal> {
    // SAFETY: init is single-threaded, so the child may run any code.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { child }) => Ok(child),
        Ok(ForkResult::Child) => {
            let fatal = child();
            crate::error::say(&format!("lupine: fatal: {fatal}"));
            // SAFETY: _exit skips destructors and atexit handlers that belong to init.
            unsafe { libc::_exit(fatal.status.into()) }
        }
        Err(e) => Err(Fatal::new("fork", e.desc())),
    }
}

/// What init waits on: the signals of [`catch_signals`] and the app's output.
pub struct Events {
    relay: Relay,
}

impl Events {
    pub fn new(relay: Relay) -> Events {
        Events { relay }
    }

    pub fn set_app(&mut self, app: Pid) {
        self.relay.set_pid(app.as_raw() as u32);
    }

    /// The next signal, or None after `timeout`; relays the app's output (and sends what
    /// syslog has queued) meanwhile.
    fn next_signal(&mut self, timeout: Duration) -> Option<Signal> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(sig) = take_caught() {
                return Some(sig);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let mut fds: Vec<libc::pollfd> = (self.relay.fds().into_iter())
                .map(|fd| libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            let ts = libc::timespec {
                tv_sec: left.as_secs() as _,
                tv_nsec: left.subsec_nanos() as _,
            };
            // The caught signals are unblocked only here: one that comes ends the wait.
            let unblocked = SigSet::empty();
            // SAFETY: valid pointers to `fds`, `ts` and a signal set for the call.
            unsafe {
                let (ptr, n) = (fds.as_mut_ptr(), fds.len() as libc::nfds_t);
                libc::ppoll(ptr, n, &ts, unblocked.as_ref())
            };
            self.relay.pump();
            syslog::flush();
        }
    }
}

/// The lowest-numbered caught signal, cleared.
fn take_caught() -> Option<Signal> {
    let bits = CAUGHT.load(Ordering::Relaxed);
    if bits == 0 {
        return None;
    }
    let sig = bits.trailing_zeros();
    CAUGHT.fetch_and(!(1 << sig), Ordering::Relaxed);
    Signal::try_from(sig as i32).ok()
}

/// Waits for the app, forwarding signals, relaying its output and reaping every other child;
/// then SIGTERMs what is left, SIGKILLs it after the grace period, reaps it all and relays the
/// output's last lines. Until `ready` returns true (if given), it is called every
/// [`READY_POLL`].
pub fn wait(app: Pid, events: &mut Events, mut ready: Option<&mut dyn FnMut() -> bool>) -> Exit {
    let exit = loop {
        if let (Some(exit), _) = reap(Some(app)) {
            break match exit {
                Exit::Signal(9) if oom_killed(app) => Exit::OutOfMemory,
                exit => exit,
            };
        }
        if ready.as_mut().is_some_and(|ready| ready()) {
            ready = None;
        }
        let timeout = match ready {
            Some(_) => READY_POLL,
            None => Duration::from_secs(1),
        };
        match events.next_signal(timeout) {
            Some(sig) if sig != Signal::SIGCHLD => {
                log::debug!("forwarding {sig} to the app (pid {app})");
                let _ = kill(app, sig);
            }
            _ => {}
        }
    };
    stop_the_rest(events);
    events.relay.drain(DRAIN);
    exit
}

fn stop_the_rest(events: &mut Events) {
    if reap_all_exited() {
        return;
    }
    // kill(-1) from PID 1 reaches every process but init itself.
    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline {
        if reap_all_exited() {
            return;
        }
        events.next_signal(deadline.saturating_duration_since(Instant::now()));
    }
    log::warn!(
        "processes left after {} s: sending SIGKILL",
        GRACE.as_secs()
    );
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    let deadline = Instant::now() + GRACE;
    while !reap_all_exited() && Instant::now() < deadline {
        events.next_signal(Duration::from_millis(50));
    }
}

/// Reaps every exited child without blocking. Returns the app's exit if it was among them,
/// and whether any child is left.
fn reap(app: Option<Pid>) -> (Option<Exit>, bool) {
    let mut found = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if Some(pid) == app => found = Some(Exit::Code(code)),
            Ok(WaitStatus::Signaled(pid, sig, _)) if Some(pid) == app => {
                found = Some(Exit::Signal(sig as i32))
            }
            Ok(WaitStatus::StillAlive) => return (found, true),
            Err(Errno::ECHILD) => return (found, false),
            Err(_) => return (found, true),
            Ok(_) => {}
        }
    }
}

/// Whether the kernel log says the OOM killer killed `pid` ("Out of memory: Killed process
/// PID (comm) ...", or "Memory cgroup out of memory: ..."): its record comes before the
/// SIGKILL is delivered.
fn oom_killed(pid: Pid) -> bool {
    let needle = format!(" of memory: Killed process {pid} (");
    let mut found = false;
    if let Ok(mut kmsg) = crate::relay::open_kmsg() {
        // A window compare, not str::contains: its searcher would be inlined here again.
        let needle = needle.as_bytes();
        crate::relay::read_kmsg(&mut kmsg, &mut |_, text| {
            found |= text.as_bytes().windows(needle.len()).any(|w| w == needle)
        });
    }
    found
}

/// Reaps what has exited; true when no child is left at all.
fn reap_all_exited() -> bool {
    !reap(None).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_and_codes() {
        assert_eq!(Exit::Code(7).line(), "lupine: exit status 7");
        assert_eq!(Exit::Code(7).status(), 7);
        assert_eq!(Exit::Signal(9).line(), "lupine: killed by signal 9");
        assert_eq!(Exit::Signal(15).status(), 143);
        let oom = Exit::OutOfMemory;
        assert_eq!(oom.line(), "lupine: killed by signal 9 (out of memory)");
        assert_eq!(oom.status(), 137);
    }
}

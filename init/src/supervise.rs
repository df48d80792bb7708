//! Supervise mode: init forks the app, forwards stop signals to it, reaps every zombie, and
//! when the app exits stops whatever is left.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::error::Fatal;

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

/// How the app ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The one status line init prints on the console.
    pub fn line(self) -> String {
        match self {
            Exit::Code(n) => format!("lupine: exit status {n}"),
            Exit::Signal(s) => format!("lupine: killed by signal {s}"),
        }
    }

    /// The shell's convention: the code, or 128 + the signal.
    pub fn status(self) -> u8 {
        match self {
            Exit::Code(n) => n as u8,
            Exit::Signal(s) => (128 + s) as u8,
        }
    }
}

/// Blocks the signals init waits for, so none is lost between now and the wait loop. Call
/// before forking; the child's mask is reset before exec.
pub fn block_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
    set
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

/// Waits for the app, forwarding signals and reaping every other child; then SIGTERMs what
/// is left, SIGKILLs it after the grace period, and reaps it all. Until `ready` returns true
/// (if given), it is called every [`READY_POLL`].
pub fn wait(app: Pid, signals: &SigSet, mut ready: Option<&mut dyn FnMut() -> bool>) -> Exit {
    let exit = loop {
        if let (Some(exit), _) = reap(Some(app)) {
            break exit;
        }
        if ready.as_mut().is_some_and(|ready| ready()) {
            ready = None;
        }
        let timeout = match ready {
            Some(_) => READY_POLL,
            None => Duration::from_secs(1),
        };
        match wait_signal(signals, timeout) {
            Some(sig) if sig != Signal::SIGCHLD => {
                log::debug!("forwarding {sig} to the app (pid {app})");
                let _ = kill(app, sig);
            }
            _ => {}
        }
    };
    stop_the_rest(signals);
    exit
}

fn stop_the_rest(signals: &SigSet) {
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
        wait_signal(signals, deadline.saturating_duration_since(Instant::now()));
    }
    log::warn!("processes left after {GRACE:?}: sending SIGKILL");
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    let deadline = Instant::now() + GRACE;
    while !reap_all_exited() && Instant::now() < deadline {
        wait_signal(signals, Duration::from_millis(50));
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

/// Reaps what has exited; true when no child is left at all.
fn reap_all_exited() -> bool {
    !reap(None).1
}

/// sigtimedwait: the next pending signal of `set`, or None after `timeout`.
fn wait_signal(set: &SigSet, timeout: Duration) -> Option<Signal> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as _,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    // SAFETY: both pointers are valid for the call; siginfo may be null.
    let sig = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
    Signal::try_from(sig).ok()
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
    }
}

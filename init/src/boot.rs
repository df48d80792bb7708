//! What PID 1 does, from the kernel's hand-over to the VM's end: mounts, the manifest and its
//! per-instance configuration, network, hostname, the app, and how the VM ends.

use std::fs;
use std::io::{ErrorKind, IsTerminal};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::Source;
use crate::error::{announce, Context, Fatal};
use crate::manifest::{Manifest, MarkerAt, Mode, OnExit};
use crate::supervise::Exit;
use crate::{
    cmdline, config, entropy, hw, ipconfig, logger, manifest, mounts, net, process, ready, relay,
    supervise, syslog, system,
};

const DEFAULT_MANIFEST: &str = "/etc/lupine.json";

/// How long the VM's end waits for a syslog server to take the last lines.
const SYSLOG_FLUSH: Duration = Duration::from_secs(2);

/// How to end the VM; known once the manifest is read.
#[derive(Default)]
pub struct Ending {
    on_exit: OnExit,
    exit_port: Option<u16>,
}

impl Ending {
    pub fn finish(&self, status: u8) -> ! {
        syslog::flush_for(SYSLOG_FLUSH);
        // Until the console has sent everything: reboot(2) drops what is still queued. Once
        // the app's group took the foreground, init may wait on the console only with SIGTTOU
        // blocked (the kernel refuses a background group otherwise).
        if std::io::stdout().is_terminal() {
            block_sigttou();
            if let Err(e) = nix::sys::termios::tcdrain(std::io::stdout()) {
                log::debug!("console drain: {}", e.desc());
            }
        }
        if let Some(port) = self.exit_port {
            if let Err(e) = hw::outb(port, status) {
                log::error!("exit_port: {e}");
            }
        }
        let e = hw::end_vm(self.on_exit);
        eprintln!("lupine: fatal: on_exit: reboot(2): {}", e.desc());
        std::process::exit(status.into())
    }
}

/// Logs how long each phase took, at debug level.
struct Phases(Instant);

impl Phases {
    fn done(&mut self, phase: &str) {
        let now = Instant::now();
        // Whole microseconds: Duration's Debug would link its formatter into PID 1.
        log::debug!("{phase}: {}us", (now - self.0).as_micros() as u64);
        self.0 = now;
    }
}

/// Sets the VM up and runs the app: returns how it ended (supervise mode), or, in exec mode
/// and on any failure, the fatal error. `args` are init's arguments, `ending` learns how the
/// VM ends once the manifest is read.
pub fn run(args: &[String], ending: &mut Ending) -> Result<Exit, Fatal> {
    let mut phases = Phases(Instant::now());
    let cmdline = early_setup();
    phases.done("default mounts");

    let source = cmdline.config.as_deref().map(Source::parse).transpose();
    let source = source.map_err(|e| Fatal::new("config", e))?;
    let (path, mut doc) = load_manifest(cmdline.manifest.as_deref())?;
    if let Some(source) = source.as_ref().filter(|s| !s.needs_network()) {
        apply_config(&mut doc, source)?;
    }
    let merged = source.as_ref().filter(|s| !s.needs_network());
    let mut m = read_manifest(&doc, &path, merged, &cmdline, args, ending)?;
    phases.done("manifest");

    if let Some(seed) = &m.entropy_seed {
        entropy::credit_seed(seed).step("entropy.seed_file")?;
        phases.done("entropy");
    }

    let ip = match (&m.network, &cmdline.ip) {
        (None, Some(ip)) => Some(ipconfig::parse(ip).map_err(|e| Fatal::new("ip=", e))?),
        _ => None,
    };
    // Taken, not borrowed: the manifest may be read again below (never its network).
    let (ip_network, ip_hostname) = ip.map(|c| (c.network, c.hostname)).unzip();
    let ip_hostname = ip_hostname.flatten();
    let network = m.network.take().or(ip_network);
    bring_up_network(network.as_ref())?;
    phases.done("network");

    if let Some(source) = source.as_ref().filter(|s| s.needs_network()) {
        apply_config(&mut doc, source)?;
        m = read_manifest(&doc, &path, Some(source), &cmdline, args, ending)?;
        phases.done("config");
    }
    let hostname = m
        .hostname
        .as_deref()
        .or(ip_hostname.as_deref())
        .unwrap_or("lupine");
    name_host(hostname, network.as_ref())?;
    // From here on, a failure reaches the syslog server too.
    syslog::start(m.syslog.as_ref(), hostname, &app_name(&m.app));

    mounts::manifest_mounts(&m.mounts)?;
    system::apply_sysctls(&m.sysctl)?;
    let launch = process::resolve(
        &m.app,
        std::env::vars_os(),
        &m.rlimits,
        std::path::Path::new("/etc"),
    )?;
    phases.done("mounts, sysctls, app");
    start_app(&m, &launch)
}

/// The app's name in syslog messages: its executable's file name.
fn app_name(app: &manifest::App) -> String {
    let path = app.path.as_deref().unwrap_or("app");
    path.rsplit('/').next().unwrap_or(path).to_string()
}

/// Applies the per-instance fragment from `source` over the manifest's document. One read
/// after the network is up cannot change what was set before it.
fn apply_config(doc: &mut Value, source: &Source) -> Result<(), Fatal> {
    let fragment = source.fetch().map_err(|e| Fatal::new("config", e))?;
    if source.needs_network() {
        for key in ["network", "entropy"] {
            if fragment.get(key).is_some() {
                return Err(Fatal::new(
                    "config",
                    format!(
                        "{}: \"{key}\" cannot come from there: it is set before the network \
                         is up (put it in the image's manifest or on a config drive)",
                        source.name()
                    ),
                ));
            }
        }
    }
    config::merge(doc, fragment);
    // Names only: values may be secrets.
    log::info!("config: applied {}", source.name());
    Ok(())
}

/// What init needs before it can read the manifest: /proc, /dev and a console, and the
/// kernel command line (whose log level applies at once).
fn early_setup() -> cmdline::Cmdline {
    // Until /dev is mounted, warnings go to the console.
    logger::init(log::LevelFilter::Info);
    mounts::defaults();
    console_on_std_fds();
    // Ctrl-Alt-Del becomes SIGINT to init, which stops the app gracefully.
    let _ = nix::sys::reboot::set_cad_enabled(false);
    let cmdline = cmdline::parse(&fs::read_to_string("/proc/cmdline").unwrap_or_default());
    if let Some(level) = cmdline_level(&cmdline) {
        log::set_max_level(level);
    }
    cmdline
}

fn cmdline_level(cmdline: &cmdline::Cmdline) -> Option<log::LevelFilter> {
    cmdline.log.as_deref().and_then(manifest::parse_level)
}

/// The manifest, with the app from init's arguments when there are any; sets how the VM ends
/// and the log level (the command line's over the manifest's). `path` names the document,
/// `merged` the fragment merged into it, if any.
fn read_manifest(
    doc: &Value,
    path: &str,
    merged: Option<&Source>,
    cmdline: &cmdline::Cmdline,
    args: &[String],
    ending: &mut Ending,
) -> Result<Manifest, Fatal> {
    let mut m = manifest::validate(doc).map_err(|p| match merged {
        Some(s) => Fatal::new("config", format!("{path} with {}: {p}", s.name())),
        None => Fatal::new("manifest", format!("{path}: {p}")),
    })?;
    ending.on_exit = m.on_exit;
    ending.exit_port = m.exit_port;
    let level = cmdline_level(cmdline)
        .or(m.log)
        .unwrap_or(log::LevelFilter::Info);
    log::set_max_level(level);
    if level >= log::LevelFilter::Debug {
        // Unthrottle /dev/kmsg: debug output is more than its default rate limit.
        let _ = fs::write("/proc/sys/kernel/printk_devkmsg", "on");
    }
    // QEMU's microvm machine appends virtio_mmio.device=... to the command line, after any
    // `--`: those words reach init as arguments, and the kernel never sees those devices.
    let (args, misplaced): (Vec<&String>, Vec<&String>) = args
        .iter()
        .partition(|a| !a.starts_with("virtio_mmio.device="));
    if !misplaced.is_empty() {
        log::warn!(
            "dropped {} virtio_mmio.device= argument(s) that came after --: those devices are \
             not registered; pass the app in the manifest instead",
            misplaced.len()
        );
    }
    if let Some((path, rest)) = args.split_first() {
        m.app.path = Some(path.to_string());
        m.app.args = rest.iter().map(|a| a.to_string()).collect();
    }
    Ok(m)
}

/// Loopback, and the manifest's network (or the command line's `ip=` without one).
fn bring_up_network(network: Option<&manifest::Network>) -> Result<(), Fatal> {
    if let Err(e) = net::loopback_up() {
        log::warn!("loopback: {e}");
    }
    if let Some(net) = network {
        net::configure(net).step("network")?;
    }
    Ok(())
}

/// The hostname, /etc/resolv.conf and /etc/hosts.
fn name_host(hostname: &str, network: Option<&manifest::Network>) -> Result<(), Fatal> {
    system::set_hostname(hostname)?;
    if let Some(text) = network.and_then(net::resolv_conf) {
        system::write_atomic("/etc/resolv.conf", text).step("network.dns: /etc/resolv.conf")?;
    }
    if let Err(e) = system::write_atomic("/etc/hosts", system::hosts_file(hostname, network)) {
        log::warn!("/etc/hosts: {e}");
    }
    Ok(())
}

/// Runs the app: in exec mode it replaces init (which returns only on failure); in supervise
/// mode init waits for it.
fn start_app(m: &Manifest, launch: &process::Launch) -> Result<Exit, Fatal> {
    let marker = || {
        hw::cost_marker();
        if m.boot_marker_at == MarkerAt::Exec {
            write_boot_marker(m);
        }
    };
    match m.mode {
        Mode::Exec => {
            take_console();
            process::prepare(launch, marker)?;
            Err(process::exec(launch))
        }
        Mode::Supervise => {
            // Init, not the app, leads the console's session: when a session leader exits,
            // the kernel hangs its terminal up, which drops output not yet sent.
            take_console();
            supervise::catch_signals();
            let kmsg = m.syslog.as_ref().is_some_and(|s| s.kmsg);
            let (relay, writers) = relay::pipes(kmsg)?;
            let mut events = supervise::Events::new(relay);
            let app = supervise::spawn(move || {
                foreground();
                if let Err(fatal) = writers.install() {
                    return fatal;
                }
                match process::prepare(launch, marker) {
                    Ok(()) => process::exec(launch),
                    Err(fatal) => fatal,
                }
            })?;
            events.set_app(app);
            log::info!("started {} as pid {app}", launch.path.to_string_lossy());
            let mut watch = m.ready.as_ref().map(|r| move || report_ready(m, r));
            let watch = watch.as_mut().map(|w| w as &mut dyn FnMut() -> bool);
            Ok(supervise::wait(app, &mut events, watch))
        }
    }
}

fn write_boot_marker(m: &Manifest) {
    if let Some(marker) = m.boot_marker {
        if let Err(e) = hw::boot_marker(marker) {
            log::warn!("boot_marker: {e}");
        }
    }
}

/// Whether the app listens on `ready` yet; the first time it does, says so on the console
/// (and writes the boot marker if the manifest wants it then).
fn report_ready(m: &Manifest, ready: &manifest::Ready) -> bool {
    if !ready::listening(ready) {
        return false;
    }
    announce(&format!("lupine: ready in {} ms", ready::since_boot_ms()));
    if m.boot_marker_at == MarkerAt::Ready {
        write_boot_marker(m);
    }
    true
}

/// The manifest's path and JSON document; `{"version": 1}` when the default path has none.
fn load_manifest(path: Option<&str>) -> Result<(String, Value), Fatal> {
    let (path, explicit) = match path {
        Some(p) => (p, true),
        None => (DEFAULT_MANIFEST, false),
    };
    let doc = match fs::read_to_string(path) {
        Ok(text) => manifest::parse_json(&text)
            .map_err(|p| Fatal::new("manifest", format!("{path}: {p}")))?,
        Err(e) if e.kind() == ErrorKind::NotFound && !explicit => {
            log::info!("no {path}: running the kernel's arguments with defaults");
            serde_json::json!({"version": 1})
        }
        Err(e) => return Err(Fatal::new("manifest", format!("{path}: {e}"))),
    };
    Ok((path.to_string(), doc))
}

/// When the kernel could not give init a console (Rust's runtime then put /dev/null on fds
/// 0-2), open /dev/console now that devtmpfs is mounted.
fn console_on_std_fds() {
    let is_null = |fd: i32| {
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fstat only writes `st`; a closed descriptor makes it fail.
        if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
            return true;
        }
        // SAFETY: fstat succeeded, so `st` is initialised.
        let st = unsafe { st.assume_init() };
        st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == libc::makedev(1, 3)
    };
    if !(0..3).all(is_null) {
        return;
    }
    if let Ok(console) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
    {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors, which nothing else owns.
            unsafe { libc::dup2(console.as_raw_fd(), fd) };
        }
    }
}

/// Makes the console the controlling terminal of a new session led by this process, so
/// shells and job control work ("can't access tty" otherwise).
fn take_console() {
    let _ = nix::unistd::setsid();
    if std::io::stdin().is_terminal() {
        // SAFETY: TIOCSCTTY takes an int argument and only affects this process's session.
        unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
    }
}

/// Puts the supervised app in a process group of its own in the console's foreground, so
/// ^C and job control reach the app and not init. A background group may take the
/// foreground only with SIGTTOU blocked; process::prepare resets the mask before exec.
fn foreground() {
    use nix::unistd::{getpgrp, setpgid, tcsetpgrp, Pid};
    let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
    block_sigttou();
    if std::io::stdin().is_terminal() {
        let _ = tcsetpgrp(std::io::stdin(), getpgrp());
    }
}

fn block_sigttou() {
    use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
    let _ = sigprocmask(
        SigmaskHow::SIG_BLOCK,
        Some(&SigSet::from(Signal::SIGTTOU)),
        None,
    );
}

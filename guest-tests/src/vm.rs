//! A QEMU `microvm` runner: console capture, timeout, port forwarding, debug I/O ports.

use std::fmt;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::interleave::untangle;
use crate::{kernel, Error, Result, GENERAL, MICROVM};

/// The host's busybox, whose `nc` relays [`Vm::guestfwd`] connections (the initramfs's too).
const BUSYBOX: &str = "/bin/busybox";

/// I/O port of the `isa-debug-exit` device ([`Vm::exit_device`]).
pub const EXIT_PORT: u16 = 0xf4;
/// I/O port recorded by `-debugcon` ([`Vm::debugcon`]).
pub const DEBUGCON_PORT: u16 = 0x402;

/// `panic=-1` and `reboot=t` (with `-no-reboot`) make every guest end, even a crashed one, end
/// QEMU: microvm has no keyboard controller to reset through.
const BASE_CMDLINE: &str = "console=ttyS0 quiet panic=-1 reboot=t";

/// One VM to boot; see [`Vm::spawn`] and [`Vm::run`].
pub struct Vm {
    kernel: PathBuf,
    machine: String,
    cmdline: String,
    initramfs: Option<PathBuf>,
    disks: Vec<PathBuf>,
    net: bool,
    user_net: Option<String>,
    forwards: Vec<u16>,
    guestfwds: Vec<(String, u16, u16)>,
    debugcon: Option<PathBuf>,
    exit_device: bool,
    smp: Option<u32>,
    cpu: Option<String>,
    mem_mib: u64,
    guest_errors: bool,
    timeout: Duration,
}

impl Vm {
    /// A VM booting `kernel` on QEMU's `-M microvm,acpi=off` (see [`Vm::profile`]).
    pub fn new(kernel: impl Into<PathBuf>) -> Vm {
        Vm {
            kernel: kernel.into(),
            machine: "microvm,acpi=off".into(),
            cmdline: BASE_CMDLINE.into(),
            initramfs: None,
            disks: Vec::new(),
            net: false,
            user_net: None,
            forwards: Vec::new(),
            guestfwds: Vec::new(),
            debugcon: None,
            exit_device: false,
            smp: None,
            cpu: None,
            mem_mib: 256,
            guest_errors: false,
            timeout: Duration::from_secs(60),
        }
    }

    /// A VM booting the kernel of `profile` (see [`kernel`]), set up as that kernel needs.
    ///
    /// Lupine kernels have no ACPI: QEMU's `-M microvm,acpi=off` appends
    /// `virtio_mmio.device=...` to the command line for them. Firecracker's configuration
    /// (`microvm`) lacks `VIRTIO_MMIO_CMDLINE_DEVICES` and finds the virtio-mmio devices in the
    /// ACPI tables instead, as under Firecracker itself: it boots with ACPI on, and `pci=off`
    /// spares it probing for a PCI bus the machine does not have. On a loaded host its TSC
    /// calibration against the PIT fails under TCG and the boot hangs with no clocksource;
    /// `tsc_early_khz` skips that calibration.
    pub fn profile(profile: &str) -> Result<Vm> {
        let vm = Vm::new(kernel(profile)?);
        Ok(if profile == MICROVM {
            Vm {
                machine: "microvm".into(),
                ..vm
            }
            .append("pci=off tsc_early_khz=2000000")
        } else {
            vm
        })
    }

    /// The `lupine-general` kernel booting `/lupine-init` from `initramfs`.
    pub fn lupine(initramfs: &Path) -> Result<Vm> {
        Vm::lupine_on(GENERAL, initramfs)
    }

    /// The kernel of `profile` booting `/lupine-init` from `initramfs`.
    pub fn lupine_on(profile: &str, initramfs: &Path) -> Result<Vm> {
        Ok(Vm::profile(profile)?
            .initramfs(initramfs)
            .append("rdinit=/lupine-init"))
    }

    /// The kernel of `profile` booting `/lupine-init` from the ext4 root filesystem `disk`
    /// (/dev/vda, mounted read-write), as `lupine-image` writes it.
    pub fn lupine_disk(profile: &str, disk: &Path) -> Result<Vm> {
        Ok(Vm::profile(profile)?
            .disk(disk)
            .append("root=/dev/vda rootfstype=ext4 rw init=/lupine-init"))
    }

    /// Appends words to the kernel command line. QEMU appends `virtio_mmio.device=...` after
    /// them, so words after a `--` here would be followed by those.
    pub fn append(mut self, words: &str) -> Vm {
        self.cmdline.push(' ');
        self.cmdline.push_str(words);
        self
    }

    pub fn initramfs(mut self, path: &Path) -> Vm {
        self.initramfs = Some(path.into());
        self
    }

    /// Adds a raw virtio-blk disk: the first one is /dev/vda, the second /dev/vdb, and so on.
    /// microvm places the devices in virtio-mmio slots in command-line order and the kernel
    /// probes the slots in that order, so the names follow the order of the calls.
    pub fn disk(mut self, path: &Path) -> Vm {
        self.disks.push(path.into());
        self
    }

    /// A virtio-net NIC on QEMU user networking (guest 10.0.2.15/24, gateway 10.0.2.2,
    /// DNS 10.0.2.3; the gateway reaches the host's loopback).
    pub fn net(mut self) -> Vm {
        self.net = true;
        self
    }

    /// The user network's address range (`net=` of QEMU's user netdev), e.g.
    /// `169.254.169.0/24`, instead of 10.0.2.0/24. Implies [`Vm::net`]. QEMU derives the rest
    /// from it: for a /24, the gateway (which reaches the host's loopback) is .2, the DNS
    /// server .3 and DHCP leases start at .15; the guest's static address (lupine-init's
    /// manifest) must be in the range too. Needed for a [`Vm::guestfwd`] address outside
    /// 10.0.2.0/24, such as MMDS's 169.254.169.254.
    pub fn user_net(mut self, cidr: &str) -> Vm {
        self.net = true;
        self.user_net = Some(cidr.into());
        self
    }

    /// Forwards the guest's TCP connections to `guest_ip:guest_port` to the host's
    /// `127.0.0.1:host_port`. Implies [`Vm::net`].
    ///
    /// `guest_ip` must lie in the user network (see [`Vm::user_net`]) and be neither its
    /// gateway (.2) nor its DNS server (.3): else QEMU 7.2 (libslirp) refuses to start
    /// ("Conflicting/invalid host:port in guest forwarding rule"). So 169.254.169.254 needs
    /// `user_net("169.254.169.0/24")` (checked by running QEMU).
    ///
    /// Each guest connection runs `busybox nc 127.0.0.1 HOST_PORT` on the host
    /// (`guestfwd=tcp:IP:PORT-cmd:...`), so the host server sees the guest's connections one
    /// for one, and each side sees the other close, as with a real server. With nothing
    /// listening on `host_port`, the guest sees its connection accepted, then closed without
    /// data.
    ///
    /// `guestfwd=tcp:IP:PORT-tcp:127.0.0.1:HOST_PORT` would not do: QEMU opens that one
    /// connection when it starts (and fails to start if nothing listens), the bytes of every
    /// guest connection go through it one after the other, a close on either side is not
    /// passed on, and once the host server closes it (an HTTP `Connection: close`) later guest
    /// connections reach nothing.
    pub fn guestfwd(mut self, guest_ip: &str, guest_port: u16, host_port: u16) -> Vm {
        self.net = true;
        self.guestfwds
            .push((guest_ip.into(), guest_port, host_port));
        self
    }

    /// Forwards a free port on the host's 127.0.0.1 to `guest_port` (TCP); see
    /// [`Running::host_port`]. Implies [`Vm::net`].
    pub fn forward(mut self, guest_port: u16) -> Vm {
        self.net = true;
        self.forwards.push(guest_port);
        self
    }

    /// Records bytes the guest writes to I/O port [`DEBUGCON_PORT`] into `path`.
    pub fn debugcon(mut self, path: &Path) -> Vm {
        self.debugcon = Some(path.into());
        self
    }

    /// Adds `isa-debug-exit` at [`EXIT_PORT`]: a byte N written there ends QEMU with status
    /// `(N << 1) | 1`.
    pub fn exit_device(mut self) -> Vm {
        self.exit_device = true;
        self
    }

    /// `-smp n`: `n` vCPUs (default: QEMU's, one).
    pub fn smp(mut self, n: u32) -> Vm {
        self.smp = Some(n);
        self
    }

    /// `-m mib`: the guest's memory (default 256 MiB).
    pub fn mem(mut self, mib: u64) -> Vm {
        self.mem_mib = mib;
        self
    }

    /// `-d guest_errors`: QEMU logs the guest's accesses to addresses where nothing is mapped
    /// to its stderr (`Invalid write at addr 0x..., size N, ...`).
    pub fn guest_errors(mut self) -> Vm {
        self.guest_errors = true;
        self
    }

    /// `-cpu model`, e.g. `qemu64` or `max` (default: QEMU's, `qemu64` under TCG).
    pub fn cpu(mut self, model: &str) -> Vm {
        self.cpu = Some(model.into());
        self
    }

    /// Bounds the whole run (default 60 s): QEMU is killed then.
    pub fn timeout(mut self, timeout: Duration) -> Vm {
        self.timeout = timeout;
        self
    }

    /// Boots and waits for QEMU to end by itself.
    pub fn run(self) -> Result<Outcome> {
        self.spawn()?.wait()
    }

    /// Starts QEMU. When ports are forwarded, returns once QEMU listens on all of them;
    /// a port taken by someone else between choosing and binding it is chosen again.
    pub fn spawn(self) -> Result<Running> {
        let deadline = Instant::now() + self.timeout;
        for _ in 0..5 {
            let ports = self
                .forwards
                .iter()
                .map(|&guest| Ok((guest, free_port()?)))
                .collect::<Result<Vec<_>>>()?;
            let mut child = self
                .command(&ports)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| Error(format!("cannot start qemu-system-x86_64: {e}")))?;
            let mut running = Running {
                input: child.stdin.take(),
                console: Capture::start(child.stdout.take()),
                stderr: Capture::start(child.stderr.take()),
                child,
                ports,
                deadline,
                timeout: self.timeout,
            };
            if running.ports_bound()? {
                return Ok(running);
            }
        }
        Err(Error("no free loopback port for QEMU after 5 tries".into()))
    }

    fn command(&self, ports: &[(u16, u16)]) -> Command {
        let mut cmd = Command::new("qemu-system-x86_64");
        let mem = self.mem_mib.to_string();
        cmd.args(["-M", &self.machine, "-accel", "tcg", "-m", &mem])
            // A mux chardev, so that Ctrl-A b on its input is a serial break (see
            // Running::sysrq); signal=off keeps a ^C typed to the guest from ending QEMU.
            .args([
                "-no-reboot",
                "-nodefaults",
                "-nographic",
                "-chardev",
                "stdio,id=con,mux=on,signal=off",
                "-serial",
                "chardev:con",
            ])
            .arg("-kernel")
            .arg(&self.kernel)
            .args(["-append", &self.cmdline]);
        if let Some(initrd) = &self.initramfs {
            cmd.arg("-initrd").arg(initrd);
        }
        if self.guest_errors {
            cmd.args(["-d", "guest_errors"]);
        }
        for (i, disk) in self.disks.iter().enumerate() {
            cmd.arg("-drive")
                .arg(format!(
                    "file={},if=none,id=d{i},format=raw",
                    disk.display()
                ))
                .args(["-device", &format!("virtio-blk-device,drive=d{i}")]);
        }
        if self.net {
            let mut netdev = "user,id=n0".to_string();
            if let Some(cidr) = &self.user_net {
                netdev += &format!(",net={cidr}");
            }
            for (ip, guest, host) in &self.guestfwds {
                // One nc per guest connection; see Vm::guestfwd for why not `-tcp:`. Its stderr
                // would go to the guest too.
                netdev += &format!(
                    ",guestfwd=tcp:{ip}:{guest}-cmd:{BUSYBOX} sh -c \
                     'exec {BUSYBOX} nc 127.0.0.1 {host} 2>/dev/null'"
                );
            }
            for (guest, host) in ports {
                netdev += &format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}");
            }
            cmd.args(["-netdev", &netdev])
                .args(["-device", "virtio-net-device,netdev=n0"]);
        }
        if let Some(path) = &self.debugcon {
            cmd.arg("-debugcon")
                .arg(format!("file:{}", path.display()))
                .args([
                    "-global",
                    &format!("isa-debugcon.iobase={DEBUGCON_PORT:#x}"),
                ]);
        }
        if self.exit_device {
            cmd.args([
                "-device",
                &format!("isa-debug-exit,iobase={EXIT_PORT:#x},iosize=1"),
            ]);
        }
        if let Some(n) = self.smp {
            cmd.args(["-smp", &n.to_string()]);
        }
        if let Some(model) = &self.cpu {
            cmd.args(["-cpu", model]);
        }
        cmd
    }
}

/// A port that was free on 127.0.0.1 a moment ago.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A QEMU process; killed if dropped before [`Running::wait`] returns.
pub struct Running {
    child: Child,
    input: Option<ChildStdin>,
    console: Capture,
    stderr: Capture,
    ports: Vec<(u16, u16)>,
    deadline: Instant,
    timeout: Duration,
}

impl Running {
    /// `GET path` over HTTP/1.0 through the port forwarded to `guest_port`, retried every
    /// 200 ms for up to 30 s: until the guest's server listens, QEMU's side accepts and the
    /// guest resets the connection, so nothing is read. Returns the whole response.
    pub fn http_get(&self, guest_port: u16, path: &str) -> Result<String> {
        let port = self.host_port(guest_port);
        let get = || -> std::io::Result<String> {
            let mut s = TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())?;
            let mut response = String::new();
            s.read_to_string(&mut response)?;
            Ok(response)
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match get() {
                Ok(r) if !r.is_empty() => return Ok(r),
                other if Instant::now() >= deadline => {
                    return Err(Error(format!(
                        "no response from guest port {guest_port} ({other:?}); console:\n{}",
                        self.console()
                    )))
                }
                _ => thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// The host port (on 127.0.0.1) forwarded to `guest_port`.
    pub fn host_port(&self, guest_port: u16) -> u16 {
        self.ports
            .iter()
            .find(|(guest, _)| *guest == guest_port)
            .map(|(_, host)| *host)
            .unwrap_or_else(|| panic!("guest port {guest_port} is not forwarded"))
    }

    /// Types `bytes` on the guest's serial console.
    pub fn type_console(&mut self, bytes: &[u8]) -> Result<()> {
        let input = self
            .input
            .as_mut()
            .ok_or_else(|| Error("no console input".into()))?;
        input.write_all(bytes)?;
        Ok(input.flush()?)
    }

    /// Magic SysRq `key` through the console: a serial break (QEMU's mux escape Ctrl-A b),
    /// then the key. `e` sends SIGTERM to every process but init.
    pub fn sysrq(&mut self, key: char) -> Result<()> {
        self.type_console(b"\x01b")?;
        // The key must arrive after the break has been seen, not in the same FIFO read.
        thread::sleep(Duration::from_millis(200));
        self.type_console(key.to_string().as_bytes())
    }

    /// The console so far.
    pub fn console(&self) -> String {
        self.console.text()
    }

    /// Waits until a console line starts with `prefix`; an error if QEMU ends or the VM's
    /// timeout passes first.
    pub fn wait_for_line(&mut self, prefix: &str) -> Result<()> {
        let seen = |text: &str| text.lines().any(|l| l.starts_with(prefix));
        loop {
            if seen(&self.console.text()) {
                return Ok(());
            }
            let exited = self.child.try_wait()?;
            if exited.is_some() || Instant::now() > self.deadline {
                // After exit, drain the pipe: the line may be in the last output.
                let console = match exited {
                    Some(_) => self.console.finish(),
                    None => self.console.text(),
                };
                if seen(&console) {
                    return Ok(());
                }
                let state = exited.map_or(format!("still running after {:?}", self.timeout), |s| {
                    s.to_string()
                });
                return Err(Error(format!(
                    "no console line starting with {prefix:?}; QEMU {state}\n--- console ---\n{console}"
                )));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for QEMU to exit by itself; past the timeout it is killed and the error holds
    /// the console so far.
    pub fn wait(mut self) -> Result<Outcome> {
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() > self.deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(Error(format!(
                    "QEMU still running after {:?}: killed\n--- console ---\n{}--- stderr ---\n{}",
                    self.timeout,
                    self.console.finish(),
                    self.stderr.finish()
                )));
            }
            thread::sleep(Duration::from_millis(10));
        };
        Ok(Outcome {
            console: self.console.finish(),
            stderr: self.stderr.finish(),
            status,
        })
    }

    /// Waits until QEMU listens on the forwarded ports (it binds them before the guest
    /// runs, so this is quick); false if it quit because one was taken meanwhile.
    fn ports_bound(&mut self) -> Result<bool> {
        while !self.listening()? {
            if self.child.try_wait()?.is_some() {
                return Ok(!self.stderr.finish().contains("host forwarding"));
            }
            if Instant::now() > self.deadline {
                return Ok(true); // wait() reports the timeout
            }
            thread::sleep(Duration::from_millis(5));
        }
        Ok(true)
    }

    /// Whether QEMU itself listens on every forwarded port. Checked through the socket inodes
    /// in /proc so that another process holding the port does not count.
    fn listening(&self) -> Result<bool> {
        if self.ports.is_empty() {
            return Ok(true);
        }
        let fd_dir = format!("/proc/{}/fd", self.child.id());
        let owned: Vec<String> = match std::fs::read_dir(fd_dir) {
            Ok(entries) => entries
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|l| {
                    Some(
                        l.to_str()?
                            .strip_prefix("socket:[")?
                            .strip_suffix(']')?
                            .to_string(),
                    )
                })
                .collect(),
            Err(_) => return Ok(false), // exited
        };
        let table = std::fs::read_to_string("/proc/net/tcp")?;
        Ok(self.ports.iter().all(|(_, host)| {
            let local = format!("0100007F:{host:04X}");
            table.lines().skip(1).any(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
                f.len() > 9 && f[1] == local && f[3] == "0A" && owned.iter().any(|i| i == f[9])
            })
        }))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A no-op once wait() has reaped QEMU.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The end of a VM run.
pub struct Outcome {
    /// Serial console output, `\r` removed, kernel messages that cut into a line moved after
    /// it (see `interleave.rs`).
    pub console: String,
    /// QEMU's own stderr.
    pub stderr: String,
    pub status: ExitStatus,
}

impl Outcome {
    /// QEMU's exit code (None if killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Console lines without trailing whitespace.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.console.lines().map(str::trim_end)
    }

    pub fn has_line(&self, line: &str) -> bool {
        self.lines().any(|l| l == line)
    }

    /// The console lines starting with `prefix`.
    pub fn lines_starting<'a>(&'a self, prefix: &'a str) -> Vec<&'a str> {
        self.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    /// Asserts a clean end: no fatal line, exactly one `lupine: exit status N` with the given
    /// status, and QEMU ended by itself with status 0 (the guest rebooted).
    #[track_caller]
    pub fn assert_exit_status(&self, status: i32) {
        assert!(self.lines_starting("lupine: fatal").is_empty(), "{self}");
        assert_eq!(
            self.lines_starting("lupine: exit status"),
            [format!("lupine: exit status {status}")],
            "{self}"
        );
        assert_eq!(self.code(), Some(0), "{self}");
    }
}

/// For assertion messages: the status, console and stderr.
impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "QEMU {}\n--- console ---\n{}--- stderr ---\n{}",
            self.status, self.console, self.stderr
        )
    }
}

/// A pipe drained into a shared buffer by a thread, readable while QEMU runs.
struct Capture {
    buf: Arc<Mutex<Vec<u8>>>,
    thread: Option<JoinHandle<()>>,
}

impl Capture {
    fn start(pipe: Option<impl Read + Send + 'static>) -> Capture {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let thread = pipe.map(|p| {
            let (mut pipe, buf) = (p, Arc::clone(&buf));
            thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                    buf.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            })
        });
        Capture { buf, thread }
    }

    fn text(&self) -> String {
        untangle(&String::from_utf8_lossy(&self.buf.lock().unwrap()).replace('\r', ""))
    }

    /// All of it, once the process has exited (the pipe then reaches EOF).
    fn finish(&mut self) -> String {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.text()
    }
}

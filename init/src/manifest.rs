//! The JSON manifest (schema version 1): parsing and validation.
//!
//! The manifest is walked by hand rather than through serde derive so that one pass can report
//! every problem with its JSON path (`network.interfaces[0].mtu: ...`) instead of stopping at
//! the first one.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde_json::{Map, Value};

/// A whole manifest, validated. Every field has its default filled in.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Manifest {
    pub app: App,
    pub hostname: Option<String>,
    pub mounts: Vec<Mount>,
    pub network: Option<Network>,
    /// Dotted sysctl names with their values, in manifest order.
    pub sysctl: Vec<(String, String)>,
    pub rlimits: Vec<Rlimit>,
    pub mode: Mode,
    pub on_exit: OnExit,
    pub exit_port: Option<u16>,
    pub boot_marker: Option<BootMarker>,
    /// When the boot marker is written: just before the app's exec, or once it is ready.
    pub boot_marker_at: MarkerAt,
    /// The app's listening socket, whose appearance init reports (supervise mode).
    pub ready: Option<Ready>,
    pub entropy_seed: Option<String>,
    pub log: Option<log::LevelFilter>,
    /// Where the app's output and init's messages also go (supervise mode).
    pub syslog: Option<Syslog>,
}

/// `log.syslog`: a syslog server (an IP address: there is no resolver before the app runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Syslog {
    pub transport: Transport,
    pub address: std::net::SocketAddr,
    /// RFC 5424 APP-NAME of the app's lines; by default its executable's file name.
    pub app_name: Option<String>,
    /// Also forward the kernel's messages.
    pub kmsg: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    /// With RFC 6587 octet counting.
    Tcp,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct App {
    pub path: Option<String>,
    pub args: Vec<String>,
    pub argv0: Option<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<String>,
    pub user: Option<User>,
    pub groups: Option<Vec<u32>>,
    pub umask: Option<u32>,
}

/// `"uid[:gid]"` or `"name[:group]"`; names are resolved from the image's /etc/passwd and
/// /etc/group at boot.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub user: IdOrName,
    pub group: Option<IdOrName>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum IdOrName {
    Id(u32),
    Name(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub source: String,
    pub target: String,
    pub fstype: String,
    pub options: String,
    pub mkdir: bool,
    pub wait_s: f64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Network {
    pub interfaces: Vec<Interface>,
    pub routes: Vec<Route>,
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub wait_s: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Interface {
    pub name: String,
    pub addresses: Vec<Prefix>,
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// `None` is the default route of the gateway's family.
    pub destination: Option<Prefix>,
    pub gateway: Option<IpAddr>,
    pub dev: Option<String>,
}

impl Route {
    /// True for IPv6 routes: from the destination, else from the gateway.
    pub fn is_ipv6(&self) -> bool {
        match (self.destination, self.gateway) {
            (Some(p), _) => p.addr.is_ipv6(),
            (None, Some(gw)) => gw.is_ipv6(),
            (None, None) => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: Resource,
    pub soft: u64,
    pub hard: u64,
}

/// Resource names as in prlimit(1) and limits.conf(5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    As,
    Core,
    Cpu,
    Data,
    Fsize,
    Locks,
    Memlock,
    Msgqueue,
    Nice,
    Nofile,
    Nproc,
    Rss,
    Rtprio,
    Rttime,
    Sigpending,
    Stack,
}

const RESOURCES: [(&str, Resource); 16] = [
    ("as", Resource::As),
    ("core", Resource::Core),
    ("cpu", Resource::Cpu),
    ("data", Resource::Data),
    ("fsize", Resource::Fsize),
    ("locks", Resource::Locks),
    ("memlock", Resource::Memlock),
    ("msgqueue", Resource::Msgqueue),
    ("nice", Resource::Nice),
    ("nofile", Resource::Nofile),
    ("nproc", Resource::Nproc),
    ("rss", Resource::Rss),
    ("rtprio", Resource::Rtprio),
    ("rttime", Resource::Rttime),
    ("sigpending", Resource::Sigpending),
    ("stack", Resource::Stack),
];

/// `soft`/`hard` value meaning no limit.
pub const UNLIMITED: u64 = u64::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The app replaces init as PID 1.
    Exec,
    /// init forks the app, forwards signals, reaps zombies, reports the exit status.
    #[default]
    Supervise,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnExit {
    #[default]
    Reboot,
    Poweroff,
    Halt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootMarker {
    IoPort { port: u16, value: u8 },
    Mmio { address: u64, value: u8 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MarkerAt {
    #[default]
    Exec,
    Ready,
}

/// A socket the app listens on once it can serve: TCP on a port (any address, IPv4 or IPv6),
/// or a Unix stream socket at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    Tcp(u16),
    Unix(String),
}

/// One problem in a manifest: the JSON path at fault and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a manifest, in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Parses and validates a manifest.
pub fn parse(text: &str) -> Result<Manifest, Problems> {
    validate(&parse_json(text)?)
}

/// The JSON document of a manifest, not yet validated.
pub fn parse_json(text: &str) -> Result<Value, Problems> {
    serde_json::from_str(text).map_err(|e| {
        Problems(vec![Problem {
            path: String::new(),
            message: format!("not valid JSON: {e}"),
        }])
    })
}

/// Validates a manifest's JSON document.
pub fn validate(value: &Value) -> Result<Manifest, Problems> {
    let mut v = Validator::default();
    let manifest = v.manifest(value);
    if v.problems.is_empty() {
        Ok(manifest)
    } else {
        Err(Problems(v.problems))
    }
}

#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
}

/// Fields of one JSON object, checked for unknown keys as they are taken.
struct Fields<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn get(&self, key: &str) -> Option<(String, &'a Value)> {
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some((join(&self.path, key), v)),
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A value as a problem names it. By hand rather than serde_json's serializer, which this
/// alone would link into PID 1: a container's members are left out.
fn show(v: &Value) -> String {
    let s = match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(a) if a.is_empty() => "[]".to_string(),
        Value::Array(_) => "[...]".to_string(),
        Value::Object(o) if o.is_empty() => "{}".to_string(),
        Value::Object(_) => "{...}".to_string(),
    };
    if s.chars().count() > 60 {
        let head: String = s.chars().take(57).collect();
        format!("{head}...")
    } else {
        s
    }
}

impl Validator {
    fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// "`v` is not `what`", with the value shown (one formatting site for all of them).
    fn not(&mut self, path: &str, v: &Value, what: &str) {
        self.problem(path, format!("{} is not {what}", show(v)));
    }

    /// Opens an object, reporting any key not in `known`.
    fn object<'a>(&mut self, path: &str, v: &'a Value, known: &[&str]) -> Option<Fields<'a>> {
        let Value::Object(map) = v else {
            self.not(path, v, "an object");
            return None;
        };
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                self.problem(
                    &join(path, key),
                    format!("unknown field (expected one of: {})", known.join(", ")),
                );
            }
        }
        Some(Fields {
            path: path.to_string(),
            map,
        })
    }

    fn string(&mut self, path: &str, v: &Value) -> Option<String> {
        match v {
            Value::String(s) if s.contains('\0') => {
                self.problem(path, "contains a NUL byte");
                None
            }
            Value::String(s) => Some(s.clone()),
            _ => {
                self.not(path, v, "a string");
                None
            }
        }
    }

    fn bool(&mut self, path: &str, v: &Value) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            _ => {
                self.not(path, v, "true or false");
                None
            }
        }
    }

    fn uint(&mut self, path: &str, v: &Value, max: u64) -> Option<u64> {
        match v.as_u64() {
            Some(n) if n <= max => Some(n),
            _ => {
                self.problem(
                    path,
                    format!("{} is not an integer from 0 to {max}", show(v)),
                );
                None
            }
        }
    }

    fn seconds(&mut self, path: &str, v: &Value) -> f64 {
        match v.as_f64() {
            Some(s) if (0.0..=3600.0).contains(&s) => s,
            _ => {
                self.not(path, v, "a number of seconds (0 to 3600)");
                0.0
            }
        }
    }

    fn array<'a>(&mut self, path: &str, v: &'a Value) -> &'a [Value] {
        match v {
            Value::Array(items) => items,
            _ => {
                self.not(path, v, "an array");
                &[]
            }
        }
    }

    fn strings(&mut self, path: &str, v: &Value) -> Vec<String> {
        let items = self.array(path, v);
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.string(&format!("{path}[{i}]"), item))
            .collect()
    }

    fn absolute_path(&mut self, path: &str, v: &Value) -> Option<String> {
        let s = self.string(path, v)?;
        if !s.starts_with('/') {
            self.not(path, v, "an absolute path");
            return None;
        }
        Some(s)
    }

    fn manifest(&mut self, v: &Value) -> Manifest {
        const KNOWN: &[&str] = &[
            "version",
            "app",
            "hostname",
            "mounts",
            "network",
            "sysctl",
            "rlimits",
            "mode",
            "on_exit",
            "exit_port",
            "boot_marker",
            "ready",
            "entropy",
            "log",
        ];
        let mut m = Manifest::default();
        let Some(f) = self.object("", v, KNOWN) else {
            return m;
        };
        self.version(f.map.get("version"));
        if let Some((p, v)) = f.get("app") {
            m.app = self.app(&p, v);
        }
        if let Some((p, v)) = f.get("hostname") {
            m.hostname = self.hostname(&p, v);
        }
        if let Some((p, v)) = f.get("mounts") {
            m.mounts = self.mounts(&p, v);
        }
        if let Some((p, v)) = f.get("network") {
            m.network = self.network(&p, v);
        }
        if let Some((p, v)) = f.get("sysctl") {
            m.sysctl = self.sysctl(&p, v);
        }
        if let Some((p, v)) = f.get("rlimits") {
            m.rlimits = self.rlimits(&p, v);
        }
        if let Some((p, v)) = f.get("mode") {
            m.mode = self.mode(&p, v).unwrap_or(m.mode);
        }
        if let Some((p, v)) = f.get("on_exit") {
            m.on_exit = self.on_exit(&p, v).unwrap_or(m.on_exit);
        }
        if let Some((p, v)) = f.get("exit_port") {
            m.exit_port = self.uint(&p, v, 0xffff).map(|n| n as u16);
        }
        if let Some((p, v)) = f.get("boot_marker") {
            if let Some((marker, at)) = self.boot_marker(&p, v) {
                m.boot_marker = Some(marker);
                m.boot_marker_at = at;
            }
        }
        if let Some((p, v)) = f.get("ready") {
            m.ready = self.ready(&p, v);
            if m.ready.is_some() && m.mode == Mode::Exec {
                self.problem(
                    &p,
                    "needs \"mode\": \"supervise\" (in exec mode init is gone once the app runs)",
                );
            }
        }
        if m.boot_marker_at == MarkerAt::Ready && m.ready.is_none() {
            self.problem(
                "boot_marker.at",
                "\"ready\" needs a \"ready\" socket to watch",
            );
        }
        if let Some((p, v)) = f.get("entropy") {
            m.entropy_seed = self.entropy_seed(&p, v);
        }
        if let Some((p, v)) = f.get("log") {
            (m.log, m.syslog) = self.log(&p, v);
            if m.syslog.is_some() && m.mode == Mode::Exec {
                self.problem(
                    &join(&p, "syslog"),
                    "needs \"mode\": \"supervise\" (init relays the app's output)",
                );
            }
        }
        m
    }

    /// `version` is read even when null: only 1 is supported.
    fn version(&mut self, v: Option<&Value>) {
        match v {
            None => self.problem("version", "missing (this init reads version 1)"),
            Some(v) if v.as_u64() == Some(1) => {}
            Some(v) => self.not("version", v, "a supported version (this init reads 1)"),
        }
    }

    fn mounts(&mut self, path: &str, v: &Value) -> Vec<Mount> {
        let items = self.array(path, v);
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.mount(&format!("{path}[{i}]"), item))
            .collect()
    }

    fn mode(&mut self, path: &str, v: &Value) -> Option<Mode> {
        match v.as_str() {
            Some("exec") => Some(Mode::Exec),
            Some("supervise") => Some(Mode::Supervise),
            _ => {
                self.not(path, v, "\"exec\" or \"supervise\"");
                None
            }
        }
    }

    fn on_exit(&mut self, path: &str, v: &Value) -> Option<OnExit> {
        match v.as_str() {
            Some("reboot") => Some(OnExit::Reboot),
            Some("poweroff") => Some(OnExit::Poweroff),
            Some("halt") => Some(OnExit::Halt),
            _ => {
                self.not(path, v, "\"reboot\", \"poweroff\" or \"halt\"");
                None
            }
        }
    }

    fn entropy_seed(&mut self, path: &str, v: &Value) -> Option<String> {
        let e = self.object(path, v, &["seed_file"])?;
        let (p, v) = e.get("seed_file")?;
        self.absolute_path(&p, v)
    }

    /// `"LEVEL"`, or `{"level": "LEVEL", "syslog": {...}}`.
    fn log(&mut self, path: &str, v: &Value) -> (Option<log::LevelFilter>, Option<Syslog>) {
        if !v.is_object() {
            return (self.level(path, v), None);
        }
        let Some(f) = self.object(path, v, &["level", "syslog"]) else {
            return (None, None);
        };
        let level = f.get("level").and_then(|(p, v)| self.level(&p, v));
        let syslog = f.get("syslog").and_then(|(p, v)| self.syslog(&p, v));
        (level, syslog)
    }

    fn syslog(&mut self, path: &str, v: &Value) -> Option<Syslog> {
        let f = self.object(path, v, &["address", "app_name", "kmsg"])?;
        let address = match f.get("address") {
            Some((p, v)) => self.syslog_address(&p, v),
            None => {
                self.problem(&join(path, "address"), "missing");
                None
            }
        };
        let app_name = f.get("app_name").and_then(|(p, v)| {
            let name = self.string(&p, v)?;
            let printable = |c: char| c.is_ascii_graphic();
            if name.is_empty() || name.len() > 48 || !name.chars().all(printable) {
                self.not(
                    &p,
                    v,
                    "1 to 48 printable ASCII characters (RFC 5424 APP-NAME)",
                );
                return None;
            }
            Some(name)
        });
        let kmsg = f.get("kmsg").and_then(|(p, v)| self.bool(&p, v));
        let (transport, address) = address?;
        Some(Syslog {
            transport,
            address,
            app_name,
            kmsg: kmsg.unwrap_or(false),
        })
    }

    fn syslog_address(
        &mut self,
        path: &str,
        v: &Value,
    ) -> Option<(Transport, std::net::SocketAddr)> {
        let s = self.string(path, v)?;
        let parsed = match s.split_once("://") {
            Some(("udp", a)) => a.parse().ok().map(|a| (Transport::Udp, a)),
            Some(("tcp", a)) => a.parse().ok().map(|a| (Transport::Tcp, a)),
            _ => None,
        };
        if parsed.is_none() {
            self.not(
                path,
                v,
                "\"udp://IP:PORT\" or \"tcp://IP:PORT\" (an IP address: no DNS)",
            );
        }
        parsed
    }

    fn level(&mut self, path: &str, v: &Value) -> Option<log::LevelFilter> {
        let level = v.as_str().and_then(parse_level);
        if level.is_none() {
            self.not(
                path,
                v,
                "one of \"off\", \"error\", \"warn\", \"info\", \"debug\", \"trace\"",
            );
        }
        level
    }

    fn app(&mut self, path: &str, v: &Value) -> App {
        const KNOWN: &[&str] = &[
            "path", "args", "argv0", "env", "cwd", "user", "groups", "umask",
        ];
        let mut app = App::default();
        let Some(f) = self.object(path, v, KNOWN) else {
            return app;
        };
        if let Some((p, v)) = f.get("path") {
            app.path = self.string(&p, v);
            if app.path.as_deref() == Some("") {
                self.problem(&p, "is empty");
            }
        }
        if let Some((p, v)) = f.get("args") {
            app.args = self.strings(&p, v);
        }
        if let Some((p, v)) = f.get("argv0") {
            app.argv0 = self.string(&p, v);
        }
        if let Some((p, v)) = f.get("env") {
            app.env = self.env(&p, v);
        }
        if let Some((p, v)) = f.get("cwd") {
            app.cwd = self.absolute_path(&p, v);
        }
        if let Some((p, v)) = f.get("user") {
            app.user = self.user(&p, v);
        }
        if let Some((p, v)) = f.get("groups") {
            app.groups = Some(self.groups(&p, v));
        }
        if let Some((p, v)) = f.get("umask") {
            app.umask = self.umask(&p, v);
        }
        app
    }

    fn env(&mut self, path: &str, v: &Value) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        let Value::Object(map) = v else {
            self.not(path, v, "an object");
            return env;
        };
        for (key, value) in map {
            let kp = join(path, key);
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                self.problem(
                    &kp,
                    "is not a valid variable name (empty, or has '=' or NUL)",
                );
            } else {
                // Not self.string: its message shows the value, which may be a secret.
                match value {
                    Value::String(v) if !v.contains('\0') => {
                        env.insert(key.clone(), v.clone());
                    }
                    Value::String(_) => self.problem(&kp, "contains a NUL byte"),
                    _ => self.problem(&kp, "is not a string (values are not shown)"),
                }
            }
        }
        env
    }

    fn user(&mut self, path: &str, v: &Value) -> Option<User> {
        let s = self.string(path, v)?;
        let user = parse_user(&s);
        if user.is_none() {
            self.not(path, v, "\"uid[:gid]\" or \"name[:group]\"");
        }
        user
    }

    fn groups(&mut self, path: &str, v: &Value) -> Vec<u32> {
        let items = self.array(path, v);
        items
            .iter()
            .enumerate()
            .filter_map(|(i, g)| {
                self.uint(&format!("{path}[{i}]"), g, u32::MAX as u64 - 1)
                    .map(|n| n as u32)
            })
            .collect()
    }

    fn umask(&mut self, path: &str, v: &Value) -> Option<u32> {
        match v.as_str().map(|s| u32::from_str_radix(s, 8)) {
            Some(Ok(n)) if n <= 0o777 => Some(n),
            _ => {
                self.not(path, v, "an octal string from \"0000\" to \"0777\"");
                None
            }
        }
    }

    fn hostname(&mut self, path: &str, v: &Value) -> Option<String> {
        let s = self.string(path, v)?;
        if valid_hostname(&s) {
            Some(s)
        } else {
            self.not(path, v, "a hostname (1-64 of a-z, A-Z, 0-9, '-', '.')");
            None
        }
    }

    fn mount(&mut self, path: &str, v: &Value) -> Option<Mount> {
        const KNOWN: &[&str] = &["source", "target", "fstype", "options", "mkdir", "wait_s"];
        let f = self.object(path, v, KNOWN)?;
        let target = match f.get("target") {
            Some((p, v)) => self.absolute_path(&p, v),
            None => {
                self.problem(&join(path, "target"), "missing");
                None
            }
        };
        let fstype = match f.get("fstype") {
            Some((p, v)) => self.string(&p, v),
            None => {
                self.problem(&join(path, "fstype"), "missing");
                None
            }
        };
        let source = match f.get("source") {
            Some((p, v)) => self.string(&p, v),
            None => fstype.clone(),
        };
        let options = match f.get("options") {
            Some((p, v)) => self.string(&p, v).unwrap_or_default(),
            None => String::new(),
        };
        let mkdir = match f.get("mkdir") {
            Some((p, v)) => self.bool(&p, v).unwrap_or(false),
            None => false,
        };
        let wait_s = match f.get("wait_s") {
            Some((p, v)) => self.seconds(&p, v),
            None => 0.0,
        };
        Some(Mount {
            source: source?,
            target: target?,
            fstype: fstype?,
            options,
            mkdir,
            wait_s,
        })
    }

    fn network(&mut self, path: &str, v: &Value) -> Option<Network> {
        const KNOWN: &[&str] = &["interfaces", "routes", "dns", "wait_s"];
        let f = self.object(path, v, KNOWN)?;
        let mut net = Network::default();
        if let Some((p, v)) = f.get("interfaces") {
            let items = self.array(&p, v);
            for (i, item) in items.iter().enumerate() {
                if let Some(iface) = self.interface(&format!("{p}[{i}]"), item) {
                    net.interfaces.push(iface);
                }
            }
        }
        if let Some((p, v)) = f.get("routes") {
            let items = self.array(&p, v);
            for (i, item) in items.iter().enumerate() {
                if let Some(route) = self.route(&format!("{p}[{i}]"), item, &net.interfaces) {
                    net.routes.push(route);
                }
            }
        }
        if let Some((p, v)) = f.get("dns") {
            if let Some(d) = self.object(&p, v, &["nameservers", "search"]) {
                if let Some((p, v)) = d.get("nameservers") {
                    for (i, s) in self.strings(&p, v).into_iter().enumerate() {
                        match s.parse::<IpAddr>() {
                            Ok(ip) => net.nameservers.push(ip),
                            Err(_) => self.problem(
                                &format!("{p}[{i}]"),
                                format!("{s:?} is not an IP address"),
                            ),
                        }
                    }
                }
                if let Some((p, v)) = d.get("search") {
                    for (i, s) in self.strings(&p, v).into_iter().enumerate() {
                        if valid_hostname(&s) {
                            net.search.push(s);
                        } else {
                            self.problem(
                                &format!("{p}[{i}]"),
                                format!("{s:?} is not a domain name"),
                            );
                        }
                    }
                }
            }
        }
        if let Some((p, v)) = f.get("wait_s") {
            net.wait_s = self.seconds(&p, v);
        }
        Some(net)
    }

    fn interface(&mut self, path: &str, v: &Value) -> Option<Interface> {
        let f = self.object(path, v, &["name", "addresses", "mtu"])?;
        let name = match f.get("name") {
            Some((p, v)) => self.string(&p, v).filter(|s| {
                let ok = valid_ifname(s);
                if !ok {
                    self.problem(&p, format!("{s:?} is not an interface name (1-15 characters, no '/', ':' or spaces)"));
                }
                ok
            }),
            None => {
                self.problem(&join(path, "name"), "missing");
                None
            }
        };
        let mut addresses = Vec::new();
        if let Some((p, v)) = f.get("addresses") {
            for (i, s) in self.strings(&p, v).into_iter().enumerate() {
                match parse_prefix(&s) {
                    Some(prefix) => addresses.push(prefix),
                    None => {
                        self.problem(&format!("{p}[{i}]"), format!("{s:?} is not an IP prefix"))
                    }
                }
            }
        }
        let mtu = match f.get("mtu") {
            Some((p, v)) => match v.as_u64() {
                Some(n @ 68..=65535) => Some(n as u32),
                _ => {
                    self.not(&p, v, "an MTU from 68 to 65535");
                    None
                }
            },
            None => None,
        };
        Some(Interface {
            name: name?,
            addresses,
            mtu,
        })
    }

    fn route(&mut self, path: &str, v: &Value, interfaces: &[Interface]) -> Option<Route> {
        let f = self.object(path, v, &["destination", "gateway", "dev"])?;
        let destination = match f.get("destination") {
            Some((p, v)) => match self.string(&p, v)?.as_str() {
                "default" => None,
                s => match parse_prefix(s) {
                    Some(prefix) => Some(prefix),
                    None => {
                        self.problem(&p, format!("{s:?} is not \"default\" or an IP prefix"));
                        return None;
                    }
                },
            },
            None => {
                self.problem(&join(path, "destination"), "missing");
                return None;
            }
        };
        let gateway = match f.get("gateway") {
            Some((p, v)) => match self.string(&p, v)?.parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    self.not(&p, v, "an IP address");
                    return None;
                }
            },
            None => None,
        };
        let dev = match f.get("dev") {
            Some((p, v)) => {
                let dev = self.string(&p, v)?;
                if !interfaces.iter().any(|i| i.name == dev) && dev != "lo" {
                    self.problem(&p, format!("{dev:?} is not one of network.interfaces"));
                    return None;
                }
                Some(dev)
            }
            None => None,
        };
        if let (Some(d), Some(g)) = (destination, gateway) {
            if d.addr.is_ipv6() != g.is_ipv6() {
                self.problem(path, "destination and gateway are of different IP families");
                return None;
            }
        }
        let route = Route {
            destination,
            gateway,
            dev,
        };
        if route.gateway.is_none() && route.dev.is_none() {
            match interfaces {
                [only] => {
                    return Some(Route {
                        dev: Some(only.name.clone()),
                        ..route
                    })
                }
                _ => {
                    self.problem(path, "needs a \"gateway\" or a \"dev\"");
                    return None;
                }
            }
        }
        Some(route)
    }

    fn sysctl(&mut self, path: &str, v: &Value) -> Vec<(String, String)> {
        let Value::Object(map) = v else {
            self.not(path, v, "an object");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, value) in map {
            let kp = join(path, key);
            let valid_key = !key.is_empty()
                && key.split('.').all(|part| !part.is_empty() && part != "..")
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !valid_key {
                self.problem(
                    &kp,
                    "is not a sysctl name (dotted, as in net.core.somaxconn)",
                );
                continue;
            }
            let value = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => {
                    self.not(&kp, value, "a string or number");
                    continue;
                }
            };
            out.push((key.clone(), value));
        }
        out
    }

    fn rlimits(&mut self, path: &str, v: &Value) -> Vec<Rlimit> {
        let Value::Object(map) = v else {
            self.not(path, v, "an object");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, value) in map {
            let p = join(path, name);
            let Some(resource) = resource_by_name(name) else {
                let names: Vec<&str> = RESOURCES.iter().map(|(n, _)| *n).collect();
                self.problem(
                    &p,
                    format!("unknown resource (expected one of: {})", names.join(", ")),
                );
                continue;
            };
            let Some(f) = self.object(&p, value, &["soft", "hard"]) else {
                continue;
            };
            let soft = f.get("soft").and_then(|(p, v)| self.limit(&p, v));
            let hard = f.get("hard").and_then(|(p, v)| self.limit(&p, v));
            let (soft, hard) = match (soft, hard) {
                (Some(s), Some(h)) => (s, h),
                (Some(s), None) if f.get("hard").is_none() => (s, s),
                (None, Some(h)) if f.get("soft").is_none() => (h, h),
                (None, None) if f.get("soft").is_none() && f.get("hard").is_none() => {
                    self.problem(&p, "needs \"soft\", \"hard\" or both");
                    continue;
                }
                _ => continue,
            };
            if soft > hard {
                self.problem(&p, format!("soft limit {soft} is above hard limit {hard}"));
                continue;
            }
            out.push(Rlimit {
                resource,
                soft,
                hard,
            });
        }
        out
    }

    fn limit(&mut self, path: &str, v: &Value) -> Option<u64> {
        match v {
            Value::String(s) if s == "unlimited" => Some(UNLIMITED),
            _ => match v.as_u64() {
                Some(n) if n < UNLIMITED => Some(n),
                _ => {
                    self.not(path, v, "a non-negative integer or \"unlimited\"");
                    None
                }
            },
        }
    }

    /// `{"tcp": PORT}` or `{"unix": "/absolute/path"}`.
    fn ready(&mut self, path: &str, v: &Value) -> Option<Ready> {
        let f = self.object(path, v, &["tcp", "unix"])?;
        match (f.get("tcp"), f.get("unix")) {
            (Some((p, v)), None) => match self.uint(&p, v, 0xffff)? {
                0 => {
                    self.problem(&p, "0 is not a port to listen on");
                    None
                }
                port => Some(Ready::Tcp(port as u16)),
            },
            (None, Some((p, v))) => self.absolute_path(&p, v).map(Ready::Unix),
            _ => {
                self.problem(path, "needs exactly one of \"tcp\" and \"unix\"");
                None
            }
        }
    }

    fn boot_marker(&mut self, path: &str, v: &Value) -> Option<(BootMarker, MarkerAt)> {
        let f = self.object(path, v, &["ioport", "mmio", "value", "at"])?;
        let at = match f.get("at") {
            None => MarkerAt::Exec,
            Some((_, Value::String(s))) if s == "exec" => MarkerAt::Exec,
            Some((_, Value::String(s))) if s == "ready" => MarkerAt::Ready,
            Some((p, v)) => {
                self.not(&p, v, "\"exec\" or \"ready\"");
                MarkerAt::Exec
            }
        };
        self.marker(path, f).map(|marker| (marker, at))
    }

    fn marker(&mut self, path: &str, f: Fields) -> Option<BootMarker> {
        let value = match f.get("value") {
            Some((p, v)) => self.uint(&p, v, 255).map(|n| n as u8),
            None => {
                self.problem(&join(path, "value"), "missing");
                None
            }
        };
        match (f.get("ioport"), f.get("mmio")) {
            (Some((p, v)), None) => {
                let port = self.uint(&p, v, 0xffff)? as u16;
                Some(BootMarker::IoPort {
                    port,
                    value: value?,
                })
            }
            (None, Some((p, v))) => {
                let address = match v {
                    Value::String(s) => parse_u64(s),
                    _ => v.as_u64(),
                };
                let Some(address) = address else {
                    self.not(&p, v, "an address (a number or \"0x...\")");
                    return None;
                };
                Some(BootMarker::Mmio {
                    address,
                    value: value?,
                })
            }
            _ => {
                self.problem(path, "needs exactly one of \"ioport\" and \"mmio\"");
                None
            }
        }
    }
}

pub fn parse_level(s: &str) -> Option<log::LevelFilter> {
    Some(match s {
        "off" => log::LevelFilter::Off,
        "error" => log::LevelFilter::Error,
        "warn" => log::LevelFilter::Warn,
        "info" => log::LevelFilter::Info,
        "debug" => log::LevelFilter::Debug,
        "trace" => log::LevelFilter::Trace,
        _ => return None,
    })
}

pub fn resource_by_name(name: &str) -> Option<Resource> {
    RESOURCES.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
}

/// `"10.0.2.15/24"` or `"fd00::15/64"`.
pub fn parse_prefix(s: &str) -> Option<Prefix> {
    let (addr, len) = s.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some(Prefix { addr, len })
}

fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn parse_user(s: &str) -> Option<User> {
    fn part(s: &str) -> Option<IdOrName> {
        if s.is_empty() {
            return None;
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return s.parse().ok().map(IdOrName::Id);
        }
        let ok = s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'$'));
        ok.then(|| IdOrName::Name(s.to_string()))
    }
    match s.split_once(':') {
        Some((u, g)) => Some(User {
            user: part(u)?,
            group: Some(part(g)?),
        }),
        None => Some(User {
            user: part(s)?,
            group: None,
        }),
    }
}

pub fn valid_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.split('.').all(|label| !label.is_empty())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

pub fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

#[cfg(test)]
mod tests;

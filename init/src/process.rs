//! Everything about the app's process: resolving what to run and as whom (in init, where a
//! failure is a clear fatal error), then applying it in the process that execs the app.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::sys::resource::{setrlimit, Resource as NixResource};
use nix::sys::signal::{SigSet, SigmaskHow};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{chdir, execve, setgid, setgroups, setuid, Gid, Uid};

use crate::error::Fatal;
use crate::manifest::{App, IdOrName, Resource, Rlimit, User, UNLIMITED};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the exec needs, resolved before any fork so errors name the manifest field.
#[derive(Debug)]
pub struct Launch {
    pub path: CString,
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
    pub cwd: Option<String>,
    pub ids: Option<Ids>,
    pub umask: Option<u32>,
    pub rlimits: Vec<Rlimit>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// Resolves the app: its executable (searched in PATH when it has no '/'), argv, environment
/// (defaults < init's own environment from the kernel < the manifest), user and groups from
/// the image's /etc/passwd and /etc/group.
pub fn resolve(
    app: &App,
    inherited_env: impl Iterator<Item = (OsString, OsString)>,
    rlimits: &[Rlimit],
    etc: &Path,
) -> Result<Launch, Fatal> {
    let path = app.path.as_deref().ok_or_else(|| {
        Fatal::new(
            "app",
            "no application: app.path is not set and the kernel passed no arguments after --",
        )
    })?;
    let ids = app
        .user
        .as_ref()
        .map(|u| resolve_user(u, app.groups.as_deref(), etc))
        .transpose()?;

    let mut env: BTreeMap<OsString, OsString> = BTreeMap::new();
    env.insert("PATH".into(), DEFAULT_PATH.into());
    env.insert("HOME".into(), home_of(ids.as_ref(), etc).into());
    env.insert("TERM".into(), "linux".into());
    env.extend(inherited_env);
    env.extend(app.env.iter().map(|(k, v)| (k.into(), v.into())));

    let exe = find_executable(path, env.get(OsStr::new("PATH")))
        .ok_or_else(|| exec_error(path, "not found, or not an executable file"))?;
    let argv0 = app.argv0.as_deref().unwrap_or(path);
    let argv = std::iter::once(argv0)
        .chain(app.args.iter().map(String::as_str))
        .map(cstring)
        .collect::<Result<_, _>>()?;
    let env = env
        .iter()
        .map(|(k, v)| {
            let mut kv = k.clone();
            kv.push("=");
            kv.push(v);
            CString::new(kv.as_bytes()).map_err(|_| Fatal::new("app.env", "a value has a NUL byte"))
        })
        .collect::<Result<_, _>>()?;
    Ok(Launch {
        path: CString::new(exe.as_bytes()).map_err(|_| exec_error(path, "has a NUL byte"))?,
        argv,
        env,
        cwd: app.cwd.clone(),
        ids,
        umask: app.umask,
        rlimits: rlimits.to_vec(),
    })
}

fn exec_error(path: &str, why: &str) -> Fatal {
    Fatal {
        status: 127,
        ..Fatal::new("exec", format!("{path}: {why}"))
    }
}

fn cstring(s: &str) -> Result<CString, Fatal> {
    CString::new(s).map_err(|_| Fatal::new("app.args", format!("{s:?} has a NUL byte")))
}

fn find_executable(path: &str, search: Option<&OsString>) -> Option<OsString> {
    let is_exec = |p: &Path| {
        fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if path.contains('/') {
        return is_exec(Path::new(path)).then(|| path.into());
    }
    let search = search
        .map(|s| s.as_bytes())
        .unwrap_or(DEFAULT_PATH.as_bytes());
    search
        .split(|&b| b == b':')
        .map(|dir| Path::new(OsStr::from_bytes(dir)).join(path))
        .find(|p| is_exec(p))
        .map(|p| p.into_os_string())
}

/// passwd(5) or group(5) entries: name, id, gid (passwd only), home (passwd) or members.
fn entries(file: &Path) -> Vec<Vec<String>> {
    fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect()
}

fn resolve_user(user: &User, groups: Option<&[u32]>, etc: &Path) -> Result<Ids, Fatal> {
    let passwd = entries(&etc.join("passwd"));
    let group = entries(&etc.join("group"));
    let entry = |want: &IdOrName| {
        passwd.iter().find(|f| match want {
            IdOrName::Id(id) => f[2] == id.to_string(),
            IdOrName::Name(n) => &f[0] == n,
        })
    };
    let (uid, primary) = match (&user.user, entry(&user.user)) {
        (_, Some(f)) => (f[2].parse().ok(), f[3].parse().ok()),
        // A bare uid missing from passwd runs with gid 0, as container runtimes do.
        (IdOrName::Id(id), None) => (Some(*id), Some(0)),
        (IdOrName::Name(n), None) => {
            return Err(Fatal::new(
                "app.user",
                format!("no user {n:?} in {}", etc.join("passwd").display()),
            ))
        }
    };
    let Some(uid) = uid else {
        return Err(Fatal::new("app.user", "bad uid in /etc/passwd"));
    };
    let gid = match &user.group {
        None => primary.unwrap_or(0),
        Some(IdOrName::Id(g)) => *g,
        Some(IdOrName::Name(n)) => group
            .iter()
            .find(|f| &f[0] == n)
            .and_then(|f| f[2].parse().ok())
            .ok_or_else(|| {
                Fatal::new(
                    "app.user",
                    format!("no group {n:?} in {}", etc.join("group").display()),
                )
            })?,
    };
    let groups = groups.map(<[u32]>::to_vec).unwrap_or_else(|| vec![gid]);
    Ok(Ids { uid, gid, groups })
}

fn home_of(ids: Option<&Ids>, etc: &Path) -> String {
    ids.and_then(|ids| {
        entries(&etc.join("passwd"))
            .into_iter()
            .find(|f| f[2] == ids.uid.to_string())
            .and_then(|f| f.get(5).cloned())
    })
    .filter(|h| !h.is_empty())
    .unwrap_or_else(|| "/".to_string())
}

/// Applies the launch settings to the current process. Runs in the forked child (supervise)
/// or in PID 1 itself (exec mode); `marker` runs after everything that needs root but before
/// the privileges are dropped.
pub fn prepare(launch: &Launch, marker: impl FnOnce()) -> Result<(), Fatal> {
    for r in &launch.rlimits {
        let limit = |v: u64| {
            if v == UNLIMITED {
                libc::RLIM_INFINITY
            } else {
                v
            }
        };
        setrlimit(nix_resource(r.resource), limit(r.soft), limit(r.hard))
            .map_err(|e| Fatal::new("rlimits", format!("{:?}: {e}", r.resource)))?;
    }
    if let Some(cwd) = &launch.cwd {
        chdir(cwd.as_str()).map_err(|e| Fatal::new("app.cwd", format!("{cwd}: {}", e.desc())))?;
    }
    if let Some(mask) = launch.umask {
        umask(Mode::from_bits_truncate(mask));
    }
    marker();
    if let Some(ids) = &launch.ids {
        let groups: Vec<Gid> = ids.groups.iter().map(|&g| Gid::from_raw(g)).collect();
        setgroups(&groups).map_err(|e| Fatal::new("app.groups", e.desc()))?;
        setgid(Gid::from_raw(ids.gid))
            .map_err(|e| Fatal::new("app.user", format!("setgid {}: {}", ids.gid, e.desc())))?;
        setuid(Uid::from_raw(ids.uid))
            .map_err(|e| Fatal::new("app.user", format!("setuid {}: {}", ids.uid, e.desc())))?;
    }
    reset_signals();
    close_inherited_fds();
    Ok(())
}

/// Replaces the current process with the app.
pub fn exec(launch: &Launch) -> Fatal {
    let err = execve(&launch.path, &launch.argv, &launch.env).unwrap_err();
    exec_error(&launch.path.to_string_lossy(), err.desc())
}

/// Default dispositions for every signal, real-time ones included (Rust's runtime left
/// SIGPIPE ignored, whoever started init may have ignored others, and ignored signals survive
/// exec), and an empty mask.
pub fn reset_signals() {
    // struct kernel_sigaction { handler, flags, restorer, mask }: all zero is SIG_DFL. The
    // raw system call, because musl refuses the signals it reserves for itself (32-34).
    let default = [0u64; 4];
    for sig in 1..=64 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: `default` is a valid kernel_sigaction; no old action is returned.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    default.as_ptr(),
                    0usize,
                    8usize,
                )
            };
        }
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// The app starts with the console on 0-2 and nothing else.
fn close_inherited_fds() {
    // SAFETY: close_range only closes descriptors; none are used after this point except by exec.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if rc != 0 {
        // Kernels before 5.9: close what /proc lists.
        if let Ok(dir) = fs::read_dir("/proc/self/fd") {
            let fds: Vec<i32> = dir
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .filter(|&fd| fd > 2)
                .collect();
            for fd in fds {
                // SAFETY: as above.
                unsafe { libc::close(fd) };
            }
        }
    }
}

fn nix_resource(r: Resource) -> NixResource {
    match r {
        Resource::As => NixResource::RLIMIT_AS,
        Resource::Core => NixResource::RLIMIT_CORE,
        Resource::Cpu => NixResource::RLIMIT_CPU,
        Resource::Data => NixResource::RLIMIT_DATA,
        Resource::Fsize => NixResource::RLIMIT_FSIZE,
        Resource::Locks => NixResource::RLIMIT_LOCKS,
        Resource::Memlock => NixResource::RLIMIT_MEMLOCK,
        Resource::Msgqueue => NixResource::RLIMIT_MSGQUEUE,
        Resource::Nice => NixResource::RLIMIT_NICE,
        Resource::Nofile => NixResource::RLIMIT_NOFILE,
        Resource::Nproc => NixResource::RLIMIT_NPROC,
        Resource::Rss => NixResource::RLIMIT_RSS,
        Resource::Rtprio => NixResource::RLIMIT_RTPRIO,
        Resource::Rttime => NixResource::RLIMIT_RTTIME,
        Resource::Sigpending => NixResource::RLIMIT_SIGPENDING,
        Resource::Stack => NixResource::RLIMIT_STACK,
    }
}

#[cfg(test)]
mod tests;

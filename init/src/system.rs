//! Machine-wide settings: hostname, /etc/hosts, sysctls, and files written atomically.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::error::Fatal;
use crate::manifest::Network;

/// Writes `path` through a temporary file and a rename, so the app never sees half a file.
pub fn write_atomic(path: &str, contents: impl AsRef<[u8]>) -> std::io::Result<()> {
    let tmp = format!("{path}.lupine-tmp");
    let written = fs::File::create(&tmp).and_then(|mut f| f.write_all(contents.as_ref()));
    // A full filesystem fails the write, a read-only one the create: no temporary file
    // stays behind either way.
    written
        .and_then(|()| fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
}

/// /etc/hosts: localhost for both families, and the hostname on the VM's first addresses
/// (127.0.1.1 when it has none, as Debian does).
pub fn hosts_file(hostname: &str, net: Option<&Network>) -> String {
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let addrs: Vec<IpAddr> = net
        .map(|n| {
            n.interfaces
                .iter()
                .flat_map(|i| i.addresses.iter().map(|p| p.addr))
                .collect()
        })
        .unwrap_or_default();
    let v4 = addrs.iter().find(|a| a.is_ipv4());
    let v6 = addrs.iter().find(|a| a.is_ipv6());
    match v4 {
        Some(a) => out.push_str(&format!("{a}\t{hostname}\n")),
        None => out.push_str(&format!("127.0.1.1\t{hostname}\n")),
    }
    if let Some(a) = v6 {
        out.push_str(&format!("{a}\t{hostname}\n"));
    }
    out
}

pub fn set_hostname(name: &str) -> Result<(), Fatal> {
    nix::unistd::sethostname(name)
        .map_err(|e| Fatal::new("hostname", format!("{name}: {}", e.desc())))
}

/// Sysctls init sets unless the manifest names them: nobody may hard-link a file he does not
/// own, nor follow another user's symlink in a sticky world-writable directory (the kernel's
/// defaults allow both; a hard link is how a program would come to look root-installed, e.g.
/// under Kernel Mode Linux's `/trusted`).
pub const DEFAULT_SYSCTLS: [(&str, &str); 2] = [
    ("fs.protected_hardlinks", "1"),
    ("fs.protected_symlinks", "1"),
];

/// Writes [`DEFAULT_SYSCTLS`] the manifest leaves out, where the kernel has them (one without
/// sysctl support or without users has nothing to protect), then each of the manifest's
/// sysctls through /proc/sys (dots become slashes).
pub fn apply_sysctls(sysctls: &[(String, String)]) -> Result<(), Fatal> {
    for (key, value) in defaults_not_in(sysctls) {
        if sysctl_path(key).exists() {
            write_sysctl(key, value)?;
        }
    }
    for (key, value) in sysctls {
        write_sysctl(key, value)?;
    }
    Ok(())
}

/// The [`DEFAULT_SYSCTLS`] that `sysctls` does not name.
fn defaults_not_in(sysctls: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> + '_ {
    DEFAULT_SYSCTLS
        .into_iter()
        .filter(|(key, _)| !sysctls.iter().any(|(k, _)| k == key))
}

fn sysctl_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

fn write_sysctl(key: &str, value: &str) -> Result<(), Fatal> {
    let path = sysctl_path(key);
    fs::write(&path, value).map_err(|e| {
        Fatal::new(
            "sysctl",
            format!("{key} = {value:?}: {}: {e}", path.display()),
        )
    })?;
    log::debug!("sysctl {key} = {value}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{parse_prefix, Interface};

    #[test]
    fn manifest_sysctls_override_the_defaults() {
        let none: Vec<(String, String)> = vec![];
        assert_eq!(
            defaults_not_in(&none).collect::<Vec<_>>(),
            DEFAULT_SYSCTLS.to_vec()
        );
        let hardlinks_off = [("fs.protected_hardlinks".to_string(), "0".to_string())];
        assert_eq!(
            defaults_not_in(&hardlinks_off).collect::<Vec<_>>(),
            [("fs.protected_symlinks", "1")]
        );
    }

    #[test]
    fn hosts_without_network_use_127_0_1_1() {
        assert_eq!(
            hosts_file("vm", None),
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tvm\n"
        );
    }

    #[test]
    fn hosts_map_hostname_to_first_address_of_each_family() {
        let net = Network {
            interfaces: vec![Interface {
                name: "eth0".into(),
                addresses: ["fd00::15/64", "10.0.2.15/24", "10.0.2.16/24"]
                    .iter()
                    .map(|s| parse_prefix(s).unwrap())
                    .collect(),
                mtu: None,
            }],
            ..Network::default()
        };
        let hosts = hosts_file("redis-vm", Some(&net));
        assert!(
            hosts.ends_with("10.0.2.15\tredis-vm\nfd00::15\tredis-vm\n"),
            "{hosts}"
        );
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("lupine-atomic-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("resolv.conf");
        fs::write(&file, "old").unwrap();
        write_atomic(file.to_str().unwrap(), "nameserver 10.0.2.3\n").unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), "nameserver 10.0.2.3\n");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}

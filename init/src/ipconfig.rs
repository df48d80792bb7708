//! The kernel's `ip=` parameter (Documentation/admin-guide/nfs/nfsroot.rst):
//!
//! `ip=<client-ip>:<server-ip>:<gw-ip>:<netmask>:<hostname>:<device>:<autoconf>:<dns0-ip>:<dns1-ip>:<ntp0-ip>`
//!
//! lupine-init applies it itself over netlink, so kernels without CONFIG_IP_PNP work too. Only
//! static configuration is done. Trailing fields may be omitted; `0.0.0.0` in an optional
//! address field means unset, as for the kernel. The server and NTP addresses are checked but
//! unused. `ip=off` and `ip=none` give an empty network: nothing to configure.

use std::net::{IpAddr, Ipv4Addr};

use crate::manifest::{valid_hostname, valid_ifname, Interface, Network, Prefix, Route};

/// What `ip=` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct IpConfig {
    pub network: Network,
    pub hostname: Option<String>,
}

/// Seconds to wait for the device: virtio-net may probe after init starts.
const WAIT_S: f64 = 2.0;

/// Autoconfiguration protocols the kernel knows; lupine-init does none of them.
const DYNAMIC: [&str; 6] = ["on", "any", "dhcp", "bootp", "rarp", "both"];

/// Parses the text after `ip=`. The error quotes the field at fault; the caller prefixes
/// `ip=: `.
pub fn parse(value: &str) -> Result<IpConfig, String> {
    if matches!(value, "off" | "none") {
        return Ok(IpConfig {
            network: Network::default(),
            hostname: None,
        });
    }
    let fields: Vec<&str> = value.split(':').collect();
    if fields.len() > 10 {
        return Err(format!(
            "{} fields, at most 10 expected \
             (client:server:gateway:netmask:hostname:device:autoconf:dns0:dns1:ntp0)",
            fields.len()
        ));
    }
    let field = |i: usize| fields.get(i).copied().unwrap_or("");

    // `ip=dhcp` is the protocol alone, like the kernel reads it.
    let autoconf = if fields.len() == 1 && DYNAMIC.contains(&value) {
        value
    } else {
        field(6)
    };
    if !matches!(autoconf, "" | "off" | "none" | "static") {
        return Err(format!(
            "autoconf {autoconf:?} is not supported: lupine-init does static configuration only \
             (use \"off\")"
        ));
    }

    let client = match field(0) {
        "" => return Err("client IP is required".into()),
        s => s
            .parse::<Ipv4Addr>()
            .map_err(|_| format!("client IP {s:?} is not an IPv4 address"))?,
    };
    if client.is_unspecified() || client.is_broadcast() || client.is_multicast() {
        return Err(format!("client IP \"{client}\" is not a host address"));
    }
    optional("server IP", field(1))?;
    let gateway = optional("gateway", field(2))?;
    let len = match field(3) {
        "" => return Err("netmask is required".into()),
        s => prefix_len(s)?,
    };
    let hostname = match field(4) {
        "" => None,
        s if valid_hostname(s) => Some(s.to_string()),
        s => return Err(format!("hostname {s:?} is not a valid host name")),
    };
    let device = match field(5) {
        "" => "eth0",
        s if valid_ifname(s) => s,
        s => return Err(format!("device {s:?} is not an interface name")),
    };
    let dns = [optional("dns0", field(7))?, optional("dns1", field(8))?];
    optional("ntp0", field(9))?;

    let mut network = Network {
        interfaces: vec![Interface {
            name: device.to_string(),
            addresses: vec![Prefix {
                addr: IpAddr::V4(client),
                len,
            }],
            mtu: None,
        }],
        routes: Vec::new(),
        nameservers: dns.into_iter().flatten().map(IpAddr::V4).collect(),
        search: Vec::new(),
        wait_s: WAIT_S,
    };
    if let Some(gw) = gateway {
        // The kernel refuses a gateway it cannot reach on the link; say so before booting on.
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        if (u32::from(gw) ^ u32::from(client)) & mask != 0 {
            let net = Ipv4Addr::from(u32::from(client) & mask);
            return Err(format!(
                "gateway \"{gw}\" is not in the client's subnet {net}/{len}"
            ));
        }
        network.routes.push(Route {
            destination: None,
            gateway: Some(IpAddr::V4(gw)),
            dev: Some(device.to_string()),
        });
    }
    Ok(IpConfig { network, hostname })
}

/// An optional IPv4 field: empty or 0.0.0.0 is unset.
fn optional(name: &str, s: &str) -> Result<Option<Ipv4Addr>, String> {
    match s {
        "" => Ok(None),
        s => match s.parse::<Ipv4Addr>() {
            Ok(ip) if ip.is_unspecified() => Ok(None),
            Ok(ip) => Ok(Some(ip)),
            Err(_) => Err(format!("{name} {s:?} is not an IPv4 address")),
        },
    }
}

/// The prefix length of a dotted netmask.
fn prefix_len(s: &str) -> Result<u8, String> {
    let mask = u32::from(
        s.parse::<Ipv4Addr>()
            .map_err(|_| format!("netmask {s:?} is not an IPv4 netmask"))?,
    );
    let len = mask.leading_ones();
    // Contiguous when every one bit is a leading one.
    if mask.count_ones() != len {
        return Err(format!("netmask {s:?} is not contiguous"));
    }
    Ok(len as u8)
}

#[cfg(test)]
mod tests;

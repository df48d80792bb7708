//! Network configuration over rtnetlink: links, addresses, routes, and the text of
//! /etc/resolv.conf.
//!
//! Requests are built with netlink-packet-route; replies are read by hand (only the header, the
//! error code and a link index are needed), so a kernel attribute the crate cannot decode never
//! fails the boot.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use netlink_packet_core::{
    ErrorBuffer, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLMSG_ERROR,
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::errno::Errno;

use crate::manifest::{Interface, Network, Prefix, Route};

/// A failed configuration step: what was being done, and why it failed.
pub struct NetError(String);

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NetError {}

fn fail(what: impl fmt::Display, errno: Errno) -> NetError {
    NetError(format!("{what}: {}", errno.desc()))
}

/// Brings `lo` up; the kernel then adds 127.0.0.1/8 and ::1 by itself.
pub fn loopback_up() -> Result<(), NetError> {
    let mut nl = Rtnl::open()?;
    let index = nl
        .link_index("lo")
        .map_err(|e| fail("lo: look up", e))?
        .ok_or_else(|| NetError("lo: no such network interface".into()))?;
    nl.set_up("lo", index)
}

/// Applies `net`: waits for each interface, sets its MTU, brings it up, adds its addresses,
/// then adds the routes. Addresses and routes that already exist count as added (a kernel with
/// CONFIG_IP_PNP may have configured them from `ip=` already).
pub fn configure(net: &Network) -> Result<(), NetError> {
    let mut nl = Rtnl::open()?;
    let mut indexes = Vec::with_capacity(net.interfaces.len());
    for iface in &net.interfaces {
        let index = nl.wait_link(&iface.name, net.wait_s)?;
        nl.interface(iface, index)?;
        indexes.push((iface.name.as_str(), index));
    }
    for route in &net.routes {
        let dev = route
            .dev
            .as_deref()
            .or_else(|| implied_dev(route, &net.interfaces));
        let index = match dev {
            None => None,
            Some(name) => match indexes.iter().find(|(n, _)| *n == name) {
                Some(&(_, index)) => Some(index),
                None => {
                    let what = format!("add {}", show_route(route, dev));
                    let index = nl.link_index(name).map_err(|e| fail(&what, e))?;
                    let missing = || NetError(format!("{what}: no such network interface"));
                    Some(index.ok_or_else(missing)?)
                }
            },
        };
        nl.add_route(route, dev, index)?;
    }
    Ok(())
}

/// The text of /etc/resolv.conf, or `None` when there is nothing to resolve with.
pub fn resolv_conf(net: &Network) -> Option<String> {
    if net.nameservers.is_empty() && net.search.is_empty() {
        return None;
    }
    let mut text: String = net
        .nameservers
        .iter()
        .map(|ns| format!("nameserver {ns}\n"))
        .collect();
    if !net.search.is_empty() {
        text += &format!("search {}\n", net.search.join(" "));
    }
    Some(text)
}

/// A link-local IPv6 gateway is unusable without an interface; with only one to choose from,
/// that one is meant.
fn implied_dev<'a>(route: &Route, interfaces: &'a [Interface]) -> Option<&'a str> {
    match (route.gateway, interfaces) {
        (Some(IpAddr::V6(gw)), [only]) if gw.segments()[0] & 0xffc0 == 0xfe80 => {
            Some(only.name.as_str())
        }
        _ => None,
    }
}

fn show_route(route: &Route, dev: Option<&str>) -> String {
    let mut s = match route.destination {
        Some(p) => format!("route {}/{}", p.addr, p.len),
        None => "route default".to_string(),
    };
    if let Some(gw) = route.gateway {
        s += &format!(" via {gw}");
    }
    if let Some(dev) = dev {
        s += &format!(" dev {dev}");
    }
    s
}

/// The destination with its host bits cleared: IPv4 routes with host bits set are refused.
fn network_of(p: Prefix) -> IpAddr {
    match p.addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(p.len.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(p.len.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

fn family(ip: &IpAddr) -> AddressFamily {
    if ip.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

/// One rtnetlink socket and its request counter.
struct Rtnl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    fn open() -> Result<Self, NetError> {
        let os = |what: &str, e: std::io::Error| {
            fail(what, Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
        };
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| os("open rtnetlink socket", e))?;
        sock.bind_auto()
            .map_err(|e| os("bind rtnetlink socket", e))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(|e| os("connect rtnetlink socket", e))?;
        Ok(Rtnl {
            sock,
            seq: 0,
            // Large enough for any single RTM_NEWLINK reply of a VM's NIC.
            buf: vec![0; 64 * 1024],
        })
    }

    /// Sends one request and reads replies up to its ACK. Returns the link index of an
    /// RTM_NEWLINK reply, if one came (RTM_GETLINK).
    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<Option<u32>, Errno> {
        self.seq = self.seq.wrapping_add(1);
        let mut packet = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(msg));
        packet.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        packet.header.sequence_number = self.seq;
        packet.finalize();
        let mut out = vec![0; packet.buffer_len()];
        packet.serialize(&mut out);
        // PID 1 catches signals, so a call may be interrupted: retry it.
        let io = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
        while let Err(e) = self.sock.send(&out, 0).map_err(io) {
            if e != Errno::EINTR {
                return Err(e);
            }
        }

        let mut index = None;
        loop {
            let mut space = &mut self.buf[..];
            let n = match self.sock.recv(&mut space, 0).map_err(io) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e),
            };
            let mut data = &self.buf[..n.min(self.buf.len())];
            while let Ok(msg) = NetlinkBuffer::new_checked(data) {
                let len = msg.length() as usize;
                if msg.sequence_number() == self.seq {
                    let payload = msg.payload();
                    match msg.message_type() {
                        NLMSG_ERROR => {
                            let code = ErrorBuffer::new_checked(payload)
                                .map_err(|_| Errno::EBADMSG)?
                                .code();
                            return match code {
                                None => Ok(index),
                                Some(c) => Err(Errno::from_raw(c.get().saturating_neg())),
                            };
                        }
                        libc::RTM_NEWLINK if payload.len() >= 8 => {
                            // struct ifinfomsg: family, pad, type (u16), index (i32).
                            let mut raw = [0; 4];
                            raw.copy_from_slice(&payload[4..8]);
                            index = Some(u32::from_ne_bytes(raw));
                        }
                        _ => {}
                    }
                }
                // Messages are 4-byte aligned; the last one may lack its padding.
                data = data.get((len + 3) & !3..).unwrap_or(&[]);
            }
        }
    }

    /// The index of link `name`, `None` if there is no such link.
    fn link_index(&mut self, name: &str) -> Result<Option<u32>, Errno> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(Some(index)) => Ok(Some(index)),
            Ok(None) | Err(Errno::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Polls for link `name` for up to `wait_s` seconds: virtio devices may probe after init
    /// has started.
    fn wait_link(&mut self, name: &str, wait_s: f64) -> Result<u32, NetError> {
        let limit = Duration::try_from_secs_f64(wait_s).unwrap_or(Duration::ZERO);
        let start = Instant::now();
        loop {
            match self.link_index(name) {
                Ok(Some(index)) => {
                    log::debug!("{name}: index {index}");
                    return Ok(index);
                }
                Ok(None) if start.elapsed() < limit => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(None) => {
                    return Err(NetError(format!(
                        "{name}: no such network interface (waited {wait_s}s)"
                    )))
                }
                Err(e) => return Err(fail(format_args!("{name}: look up"), e)),
            }
        }
    }

    fn set_up(&mut self, name: &str, index: u32) -> Result<(), NetError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        log::debug!("{name}: up");
        self.request(RouteNetlinkMessage::SetLink(msg), 0)
            .map_err(|e| fail(format_args!("{name}: bring up"), e))?;
        Ok(())
    }

    fn interface(&mut self, iface: &Interface, index: u32) -> Result<(), NetError> {
        let name = &iface.name;
        if let Some(mtu) = iface.mtu {
            let mut msg = LinkMessage::default();
            msg.header.index = index;
            msg.attributes.push(LinkAttribute::Mtu(mtu));
            log::debug!("{name}: mtu {mtu}");
            self.request(RouteNetlinkMessage::SetLink(msg), 0)
                .map_err(|e| fail(format_args!("{name}: set MTU {mtu}"), e))?;
        }
        self.set_up(name, index)?;
        for p in &iface.addresses {
            let mut msg = AddressMessage::default();
            msg.header.family = family(&p.addr);
            msg.header.prefix_len = p.len;
            msg.header.index = index;
            match p.addr {
                IpAddr::V4(a) => {
                    msg.attributes.push(AddressAttribute::Local(p.addr));
                    msg.attributes.push(AddressAttribute::Address(p.addr));
                    if p.len <= 30 {
                        let host = u32::MAX >> p.len;
                        let brd = Ipv4Addr::from(u32::from(a) | host);
                        msg.attributes.push(AddressAttribute::Broadcast(brd));
                    }
                }
                IpAddr::V6(_) => {
                    // No duplicate address detection: the address is usable at once.
                    msg.header.flags = AddressHeaderFlags::Nodad;
                    msg.attributes.push(AddressAttribute::Address(p.addr));
                }
            }
            log::debug!("{name}: address {}/{}", p.addr, p.len);
            match self.request(
                RouteNetlinkMessage::NewAddress(msg),
                NLM_F_CREATE | NLM_F_EXCL,
            ) {
                Ok(_) => {}
                Err(Errno::EEXIST) => log::debug!("{name}: {}/{} already present", p.addr, p.len),
                Err(e) => {
                    return Err(fail(
                        format_args!("{name}: add address {}/{}", p.addr, p.len),
                        e,
                    ))
                }
            }
        }
        Ok(())
    }

    fn add_route(
        &mut self,
        route: &Route,
        dev: Option<&str>,
        index: Option<u32>,
    ) -> Result<(), NetError> {
        let v6 = route.is_ipv6();
        let mut msg = RouteMessage::default();
        msg.header.address_family = if v6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.kind = RouteType::Unicast;
        // Without a gateway the destination is directly on the link.
        msg.header.scope = if route.gateway.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        if let Some(p) = route.destination {
            msg.header.destination_prefix_length = p.len;
            if p.len > 0 {
                msg.attributes
                    .push(RouteAttribute::Destination(network_of(p).into()));
            }
        }
        if let Some(gw) = route.gateway {
            msg.attributes.push(RouteAttribute::Gateway(gw.into()));
        }
        if let Some(index) = index {
            msg.attributes.push(RouteAttribute::Oif(index));
        }
        let what = show_route(route, dev);
        log::debug!("{what}");
        match self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(_) => Ok(()),
            Err(Errno::EEXIST) => {
                log::debug!("{what}: already present");
                Ok(())
            }
            Err(e) => Err(fail(format_args!("add {what}"), e)),
        }
    }
}

#[cfg(test)]
mod tests;

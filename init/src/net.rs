//! Network configuration over rtnetlink: links, addresses, routes, and the text of
//! /etc/resolv.conf.
//!
//! Requests go through netlink-packet-route and netlink-packet-core over a plain netlink-sys
//! socket, each framed by netlink-packet-core's `NetlinkHeader`. Addresses are
//! netlink-packet-route's `AddressMessage`. Links and routes are the crate's `LinkHeader` (struct ifinfomsg) and
//! `RouteHeader` (struct rtmsg) followed by raw `DefaultNla` attributes: the full `LinkMessage`
//! and `RouteMessage` emitters handle every attribute kind the crate knows and would cost about
//! 100 KB and 20 KB of the binary's 600 KiB budget, and the `RouteNetlinkMessage` dispatcher
//! would pull both in. Replies are walked with `NetlinkBuffer`: only the error code
//! (`ErrorBuffer`) and a link index (`LinkHeader::parse`) are read, never the attributes, so
//! nothing a newer kernel sends can fail the boot.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use libc::{RTM_GETLINK, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE, RTM_SETLINK};
use netlink_packet_core::{
    DefaultNla, Emitable, ErrorBuffer, NetlinkBuffer, NetlinkHeader, NLMSG_ERROR, NLM_F_ACK,
    NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{LinkFlags, LinkHeader};
use netlink_packet_route::route::{RouteHeader, RouteProtocol, RouteScope, RouteType};
use netlink_packet_route::AddressFamily;
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

/// As [`fail`], naming the likely cause when an IPv6 request is refused as unsupported.
fn fail_v6(what: impl fmt::Display, v6: bool, errno: Errno) -> NetError {
    match errno {
        Errno::EOPNOTSUPP | Errno::EAFNOSUPPORT if v6 => NetError(format!(
            "{what}: the kernel has no IPv6 (CONFIG_IPV6; Lupine profiles: PROFILE+ipv6)"
        )),
        _ => fail(what, errno),
    }
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

// Attribute types from the kernel's uapi headers (linux/if_link.h, linux/rtnetlink.h):
// netlink-packet-route does not export its copies.
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;

fn family(ip: &IpAddr) -> AddressFamily {
    if ip.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

fn octets(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// A request payload: one of the crate's family headers (struct ifinfomsg, struct rtmsg), then
/// attributes. This is what `LinkMessage` and `RouteMessage` emit, without linking their
/// emitters for every attribute kind.
struct RawRequest<H> {
    header: H,
    attributes: Vec<DefaultNla>,
}

impl<H: Emitable> Emitable for RawRequest<H> {
    fn buffer_len(&self) -> usize {
        self.header.buffer_len() + self.attributes.as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.header.emit(buffer);
        self.attributes
            .as_slice()
            .emit(&mut buffer[self.header.buffer_len()..]);
    }
}

/// RTM_GETLINK by name (IFLA_IFNAME, NUL-terminated).
fn link_by_name(name: &str) -> RawRequest<LinkHeader> {
    let mut ifname = name.as_bytes().to_vec();
    ifname.push(0);
    RawRequest {
        header: LinkHeader::default(),
        attributes: vec![DefaultNla::new(IFLA_IFNAME, ifname)],
    }
}

/// RTM_SETLINK: IFF_UP in both the flags and the change mask.
fn link_up(index: u32) -> RawRequest<LinkHeader> {
    RawRequest {
        header: LinkHeader {
            index,
            flags: LinkFlags::Up,
            change_mask: LinkFlags::Up,
            ..LinkHeader::default()
        },
        attributes: Vec::new(),
    }
}

/// RTM_SETLINK: IFLA_MTU, a native-endian u32.
fn link_mtu(index: u32, mtu: u32) -> RawRequest<LinkHeader> {
    RawRequest {
        header: LinkHeader {
            index,
            ..LinkHeader::default()
        },
        attributes: vec![DefaultNla::new(IFLA_MTU, mtu.to_ne_bytes().to_vec())],
    }
}

/// RTM_NEWADDR for `p` on link `index`.
fn address_message(p: &Prefix, index: u32) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = family(&p.addr);
    msg.header.prefix_len = p.len;
    msg.header.scope = AddressScope::Universe;
    msg.header.index = index;
    match p.addr {
        IpAddr::V4(a) => {
            msg.attributes.push(AddressAttribute::Local(p.addr));
            msg.attributes.push(AddressAttribute::Address(p.addr));
            if p.len <= 30 {
                let brd = u32::from(a) | u32::MAX.checked_shr(p.len.into()).unwrap_or(0);
                msg.attributes
                    .push(AddressAttribute::Broadcast(Ipv4Addr::from(brd)));
            }
        }
        IpAddr::V6(_) => {
            // No duplicate address detection: the address is usable at once.
            msg.header.flags = AddressHeaderFlags::Nodad;
            msg.attributes.push(AddressAttribute::Address(p.addr));
        }
    }
    msg
}

/// RTM_NEWROUTE for `route` in the main table, through link `index` if given.
fn route_message(route: &Route, index: Option<u32>) -> RawRequest<RouteHeader> {
    let header = RouteHeader {
        address_family: if route.is_ipv6() {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        },
        destination_prefix_length: route.destination.map_or(0, |p| p.len),
        table: RouteHeader::RT_TABLE_MAIN,
        protocol: RouteProtocol::Boot,
        // Without a gateway the destination is directly on the link.
        scope: if route.gateway.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        },
        kind: RouteType::Unicast,
        ..RouteHeader::default()
    };
    let mut attributes = Vec::new();
    if let Some(p) = route.destination.filter(|p| p.len > 0) {
        attributes.push(DefaultNla::new(RTA_DST, octets(&network_of(p))));
    }
    if let Some(gw) = route.gateway {
        attributes.push(DefaultNla::new(RTA_GATEWAY, octets(&gw)));
    }
    if let Some(index) = index {
        attributes.push(DefaultNla::new(RTA_OIF, index.to_ne_bytes().to_vec()));
    }
    RawRequest { header, attributes }
}

/// One request: struct nlmsghdr (NLM_F_REQUEST | NLM_F_ACK | `flags`), then `payload`.
fn encode(kind: u16, flags: u16, seq: u32, payload: &dyn Emitable) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.message_type = kind;
    header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    header.sequence_number = seq;
    let len = header.buffer_len() + payload.buffer_len();
    header.length = len as u32;
    let mut out = vec![0; len];
    header.emit(&mut out);
    payload.emit(&mut out[header.buffer_len()..]);
    out
}

/// Decodes one datagram the kernel sent in reply to request `seq` (the rtnetlink reply decoder
/// of [`configure`] and [`loopback_up`]). Returns the outcome once the ACK or error of request
/// `seq` is among its messages: `Ok` with the link index noted so far, or the kernel's errno
/// (`EBADMSG` for an error message too short to hold one); `None` until then. Notes in `index`
/// the link index of an RTM_NEWLINK reply on the way. Whatever the bytes, it neither panics
/// nor loops: a message it cannot frame ends the datagram.
pub fn scan(
    mut data: &[u8],
    seq: u32,
    index: &mut Option<u32>,
) -> Option<Result<Option<u32>, Errno>> {
    while !data.is_empty() {
        // Checks that the header fits and its length field is within `data`.
        let msg = NetlinkBuffer::new_checked(data).ok()?;
        let len = msg.length() as usize;
        if msg.sequence_number() == seq {
            let payload = msg.payload();
            match msg.message_type() {
                // struct nlmsgerr: a negative errno, or 0 for the ACK.
                NLMSG_ERROR => {
                    return Some(match ErrorBuffer::new_checked(payload) {
                        Err(_) => Err(Errno::EBADMSG),
                        Ok(err) => match err.code() {
                            None => Ok(*index),
                            Some(c) => Err(Errno::from_raw(c.get().saturating_neg())),
                        },
                    })
                }
                // Only struct ifinfomsg is read: the attributes may be newer than the crate.
                RTM_NEWLINK => *index = LinkHeader::parse(payload).ok().map(|h| h.index),
                _ => {}
            }
        }
        // Messages are 4-byte aligned; the last one may lack its padding.
        data = data.get((len + 3) & !3..).unwrap_or(&[]);
    }
    None
}

/// One rtnetlink socket and its request counter.
struct Rtnl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

impl Rtnl {
    fn open() -> Result<Self, NetError> {
        let open = || {
            let mut sock = Socket::new(NETLINK_ROUTE)?;
            sock.bind_auto()?;
            sock.connect(&SocketAddr::new(0, 0))?;
            Ok(sock)
        };
        let sock = open().map_err(|e| fail("open rtnetlink socket", io_errno(e)))?;
        Ok(Rtnl {
            sock,
            seq: 0,
            // Large enough for any single RTM_NEWLINK reply of a VM's NIC.
            buf: vec![0; 64 * 1024],
        })
    }

    /// Sends one request and reads replies up to its ACK. Returns the link index of an
    /// RTM_NEWLINK reply, if one came (RTM_GETLINK).
    fn request(
        &mut self,
        kind: u16,
        flags: u16,
        payload: &dyn Emitable,
    ) -> Result<Option<u32>, Errno> {
        self.seq = self.seq.wrapping_add(1);
        let out = encode(kind, flags, self.seq, payload);
        // PID 1 catches signals, so a call may be interrupted: retry it.
        while let Err(e) = self.sock.send(&out, 0).map_err(io_errno) {
            if e != Errno::EINTR {
                return Err(e);
            }
        }

        let mut index = None;
        loop {
            let n = match self.sock.recv(&mut &mut self.buf[..], 0).map_err(io_errno) {
                Ok(n) => n.min(self.buf.len()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e),
            };
            if let Some(done) = scan(&self.buf[..n], self.seq, &mut index) {
                return done;
            }
        }
    }

    /// The index of link `name`, `None` if there is no such link.
    fn link_index(&mut self, name: &str) -> Result<Option<u32>, Errno> {
        match self.request(RTM_GETLINK, 0, &link_by_name(name)) {
            Ok(index) => Ok(index),
            Err(Errno::ENODEV) => Ok(None),
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
                    // Milliseconds as an integer: f64's Display would link 12 KB of float
                    // formatting into PID 1.
                    return Err(NetError(format!(
                        "{name}: no such network interface (waited {} ms)",
                        limit.as_millis() as u64
                    )));
                }
                Err(e) => return Err(fail(format_args!("{name}: look up"), e)),
            }
        }
    }

    fn set_up(&mut self, name: &str, index: u32) -> Result<(), NetError> {
        log::debug!("{name}: up");
        self.request(RTM_SETLINK, 0, &link_up(index))
            .map_err(|e| fail(format_args!("{name}: bring up"), e))?;
        Ok(())
    }

    fn interface(&mut self, iface: &Interface, index: u32) -> Result<(), NetError> {
        let name = &iface.name;
        if let Some(mtu) = iface.mtu {
            log::debug!("{name}: mtu {mtu}");
            self.request(RTM_SETLINK, 0, &link_mtu(index, mtu))
                .map_err(|e| fail(format_args!("{name}: set MTU {mtu}"), e))?;
        }
        self.set_up(name, index)?;
        for p in &iface.addresses {
            log::debug!("{name}: address {}/{}", p.addr, p.len);
            let msg = address_message(p, index);
            match self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &msg) {
                Ok(_) => {}
                Err(Errno::EEXIST) => log::debug!("{name}: {}/{} already present", p.addr, p.len),
                Err(e) => {
                    return Err(fail_v6(
                        format_args!("{name}: add address {}/{}", p.addr, p.len),
                        p.addr.is_ipv6(),
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
        let what = show_route(route, dev);
        log::debug!("{what}");
        let msg = route_message(route, index);
        match self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &msg) {
            Ok(_) => Ok(()),
            Err(Errno::EEXIST) => {
                log::debug!("{what}: already present");
                Ok(())
            }
            Err(e) => Err(fail_v6(format_args!("add {what}"), route.is_ipv6(), e)),
        }
    }
}

#[cfg(test)]
mod tests;

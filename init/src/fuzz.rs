//! The bodies of lupine-init's fuzz targets (`fuzz/fuzz_targets/{manifest,cmdline,ipconfig,
//! netlink,mmds}.rs`), here so that the targets (nightly, libFuzzer) and the replay of their corpora
//! and crash inputs (`tests/fuzz_corpus.rs`, stable) run the same code, on the parsers and
//! decoders PID 1 ships. Each takes the bytes of one input, reads them the way init reads its
//! input, and panics only when a property fails; every error must be a clear message.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};

use serde_json::Value;

use crate::config::{self, Source};
use crate::manifest::{self, Problems};
use crate::{cmdline, ipconfig, mmds, net};

/// Text as init reads files: `read_to_string` refuses what is not UTF-8.
fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Every problem of a refused manifest, as `--check` prints them: there is at least one.
fn report(problems: &Problems) -> String {
    assert!(
        !problems.0.is_empty(),
        "a manifest refused without a problem"
    );
    let mut out = String::new();
    for p in &problems.0 {
        let line = format!("FILE: {p}\n");
        assert!(line.len() > "FILE: \n".len(), "an empty problem: {p:?}");
        out += &line;
    }
    out
}

/// The manifest, as `lupine-init --check FILE` reads it, and as PID 1 merges a per-instance
/// fragment over it. The input is a manifest's text, or a manifest's text, a NUL byte, and the
/// bytes of a config drive (JSON text, zeros to its end).
///
/// Properties: a refused manifest has at least one problem; a manifest accepted alone
/// validates the same after `{}` or itself is merged over it (a merge drops its nulls, which
/// the validator reads as absent); merging a fragment twice gives what merging it once gave
/// (RFC 7386 patches are idempotent).
pub fn manifest(data: &[u8]) {
    let (manifest_bytes, fragment) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    // `--check` reads the whole file (a NUL makes it invalid JSON).
    if let Some(whole) = text(data) {
        match manifest::parse(whole) {
            Err(problems) => {
                report(&problems);
            }
            Ok(m) => {
                let doc = manifest::parse_json(whole).expect("parsed once already");
                let mut empty = doc.clone();
                config::merge(&mut empty, Value::Object(Default::default()));
                assert_eq!(
                    manifest::validate(&empty),
                    Ok(m.clone()),
                    "merged with {{}}"
                );
                let mut itself = doc.clone();
                config::merge(&mut itself, doc);
                assert_eq!(manifest::validate(&itself), Ok(m), "merged with itself");
            }
        }
    }
    // PID 1: the image's manifest, then the fragment of `lupine.config=/dev/vdb` over it.
    let (Some(manifest_text), Some(fragment)) = (text(manifest_bytes), fragment) else {
        return;
    };
    let Ok(mut doc) = manifest::parse_json(manifest_text) else {
        return;
    };
    let patch = match config::parse_fragment("/dev/vdb", fragment) {
        Ok(patch) => patch,
        Err(e) => {
            assert!(e.starts_with("/dev/vdb: "), "{e}");
            return;
        }
    };
    config::merge(&mut doc, patch.clone());
    let merged = manifest::validate(&doc);
    if let Err(problems) = &merged {
        report(problems);
    }
    let mut again = doc.clone();
    config::merge(&mut again, patch);
    assert_eq!(again, doc, "a fragment merged twice");
    assert_eq!(manifest::validate(&again), merged);
}

/// `/proc/cmdline`, and what PID 1 makes of the parameters it finds there: the log level, the
/// configuration source, the `ip=` network.
///
/// Property: the words after `--` are init's arguments: appending `-- lupine.log=debug ip=off`
/// to a command line whose quotes are closed changes nothing.
pub fn cmdline(data: &[u8]) {
    // A /proc/cmdline that is not UTF-8 reads as empty.
    let text = text(data).unwrap_or_default();
    let c = cmdline::parse(text);
    if let Some(level) = &c.log {
        let _ = manifest::parse_level(level);
    }
    if let Some(word) = &c.config {
        match Source::parse(word) {
            Ok(source) => {
                let _ = (source.name(), source.needs_network());
            }
            Err(e) => assert!(!e.is_empty()),
        }
    }
    if let Some(ip) = &c.ip {
        if let Err(e) = ipconfig::parse(ip) {
            assert!(!e.is_empty());
        }
    }
    if text.matches('"').count() % 2 == 0 {
        let longer = format!("{text} -- lupine.log=debug ip=off");
        assert_eq!(cmdline::parse(&longer), c, "{longer:?}");
    }
}

/// The value of the kernel's `ip=` parameter.
///
/// Properties: an error says something; an accepted value configures one interface with one
/// IPv4 address (`off` and `none`: nothing), a gateway only inside its subnet, at most two
/// name servers; and written back as `ip=` in full, it parses to the same configuration.
pub fn ipconfig(data: &[u8]) {
    let Some(value) = text(data) else {
        return;
    };
    let c = match ipconfig::parse(value) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.is_empty());
            return;
        }
    };
    let net = &c.network;
    if net.interfaces.is_empty() {
        assert!(matches!(value, "off" | "none"), "{value:?}: {c:?}");
        assert_eq!(c, ipconfig::parse("off").expect("off"));
        return;
    }
    assert_eq!(net.interfaces.len(), 1, "{c:?}");
    let iface = &net.interfaces[0];
    assert!(manifest::valid_ifname(&iface.name), "{c:?}");
    assert_eq!(iface.addresses.len(), 1, "{c:?}");
    let p = iface.addresses[0];
    let IpAddr::V4(client) = p.addr else {
        panic!("not IPv4: {c:?}");
    };
    assert!(p.len <= 32, "{c:?}");
    assert!(net.routes.len() <= 1 && net.nameservers.len() <= 2, "{c:?}");
    if let Some(h) = &c.hostname {
        assert!(manifest::valid_hostname(h), "{c:?}");
    }
    let mask = Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(p.len)).unwrap_or(0));
    let gateway = match net.routes.first() {
        None => String::new(),
        Some(r) => {
            let Some(IpAddr::V4(gw)) = r.gateway else {
                panic!("a route without an IPv4 gateway: {c:?}");
            };
            let m = u32::from(mask);
            assert_eq!(u32::from(gw) & m, u32::from(client) & m, "{c:?}");
            assert_eq!(r.dev.as_deref(), Some(iface.name.as_str()), "{c:?}");
            gw.to_string()
        }
    };
    let dns: Vec<String> = net.nameservers.iter().map(IpAddr::to_string).collect();
    let again = format!(
        "{client}::{gateway}:{mask}:{}:{}:off:{}",
        c.hostname.as_deref().unwrap_or(""),
        iface.name,
        dns.join(":")
    );
    assert_eq!(
        ipconfig::parse(&again).as_ref(),
        Ok(&c),
        "{value:?} -> {again:?}"
    );
}

/// One datagram from the kernel, read as the reply to the request whose sequence number its
/// first message carries (as the kernel's replies do), and as a datagram for another request.
///
/// Property: an ACK returns the link index noted so far.
pub fn netlink(data: &[u8]) {
    let seq = data
        .get(8..12)
        .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    for (seq, start) in [(seq, None), (seq.wrapping_add(1), Some(7))] {
        let mut index = start;
        match net::scan(data, seq, &mut index) {
            Some(Ok(found)) => assert_eq!(found, index),
            Some(Err(e)) => assert!(!e.desc().is_empty()),
            None => {}
        }
    }
}

/// A reader that hands out at most `size` bytes a call, as a socket may.
struct Pieces<'a> {
    data: &'a [u8],
    size: usize,
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.size.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// The MMDS client's HTTP response reader, on a response from the host: the first byte says
/// how many bytes each read returns (1 to 256), the rest is what the connection carries.
///
/// Properties: an error says something; how the bytes arrive changes nothing (the same
/// status and body, or the same error, as when they come at once); the body is what follows
/// the headers.
pub fn mmds(data: &[u8]) {
    let Some((&size, response)) = data.split_first() else {
        return;
    };
    let at_once = mmds::read_response(&mut &response[..]);
    let mut pieces = Pieces {
        data: response,
        size: usize::from(size) + 1,
    };
    assert_eq!(
        mmds::read_response(&mut pieces),
        at_once,
        "read {size}+1 at a time"
    );
    match at_once {
        Ok((_, body)) => {
            let head = response.windows(4).position(|w| w == b"\r\n\r\n");
            let after = &response[head.expect("a response without headers") + 4..];
            assert!(after.starts_with(&body), "{body:?}");
        }
        Err(e) => assert!(!e.is_empty()),
    }
}

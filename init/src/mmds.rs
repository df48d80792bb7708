//! A client for Firecracker's metadata service (MMDS) with its V2 session protocol: a `PUT`
//! for a session token, then `GET`s that carry it. Plain HTTP/1.1 over one TCP connection
//! per request; enough for a service at a fixed link-local address that answers in
//! microseconds, and a few KB of PID 1 instead of an HTTP crate.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const ADDRESS: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(169, 254, 169, 254),
    80,
));
/// The token only has to outlive this boot's requests.
const TOKEN_TTL_S: u32 = 60;
const TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts, with a pause that doubles from [`FIRST_PAUSE`] between them: the service may
/// not answer the very first packets (ARP, a host that is still setting it up).
const TRIES: u32 = 4;
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const MAX_RESPONSE: u64 = 1 << 20;

/// The JSON document at `path` of the data store. Errors name the request and never show
/// the token or the document.
pub fn get(path: &str) -> Result<Vec<u8>, String> {
    let mut pause = FIRST_PAUSE;
    for tries in 1.. {
        let e = match session_get(path) {
            Ok(body) => return Ok(body),
            // The service answered no: trying again will not help.
            Err((Some(status), e)) if (400..500).contains(&status) => {
                return Err(format!("mmds {path}: {e}"))
            }
            Err((_, e)) => e,
        };
        if tries == TRIES {
            return Err(format!(
                "mmds {path}: {e} (after {TRIES} tries: is MMDS enabled on this interface, \
                 with a route to {ADDRESS}?)"
            ));
        }
        log::debug!("mmds {path}: {e}; trying again");
        std::thread::sleep(pause);
        pause *= 2;
    }
    unreachable!()
}

/// A failed request: the HTTP status if there was an answer, and what went wrong.
type Failure = (Option<u16>, String);

fn session_get(path: &str) -> Result<Vec<u8>, Failure> {
    let ttl = format!("X-metadata-token-ttl-seconds: {TOKEN_TTL_S}");
    let token = request("PUT", "/latest/api/token", &ttl)?;
    let token = String::from_utf8(token)
        .ok()
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or((Some(400), "PUT /latest/api/token: not a token".into()))?;
    let headers = format!("X-metadata-token: {token}\r\nAccept: application/json");
    request("GET", path, &headers)
}

/// One request on a fresh connection, with `headers` (CRLF-separated); the body of a 200
/// response.
fn request(method: &str, path: &str, headers: &str) -> Result<Vec<u8>, Failure> {
    let failed = |status, e: &dyn std::fmt::Display| (status, format!("{method} {path}: {e}"));
    let mut s = TcpStream::connect_timeout(&ADDRESS, TIMEOUT).map_err(|e| failed(None, &e))?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 169.254.169.254\r\n{headers}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let (status, body) = s
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(TIMEOUT)))
        .and_then(|()| s.write_all(req.as_bytes()))
        .map_err(|e| e.to_string())
        .and_then(|()| read_response(&mut s))
        .map_err(|e| failed(None, &e))?;
    let hint = match status {
        200 => return Ok(body),
        401 => " (token refused)",
        404 => " (no such path in the metadata)",
        _ => "",
    };
    Err(failed(Some(status), &format_args!("HTTP {status}{hint}")))
}

/// The status and body of an HTTP/1.x response: the body as Content-Length says, else up to
/// the end of the connection.
pub(crate) fn read_response(s: &mut impl Read) -> Result<(u16, Vec<u8>), String> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if data.len() as u64 > MAX_RESPONSE {
            return Err("response headers too long".into());
        }
        match s.read(&mut chunk) {
            Ok(0) => return Err("connection closed before a response".into()),
            Ok(n) => data.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e.to_string()),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .filter(|_| head.starts_with("HTTP/1."))
        .ok_or("not an HTTP response")?;
    let length = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<u64>().ok())?
    });
    let mut body = data.split_off(head_end);
    match length {
        Some(n) if n > MAX_RESPONSE => return Err(format!("response of {n} bytes")),
        Some(n) => {
            // What follows the body (the read took more) is not this response's.
            body.truncate(n as usize);
            let missing = n.saturating_sub(body.len() as u64);
            s.take(missing)
                .read_to_end(&mut body)
                .map_err(|e| e.to_string())?;
            if body.len() as u64 != n {
                return Err("connection closed inside the response".into());
            }
        }
        None => {
            s.take(MAX_RESPONSE)
                .read_to_end(&mut body)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(u16, Vec<u8>), String> {
        read_response(&mut text.as_bytes())
    }

    #[test]
    fn responses() {
        let ok = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 7\r\n\r\n{\"a\":1}";
        assert_eq!(parse(ok), Ok((200, b"{\"a\":1}".to_vec())));
        let no = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(parse(no), Ok((401, vec![])));
        let until_close = "HTTP/1.0 200 OK\r\n\r\nabc";
        assert_eq!(parse(until_close), Ok((200, b"abc".to_vec())));
        // Found by fuzzing: bytes after Content-Length were an error when they came in the
        // same read as the headers, and ignored when they came later.
        let more = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}trailing";
        assert_eq!(parse(more), Ok((200, b"{}".to_vec())));
        assert!(parse("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc").is_err());
        assert!(parse("SSH-2.0-x\r\n\r\n").is_err());
        assert!(parse("HTTP/1.1 200 OK\r\n").is_err());
    }
}

//! A syslog server's reading side for the tests of lupine-init's TCP client.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::time::Duration;

/// The MSG part of each octet-counted frame up to one that starts with `last`, or until the
/// client has sent nothing for 10 s; panics on a frame that is cut or not octet-counted.
pub fn read_messages(stream: TcpStream, last: &str) -> Vec<String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut messages = Vec::new();
    loop {
        let mut len = Vec::new();
        match reader.read_until(b' ', &mut len) {
            Ok(0) | Err(_) if len.is_empty() => return messages,
            _ => {}
        }
        let size: usize = std::str::from_utf8(&len)
            .ok()
            .and_then(|l| l.strip_suffix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("not a frame: {:?}", String::from_utf8_lossy(&len)));
        let mut frame = vec![0u8; size];
        reader
            .read_exact(&mut frame)
            .unwrap_or_else(|e| panic!("a frame of {size} bytes cut: {e}"));
        let frame = String::from_utf8(frame).unwrap();
        // <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID - - MSG
        let msg = frame
            .splitn(8, ' ')
            .nth(7)
            .unwrap_or_else(|| panic!("{frame}"));
        messages.push(msg.to_string());
        if msg.starts_with(last) {
            return messages;
        }
    }
}

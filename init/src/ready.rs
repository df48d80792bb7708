//! Readiness: whether the app listens on the manifest's `ready` socket yet, read from the
//! kernel's socket tables in /proc/net (no connection is made, so the app sees nothing), and
//! the time since the kernel started.

use std::fs;

use crate::manifest::Ready;

/// Whether a socket in LISTEN state matches `ready`.
pub fn listening(ready: &Ready) -> bool {
    let read = |table: &str| fs::read_to_string(format!("/proc/net/{table}")).unwrap_or_default();
    match ready {
        Ready::Tcp(port) => {
            tcp_listening(&read("tcp"), *port) || tcp_listening(&read("tcp6"), *port)
        }
        Ready::Unix(path) => unix_listening(&read("unix"), path),
    }
}

/// In the text of /proc/net/tcp or tcp6: a socket bound to `port` in state 0A (LISTEN).
fn tcp_listening(table: &str, port: u16) -> bool {
    let want = format!(":{port:04X}");
    table.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
    })
}

/// In the text of /proc/net/unix: a stream socket at `path` that accepts connections (flag
/// __SO_ACCEPTCON, 0x10000).
fn unix_listening(table: &str, path: &str) -> bool {
    table.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let accepting = f
            .get(3)
            .and_then(|flags| u32::from_str_radix(flags, 16).ok())
            .is_some_and(|flags| flags & 0x10000 != 0);
        accepting && f.get(7) == Some(&path)
    })
}

/// Milliseconds since the kernel started (CLOCK_BOOTTIME). u64, not u128: printing a u128
/// links another kilobyte into PID 1.
pub fn since_boot_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 17519 1 0000000000000000 100 0 0 10 0
   1: 0100007F:18EB 0100007F:9C4A 01 00000000:00000000 00:00000000 00000000     0        0 17520 1 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 17600 1 0000000000000000 100 0 0 10 0
";
    const UNIX: &str = "Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 17000 /run/app.sock
0000000000000000: 00000003 00000000 00000000 0001 03 17001 /run/client.sock
0000000000000000: 00000002 00000000 00010000 0001 01 17002 @abstract
0000000000000000: 00000002 00000000 00000000 0002 01 17003
";

    #[test]
    fn tcp_sockets_in_listen_state_by_port() {
        assert!(tcp_listening(TCP, 8080));
        assert!(!tcp_listening(TCP, 6379), "connected, not listening");
        assert!(!tcp_listening(TCP, 80));
        assert!(tcp_listening(TCP6, 80));
        assert!(!tcp_listening("", 80));
    }

    #[test]
    fn unix_sockets_that_accept_by_path() {
        assert!(unix_listening(UNIX, "/run/app.sock"));
        assert!(!unix_listening(UNIX, "/run/client.sock"), "not accepting");
        assert!(!unix_listening(UNIX, "/run/other.sock"));
        assert!(!unix_listening("", "/run/app.sock"));
    }

    #[test]
    fn the_clock_counts_from_boot() {
        let a = since_boot_ms();
        assert!(a > 0 && since_boot_ms() >= a);
    }
}

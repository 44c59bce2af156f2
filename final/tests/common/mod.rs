//! What the process tests share: free loopback ports that stay theirs.

use std::net::TcpListener;
use std::sync::Mutex;

/// The ports handed out so far in this test binary.
static TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// The first port of the range the kernel picks a client's own port from.
fn first_ephemeral() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768)
        .max(20_000)
}

/// `count` free loopback ports, below the range the kernel picks a
/// client's own port from. A server's port in that range could be taken
/// while the server is down: by any client, or by a client of that very
/// server, since Linux may connect a socket to itself when its destination
/// is its own port and nothing listens. The server then could not start
/// again.
///
/// The tests of a file run at once, each with its own servers: no two may
/// get the same port, even one free again after a server was killed.
/// Otherwise one ensemble's servers, connecting to a killed peer's port,
/// reach another ensemble's server and take part in its elections (its
/// followers, hearing a leader, never elect their own).
#[allow(dead_code, reason = "each test binary uses what it needs")]
pub(crate) fn free_ports(count: usize) -> Vec<u16> {
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut ports = Vec::new();
    while ports.len() < count {
        let port = fastrand::u16(10_000..first_ephemeral());
        // Free now (another process could take it before the server
        // does, which is unlikely on a test machine).
        if !taken.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            taken.push(port);
            ports.push(port);
        }
    }
    ports
}

/// The first of `len` consecutive free ports (as [`free_ports`] chooses
/// them), for a command that counts its ports up from one.
#[allow(dead_code, reason = "each test binary uses what it needs")]
pub(crate) fn free_run(len: u16) -> u16 {
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let first = fastrand::u16(10_000..first_ephemeral() - len);
        let run = first..first + len;
        let free = run
            .clone()
            .all(|port| !taken.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok());
        if free {
            taken.extend(run);
            return first;
        }
    }
}

//! The benchmarks live in `benches/benches/`, one file per chapter: run them
//! with `cargo bench -p kfs-benches`. Each one measures its baseline (what
//! the machine can do without our code in the way) in the same run, so the
//! book can quote ratios rather than raw numbers from different days.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// The baseline a broker cannot beat: `bytes` sent over a loopback TCP
/// connection, in 64 KiB writes, to a thread that appends them to a file in
/// `dir`, until that thread confirms it has written them all. Returns how
/// long that took. Panics on any I/O error: this is a measurement, not a
/// server.
pub fn loopback_to_file(bytes: usize, dir: &Path) -> Duration {
    loopback_to_files(bytes, dir, 1)
}

/// [`loopback_to_file`] over `streams` connections at once, each carrying
/// `bytes` to a file of its own: what the machine allows when every byte
/// must cross loopback and reach a file `streams` times, as a write
/// replicated three times on one machine must (the producer to the leader,
/// the leader to each follower, each into a log). Returns how long the last
/// stream took.
pub fn loopback_to_files(bytes: usize, dir: &Path, streams: usize) -> Duration {
    let listeners: Vec<_> = (0..streams)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind loopback"))
        .collect();
    let start = Instant::now();
    let streams: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(i, listener)| {
            let addr = listener.local_addr().expect("a bound address");
            let path = dir.join(format!("baseline-{i}"));
            let receiver = std::thread::spawn(move || receive_to_file(listener, &path, bytes));
            let sender = std::thread::spawn(move || send(addr, bytes));
            (sender, receiver)
        })
        .collect();
    for (sender, receiver) in streams {
        sender.join().expect("a sender thread");
        receiver.join().expect("a receiver thread");
    }
    start.elapsed()
}

/// Sends `bytes` to `addr` in 64 KiB writes, and waits for the receiver to
/// confirm it has written them all.
fn send(addr: std::net::SocketAddr, bytes: usize) {
    let chunk = vec![0xab; 64 * 1024];
    let mut stream = TcpStream::connect(addr).expect("connect");
    let mut sent = 0;
    while sent < bytes {
        let n = chunk.len().min(bytes - sent);
        stream.write_all(&chunk[..n]).expect("send");
        sent += n;
    }
    let mut done = [0; 1];
    stream.read_exact(&mut done).expect("the confirmation");
}

/// Accepts one connection, appends `bytes` from it to a new file at
/// `path`, confirms with one byte, and deletes the file.
fn receive_to_file(listener: TcpListener, path: &Path, bytes: usize) {
    let (mut stream, _) = listener.accept().expect("accept");
    let mut file = File::create(path).expect("create the baseline file");
    let mut buf = vec![0; 64 * 1024];
    let mut received = 0;
    while received < bytes {
        let n = stream.read(&mut buf).expect("read");
        assert!(n > 0, "the sender hung up early");
        file.write_all(&buf[..n]).expect("write");
        received += n;
    }
    stream.write_all(&[1]).expect("confirm");
    drop(file);
    // A leftover file is only disk space in a scratch directory.
    let _ = std::fs::remove_file(path);
}

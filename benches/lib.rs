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
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("a bound address");
    let path = dir.join("baseline");
    let receiver = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut file = File::create(&path).expect("create the baseline file");
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
        let _ = std::fs::remove_file(&path);
    });
    let chunk = vec![0xab; 64 * 1024];
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("connect");
    let mut sent = 0;
    while sent < bytes {
        let n = chunk.len().min(bytes - sent);
        stream.write_all(&chunk[..n]).expect("send");
        sent += n;
    }
    let mut done = [0; 1];
    stream.read_exact(&mut done).expect("the confirmation");
    let elapsed = start.elapsed();
    receiver.join().expect("the receiver thread");
    elapsed
}

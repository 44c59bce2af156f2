//! `loopback-baseline BYTES DIR [STREAMS]`: the end-to-end harnesses'
//! baseline (`benches/e2e.sh`, `benches/e2e-replication.sh`). Sends BYTES
//! over loopback TCP to a thread that appends them to a file in DIR, three
//! times, and prints the best run's rate in MB/s (MiB, as Kafka's tools
//! count), the limit a broker on this machine cannot beat. With STREAMS
//! (default 1), that many connections carry BYTES each at the same time,
//! and the rate printed is one stream's: what each copy of a write gets
//! when the machine must move every byte STREAMS times.

use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(bytes), Some(dir)) = (args.next(), args.next()) else {
        usage();
    };
    let Ok(bytes) = bytes.parse::<usize>() else {
        eprintln!("error: BYTES must be a whole number, got {bytes:?}");
        std::process::exit(2);
    };
    let streams = match args.next().map(|s| s.parse::<usize>()) {
        None => 1,
        Some(Ok(n)) if n >= 1 => n,
        Some(_) => usage(),
    };
    let dir = PathBuf::from(dir);
    let best = (0..3)
        .map(|_| kfs_benches::loopback_to_files(bytes, &dir, streams))
        .min()
        .expect("three runs");
    println!(
        "{:.2}",
        bytes as f64 / (1024.0 * 1024.0) / best.as_secs_f64()
    );
}

fn usage() -> ! {
    eprintln!("usage: loopback-baseline BYTES DIR [STREAMS (at least 1)]");
    std::process::exit(2);
}

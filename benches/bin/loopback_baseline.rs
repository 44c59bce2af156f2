//! `loopback-baseline BYTES DIR`: the end-to-end harness's baseline
//! (`benches/e2e.sh`). Sends BYTES over loopback TCP to a thread that
//! appends them to a file in DIR, three times, and prints the best run's
//! rate in MB/s (MiB, as Kafka's tools count), the limit a broker on this
//! machine cannot beat.

use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(bytes), Some(dir)) = (args.next(), args.next()) else {
        eprintln!("usage: loopback-baseline BYTES DIR");
        std::process::exit(2);
    };
    let Ok(bytes) = bytes.parse::<usize>() else {
        eprintln!("error: BYTES must be a whole number, got {bytes:?}");
        std::process::exit(2);
    };
    let dir = PathBuf::from(dir);
    let best = (0..3)
        .map(|_| kfs_benches::loopback_to_file(bytes, &dir))
        .min()
        .expect("three runs");
    println!(
        "{:.2}",
        bytes as f64 / (1024.0 * 1024.0) / best.as_secs_f64()
    );
}

//! `kfs`: the command-line front door of Kafka from Scratch.
//!
//! It will run the broker and the tools operators expect (`kfs broker`,
//! `kfs topics`, `kfs produce`, `kfs consume`, `kfs perf`) once there is a
//! networked broker to run (chapter 4). Until then it says what exists.

use clap::Parser;

/// Kafka from Scratch: a Kafka-like broker built one chapter at a time.
#[derive(Debug, Parser)]
#[command(name = "kfs", version, about)]
struct Cli {}

fn main() {
    let Cli {} = Cli::parse();
    println!(
        "kfs {}: there is no broker to run yet; it arrives with chapter 4.\n\
         Try the newest chapter's demo: cargo run -p ch04-network --example tour",
        env!("CARGO_PKG_VERSION")
    );
}

//! `simulate`: runs the fault lab over many seeds, or replays one.
//!
//! ```text
//! cargo run --release -p ch06-replication --bin simulate -- --seeds 100000
//! cargo run --release -p ch06-replication --bin simulate -- --seed 1234 --trace
//! ```

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use ch06_replication::lab::checker::Expect;
use ch06_replication::lab::{self, Faults, Scenario};
use ch06_replication::replica::{Flush, Truncation};
use ch06_replication::sim::run_seeds;
use clap::{Parser, ValueEnum};

/// Runs the replication fault lab: a three-broker partition under random
/// faults, every run checked for lost acknowledged writes, reads that
/// disappear, high watermarks that go back and replicas that disagree. A
/// write lost because every in-sync replica crashed before syncing it is
/// excused, as Kafka's guarantee exempts it, and counted.
#[derive(Parser)]
struct Args {
    /// Run this many seeds, from `--start`.
    #[arg(long, default_value_t = 1000)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Replay one seed, and print what happened.
    #[arg(long)]
    seed: Option<u64>,
    /// With `--seed`: print every message too.
    #[arg(long)]
    trace: bool,
    /// End the faults with every broker losing power at once.
    #[arg(long)]
    power_loss: bool,
    /// Pause and resume brokers too (`SIGSTOP`, `SIGCONT`).
    #[arg(long, conflicts_with = "power_loss")]
    pauses: bool,
    /// When replicas sync their logs.
    #[arg(long, value_enum, default_value_t = FlushArg::Os)]
    flush: FlushArg,
    /// How followers truncate.
    #[arg(long, value_enum, default_value_t = TruncationArg::LeaderEpoch)]
    truncation: TruncationArg,
    /// Allow unclean leader elections.
    #[arg(long)]
    unclean: bool,
}

/// `--flush`.
#[derive(Clone, Copy, ValueEnum)]
enum FlushArg {
    /// Leave it to the operating system (Kafka's default).
    Os,
    /// Sync before a write counts.
    BeforeAck,
}

/// `--truncation`.
#[derive(Clone, Copy, ValueEnum)]
enum TruncationArg {
    /// By leader epoch (KIP-101).
    LeaderEpoch,
    /// To the high watermark (before KIP-101).
    HighWatermark,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let scenario = Scenario {
        faults: if args.power_loss {
            Faults::PowerLoss
        } else if args.pauses {
            Faults::Pauses
        } else {
            Faults::Random
        },
        flush: match args.flush {
            FlushArg::Os => Flush::Os,
            FlushArg::BeforeAck => Flush::BeforeAck,
        },
        truncation: match args.truncation {
            TruncationArg::LeaderEpoch => Truncation::LeaderEpoch,
            TruncationArg::HighWatermark => Truncation::HighWatermark,
        },
        unclean_leader_election: args.unclean,
        ..Scenario::default()
    };
    match args.seed {
        Some(seed) => replay(seed, &scenario, args.trace),
        None => many(args.start..args.start + args.seeds, &scenario),
    }
}

/// Runs one seed and prints its trace and history.
fn replay(seed: u64, scenario: &Scenario, trace_messages: bool) -> ExitCode {
    let (sim, result) = lab::run_traced(seed, scenario, trace_messages);
    if sim.print_replay(seed, &result) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs many seeds on every core, with a progress line.
fn many(seeds: std::ops::Range<u64>, scenario: &Scenario) -> ExitCode {
    let acknowledged = AtomicUsize::new(0);
    let lost = AtomicUsize::new(0);
    let excused = AtomicUsize::new(0);
    let excused_reads = AtomicUsize::new(0);
    let result = run_seeds(
        seeds,
        |seed| {
            let report = lab::run(seed, scenario)?;
            acknowledged.fetch_add(report.acknowledged, Ordering::Relaxed);
            lost.fetch_add(report.lost, Ordering::Relaxed);
            excused.fetch_add(report.excused, Ordering::Relaxed);
            excused_reads.fetch_add(report.excused_reads, Ordering::Relaxed);
            Ok(())
        },
        |seed| lab::replay_command(seed, scenario),
    );
    match result {
        Ok(passed) => {
            let (acknowledged, lost) = (acknowledged.into_inner(), lost.into_inner());
            let (excused, excused_reads) = (excused.into_inner(), excused_reads.into_inner());
            println!(
                "{passed} seeds passed: {acknowledged} writes acknowledged, {lost} of them lost, \
                 {excused} excused (and {excused_reads} reads excused): every in-sync replica \
                 had crashed before syncing them"
            );
            if scenario.expect() == Expect::MayLose {
                println!("(this scenario goes beyond what the configuration promises to survive)");
            }
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("{failure}");
            ExitCode::FAILURE
        }
    }
}

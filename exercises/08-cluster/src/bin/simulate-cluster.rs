//! `simulate-cluster`: runs the cluster's fault lab over many seeds, or replays one.
//!
//! ```text
//! cargo run --release -p ch08-cluster --bin simulate-cluster -- --seeds 1000 --pauses
//! cargo run --release -p ch08-cluster --bin simulate-cluster -- --seed 1234 --trace
//! ```

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use ch06_replication::sim::run_seeds;
use ch08_cluster::lab::{self, Faults, Scenario};
use clap::Parser;

/// Runs the cluster fault lab: coordinator servers and brokers electing a
/// controller, under random faults, every run checked for lost
/// acknowledged writes, reads that disappear, two leaders in an epoch, two
/// controllers in an epoch, and decisions stored or obeyed out of epoch
/// order. A write lost because every in-sync replica crashed before
/// syncing it is excused, as Kafka's guarantee exempts it, and counted.
#[derive(Parser)]
struct Args {
    /// Run this many seeds, from `--start`.
    #[arg(long, default_value_t = 100)]
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
    /// Pause and resume nodes too (`SIGSTOP`, `SIGCONT`).
    #[arg(long)]
    pauses: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let scenario = Scenario {
        faults: if args.pauses {
            Faults::Pauses
        } else {
            Faults::Random
        },
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
    let excused = AtomicUsize::new(0);
    let excused_reads = AtomicUsize::new(0);
    let controllers = AtomicU64::new(0);
    let result = run_seeds(
        seeds,
        |seed| {
            let report = lab::run(seed, scenario)?;
            acknowledged.fetch_add(report.lab.acknowledged, Ordering::Relaxed);
            excused.fetch_add(report.lab.excused, Ordering::Relaxed);
            excused_reads.fetch_add(report.lab.excused_reads, Ordering::Relaxed);
            controllers.fetch_add(report.controller_epochs, Ordering::Relaxed);
            Ok(())
        },
        |seed| lab::replay_command(seed, scenario),
    );
    match result {
        Ok(passed) => {
            println!(
                "{passed} seeds passed: {} writes acknowledged, none lost but {} excused \
                 (and {} reads excused): every in-sync replica had crashed before syncing them; \
                 {} controllers elected",
                acknowledged.into_inner(),
                excused.into_inner(),
                excused_reads.into_inner(),
                controllers.into_inner()
            );
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("{failure}");
            ExitCode::FAILURE
        }
    }
}

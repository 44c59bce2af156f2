//! The fault lab in one run: a hundred seeds of each scenario, what each
//! acknowledged and lost, and the first seed that fails without leader
//! epochs, with the command that replays it.
//!
//! ```text
//! cargo run -p ch06-replication --example lab
//! ```

use ch06_replication::lab::checker::Expect;
use ch06_replication::lab::{self, Faults, Scenario};
use ch06_replication::replica::{Flush, Truncation};

const SEEDS: u64 = 100;

fn main() {
    let default = Scenario::default();
    let scenarios = [
        ("random faults, Kafka's defaults", default),
        (
            "random faults, then a power loss",
            Scenario {
                faults: Faults::PowerLoss,
                ..default
            },
        ),
        (
            "the same, flushing before acknowledging",
            Scenario {
                faults: Faults::PowerLoss,
                flush: Flush::BeforeAck,
                ..default
            },
        ),
        (
            "random faults, unclean leader election",
            Scenario {
                unclean_leader_election: true,
                ..default
            },
        ),
    ];
    println!("{SEEDS} seeds of each scenario (3 brokers, min.insync.replicas=2, acks=all):");
    println!();
    println!(
        "{:<42} {:>12} {:>6} {:>7}",
        "scenario", "acknowledged", "lost", "failed"
    );
    for (name, scenario) in scenarios {
        let (mut acknowledged, mut lost, mut failed) = (0, 0, 0);
        for seed in 0..SEEDS {
            match lab::run(seed, &scenario) {
                Ok(report) => {
                    acknowledged += report.acknowledged;
                    lost += report.lost;
                }
                Err(_) => failed += 1,
            }
        }
        let promise = match scenario.expect() {
            Expect::NoLoss => "",
            Expect::MayLose => "  (beyond the promise)",
        };
        println!("{name:<42} {acknowledged:>12} {lost:>6} {failed:>7}{promise}");
    }

    let old = Scenario {
        truncation: Truncation::HighWatermark,
        ..default
    };
    println!();
    println!("Without leader epochs (followers truncate to their high watermark):");
    match (0..1000).find_map(|seed| lab::run(seed, &old).err().map(|e| (seed, e))) {
        Some((seed, error)) => {
            println!("seed {seed} failed: {error}");
            println!("replay: {}", lab::replay_command(seed, &old));
        }
        None => println!("no failure in 1000 seeds"),
    }
}

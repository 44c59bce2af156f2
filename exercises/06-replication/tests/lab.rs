//! The fault lab over many seeds: each run is a three-broker partition
//! under random faults, checked by `lab::checker`. CI runs a few hundred
//! seeds per scenario (`LAB_SEEDS` sets how many); the `simulate` binary
//! runs as many as asked:
//! `cargo run --release -p ch06-replication --bin simulate -- --seeds 100000`.

use ch06_replication::lab::{self, Faults, Scenario};
use ch06_replication::replica::{Flush, Truncation};
use ch06_replication::sim::run_seeds;

/// How many seeds each scenario runs.
fn seeds() -> u64 {
    std::env::var("LAB_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

/// Runs every seed of `scenario`; fails with the first failing seed and
/// the command that replays it. Returns (acknowledged, lost).
fn run_all(scenario: Scenario) -> (usize, usize) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (acknowledged, lost) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let result = run_seeds(
        0..seeds(),
        |seed| {
            let report = lab::run(seed, &scenario)?;
            acknowledged.fetch_add(report.acknowledged, Ordering::Relaxed);
            lost.fetch_add(report.lost, Ordering::Relaxed);
            Ok(())
        },
        |seed| lab::replay_command(seed, &scenario),
    );
    if let Err(failure) = result {
        panic!("{failure}");
    }
    (acknowledged.into_inner(), lost.into_inner())
}

#[test]
fn random_faults_lose_no_acknowledged_write() {
    let (acknowledged, lost) = run_all(Scenario::default());
    assert!(
        acknowledged > 1000,
        "the runs did work: {acknowledged} acknowledged"
    );
    assert_eq!(lost, 0);
}

/// A paused leader is replaced, and wakes up with produce requests and
/// fetches to answer as the leader it no longer is: leader epochs fence it,
/// and nothing acknowledged is lost.
#[test]
fn brokers_paused_and_resumed_lose_no_acknowledged_write() {
    let (acknowledged, lost) = run_all(Scenario {
        faults: Faults::Pauses,
        ..Scenario::default()
    });
    assert!(acknowledged > 1000);
    assert_eq!(lost, 0);
}

/// The pauses make zombies: in some runs a leader is paused, another
/// broker is elected while it sleeps, and it wakes up after that. Without
/// such runs the test above would prove little.
#[test]
fn a_paused_leader_is_replaced_and_wakes_up_a_zombie() {
    use ch06_replication::lab::nodes::Event;
    let scenario = Scenario {
        faults: Faults::Pauses,
        ..Scenario::default()
    };
    let zombies = (0..50).filter(|&seed| {
        let (sim, result) = lab::run_traced(seed, &scenario, false);
        result.expect("no loss");
        let leader_at = |at: u64| {
            let history = sim.history().iter();
            let elected = history.take_while(|(when, _, _)| *when < at);
            let leaders = elected.filter_map(|(_, _, event)| match event {
                Event::Elected { leader, .. } => Some(*leader),
                _ => None,
            });
            leaders.last().flatten()
        };
        sim.pauses().iter().any(|pause| {
            pause.resumed.is_some_and(|woke_at| {
                leader_at(pause.from + 1) == Some(pause.id) && leader_at(woke_at) != Some(pause.id)
            })
        })
    });
    assert!(zombies.count() > 0, "no paused leader woke up replaced");
}

#[test]
fn flushing_before_acknowledging_survives_a_power_loss() {
    let (acknowledged, lost) = run_all(Scenario {
        faults: Faults::PowerLoss,
        flush: Flush::BeforeAck,
        ..Scenario::default()
    });
    assert!(acknowledged > 1000);
    assert_eq!(lost, 0);
}

#[test]
fn kafkas_default_flush_loses_acknowledged_writes_in_a_power_loss() {
    // Acknowledged once in every in-sync replica's memory: when every
    // replica loses its memory at once, some acknowledged writes go.
    let (_, lost) = run_all(Scenario {
        faults: Faults::PowerLoss,
        ..Scenario::default()
    });
    assert!(lost > 0, "a power loss lost nothing in {} seeds", seeds());
}

#[test]
fn unclean_leader_election_loses_acknowledged_writes() {
    let (_, lost) = run_all(Scenario {
        unclean_leader_election: true,
        ..Scenario::default()
    });
    assert!(
        lost > 0,
        "unclean elections lost nothing in {} seeds",
        seeds()
    );
}

#[test]
fn without_leader_epochs_the_lab_finds_kip_101() {
    let scenario = Scenario {
        truncation: Truncation::HighWatermark,
        ..Scenario::default()
    };
    let failing = (0..500).find(|&seed| lab::run(seed, &scenario).is_err());
    assert!(
        failing.is_some(),
        "high-watermark truncation passed 500 seeds"
    );
}

#[test]
fn a_seed_replays_bit_for_bit() {
    let scenario = Scenario::default();
    let (first, a) = lab::run_traced(7, &scenario, true);
    let (second, b) = lab::run_traced(7, &scenario, true);
    assert_eq!(a, b);
    assert_eq!(first.trace(), second.trace());
    assert_eq!(
        format!("{:?}", first.history()),
        format!("{:?}", second.history())
    );
    let (other, _) = lab::run_traced(8, &scenario, true);
    assert_ne!(first.trace(), other.trace(), "another seed, another run");
}

#[test]
fn the_replay_command_names_the_scenario() {
    let scenario = Scenario {
        faults: Faults::PowerLoss,
        flush: Flush::BeforeAck,
        ..Scenario::default()
    };
    assert_eq!(
        lab::replay_command(42, &scenario),
        "cargo run --release -p ch06-replication --bin simulate -- --seed 42 --power-loss --flush before-ack"
    );
}

//! The fault lab: a replicated partition run in the simulator under
//! faults, and checked.
//!
//! [`run`] builds a cluster in a [`Sim`] (a controller, three brokers, a
//! producer writing with `acks=all`, a consumer), lets the faults of its
//! [`Scenario`] loose for a while, ends them, lets the cluster settle, and
//! hands the history and the replicas' logs to the [`checker`]. A seed
//! decides everything, so a failing run is replayed exactly by its seed:
//! `cargo run --release -p ch06-replication --bin simulate -- --seed N`.

pub mod checker;
pub mod nodes;

use crate::controller::{Controller, ControllerConfig};
use crate::manager::ManagerConfig;
use crate::memory::MemoryStorage;
use crate::replica::{Flush, ReplicaConfig, Truncation};
use crate::sim::{Millis, Nemesis, NodeId, Sim, SimConfig};
use crate::storage::ReplicaLog;

use checker::{Expect, FinalReplica, Report};
use nodes::{
    BrokerNode, CONTROLLER, ConsumerNode, ControllerNode, LabConfig, LabNode, ProducerNode,
};

/// The producer's node id.
pub const PRODUCER: NodeId = 100;
/// The consumer's node id.
pub const CONSUMER: NodeId = 101;

/// The faults a run inflicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Faults {
    /// The nemesis: partitions (one-way too), one broker crashed at a time,
    /// clock jumps, on a network that drops, duplicates and reorders.
    Random,
    /// The same, and then every broker loses power at once.
    PowerLoss,
    /// The random faults, and brokers paused and resumed (as with
    /// `SIGSTOP` and `SIGCONT`): a leader paused long enough is replaced,
    /// and wakes up still believing it leads, with writes to answer and
    /// followers to serve. Leader epochs must fence it.
    Pauses,
}

/// One kind of run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    /// The faults.
    pub faults: Faults,
    /// When replicas sync.
    pub flush: Flush,
    /// How followers truncate.
    pub truncation: Truncation,
    /// `unclean.leader.election.enable`.
    pub unclean_leader_election: bool,
    /// How long the faults go on.
    pub fault_ms: Millis,
    /// How long the cluster then has to recover.
    pub settle_ms: Millis,
}

impl Default for Scenario {
    /// Random faults against Kafka's defaults: epochs, no fsync, clean
    /// elections; ten seconds of faults and ten of quiet.
    fn default() -> Scenario {
        Scenario {
            faults: Faults::Random,
            flush: Flush::Os,
            truncation: Truncation::LeaderEpoch,
            unclean_leader_election: false,
            fault_ms: 10_000,
            settle_ms: 10_000,
        }
    }
}

impl Scenario {
    /// Whether the scenario goes beyond what the configuration promises to
    /// survive, so that losing acknowledged writes is a finding, not a bug.
    pub fn expect(&self) -> Expect {
        let power_loss_unsynced = self.faults == Faults::PowerLoss && self.flush == Flush::Os;
        if power_loss_unsynced || self.unclean_leader_election {
            Expect::MayLose
        } else {
            Expect::NoLoss
        }
    }

    /// The lab's timings: Kafka's settings scaled down to a simulated
    /// cluster where a fault comes every few hundred milliseconds.
    pub fn config(&self) -> LabConfig {
        LabConfig {
            manager: ManagerConfig {
                replica: ReplicaConfig {
                    replica_lag_time_max_ms: 500,
                    min_insync_replicas: 2,
                    replica_fetch_max_bytes: 16 * 1024,
                    retry_ms: 200,
                    truncation: self.truncation,
                    flush: self.flush,
                },
                request_timeout_ms: 800,
                high_watermark_checkpoint_interval_ms: 500,
            },
            controller: ControllerConfig {
                session_timeout_ms: 600,
                unclean_leader_election: self.unclean_leader_election,
                min_insync_replicas: 2,
            },
            brokers: 3,
            heartbeat_ms: 100,
            write_back_ms: 1_000,
            client_timeout_ms: 1_000,
            produce_until_ms: self.fault_ms,
        }
    }
}

/// Builds the cluster: the controller (node 0), brokers 1 to 3, the
/// producer and the consumer.
pub fn build(seed: u64, scenario: &Scenario, trace_messages: bool) -> Sim<LabNode> {
    let config = scenario.config();
    let mut sim_config = SimConfig::faulty();
    sim_config.trace_messages = trace_messages;
    sim_config.nemesis = Some(Nemesis {
        // A power loss is the scenario's own, at a moment it picks.
        crash_all: 0,
        pause: if scenario.faults == Faults::Pauses {
            2
        } else {
            0
        },
        resume: if scenario.faults == Faults::Pauses {
            3
        } else {
            0
        },
        max_crashed: 1,
        ..Nemesis::default()
    });
    let mut sim = Sim::new(seed, sim_config);
    sim.add_node(CONTROLLER, MemoryStorage::new(), false, move |_, _, _| {
        LabNode::Controller(ControllerNode::new(&config))
    });
    for id in 1..=config.brokers {
        sim.add_node(id, MemoryStorage::new(), true, move |id, disk, now| {
            LabNode::Broker(Box::new(BrokerNode::start(id, disk, now, &config)))
        });
    }
    sim.add_node(PRODUCER, MemoryStorage::new(), false, move |_, _, _| {
        LabNode::Producer(ProducerNode::new(&config))
    });
    sim.add_node(CONSUMER, MemoryStorage::new(), false, move |_, _, _| {
        LabNode::Consumer(ConsumerNode::new(&config))
    });
    sim
}

/// Runs one seed of `scenario` and checks it.
pub fn run(seed: u64, scenario: &Scenario) -> Result<Report, String> {
    run_traced(seed, scenario, false).1
}

/// Runs one seed of `scenario`, checks it, and returns the simulation too
/// (its trace and history), for replaying a seed.
pub fn run_traced(
    seed: u64,
    scenario: &Scenario,
    trace_messages: bool,
) -> (Sim<LabNode>, Result<Report, String>) {
    let mut sim = build(seed, scenario, trace_messages);
    match scenario.faults {
        Faults::Random | Faults::Pauses => sim.run_for(scenario.fault_ms),
        Faults::PowerLoss => {
            let at = sim.rng().u64(scenario.fault_ms / 4..scenario.fault_ms);
            sim.run_for(at);
            sim.crash_all();
            sim.run_for(scenario.fault_ms - at);
        }
    }
    sim.heal_all_and_settle(scenario.settle_ms);
    let result = final_replicas(&sim).and_then(|(leader, replicas)| {
        checker::check(sim.history(), &leader, &replicas, scenario.expect())
    });
    (sim, result)
}

/// The leader's replica and every other one, as the run left them.
fn final_replicas(sim: &Sim<LabNode>) -> Result<(FinalReplica, Vec<FinalReplica>), String> {
    let tp = nodes::partition();
    let Some(LabNode::Controller(controller)) = sim.node(CONTROLLER) else {
        return Err("the controller is not running".into());
    };
    let state = controller.controller().partitions().get(&tp).cloned();
    let leader = state
        .and_then(|s| s.leader)
        .ok_or("after the faults ended, the partition has no leader")?;
    let mut replicas = Vec::new();
    for broker in 1..=3 {
        let Some(LabNode::Broker(node)) = sim.node(broker) else {
            return Err(format!(
                "broker {broker} is not running after the faults ended"
            ));
        };
        replicas.push(final_replica(broker, node, sim.disk(broker)));
    }
    split_leader(leader, replicas)
}

/// Broker `broker`'s replica of the lab's partition, as the run left it.
pub fn final_replica(broker: NodeId, node: &BrokerNode, disk: &MemoryStorage) -> FinalReplica {
    let tp = nodes::partition();
    let high_watermark = node
        .manager()
        .partition(&tp)
        .map_or(0, |p| p.high_watermark());
    let log = disk.log_ref(&tp).map_or_else(Vec::new, |log| {
        debug_assert_eq!(log.log_start_offset(), 0, "the lab never deletes");
        log.batches()
            .iter()
            .flat_map(|b| b.records().expect("stored batches are valid"))
            .map(|(offset, r)| (offset, nodes::value_of(&r.value)))
            .collect()
    });
    FinalReplica {
        broker,
        log,
        high_watermark,
    }
}

/// `leader`'s replica, and the others.
pub fn split_leader(
    leader: NodeId,
    mut replicas: Vec<FinalReplica>,
) -> Result<(FinalReplica, Vec<FinalReplica>), String> {
    let at = replicas
        .iter()
        .position(|r| r.broker == leader)
        .ok_or("the leader is not a broker")?;
    let leader = replicas.remove(at);
    Ok((leader, replicas))
}

/// The command that replays `seed` of `scenario`.
pub fn replay_command(seed: u64, scenario: &Scenario) -> String {
    let mut command =
        format!("cargo run --release -p ch06-replication --bin simulate -- --seed {seed}");
    match scenario.faults {
        Faults::Random => {}
        Faults::PowerLoss => command.push_str(" --power-loss"),
        Faults::Pauses => command.push_str(" --pauses"),
    }
    if scenario.flush == Flush::BeforeAck {
        command.push_str(" --flush before-ack");
    }
    if scenario.truncation == Truncation::HighWatermark {
        command.push_str(" --truncation high-watermark");
    }
    if scenario.unclean_leader_election {
        command.push_str(" --unclean");
    }
    command
}

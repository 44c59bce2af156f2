//! The cluster's fault lab: three coordinator servers and three brokers,
//! each broker a candidate for controller, in chapter 6's simulator, with a
//! producer writing with `acks=all` and a consumer reading.
//!
//! [`run`] lets the faults of a [`Scenario`] loose (partitions, crashes
//! that lose what was not synced, clock jumps, and with
//! [`Faults::Pauses`] brokers and servers paused past their sessions and
//! resumed), then heals everything, lets the cluster settle, and checks
//! the run:
//!
//! - chapter 6's checker: no acknowledged write lost, no read that
//!   disappears, high watermarks that never go back, replicas that agree,
//!   and at most one leader per leader epoch in what the controllers
//!   *stored*. A lost write is excused, and counted, only where Kafka's
//!   guarantee exempts it: every in-sync replica at acknowledgement
//!   crashed before syncing it (seed 38387: both crash within a second of
//!   their last write-back);
//! - and this chapter's: at most one controller per controller epoch; the
//!   controller epochs of stored decisions never go back (a deposed
//!   controller stored nothing after its successor did); and no broker
//!   obeyed a controller older than one it had obeyed;
//! - and that the cluster healed: once quiet, the controller has every
//!   broker back in the partition's stored ISR, and no request of a broker
//!   still waits for a write (an answer owed forever wedges the broker that
//!   waits for it: the Jepsen-style test of real processes found one).
//!
//! A seed decides everything: `cargo run --release -p ch08-cluster --bin
//! simulate-cluster -- --seed N` replays one.

pub mod nodes;

use std::collections::BTreeMap;

use ch06_replication::controller::ControllerConfig;
use ch06_replication::lab::checker::{self, Expect, Report};
use ch06_replication::lab::{self as lab6, Scenario as Scenario6};
use ch06_replication::sim::{Millis, Nemesis, NodeId, Sim, SimConfig};
use ch07_coordinator::client::ClientConfig;
use ch07_coordinator::raft::RaftConfig;

use nodes::{BROKERS, ClusterBroker, ClusterLabConfig, Event, LabDisk, LabNode, SERVERS};

/// The producer's node id.
pub const PRODUCER: NodeId = 100;
/// The consumer's node id.
pub const CONSUMER: NodeId = 101;

/// The faults a run inflicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Faults {
    /// The nemesis: partitions (one-way too), one node (broker or
    /// coordinator server) crashed at a time, clock jumps, on a network
    /// that drops, duplicates and reorders.
    Random,
    /// The same, and nodes paused and resumed (`SIGSTOP`, `SIGCONT`): a
    /// controller paused past its session is replaced, and wakes up still
    /// believing it leads.
    Pauses,
}

/// One kind of run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    /// The faults.
    pub faults: Faults,
    /// How long the faults go on.
    pub fault_ms: Millis,
    /// How long the cluster then has to recover.
    pub settle_ms: Millis,
}

impl Default for Scenario {
    /// Random faults for ten seconds, then fifteen of quiet.
    fn default() -> Scenario {
        Scenario {
            faults: Faults::Random,
            fault_ms: 10_000,
            settle_ms: 15_000,
        }
    }
}

impl Scenario {
    /// The lab's timings: chapter 6's, with sessions for liveness.
    pub fn config(&self) -> ClusterLabConfig {
        let mut lab = Scenario6 {
            fault_ms: self.fault_ms,
            ..Scenario6::default()
        }
        .config();
        lab.controller = ControllerConfig {
            // Unused: liveness is the coordinator session's.
            session_timeout_ms: Millis::MAX,
            ..lab.controller
        };
        ClusterLabConfig {
            lab,
            client: ClientConfig {
                session_timeout_ms: 600,
                request_timeout_ms: 200,
                ping_interval_ms: 100,
            },
            raft: RaftConfig {
                election_timeout_ms: 300,
                heartbeat_interval_ms: 50,
                max_entries_per_message: 16,
            },
        }
    }
}

/// Builds the cluster: coordinator servers, brokers, the producer and the
/// consumer.
pub fn build(seed: u64, scenario: &Scenario, trace_messages: bool) -> Sim<LabNode> {
    let config = scenario.config();
    let sim_config = SimConfig {
        trace_messages,
        // The faults come once the cluster has formed: see `run_traced`.
        nemesis: None,
        ..SimConfig::faulty()
    };
    let mut sim = Sim::new(seed, sim_config);
    for id in SERVERS {
        let raft = config.raft.clone();
        sim.add_node(id, LabDisk::default(), true, move |id, disk, now| {
            LabNode::Server(Box::new(nodes::start_server(id, disk, now, &raft)))
        });
    }
    for id in BROKERS {
        let config = config.clone();
        sim.add_node(id, LabDisk::default(), true, move |id, disk, now| {
            LabNode::Broker(Box::new(ClusterBroker::start(id, disk, now, &config)))
        });
    }
    let lab = config.lab;
    sim.add_node(PRODUCER, LabDisk::default(), false, move |_, _, _| {
        let producer = ch06_replication::lab::nodes::ProducerNode::asking(&lab, BROKERS.to_vec());
        LabNode::Producer(producer)
    });
    sim.add_node(CONSUMER, LabDisk::default(), false, move |_, _, _| {
        let consumer = ch06_replication::lab::nodes::ConsumerNode::asking(&lab, BROKERS.to_vec());
        LabNode::Consumer(consumer)
    });
    sim
}

/// What a run that passed found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterReport {
    /// Chapter 6's checker's report.
    pub lab: Report,
    /// Controller epochs the run went through.
    pub controller_epochs: u64,
}

/// Runs one seed of `scenario` and checks it.
pub fn run(seed: u64, scenario: &Scenario) -> Result<ClusterReport, String> {
    run_traced(seed, scenario, false).1
}

/// Runs one seed of `scenario`, checks it, and returns the simulation too
/// (its trace and history), for replaying a seed.
pub fn run_traced(
    seed: u64,
    scenario: &Scenario,
    trace_messages: bool,
) -> (Sim<LabNode>, Result<ClusterReport, String>) {
    let mut sim = build(seed, scenario, trace_messages);
    // The cluster forms: a controller is elected and creates the topic,
    // and every broker hears of it. Then the faults begin.
    if !sim.run_until(formed, FORM_WITHIN_MS) {
        let error = format!("the cluster did not form within {FORM_WITHIN_MS} ms");
        return (sim, Err(error));
    }
    let pauses = scenario.faults == Faults::Pauses;
    sim.unleash(Nemesis {
        pause: if pauses { 2 } else { 0 },
        resume: if pauses { 3 } else { 0 },
        max_crashed: 1,
        ..Nemesis::default()
    });
    sim.run_for(scenario.fault_ms);
    sim.heal_all_and_settle(scenario.settle_ms);
    // The network still drops a message now and then, and a session may
    // end for it even now: then a controller is elected again. Give the
    // cluster a few more seconds to be whole before judging it (what it
    // did meanwhile is in the history, and checked all the same).
    let mut result = check(&sim);
    for _ in 0..RECOVER_TRIES {
        if result.is_ok() {
            break;
        }
        sim.run_for(1_000);
        result = check(&sim);
    }
    (sim, result)
}

/// How many more seconds a cluster gets, after the quiet period, to be
/// whole.
const RECOVER_TRIES: usize = 10;

/// How long a cluster may take to form, without faults.
const FORM_WITHIN_MS: Millis = 10_000;

/// Whether every broker has been told the lab partition's leader.
fn formed(sim: &Sim<LabNode>) -> bool {
    BROKERS.iter().all(|&id| match sim.node(id) {
        Some(LabNode::Broker(broker)) => broker.told_leader().is_some(),
        _ => false,
    })
}

/// The checks of a finished run.
fn check(sim: &Sim<LabNode>) -> Result<ClusterReport, String> {
    let controller_epochs = check_controllers(sim.history())?;
    let history: Vec<_> = sim
        .history()
        .iter()
        .filter_map(|(at, node, event)| match event {
            Event::Lab(event) => Some((*at, *node, event.clone())),
            _ => None,
        })
        .collect();
    let (leader, replicas) = final_replicas(sim)?;
    let lab = checker::check(&history, &leader, &replicas, Expect::NoLoss)?;
    healed(sim)?;
    Ok(ClusterReport {
        lab,
        controller_epochs,
    })
}

/// This chapter's checks, over the history: one controller per epoch; no
/// decision of a deposed controller stored after its successor's (in the
/// order of partition epochs, which every change bumps, the controller
/// epochs never go back, and no partition epoch is used twice); each run of
/// a broker obeys controller epochs in order. Returns the greatest
/// controller epoch.
pub fn check_controllers(history: &[(Millis, NodeId, Event)]) -> Result<u64, String> {
    let mut elected: BTreeMap<u64, NodeId> = BTreeMap::new();
    let mut stored: BTreeMap<u32, u64> = BTreeMap::new();
    let mut obeyed: BTreeMap<(NodeId, u64), u64> = BTreeMap::new();
    for (at, node, event) in history {
        match *event {
            Event::Elected { epoch } => {
                if let Some(other) = elected.insert(epoch, *node) {
                    return Err(format!(
                        "two controllers in epoch {epoch}: brokers {other} and {node} (at {at} ms)"
                    ));
                }
            }
            Event::Stored {
                epoch,
                partition_epoch,
            } => {
                if let Some(other) = stored.insert(partition_epoch, epoch)
                    && other != epoch
                {
                    return Err(format!(
                        "partition epoch {partition_epoch} stored by controllers of epochs \
                         {other} and {epoch} (the latter at {at} ms)"
                    ));
                }
            }
            Event::Obeyed { epoch, incarnation } => {
                let last = obeyed.entry((*node, incarnation)).or_insert(0);
                if epoch < *last {
                    return Err(format!(
                        "broker {node} obeyed controller epoch {epoch} at {at} ms, after {last}"
                    ));
                }
                *last = epoch;
            }
            Event::Lab(_) | Event::Refused { .. } => {}
        }
    }
    let mut last = (0, 0);
    for (&partition_epoch, &epoch) in &stored {
        if epoch < last.1 {
            return Err(format!(
                "partition epoch {partition_epoch} was stored by the controller of epoch {epoch}, \
                 after partition epoch {} by the controller of epoch {}",
                last.0, last.1
            ));
        }
        last = (partition_epoch, epoch);
    }
    Ok(elected.keys().last().copied().unwrap_or(0))
}

/// The leader's replica (as the controller stored it) and the others.
fn final_replicas(
    sim: &Sim<LabNode>,
) -> Result<(checker::FinalReplica, Vec<checker::FinalReplica>), String> {
    let tp = ch06_replication::lab::nodes::partition();
    let brokers: Vec<(NodeId, &ClusterBroker)> = BROKERS
        .iter()
        .map(|&id| match sim.node(id) {
            Some(LabNode::Broker(broker)) => Ok((id, &**broker)),
            _ => Err(format!("broker {id} is not running after the faults ended")),
        })
        .collect::<Result<_, _>>()?;
    let leader = brokers
        .iter()
        .filter_map(|(_, b)| {
            let epoch = b.cluster().leading()?;
            let state = &b.cluster().stored()?.get(&tp)?.state;
            Some((epoch, state.leader))
        })
        .max()
        .ok_or("after the faults ended, no controller has the partition")?
        .1
        .ok_or("after the faults ended, the partition has no leader")?;
    let replicas = brokers
        .iter()
        .map(|(id, b)| lab6::final_replica(*id, b.broker(), &sim.disk(*id).broker))
        .collect();
    lab6::split_leader(leader, replicas)
}

/// Whether the cluster healed: the newest controller stores every broker
/// in the partition's ISR, and owes no answer.
fn healed(sim: &Sim<LabNode>) -> Result<(), String> {
    let tp = ch06_replication::lab::nodes::partition();
    let controller = BROKERS
        .iter()
        .filter_map(|&id| match sim.node(id) {
            Some(LabNode::Broker(broker)) => Some((broker.cluster().leading()?, id, broker)),
            _ => None,
        })
        .max_by_key(|(epoch, _, _)| *epoch)
        .ok_or("after the faults ended, no controller")?;
    let (epoch, id, broker) = controller;
    let waiting = broker.cluster().waiting();
    if waiting > 0 {
        return Err(format!(
            "not healed: the controller (broker {id}, epoch {epoch}) still owes {waiting} answers"
        ));
    }
    let state = broker
        .cluster()
        .stored()
        .and_then(|stored| stored.get(&tp))
        .map(|s| &s.state);
    match state {
        Some(state) if BROKERS.iter().all(|b| state.isr.contains(b)) => Ok(()),
        other => Err(format!(
            "not healed: the partition's stored state is {other:?}, not every broker in sync"
        )),
    }
}

/// The command that replays `seed` of `scenario`.
pub fn replay_command(seed: u64, scenario: &Scenario) -> String {
    let mut command =
        format!("cargo run --release -p ch08-cluster --bin simulate-cluster -- --seed {seed}");
    if scenario.faults == Faults::Pauses {
        command.push_str(" --pauses");
    }
    command
}

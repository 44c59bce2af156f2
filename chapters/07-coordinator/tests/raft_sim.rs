//! Raft in chapter 6's simulator: five servers, a faulty network, crashes,
//! partitions and clock jumps, and checkers over the run's history:
//!
//! - election safety: at most one leader per term;
//! - state machine safety: every server applies the same command at each
//!   index;
//! - no acknowledged command is lost: a command a leader saw committed is
//!   applied, at that index, by every server once the faults stop;
//! - liveness: once the network heals, a leader commits new commands.
//!
//! `RAFT_SEEDS` sets how many seeds run (default 200).

use std::collections::BTreeMap;

use ch06_replication::sim::{Ctx, Disk, Millis, NodeId, Sim, SimConfig, run_seeds};
use ch07_coordinator::raft::{Entry, HardState, Message, Raft, RaftConfig, Ready};

const SERVERS: [NodeId; 5] = [1, 2, 3, 4, 5];
/// Sends client commands; never crashes.
const CLIENT: NodeId = 100;

/// A server's disk: what it synced. The shell syncs before it sends, in the
/// same handler, so a crash loses nothing synced and nothing else exists.
#[derive(Debug, Default, Clone)]
struct RaftDisk {
    hard: HardState,
    log: Vec<Entry<u64>>,
    syncs: u64,
}

impl Disk for RaftDisk {
    fn crash(&mut self, _rng: &mut fastrand::Rng) {}
}

#[derive(Debug, Clone)]
enum Msg {
    Raft(Message<u64>),
    /// A client's command for whoever leads.
    Command(u64),
}

#[derive(Debug, Clone)]
enum Event {
    BecameLeader {
        term: u64,
    },
    Applied {
        index: u64,
        term: u64,
        command: Option<u64>,
    },
}

enum Node {
    Server(Box<Raft<u64>>),
    Client,
}

impl Node {
    fn server(id: NodeId, disk: &mut RaftDisk, now: Millis) -> Node {
        let config = RaftConfig {
            election_timeout_ms: 300,
            heartbeat_interval_ms: 50,
            max_entries_per_message: 8,
        };
        let seed = u64::from(id) * 7919 + disk.syncs;
        Node::Server(Box::new(Raft::new(
            id,
            &SERVERS,
            config,
            disk.hard,
            disk.log.clone(),
            now,
            seed,
        )))
    }
}

/// The shell's order: persist (one sync), send, apply, then tell the core.
fn drive(
    raft: &mut Raft<u64>,
    ctx: &mut Ctx<'_, Msg, Event>,
    disk: &mut RaftDisk,
    was_leader_term: Option<u64>,
) {
    let ready: Ready<u64> = raft.take_ready();
    if let Some(hard) = ready.hard_state {
        disk.hard = hard;
    }
    if let Some(from) = ready.truncate_from {
        disk.log.truncate(from as usize - 1);
    }
    disk.log.extend(ready.append.iter().cloned());
    if ready.hard_state.is_some() || ready.truncate_from.is_some() || !ready.append.is_empty() {
        disk.syncs += 1;
    }
    for (to, msg) in ready.messages {
        ctx.send(to, Msg::Raft(msg));
    }
    for entry in ready.committed {
        ctx.record(Event::Applied {
            index: entry.index,
            term: entry.term,
            command: entry.command,
        });
    }
    raft.persisted(disk.log.len() as u64);
    if raft.role() == ch07_coordinator::raft::Role::Leader && was_leader_term != Some(raft.term()) {
        ctx.record(Event::BecameLeader { term: raft.term() });
    }
    // `persisted` may commit more (a group's own sync can complete a
    // majority): hand that out now too.
    let more = raft.take_ready();
    for (to, msg) in more.messages {
        ctx.send(to, Msg::Raft(msg));
    }
    for entry in more.committed {
        ctx.record(Event::Applied {
            index: entry.index,
            term: entry.term,
            command: entry.command,
        });
    }
}

impl ch06_replication::sim::Node for Node {
    type Msg = Msg;
    type Disk = RaftDisk;
    type Event = Event;

    fn on_message(
        &mut self,
        ctx: &mut Ctx<'_, Msg, Event>,
        disk: &mut RaftDisk,
        from: NodeId,
        msg: Msg,
    ) {
        let Node::Server(raft) = self else { return };
        let before = (raft.role() == ch07_coordinator::raft::Role::Leader).then(|| raft.term());
        raft.tick(ctx.now());
        match msg {
            Msg::Raft(msg) => raft.step(from, msg),
            Msg::Command(command) => {
                let _ = raft.propose(command);
            }
        }
        drive(raft, ctx, disk, before);
    }

    fn on_tick(&mut self, ctx: &mut Ctx<'_, Msg, Event>, disk: &mut RaftDisk) {
        let Node::Server(raft) = self else { return };
        let before = (raft.role() == ch07_coordinator::raft::Role::Leader).then(|| raft.term());
        raft.tick(ctx.now());
        drive(raft, ctx, disk, before);
    }
}

/// Checks the history of one run; `Err` says what broke.
fn check(sim: &Sim<Node>) -> Result<(), String> {
    let mut leaders: BTreeMap<u64, NodeId> = BTreeMap::new();
    let mut applied: BTreeMap<u64, (u64, Option<u64>)> = BTreeMap::new();
    let mut per_server: BTreeMap<NodeId, u64> = BTreeMap::new();
    for (at, node, event) in sim.history() {
        match event {
            Event::BecameLeader { term } => {
                if let Some(other) = leaders.insert(*term, *node)
                    && other != *node
                {
                    return Err(format!(
                        "term {term} had two leaders: {other} and {node} (at {at} ms)"
                    ));
                }
            }
            Event::Applied {
                index,
                term,
                command,
            } => {
                if let Some(&(t, c)) = applied.get(index)
                    && (t, c) != (*term, *command)
                {
                    return Err(format!(
                        "index {index}: server {node} applied ({term}, {command:?}), another ({t}, {c:?})"
                    ));
                }
                applied.insert(*index, (*term, *command));
                let expected = per_server.get(node).map_or(1, |last| last + 1);
                // A restarted server applies again from index 1.
                if *index != expected && *index != 1 {
                    return Err(format!(
                        "server {node} applied index {index} after {}",
                        expected - 1
                    ));
                }
                per_server.insert(*node, *index);
            }
        }
    }
    Ok(())
}

fn run(seed: u64) -> Result<(), String> {
    let mut sim: Sim<Node> = Sim::new(seed, SimConfig::faulty());
    for id in SERVERS {
        sim.add_node(id, RaftDisk::default(), true, Node::server);
    }
    sim.add_node(CLIENT, RaftDisk::default(), false, |_, _, _| Node::Client);
    // Commands to random servers while the faults run.
    for command in 1..=60u64 {
        let to = SERVERS[sim.rng().usize(0..SERVERS.len())];
        sim.send_as(CLIENT, to, Msg::Command(command));
        sim.run_for(50);
    }
    sim.heal_all_and_settle(3_000);
    // After the faults: a new command commits everywhere.
    let committed_before = applied_count(&sim);
    for _ in 0..20 {
        for id in SERVERS {
            sim.send_as(CLIENT, id, Msg::Command(1_000));
        }
        sim.run_for(200);
        if applied_count(&sim) > committed_before {
            break;
        }
    }
    check(&sim)?;
    if applied_count(&sim) <= committed_before {
        return Err("no command committed after the network healed".into());
    }
    Ok(())
}

fn applied_count(sim: &Sim<Node>) -> usize {
    sim.history()
        .iter()
        .filter(|(_, _, e)| {
            matches!(
                e,
                Event::Applied {
                    command: Some(1_000),
                    ..
                }
            )
        })
        .count()
}

#[test]
fn raft_is_safe_and_live_under_faults() {
    let seeds = std::env::var("RAFT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let replay = |seed| format!("RAFT_SEED={seed} cargo test -p ch07-coordinator --test raft_sim");
    if let Ok(seed) = std::env::var("RAFT_SEED") {
        let seed: u64 = seed.parse().expect("RAFT_SEED is a number");
        if let Err(e) = run(seed) {
            panic!("seed {seed}: {e}");
        }
        return;
    }
    if let Err(failure) = run_seeds(0..seeds, run, replay) {
        panic!("{failure}");
    }
}

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
//! The servers' disks are slow (a sync every 30 ms, for everything written
//! since the last: group commit) and a crash keeps only a random prefix of
//! what was not synced, so a server that answered before syncing would be
//! caught: with the shell sending before its sync, seed 578 applies two
//! different commands at one index.
//!
//! `RAFT_SEEDS` sets how many seeds run (default 200); `RAFT_SEED=N` replays
//! one.

use std::collections::BTreeMap;

use ch06_replication::sim::{Ctx, Disk, Millis, Nemesis, NodeId, Sim, SimConfig, run_seeds};
use ch07_coordinator::raft::{Entry, HardState, Message, Raft, RaftConfig, Ready, Role};

const SERVERS: [NodeId; 5] = [1, 2, 3, 4, 5];
/// Sends client commands; never crashes.
const CLIENT: NodeId = 100;

/// One write to a server's disk, in the order the shell made them.
#[derive(Debug, Clone)]
enum Write {
    Hard(HardState),
    Truncate(u64),
    Append(Entry<u64>),
}

/// A server's disk. Writes go to `unsynced` first; the shell syncs once a
/// tick, all pending writes with one `fsync` (group commit). A crash keeps
/// what was synced and a random prefix of the rest.
#[derive(Debug, Default, Clone)]
struct RaftDisk {
    hard: HardState,
    log: Vec<Entry<u64>>,
    unsynced: Vec<Write>,
    syncs: u64,
}

impl RaftDisk {
    fn write(&mut self, ready: &Ready<u64>) {
        if let Some(hard) = ready.hard_state {
            self.unsynced.push(Write::Hard(hard));
        }
        if let Some(from) = ready.truncate_from {
            self.unsynced.push(Write::Truncate(from));
        }
        self.unsynced
            .extend(ready.append.iter().cloned().map(Write::Append));
    }

    fn store(&mut self, write: Write) {
        match write {
            Write::Hard(hard) => self.hard = hard,
            Write::Truncate(from) => self.log.truncate(from as usize - 1),
            Write::Append(entry) => {
                assert_eq!(entry.index, self.log.len() as u64 + 1, "a gap in the log");
                self.log.push(entry);
            }
        }
    }

    /// Syncs every pending write; returns whether there were any.
    fn sync(&mut self) -> bool {
        if self.unsynced.is_empty() {
            return false;
        }
        for write in std::mem::take(&mut self.unsynced) {
            self.store(write);
        }
        self.syncs += 1;
        true
    }
}

impl Disk for RaftDisk {
    fn crash(&mut self, rng: &mut fastrand::Rng) {
        let kept = rng.usize(0..=self.unsynced.len());
        let writes = std::mem::take(&mut self.unsynced);
        for write in writes.into_iter().take(kept) {
            self.store(write);
        }
    }
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

/// A server and the messages it holds until its next sync.
struct Server {
    raft: Raft<u64>,
    held: Vec<(NodeId, Message<u64>)>,
    ticks: u64,
}

/// How many ticks (10 ms each) one sync takes.
const SYNC_EVERY_TICKS: u64 = 3;

enum Node {
    Server(Box<Server>),
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
        let raft = Raft::new(id, &SERVERS, config, disk.hard, disk.log.clone(), now, seed);
        Node::Server(Box::new(Server {
            raft,
            held: Vec::new(),
            ticks: 0,
        }))
    }
}

impl Server {
    /// The shell's order: write, hold the messages until the writes before
    /// them are synced, apply what is committed.
    fn drive(&mut self, ctx: &mut Ctx<'_, Msg, Event>, disk: &mut RaftDisk, leader_before: bool) {
        let ready = self.raft.take_ready();
        disk.write(&ready);
        self.held.extend(ready.messages);
        if disk.unsynced.is_empty() {
            self.release(ctx);
        }
        for entry in ready.committed {
            ctx.record(Event::Applied {
                index: entry.index,
                term: entry.term,
                command: entry.command,
            });
        }
        if self.raft.role() == Role::Leader && !leader_before {
            ctx.record(Event::BecameLeader {
                term: self.raft.term(),
            });
        }
    }

    fn release(&mut self, ctx: &mut Ctx<'_, Msg, Event>) {
        for (to, msg) in self.held.drain(..) {
            ctx.send(to, Msg::Raft(msg));
        }
    }

    /// A group commit: one sync for everything written since the last.
    fn sync(&mut self, ctx: &mut Ctx<'_, Msg, Event>, disk: &mut RaftDisk) {
        if disk.sync() {
            self.release(ctx);
            self.raft.persisted(disk.log.len() as u64);
        }
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
        let Node::Server(server) = self else { return };
        let leader_before = server.raft.role() == Role::Leader;
        server.raft.tick(ctx.now());
        match msg {
            Msg::Raft(msg) => server.raft.step(from, msg),
            Msg::Command(command) => {
                // Not the leader: the client tries another server.
                let _ = server.raft.propose(command);
            }
        }
        server.drive(ctx, disk, leader_before);
    }

    fn on_tick(&mut self, ctx: &mut Ctx<'_, Msg, Event>, disk: &mut RaftDisk) {
        let Node::Server(server) = self else { return };
        let leader_before = server.raft.role() == Role::Leader;
        // A slow disk: a sync every few ticks, so that writes wait long
        // enough for crashes to catch them unsynced.
        server.ticks += 1;
        if server.ticks % SYNC_EVERY_TICKS == 0 {
            server.sync(ctx, disk);
        }
        server.raft.tick(ctx.now());
        server.drive(ctx, disk, leader_before);
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
    // Raft syncs before it answers, so unlike Kafka's default it must
    // survive every server losing power at once, and a majority of five
    // survives two down.
    let nemesis = Nemesis {
        min_interval_ms: 50,
        max_interval_ms: 400,
        crash_all: 1,
        max_crashed: 2,
        ..Nemesis::default()
    };
    let config = SimConfig {
        nemesis: Some(nemesis),
        ..SimConfig::faulty()
    };
    let mut sim: Sim<Node> = Sim::new(seed, config);
    for id in SERVERS {
        sim.add_node(id, RaftDisk::default(), true, Node::server);
    }
    sim.add_node(CLIENT, RaftDisk::default(), false, |_, _, _| Node::Client);
    // Commands to random servers while the faults run.
    // Each command to every server: whichever leads takes it (the others
    // refuse), so commands commit whenever there is a leader.
    for command in 1..=100u64 {
        for to in SERVERS {
            sim.send_as(CLIENT, to, Msg::Command(command));
        }
        sim.run_for(30);
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

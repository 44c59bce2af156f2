//! Raft in chapter 6's simulator: five servers replicating a small
//! key-value store (reads, writes and compare-and-set, all through the log),
//! three clients, a faulty network, crashes, power losses, partitions and
//! clock jumps. Every server compacts its log into a snapshot every 10
//! entries, so a server that fell behind or restarts catches up from one.
//! Checkers over the run's history:
//!
//! - election safety: at most one leader per term;
//! - state machine safety: every server applies the same command at each
//!   index, in order;
//! - linearizability: the clients' operations, with the times they were
//!   called and answered, could have come from one copy doing one thing at
//!   a time (`ch07_coordinator::linearizability`); an operation whose answer
//!   never came may have happened or not;
//! - liveness: once the network heals, clients' operations are answered.
//!
//! The servers' disks are slow (a sync every 30 ms, for everything written
//! since the last: group commit) and a crash keeps only a random prefix of
//! what was not synced, so a server that answered before syncing is caught.
//! What the checkers caught when the code was broken on purpose:
//!
//! - the shell sending every Raft message before its sync (votes and
//!   acknowledgements too, not only a leader's `AppendEntries`): two
//!   different entries applied at one index (seed 803);
//! - no deduplication of requests: the network delivers a write twice, the
//!   log holds it twice, and the second copy, applied after operations that
//!   came between the two, undoes them (not linearizable, seed 1);
//! - reads answered from a server's own copy instead of through the log, as
//!   ZooKeeper does by default: not linearizable at seed 1. (That is why
//!   ZooKeeper has `sync`.)
//!
//! A second run adds pauses: servers stopped (as with `SIGSTOP`) and
//! resumed later, a leader among them, to wake up in a term that has moved
//! on. `RAFT_SEEDS` sets how many seeds run (default 200, and 100 with
//! pauses, `RAFT_PAUSES_SEEDS`); `RAFT_SEED=N` (or `RAFT_PAUSES_SEED=N`)
//! replays one.

use std::collections::BTreeMap;

mod common;

use ch06_replication::sim::{Ctx, Millis, Nemesis, NodeId, Sim, SimConfig};
use ch07_coordinator::linearizability::{self, Model, Operation};
use ch07_coordinator::raft::{
    DiskWrite, Entry, Index, Message, ProposeError, Raft, RaftConfig, Role,
};
use ch07_coordinator::sim::SimDisk;
use serde::{Deserialize, Serialize};

const SERVERS: [NodeId; 5] = [1, 2, 3, 4, 5];
/// The clients; they never crash.
const CLIENTS: [NodeId; 3] = [100, 101, 102];
/// How many operations each client makes.
const OPS_PER_CLIENT: u64 = 40;
/// A client that has no answer after this long gives up on the operation
/// (which then may or may not have happened) and makes the next.
const CLIENT_TIMEOUT_MS: Millis = 1_000;
/// The store's keys are 0..KEYS.
const KEYS: u8 = 3;
/// Each server compacts its log once this many entries are applied past
/// its last snapshot, so servers that fall behind catch up from one.
const SNAPSHOT_EVERY: Index = 10;

/// An operation on the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum KvOp {
    Read(u8),
    Write(u8, u64),
    /// Set the key to the second value if it holds the first.
    Cas(u8, u64, u64),
}

/// The store's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum KvOut {
    Value(u64),
    Ok,
    Failed,
}

/// A command in the log: who asked, their request number, and what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cmd {
    client: NodeId,
    seq: u64,
    op: KvOp,
}

/// The store, as every server applies the log to it; also the
/// linearizability checker's model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
struct Kv([u64; KEYS as usize]);

impl Kv {
    fn apply(&mut self, op: KvOp) -> KvOut {
        match op {
            KvOp::Read(k) => KvOut::Value(self.0[usize::from(k)]),
            KvOp::Write(k, v) => {
                self.0[usize::from(k)] = v;
                KvOut::Ok
            }
            KvOp::Cas(k, from, to) if self.0[usize::from(k)] == from => {
                self.0[usize::from(k)] = to;
                KvOut::Ok
            }
            KvOp::Cas(..) => KvOut::Failed,
        }
    }
}

struct KvModel;

impl Model for KvModel {
    type State = Kv;
    type Input = KvOp;
    type Output = KvOut;

    fn init(&self) -> Kv {
        Kv::default()
    }

    fn step(&self, state: &Kv, input: &KvOp, output: Option<&KvOut>) -> Option<Kv> {
        let mut next = *state;
        let answer = next.apply(*input);
        output.is_none_or(|o| *o == answer).then_some(next)
    }
}

/// A server's disk: the shell syncs it every few ticks (group commit).
type RaftDisk = SimDisk<Cmd>;

#[derive(Debug, Clone)]
enum Msg {
    Raft(Message<Cmd>),
    /// A client's request, for whoever leads.
    Request(Cmd),
    /// The answer to request `seq`.
    Reply {
        seq: u64,
        out: KvOut,
    },
    /// Request `seq` went to a server that does not lead.
    NotLeader {
        seq: u64,
        leader: Option<NodeId>,
    },
}

#[derive(Debug, Clone)]
enum Event {
    BecameLeader {
        term: u64,
    },
    Applied {
        index: u64,
        term: u64,
        command: Option<Cmd>,
    },
    /// A server's state now starts from this index: its snapshot's, at a
    /// start or when it installed one from the leader.
    Loaded {
        index: u64,
    },
    /// A client sent request `seq`.
    Call {
        seq: u64,
        op: KvOp,
    },
    /// A client got the answer to request `seq`.
    Return {
        seq: u64,
        out: KvOut,
    },
}

/// A server and the messages it holds until its next sync.
struct Server {
    raft: Raft<Cmd>,
    held: Vec<(NodeId, Message<Cmd>)>,
    ticks: u64,
    /// The store, rebuilt from the log after a restart.
    kv: Kv,
    /// Each client's last request applied, and its answer: a request the
    /// network delivered twice is in the log twice, and must take effect
    /// once (the Raft dissertation's section 6.3; ZooKeeper's sessions do
    /// the same).
    sessions: BTreeMap<NodeId, (u64, KvOut)>,
    /// Requests this server put in the log, by index, to answer once
    /// applied.
    pending: BTreeMap<Index, Cmd>,
    /// The index its state starts from (its snapshot's), recorded in the
    /// history at its first step after a start.
    started_at: Option<Index>,
}

/// What a snapshot holds: the store and the sessions.
#[derive(Serialize, Deserialize)]
struct State {
    kv: Kv,
    sessions: BTreeMap<NodeId, (u64, KvOut)>,
}

fn encode(state: &State) -> Vec<u8> {
    bincode::serde::encode_to_vec(state, bincode::config::standard()).expect("encodable")
}

fn decode(data: &[u8]) -> State {
    bincode::serde::decode_from_slice(data, bincode::config::standard())
        .expect("a snapshot this test wrote")
        .0
}

/// A client: one request at a time.
struct Client {
    seq: u64,
    /// The request waiting for an answer, and when it was sent.
    outstanding: Option<(Cmd, Millis)>,
    /// The server it believes leads.
    guess: NodeId,
}

/// How many ticks (10 ms each) one sync takes.
const SYNC_EVERY_TICKS: u64 = 3;

enum Node {
    Server(Box<Server>),
    Client(Client),
}

impl Node {
    fn server(id: NodeId, disk: &mut RaftDisk, now: Millis) -> Node {
        let config = RaftConfig {
            election_timeout_ms: 300,
            heartbeat_interval_ms: 50,
            max_entries_per_message: 8,
        };
        let seed = u64::from(id) * 7919 + disk.syncs;
        let raft = Raft::new(
            id,
            &SERVERS,
            config,
            disk.hard,
            disk.snapshot.clone(),
            disk.log.clone(),
            now,
            seed,
        );
        let (state, base) = match &disk.snapshot {
            Some(snapshot) => (decode(&snapshot.data), snapshot.last_index),
            None => (
                State {
                    kv: Kv::default(),
                    sessions: BTreeMap::new(),
                },
                0,
            ),
        };
        Node::Server(Box::new(Server {
            raft,
            held: Vec::new(),
            ticks: 0,
            kv: state.kv,
            sessions: state.sessions,
            pending: BTreeMap::new(),
            started_at: Some(base),
        }))
    }
}

impl Server {
    /// The shell's order: write, send what may go before the sync (a
    /// leader's `AppendEntries`), hold the other messages until the writes
    /// before them are synced, apply what is committed.
    fn drive(&mut self, ctx: &mut Ctx<'_, Msg, Event>, disk: &mut RaftDisk, leader_before: bool) {
        if let Some(index) = self.started_at.take() {
            ctx.record(Event::Loaded { index });
        }
        let ready = self.raft.take_ready();
        disk.unsynced.extend(ready.writes());
        if let Some(snapshot) = &ready.snapshot {
            let state = decode(&snapshot.data);
            self.kv = state.kv;
            self.sessions = state.sessions;
            ctx.record(Event::Loaded {
                index: snapshot.last_index,
            });
        }
        for (to, msg) in ready.messages {
            if msg.may_precede_sync() {
                ctx.send(to, Msg::Raft(msg));
            } else {
                self.held.push((to, msg));
            }
        }
        if disk.unsynced.is_empty() {
            self.release(ctx);
        }
        let mut last_applied = None;
        for entry in ready.committed {
            last_applied = Some(entry.index);
            self.apply(ctx, entry);
        }
        if let Some(applied) = last_applied
            && applied - disk.snapshot.as_ref().map_or(0, |s| s.last_index) >= SNAPSHOT_EVERY
        {
            let state = State {
                kv: self.kv,
                sessions: self.sessions.clone(),
            };
            if let Some(compacted) = self.raft.compact(applied, encode(&state)) {
                disk.unsynced.push(DiskWrite::Snapshot(compacted.snapshot));
            }
        }
        if self.raft.role() == Role::Leader && !leader_before {
            ctx.record(Event::BecameLeader {
                term: self.raft.term(),
            });
        }
    }

    /// Applies a committed entry to the store, and answers the client if
    /// this server put it in the log. (An entry of another leader at an
    /// index it had promised is not the client's: that client times out.)
    fn apply(&mut self, ctx: &mut Ctx<'_, Msg, Event>, entry: Entry<Cmd>) {
        let out = entry
            .command
            .map(|cmd| match self.sessions.get(&cmd.client) {
                Some(&(seq, out)) if seq >= cmd.seq => out,
                _ => {
                    let out = self.kv.apply(cmd.op);
                    self.sessions.insert(cmd.client, (cmd.seq, out));
                    out
                }
            });
        if let Some(asked) = self.pending.remove(&entry.index)
            && let (Some(cmd), Some(out)) = (entry.command, out)
            && cmd == asked
        {
            ctx.send(cmd.client, Msg::Reply { seq: cmd.seq, out });
        }
        ctx.record(Event::Applied {
            index: entry.index,
            term: entry.term,
            command: entry.command,
        });
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
            self.raft.persisted(disk.last_index());
        }
    }
}

impl Client {
    fn on_message(&mut self, ctx: &mut Ctx<'_, Msg, Event>, msg: Msg) {
        let Some((cmd, _)) = self.outstanding else {
            return;
        };
        match msg {
            Msg::Reply { seq, out } if seq == cmd.seq => {
                ctx.record(Event::Return { seq, out });
                self.outstanding = None;
            }
            Msg::NotLeader { seq, leader } if seq == cmd.seq => {
                // That server did not take it: safe to send it again, to
                // the leader it named or to another server.
                self.guess = leader.unwrap_or_else(|| SERVERS[ctx.rng().usize(..SERVERS.len())]);
                ctx.send(self.guess, Msg::Request(cmd));
            }
            _ => {}
        }
    }

    fn on_tick(&mut self, ctx: &mut Ctx<'_, Msg, Event>) {
        if let Some((_, sent)) = self.outstanding {
            if ctx.now() < sent + CLIENT_TIMEOUT_MS {
                return;
            }
            // No answer: the request may yet take effect, so it is not sent
            // again (that could apply it twice); the history keeps it as
            // unanswered, and the next request goes to another server.
            self.outstanding = None;
            self.guess = SERVERS[ctx.rng().usize(..SERVERS.len())];
        }
        if self.seq == OPS_PER_CLIENT {
            return;
        }
        self.seq += 1;
        let key = ctx.rng().u8(..KEYS);
        let value = ctx.rng().u64(1..=5);
        let op = match ctx.rng().u8(..3) {
            0 => KvOp::Read(key),
            1 => KvOp::Write(key, value),
            _ => KvOp::Cas(key, ctx.rng().u64(0..=5), value),
        };
        let cmd = Cmd {
            client: ctx.id(),
            seq: self.seq,
            op,
        };
        ctx.record(Event::Call { seq: cmd.seq, op });
        self.outstanding = Some((cmd, ctx.now()));
        ctx.send(self.guess, Msg::Request(cmd));
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
        let server = match self {
            Node::Server(server) => server,
            Node::Client(client) => return client.on_message(ctx, msg),
        };
        let leader_before = server.raft.role() == Role::Leader;
        server.raft.tick(ctx.now());
        match msg {
            Msg::Raft(msg) => server.raft.step(from, msg),
            Msg::Request(cmd) => match server.raft.propose(cmd) {
                Ok(index) => {
                    server.pending.insert(index, cmd);
                }
                Err(ProposeError::NotLeader { leader }) => {
                    ctx.send(
                        from,
                        Msg::NotLeader {
                            seq: cmd.seq,
                            leader,
                        },
                    );
                }
            },
            Msg::Reply { .. } | Msg::NotLeader { .. } => {}
        }
        server.drive(ctx, disk, leader_before);
    }

    fn on_tick(&mut self, ctx: &mut Ctx<'_, Msg, Event>, disk: &mut RaftDisk) {
        let server = match self {
            Node::Server(server) => server,
            Node::Client(client) => return client.on_tick(ctx),
        };
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
    let mut applied: BTreeMap<u64, (u64, Option<Cmd>)> = BTreeMap::new();
    let mut per_server: BTreeMap<NodeId, u64> = BTreeMap::new();
    // The clients' operations, by (client, seq).
    let mut operations: BTreeMap<(NodeId, u64), Operation<KvOp, KvOut>> = BTreeMap::new();
    for &(at, node, ref event) in sim.history() {
        match *event {
            Event::BecameLeader { term } => {
                if let Some(other) = leaders.insert(term, node)
                    && other != node
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
                if let Some(&(t, c)) = applied.get(&index)
                    && (t, c) != (term, command)
                {
                    return Err(format!(
                        "index {index}: server {node} applied ({term}, {command:?}), another ({t}, {c:?})"
                    ));
                }
                applied.insert(index, (term, command));
                let expected = per_server.get(&node).map_or(1, |last| last + 1);
                if index != expected {
                    return Err(format!(
                        "server {node} applied index {index} after {}",
                        expected - 1
                    ));
                }
                per_server.insert(node, index);
            }
            Event::Loaded { index } => {
                per_server.insert(node, index);
            }
            Event::Call { seq, op } => {
                let operation = Operation {
                    client: u64::from(node),
                    input: op,
                    call: at,
                    output: None,
                };
                operations.insert((node, seq), operation);
            }
            Event::Return { seq, out } => {
                if let Some(operation) = operations.get_mut(&(node, seq)) {
                    operation.output = Some((out, at));
                }
            }
        }
    }
    let history: Vec<_> = operations.into_values().collect();
    if let Err(violation) = linearizability::check(&KvModel, &history) {
        let stuck: Vec<_> = violation
            .longest_prefix
            .iter()
            .rev()
            .take(3)
            .map(|&i| &history[i])
            .collect();
        return Err(format!(
            "not linearizable: {} of {} operations linearized; the last: {stuck:?}",
            violation.longest_prefix.len(),
            history.len()
        ));
    }
    Ok(())
}

fn run(seed: u64) -> Result<(), String> {
    run_with(seed, false).map(|_| ())
}

/// Whether a leader woke up replaced: the last server elected before a
/// pause was the one paused, and another was elected before it resumed.
fn zombie_woke(sim: &Sim<Node>) -> bool {
    let elected: Vec<(u64, NodeId)> = sim
        .history()
        .iter()
        .filter(|(_, _, e)| matches!(e, Event::BecameLeader { .. }))
        .map(|(at, id, _)| (*at, *id))
        .collect();
    sim.pauses().iter().any(|pause| {
        let leader_then = elected.iter().rev().find(|(at, _)| *at <= pause.from);
        let (Some(&(_, leader)), Some(woke_at)) = (leader_then, pause.resumed) else {
            return false;
        };
        leader == pause.id
            && elected
                .iter()
                .any(|&(at, other)| other != pause.id && at > pause.from && at < woke_at)
    })
}

/// A run; with `pauses`, servers are also paused and resumed. Returns
/// whether a replaced leader woke up.
fn run_with(seed: u64, pauses: bool) -> Result<bool, String> {
    // Raft syncs before it answers, so unlike Kafka's default it must
    // survive every server losing power at once, and a majority of five
    // survives two down.
    let nemesis = Nemesis {
        min_interval_ms: 50,
        max_interval_ms: 400,
        crash_all: 1,
        max_crashed: 2,
        pause: if pauses { 2 } else { 0 },
        resume: if pauses { 3 } else { 0 },
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
    for (i, id) in CLIENTS.into_iter().enumerate() {
        sim.add_node(id, RaftDisk::default(), false, move |_, _, _| {
            Node::Client(Client {
                seq: 0,
                outstanding: None,
                guess: SERVERS[i],
            })
        });
    }
    // Faults for a while, then none: every client must then finish.
    sim.run_for(3_000);
    sim.heal_all_and_settle(1_000);
    let finished = |sim: &Sim<Node>| {
        CLIENTS.iter().all(|&id| {
            matches!(sim.node(id), Some(Node::Client(c)) if c.seq == OPS_PER_CLIENT && c.outstanding.is_none())
        })
    };
    let live = sim.run_until(finished, 60_000);
    check(&sim)?;
    let answered_after_heal = sim
        .history()
        .iter()
        .any(|(at, _, e)| *at > 4_000 && matches!(e, Event::Return { .. }));
    if !live || !answered_after_heal {
        return Err("the clients were not answered after the network healed".into());
    }
    Ok(zombie_woke(&sim))
}

#[test]
fn raft_is_safe_and_live_under_faults() {
    common::seeds("RAFT", "raft_sim", 200, run);
}

/// A leader paused long enough is replaced, and wakes up still leading in
/// its old term, with requests that waited for it: the same checks hold.
/// (And such zombies do wake up: without them this would prove little.)
#[test]
fn raft_is_safe_and_live_with_servers_paused() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let zombies = AtomicUsize::new(0);
    let test = "raft_sim raft_is_safe_and_live_with_servers_paused";
    common::seeds("RAFT_PAUSES", test, 100, |seed| {
        let woke = run_with(seed, true)?;
        zombies.fetch_add(usize::from(woke), Ordering::Relaxed);
        Ok(())
    });
    if std::env::var("RAFT_PAUSES_SEED").is_err() {
        assert!(zombies.into_inner() > 0, "no replaced leader woke up");
    }
}

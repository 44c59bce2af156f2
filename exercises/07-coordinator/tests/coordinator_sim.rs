//! The coordinator in chapter 6's simulator: five servers (`node::Server`
//! with a simulated disk that syncs every 30 ms and loses what was not
//! synced in a crash), three clients with sessions, and the nemesis
//! (partitions, crashes, power losses, clock jumps). Checkers:
//!
//! - writes, compare-and-sets and *synced* reads (a `sync`, then a read on
//!   the same server) of one znode are linearizable;
//! - when the clients stop, their sessions expire everywhere and their
//!   ephemeral nodes go, whatever the faults did to the leaders;
//! - liveness: after the faults, every client finishes its operations.
//!
//! Broken on purpose, it fails: reads without the `sync` before them (as
//! ZooKeeper's reads are by default) are not linearizable at seed 2, and
//! without the sessions' memory of their last request, a write the network
//! delivered twice applies twice (seed 11).
//!
//! `COORD_SEEDS` sets how many seeds run (default 100); `COORD_SEED=N`
//! replays one.

use std::collections::BTreeMap;

mod common;

use ch06_replication::sim::{Ctx, Millis, Nemesis, NodeId, Sim, SimConfig};
use ch07_coordinator::linearizability::{self, Model, Operation};
use ch07_coordinator::node::{
    ClientMessage, PeerMessage, Read, ReadResult, Send, Server, ServerMessage,
};
use ch07_coordinator::raft::{DiskWrite, Index, RaftConfig};
use ch07_coordinator::state::{LogEntry, Request, RequestError, Response};
use ch07_coordinator::tree::{ANY_VERSION, SessionId, TreeError, Version};
use common::SimDisk;

const SERVERS: [NodeId; 5] = [1, 2, 3, 4, 5];
const CLIENTS: [NodeId; 3] = [100, 101, 102];
const OPS_PER_CLIENT: u64 = 25;
const SESSION_TIMEOUT_MS: u64 = 2_000;
/// A client with no answer after this long gives up on the request.
const CLIENT_TIMEOUT_MS: Millis = 1_000;
const PING_EVERY_MS: Millis = 300;
/// How many ticks (10 ms each) one sync takes.
const SYNC_EVERY_TICKS: u64 = 3;
const SNAPSHOT_EVERY: Index = 20;
/// The znode the clients race on.
const REGISTER: &str = "/r";

// ---------------------------------------------------------------------------
// The servers' disks and shell.

/// A server's disk: the shell syncs it every few ticks (group commit).
type ServerDisk = SimDisk<LogEntry>;

#[derive(Debug, Clone)]
enum Msg {
    Peer(PeerMessage),
    FromClient(ClientMessage),
    ToClient(ServerMessage),
}

#[derive(Debug, Clone)]
enum Event {
    /// A client started an operation on the register.
    Call { op: RegOp },
    /// It ended, with this answer.
    Return { out: RegOut },
    /// It gave up on it (no answer).
    GaveUp,
}

struct ServerShell {
    server: Server,
    held: Vec<Send>,
    ticks: u64,
}

impl ServerShell {
    fn start(id: NodeId, disk: &mut ServerDisk, now: Millis) -> ServerShell {
        let config = RaftConfig {
            election_timeout_ms: 300,
            heartbeat_interval_ms: 50,
            max_entries_per_message: 16,
        };
        let server = Server::new(
            id,
            &SERVERS,
            config,
            disk.hard,
            disk.snapshot.clone(),
            disk.log.clone(),
            now,
            u64::from(id) * 31 + now,
        );
        ServerShell {
            server,
            held: Vec::new(),
            ticks: 0,
        }
    }

    /// Writes what the server asks, holds what must wait for the sync,
    /// sends the rest.
    fn flush(&mut self, ctx: &mut Ctx<'_, Msg, Event>, disk: &mut ServerDisk) {
        let output = self.server.take_output();
        disk.unsynced.extend(output.writes);
        self.held.extend(output.after_sync);
        for send in output.now {
            deliver(ctx, send);
        }
        if disk.unsynced.is_empty() {
            for send in self.held.drain(..) {
                deliver(ctx, send);
            }
        }
    }

    fn sync(&mut self, ctx: &mut Ctx<'_, Msg, Event>, disk: &mut ServerDisk) {
        if !disk.sync() {
            return;
        }
        for send in self.held.drain(..) {
            deliver(ctx, send);
        }
        self.server.persisted(disk.last_index());
        let base = disk.snapshot.as_ref().map_or(0, |s| s.last_index);
        if disk.last_index() >= base + SNAPSHOT_EVERY
            && let Some(snapshot) = self.server.compact()
        {
            disk.unsynced.push(DiskWrite::Snapshot(snapshot));
        }
    }
}

fn deliver(ctx: &mut Ctx<'_, Msg, Event>, send: Send) {
    match send {
        Send::Client(client, msg) => ctx.send(client as NodeId, Msg::ToClient(msg)),
        Send::Peer(to, msg) => ctx.send(to, Msg::Peer(msg)),
    }
}

// ---------------------------------------------------------------------------
// The register model: one znode's data and version, or no node.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RegOp {
    Create(u8),
    Set(u8),
    /// Set if the version is this.
    Cas(u8, Version),
    /// A `sync`, then a read on the same server.
    SyncedRead,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RegOut {
    Created,
    Exists,
    Set(Version),
    BadVersion,
    NoNode,
    Read(Option<(u8, Version)>),
}

struct Register;

impl Model for Register {
    type State = Option<(u8, Version)>;
    type Input = RegOp;
    type Output = RegOut;

    fn init(&self) -> Self::State {
        None
    }

    fn step(
        &self,
        state: &Self::State,
        input: &RegOp,
        output: Option<&RegOut>,
    ) -> Option<Self::State> {
        let (next, answer) = match (*input, *state) {
            (RegOp::Create(v), None) => (Some((v, 0)), RegOut::Created),
            (RegOp::Create(_), s) => (s, RegOut::Exists),
            (RegOp::Set(_) | RegOp::Cas(..), None) => (None, RegOut::NoNode),
            (RegOp::Set(v), Some((_, version))) => {
                (Some((v, version + 1)), RegOut::Set(version + 1))
            }
            (RegOp::Cas(v, expected), Some((_, version))) if expected == version => {
                (Some((v, version + 1)), RegOut::Set(version + 1))
            }
            (RegOp::Cas(..), s) => (s, RegOut::BadVersion),
            (RegOp::SyncedRead, s) => (s, RegOut::Read(s)),
        };
        output.is_none_or(|o| *o == answer).then_some(next)
    }
}

// ---------------------------------------------------------------------------
// The clients.

/// Where a client's current operation is.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Waiting for the answer to request `xid`.
    Write {
        xid: u64,
        op: RegOp,
    },
    /// Waiting for the `sync` (request `xid`), then the read.
    Sync {
        xid: u64,
    },
    Read,
}

struct Client {
    server: NodeId,
    session: Option<SessionId>,
    connecting_since: Option<Millis>,
    xid: u64,
    ops: u64,
    step: Option<(Step, Millis)>,
    last_ping: Millis,
    /// Once true, the client goes silent (as if it had died).
    stopped: bool,
}

impl Client {
    fn connect(&mut self, ctx: &mut Ctx<'_, Msg, Event>) {
        self.connecting_since = Some(ctx.now());
        let msg = ClientMessage::Connect {
            session: self.session,
            timeout_ms: SESSION_TIMEOUT_MS,
        };
        ctx.send(self.server, Msg::FromClient(msg));
    }

    fn move_server(&mut self, ctx: &mut Ctx<'_, Msg, Event>) {
        let others: Vec<NodeId> = SERVERS.into_iter().filter(|&s| s != self.server).collect();
        self.server = others[ctx.rng().usize(..others.len())];
        self.give_up(ctx);
        self.connect(ctx);
    }

    fn give_up(&mut self, ctx: &mut Ctx<'_, Msg, Event>) {
        if self.step.take().is_some() {
            ctx.record(Event::GaveUp);
        }
    }

    fn start_op(&mut self, ctx: &mut Ctx<'_, Msg, Event>) {
        let value = ctx.rng().u8(1..=9);
        let op = match ctx.rng().u8(..4) {
            0 => RegOp::Create(value),
            1 => RegOp::Set(value),
            2 => RegOp::Cas(value, ctx.rng().i32(0..=3)),
            _ => RegOp::SyncedRead,
        };
        self.ops += 1;
        self.xid += 1;
        let xid = self.xid;
        ctx.record(Event::Call { op });
        let (request, step) = match op {
            RegOp::Create(v) => (
                Request::Create {
                    path: REGISTER.into(),
                    data: vec![v],
                    ephemeral: false,
                    sequential: false,
                },
                Step::Write { xid, op },
            ),
            RegOp::Set(v) | RegOp::Cas(v, _) => {
                let version = match op {
                    RegOp::Cas(_, version) => version,
                    _ => ANY_VERSION,
                };
                let request = Request::SetData {
                    path: REGISTER.into(),
                    data: vec![v],
                    version,
                };
                (request, Step::Write { xid, op })
            }
            RegOp::SyncedRead => (Request::Sync, Step::Sync { xid }),
        };
        self.step = Some((step, ctx.now()));
        ctx.send(
            self.server,
            Msg::FromClient(ClientMessage::Write { xid, request }),
        );
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, Msg, Event>, from: NodeId, msg: ServerMessage) {
        if self.stopped || from != self.server {
            return;
        }
        match msg {
            ServerMessage::Connected { session } => {
                self.session = Some(session);
                self.connecting_since = None;
            }
            ServerMessage::SessionExpired => {
                self.session = None;
                self.give_up(ctx);
                self.connect(ctx);
            }
            ServerMessage::NotReady => {}
            ServerMessage::WriteDone { xid, result } => match self.step {
                Some((Step::Write { xid: w, op }, _)) if w == xid => {
                    let out = match (op, result) {
                        (RegOp::Create(_), Ok(_)) => RegOut::Created,
                        (
                            RegOp::Create(_),
                            Err(RequestError::Tree(TreeError::NodeExists { .. })),
                        ) => RegOut::Exists,
                        (_, Ok(Response::Set(stat))) => RegOut::Set(stat.version),
                        (_, Err(RequestError::Tree(TreeError::BadVersion { .. }))) => {
                            RegOut::BadVersion
                        }
                        (_, Err(RequestError::Tree(TreeError::NoNode { .. }))) => RegOut::NoNode,
                        // The session ended under it: it may or may not
                        // have happened; the client asks for a new one.
                        (_, Err(RequestError::SessionExpired { .. })) => return self.give_up(ctx),
                        (op, other) => panic!("{op:?} answered {other:?}"),
                    };
                    ctx.record(Event::Return { out });
                    self.step = None;
                }
                Some((Step::Sync { xid: s }, _)) if s == xid => {
                    if result.is_err() {
                        return self.give_up(ctx);
                    }
                    let read = Read::GetData {
                        path: REGISTER.into(),
                        watch: false,
                    };
                    self.step = Some((Step::Read, ctx.now()));
                    ctx.send(
                        self.server,
                        Msg::FromClient(ClientMessage::Read { xid, read }),
                    );
                }
                _ => {}
            },
            ServerMessage::ReadDone { result, .. } => {
                if let Some((Step::Read, _)) = self.step {
                    let value = match result {
                        Ok(ReadResult::Data(data, stat)) => Some((data[0], stat.version)),
                        Err(TreeError::NoNode { .. }) => None,
                        other => panic!("a read answered {other:?}"),
                    };
                    ctx.record(Event::Return {
                        out: RegOut::Read(value),
                    });
                    self.step = None;
                }
            }
            ServerMessage::Watch(_) | ServerMessage::Closed => {}
        }
    }

    fn on_tick(&mut self, ctx: &mut Ctx<'_, Msg, Event>) {
        if self.stopped {
            return;
        }
        let now = ctx.now();
        if let Some(since) = self.connecting_since {
            if now >= since + CLIENT_TIMEOUT_MS {
                self.move_server(ctx);
            }
            return;
        }
        if let Some((_, since)) = self.step {
            if now >= since + CLIENT_TIMEOUT_MS {
                self.move_server(ctx);
            }
        } else if self.ops < OPS_PER_CLIENT {
            self.start_op(ctx);
        }
        if now >= self.last_ping + PING_EVERY_MS {
            self.last_ping = now;
            ctx.send(self.server, Msg::FromClient(ClientMessage::Ping));
        }
    }
}

// ---------------------------------------------------------------------------

enum Node {
    Server(Box<ServerShell>),
    Client(Box<Client>),
}

impl ch06_replication::sim::Node for Node {
    type Msg = Msg;
    type Disk = ServerDisk;
    type Event = Event;

    fn on_message(
        &mut self,
        ctx: &mut Ctx<'_, Msg, Event>,
        disk: &mut ServerDisk,
        from: NodeId,
        msg: Msg,
    ) {
        match (self, msg) {
            (Node::Server(shell), Msg::Peer(msg)) => {
                shell.server.on_peer(from, msg, ctx.now());
                shell.flush(ctx, disk);
            }
            (Node::Server(shell), Msg::FromClient(msg)) => {
                shell.server.on_client(u64::from(from), msg, ctx.now());
                shell.flush(ctx, disk);
            }
            (Node::Client(client), Msg::ToClient(msg)) => client.on_message(ctx, from, msg),
            _ => {}
        }
    }

    fn on_tick(&mut self, ctx: &mut Ctx<'_, Msg, Event>, disk: &mut ServerDisk) {
        match self {
            Node::Server(shell) => {
                shell.ticks += 1;
                if shell.ticks % SYNC_EVERY_TICKS == 0 {
                    shell.sync(ctx, disk);
                }
                shell.server.on_tick(ctx.now());
                shell.flush(ctx, disk);
            }
            Node::Client(client) => client.on_tick(ctx),
        }
    }
}

fn run(seed: u64) -> Result<(), String> {
    let nemesis = Nemesis {
        min_interval_ms: 100,
        max_interval_ms: 600,
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
        sim.add_node(id, ServerDisk::default(), true, |id, disk, now| {
            Node::Server(Box::new(ServerShell::start(id, disk, now)))
        });
    }
    for (i, id) in CLIENTS.into_iter().enumerate() {
        sim.add_node(id, ServerDisk::default(), false, move |_, _, _| {
            Node::Client(Box::new(Client {
                server: SERVERS[i],
                session: None,
                // The first tick connects.
                connecting_since: Some(0),
                xid: 0,
                ops: 0,
                step: None,
                last_ping: 0,
                stopped: false,
            }))
        });
    }
    sim.run_for(6_000);
    sim.heal_all_and_settle(2_000);
    let finished = |sim: &Sim<Node>| {
        CLIENTS.iter().all(|&id| {
            matches!(sim.node(id), Some(Node::Client(c)) if c.ops == OPS_PER_CLIENT && c.step.is_none())
        })
    };
    let live = sim.run_until(finished, 60_000);
    check(&sim)?;
    if !live {
        return Err("the clients did not finish after the faults stopped".into());
    }
    // The clients fall silent: their sessions must expire everywhere.
    for id in CLIENTS {
        if let Some(Node::Client(client)) = sim.node_mut(id) {
            client.stopped = true;
        }
    }
    sim.run_for(SESSION_TIMEOUT_MS * 3);
    for id in SERVERS {
        if let Some(Node::Server(shell)) = sim.node(id) {
            let sessions = shell.server.state().sessions();
            if !sessions.is_empty() {
                return Err(format!("server {id} still has sessions {sessions:?}"));
            }
        }
    }
    Ok(())
}

fn check(sim: &Sim<Node>) -> Result<(), String> {
    let mut open: BTreeMap<NodeId, usize> = BTreeMap::new();
    let mut history: Vec<Operation<RegOp, RegOut>> = Vec::new();
    for &(at, node, ref event) in sim.history() {
        match *event {
            Event::Call { op } => {
                open.insert(node, history.len());
                history.push(Operation {
                    client: u64::from(node),
                    input: op,
                    call: at,
                    output: None,
                });
            }
            Event::Return { out } => {
                if let Some(i) = open.remove(&node) {
                    history[i].output = Some((out, at));
                }
            }
            Event::GaveUp => {
                open.remove(&node);
            }
        }
    }
    linearizability::check(&Register, &history).map_err(|violation| {
        let last: Vec<_> = violation
            .longest_prefix
            .iter()
            .rev()
            .take(3)
            .map(|&i| &history[i])
            .collect();
        format!(
            "not linearizable: {} of {} operations linearized; the last: {last:?}",
            violation.longest_prefix.len(),
            history.len()
        )
    })
}

#[test]
fn the_coordinator_is_linearizable_and_expires_sessions_under_faults() {
    common::seeds("COORD", "coordinator_sim", 100, run);
}

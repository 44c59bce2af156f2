//! The coordinator in chapter 6's simulator: five servers (`node::Server`
//! with a simulated disk that syncs every 30 ms and loses what was not
//! synced in a crash), three clients, each a `client::ClientSession` (the
//! client library itself: it moves to another server when one falls
//! silent, and sets its watches again there), and the nemesis (partitions,
//! crashes, power losses, clock jumps). Checkers:
//!
//! - writes, compare-and-sets, deletes and *synced* reads (a `sync`, then a
//!   read pipelined behind it) of one znode are linearizable;
//! - every connection's answers come in the order its requests went;
//! - watches, per session: each watch a read set fires at most once; the
//!   zxids the session hears never go down (not even when it moves to a
//!   server that is behind); an event comes before any answer that shows
//!   the change, and no read shows a change to a watched node whose event
//!   has not come (a change missed across a move, say);
//! - when the clients stop, their sessions expire everywhere and their
//!   ephemeral nodes go, whatever the faults did to the leaders;
//! - liveness: after the faults, every client finishes its operations.
//!
//! Between a client and a server the network is a *connection*, as TCP
//! would give: in order, no duplicates, and a message lost stalls the
//! connection until the client gives up on it and opens another (a real
//! connection would break). ZooKeeper's ordering of watch events and
//! answers holds per connection, so only there. Between servers, and
//! between a client's successive connections, messages still reorder.
//!
//! Broken on purpose, it fails: reads without the `sync` before them (as
//! ZooKeeper's reads are by default) are not linearizable at seed 12;
//! without the sessions' memory of their last request, a write that
//! reached the log twice applies twice (not linearizable, seed 2). The
//! watch checker fails with a watch that is not one-shot (seed 0: a second
//! event with no watch set), with watches set again after a move without
//! firing those whose node changed (seed 0: a read shows a change whose
//! event never came), with a client that sets none again (seed 0, the
//! same), and with a server that resumes a session it is behind (seed 10:
//! an answer older than one the session had seen). The check that a
//! connection's answers come in order fails with reads answered before
//! the writes their connection sent before them (seed 0: an answer out of
//! order). A snapshot installed without firing the
//! watches on what it changed is not caught in 20,000 seeds: a follower a
//! little behind gets entries, not a snapshot, so in those runs a snapshot
//! was installed 96 times and changed a watched node once (counted before
//! a leader's `AppendEntries` left before its sync; the break still passes
//! 20,000 seeds). A unit test in
//! `node.rs` (`a_snapshot_installed_on_a_follower_fires_the_watches_it_jumps_over`)
//! catches that break.
//!
//! A second run adds pauses: servers stopped (as with `SIGSTOP`) and
//! resumed later. `COORD_SEEDS` sets how many seeds run (default 100, and
//! as many with pauses, `COORD_PAUSES_SEEDS`); `COORD_SEED=N` (or
//! `COORD_PAUSES_SEED=N`) replays one.

use std::collections::BTreeMap;

mod common;

use ch06_replication::sim::{Ctx, Millis, Nemesis, NodeId, Sim, SimConfig};
use ch07_coordinator::client::{ClientConfig, ClientEvent, ClientSession};
use ch07_coordinator::linearizability::{self, Model, Operation};
use ch07_coordinator::node::{Read, ReadResult, ServerMessage};
use ch07_coordinator::raft::{Index, RaftConfig};
use ch07_coordinator::sim::{self, ClientConn, ServerDisk, ServerShell, ShellConfig, Wire};
use ch07_coordinator::state::{Request, RequestError, Response};
use ch07_coordinator::tree::{ANY_VERSION, Change, TreeError, Version, Zxid};

const SERVERS: [NodeId; 5] = [1, 2, 3, 4, 5];
const CLIENTS: [NodeId; 3] = [100, 101, 102];
const OPS_PER_CLIENT: u64 = 25;
const SESSION_TIMEOUT_MS: u64 = 2_000;
/// A client with no answer after this long gives up on the server.
const CLIENT_TIMEOUT_MS: Millis = 1_000;
const PING_EVERY_MS: Millis = 300;
/// How many ticks (10 ms each) one sync takes.
const SYNC_EVERY_TICKS: u64 = 3;
const SNAPSHOT_EVERY: Index = 20;
/// The znode the clients race on.
const REGISTER: &str = "/r";

// ---------------------------------------------------------------------------
// What the run records, and the servers (their shell is `ch07_coordinator::sim`).

#[derive(Debug, Clone)]
enum Event {
    /// A client started an operation on the register.
    Call { op: RegOp },
    /// It ended, with this answer.
    Return { out: RegOut },
    /// It gave up on it (no answer).
    GaveUp,
    /// The answer to its request `xid` came on its connection `conn`.
    Answered { conn: u64, xid: u64 },
    /// The client's session number `session` (its first, second, ...)
    /// took in a message carrying `zxid`.
    Heard {
        session: u64,
        zxid: Zxid,
        what: Heard,
    },
}

/// What a client heard, for the watch checker.
#[derive(Debug, Clone)]
enum Heard {
    /// Watch events, of one entry.
    Watch(Vec<Change>),
    /// A read's answer: what it asked, what it got.
    Read(Read, Result<ReadResult, TreeError>),
    /// Another answer (`Connected`, a write's).
    Answer,
}

/// A server, its shell syncing every few ticks (group commit) and taking
/// a snapshot every `SNAPSHOT_EVERY` entries.
fn start_server(id: NodeId, disk: &mut ServerDisk, now: Millis) -> ServerShell {
    let config = RaftConfig {
        election_timeout_ms: 300,
        heartbeat_interval_ms: 50,
        max_entries_per_message: 16,
    };
    let shell = ShellConfig {
        sync_every_ticks: SYNC_EVERY_TICKS,
        snapshot_every: SNAPSHOT_EVERY,
    };
    sim::start_server(id, &SERVERS, config, shell, disk, now)
}

// ---------------------------------------------------------------------------
// The register model: one znode's data and version, or no node.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RegOp {
    Create(u8),
    Delete,
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
    Deleted,
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
            (RegOp::Delete, Some(_)) => (None, RegOut::Deleted),
            (RegOp::Delete, None) => (None, RegOut::NoNode),
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
    /// Waiting for the `sync` (request `xid`), and then for the read
    /// (request `read`), pipelined behind it.
    Sync {
        xid: u64,
        read: u64,
    },
    Read {
        xid: u64,
    },
    /// A read that sets a watch, outside the register's history.
    Watch {
        xid: u64,
    },
}

struct Client {
    /// The session, from the first tick on; a new one when it expires.
    session: Option<ClientSession>,
    /// How many sessions it has had.
    sessions: u64,
    /// Its connection: the number, the server, what was sent on it and
    /// what came back.
    conn: ClientConn,
    /// The reads asked, by request number, for the record.
    reads: BTreeMap<u64, Read>,
    ops: u64,
    step: Option<Step>,
    /// Once true, the client goes silent (as if it had died).
    stopped: bool,
}

impl Client {
    fn new() -> Client {
        Client {
            session: None,
            sessions: 0,
            conn: ClientConn::default(),
            reads: BTreeMap::new(),
            ops: 0,
            step: None,
            stopped: false,
        }
    }

    fn new_session(&mut self, ctx: &mut Ctx<'_, Wire, Event>) {
        let config = ClientConfig {
            session_timeout_ms: SESSION_TIMEOUT_MS,
            request_timeout_ms: CLIENT_TIMEOUT_MS,
            ping_interval_ms: PING_EVERY_MS,
        };
        let first = ctx.rng().usize(..SERVERS.len());
        self.session = Some(ClientSession::new(&SERVERS, first, config, ctx.now()));
        self.sessions += 1;
        self.reads.clear();
    }

    /// Sends what the session asks (a `Connect` opens a new connection)
    /// and acts on what it reports, until neither is left.
    fn pump(&mut self, ctx: &mut Ctx<'_, Wire, Event>) {
        loop {
            let Some(session) = self.session.as_mut() else {
                return;
            };
            let sends = session.take_sends();
            let events = session.take_events();
            if sends.is_empty() && events.is_empty() {
                return;
            }
            self.conn.send(ctx, sends);
            for event in events {
                self.on_event(ctx, event);
            }
        }
    }

    fn give_up(&mut self, ctx: &mut Ctx<'_, Wire, Event>) {
        if let Some(Step::Write { .. } | Step::Sync { .. } | Step::Read { .. }) = self.step {
            ctx.record(Event::GaveUp);
        }
        self.step = None;
    }

    fn read(&mut self, ctx: &mut Ctx<'_, Wire, Event>, read: Read) -> u64 {
        let session = self.session.as_mut().expect("a session");
        let xid = session.read(read.clone(), ctx.now());
        self.reads.insert(xid, read);
        xid
    }

    fn start_op(&mut self, ctx: &mut Ctx<'_, Wire, Event>) {
        if ctx.rng().bool() {
            // A read that sets a watch: on the register's data, its
            // existence, or the root's children.
            let path = REGISTER.to_string();
            let read = match ctx.rng().u8(..3) {
                0 => Read::GetData { path, watch: true },
                1 => Read::Exists { path, watch: true },
                _ => Read::GetChildren {
                    path: "/".into(),
                    watch: true,
                },
            };
            let xid = self.read(ctx, read);
            self.step = Some(Step::Watch { xid });
            return;
        }
        let value = ctx.rng().u8(1..=9);
        let op = match ctx.rng().u8(..5) {
            0 => RegOp::Create(value),
            1 => RegOp::Set(value),
            2 => RegOp::Cas(value, ctx.rng().i32(0..=3)),
            3 => RegOp::Delete,
            _ => RegOp::SyncedRead,
        };
        self.ops += 1;
        ctx.record(Event::Call { op });
        let request = match op {
            RegOp::Create(v) => Request::Create {
                path: REGISTER.into(),
                data: vec![v],
                ephemeral: false,
                sequential: false,
            },
            RegOp::Set(v) | RegOp::Cas(v, _) => {
                let version = match op {
                    RegOp::Cas(_, version) => version,
                    _ => ANY_VERSION,
                };
                Request::SetData {
                    path: REGISTER.into(),
                    data: vec![v],
                    version,
                }
            }
            RegOp::Delete => Request::Delete {
                path: REGISTER.into(),
                version: ANY_VERSION,
            },
            RegOp::SyncedRead => Request::Sync,
        };
        let session = self.session.as_mut().expect("a session");
        let xid = session.write(request, ctx.now());
        self.step = Some(match op {
            // The read goes at once, right behind the `sync`, on the same
            // connection: its server holds it until the `sync` is
            // answered.
            RegOp::SyncedRead => {
                let read = Read::GetData {
                    path: REGISTER.into(),
                    watch: false,
                };
                let read = self.read(ctx, read);
                Step::Sync { xid, read }
            }
            _ => Step::Write { xid, op },
        });
    }

    fn on_event(&mut self, ctx: &mut Ctx<'_, Wire, Event>, event: ClientEvent) {
        match (event, self.step) {
            (ClientEvent::Written { xid, result }, Some(Step::Write { xid: w, op }))
                if w == xid =>
            {
                let out = match (op, result) {
                    (RegOp::Create(_), Ok(_)) => RegOut::Created,
                    (RegOp::Create(_), Err(RequestError::Tree(TreeError::NodeExists { .. }))) => {
                        RegOut::Exists
                    }
                    (RegOp::Delete, Ok(Response::Deleted)) => RegOut::Deleted,
                    (_, Ok(Response::Set(stat))) => RegOut::Set(stat.version),
                    (_, Err(RequestError::Tree(TreeError::BadVersion { .. }))) => {
                        RegOut::BadVersion
                    }
                    (_, Err(RequestError::Tree(TreeError::NoNode { .. }))) => RegOut::NoNode,
                    // The session ended under it: it may or may not have
                    // happened.
                    (_, Err(RequestError::SessionExpired { .. })) => return self.give_up(ctx),
                    (op, other) => panic!("{op:?} answered {other:?}"),
                };
                ctx.record(Event::Return { out });
                self.step = None;
            }
            (ClientEvent::Written { xid, result }, Some(Step::Sync { xid: s, read }))
                if s == xid =>
            {
                if result.is_err() {
                    return self.give_up(ctx);
                }
                self.step = Some(Step::Read { xid: read });
            }
            (ClientEvent::ReadDone { xid, result }, Some(Step::Read { xid: r })) if r == xid => {
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
            (ClientEvent::ReadDone { xid, .. }, Some(Step::Watch { xid: w })) if w == xid => {
                self.step = None;
            }
            (ClientEvent::ConnectionLoss { xid }, Some(step)) => {
                let current = match step {
                    Step::Write { xid, .. }
                    | Step::Sync { xid, .. }
                    | Step::Read { xid }
                    | Step::Watch { xid } => xid,
                };
                if current == xid {
                    self.give_up(ctx);
                }
            }
            (ClientEvent::Expired, _) => {
                // A new session, with no watches.
                self.give_up(ctx);
                self.new_session(ctx);
            }
            _ => {}
        }
    }

    fn on_message(
        &mut self,
        ctx: &mut Ctx<'_, Wire, Event>,
        from: NodeId,
        conn: u64,
        seq: u64,
        msg: ServerMessage,
    ) {
        if self.stopped {
            return;
        }
        // Nothing, from a connection the client has left.
        for msg in self.conn.receive(from, conn, seq, msg) {
            if let ServerMessage::ReadDone { xid, .. } | ServerMessage::WriteDone { xid, .. } = msg
            {
                ctx.record(Event::Answered { conn, xid });
            }
            let heard = match &msg {
                ServerMessage::Watch { zxid, changes } => {
                    Some((*zxid, Heard::Watch(changes.clone())))
                }
                ServerMessage::ReadDone { xid, zxid, result } => self
                    .reads
                    .get(xid)
                    .map(|read| (*zxid, Heard::Read(read.clone(), result.clone()))),
                ServerMessage::WriteDone { zxid, .. } | ServerMessage::Connected { zxid, .. } => {
                    Some((*zxid, Heard::Answer))
                }
                _ => None,
            };
            if let Some((zxid, what)) = heard {
                let session = self.sessions;
                ctx.record(Event::Heard {
                    session,
                    zxid,
                    what,
                });
            }
            let Some(session) = self.session.as_mut() else {
                return;
            };
            session.on_message(from, msg, ctx.now());
            self.pump(ctx);
            if conn != self.conn.conn() {
                // The session left this connection (it expired, or the
                // server sent it on): the rest is not for it.
                return;
            }
        }
    }

    fn on_tick(&mut self, ctx: &mut Ctx<'_, Wire, Event>) {
        if self.stopped {
            return;
        }
        if self.session.is_none() {
            self.new_session(ctx);
        }
        if self.step.is_none() && self.ops < OPS_PER_CLIENT {
            self.start_op(ctx);
        }
        if let Some(session) = self.session.as_mut() {
            session.on_tick(ctx.now());
        }
        self.pump(ctx);
    }
}

// ---------------------------------------------------------------------------

enum Node {
    Server(Box<ServerShell>),
    Client(Box<Client>),
}

impl ch06_replication::sim::Node for Node {
    type Msg = Wire;
    type Disk = ServerDisk;
    type Event = Event;

    fn on_message(
        &mut self,
        ctx: &mut Ctx<'_, Wire, Event>,
        disk: &mut ServerDisk,
        from: NodeId,
        msg: Wire,
    ) {
        match (self, msg) {
            (Node::Server(shell), msg) => shell.on_message(ctx, disk, from, msg),
            (Node::Client(client), Wire::ToClient { conn, seq, msg }) => {
                client.on_message(ctx, from, conn, seq, msg)
            }
            _ => {}
        }
    }

    fn on_tick(&mut self, ctx: &mut Ctx<'_, Wire, Event>, disk: &mut ServerDisk) {
        match self {
            Node::Server(shell) => shell.on_tick(ctx, disk),
            Node::Client(client) => client.on_tick(ctx),
        }
    }
}

fn run(seed: u64) -> Result<(), String> {
    run_with(seed, false)
}

/// A run; with `pauses`, servers are also paused and resumed.
fn run_with(seed: u64, pauses: bool) -> Result<(), String> {
    let nemesis = Nemesis {
        min_interval_ms: 100,
        max_interval_ms: 600,
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
        sim.add_node(id, ServerDisk::default(), true, |id, disk, now| {
            Node::Server(Box::new(start_server(id, disk, now)))
        });
    }
    for id in CLIENTS {
        sim.add_node(id, ServerDisk::default(), false, |_, _, _| {
            Node::Client(Box::new(Client::new()))
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
    check_watches(&sim)?;
    check_answer_order(&sim)?;
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
            let sessions = shell.server().state().sessions();
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
            Event::Heard { .. } | Event::Answered { .. } => {}
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

// ---------------------------------------------------------------------------
// The watch checker.

/// The kinds of watch a client sets, as its library keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// `get_data`, or `exists` on a node that was there.
    Data,
    /// `exists` on a node that was not there.
    Exist,
    /// `get_children`.
    Children,
}

/// What the read that set a watch showed, to tell a later read that shows
/// a change from one that does not.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// The node's `mzxid`.
    Data(Zxid),
    /// Not there.
    Missing,
    /// The children.
    Children(Vec<String>),
}

/// One session's watches, as its answers and events tell them.
#[derive(Debug, Default)]
struct Watcher {
    /// The watches set and not yet fired, with what their read showed.
    set: BTreeMap<(String, Kind), Seen>,
    /// The highest zxid of an event, and of an answer, heard so far.
    last_event: Zxid,
    last_answer: Zxid,
}

impl Watcher {
    fn heard(&mut self, zxid: Zxid, what: &Heard) -> Result<(), String> {
        match what {
            Heard::Watch(changes) => {
                for change in changes {
                    self.fired(zxid, change)?;
                }
                self.last_event = zxid;
            }
            Heard::Answer => self.answer(zxid)?,
            Heard::Read(read, result) => {
                self.answer(zxid)?;
                self.read(zxid, read, result)?;
            }
        }
        Ok(())
    }

    /// `change` came in an event at `zxid`.
    fn fired(&mut self, zxid: Zxid, change: &Change) -> Result<(), String> {
        if zxid < self.last_event {
            return Err(format!(
                "event {change:?} at zxid {zxid} after one at {}",
                self.last_event
            ));
        }
        // An answer at or after the change showed the tree with
        // it: the event had to come first.
        if zxid <= self.last_answer {
            return Err(format!(
                "event {change:?} at zxid {zxid} after an answer at {} showed it",
                self.last_answer
            ));
        }
        let path = change.path().to_string();
        let kinds: &[Kind] = match change {
            Change::NodeCreated(_) | Change::NodeDataChanged(_) => &[Kind::Data, Kind::Exist],
            Change::NodeDeleted(_) => &[Kind::Data, Kind::Exist, Kind::Children],
            Change::NodeChildrenChanged(_) => &[Kind::Children],
        };
        let fired = kinds
            .iter()
            .filter(|&&kind| self.set.remove(&(path.clone(), kind)).is_some())
            .count();
        if fired == 0 {
            return Err(format!(
                "event {change:?} at zxid {zxid} with no watch set for it (fired twice?)"
            ));
        }
        Ok(())
    }

    /// An answer at `zxid`: the session never goes back in time.
    fn answer(&mut self, zxid: Zxid) -> Result<(), String> {
        let seen = self.last_answer.max(self.last_event);
        if zxid < seen {
            return Err(format!(
                "an answer at zxid {zxid} after the session saw {seen}"
            ));
        }
        self.last_answer = zxid;
        Ok(())
    }

    /// A read at `zxid` showed the node at its path; no change it shows
    /// may be one of a watch that has not fired. Then it sets its watch.
    fn read(
        &mut self,
        zxid: Zxid,
        read: &Read,
        result: &Result<ReadResult, TreeError>,
    ) -> Result<(), String> {
        let (path, watch) = match read {
            Read::Exists { path, watch }
            | Read::GetData { path, watch }
            | Read::GetChildren { path, watch } => (path.clone(), *watch),
        };
        let shown = match result {
            Ok(ReadResult::Stat(Some(stat)) | ReadResult::Data(_, stat)) => Seen::Data(stat.mzxid),
            Ok(ReadResult::Stat(None)) | Err(TreeError::NoNode { .. }) => Seen::Missing,
            Ok(ReadResult::Children(children)) => Seen::Children(children.clone()),
            Err(e) => return Err(format!("read {read:?} failed: {e}")),
        };
        for ((_, kind), seen) in self
            .set
            .range((path.clone(), Kind::Data)..=(path.clone(), Kind::Children))
        {
            let changed = match (kind, seen, &shown) {
                (Kind::Data | Kind::Children, _, Seen::Missing) => true,
                (Kind::Exist, _, Seen::Data(_) | Seen::Children(_)) => true,
                (Kind::Data, Seen::Data(before), Seen::Data(now)) => now != before,
                (Kind::Children, Seen::Children(before), Seen::Children(now)) => now != before,
                _ => false,
            };
            if changed {
                return Err(format!(
                    "read {read:?} at zxid {zxid} shows {shown:?}, but the {kind:?} watch set \
                     when it was {seen:?} has not fired"
                ));
            }
        }
        if watch {
            let kind = match (read, &shown) {
                (_, Seen::Missing) if !matches!(read, Read::Exists { .. }) => return Ok(()),
                (Read::Exists { .. }, Seen::Missing) => Kind::Exist,
                (Read::GetChildren { .. }, _) => Kind::Children,
                _ => Kind::Data,
            };
            self.set.entry((path, kind)).or_insert(shown);
        }
        Ok(())
    }
}

/// What one session heard, in order: when, at which zxid, what.
type Record<'a> = Vec<(Millis, Zxid, &'a Heard)>;

/// Checks every session's watch events against its answers.
fn check_watches(sim: &Sim<Node>) -> Result<(), String> {
    let mut watchers: BTreeMap<(NodeId, u64), Watcher> = BTreeMap::new();
    let mut heard: BTreeMap<(NodeId, u64), Record<'_>> = BTreeMap::new();
    for &(at, node, ref event) in sim.history() {
        if let Event::Heard {
            session,
            zxid,
            ref what,
        } = *event
        {
            let before = heard.entry((node, session)).or_default();
            before.push((at, zxid, what));
            watchers
                .entry((node, session))
                .or_default()
                .heard(zxid, what)
                .map_err(|e| {
                    let last = &before[before.len().saturating_sub(6)..];
                    format!("client {node}, session {session}, at {at} ms: {e}; the last heard: {last:?}")
                })?;
        }
    }
    Ok(())
}

/// A connection's answers come in the order its requests were sent
/// (ZooKeeper's FIFO client order): the client pipelines them, and takes
/// each answer for the oldest request in flight.
fn check_answer_order(sim: &Sim<Node>) -> Result<(), String> {
    let mut last: BTreeMap<(NodeId, u64), u64> = BTreeMap::new();
    for &(at, node, ref event) in sim.history() {
        if let Event::Answered { conn, xid } = *event
            && let Some(before) = last.insert((node, conn), xid)
            && before >= xid
        {
            return Err(format!(
                "client {node}, connection {conn}, at {at} ms: the answer to request {xid} \
                 came after the answer to request {before}"
            ));
        }
    }
    Ok(())
}

#[test]
fn the_coordinator_is_linearizable_and_expires_sessions_under_faults() {
    common::seeds("COORD", "coordinator_sim", 100, run);
}

/// Servers paused and resumed too: a leader that wakes up replaced, whose
/// clock says its sessions have all gone silent, must not expire them.
#[test]
fn the_coordinator_keeps_its_guarantees_with_servers_paused() {
    let test = "coordinator_sim the_coordinator_keeps_its_guarantees_with_servers_paused";
    common::seeds("COORD_PAUSES", test, 100, |seed| run_with(seed, true));
}

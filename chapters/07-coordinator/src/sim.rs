//! The coordinator in chapter 6's simulator: a simulated disk for a Raft
//! server, the connections between clients and servers, and the shell
//! around a [`Server`] that a simulation runs. The simulation tests
//! (`tests/raft_sim.rs`, `tests/coordinator_sim.rs`) use them, and so can a
//! later chapter's simulation that puts coordinator servers beside other
//! nodes (chapter 8's brokers): its message type wraps [`Wire`].
//!
//! [`ServerShell`] does in simulation what [`shell`](crate::shell) does
//! with tokio: it writes what the server asks, holds the messages that must
//! wait for the sync, syncs every few ticks (group commit), and takes a
//! snapshot when enough is logged.

use std::collections::BTreeMap;
use std::sync::Arc;

use ch06_replication::sim::{Ctx, Disk, Millis, NodeId};

use crate::node::{ClientMessage, PeerMessage, Send, Server, ServerMessage};
use crate::raft::{DiskWrite, Entry, HardState, Index, RaftConfig, Snapshot};
use crate::state::LogEntry;
use crate::watches::ClientId;

/// A server's disk. Writes wait in `unsynced` until [`SimDisk::sync`]
/// (one sync for all of them: group commit). A crash keeps what was synced
/// and a random prefix of the rest.
#[derive(Debug, Clone)]
pub struct SimDisk<C> {
    /// The term and vote, as last synced.
    pub hard: HardState,
    /// The last snapshot synced.
    pub snapshot: Option<Snapshot>,
    /// The log: it reaches the snapshot, and may begin before it.
    pub log: Vec<Entry<C>>,
    /// What was written since the last sync.
    pub unsynced: Vec<DiskWrite<C>>,
    /// How many syncs it has had.
    pub syncs: u64,
}

impl<C> Default for SimDisk<C> {
    fn default() -> Self {
        SimDisk {
            hard: HardState::default(),
            snapshot: None,
            log: Vec::new(),
            unsynced: Vec::new(),
            syncs: 0,
        }
    }
}

impl<C> SimDisk<C> {
    fn store(&mut self, write: DiskWrite<C>) {
        match write {
            DiskWrite::Hard(hard) => self.hard = hard,
            DiskWrite::Snapshot(snapshot) => {
                // As `Storage` does: the log keeps the entries since the
                // previous snapshot, unless it disagrees with this one at
                // its edge; then the snapshot replaces all of it.
                let previous = self.snapshot.as_ref().map_or(0, |s| s.last_index);
                let agrees = self
                    .log
                    .iter()
                    .any(|e| e.index == snapshot.last_index && e.term == snapshot.last_term);
                if agrees {
                    self.log.retain(|e| e.index > previous);
                } else {
                    self.log.clear();
                }
                self.snapshot = Some(snapshot);
            }
            DiskWrite::Truncate(from) => self.log.retain(|e| e.index < from),
            DiskWrite::Append(entry) => {
                let last = self.last_index();
                if entry.index > last {
                    assert_eq!(entry.index, last + 1, "a gap in the log");
                    self.log.push(entry);
                }
            }
        }
    }

    /// The index of the last entry stored.
    pub fn last_index(&self) -> Index {
        self.log
            .last()
            .map(|e| e.index)
            .or(self.snapshot.as_ref().map(|s| s.last_index))
            .unwrap_or(0)
    }

    /// Syncs every pending write; returns whether there were any.
    pub fn sync(&mut self) -> bool {
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

impl<C> Disk for SimDisk<C> {
    fn crash(&mut self, rng: &mut fastrand::Rng) {
        let kept = rng.usize(0..=self.unsynced.len());
        for write in std::mem::take(&mut self.unsynced).into_iter().take(kept) {
            self.store(write);
        }
    }
}

/// A coordinator server's disk.
pub type ServerDisk = SimDisk<Arc<LogEntry>>;

/// What travels between coordinator servers, and between them and their
/// clients. Between a client and a server the simulation gives a
/// *connection*, as TCP would: each message carries the client's number
/// for the connection and its place on it, and the receiving end hands
/// them on in order, each once ([`Inbound`]).
#[derive(Debug, Clone)]
pub enum Wire {
    /// Between servers.
    Peer(PeerMessage),
    /// The `seq`th message on a client's connection number `conn`.
    FromClient {
        /// The connection.
        conn: u64,
        /// Its place on the connection.
        seq: u64,
        /// The message.
        msg: ClientMessage,
    },
    /// The `seq`th message back on connection `conn`.
    ToClient {
        /// The connection.
        conn: u64,
        /// Its place on the connection.
        seq: u64,
        /// The message.
        msg: ServerMessage,
    },
}

/// The receiving end of a connection: messages are handed on in the order
/// they were sent, each once; one that is early waits for those before it.
#[derive(Debug)]
pub struct Inbound<M> {
    next: u64,
    early: BTreeMap<u64, M>,
}

impl<M> Default for Inbound<M> {
    fn default() -> Self {
        Inbound {
            next: 0,
            early: BTreeMap::new(),
        }
    }
}

impl<M> Inbound<M> {
    /// Message `seq` arrived: the messages now in order.
    pub fn receive(&mut self, seq: u64, msg: M) -> Vec<M> {
        if seq < self.next {
            // A duplicate.
            return Vec::new();
        }
        self.early.insert(seq, msg);
        let mut ready = Vec::new();
        while let Some(msg) = self.early.remove(&self.next) {
            ready.push(msg);
            self.next += 1;
        }
        ready
    }
}

/// The server's name for a client's connection: the client's id and the
/// connection's number.
pub fn client_id(client: NodeId, conn: u64) -> ClientId {
    (u64::from(client) << 32) | conn
}

/// A client's end of its connection: which one it is (a `Connect` opens a
/// new one, to the server the session chose), how many messages went on
/// it, and the answers in order. A simulated node that holds a
/// [`ClientSession`](crate::client::ClientSession) sends through it and
/// hands it what arrives.
#[derive(Debug, Default)]
pub struct ClientConn {
    conn: u64,
    server: NodeId,
    sent: u64,
    inbound: Inbound<ServerMessage>,
}

impl ClientConn {
    /// The connection's number (0 before the first).
    pub fn conn(&self) -> u64 {
        self.conn
    }

    /// Sends a session's messages; a `Connect` opens a new connection,
    /// and the server drops the client's older ones.
    pub fn send<M: From<Wire>, E>(
        &mut self,
        ctx: &mut Ctx<'_, M, E>,
        sends: Vec<(NodeId, ClientMessage)>,
    ) {
        for (server, msg) in sends {
            if let ClientMessage::Connect { .. } = msg {
                self.conn += 1;
                self.server = server;
                self.sent = 0;
                self.inbound = Inbound::default();
            }
            let (conn, seq) = (self.conn, self.sent);
            self.sent += 1;
            ctx.send(server, Wire::FromClient { conn, seq, msg }.into());
        }
    }

    /// Message `seq` on connection `conn` from `from` arrived: the
    /// messages now in order. None from a connection the client has left.
    pub fn receive(
        &mut self,
        from: NodeId,
        conn: u64,
        seq: u64,
        msg: ServerMessage,
    ) -> Vec<ServerMessage> {
        if conn != self.conn || from != self.server {
            return Vec::new();
        }
        self.inbound.receive(seq, msg)
    }
}

/// A server's end of one connection.
#[derive(Debug, Default)]
struct ServerConn {
    inbound: Inbound<ClientMessage>,
    sent: u64,
}

/// Starts coordinator server `id` of the ensemble `servers` from what its
/// disk holds, in a shell that treats the disk as `shell` says.
pub fn start_server(
    id: NodeId,
    servers: &[NodeId],
    raft: RaftConfig,
    shell: ShellConfig,
    disk: &ServerDisk,
    now: Millis,
) -> ServerShell {
    let server = Server::new(
        id,
        servers,
        raft,
        disk.hard,
        disk.snapshot.clone(),
        disk.log.clone(),
        now,
        u64::from(id) * 31 + now,
    );
    ServerShell::new(server, shell)
}

/// How a [`ServerShell`] treats its disk.
#[derive(Debug, Clone, Copy)]
pub struct ShellConfig {
    /// Sync every this many ticks: one sync for everything written since
    /// the last (group commit).
    pub sync_every_ticks: u64,
    /// Take a snapshot once this many entries are logged past the last.
    pub snapshot_every: Index,
}

/// A coordinator server as a simulated node's part: the [`Server`], the
/// messages waiting for the next sync, and its ends of its clients'
/// connections.
pub struct ServerShell {
    server: Server,
    config: ShellConfig,
    held: Vec<Send>,
    ticks: u64,
    conns: BTreeMap<ClientId, ServerConn>,
}

impl ServerShell {
    /// A shell around `server`.
    pub fn new(server: Server, config: ShellConfig) -> ServerShell {
        ServerShell {
            server,
            config,
            held: Vec::new(),
            ticks: 0,
            conns: BTreeMap::new(),
        }
    }

    /// The server.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// A message from node `from`: a peer's, or one on a client's
    /// connection. (A message meant for a client is not for a server.)
    pub fn on_message<M: From<Wire>, E>(
        &mut self,
        ctx: &mut Ctx<'_, M, E>,
        disk: &mut ServerDisk,
        from: NodeId,
        msg: Wire,
    ) {
        match msg {
            Wire::Peer(msg) => self.server.on_peer(from, msg, ctx.now()),
            Wire::FromClient { conn, seq, msg } => self.on_client(ctx, from, conn, seq, msg),
            Wire::ToClient { .. } => return,
        }
        self.flush(ctx, disk);
    }

    /// A tick: a sync every [`ShellConfig::sync_every_ticks`], then the
    /// server's own timers.
    pub fn on_tick<M: From<Wire>, E>(&mut self, ctx: &mut Ctx<'_, M, E>, disk: &mut ServerDisk) {
        self.ticks += 1;
        if self.ticks.is_multiple_of(self.config.sync_every_ticks) {
            self.sync(ctx, disk);
        }
        self.server.on_tick(ctx.now());
        self.flush(ctx, disk);
    }

    /// A message on connection `conn` of client `from`.
    fn on_client<M: From<Wire>, E>(
        &mut self,
        ctx: &mut Ctx<'_, M, E>,
        from: NodeId,
        conn: u64,
        seq: u64,
        msg: ClientMessage,
    ) {
        let id = client_id(from, conn);
        let first = client_id(from, 0);
        let last = client_id(from, u64::from(u32::MAX));
        if !self.conns.contains_key(&id) {
            if self.conns.range(id..=last).next().is_some() {
                // A late message on a connection the client has left.
                return;
            }
            // A new connection: the client has given up on its older ones
            // (TCP would close them).
            let older: Vec<ClientId> = self.conns.range(first..id).map(|(&c, _)| c).collect();
            for old in older {
                self.conns.remove(&old);
                self.server.on_disconnect(old);
            }
        }
        let ready = self.conns.entry(id).or_default().inbound.receive(seq, msg);
        for msg in ready {
            self.server.on_client(id, msg, ctx.now());
        }
    }

    /// Writes what the server asks, holds what must wait for the sync,
    /// sends the rest.
    fn flush<M: From<Wire>, E>(&mut self, ctx: &mut Ctx<'_, M, E>, disk: &mut ServerDisk) {
        let output = self.server.take_output();
        disk.unsynced.extend(output.writes);
        self.held.extend(output.after_sync);
        for send in output.now {
            self.deliver(ctx, send);
        }
        if disk.unsynced.is_empty() {
            for send in std::mem::take(&mut self.held) {
                self.deliver(ctx, send);
            }
        }
    }

    fn sync<M: From<Wire>, E>(&mut self, ctx: &mut Ctx<'_, M, E>, disk: &mut ServerDisk) {
        if !disk.sync() {
            return;
        }
        for send in std::mem::take(&mut self.held) {
            self.deliver(ctx, send);
        }
        self.server.persisted(disk.last_index());
        let base = disk.snapshot.as_ref().map_or(0, |s| s.last_index);
        if disk.last_index() >= base + self.config.snapshot_every
            && let Some(compacted) = self.server.compact()
        {
            disk.unsynced.push(DiskWrite::Snapshot(compacted.snapshot));
        }
    }

    fn deliver<M: From<Wire>, E>(&mut self, ctx: &mut Ctx<'_, M, E>, send: Send) {
        match send {
            Send::Client(id, msg) => {
                // A connection this server has closed takes nothing more.
                if let Some(conn) = self.conns.get_mut(&id) {
                    let seq = conn.sent;
                    conn.sent += 1;
                    let to = (id >> 32) as NodeId;
                    let conn = id & u64::from(u32::MAX);
                    ctx.send(to, Wire::ToClient { conn, seq, msg }.into());
                }
            }
            Send::Peer(to, msg) => ctx.send(to, Wire::Peer(msg).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_hands_messages_on_in_order_each_once() {
        let mut inbound = Inbound::default();
        assert_eq!(inbound.receive(1, "b"), Vec::<&str>::new());
        assert_eq!(inbound.receive(0, "a"), ["a", "b"]);
        assert_eq!(inbound.receive(1, "b"), Vec::<&str>::new(), "a duplicate");
        assert_eq!(inbound.receive(2, "c"), ["c"]);
    }

    #[test]
    fn a_crash_keeps_what_was_synced_and_a_prefix_of_the_rest() {
        let entry = |index| {
            DiskWrite::Append(Entry {
                index,
                term: 1,
                command: None::<()>,
            })
        };
        for seed in 0..20 {
            let mut disk = SimDisk::default();
            disk.unsynced.extend([entry(1), entry(2)]);
            assert!(disk.sync());
            assert!(!disk.sync(), "nothing left to sync");
            disk.unsynced.extend([entry(3), entry(4), entry(5)]);
            disk.crash(&mut fastrand::Rng::with_seed(seed));
            assert!(disk.unsynced.is_empty());
            let kept: Vec<Index> = disk.log.iter().map(|e| e.index).collect();
            assert!((2..=5).contains(&disk.last_index()));
            assert_eq!(kept, (1..=disk.last_index()).collect::<Vec<_>>());
        }
    }
}

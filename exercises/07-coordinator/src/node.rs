//! One coordinator server, sans-IO: Raft, the replicated [`State`], its
//! clients' sessions and watches, joined.
//!
//! A [`Server`] takes three inputs (a client's message, a peer's message,
//! a tick of the clock) and collects its outputs; the shell takes them with
//! [`Server::take_output`] and carries them out in the order Raft needs
//! (see [`raft`](crate::raft)): persist and sync, then send what waited for
//! the sync, with replies to clients in the order they were made.
//!
//! What each kind of request does, as in ZooKeeper:
//!
//! - **Reads** (`exists`, `get_data`, `get_children`) are answered at once
//!   from this server's copy, which may be behind the leader's: reads are
//!   sequentially consistent, not linearizable. A read may set a watch.
//! - **Writes and `sync`** go to the leader (a follower forwards them),
//!   through the log, and are answered by the client's own server once it
//!   has applied them, so a client reads its own writes. `sync` then means:
//!   this server has everything the leader had when it took the `sync`.
//! - **Sessions** are opened and closed through the log. The leader ends a
//!   session it has not heard of for its timeout, with a `CloseSession` in
//!   the log; followers pass on which sessions they heard from at every
//!   tick. A new leader gives every session a fresh timeout (it does not
//!   know when the old leader last heard of them).
//!
//! Every answer carries the server's *zxid*, the index of the last log
//! entry it has applied, and a client remembers the highest it has seen.
//! A server behind that refuses to resume the session (ZooKeeper does the
//! same), so a client never sees the tree go back in time when it moves;
//! and the zxid tells the next server which watch events the client may
//! have missed ([`SetWatches`]).
//!
//! A client pipelines its requests on one connection, and a session's
//! requests must take effect in the order it sent them:
//!
//! - A write goes to the log at once, even with the connection's earlier
//!   writes not answered yet. It names the last of those (`after`): on its
//!   way to the leader it may overtake it (between servers the simulated
//!   network reorders), or that one may be lost; either way the state
//!   machine drops it rather than apply it out of order. ZooKeeper gets
//!   the order from its TCP link to the leader, and drops a follower's
//!   clients when the link breaks.
//! - A read is answered from this server's copy, at once, so it would pass
//!   a write sent before it: it waits until that write is answered
//!   (ZooKeeper's `CommitProcessor` holds a session's reads behind its
//!   pending writes the same way), and so does a write refused without the
//!   log.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use ch06_replication::sim::{Millis, NodeId};
use serde::{Deserialize, Serialize};

use crate::raft::{
    Compacted, DiskWrite, Entry, HardState, Index, Message, Raft, RaftConfig, Ready, Role, Snapshot,
};
use crate::state::{Command, LogEntry, Outcome, Request, RequestError, Response, State};
use crate::tree::{Change, SessionId, Stat, TreeError, Zxid};
use crate::watches::{ClientId, SetWatches, WatchKind, Watches};

/// A read, answered by the server the client is connected to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Read {
    /// The node's stat, if it exists; `watch` sets a data watch (which a
    /// creation fires too).
    Exists {
        /// The node.
        path: String,
        /// Whether to watch it.
        watch: bool,
    },
    /// The node's data and stat; `watch` sets a data watch.
    GetData {
        /// The node.
        path: String,
        /// Whether to watch it.
        watch: bool,
    },
    /// The node's children, sorted; `watch` sets a child watch.
    GetChildren {
        /// The node.
        path: String,
        /// Whether to watch it.
        watch: bool,
    },
}

/// What a client sends its server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMessage {
    /// Opens a new session (`session: None`), or resumes one after moving
    /// from another server.
    Connect {
        /// The session to resume.
        session: Option<SessionId>,
        /// The session's timeout, for a new one.
        timeout_ms: u64,
        /// The highest zxid the client has seen (0 for a new session): a
        /// server that has not applied that far refuses it.
        last_zxid: Zxid,
        /// The watches the client still has, to set again here.
        watches: SetWatches,
    },
    /// Keeps the session alive.
    Ping,
    /// A read, numbered by the client.
    Read {
        /// The client's request number.
        xid: u64,
        /// The read.
        read: Read,
    },
    /// A write or a `sync`.
    Write {
        /// The session's request number, increasing.
        xid: u64,
        /// The request.
        request: Request,
    },
    /// Ends the session.
    Close,
}

/// A read's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadResult {
    /// For `exists`.
    Stat(Option<Stat>),
    /// For `get_data`.
    Data(#[serde(with = "serde_bytes")] Vec<u8>, Stat),
    /// For `get_children`.
    Children(Vec<String>),
}

/// What a server sends a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMessage {
    /// The session is open (or resumed) on this server.
    Connected {
        /// Its id.
        session: SessionId,
        /// The server's zxid.
        zxid: Zxid,
    },
    /// The session has ended; the client must open a new one.
    SessionExpired,
    /// This server cannot take the request now (it has no leader, or the
    /// client has no session here): try again, or another server.
    NotReady,
    /// A read's answer.
    ReadDone {
        /// The request number.
        xid: u64,
        /// The server's zxid: the read shows the tree as of this entry.
        zxid: Zxid,
        /// The answer.
        result: Result<ReadResult, TreeError>,
    },
    /// A write's answer.
    WriteDone {
        /// The request number.
        xid: u64,
        /// The server's zxid, the write's own or later.
        zxid: Zxid,
        /// The answer.
        result: Result<Response, RequestError>,
    },
    /// Watches fired: all that one log entry fired for this client, in one
    /// message, so that a client that has seen `zxid` has had every event
    /// up to it (it sends that zxid to its next server).
    Watch {
        /// The zxid of the entry that made the changes (for changes found
        /// when watches were set again, or in a snapshot, the server's zxid
        /// then: they are at or before it).
        zxid: Zxid,
        /// What changed, in order.
        changes: Vec<Change>,
    },
    /// The session was closed at the client's request.
    Closed,
    /// The answer to a ping: the server hears the client.
    Pong,
}

/// What servers send each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerMessage {
    /// Raft's own.
    Raft(Message<Arc<LogEntry>>),
    /// A follower passes a command to the leader.
    Forward(Command),
    /// A follower heard from these sessions' clients.
    Touch(Vec<SessionId>),
}

/// Something the shell must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Send {
    /// To a client of this server.
    Client(ClientId, ServerMessage),
    /// To another server.
    Peer(NodeId, PeerMessage),
}

/// What the shell must do: make `writes`, sync them, then send
/// `after_sync`; `now` may go at once (replies, forwards and a leader's
/// `AppendEntries`, which depend on nothing unsynced here).
#[derive(Debug, Default)]
pub struct Output {
    /// Writes to make, in order.
    pub writes: Vec<DiskWrite<Arc<LogEntry>>>,
    /// Sends that must wait until every write so far is synced.
    pub after_sync: Vec<Send>,
    /// Sends that may go now.
    pub now: Vec<Send>,
}

/// What a client connected to this server is.
#[derive(Debug, Clone, Default)]
struct Connection {
    session: Option<SessionId>,
    /// Its writes in the log, not answered yet, oldest first.
    writing: VecDeque<u64>,
    /// Requests to be answered without the log that came while writes
    /// were in it, each held back until the last write then is answered:
    /// that write's number and the request, in order.
    held: VecDeque<(u64, Direct)>,
}

/// A request answered without the log: a read, or a write the tree would
/// refuse whatever its state (a bad path, data over the limit).
#[derive(Debug, Clone)]
enum Direct {
    Read(u64, Read),
    Refused(u64, RequestError),
}

/// One coordinator server.
#[derive(Debug)]
pub struct Server {
    id: NodeId,
    members: Vec<NodeId>,
    /// Raft, whose commands are shared: the log, the writes to disk, each
    /// follower's `AppendEntries` and the entries to apply hold one copy
    /// of a command, not one each.
    raft: Raft<Arc<LogEntry>>,
    state: State,
    /// The index of the last log entry applied to `state`: the zxid every
    /// answer carries.
    applied: Index,
    watches: Watches,
    clients: BTreeMap<ClientId, Connection>,
    /// Clients waiting for a session to open, by the session id given.
    opening: BTreeMap<SessionId, ClientId>,
    /// Writes waiting to be applied, by session and request number.
    waiting: BTreeMap<(SessionId, u64), ClientId>,
    /// The leader's view of session liveness: when each was last heard of.
    last_heard: BTreeMap<SessionId, Millis>,
    /// Sessions heard of since the last tick (a follower passes them on).
    touched: BTreeSet<SessionId>,
    /// Sessions the leader has asked to close, so it asks once.
    closing: BTreeSet<SessionId>,
    /// Session ids this server has handed out.
    next_session: u64,
    was_leader: bool,
    now: Millis,
    output: Output,
}

impl Server {
    /// Starts server `id` of `members` from what it had on disk.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: NodeId,
        members: &[NodeId],
        config: RaftConfig,
        hard: HardState,
        snapshot: Option<Snapshot>,
        log: Vec<Entry<Arc<LogEntry>>>,
        now: Millis,
        seed: u64,
    ) -> Self {
        let state = snapshot
            .as_ref()
            .map(|s| decode_state(&s.data))
            .unwrap_or_default();
        let applied = snapshot.as_ref().map_or(0, |s| s.last_index);
        let raft = Raft::new(id, members, config, hard, snapshot, log, now, seed);
        Server {
            id,
            members: members.to_vec(),
            raft,
            state,
            applied,
            watches: Watches::new(),
            clients: BTreeMap::new(),
            opening: BTreeMap::new(),
            waiting: BTreeMap::new(),
            last_heard: BTreeMap::new(),
            touched: BTreeSet::new(),
            closing: BTreeSet::new(),
            // Unique across this server's lives: the clock's milliseconds,
            // times 1,000, leave room for many sessions a millisecond.
            next_session: now * 1_000,
            was_leader: false,
            now,
            output: Output::default(),
        }
    }

    /// Its id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Its Raft role.
    pub fn role(&self) -> Role {
        self.raft.role()
    }

    /// Its current term.
    pub fn term(&self) -> u64 {
        self.raft.term()
    }

    /// Its zxid: the index of the last log entry it has applied.
    pub fn zxid(&self) -> Zxid {
        self.applied
    }

    /// Its copy of the replicated state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// A snapshot of its state at the last applied entry, for the shell to
    /// compact the log with, and the entries the log let go of.
    pub fn compact(&mut self) -> Option<Compacted<Arc<LogEntry>>> {
        self.raft.compact(self.applied, encode_state(&self.state))
    }

    /// A client's message.
    pub fn on_client(&mut self, client: ClientId, msg: ClientMessage, now: Millis) {
        self.now = now;
        // Raft's deadlines count from its clock: keep it current.
        self.raft.tick(now);
        let session = self.clients.get(&client).and_then(|c| c.session);
        if let Some(session) = session {
            self.touch(session);
        }
        match msg {
            ClientMessage::Connect {
                session: Some(session),
                last_zxid,
                watches,
                ..
            } => self.resume(client, session, last_zxid, &watches),
            ClientMessage::Connect {
                session: None,
                timeout_ms,
                ..
            } => {
                // The id: this server's in the top byte, then a counter.
                self.next_session += 1;
                let session = (u64::from(self.id) << 56) | (self.next_session & ((1 << 56) - 1));
                self.clients.insert(client, Connection::default());
                self.opening.insert(session, client);
                self.submit(Command::OpenSession {
                    session,
                    timeout_ms,
                });
            }
            // A ping on a connection with no session here (the server
            // restarted, say) gets `NotReady`: the client moves on.
            ClientMessage::Ping => match session {
                Some(_) => self.reply(client, ServerMessage::Pong),
                None => self.reply(client, ServerMessage::NotReady),
            },
            ClientMessage::Read { .. } | ClientMessage::Write { .. } => {
                let Some(session) = session else {
                    return self.reply(client, ServerMessage::NotReady);
                };
                self.serve(client, session, msg);
            }
            ClientMessage::Close => {
                if let Some(session) = session {
                    self.submit(Command::CloseSession { session });
                }
            }
        }
        self.drive();
    }

    /// Serves a read or write of `client`'s `session`: a write goes to
    /// the log at once, behind the connection's writes there; anything
    /// else is answered now, or, with writes in the log, once the last of
    /// them is answered.
    fn serve(&mut self, client: ClientId, session: SessionId, msg: ClientMessage) {
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        let direct = match msg {
            ClientMessage::Read { xid, read } => Direct::Read(xid, read),
            // A request the tree would refuse whatever its state is gets
            // no place in the log: it is answered like a read.
            ClientMessage::Write { xid, request } => match request.check() {
                Err(error) => Direct::Refused(xid, error),
                Ok(()) => {
                    let after = c.writing.back().copied();
                    c.writing.push_back(xid);
                    self.waiting.insert((session, xid), client);
                    return self.submit(Command::Request {
                        session,
                        xid,
                        after,
                        request,
                    });
                }
            },
            _ => return,
        };
        match c.writing.back() {
            Some(&last) => c.held.push_back((last, direct)),
            None => self.answer(client, direct),
        }
    }

    /// Answers a request without the log, from this server's copy.
    fn answer(&mut self, client: ClientId, direct: Direct) {
        let zxid = self.applied;
        let msg = match direct {
            Direct::Read(xid, read) => {
                let result = self.read(client, read);
                ServerMessage::ReadDone { xid, zxid, result }
            }
            Direct::Refused(xid, error) => ServerMessage::WriteDone {
                xid,
                zxid,
                result: Err(error),
            },
        };
        self.reply(client, msg);
    }

    /// `client`'s write `xid` was answered: what was held behind it is
    /// answered now, in order, showing the tree just after it.
    fn release(&mut self, client: ClientId, xid: u64) {
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        c.writing.retain(|&w| w != xid);
        let mut ready = Vec::new();
        while let Some((behind, _)) = c.held.front()
            && !c.writing.contains(behind)
        {
            ready.extend(c.held.pop_front().map(|(_, direct)| direct));
        }
        for direct in ready {
            self.answer(client, direct);
        }
    }

    /// A client that moved here resumes `session`. It has seen the tree as
    /// of `last_zxid`; a server that has not applied that far would show it
    /// the past (a node it saw created, gone again), so it is sent on to
    /// another server, as ZooKeeper refuses it. Otherwise its watches are
    /// set again, and those whose node changed after `last_zxid` fire
    /// before the `Connected`, like any event before the answer after it.
    fn resume(
        &mut self,
        client: ClientId,
        session: SessionId,
        last_zxid: Zxid,
        watches: &SetWatches,
    ) {
        if last_zxid > self.applied {
            return self.reply(client, ServerMessage::NotReady);
        }
        // The check comes second: a server behind the client may not have
        // applied the session's opening yet.
        if !self.state.sessions().contains_key(&session) {
            return self.reply(client, ServerMessage::SessionExpired);
        }
        self.clients.insert(
            client,
            Connection {
                session: Some(session),
                ..Connection::default()
            },
        );
        self.touch(session);
        // A connection starts with no watches but those it brings.
        self.watches.remove_client(client);
        let zxid = self.applied;
        let changes = self
            .watches
            .set_again(client, watches, last_zxid, self.state.tree());
        if !changes.is_empty() {
            self.reply(client, ServerMessage::Watch { zxid, changes });
        }
        self.reply(client, ServerMessage::Connected { session, zxid });
    }

    /// A client disconnected: its watches go; its session stays until it
    /// expires or the client comes back.
    pub fn on_disconnect(&mut self, client: ClientId) {
        self.clients.remove(&client);
        self.watches.remove_client(client);
        self.opening.retain(|_, c| *c != client);
        self.waiting.retain(|_, c| *c != client);
    }

    /// A peer's message.
    pub fn on_peer(&mut self, from: NodeId, msg: PeerMessage, now: Millis) {
        self.now = now;
        self.raft.tick(now);
        match msg {
            PeerMessage::Raft(msg) => self.raft.step(from, msg),
            PeerMessage::Forward(command) => self.submit(command),
            PeerMessage::Touch(sessions) => {
                if self.raft.role() == Role::Leader {
                    for session in sessions {
                        self.last_heard.insert(session, now);
                    }
                }
            }
        }
        self.drive();
    }

    /// Time passed.
    pub fn on_tick(&mut self, now: Millis) {
        self.now = now;
        self.raft.tick(now);
        if self.raft.role() == Role::Leader {
            self.expire_sessions();
        } else if !self.touched.is_empty()
            && let Some(leader) = self.raft.leader()
        {
            let sessions = std::mem::take(&mut self.touched).into_iter().collect();
            self.output
                .now
                .push(Send::Peer(leader, PeerMessage::Touch(sessions)));
        }
        self.drive();
    }

    /// The shell synced everything up to `index`.
    pub fn persisted(&mut self, index: Index) {
        self.raft.persisted(index);
        self.drive();
    }

    /// Takes what the shell must do.
    pub fn take_output(&mut self) -> Output {
        std::mem::take(&mut self.output)
    }

    fn reply(&mut self, client: ClientId, msg: ServerMessage) {
        self.output.now.push(Send::Client(client, msg));
    }

    fn touch(&mut self, session: SessionId) {
        if self.raft.role() == Role::Leader {
            self.last_heard.insert(session, self.now);
        } else {
            self.touched.insert(session);
        }
    }

    /// Puts a command in the log if this server leads, else passes it to
    /// the leader; with no leader known, it is dropped and its client will
    /// time out and retry.
    fn submit(&mut self, command: Command) {
        if self.raft.role() == Role::Leader {
            let entry = LogEntry {
                time: self.now,
                command,
            };
            // Only a leader proposes, and this one leads.
            let _ = self.raft.propose(Arc::new(entry));
        } else if let Some(leader) = self.raft.leader() {
            self.output
                .now
                .push(Send::Peer(leader, PeerMessage::Forward(command)));
        }
    }

    fn read(&mut self, client: ClientId, read: Read) -> Result<ReadResult, TreeError> {
        let tree = self.state.tree();
        let (path, watch, kind, result) = match read {
            Read::Exists { path, watch } => {
                let result = Ok(ReadResult::Stat(tree.exists(&path)));
                (path, watch, WatchKind::Data, result)
            }
            Read::GetData { path, watch } => {
                let result = tree
                    .get_data(&path)
                    .map(|(data, stat)| ReadResult::Data(data.to_vec(), stat));
                (path, watch, WatchKind::Data, result)
            }
            Read::GetChildren { path, watch } => {
                let result = tree.get_children(&path).map(ReadResult::Children);
                (path, watch, WatchKind::Children, result)
            }
        };
        // ZooKeeper sets an `exists` watch even on a node that is not
        // there (its creation fires it); the other reads only on a node
        // that is.
        let exists_read = matches!(result, Ok(ReadResult::Stat(_)));
        if watch && (result.is_ok() || exists_read) {
            self.watches.add(client, &path, kind);
        }
        result
    }

    /// The leader ends the sessions it has not heard of in time.
    fn expire_sessions(&mut self) {
        if !self.was_leader {
            // A new leader: every session gets a fresh timeout.
            self.was_leader = true;
            self.last_heard = self
                .state
                .sessions()
                .keys()
                .map(|&s| (s, self.now))
                .collect();
            self.closing.clear();
        }
        let expired: Vec<SessionId> = self
            .state
            .sessions()
            .iter()
            .filter(|(s, info)| {
                let heard = self.last_heard.get(s).copied().unwrap_or(self.now);
                self.now >= heard + info.timeout_ms && !self.closing.contains(s)
            })
            .map(|(&s, _)| s)
            .collect();
        for session in expired {
            self.closing.insert(session);
            self.submit(Command::CloseSession { session });
        }
    }

    /// Applies what Raft committed, and routes Raft's messages.
    fn drive(&mut self) {
        if self.raft.role() != Role::Leader {
            self.was_leader = false;
        }
        let ready: Ready<Arc<LogEntry>> = self.raft.take_ready();
        self.output.writes.extend(ready.writes());
        for (to, msg) in ready.messages {
            let early = msg.may_precede_sync();
            let send = Send::Peer(to, PeerMessage::Raft(msg));
            if early {
                self.output.now.push(send);
            } else {
                self.output.after_sync.push(send);
            }
        }
        if let Some(snapshot) = ready.snapshot {
            // The leader's state replaces ours. Our clients' waiting writes
            // inside it were applied there: they time out and ask again,
            // and the session's memory answers them. Their watches on what
            // the jump changed fire now, before any answer shows it.
            let old = std::mem::replace(&mut self.state, decode_state(&snapshot.data));
            self.applied = snapshot.last_index;
            let fired = self.watches.fire_jump(old.tree(), self.state.tree());
            self.tell(self.applied, fired);
        }
        for entry in ready.committed {
            self.apply(entry);
        }
    }

    /// Sends each client the changes `fired` for it at `zxid`, in one
    /// message.
    fn tell(&mut self, zxid: Zxid, fired: Vec<(ClientId, Change)>) {
        let mut by_client: BTreeMap<ClientId, Vec<Change>> = BTreeMap::new();
        for (client, change) in fired {
            by_client.entry(client).or_default().push(change);
        }
        for (client, changes) in by_client {
            self.reply(client, ServerMessage::Watch { zxid, changes });
        }
    }

    fn apply(&mut self, entry: Entry<Arc<LogEntry>>) {
        self.applied = entry.index;
        let Some(log_entry) = entry.command else {
            return;
        };
        let zxid = entry.index;
        let (outcome, changes) = self.state.apply(zxid, &log_entry);
        // Watches first: a client hears of a change before any answer that
        // shows it.
        let fired = self.watches.fire(&changes);
        self.tell(zxid, fired);
        match outcome {
            Outcome::SessionOpened(session) => {
                self.last_heard.insert(session, self.now);
                if let Some(client) = self.opening.remove(&session) {
                    if let Some(c) = self.clients.get_mut(&client) {
                        c.session = Some(session);
                    }
                    self.reply(client, ServerMessage::Connected { session, zxid });
                }
            }
            Outcome::SessionClosed { session, .. } => {
                self.last_heard.remove(&session);
                self.closing.remove(&session);
                let clients: Vec<ClientId> = self
                    .clients
                    .iter()
                    .filter(|(_, c)| c.session == Some(session))
                    .map(|(&id, _)| id)
                    .collect();
                for client in clients {
                    self.clients.insert(client, Connection::default());
                    self.reply(client, ServerMessage::SessionExpired);
                }
            }
            Outcome::Answered {
                session,
                xid,
                result,
            } => {
                if let Some(client) = self.waiting.remove(&(session, xid)) {
                    self.reply(client, ServerMessage::WriteDone { xid, zxid, result });
                    self.release(client, xid);
                }
            }
            Outcome::Nothing => {}
        }
    }

    /// The ids of the group's members.
    pub fn members(&self) -> &[NodeId] {
        &self.members
    }
}

fn encode_state(state: &State) -> Vec<u8> {
    bincode::serde::encode_to_vec(state, bincode::config::standard()).expect("the state encodes")
}

fn decode_state(data: &[u8]) -> State {
    bincode::serde::decode_from_slice(data, bincode::config::standard())
        .map(|(state, _)| state)
        .expect("a snapshot this server's peers wrote")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::LocalCluster as Cluster;
    use crate::tree::ANY_VERSION;

    fn create(path: &str, ephemeral: bool) -> Request {
        Request::Create {
            path: path.into(),
            data: b"v".to_vec(),
            ephemeral,
            sequential: false,
        }
    }

    fn get(path: &str, watch: bool) -> ClientMessage {
        ClientMessage::Read {
            xid: 0,
            read: Read::GetData {
                path: path.into(),
                watch,
            },
        }
    }

    /// Whether `send` is a Raft message to a peer that `matches`.
    fn raft_send(send: &Send, matches: impl Fn(&Message<Arc<LogEntry>>) -> bool) -> bool {
        matches!(send, Send::Peer(_, PeerMessage::Raft(msg)) if matches(msg))
    }

    #[test]
    fn a_leaders_appends_leave_before_its_sync_and_a_followers_answer_after_its_own() {
        let mut cluster = Cluster::new();
        cluster.connect(1, 10);
        let now = cluster.now;
        let write = ClientMessage::Write {
            xid: 1,
            request: create("/a", false),
        };
        let leader = cluster.server(1);
        leader.on_client(10, write, now);
        let output = leader.take_output();
        assert!(!output.writes.is_empty(), "{output:?}");
        let appends: Vec<(NodeId, Message<Arc<LogEntry>>)> = output
            .now
            .into_iter()
            .filter_map(|send| match send {
                Send::Peer(to, PeerMessage::Raft(msg @ Message::AppendEntries { .. })) => {
                    Some((to, msg))
                }
                _ => None,
            })
            .collect();
        assert_eq!(appends.len(), 2, "one to each follower, before the sync");
        let append = |msg: &Message<_>| matches!(msg, Message::AppendEntries { .. });
        assert!(!output.after_sync.iter().any(|send| raft_send(send, append)));
        // The follower's acknowledgement vouches for its disk: it waits.
        let (_, to_two) = appends.into_iter().find(|(to, _)| *to == 2).unwrap();
        let follower = cluster.server(2);
        follower.on_peer(1, PeerMessage::Raft(to_two), now);
        let answer = follower.take_output();
        let acknowledged =
            |msg: &Message<_>| matches!(msg, Message::AppendResult { success: true, .. });
        assert!(
            answer
                .after_sync
                .iter()
                .any(|send| raft_send(send, acknowledged)),
            "{answer:?}"
        );
        assert!(
            !answer.now.iter().any(|send| raft_send(send, |_| true)),
            "{answer:?}"
        );
    }

    #[test]
    fn a_client_of_a_follower_writes_through_the_leader_and_reads_its_write() {
        let mut cluster = Cluster::new();
        cluster.connect(2, 10);
        let write = ClientMessage::Write {
            xid: 1,
            request: create("/a", false),
        };
        cluster.send(2, 10, write);
        let zxid = cluster.server(2).zxid();
        assert_eq!(
            cluster.received(2, 10),
            vec![ServerMessage::WriteDone {
                xid: 1,
                zxid,
                result: Ok(Response::Created("/a".into()))
            }]
        );
        cluster.send(2, 10, get("/a", false));
        let received = cluster.received(2, 10);
        let [
            ServerMessage::ReadDone {
                result: Ok(ReadResult::Data(data, _)),
                ..
            },
        ] = received.as_slice()
        else {
            panic!("expected the data, got {received:?}");
        };
        assert_eq!(data, b"v");
    }

    /// A pipelined round of a client of server 2: create `/a`, read it,
    /// set it, read it again.
    fn pipelined_round(cluster: &mut Cluster) {
        let read = |xid| ClientMessage::Read {
            xid,
            read: Read::GetData {
                path: "/a".into(),
                watch: false,
            },
        };
        let create = ClientMessage::Write {
            xid: 1,
            request: create("/a", false),
        };
        let set = ClientMessage::Write {
            xid: 3,
            request: Request::SetData {
                path: "/a".into(),
                data: b"w".to_vec(),
                version: ANY_VERSION,
            },
        };
        let now = cluster.now;
        for msg in [create, read(2), set, read(4)] {
            cluster.server(2).on_client(10, msg, now);
        }
    }

    #[test]
    fn a_connections_pipelined_requests_are_answered_in_order_behind_its_writes() {
        let mut cluster = Cluster::new();
        cluster.connect(2, 10);
        pipelined_round(&mut cluster);
        cluster.settle();
        cluster.pass(20);
        let answers: Vec<String> = cluster
            .received(2, 10)
            .into_iter()
            .map(|msg| match msg {
                ServerMessage::WriteDone {
                    xid,
                    result: Ok(Response::Set(stat)),
                    ..
                } => format!("{xid}: version {}", stat.version),
                ServerMessage::WriteDone { xid, result, .. } => format!("{xid}: {result:?}"),
                ServerMessage::ReadDone {
                    xid,
                    result: Ok(ReadResult::Data(data, _)),
                    ..
                } => format!("{xid}: {}", String::from_utf8_lossy(&data)),
                other => format!("{other:?}"),
            })
            .collect();
        // Each read shows the write before it.
        assert_eq!(
            answers,
            ["1: Ok(Created(\"/a\"))", "2: v", "3: version 1", "4: w"]
        );
    }

    #[test]
    fn a_sessions_writes_go_to_the_log_at_once_each_behind_the_one_before() {
        let mut cluster = Cluster::new();
        cluster.connect(2, 10);
        pipelined_round(&mut cluster);
        let output = cluster.server(2).take_output();
        let forwarded: Vec<(u64, Option<u64>)> = output
            .now
            .iter()
            .filter_map(|send| match send {
                Send::Peer(_, PeerMessage::Forward(Command::Request { xid, after, .. })) => {
                    Some((*xid, *after))
                }
                _ => None,
            })
            .collect();
        // The set names the create: on a network that reorders, it must
        // not take effect without it.
        assert_eq!(forwarded, vec![(1, None), (3, Some(1))]);
        assert!(!output.now.iter().any(|s| matches!(s, Send::Client(..))));
    }

    #[test]
    fn a_write_no_tree_would_take_is_refused_before_it_is_logged() {
        let mut cluster = Cluster::new();
        cluster.connect(2, 10);
        let before: Vec<Zxid> = (1..=3).map(|id| cluster.server(id).zxid()).collect();
        let bad_path = ClientMessage::Write {
            xid: 1,
            request: create("/a//b", false),
        };
        cluster.send(2, 10, bad_path);
        let too_big = ClientMessage::Write {
            xid: 2,
            request: Request::Multi(vec![
                crate::tree::Op::Check {
                    path: "/".into(),
                    version: ANY_VERSION,
                },
                crate::tree::Op::SetData {
                    path: "/a".into(),
                    data: vec![0; crate::tree::MAX_DATA + 1],
                    version: ANY_VERSION,
                },
            ]),
        };
        cluster.send(2, 10, too_big);
        let received = cluster.received(2, 10);
        let [
            ServerMessage::WriteDone {
                xid: 1,
                result: Err(RequestError::Tree(TreeError::BadArguments { .. })),
                ..
            },
            ServerMessage::WriteDone {
                xid: 2,
                result: Err(RequestError::Multi(multi)),
                ..
            },
        ] = received.as_slice()
        else {
            panic!("expected two refusals, got {received:?}");
        };
        assert_eq!(multi.index, 1);
        assert!(matches!(multi.error, TreeError::BadArguments { .. }));
        // Nothing was logged: no server applied anything more.
        let after: Vec<Zxid> = (1..=3).map(|id| cluster.server(id).zxid()).collect();
        assert_eq!(after, before);
    }

    #[test]
    fn a_session_moves_to_another_server_and_keeps_its_ephemerals() {
        let mut cluster = Cluster::new();
        let session = cluster.connect(2, 10);
        let write = ClientMessage::Write {
            xid: 1,
            request: create("/e", true),
        };
        cluster.send(2, 10, write);
        cluster.server(2).on_disconnect(10);
        let resume = ClientMessage::Connect {
            session: Some(session),
            timeout_ms: 500,
            last_zxid: 0,
            watches: SetWatches::default(),
        };
        cluster.send(3, 10, resume);
        let zxid = cluster.server(3).zxid();
        assert_eq!(
            cluster.received(3, 10),
            vec![ServerMessage::Connected { session, zxid }]
        );
        for _ in 0..5 {
            cluster.send(3, 10, ClientMessage::Ping);
            cluster.pass(200);
        }
        assert!(cluster.server(1).state().tree().exists("/e").is_some());
    }

    #[test]
    fn a_silent_session_expires_its_ephemerals_go_and_watchers_hear_it() {
        let mut cluster = Cluster::new();
        cluster.connect(2, 10);
        let write = ClientMessage::Write {
            xid: 1,
            request: create("/lock", true),
        };
        cluster.send(2, 10, write);
        cluster.received(2, 10);
        cluster.connect(3, 20);
        cluster.send(3, 20, get("/lock", true));
        cluster.received(3, 20);
        // Client 20 keeps pinging; client 10 falls silent.
        for _ in 0..10 {
            cluster.send(3, 20, ClientMessage::Ping);
            cluster.pass(100);
        }
        for id in 1..=3 {
            assert!(cluster.server(id).state().tree().exists("/lock").is_none());
        }
        assert_eq!(cluster.received(2, 10), vec![ServerMessage::SessionExpired]);
        // Every ping is answered; besides, the one watch event.
        let (pongs, received): (Vec<_>, Vec<_>) = cluster
            .received(3, 20)
            .into_iter()
            .partition(|m| *m == ServerMessage::Pong);
        assert_eq!(pongs.len(), 10);
        let [ServerMessage::Watch { zxid, changes }] = received.as_slice() else {
            panic!("expected one watch event, got {received:?}");
        };
        assert_eq!(*changes, vec![Change::NodeDeleted("/lock".into())]);
        // The event carries the zxid of the change: the entry that closed
        // the session.
        let deleted_at = cluster.server(3).state().tree().last_zxid();
        assert_eq!(*zxid, deleted_at);
        // The watch was one-shot.
        let recreate = ClientMessage::Write {
            xid: 1,
            request: create("/lock", false),
        };
        cluster.send(3, 20, recreate);
        assert!(
            cluster
                .received(3, 20)
                .iter()
                .all(|m| !matches!(m, ServerMessage::Watch { .. }))
        );
    }

    #[test]
    fn a_snapshot_installed_on_a_follower_fires_the_watches_it_jumps_over() {
        // Two copies of one ensemble, the same up to here: /w exists, and
        // client 20 watches its data on server 3.
        let copy = || {
            let mut cluster = Cluster::new();
            cluster.connect(2, 10);
            let write = ClientMessage::Write {
                xid: 1,
                request: create("/w", false),
            };
            cluster.send(2, 10, write);
            cluster.connect(3, 20);
            cluster.send(3, 20, get("/w", true));
            cluster.inbox.clear();
            cluster
        };
        let (mut changed, mut behind) = (copy(), copy());
        // In one, /w changes; its leader's snapshot holds the change.
        let set = ClientMessage::Write {
            xid: 2,
            request: Request::SetData {
                path: "/w".into(),
                data: b"new".to_vec(),
                version: ANY_VERSION,
            },
        };
        changed.send(2, 10, set);
        let snapshot = changed.server(1).compact().expect("a snapshot").snapshot;
        let term = changed.server(1).term();
        // The other's server 3 never heard of it, and gets the snapshot.
        let now = behind.now;
        let install = PeerMessage::Raft(Message::InstallSnapshot { term, snapshot });
        behind.server(3).on_peer(1, install, now);
        behind.settle();
        assert_eq!(
            behind.server(3).state().tree().get_data("/w").unwrap().0,
            b"new"
        );
        let received = behind.received(3, 20);
        let [ServerMessage::Watch { changes, .. }] = received.as_slice() else {
            panic!("expected one watch event, got {received:?}");
        };
        assert_eq!(*changes, vec![Change::NodeDataChanged("/w".into())]);
    }

    #[test]
    fn a_write_of_an_expired_session_is_refused() {
        let mut cluster = Cluster::new();
        let session = cluster.connect(1, 10);
        cluster.pass(1_000);
        assert!(!cluster.server(1).state().sessions().contains_key(&session));
        cluster.received(1, 10);
        let resume = ClientMessage::Connect {
            session: Some(session),
            timeout_ms: 500,
            last_zxid: 0,
            watches: SetWatches::default(),
        };
        cluster.send(2, 10, resume);
        assert_eq!(cluster.received(2, 10), vec![ServerMessage::SessionExpired]);
        let write = ClientMessage::Write {
            xid: 2,
            request: Request::Delete {
                path: "/".into(),
                version: ANY_VERSION,
            },
        };
        cluster.send(2, 10, write);
        assert_eq!(cluster.received(2, 10), vec![ServerMessage::NotReady]);
    }

    #[test]
    fn a_server_behind_the_client_refuses_to_resume_its_session() {
        let mut cluster = Cluster::new();
        let session = cluster.connect(1, 10);
        let seen = cluster.server(1).zxid();
        let resume = |last_zxid| ClientMessage::Connect {
            session: Some(session),
            timeout_ms: 500,
            last_zxid,
            watches: SetWatches::default(),
        };
        // A client that has seen more than server 2 has applied would see
        // the past there: it is sent on.
        cluster.send(2, 10, resume(seen + 100));
        assert_eq!(cluster.received(2, 10), vec![ServerMessage::NotReady]);
        cluster.send(2, 10, resume(seen));
        let received = cluster.received(2, 10);
        assert!(
            matches!(received.as_slice(), [ServerMessage::Connected { zxid, .. }] if *zxid >= seen),
            "{received:?}"
        );
    }
}

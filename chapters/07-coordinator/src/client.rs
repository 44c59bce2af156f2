//! A client's session, sans-IO: the connection logic ZooKeeper's client
//! library has, as a state machine the simulator and a tokio shell can both
//! drive.
//!
//! A [`ClientSession`] keeps one session alive across servers:
//!
//! - it opens the session on one server, pings it, and when that server
//!   stops answering it moves to the next and *resumes* the session there
//!   (the session lives in the replicated state, so any server knows it);
//! - it numbers requests and *pipelines* them, as ZooKeeper's client
//!   does: each goes as soon as it is made, without waiting for the answer
//!   to the one before, on a connection that keeps their order (TCP). The
//!   server answers a session's requests in the order they came (it holds
//!   a read back behind a write of the same session; see
//!   [`node`](crate::node)), so answers come back in order too, and the
//!   client matches each to the oldest request in flight;
//! - the requests in flight when the connection is lost fail with
//!   [`ClientEvent::ConnectionLoss`]: each may or may not have taken
//!   effect (ZooKeeper's `CONNECTIONLOSS`); the ones not sent yet go to
//!   the next server;
//! - if the session has expired (it was silent too long), every request
//!   fails and [`ClientEvent::Expired`] says so; the application opens a
//!   new session, and with it loses its ephemeral nodes and watches.
//!
//! Watches live on the server a client is connected to, so the client
//! remembers the ones it has (a read that set one was answered, its event
//! has not come) and the highest zxid it has seen. When it resumes the
//! session on another server it sends both, as ZooKeeper's client does with
//! `SetWatches`: the new server sets them again, and fires at once those
//! whose node changed after that zxid. A watch survives the move, and no
//! change is missed across it. (The one a read in flight at the move may
//! have set is not known here: that read fails with
//! [`ClientEvent::ConnectionLoss`], and the application reads again.)

use std::collections::{BTreeSet, VecDeque};

use ch06_replication::sim::{Millis, NodeId};

use crate::node::{ClientMessage, Read, ReadResult, ServerMessage};
use crate::state::{Request, RequestError, Response};
use crate::tree::{Change, SessionId, TreeError, Zxid};
use crate::watches::SetWatches;

/// Timing of a session.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The session timeout asked for.
    pub session_timeout_ms: u64,
    /// How long to wait for a server's answer before trying the next.
    pub request_timeout_ms: Millis,
    /// How often to ping when idle.
    pub ping_interval_ms: Millis,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            session_timeout_ms: 6_000,
            request_timeout_ms: 2_000,
            ping_interval_ms: 1_000,
        }
    }
}

/// What happened, for the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The session is open.
    Connected(SessionId),
    /// The session moved to another server and is still alive; its watches
    /// were set again there (any whose node changed meanwhile has fired).
    Reconnected(SessionId),
    /// The session has expired: ephemeral nodes and watches are gone, and
    /// every request of it failed.
    Expired,
    /// A write (or `sync`) was answered.
    Written {
        /// The request's number.
        xid: u64,
        /// The answer.
        result: Result<Response, RequestError>,
    },
    /// A read was answered.
    ReadDone {
        /// The request's number.
        xid: u64,
        /// The answer.
        result: Result<ReadResult, TreeError>,
    },
    /// A request was in flight when the connection was lost: it may or may
    /// not have taken effect.
    ConnectionLoss {
        /// The request's number.
        xid: u64,
    },
    /// A watch fired.
    Watch(Change),
}

#[derive(Debug, Clone)]
enum Op {
    Write(Request),
    Read(Read),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    /// Waiting for `Connected` since this time.
    Connecting(Millis),
    /// Open on `server`.
    Open,
    /// The session is over.
    Expired,
}

// ANCHOR: client_watches
/// The watches a client has: set by a read that was answered, not yet
/// fired. The client keeps them to set them again on its next server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ClientWatches {
    /// `get_data`, or `exists` on a node that was there.
    data: BTreeSet<String>,
    /// `exists` on a node that was not there.
    exist: BTreeSet<String>,
    /// `get_children`.
    children: BTreeSet<String>,
}

impl ClientWatches {
    /// `read` was answered with `result`: the watch it set, if any.
    fn set(&mut self, read: &Read, result: &Result<ReadResult, TreeError>) {
        match (read, result) {
            (Read::Exists { path, watch: true }, Ok(ReadResult::Stat(None))) => {
                self.exist.insert(path.clone());
            }
            (Read::Exists { path, watch: true }, Ok(_))
            | (Read::GetData { path, watch: true }, Ok(_)) => {
                self.data.insert(path.clone());
            }
            (Read::GetChildren { path, watch: true }, Ok(_)) => {
                self.children.insert(path.clone());
            }
            _ => {}
        }
    }

    /// `change` fired the watches it concerns: they are gone.
    fn fired(&mut self, change: &Change) {
        let path = change.path();
        match change {
            Change::NodeCreated(_) | Change::NodeDataChanged(_) => {
                self.data.remove(path);
                self.exist.remove(path);
            }
            Change::NodeDeleted(_) => {
                self.data.remove(path);
                self.exist.remove(path);
                self.children.remove(path);
            }
            Change::NodeChildrenChanged(_) => {
                self.children.remove(path);
            }
        }
    }

    /// What to send the next server.
    fn to_set_again(&self) -> SetWatches {
        SetWatches {
            data: self.data.iter().cloned().collect(),
            exist: self.exist.iter().cloned().collect(),
            children: self.children.iter().cloned().collect(),
        }
    }
}
// ANCHOR_END: client_watches

/// One client session.
#[derive(Debug)]
pub struct ClientSession {
    servers: Vec<NodeId>,
    server: usize,
    config: ClientConfig,
    session: Option<SessionId>,
    conn: Conn,
    next_xid: u64,
    /// Requests not yet answered, oldest first; the first `sent` of them
    /// are in flight on the current connection.
    queue: VecDeque<(u64, Op)>,
    sent: usize,
    /// Since when the server has owed an answer: the oldest request in
    /// flight went, or the last answer came, at this time. A server that
    /// stays silent longer than the request timeout is left.
    owed_since: Millis,
    last_sent: Millis,
    /// When the ping still unanswered went: a server that does not answer
    /// a ping within the request timeout is left, as one that does not
    /// answer a request is (an idle client would not notice otherwise, and
    /// its session would expire on a server that cannot hear it).
    ping_since: Option<Millis>,
    sends: Vec<(NodeId, ClientMessage)>,
    events: Vec<ClientEvent>,
    /// The highest zxid any answer or event has carried.
    last_zxid: Zxid,
    watches: ClientWatches,
}

impl ClientSession {
    /// A new session, to be opened on `servers[first]` (then the others in
    /// turn).
    pub fn new(servers: &[NodeId], first: usize, config: ClientConfig, now: Millis) -> Self {
        let mut client = ClientSession {
            servers: servers.to_vec(),
            server: first % servers.len(),
            config,
            session: None,
            conn: Conn::Connecting(now),
            next_xid: 0,
            queue: VecDeque::new(),
            sent: 0,
            owed_since: now,
            last_sent: now,
            ping_since: None,
            sends: Vec::new(),
            events: Vec::new(),
            last_zxid: 0,
            watches: ClientWatches::default(),
        };
        client.send_connect(now);
        client
    }

    /// The session, once open.
    pub fn session(&self) -> Option<SessionId> {
        self.session
    }

    /// The server it talks to.
    pub fn server(&self) -> NodeId {
        self.servers[self.server]
    }

    /// The highest zxid it has seen: its next server must have applied at
    /// least this much.
    pub fn last_zxid(&self) -> Zxid {
        self.last_zxid
    }

    /// Whether it has expired.
    pub fn is_expired(&self) -> bool {
        self.conn == Conn::Expired
    }

    /// Whether no request is waiting for an answer.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }

    /// Queues a write (or `sync`); returns its request number.
    pub fn write(&mut self, request: Request, now: Millis) -> u64 {
        self.enqueue(Op::Write(request), now)
    }

    /// Queues a read; returns its request number.
    pub fn read(&mut self, read: Read, now: Millis) -> u64 {
        self.enqueue(Op::Read(read), now)
    }

    /// Ends the session (its ephemerals go at once, not at its timeout).
    pub fn close(&mut self) {
        if self.conn == Conn::Open {
            self.sends.push((self.server(), ClientMessage::Close));
        }
    }

    /// Takes the messages to send.
    pub fn take_sends(&mut self) -> Vec<(NodeId, ClientMessage)> {
        std::mem::take(&mut self.sends)
    }

    /// Takes what happened.
    pub fn take_events(&mut self) -> Vec<ClientEvent> {
        std::mem::take(&mut self.events)
    }

    fn enqueue(&mut self, op: Op, now: Millis) -> u64 {
        self.next_xid += 1;
        let xid = self.next_xid;
        if self.conn == Conn::Expired {
            self.events.push(Self::failure(xid, &op));
        } else {
            self.queue.push_back((xid, op));
            self.send_queued(now);
        }
        xid
    }

    /// The answer an expired session gets.
    fn failure(xid: u64, op: &Op) -> ClientEvent {
        match op {
            Op::Write(_) => ClientEvent::Written {
                xid,
                result: Err(RequestError::SessionExpired { session: 0 }),
            },
            Op::Read(_) => ClientEvent::ConnectionLoss { xid },
        }
    }

    fn send_connect(&mut self, now: Millis) {
        self.conn = Conn::Connecting(now);
        self.ping_since = None;
        // ANCHOR: send_connect
        let msg = ClientMessage::Connect {
            session: self.session,
            timeout_ms: self.config.session_timeout_ms,
            last_zxid: self.last_zxid,
            watches: self.watches.to_set_again(),
        };
        // ANCHOR_END: send_connect
        self.sends.push((self.server(), msg));
        self.last_sent = now;
    }

    // ANCHOR: send_queued
    /// Sends every queued request not sent yet: they go one after the
    /// other, without waiting for answers.
    fn send_queued(&mut self, now: Millis) {
        if self.conn != Conn::Open || self.sent == self.queue.len() {
            return;
        }
        if self.sent == 0 {
            // Nothing was owed: the clock starts now.
            self.owed_since = now;
        }
        let server = self.server();
        for (xid, op) in self.queue.iter().skip(self.sent).cloned() {
            let msg = match op {
                Op::Write(request) => ClientMessage::Write { xid, request },
                Op::Read(read) => ClientMessage::Read { xid, read },
            };
            self.sends.push((server, msg));
        }
        self.sent = self.queue.len();
        self.last_sent = now;
    }
    // ANCHOR_END: send_queued

    /// The server did not answer in time: every request in flight is
    /// lost; try the next server.
    fn move_on(&mut self, now: Millis) {
        for (xid, _) in self.queue.drain(..self.sent) {
            self.events.push(ClientEvent::ConnectionLoss { xid });
        }
        self.sent = 0;
        self.server = (self.server + 1) % self.servers.len();
        self.send_connect(now);
    }

    /// A message from server `from`.
    pub fn on_message(&mut self, from: NodeId, msg: ServerMessage, now: Millis) {
        if from != self.server() || self.conn == Conn::Expired {
            // A late answer from a server it left: its requests were
            // reported lost already.
            return;
        }
        match msg {
            ServerMessage::Connected { session, zxid } => {
                if let Conn::Connecting(_) = self.conn {
                    // The events of the watches set again came first.
                    self.see(zxid);
                    let event = match self.session {
                        Some(_) => ClientEvent::Reconnected(session),
                        None => ClientEvent::Connected(session),
                    };
                    self.session = Some(session);
                    self.conn = Conn::Open;
                    self.events.push(event);
                    self.send_queued(now);
                }
            }
            ServerMessage::SessionExpired => self.expire(),
            ServerMessage::NotReady => {
                // The server has no leader or lost our session's link:
                // try another.
                self.move_on(now);
            }
            ServerMessage::WriteDone { xid, zxid, result } => {
                if self.answer(xid, now).is_some() {
                    self.see(zxid);
                    let expired = matches!(result, Err(RequestError::SessionExpired { .. }));
                    self.events.push(ClientEvent::Written { xid, result });
                    if expired {
                        self.expire();
                        return;
                    }
                    self.send_queued(now);
                }
            }
            ServerMessage::ReadDone { xid, zxid, result } => {
                if let Some(Op::Read(read)) = self.answer(xid, now) {
                    self.see(zxid);
                    self.watches.set(&read, &result);
                    self.events.push(ClientEvent::ReadDone { xid, result });
                    self.send_queued(now);
                }
            }
            ServerMessage::Watch { zxid, changes } => {
                // Every event up to `zxid` is in this message: the client
                // may tell its next server it has seen that far.
                self.see(zxid);
                for change in changes {
                    self.watches.fired(&change);
                    self.events.push(ClientEvent::Watch(change));
                }
            }
            ServerMessage::Closed => self.expire(),
            ServerMessage::Pong => self.ping_since = None,
        }
    }

    /// If `xid` is the oldest request in flight, it is done: returns it.
    /// (Answers come in the order the requests went; any other is a late
    /// one from an earlier connection.)
    fn answer(&mut self, xid: u64, now: Millis) -> Option<Op> {
        if self.sent > 0 && self.queue.front().is_some_and(|(x, _)| *x == xid) {
            self.sent -= 1;
            self.owed_since = now;
            self.queue.pop_front().map(|(_, op)| op)
        } else {
            None
        }
    }

    /// A message carried `zxid`: the client has seen the tree that far.
    fn see(&mut self, zxid: Zxid) {
        self.last_zxid = self.last_zxid.max(zxid);
    }

    fn expire(&mut self) {
        self.conn = Conn::Expired;
        self.watches = ClientWatches::default();
        self.sent = 0;
        for (xid, op) in std::mem::take(&mut self.queue) {
            self.events.push(Self::failure(xid, &op));
        }
        self.events.push(ClientEvent::Expired);
    }

    /// Time passed: ping, or give up on a silent server.
    pub fn on_tick(&mut self, now: Millis) {
        match self.conn {
            Conn::Expired => {}
            Conn::Connecting(since) => {
                if now >= since + self.config.request_timeout_ms {
                    self.server = (self.server + 1) % self.servers.len();
                    self.send_connect(now);
                }
            }
            Conn::Open => {
                if self.sent > 0 {
                    if now >= self.owed_since + self.config.request_timeout_ms {
                        self.move_on(now);
                    }
                } else if let Some(since) = self.ping_since {
                    if now >= since + self.config.request_timeout_ms {
                        self.move_on(now);
                    }
                } else if now >= self.last_sent + self.config.ping_interval_ms {
                    self.sends.push((self.server(), ClientMessage::Ping));
                    self.last_sent = now;
                    self.ping_since = Some(now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ClientConfig {
        ClientConfig {
            session_timeout_ms: 1_000,
            request_timeout_ms: 100,
            ping_interval_ms: 50,
        }
    }

    fn open(client: &mut ClientSession, session: SessionId) {
        let server = client.server();
        client.on_message(server, ServerMessage::Connected { session, zxid: 1 }, 0);
    }

    fn sync(xid: u64) -> ClientMessage {
        ClientMessage::Write {
            xid,
            request: Request::Sync,
        }
    }

    fn synced(xid: u64) -> ServerMessage {
        ServerMessage::WriteDone {
            xid,
            zxid: 2,
            result: Ok(Response::Synced),
        }
    }

    #[test]
    fn an_idle_client_whose_pings_go_unanswered_moves_to_the_next_server() {
        let mut client = ClientSession::new(&[1, 2, 3], 0, config(), 0);
        client.take_sends();
        open(&mut client, 7);
        // Idle: a ping every interval, each answered.
        client.on_tick(50);
        assert_eq!(client.take_sends(), vec![(1, ClientMessage::Ping)]);
        client.on_message(1, ServerMessage::Pong, 60);
        client.on_tick(100);
        assert_eq!(client.take_sends(), vec![(1, ClientMessage::Ping)]);
        // This one is not answered: no second ping while it is owed, and
        // after the request timeout the client tries server 2.
        client.on_tick(150);
        assert!(client.take_sends().is_empty());
        client.on_tick(200);
        let sends = client.take_sends();
        assert!(
            matches!(
                sends.as_slice(),
                [(
                    2,
                    ClientMessage::Connect {
                        session: Some(7),
                        ..
                    }
                )]
            ),
            "{sends:?}"
        );
    }

    #[test]
    fn requests_are_pipelined_and_answered_in_order() {
        let mut client = ClientSession::new(&[1, 2, 3], 0, config(), 0);
        assert_eq!(client.take_sends().len(), 1);
        // Made before the session is open: it waits for it.
        let a = client.write(Request::Sync, 0);
        assert!(client.take_sends().is_empty());
        open(&mut client, 7);
        // Made while `a` is in flight: it goes at once, behind it.
        let b = client.write(Request::Sync, 0);
        assert_eq!(client.take_sends(), vec![(1, sync(a)), (1, sync(b))]);
        // An answer that is not to the oldest request in flight is a late
        // one from elsewhere: ignored.
        client.on_message(1, synced(b), 10);
        client.on_message(1, synced(a), 10);
        client.on_message(1, synced(b), 10);
        let written = |xid| ClientEvent::Written {
            xid,
            result: Ok(Response::Synced),
        };
        assert_eq!(
            client.take_events(),
            vec![ClientEvent::Connected(7), written(a), written(b)]
        );
        assert!(client.is_idle());
    }

    #[test]
    fn a_server_is_left_only_when_silent_for_the_timeout_since_its_last_answer() {
        let mut client = ClientSession::new(&[1, 2, 3], 0, config(), 0);
        open(&mut client, 7);
        let a = client.write(Request::Sync, 0);
        let b = client.write(Request::Sync, 0);
        client.take_events();
        // `a` is answered late, but answered: the server is working.
        client.on_message(1, synced(a), 90);
        client.on_tick(150);
        assert_eq!(client.server(), 1);
        client.take_events();
        // Nothing more for a whole timeout: `b` is lost.
        client.on_tick(190);
        assert_eq!(client.server(), 2);
        assert_eq!(
            client.take_events(),
            vec![ClientEvent::ConnectionLoss { xid: b }]
        );
    }

    #[test]
    fn a_silent_server_is_left_and_the_session_resumed_on_the_next() {
        let mut client = ClientSession::new(&[1, 2, 3], 0, config(), 0);
        open(&mut client, 7);
        let a = client.write(Request::Sync, 0);
        let b = client.write(Request::Sync, 0);
        client.take_sends();
        client.take_events();
        client.on_tick(100);
        // Both were in flight: either may have taken effect.
        assert_eq!(
            client.take_events(),
            vec![
                ClientEvent::ConnectionLoss { xid: a },
                ClientEvent::ConnectionLoss { xid: b }
            ]
        );
        assert_eq!(
            client.take_sends(),
            vec![(
                2,
                ClientMessage::Connect {
                    session: Some(7),
                    timeout_ms: 1_000,
                    last_zxid: 1,
                    watches: SetWatches::default(),
                }
            )]
        );
        // Made while it moves: it waits for the new server.
        let c = client.write(Request::Sync, 105);
        assert!(client.take_sends().is_empty());
        client.on_message(
            2,
            ServerMessage::Connected {
                session: 7,
                zxid: 1,
            },
            110,
        );
        assert_eq!(client.take_events(), vec![ClientEvent::Reconnected(7)]);
        assert_eq!(client.take_sends(), vec![(2, sync(c))]);
        // A late answer from the old server is ignored.
        client.on_message(1, synced(a), 120);
        assert!(client.take_events().is_empty());
    }

    #[test]
    fn an_expired_session_fails_everything() {
        let mut client = ClientSession::new(&[1, 2], 0, config(), 0);
        open(&mut client, 7);
        let a = client.write(Request::Sync, 0);
        client.on_message(1, ServerMessage::SessionExpired, 10);
        let expired = Err(RequestError::SessionExpired { session: 0 });
        assert_eq!(
            client.take_events(),
            vec![
                ClientEvent::Connected(7),
                ClientEvent::Written {
                    xid: a,
                    result: expired.clone()
                },
                ClientEvent::Expired
            ]
        );
        let b = client.write(Request::Sync, 20);
        assert_eq!(
            client.take_events(),
            vec![ClientEvent::Written {
                xid: b,
                result: expired
            }]
        );
        assert!(client.is_expired());
    }

    #[test]
    fn an_idle_session_pings() {
        let mut client = ClientSession::new(&[1], 0, config(), 0);
        open(&mut client, 7);
        client.take_sends();
        client.on_tick(30);
        assert!(client.take_sends().is_empty());
        client.on_tick(60);
        assert_eq!(client.take_sends(), vec![(1, ClientMessage::Ping)]);
    }

    // Watches across a move, against three real servers in one thread
    // (`LocalCluster`). Client 10's session starts on server 2; client 20
    // (on server 1, raw messages) makes the changes.

    use crate::local::LocalCluster;
    use crate::node::Read;
    use crate::tree::ANY_VERSION;

    /// Carries out `client`'s sends and hands it its server's answers, as
    /// `LocalCluster::drive` does, except that server `cut` is unreachable
    /// (what goes to it, or comes from it, is lost).
    fn drive(
        cluster: &mut LocalCluster,
        client: &mut ClientSession,
        cut: Option<NodeId>,
    ) -> Vec<ClientEvent> {
        for (server, msg) in client.take_sends() {
            if Some(server) != cut {
                let now = cluster.now;
                cluster.server(server).on_client(10, msg, now);
                cluster.settle();
            }
        }
        cluster.pass(20);
        let mine: Vec<_>;
        (mine, cluster.inbox) = std::mem::take(&mut cluster.inbox)
            .into_iter()
            .partition(|(_, c, _)| *c == 10);
        for (server, _, msg) in mine {
            if Some(server) != cut {
                client.on_message(server, msg, cluster.now);
            }
        }
        client.on_tick(cluster.now);
        client.take_events()
    }

    /// A cluster with `/a`, client 20 on server 1, and client 10's
    /// session on server 2 with a data watch on `/a`, a child watch on `/`
    /// and an `exists` watch on the missing `/b`.
    fn watching() -> (LocalCluster, ClientSession) {
        let mut cluster = LocalCluster::new();
        cluster.connect(1, 20);
        change(&mut cluster, 1, create("/a"));
        let mut client = ClientSession::new(&[1, 2, 3], 1, config(), cluster.now);
        let reads = [
            Read::GetData {
                path: "/a".into(),
                watch: true,
            },
            Read::GetChildren {
                path: "/".into(),
                watch: true,
            },
            Read::Exists {
                path: "/b".into(),
                watch: true,
            },
        ];
        for read in reads {
            client.read(read, cluster.now);
        }
        let mut answered = 0;
        for _ in 0..10 {
            for event in drive(&mut cluster, &mut client, None) {
                answered += usize::from(matches!(event, ClientEvent::ReadDone { .. }));
            }
        }
        assert_eq!(answered, 3);
        assert_eq!(client.server(), 2);
        (cluster, client)
    }

    fn create(path: &str) -> Request {
        Request::Create {
            path: path.into(),
            data: Vec::new(),
            ephemeral: false,
            sequential: false,
        }
    }

    fn set(path: &str) -> Request {
        Request::SetData {
            path: path.into(),
            data: b"new".to_vec(),
            version: ANY_VERSION,
        }
    }

    /// Client 20 makes request number `xid`.
    fn change(cluster: &mut LocalCluster, xid: u64, request: Request) {
        cluster.send(1, 20, ClientMessage::Write { xid, request });
        let answers = cluster.received(1, 20);
        assert!(
            answers
                .iter()
                .any(|m| matches!(m, ServerMessage::WriteDone { result: Ok(_), .. })),
            "{answers:?}"
        );
    }

    /// Moves client 10 off server 2: a `sync` there is not answered, and
    /// the client resumes on server 3. Returns the events until then.
    fn move_off_server_2(
        cluster: &mut LocalCluster,
        client: &mut ClientSession,
    ) -> Vec<ClientEvent> {
        client.write(Request::Sync, cluster.now);
        let mut events = Vec::new();
        for _ in 0..20 {
            events.extend(drive(cluster, client, Some(2)));
            if events.contains(&ClientEvent::Reconnected(client.session().unwrap())) {
                break;
            }
        }
        assert_eq!(client.server(), 3);
        events
    }

    fn watch_events(events: &[ClientEvent]) -> Vec<Change> {
        events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Watch(change) => Some(change.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn watches_set_again_fire_for_the_changes_made_while_the_client_moved() {
        let (mut cluster, mut client) = watching();
        let seen = client.last_zxid();
        // Server 2 falls out of reach; the changes happen while the
        // client is still on its way to server 3.
        let events = drive(&mut cluster, &mut client, Some(2));
        assert!(watch_events(&events).is_empty());
        change(&mut cluster, 2, set("/a"));
        change(&mut cluster, 3, create("/b"));
        let events = move_off_server_2(&mut cluster, &mut client);
        let session = client.session().unwrap();
        // Each missed change is told once, before the `Reconnected`: the
        // creation of `/b` fires the child watch on `/` too.
        let reconnected = events
            .iter()
            .position(|e| *e == ClientEvent::Reconnected(session))
            .unwrap();
        let mut fired = watch_events(&events[..reconnected]);
        fired.sort_by(|a, b| a.path().cmp(b.path()));
        assert_eq!(
            fired,
            vec![
                Change::NodeChildrenChanged("/".into()),
                Change::NodeDataChanged("/a".into()),
                Change::NodeCreated("/b".into()),
            ]
        );
        assert!(watch_events(&events[reconnected..]).is_empty());
        assert!(client.last_zxid() > seen);
        // They were one-shot: more changes tell the client nothing.
        change(&mut cluster, 4, set("/a"));
        change(&mut cluster, 5, set("/b"));
        change(&mut cluster, 6, create("/c"));
        let events = drive(&mut cluster, &mut client, Some(2));
        assert!(watch_events(&events).is_empty(), "{events:?}");
    }

    #[test]
    fn a_watch_whose_node_did_not_change_is_set_again_and_fires_later_once() {
        let (mut cluster, mut client) = watching();
        let events = move_off_server_2(&mut cluster, &mut client);
        assert!(watch_events(&events).is_empty(), "{events:?}");
        // Now on server 3, which has the watches: a change fires them.
        change(&mut cluster, 2, set("/a"));
        let events = drive(&mut cluster, &mut client, Some(2));
        assert_eq!(
            watch_events(&events),
            vec![Change::NodeDataChanged("/a".into())]
        );
        change(&mut cluster, 3, set("/a"));
        let events = drive(&mut cluster, &mut client, Some(2));
        assert!(watch_events(&events).is_empty(), "{events:?}");
    }

    #[test]
    fn a_watch_that_fired_is_not_set_again_so_it_never_fires_twice() {
        let (mut cluster, mut client) = watching();
        // Fired on server 2 before the move.
        change(&mut cluster, 2, set("/a"));
        let events = drive(&mut cluster, &mut client, None);
        assert_eq!(
            watch_events(&events),
            vec![Change::NodeDataChanged("/a".into())]
        );
        // The move sets only the other two again...
        client.write(Request::Sync, cluster.now);
        client.take_sends();
        client.on_tick(cluster.now + 100);
        let connect = client.take_sends();
        let [
            (
                3,
                ClientMessage::Connect {
                    watches, last_zxid, ..
                },
            ),
        ] = connect.as_slice()
        else {
            panic!("expected a Connect to server 3, got {connect:?}");
        };
        assert_eq!(*last_zxid, client.last_zxid());
        assert_eq!(
            *watches,
            SetWatches {
                data: Vec::new(),
                exist: vec!["/b".into()],
                children: vec!["/".into()],
            }
        );
        // ...so a change to `/a` after it tells nothing, from either server.
        let now = cluster.now;
        cluster.server(3).on_client(10, connect[0].1.clone(), now);
        cluster.settle();
        change(&mut cluster, 3, set("/a"));
        let events = drive(&mut cluster, &mut client, None);
        assert!(watch_events(&events).is_empty(), "{events:?}");
    }
}

//! The client library: [`Coordinator`], a session with the ensemble over
//! TCP, as ZooKeeper's `ZooKeeper` handle.
//!
//! A background task drives the sans-IO [`ClientSession`]: it keeps a
//! connection to the session's current server, ticks the session's clock,
//! and hands each answer to the call that waits for it. Watch events come
//! on a channel ([`Coordinator::watches`]).
//!
//! [`SessionLink`] does the same networking for a caller that drives the
//! session itself: the recipes, written against the sans-IO session, run
//! over TCP on one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use ch06_replication::sim::NodeId;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};

use crate::client::{ClientConfig, ClientEvent, ClientSession};
use crate::node::{ClientMessage, Read, ReadResult, ServerMessage};
use crate::shell::{frame_into, read_frame, wall_clock_ms as now_ms};
use crate::state::{Request, RequestError, Response};
use crate::tree::{Change, MultiError, Op, OpResult, SessionId, Stat, TreeError, Version};

/// Why a call failed, by ZooKeeper's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoordError {
    /// The tree refused it (`NoNode`, `NodeExists`, `BadVersion`, ...).
    #[error("{name}: {error}", name = zookeeper_name(.0), error = .0)]
    Tree(#[from] TreeError),
    /// A `multi` failed at one of its operations, which changed nothing
    /// (ZooKeeper names the failing operation's error).
    #[error("{name}: {error}", name = zookeeper_name(&.0.error), error = .0)]
    Multi(MultiError),
    /// The session has expired.
    #[error("SessionExpired")]
    SessionExpired,
    /// The connection was lost with the call in flight: it may or may not
    /// have taken effect.
    #[error("ConnectionLoss")]
    ConnectionLoss,
}

/// ZooKeeper's name for a tree error, as its shell prints it.
fn zookeeper_name(error: &TreeError) -> &'static str {
    match error {
        TreeError::NoNode { .. } => "NoNode",
        TreeError::NodeExists { .. } => "NodeExists",
        TreeError::BadVersion { .. } => "BadVersion",
        TreeError::NotEmpty { .. } => "NotEmpty",
        TreeError::NoChildrenForEphemerals { .. } => "NoChildrenForEphemerals",
        TreeError::BadArguments { .. } => "BadArguments",
        TreeError::ZxidNotIncreasing { .. } => "RuntimeInconsistency",
    }
}

impl From<RequestError> for CoordError {
    fn from(error: RequestError) -> Self {
        match error {
            RequestError::Tree(e) => CoordError::Tree(e),
            RequestError::Multi(e) => CoordError::Multi(e),
            RequestError::SessionExpired { .. } => CoordError::SessionExpired,
        }
    }
}

type Answer = Result<Reply, CoordError>;

enum Reply {
    Written(Response),
    Read(ReadResult),
}

enum Call {
    Write(Request, oneshot::Sender<Answer>),
    Read(Read, oneshot::Sender<Answer>),
    Close(oneshot::Sender<()>),
}

/// A session with a coordinator ensemble.
#[derive(Debug)]
pub struct Coordinator {
    calls: mpsc::UnboundedSender<Call>,
    session: SessionId,
    watches: Option<mpsc::UnboundedReceiver<Change>>,
}

impl Coordinator {
    /// Opens a session with the ensemble at `servers` (client addresses),
    /// trying them in turn; fails with `ConnectionLoss` if none answers
    /// within the session timeout.
    pub async fn connect(
        servers: &[SocketAddr],
        config: ClientConfig,
    ) -> Result<Coordinator, CoordError> {
        let timeout = Duration::from_millis(config.session_timeout_ms);
        let (session, addrs) = session_with(servers, config);
        let (calls, rx) = mpsc::unbounded_channel();
        let (watch_tx, watch_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        tokio::spawn(drive(session, addrs, rx, watch_tx, ready_tx));
        let session = tokio::time::timeout(timeout, ready_rx)
            .await
            .map_err(|_| CoordError::ConnectionLoss)?
            .map_err(|_| CoordError::ConnectionLoss)??;
        Ok(Coordinator {
            calls,
            session,
            watches: Some(watch_rx),
        })
    }

    /// The session's id.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// The watch events, in order (once: the receiver is handed out).
    pub fn watches(&mut self) -> Option<mpsc::UnboundedReceiver<Change>> {
        self.watches.take()
    }

    async fn call(&self, make: impl FnOnce(oneshot::Sender<Answer>) -> Call) -> Answer {
        let (tx, rx) = oneshot::channel();
        self.calls
            .send(make(tx))
            .map_err(|_| CoordError::SessionExpired)?;
        rx.await.map_err(|_| CoordError::SessionExpired)?
    }

    async fn write(&self, request: Request) -> Result<Response, CoordError> {
        match self.call(|tx| Call::Write(request, tx)).await? {
            Reply::Written(response) => Ok(response),
            Reply::Read(_) => unreachable!("a write is answered as a write"),
        }
    }

    async fn read(&self, read: Read) -> Result<ReadResult, CoordError> {
        match self.call(|tx| Call::Read(read, tx)).await? {
            Reply::Read(result) => Ok(result),
            Reply::Written(_) => unreachable!("a read is answered as a read"),
        }
    }

    /// Creates a node; returns its path (with its counter if sequential).
    pub async fn create(
        &self,
        path: &str,
        data: &[u8],
        ephemeral: bool,
        sequential: bool,
    ) -> Result<String, CoordError> {
        let request = Request::Create {
            path: path.to_string(),
            data: data.to_vec(),
            ephemeral,
            sequential,
        };
        match self.write(request).await? {
            Response::Created(path) => Ok(path),
            other => unreachable!("a create answered {other:?}"),
        }
    }

    /// Sets a node's data if its version is `version` (-1: any).
    pub async fn set(&self, path: &str, data: &[u8], version: Version) -> Result<Stat, CoordError> {
        let request = Request::SetData {
            path: path.to_string(),
            data: data.to_vec(),
            version,
        };
        match self.write(request).await? {
            Response::Set(stat) => Ok(stat),
            other => unreachable!("a set answered {other:?}"),
        }
    }

    /// Deletes a node if its version is `version` (-1: any).
    pub async fn delete(&self, path: &str, version: Version) -> Result<(), CoordError> {
        let request = Request::Delete {
            path: path.to_string(),
            version,
        };
        self.write(request).await.map(|_| ())
    }

    /// Makes `ops` all at once, or none of them: their results, in order,
    /// or the first that failed ([`CoordError::Multi`]). An `Op::Check`
    /// makes the others depend on a node's version without writing it;
    /// an ephemeral node created here belongs to this session, whatever
    /// session its `CreateMode` names.
    pub async fn multi(&self, ops: Vec<Op>) -> Result<Vec<OpResult>, CoordError> {
        match self.write(Request::Multi(ops)).await? {
            Response::Multi(results) => Ok(results),
            other => unreachable!("a multi answered {other:?}"),
        }
    }

    /// Makes this session's next reads see every write committed before
    /// now.
    pub async fn sync(&self) -> Result<(), CoordError> {
        self.write(Request::Sync).await.map(|_| ())
    }

    /// A node's data and stat; `watch` sets a data watch.
    pub async fn get(&self, path: &str, watch: bool) -> Result<(Vec<u8>, Stat), CoordError> {
        let read = Read::GetData {
            path: path.to_string(),
            watch,
        };
        match self.read(read).await? {
            ReadResult::Data(data, stat) => Ok((data, stat)),
            other => unreachable!("get_data answered {other:?}"),
        }
    }

    /// A node's stat, if it exists; `watch` sets a data watch.
    pub async fn exists(&self, path: &str, watch: bool) -> Result<Option<Stat>, CoordError> {
        let read = Read::Exists {
            path: path.to_string(),
            watch,
        };
        match self.read(read).await? {
            ReadResult::Stat(stat) => Ok(stat),
            other => unreachable!("exists answered {other:?}"),
        }
    }

    /// A node's children, sorted; `watch` sets a child watch.
    pub async fn children(&self, path: &str, watch: bool) -> Result<Vec<String>, CoordError> {
        let read = Read::GetChildren {
            path: path.to_string(),
            watch,
        };
        match self.read(read).await? {
            ReadResult::Children(names) => Ok(names),
            other => unreachable!("get_children answered {other:?}"),
        }
    }

    /// Ends the session: its ephemeral nodes go at once.
    pub async fn close(self) {
        let (tx, rx) = oneshot::channel();
        if self.calls.send(Call::Close(tx)).is_ok() {
            // No answer within a second: the session will expire anyway.
            let _ = tokio::time::timeout(Duration::from_secs(1), rx).await;
        }
    }
}

/// At most this many calls and answers are taken in one round.
const MAX_ROUND: usize = 1024;

/// What woke the background task.
enum Wake {
    Call(Option<Call>),
    Message(NodeId, u64, ServerMessage),
    Tick,
}

/// The background task: the session, its connection, its calls.
///
/// Each round it takes in everything that is waiting (calls, answers),
/// then writes all the session has to send in one system call: many
/// callers' requests, pipelined, cost one write between them.
async fn drive(
    mut session: ClientSession,
    addrs: BTreeMap<NodeId, SocketAddr>,
    mut calls: mpsc::UnboundedReceiver<Call>,
    watches: mpsc::UnboundedSender<Change>,
    ready: oneshot::Sender<Result<SessionId, CoordError>>,
) {
    let mut ready = Some(ready);
    let mut waiting: BTreeMap<u64, oneshot::Sender<Answer>> = BTreeMap::new();
    let mut closing: Option<oneshot::Sender<()>> = None;
    let mut link = Link::new(addrs);
    let mut tick = tokio::time::interval(TICK);
    loop {
        if link.send(&mut session).await {
            if let Some(done) = closing.take() {
                let _ = done.send(());
            }
            return;
        }
        for event in session.take_events() {
            match event {
                ClientEvent::Connected(id) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(Ok(id));
                    }
                }
                ClientEvent::Reconnected(_) => {}
                ClientEvent::Expired => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(Err(CoordError::SessionExpired));
                    }
                    for (_, tx) in std::mem::take(&mut waiting) {
                        let _ = tx.send(Err(CoordError::SessionExpired));
                    }
                }
                ClientEvent::Written { xid, result } => {
                    if let Some(tx) = waiting.remove(&xid) {
                        let _ = tx.send(result.map(Reply::Written).map_err(CoordError::from));
                    }
                }
                ClientEvent::ReadDone { xid, result } => {
                    if let Some(tx) = waiting.remove(&xid) {
                        let _ = tx.send(result.map(Reply::Read).map_err(CoordError::from));
                    }
                }
                ClientEvent::ConnectionLoss { xid } => {
                    if let Some(tx) = waiting.remove(&xid) {
                        let _ = tx.send(Err(CoordError::ConnectionLoss));
                    }
                }
                ClientEvent::Watch(change) => {
                    let _ = watches.send(change);
                }
            }
        }
        let first = tokio::select! {
            call = calls.recv() => Wake::Call(call),
            Some((from, number, msg)) = link.incoming.recv() => Wake::Message(from, number, msg),
            _ = tick.tick() => Wake::Tick,
        };
        if matches!(first, Wake::Call(Some(_))) && !waiting.is_empty() {
            // A call made while others are in flight waits a moment for
            // the calls that follow it, to go in one write with them.
            tokio::time::sleep(LINGER).await;
        }
        // Whatever else is waiting joins this round (up to a bound, so
        // that a flood of calls does not hold back the sending).
        let current = link.current();
        let more = std::iter::from_fn(|| match link.incoming.try_recv() {
            Ok((from, number, msg)) => Some(Wake::Message(from, number, msg)),
            Err(_) => calls.try_recv().ok().map(|call| Wake::Call(Some(call))),
        })
        .take(MAX_ROUND);
        for wake in std::iter::once(first).chain(more) {
            match wake {
                Wake::Call(Some(Call::Write(request, tx))) => {
                    let xid = session.write(request, now_ms());
                    waiting.insert(xid, tx);
                }
                Wake::Call(Some(Call::Read(read, tx))) => {
                    let xid = session.read(read, now_ms());
                    waiting.insert(xid, tx);
                }
                Wake::Call(Some(Call::Close(tx))) => {
                    closing = Some(tx);
                    session.close();
                    if session.is_expired() {
                        return;
                    }
                }
                // Every handle is gone: the session ends with the task,
                // and expires on its own.
                Wake::Call(None) => return,
                Wake::Message(from, number, msg) => {
                    deliver(&mut session, current, (from, number, msg))
                }
                Wake::Tick => session.on_tick(now_ms()),
            }
        }
    }
}

/// A new session with the ensemble at `servers`, which it knows as servers
/// 1, 2, ... in that order, and each one's address.
fn session_with(
    servers: &[SocketAddr],
    config: ClientConfig,
) -> (ClientSession, BTreeMap<NodeId, SocketAddr>) {
    let ids: Vec<NodeId> = (1..=servers.len() as NodeId).collect();
    let addrs = ids.iter().copied().zip(servers.iter().copied()).collect();
    (ClientSession::new(&ids, 0, config, now_ms()), addrs)
}

/// How often a session's clock ticks (pings, timeouts).
const TICK: Duration = Duration::from_millis(50);

/// How long a call made while others are in flight waits for more calls
/// to send with it (a lone call goes at once). Without it, a session with
/// hundreds of requests in flight settled into waves of two: each write
/// carried about two requests, so each server round answered two, so two
/// callers woke and made their next calls, and so on, each step paying for
/// its own system calls and wake-ups on both sides. Waiting a moment breaks
/// the waves (reads from 3 sessions × 512 in flight: more than twice as
/// many a second). Tokio's timer counts in whole milliseconds, so the wait
/// ends at the next millisecond tick after 200 µs: up to 1.2 ms. Kafka's
/// producer waits the same way for a batch to fill, `linger.ms`.
const LINGER: Duration = Duration::from_micros(200);

/// A session's side of the network: a connection to its current server (a
/// new one for each `Connect`), and what comes back on it.
struct Link {
    addrs: BTreeMap<NodeId, SocketAddr>,
    /// The current connection: its server, its number, its writing half.
    connection: Option<(NodeId, u64, OwnedWriteHalf)>,
    connections: u64,
    /// Frames waiting to be written.
    bytes: Vec<u8>,
    from_server: mpsc::UnboundedSender<(NodeId, u64, ServerMessage)>,
    /// What the servers sent, on which connection.
    incoming: mpsc::UnboundedReceiver<(NodeId, u64, ServerMessage)>,
}

impl Link {
    fn new(addrs: BTreeMap<NodeId, SocketAddr>) -> Link {
        let (from_server, incoming) = mpsc::unbounded_channel();
        Link {
            addrs,
            connection: None,
            connections: 0,
            bytes: Vec::new(),
            from_server,
            incoming,
        }
    }

    /// Sends what `session` wants sent, on a connection to its server, in
    /// as few system calls as it can; returns whether it sent a `Close`.
    async fn send(&mut self, session: &mut ClientSession) -> bool {
        for (server, msg) in session.take_sends() {
            // A `Connect` opens a new connection, even to the same server:
            // what the server sends on it is in order, and nothing from an
            // older one (a late answer, a watch set there) can follow.
            let new = matches!(msg, ClientMessage::Connect { .. });
            if new
                || self
                    .connection
                    .as_ref()
                    .is_none_or(|(id, _, _)| *id != server)
            {
                flush(&mut self.connection, &mut self.bytes).await;
                self.connections += 1;
                self.connection = connect(
                    server,
                    self.connections,
                    &self.addrs,
                    self.from_server.clone(),
                )
                .await;
            }
            if frame_into(&msg, &mut self.bytes).is_err() {
                // A request that cannot be encoded is never answered: the
                // session gives up on it at its timeout.
                continue;
            }
            if matches!(msg, ClientMessage::Close) {
                flush(&mut self.connection, &mut self.bytes).await;
                return true;
            }
        }
        flush(&mut self.connection, &mut self.bytes).await;
        false
    }

    /// The number of the current connection, if there is one.
    fn current(&self) -> Option<u64> {
        self.connection.as_ref().map(|&(_, number, _)| number)
    }
}

/// Hands `session` a message that came on connection `number`, unless that
/// is not `current`: nothing from an older connection may follow.
fn deliver(
    session: &mut ClientSession,
    current: Option<u64>,
    (from, number, msg): (NodeId, u64, ServerMessage),
) {
    if current == Some(number) {
        session.on_message(from, msg, now_ms());
    }
}

/// A session over TCP whose [`ClientSession`] the caller drives, for code
/// written against the sans-IO session: the recipes ([`crate::recipes`]:
/// leader election, group membership, a lock) run over the network this
/// way, as they run in [`crate::local::LocalCluster`] and in the
/// simulation. [`SessionLink::step`] sends what the session wants sent,
/// waits for the next thing to happen, and hands it to the session;
/// [`ClientSession::take_events`] then has what came of it.
pub struct SessionLink {
    session: ClientSession,
    transport: Transport,
}

impl SessionLink {
    /// A session with the ensemble at `servers` (client addresses). It
    /// opens on the first [`SessionLink::step`]s.
    pub fn new(servers: &[SocketAddr], config: ClientConfig) -> SessionLink {
        let (session, _) = session_with(servers, config);
        SessionLink {
            session,
            transport: Transport::new(servers),
        }
    }

    /// The session, to make requests on and to take events from.
    pub fn session(&mut self) -> &mut ClientSession {
        &mut self.session
    }

    /// Sends what the session wants sent, then waits for a message from
    /// its server or the next tick of its clock, and hands that (and any
    /// other message already waiting) to the session.
    pub async fn step(&mut self) {
        self.transport.step(&mut self.session).await;
    }
}

/// The network under a [`ClientSession`] owned by someone else (chapter
/// 8's broker keeps its session inside its cluster node): connections to
/// the ensemble's servers, which the session knows as servers 1, 2, ...
/// in the order of their addresses, and the session's clock. A driver
/// that waits for other things too calls [`Transport::send`], then selects
/// on [`Transport::next`] and its own inputs.
pub struct Transport {
    link: Link,
    tick: tokio::time::Interval,
}

/// What [`Transport::next`] brings.
#[derive(Debug)]
pub enum Delivery {
    /// A message from a server, on the session's current connection.
    Message(NodeId, ServerMessage),
    /// The session's clock ticked (every 50 ms).
    Tick,
}

impl Transport {
    /// Connections to the servers at `servers` (client addresses), made
    /// as the session asks.
    pub fn new(servers: &[SocketAddr]) -> Transport {
        let addrs = (1..).zip(servers.iter().copied()).collect();
        Transport {
            link: Link::new(addrs),
            tick: tokio::time::interval(TICK),
        }
    }

    /// Sends what `session` wants sent; returns whether that was its
    /// `Close`.
    pub async fn send(&mut self, session: &mut ClientSession) -> bool {
        self.link.send(session).await
    }

    /// Waits for the next message on the current connection, or the next
    /// tick. Cancel-safe: it can be one branch of a `select!`.
    pub async fn next(&mut self) -> Delivery {
        loop {
            let current = self.link.current();
            tokio::select! {
                Some((from, number, msg)) = self.link.incoming.recv() => {
                    // Nothing from an older connection may follow.
                    if current == Some(number) {
                        return Delivery::Message(from, msg);
                    }
                }
                _ = self.tick.tick() => return Delivery::Tick,
            }
        }
    }

    /// Sends what the session wants sent, then waits for a message from
    /// its server or the next tick of its clock, and hands that (and any
    /// other message already waiting) to the session.
    pub async fn step(&mut self, session: &mut ClientSession) {
        if self.send(session).await {
            return;
        }
        let current = self.link.current();
        tokio::select! {
            Some(msg) = self.link.incoming.recv() => deliver(session, current, msg),
            _ = self.tick.tick() => session.on_tick(now_ms()),
        }
        while let Ok(msg) = self.link.incoming.try_recv() {
            deliver(session, current, msg);
        }
    }
}

/// Writes `bytes` (whole frames) on the connection, if there is one, and
/// empties it; a connection that fails to take them is dropped.
async fn flush(connection: &mut Option<(NodeId, u64, OwnedWriteHalf)>, bytes: &mut Vec<u8>) {
    if bytes.is_empty() {
        return;
    }
    if let Some((_, _, writer)) = connection.as_mut()
        && writer.write_all(bytes).await.is_err()
    {
        *connection = None;
    }
    bytes.clear();
}

/// Connects to server `id`, as connection number `number`, and starts a
/// task that reads its messages.
async fn connect(
    id: NodeId,
    number: u64,
    addrs: &BTreeMap<NodeId, SocketAddr>,
    incoming: mpsc::UnboundedSender<(NodeId, u64, ServerMessage)>,
) -> Option<(NodeId, u64, OwnedWriteHalf)> {
    let addr = addrs.get(&id)?;
    let stream = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    // Buffered: pipelined answers come several to a system call.
    let mut reader = BufReader::new(reader);
    tokio::spawn(async move {
        while let Ok(Some(msg)) = read_frame::<ServerMessage>(&mut reader).await {
            if incoming.send((id, number, msg)).is_err() {
                return;
            }
        }
    });
    Some((id, number, writer))
}

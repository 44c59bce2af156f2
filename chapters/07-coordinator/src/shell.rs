//! The tokio shell: one coordinator server as a real process, its sans-IO
//! [`Server`] driven by sockets, a clock and the disk.
//!
//! The server's state machine runs on one thread of its own (the *core*),
//! which owns the [`Server`] and its [`Storage`] and does nothing but:
//! take every input that is waiting, hand each to the server, write what
//! the server asks, **sync once** for all of it, and only then send what
//! waited for the sync. So many clients' writes share one `fsync`, and the
//! core never waits for the network. Tokio tasks do the networking:
//!
//! - a listener for clients, with a reader and a writer task per client;
//! - a listener for peers, with a reader task per inbound connection;
//! - a sender task per peer, which connects (and reconnects) to it.
//!
//! Every message is a frame: a 4-byte big-endian length, then the message
//! encoded with bincode. A client's frame longer than [`MAX_FRAME`] (a
//! peer's longer than [`MAX_PEER_FRAME`]) or that does not decode ends its
//! connection; the server goes on. Raft batches entries by count, so an
//! `AppendEntries` of a few large entries can outgrow a frame: the shell
//! sends it as several (see `peer_frames`).
//!
//! A real system would also bound each client's queue, authenticate peers,
//! and take membership changes; this one has a fixed ensemble.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use ch06_replication::sim::NodeId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::node::{ClientMessage, PeerMessage, Send, Server, ServerMessage};
use crate::raft::{Compacted, Index, Message, RaftConfig, Role, Term};
use crate::storage::{self, Storage, StorageError};
use crate::watches::ClientId;

/// The largest frame accepted from a client: a znode's data (1 MiB) and
/// then some.
pub const MAX_FRAME: usize = 2 * 1024 * 1024;

/// The largest frame accepted from a peer: one log entry carries one
/// client request (at most [`MAX_FRAME`]) and a few numbers more.
pub const MAX_PEER_FRAME: usize = MAX_FRAME + 4 * 1024;

/// One server of the ensemble: its client and peer addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Where clients connect.
    pub client: SocketAddr,
    /// Where the other servers connect.
    pub peer: SocketAddr,
}

/// What a server says first on a connection to a peer: who it is, and the
/// ensemble it was configured with. A peer refuses a server of another
/// ensemble (two ensembles on one host, a port reused after a server
/// stopped, a wrong `--ensemble`): otherwise it would take part in the
/// other ensemble's elections. (Kafka's brokers check a `cluster.id`; a
/// ZooKeeper server accepts only the server ids in its configuration.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's id.
    pub id: NodeId,
    /// The sender's ensemble: every server's id and addresses.
    pub ensemble: BTreeMap<NodeId, Member>,
}

/// How to run a server.
#[derive(Debug, Clone)]
pub struct ShellConfig {
    /// This server's id.
    pub id: NodeId,
    /// Every server, this one included.
    pub ensemble: BTreeMap<NodeId, Member>,
    /// Where its files go.
    pub data_dir: PathBuf,
    /// Raft's timing.
    pub raft: RaftConfig,
    /// How often the core ticks (and so, at the latest, syncs).
    pub tick: Duration,
    /// After about this many log entries past the last snapshot (from
    /// half of it to all of it, drawn anew each time, so that the servers
    /// do not all pause at once), the server takes a snapshot of its
    /// state, and the log the one before covers goes (ZooKeeper's
    /// `snapCount`, 100,000 there).
    pub snapshot_every: u64,
}

/// Why a server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    /// Its files could not be read or written.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A socket could not be opened.
    #[error("{what}: {source}")]
    Io {
        /// What it was doing.
        what: String,
        /// What the operating system said.
        source: std::io::Error,
    },
}

/// What the network tasks hand the core.
enum Input {
    Client(ClientId, ClientMessage),
    Connected(ClientId, mpsc::UnboundedSender<ServerMessage>),
    Disconnected(ClientId),
    Peer(NodeId, PeerMessage),
    /// The server is stopping.
    Stop,
}

/// Reads one frame of at most [`MAX_FRAME`] bytes and decodes it; `None`
/// at a clean end of stream.
pub async fn read_frame<T: DeserializeOwned>(
    reader: &mut (impl AsyncRead + Unpin),
) -> std::io::Result<Option<T>> {
    read_frame_up_to(reader, MAX_FRAME).await
}

/// Reads one frame of at most `max` bytes and decodes it; `None` at a
/// clean end of stream.
async fn read_frame_up_to<T: DeserializeOwned>(
    reader: &mut (impl AsyncRead + Unpin),
    max: usize,
) -> std::io::Result<Option<T>> {
    let len = match reader.read_u32().await {
        Ok(len) => len as usize,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    };
    if len > max {
        let message = format!("a frame of {len} bytes (at most {max})");
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            message,
        ));
    }
    let mut bytes = vec![0; len];
    reader.read_exact(&mut bytes).await?;
    bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
        .map(|(value, _)| Some(value))
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Encodes `value` and writes it as one frame.
pub async fn write_frame<T: Serialize>(
    writer: &mut (impl AsyncWrite + Unpin),
    value: &T,
) -> std::io::Result<()> {
    writer.write_all(&frame(value)?).await
}

/// `value` as a frame: its length, then its encoding.
fn frame<T: Serialize>(value: &T) -> std::io::Result<Vec<u8>> {
    let mut frame = Vec::new();
    frame_into(value, &mut frame)?;
    Ok(frame)
}

/// Appends `value`'s frame to `out`.
pub fn frame_into<T: Serialize>(value: &T, out: &mut Vec<u8>) -> std::io::Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    bincode::serde::encode_into_std_write(value, out, bincode::config::standard())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// A message to a peer as frames: one, or for an `AppendEntries` longer
/// than [`MAX_FRAME`], one per run of its entries, each run's `prev_index`
/// the entry before it. The follower stores the runs one after the other
/// as if they had come in separate rounds, and never takes `commit` past
/// the last entry it has. A single entry goes alone, however long (up to
/// [`MAX_PEER_FRAME`]). Splitting in halves encodes some entries more than
/// once; it happens only for entries of hundreds of kilobytes.
///
/// The frames are appended to `out`, the buffer of everything queued for
/// the peer.
fn peer_frames(msg: PeerMessage, out: &mut Vec<u8>) -> std::io::Result<()> {
    let start = out.len();
    frame_into(&msg, out)?;
    let len = out.len() - start - 4;
    match msg {
        PeerMessage::Raft(Message::AppendEntries {
            term,
            prev_index,
            prev_term,
            mut entries,
            commit,
        }) if len > MAX_FRAME && entries.len() > 1 => {
            out.truncate(start);
            let second = entries.split_off(entries.len() / 2);
            let last = entries.last().expect("the first half of two or more");
            let (middle_index, middle_term) = (last.index, last.term);
            let first = Message::AppendEntries {
                term,
                prev_index,
                prev_term,
                entries,
                commit,
            };
            let second = Message::AppendEntries {
                term,
                prev_index: middle_index,
                prev_term: middle_term,
                entries: second,
                commit,
            };
            peer_frames(PeerMessage::Raft(first), out)?;
            peer_frames(PeerMessage::Raft(second), out)
        }
        _ => Ok(()),
    }
}

/// Runs server `config.id` on the listeners given (bound already, so that
/// a test can use port 0) until `shutdown` resolves.
pub async fn run(
    config: ShellConfig,
    clients: TcpListener,
    peers: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ShellError> {
    let (storage, recovered) = Storage::open(&config.data_dir)?;
    info!(
        id = config.id,
        entries = recovered.log.len(),
        cut = recovered.cut_bytes,
        "opened"
    );
    let members: Vec<NodeId> = config.ensemble.keys().copied().collect();
    let seed = raft_seed(config.id, std::process::id());
    let server = Server::new(
        config.id,
        &members,
        config.raft.clone(),
        recovered.hard,
        recovered.snapshot,
        recovered.log,
        wall_clock_ms(),
        seed,
    );
    let (inputs, input_rx) = std_mpsc::channel::<Input>();
    // Every network task watches this, and ends when it turns true.
    let (stop, stopping) = watch::channel(false);
    // One sender task per peer.
    let mut peer_senders = BTreeMap::new();
    for (&id, member) in &config.ensemble {
        if id != config.id {
            let (tx, rx) = mpsc::unbounded_channel();
            let hello = Hello {
                id: config.id,
                ensemble: config.ensemble.clone(),
            };
            tokio::spawn(send_to_peer(hello, member.peer, rx, stopping.clone()));
            peer_senders.insert(id, tx);
        }
    }
    let core = std::thread::spawn({
        let (tick, dir, every) = (config.tick, config.data_dir.clone(), config.snapshot_every);
        move || core(server, storage, input_rx, peer_senders, tick, (dir, every))
    });
    tokio::spawn(accept_clients(clients, inputs.clone(), stopping.clone()));
    let me = Hello {
        id: config.id,
        ensemble: config.ensemble.clone(),
    };
    tokio::spawn(accept_peers(me, peers, inputs.clone(), stopping));
    shutdown.await;
    info!(id = config.id, "stopping");
    // Nobody is listening for the answer: the tasks end either way.
    let _ = stop.send(true);
    let _ = inputs.send(Input::Stop);
    tokio::task::spawn_blocking(move || core.join())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(Ok(()))
}

/// The seed of server `id`'s randomness (its election timeouts) when it
/// runs as process `pid`. Elections end because the servers' timeouts
/// differ: two servers that drew the same ones, having heard the same
/// leader at the same moments, would stand together in every election
/// after it and split the votes forever. So no two servers of an ensemble
/// may share a seed: the id is its low half, and the process id, which
/// makes a restarted server draw anew, its high half. (`id ^ pid` was not
/// enough: servers 1 and 2 as processes 4000 and 4003 both got 4001.)
fn raft_seed(id: NodeId, pid: u32) -> u64 {
    (u64::from(pid) << 32) | u64::from(id)
}

/// The thread writing a snapshot: it returns the snapshot's last index
/// and term once it is on disk.
type SnapshotWriter = std::thread::JoinHandle<Result<(Index, Term), StorageError>>;

/// The core loop: inputs in, one sync, outputs out.
fn core(
    mut server: Server,
    mut storage: Storage,
    inputs: std_mpsc::Receiver<Input>,
    peers: BTreeMap<NodeId, mpsc::UnboundedSender<PeerMessage>>,
    tick: Duration,
    (snapshot_dir, snapshot_every): (PathBuf, u64),
) -> Result<(), ShellError> {
    let mut clients: BTreeMap<ClientId, mpsc::UnboundedSender<ServerMessage>> = BTreeMap::new();
    let mut next_tick = Instant::now() + tick;
    let now = wall_clock_ms;
    // Whether it led after the last round: an operator (and the process
    // tests) read who leads from the log.
    let mut leading = false;
    // The snapshot being written, if one is.
    let mut writer: Option<SnapshotWriter> = None;
    // How far past the last snapshot the next one is due.
    let mut rng = fastrand::Rng::new();
    let mut gap = snapshot_gap(snapshot_every, &mut rng);
    loop {
        let first = match inputs.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
            Ok(input) => Some(input),
            Err(std_mpsc::RecvTimeoutError::Timeout) => None,
            Err(std_mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        };
        // Everything that is waiting goes into this round: one sync.
        for input in first.into_iter().chain(inputs.try_iter()) {
            match input {
                Input::Client(client, msg) => server.on_client(client, msg, now()),
                Input::Connected(client, tx) => {
                    clients.insert(client, tx);
                }
                Input::Disconnected(client) => {
                    clients.remove(&client);
                    server.on_disconnect(client);
                }
                Input::Peer(from, msg) => server.on_peer(from, msg, now()),
                Input::Stop => return Ok(()),
            }
        }
        if Instant::now() >= next_tick {
            server.on_tick(now());
            next_tick = Instant::now() + tick;
        }
        if leading != (server.role() == Role::Leader) {
            leading = !leading;
            let term = server.term();
            if leading {
                info!(id = server.id(), "became leader in term {term}");
            } else {
                info!(id = server.id(), "stopped leading in term {term}");
            }
        }
        let output = server.take_output();
        let wrote = !output.writes.is_empty();
        storage.write(&output.writes)?;
        // What may go now goes before the sync: answers to clients rest
        // only on entries committed already, and a write's answer would
        // otherwise wait for the next group's `fsync` as well as its own;
        // a leader's `AppendEntries` lets its followers write meanwhile.
        deliver(output.now, &clients, &peers);
        if wrote {
            let synced = storage.sync()?;
            server.persisted(synced);
        }
        deliver(output.after_sync, &clients, &peers);
        // `persisted` may have committed more.
        let more = server.take_output();
        if !more.writes.is_empty() {
            storage.write(&more.writes)?;
            let synced = storage.sync()?;
            server.persisted(synced);
        }
        deliver(more.now, &clients, &peers);
        deliver(more.after_sync, &clients, &peers);
        // Log compaction, once enough is logged since the last snapshot:
        // the state as applied becomes the next one. Encoding it pauses
        // the core; writing it, the slow part, is another thread's work,
        // and the log it makes unneeded goes when it is on disk. (A real
        // system would not pause at all: ZooKeeper writes a "fuzzy"
        // snapshot while it goes on applying.)
        // The core wakes at least once a tick, so it sees the writer
        // finish within one. (A core that stops first takes the snapshot
        // in on its next start.)
        // Two things here take tens of milliseconds, and are not the
        // core's work: freeing the entries the log lets go of, and deleting
        // the files the snapshot makes unneeded. The writer frees the
        // entries (slowly: see `free_slowly`); the files go on a thread of
        // their own, slowly too, or every `fsync` on the disk would wait
        // for their blocks to be freed (see `remove_files_slowly`).
        if let Some(done) = writer.take_if(|w| w.is_finished()) {
            let (index, term) = done.join().expect("the snapshot writer does not panic")?;
            let obsolete = storage.snapshot_written(index, term)?;
            std::thread::spawn(move || {
                if let Err(e) = storage::remove_files_slowly(&obsolete) {
                    // Harmless: the next open finds the files covered by
                    // the snapshot, or in the trash.
                    warn!(%e, "removing files a snapshot made unneeded");
                }
            });
            debug!(id = server.id(), index, "snapshot written");
        }
        if writer.is_none()
            && storage.last_index() >= storage.snapshot_index() + gap
            && let Some(Compacted { snapshot, released }) = server.compact()
        {
            gap = snapshot_gap(snapshot_every, &mut rng);
            let dir = snapshot_dir.clone();
            writer = Some(std::thread::spawn(move || {
                storage::write_snapshot(&dir, &snapshot)?;
                free_slowly(released);
                Ok((snapshot.last_index, snapshot.last_term))
            }));
        }
    }
}

/// How many entries past its last snapshot a server takes the next: from
/// half of `every` to all of it, drawn anew each time (ZooKeeper draws its
/// snapshot point the same way, from `snapCount`). Otherwise every server
/// would take its snapshots at the same index, and so pause at the same
/// moment: the core while it encodes the state, the disk they share while
/// the old files go. With no majority left to commit, every write would
/// wait. Staggered, two servers of three go on while the third pauses.
fn snapshot_gap(every: u64, rng: &mut fastrand::Rng) -> u64 {
    (every / 2 + rng.u64(..=every - every / 2)).max(1)
}

/// Frees the entries a compaction let go of, a thousand at a time with a
/// millisecond between. Freed all at once, a hundred thousand entries the
/// core allocated kept the allocator's lock (the core's arena) away from
/// the core for tens of milliseconds: the p99 of writes at half the peak
/// was 37 to 40 ms, and 12 to 27 with the entries never freed (2026-12-02,
/// `kfs perf coordinator --sessions 3 --in-flight 512 --rate 48000`).
/// Spread out, the core hardly notices; the snapshot is on disk already.
fn free_slowly<T>(mut released: Vec<T>) {
    while !released.is_empty() {
        let keep = released.len().saturating_sub(1_000);
        released.truncate(keep);
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Hands each send to its connection's task.
fn deliver(
    sends: Vec<Send>,
    clients: &BTreeMap<ClientId, mpsc::UnboundedSender<ServerMessage>>,
    peers: &BTreeMap<NodeId, mpsc::UnboundedSender<PeerMessage>>,
) {
    for send in sends {
        match send {
            Send::Client(client, msg) => {
                if let Some(tx) = clients.get(&client) {
                    // A client that went away is cleaned up when its
                    // reader reports it.
                    let _ = tx.send(msg);
                }
            }
            Send::Peer(to, msg) => {
                if let Some(tx) = peers.get(&to) {
                    // The sender task lives as long as the server.
                    let _ = tx.send(msg);
                }
            }
        }
    }
}

/// The time in ms since the Unix epoch: what the stats record, what keeps
/// session ids unique across a server's restarts, and the client library's
/// clock.
pub fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Whether the server is stopping (or already gone).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: stopped too.
    let _ = stopping.wait_for(|&stop| stop).await;
}

async fn accept_clients(
    listener: TcpListener,
    inputs: std_mpsc::Sender<Input>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut next_client: ClientId = 1;
    loop {
        let accepted = tokio::select! {
            _ = stopped(&mut stopping) => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, addr) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(%e, "accepting a client");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Requests are small and answers should not wait for more.
        let _ = stream.set_nodelay(true);
        let client = next_client;
        next_client += 1;
        debug!(client, %addr, "client connected");
        let (reader, mut writer) = stream.into_split();
        // Buffered: a frame's length and body in one system call, and
        // several frames in one when they come together.
        let mut reader = BufReader::new(reader);
        let (tx, mut rx) = mpsc::unbounded_channel::<ServerMessage>();
        if inputs.send(Input::Connected(client, tx)).is_err() {
            return;
        }
        let mut stop = stopping.clone();
        tokio::spawn(async move {
            let mut bytes = Vec::new();
            loop {
                let msg = tokio::select! {
                    _ = stopped(&mut stop) => return,
                    msg = rx.recv() => msg,
                };
                let Some(msg) = msg else { return };
                // Every answer queued goes in one write: a client that
                // pipelines gets a round's answers for one system call.
                bytes.clear();
                let queued = std::iter::from_fn(|| rx.try_recv().ok());
                for msg in std::iter::once(msg).chain(queued) {
                    if frame_into(&msg, &mut bytes).is_err() {
                        return;
                    }
                }
                if writer.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        });
        let inputs = inputs.clone();
        let mut stop = stopping.clone();
        tokio::spawn(async move {
            loop {
                let frame = tokio::select! {
                    _ = stopped(&mut stop) => return,
                    frame = read_frame::<ClientMessage>(&mut reader) => frame,
                };
                match frame {
                    Ok(Some(msg)) => {
                        if inputs.send(Input::Client(client, msg)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        warn!(client, %e, "closing a client connection");
                        break;
                    }
                }
            }
            let _ = inputs.send(Input::Disconnected(client));
        });
    }
}

async fn accept_peers(
    me: Hello,
    listener: TcpListener,
    inputs: std_mpsc::Sender<Input>,
    mut stopping: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stopped(&mut stopping) => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, _) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(%e, "accepting a peer");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let inputs = inputs.clone();
        let mut stop = stopping.clone();
        let ensemble = me.ensemble.clone();
        let my_id = me.id;
        tokio::spawn(async move {
            // Buffered, as a client's connection is.
            let mut stream = BufReader::new(stream);
            // A peer says who it is first, and must be of this ensemble.
            let Ok(Some(hello)) = read_frame::<Hello>(&mut stream).await else {
                return;
            };
            if hello.ensemble != ensemble || hello.id == my_id {
                warn!(from = hello.id, "refusing a peer of another ensemble");
                return;
            }
            let from = hello.id;
            loop {
                let frame = tokio::select! {
                    _ = stopped(&mut stop) => return,
                    frame = read_frame_up_to::<PeerMessage>(&mut stream, MAX_PEER_FRAME) => frame,
                };
                match frame {
                    Ok(Some(msg)) => {
                        if inputs.send(Input::Peer(from, msg)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        warn!(from, %e, "closing a peer connection");
                        return;
                    }
                }
            }
        });
    }
}

/// Keeps a connection to a peer and writes what the core sends it. Raft
/// copes with lost messages, so a message that finds no connection is
/// dropped rather than queued without bound.
async fn send_to_peer(
    hello: Hello,
    addr: SocketAddr,
    mut messages: mpsc::UnboundedReceiver<PeerMessage>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut stream: Option<TcpStream> = None;
    loop {
        let msg = tokio::select! {
            _ = stopped(&mut stopping) => return,
            msg = messages.recv() => msg,
        };
        let Some(msg) = msg else { return };
        // Everything queued for the peer goes in one write: a follower
        // forwards each of its clients' writes to the leader, and a round
        // of them should cost one system call, not one each.
        let mut bytes = Vec::new();
        let queued = std::iter::from_fn(|| messages.try_recv().ok());
        for msg in std::iter::once(msg).chain(queued) {
            let start = bytes.len();
            if let Err(e) = peer_frames(msg, &mut bytes) {
                // Nothing of it goes: a frame cut short would end the
                // connection.
                bytes.truncate(start);
                warn!(%addr, %e, "cannot encode a message to a peer");
            }
        }
        if stream.is_none() {
            match TcpStream::connect(addr).await {
                Ok(mut s) => {
                    let _ = s.set_nodelay(true);
                    if write_frame(&mut s, &hello).await.is_ok() {
                        stream = Some(s);
                    }
                }
                Err(e) => debug!(%addr, %e, "peer not reachable"),
            }
        }
        if let Some(s) = stream.as_mut()
            && s.write_all(&bytes).await.is_err()
        {
            stream = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{Entry, HardState, Raft};
    use crate::state::{Command, LogEntry, Request};
    use crate::tree::MAX_DATA;

    fn big_entry(index: u64) -> Entry<std::sync::Arc<LogEntry>> {
        let request = Request::Create {
            path: format!("/big-{index}"),
            data: vec![index as u8; MAX_DATA],
            ephemeral: false,
            sequential: false,
        };
        Entry {
            term: 2,
            index,
            command: Some(std::sync::Arc::new(LogEntry {
                time: 0,
                command: Command::Request {
                    session: 1,
                    xid: index,
                    after: None,
                    request,
                },
            })),
        }
    }

    #[test]
    fn an_append_too_long_for_a_frame_goes_as_runs_that_chain() {
        // Five entries of 1 MiB after entry 10 (of term 1): over two
        // frames' worth.
        let entries: Vec<_> = (11..=15).map(big_entry).collect();
        let msg = PeerMessage::Raft(Message::AppendEntries {
            term: 2,
            prev_index: 10,
            prev_term: 1,
            entries: entries.clone(),
            commit: 12,
        });
        let mut bytes = Vec::new();
        peer_frames(msg, &mut bytes).unwrap();
        let frames = split(&bytes);
        assert!(frames.len() > 1, "{} frame(s)", frames.len());
        let mut expected_prev = (10, 1);
        let mut received = Vec::new();
        for frame in frames {
            let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
            assert_eq!(len, frame.len() - 4);
            assert!(len <= MAX_PEER_FRAME, "a frame of {len} bytes");
            let (msg, _): (PeerMessage, usize) =
                bincode::serde::decode_from_slice(&frame[4..], bincode::config::standard())
                    .unwrap();
            let PeerMessage::Raft(Message::AppendEntries {
                term,
                prev_index,
                prev_term,
                entries,
                commit,
            }) = msg
            else {
                panic!("not an AppendEntries: {msg:?}");
            };
            assert_eq!((term, commit), (2, 12));
            assert_eq!((prev_index, prev_term), expected_prev);
            let last = entries.last().unwrap();
            expected_prev = (last.index, last.term);
            received.extend(entries);
        }
        assert_eq!(received, entries);
    }

    #[test]
    fn a_message_that_fits_is_one_frame() {
        let msg = PeerMessage::Raft(Message::AppendEntries {
            term: 2,
            prev_index: 10,
            prev_term: 1,
            entries: vec![big_entry(11)],
            commit: 10,
        });
        let mut bytes = b"queued before".to_vec();
        peer_frames(msg.clone(), &mut bytes).unwrap();
        assert_eq!(bytes[..13], *b"queued before");
        assert_eq!(split(&bytes[13..]), vec![&frame(&msg).unwrap()[..]]);
    }

    /// Whether servers 1 and 2, with the seeds they get as processes
    /// `pids`, elect one of them within a minute once their leader, server
    /// 3, is gone. All three start together; 3 times out first and leads
    /// for a while, and 1 and 2, hearing each of its messages at the same
    /// moments, draw their election timeouts the same number of times. The
    /// clock moves a millisecond at a time; a message arrives within that
    /// millisecond and a write is synced at once.
    #[test]
    fn servers_take_their_snapshots_at_points_of_their_own() {
        let mut rng = fastrand::Rng::with_seed(7);
        let gaps: Vec<u64> = (0..100).map(|_| snapshot_gap(100_000, &mut rng)).collect();
        assert!(gaps.iter().all(|gap| (50_000..=100_000).contains(gap)));
        // Not all at one point: that is the whole idea.
        assert!(gaps.iter().any(|&gap| gap != gaps[0]));
        assert_eq!(snapshot_gap(1, &mut rng), 1);
    }

    fn survivors_elect(pids: [u32; 2]) -> bool {
        let raft = |id: NodeId, timeout: u64, seed: u64| {
            let config = RaftConfig {
                election_timeout_ms: timeout,
                ..RaftConfig::default()
            };
            let hard = HardState::default();
            Raft::<u32>::new(id, &[1, 2, 3], config, hard, None, Vec::new(), 0, seed)
        };
        let mut servers = vec![
            raft(1, 1_000, raft_seed(1, pids[0])),
            raft(2, 1_000, raft_seed(2, pids[1])),
            raft(3, 300, raft_seed(3, pids[1] + 1)),
        ];
        let dies = 3_000;
        for now in 1..dies + 60_000 {
            if now == dies {
                assert_eq!(servers[2].role(), Role::Leader);
                servers.pop();
            }
            for server in &mut servers {
                server.tick(now);
            }
            loop {
                let mut messages = Vec::new();
                for server in &mut servers {
                    server.persisted(server.last_index());
                    let ready = server.take_ready();
                    messages.extend(
                        ready
                            .messages
                            .into_iter()
                            .map(|(to, m)| (server.id(), to, m)),
                    );
                }
                if messages.is_empty() {
                    break;
                }
                for (from, to, msg) in messages {
                    if let Some(server) = servers.iter_mut().find(|s| s.id() == to) {
                        server.step(from, msg);
                    }
                }
            }
            if now > dies && servers.iter().any(|s| s.role() == Role::Leader) {
                return true;
            }
        }
        false
    }

    #[test]
    fn the_survivors_of_a_dead_leader_elect_one_of_them_whatever_their_process_ids() {
        // Processes started one after the other, a few ids apart (each
        // thread of the one started before takes an id too).
        for first in 4_000..4_004 {
            for gap in 1..=4 {
                let pids = [first, first + gap];
                assert!(survivors_elect(pids), "as processes {pids:?}");
            }
        }
    }

    /// The frames one after the other in `bytes`.
    fn split(mut bytes: &[u8]) -> Vec<&[u8]> {
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
            let (frame, rest) = bytes.split_at(4 + len);
            frames.push(frame);
            bytes = rest;
        }
        frames
    }
}

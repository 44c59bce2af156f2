//! [`ReplicatedBroker`]: chapter 5's group broker with replicas inside,
//! the tokio shell around the sans-IO [`ReplicaManager`].
//!
//! It answers what replication changes and passes everything else to the
//! [`GroupBroker`] it wraps, behind the same [`Server`]:
//!
//! - Produce to a replicated topic goes through the manager: appended by
//!   the leader only, and with `acks=all` held until the high watermark
//!   passes it (or the leader changes, or it times out).
//! - Fetch (a consumer's) reads only below the high watermark, long-polled
//!   as chapter 4's is; ListOffsets' "latest" is the high watermark too.
//! - Metadata names each partition's leader, from the controller.
//! - ReplicaFetch (a follower's) is long-polled on the leader: held until
//!   there is something new or `replica.fetch.wait.max.ms` passes.
//! - OffsetsForLeaderEpoch answers a new follower's truncation question.
//! - CreateReplicatedTopic is passed on to the controller.
//! - The group coordinator of a group is the leader of the group's
//!   partition of `__consumer_offsets`, a replicated topic created
//!   through the controller the first time a client asks FindCoordinator.
//!   A broker loads a partition's commits when it becomes its leader and
//!   forgets them when it stops (the members then find the new
//!   coordinator and join again), and an OffsetCommit is answered once
//!   its records are committed (`acks=all`).
//!
//! Its background work, beside the group broker's: heartbeats to the
//! controller (which bring the partitions' state and the brokers'
//! addresses), the follower fetch loop (sending what the manager wants sent
//! and feeding the answers back), and the manager's clock (ISR shrinking,
//! produce timeouts, the high-watermark checkpoint).
//!
//! Locks, always in this order, never held across an `.await`: the replica
//! manager's mutex, then the store's write lock (inside
//! `ReplicatedBroker::with_replicas`). Chapter 5's layer takes its groups
//! lock and then the store's; this layer calls into it (loading offsets,
//! deciding a commit) only while it holds neither of its own, so the two
//! orders cannot meet in a cycle. The metadata cache, the broker
//! addresses and the clients each have a lock of their own, taken alone.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use ch02_segments::{AppendInfo, LogError};
use ch03_partitions::{StoreError, TopicPartition, TopicStore};
use ch04_network::broker::fetch_ready;
use ch04_network::protocol::{
    self, API_VERSION, ApiKey, CreateTopicsRequest, DeleteTopicsRequest, EARLIEST,
    FetchPartitionResponse, FetchRequest, FetchResponse, LATEST, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceInPlace,
    ProducePartitionResponse, ProduceResponse, RequestHeader, StoredBytes, TopicMetadata,
    TopicResults,
};
use ch04_network::server::{every, long_poll};
use ch04_network::{ClientConfig, ClientError, ErrorCode, Handled, Server, ServerConfig, Service};
use ch05_consumer_groups::offsets::{OFFSETS_TOPIC, offsets_partition};
use ch05_consumer_groups::protocol::{
    FindCoordinatorRequest, FindCoordinatorResponse, GroupApi, OffsetCommitRequest,
    OffsetCommitResponse,
};
use ch05_consumer_groups::service::PendingCommit;
use ch05_consumer_groups::{BindError, GroupBroker, GroupConfig, OffsetStore};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::controller_service::NO_LEADER;
use crate::disk::DiskStorage;
use crate::link::{ControllerLink, FixedController};
use crate::manager::{ManagerConfig, Outgoing, ReplicaManager};
use crate::protocol::{
    Acks, BrokerId, CreateReplicatedTopicRequest, CreateReplicatedTopicResponse, EpochQueryRequest,
    EpochQueryResponse, HeartbeatRequest, HeartbeatResponse, ReplicaFetchRequest,
    ReplicaFetchResponse, ReplicationApi,
};
use crate::replica::{Millis, Partition, log_error_code};
use crate::storage::Storage;
use ch04_network::leaders::Connections;

/// The answer an `acks=all` produce waits for.
pub type ProduceReply = Result<AppendInfo, ErrorCode>;

/// What the manager holds for each waiting `acks=all` produce: the channel
/// its answer goes back on.
type Token = oneshot::Sender<ProduceReply>;

/// How a replicated broker behaves, with Kafka's names.
#[derive(Debug, Clone)]
pub struct ReplicationConfig {
    /// This broker's id (`node.id`).
    pub node_id: BrokerId,
    /// Where the controller listens (`host:port`), for [`bind`]'s fixed
    /// controller. (Chapter 8's brokers elect theirs and leave this empty.)
    pub controller: String,
    /// The group broker inside (and chapter 4's broker inside that).
    pub groups: GroupConfig,
    /// The replicas' settings.
    pub manager: ManagerConfig,
    /// `broker.heartbeat.interval.ms`: how often to heartbeat the
    /// controller (Kafka: 2 s). Changes of leader reach this broker within
    /// it.
    pub heartbeat_interval: Duration,
    /// `replica.fetch.wait.max.ms`: how long a leader holds a follower's
    /// fetch when there is nothing new (Kafka: 500 ms). Must be well below
    /// `replica.lag.time.max.ms` and the manager's `retry_ms`.
    pub replica_fetch_wait_max: Duration,
    /// `replica.fetch.backoff.ms`: how long a follower waits before it
    /// fetches again after an error (Kafka: 1 s). The fetch loop looks for
    /// work at least this often.
    pub replica_fetch_backoff: Duration,
    /// How often the replicas' clock ticks (ISR checks, produce timeouts,
    /// the high-watermark checkpoint's interval).
    pub tick_interval: Duration,
    /// How long a call to another broker or the controller waits for its
    /// answer; a replica fetch is given `replica_fetch_wait_max` on top.
    pub request_timeout: Duration,
    /// `default.replication.factor`: when set, chapter 4's CreateTopics
    /// (a topic asked for without a replication factor) creates a
    /// replicated topic of this factor through the controller. When
    /// `None`, such a topic lives on this broker alone, as in chapters 4
    /// and 5. (In Kafka every topic is the controller's, and the default
    /// factor is 1.)
    pub default_replication_factor: Option<u32>,
    /// `offsets.topic.replication.factor` (Kafka: 3): the replication
    /// factor `__consumer_offsets` is created with. As in Kafka, groups
    /// wait (`COORDINATOR_NOT_AVAILABLE`) until the cluster has this many
    /// brokers; a single broker needs 1.
    pub offsets_replication_factor: u32,
}

impl ReplicationConfig {
    /// The defaults, for broker `node_id` of the controller at `controller`.
    pub fn new(node_id: BrokerId, controller: impl Into<String>) -> ReplicationConfig {
        ReplicationConfig {
            node_id,
            controller: controller.into(),
            groups: GroupConfig::default(),
            manager: ManagerConfig::default(),
            heartbeat_interval: Duration::from_secs(2),
            replica_fetch_wait_max: Duration::from_millis(500),
            replica_fetch_backoff: Duration::from_secs(1),
            tick_interval: Duration::from_millis(100),
            request_timeout: Duration::from_secs(30),
            default_replication_factor: None,
            offsets_replication_factor: 3,
        }
    }
}

/// Why a replicated broker's close failed.
#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    /// Writing the high-watermark checkpoint failed. (The store was still
    /// closed.)
    #[error("writing the high-watermark checkpoint: {0}")]
    Checkpoint(#[from] LogError),
    /// Closing the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A view of a running broker's replicas, for tests, tools and the demo.
/// It shares the replica manager only, not the store, so it never keeps
/// the store from closing cleanly.
#[derive(Clone)]
pub struct Replicas {
    manager: Arc<Mutex<ReplicaManager<Token>>>,
    held: Arc<AtomicUsize>,
}

impl Replicas {
    /// A copy of this broker's replica of `tp`, if it has one: its role,
    /// the controller's state as it knows it, its high watermark.
    pub fn partition(&self, tp: &TopicPartition) -> Option<Partition> {
        self.manager.lock().unwrap().partition(tp).cloned()
    }

    /// How many `acks=all` produces are waiting for the high watermark.
    pub fn waiting(&self) -> usize {
        self.manager.lock().unwrap().waiting()
    }

    /// How many fetches (consumers' and followers') are being served now,
    /// almost all of them held waiting for data. (Kafka's fetch purgatory
    /// size, a metric it exports.)
    pub fn held_fetches(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

/// Counts a fetch as held for as long as it is served: dropped when it is
/// answered, or abandoned mid-wait.
struct Held<'a>(&'a AtomicUsize);

impl Held<'_> {
    fn count(held: &AtomicUsize) -> Held<'_> {
        held.fetch_add(1, Ordering::Relaxed);
        Held(held)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A broker with replicas: chapter 5's group broker inside, and a link
/// to its controller (chapter 6's: one fixed address; chapter 8's: the
/// elected one).
pub struct ReplicatedBroker<L = FixedController> {
    /// Chapter 5's broker; its chapter 4 broker holds the store.
    groups: Arc<GroupBroker>,
    config: ReplicationConfig,
    /// New at every start (KRaft's `incarnationId`): tells the controller
    /// this is a new run, which may have lost unsynced records.
    incarnation: u64,
    /// Where other brokers and clients reach this one.
    advertised: String,
    /// The replicas, and the `acks=all` produces they hold.
    manager: Arc<Mutex<ReplicaManager<Token>>>,
    /// How many fetches are held now (shared with [`Replicas`]).
    held: Arc<AtomicUsize>,
    /// The replicas' clock starts here: milliseconds since the broker
    /// started, monotonic.
    started: Instant,
    /// Woken when a leader's log grows or a partition's state changes:
    /// held follower fetches look again.
    appended: Notify,
    /// Woken when a high watermark moves or a partition's state changes:
    /// held consumer fetches look again.
    committed: Notify,
    /// Wakes the follower fetch loop: an answer came, so it may fetch again.
    wake: Notify,
    /// Raised once a shutdown has begun.
    stopping: watch::Sender<bool>,
    /// Whether the last heartbeat failed (so only the first failure in a
    /// row is logged as a warning).
    controller_unreachable: AtomicBool,
    /// The controller's last Metadata answer: every partition's leader and
    /// every live broker. (KRaft brokers keep this cache by replaying the
    /// controller's metadata log; these ask for it with each heartbeat.)
    metadata: Mutex<MetadataResponse>,
    /// Every live broker's address, from the last heartbeat answer.
    brokers: Mutex<BTreeMap<BrokerId, String>>,
    /// A chapter 4 client per other broker called, each with its own
    /// reconnecting connection.
    clients: Connections,
    /// How this broker reaches the controller.
    controller: L,
    /// The offsets partitions whose groups this broker coordinates now,
    /// each with the leader epoch it loaded them at.
    coordinating: Mutex<BTreeMap<u32, u32>>,
    /// One commit at a time per offsets partition (a partition's lock is
    /// `partition % len`), so that commits are answered, and their
    /// positions become the latest, in the order their records are in the
    /// log. (Kafka lets them overlap, and compares log offsets instead.)
    commit_turns: Vec<tokio::sync::Mutex<()>>,
    /// Whether the last attempt to create `__consumer_offsets` was refused
    /// (so the refusal is logged once, not at every FindCoordinator).
    offsets_topic_refused: AtomicBool,
}

/// Loads the committed offsets, binds `addr` (port 0 picks a free port),
/// and returns a server of a [`ReplicatedBroker`] over `store`, ready to
/// run, with a view of its replicas. Its controller is the one at
/// `config.controller`.
pub async fn bind(
    addr: SocketAddr,
    store: TopicStore,
    server: ServerConfig,
    config: ReplicationConfig,
) -> Result<(Server<ReplicatedBroker>, Replicas), BindError> {
    // Nothing to load yet: each offsets partition is loaded when this
    // broker becomes its leader.
    let offsets = OffsetStore::empty(config.groups.offsets.clone());
    let mut view = None;
    let server = Server::bind_with(addr, server, |local| {
        let groups = GroupBroker::new(store, offsets, local, config.groups.clone());
        let link = FixedController::new(config.controller.clone(), config.request_timeout);
        let broker = ReplicatedBroker::new(groups, local, config, link);
        view = Some(broker.replicas());
        broker
    })
    .await
    .map_err(|source| BindError::Listen { addr, source })?;
    Ok((server, view.expect("the service was built")))
}

impl<L: ControllerLink> ReplicatedBroker<L> {
    /// Wraps `groups` (reached at `local`), opening the replicas its store
    /// hosts from their logs and checkpoints. They do nothing until the
    /// controller, reached through `controller`, first answers with what
    /// each is. ([`bind`] builds one with chapter 6's fixed controller;
    /// chapter 8 wraps one in a layer of its own.)
    pub fn new(
        groups: GroupBroker,
        local: SocketAddr,
        config: ReplicationConfig,
        controller: L,
    ) -> ReplicatedBroker<L> {
        let manager = {
            let mut store = groups.broker().write();
            ReplicaManager::open(
                config.node_id,
                config.manager,
                &mut DiskStorage::new(&mut store),
                0,
            )
        };
        for (tp, partition) in manager.partitions() {
            info!(partition = %tp, high_watermark = partition.high_watermark(), "opened replica");
        }
        groups.coordinate_loaded_partitions_only();
        let turns = config.groups.offsets.partitions.max(1) as usize;
        ReplicatedBroker {
            groups: Arc::new(groups),
            incarnation: fastrand::u64(..),
            advertised: local.to_string(),
            manager: Arc::new(Mutex::new(manager)),
            held: Arc::new(AtomicUsize::new(0)),
            started: Instant::now(),
            appended: Notify::new(),
            committed: Notify::new(),
            wake: Notify::new(),
            stopping: watch::Sender::new(false),
            controller_unreachable: AtomicBool::new(false),
            metadata: Mutex::new(MetadataResponse {
                brokers: Vec::new(),
                topics: Vec::new(),
            }),
            brokers: Mutex::new(BTreeMap::new()),
            clients: Connections::new(ClientConfig {
                // A replica fetch may be held for `replica_fetch_wait_max`.
                request_timeout: config.request_timeout + config.replica_fetch_wait_max,
                ..ClientConfig::default()
            }),
            controller,
            coordinating: Mutex::new(BTreeMap::new()),
            commit_turns: (0..turns).map(|_| tokio::sync::Mutex::new(())).collect(),
            offsets_topic_refused: AtomicBool::new(false),
            config,
        }
    }

    /// A view of the replicas, for tests, tools and the demo.
    pub fn replicas(&self) -> Replicas {
        Replicas {
            manager: self.manager.clone(),
            held: self.held.clone(),
        }
    }

    fn now(&self) -> Millis {
        self.started.elapsed().as_millis() as Millis
    }

    fn lock_metadata(&self) -> MutexGuard<'_, MetadataResponse> {
        self.metadata.lock().unwrap()
    }

    /// Runs `f` on the replica manager and the store, in the lock order
    /// (manager, then store); then sends every `acks=all` answer the call
    /// made ready, and wakes held consumer fetches if a high watermark
    /// moved. Every use of the manager goes through here.
    fn with_replicas<R>(
        &self,
        f: impl FnOnce(&mut ReplicaManager<Token>, &mut DiskStorage<'_>) -> R,
    ) -> R {
        let mut manager = self.manager.lock().unwrap();
        let mut store = self.groups.broker().write();
        let high_watermarks = |m: &ReplicaManager<Token>| -> Vec<u64> {
            m.partitions()
                .values()
                .map(Partition::high_watermark)
                .collect()
        };
        let before = high_watermarks(&manager);
        let result = f(&mut manager, &mut DiskStorage::new(&mut store));
        for (waiting, reply) in manager.take_completed() {
            // The producer's connection is gone: nobody to tell.
            let _ = waiting.send(reply);
        }
        if high_watermarks(&manager) != before {
            self.committed.notify_waiters();
        }
        result
    }

    /// Whether `topic` is replicated (the controller knows it, or this
    /// broker hosts a replica of it): if so, its requests are served here,
    /// not by the group broker inside.
    fn is_replicated(&self, topic: &str) -> bool {
        self.lock_metadata().topics.iter().any(|t| t.name == topic)
            || self
                .manager
                .lock()
                .unwrap()
                .partitions()
                .keys()
                .any(|tp| tp.topic == topic)
    }

    /// One call to `addr`.
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        api: impl Into<u16>,
        request: &Req,
    ) -> Result<Resp, ClientError> {
        self.clients.get(addr).await?.call(api, request).await
    }

    /// Where broker `id` is, if it is alive.
    fn address_of(&self, id: BrokerId) -> Option<String> {
        self.brokers.lock().unwrap().get(&id).cloned()
    }
}

// Requests.
impl<L: ControllerLink> ReplicatedBroker<L> {
    /// A produce to replicated topics: each partition's batch through the
    /// manager, which appends it if this broker leads, before this returns,
    /// so the connection's next request comes after it. With `acks=all`,
    /// the answer is a [`Handled::Later`] that waits (without any lock) for
    /// the manager to complete it: when the high watermark passes the
    /// batch, the leader changes, or the request times out. Meanwhile the
    /// connection serves its next request, so a producer's next batch is
    /// appended while the followers copy this one, and one fetch carries
    /// both. A shutdown answers it at once with `NOT_LEADER_OR_FOLLOWER`:
    /// the producer will find the next leader.
    fn produce(
        &self,
        header: RequestHeader,
        request: ProduceInPlace,
        mut body: BytesMut,
    ) -> Handled {
        let acks = Acks::from_i8(request.acks);
        let now = self.now();
        let mut answers = Vec::new();
        self.with_replicas(|manager, storage| {
            for (topic, batches) in &request.topics {
                for (partition, range) in batches {
                    let tp = TopicPartition::new(topic.clone(), *partition);
                    let (token, reply) = oneshot::channel();
                    let answer = match acks {
                        // Only the group coordinator writes the offsets topic.
                        _ if topic == OFFSETS_TOPIC => Ok(Err(ErrorCode::InvalidTopicException)),
                        // Kafka's INVALID_REQUIRED_ACKS.
                        None => Ok(Err(ErrorCode::InvalidRequest)),
                        Some(acks) => {
                            let batch = &mut body[range.clone()];
                            match manager.produce(storage, &tp, batch, acks, now, token) {
                                Some((_, result)) => Ok(result),
                                None => Err(reply),
                            }
                        }
                    };
                    answers.push((tp, answer));
                }
            }
        });
        // New records for the followers' held fetches.
        self.appended.notify_waiters();
        if acks == Some(Acks::None) {
            return Handled::Nothing;
        }
        if answers.iter().all(|(_, answer)| answer.is_ok()) {
            // Every partition answered already: nothing to wait for.
            let results = answers
                .into_iter()
                .filter_map(|(tp, answer)| answer.ok().map(|result| (tp, result)));
            return Handled::Now(ok(header, &produce_response(results)));
        }
        let mut stopping = self.stopping.subscribe();
        Handled::Later(Box::pin(async move {
            let mut results = Vec::with_capacity(answers.len());
            for (tp, answer) in answers {
                let result = match answer {
                    Ok(result) => result,
                    Err(reply) => tokio::select! {
                        // A dropped channel: the manager let go of it.
                        reply = reply => reply.unwrap_or(Err(ErrorCode::NotLeaderOrFollower)),
                        _ = stopping.wait_for(|stopping| *stopping) => Err(ErrorCode::NotLeaderOrFollower),
                    },
                };
                results.push((tp, result));
            }
            Some(ok(header, &produce_response(results)))
        }))
    }

    /// One pass over a consumer's fetch, without waiting: each partition's
    /// committed batches, from its leader only.
    fn read_committed(&self, request: &FetchRequest) -> FetchResponse {
        self.with_replicas(|manager, storage| {
            let mut left = u64::from(request.max_bytes);
            let mut partitions = Vec::with_capacity(request.partitions.len());
            for p in &request.partitions {
                let tp = TopicPartition::new(p.topic.clone(), p.partition);
                let mut response = FetchPartitionResponse {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    error: ErrorCode::None,
                    high_watermark: 0,
                    log_start_offset: 0,
                    batches: Vec::new(),
                };
                let log_start = storage.log(&tp).map(|log| log.log_start_offset());
                // At least one batch even past the limits (KIP-74).
                let max = u64::from(p.max_bytes).min(left).max(1);
                let read = u64::try_from(p.offset)
                    .map_err(|_| ErrorCode::OffsetOutOfRange)
                    .and_then(|offset| manager.read(storage, &tp, offset, max));
                match read {
                    Ok((batches, high_watermark)) => {
                        response.high_watermark = high_watermark;
                        response.log_start_offset = log_start.unwrap_or(0);
                        // The request's limit was spent on earlier partitions.
                        let batches = if left > 0 { batches } else { Vec::new() };
                        for batch in batches {
                            left = left.saturating_sub(batch.bytes.len() as u64);
                            response.batches.push(StoredBytes(batch.bytes));
                        }
                    }
                    Err(code) => response.error = code,
                }
                partitions.push(response);
            }
            FetchResponse { partitions }
        })
    }

    /// A consumer's fetch of replicated partitions: committed records only,
    /// long-polled as chapter 4's broker does, but woken when a high
    /// watermark moves rather than when the log grows (a record is not
    /// there for consumers until it is committed).
    async fn fetch(&self, request: FetchRequest) -> FetchResponse {
        let deadline = Instant::now() + Duration::from_millis(u64::from(request.max_wait_ms));
        let mut stopping = self.stopping.subscribe();
        let _held = Held::count(&self.held);
        let look = || self.read_committed(&request);
        let ready = |response: &FetchResponse| fetch_ready(response, request.min_bytes);
        long_poll(&self.committed, &mut stopping, deadline, look, ready).await
    }

    /// ListOffsets on replicated partitions, from the leader: "latest" is
    /// the high watermark (what a consumer can read up to), not the log end.
    fn list_offsets(&self, request: ListOffsetsRequest) -> ListOffsetsResponse {
        self.with_replicas(|manager, storage| {
            let partitions = request
                .partitions
                .into_iter()
                .map(|(topic, partition, timestamp)| {
                    let tp = TopicPartition::new(topic.clone(), partition);
                    let leader = manager.partition(&tp).filter(|p| p.is_leader());
                    let log = storage.log(&tp);
                    let (Some(leader), Some(log)) = (leader, log) else {
                        return (topic, partition, ErrorCode::NotLeaderOrFollower, None);
                    };
                    let high_watermark = leader.high_watermark();
                    let found = match timestamp {
                        EARLIEST => Ok(Some(log.log_start_offset())),
                        LATEST => Ok(Some(high_watermark)),
                        ts => log
                            .offset_for_timestamp(ts)
                            .map(|found| found.filter(|&offset| offset < high_watermark)),
                    };
                    match found {
                        Ok(offset) => (topic, partition, ErrorCode::None, offset),
                        Err(e) => (topic, partition, log_error_code(&e), None),
                    }
                })
                .collect();
            ListOffsetsResponse { partitions }
        })
    }

    /// Metadata: replicated topics from the controller's last answer (with
    /// its leaders and live brokers); topics only this broker has (created
    /// with chapter 4's CreateTopics, and chapter 5's offsets topic) led by
    /// this broker.
    fn metadata(&self, request: MetadataRequest) -> MetadataResponse {
        let cached = self.lock_metadata().clone();
        // Before the store's lock: the manager's lock is never taken after it.
        let hosted: BTreeSet<String> = {
            let manager = self.manager.lock().unwrap();
            manager
                .partitions()
                .keys()
                .map(|tp| tp.topic.clone())
                .collect()
        };
        let store = self.groups.broker().read();
        let mut brokers = cached.brokers;
        let me = self.config.node_id;
        if !brokers.iter().any(|(id, _, _)| *id == me)
            && let Some((host, port)) = self.advertised.rsplit_once(':')
        {
            brokers.push((me, host.to_string(), port.parse().unwrap_or(0)));
        }
        let replicated: BTreeMap<&str, &TopicMetadata> =
            cached.topics.iter().map(|t| (t.name.as_str(), t)).collect();
        let names = request.topics.unwrap_or_else(|| {
            let mut all: BTreeSet<String> = replicated.keys().map(|n| n.to_string()).collect();
            all.extend(store.topics());
            all.into_iter().collect()
        });
        let topics = names
            .into_iter()
            .map(|name| {
                if let Some(topic) = replicated.get(name.as_str()) {
                    return (*topic).clone();
                }
                match store.partition_count(&name) {
                    // A hosted replica the controller's last answer did not
                    // list yet: its leader is not known here.
                    Ok(count) if hosted.contains(&name) => TopicMetadata {
                        name,
                        error: ErrorCode::None,
                        partitions: (0..count).map(|p| (p, NO_LEADER)).collect(),
                    },
                    Ok(count) => TopicMetadata {
                        name,
                        error: ErrorCode::None,
                        partitions: (0..count).map(|p| (p, me)).collect(),
                    },
                    Err(_) => TopicMetadata {
                        name,
                        error: ErrorCode::UnknownTopicOrPartition,
                        partitions: Vec::new(),
                    },
                }
            })
            .collect();
        MetadataResponse { brokers, topics }
    }

    /// A follower's fetch, on the leader: answered at once if any partition
    /// has new batches or an error; otherwise held until the leader's log
    /// grows, a partition's state changes, `replica.fetch.wait.max.ms`
    /// passes, or a shutdown begins. Each look records the follower's
    /// progress again, which may move the high watermark and complete
    /// `acks=all` produces.
    async fn replica_fetch(&self, request: ReplicaFetchRequest) -> ReplicaFetchResponse {
        let deadline = Instant::now() + self.config.replica_fetch_wait_max;
        let mut stopping = self.stopping.subscribe();
        let _held = Held::count(&self.held);
        let look = || {
            let now = self.now();
            let response = self.with_replicas(|m, s| m.on_replica_fetch(s, &request, now));
            // The follower may have caught up: the fetch loop sends the
            // ISR change the manager may now want.
            self.wake.notify_one();
            response
        };
        let ready = |response: &ReplicaFetchResponse| {
            response
                .partitions
                .iter()
                .any(|p| !p.batches.is_empty() || p.error != ErrorCode::None)
        };
        long_poll(&self.appended, &mut stopping, deadline, look, ready).await
    }

    /// Chapter 4's CreateTopics and DeleteTopics change only this broker's
    /// store: if a request names a replicated topic, none of it is done,
    /// and the replicated names get `code`. (A local topic of a replicated
    /// topic's name would be taken for its replica; and a replica's log
    /// deleted under the manager would be gone without the controller
    /// knowing. Replicated topics are created through the controller;
    /// deleting them is not built in this chapter.)
    fn refuse_replicated(&self, names: Vec<String>, code: ErrorCode) -> Option<TopicResults> {
        if !names.iter().any(|name| self.is_replicated(name)) {
            return None;
        }
        let topics = names
            .into_iter()
            .map(|name| {
                if self.is_replicated(&name) {
                    let message = format!("{name} is a replicated topic: the controller owns it");
                    (name, code, message)
                } else {
                    let message = "not done: the request also names a replicated topic".to_string();
                    (name, ErrorCode::InvalidRequest, message)
                }
            })
            .collect();
        Some(TopicResults { topics })
    }

    /// Chapter 4's CreateTopics on a broker with
    /// `default.replication.factor`: each topic created through the
    /// controller with that factor. Settings are refused
    /// (`INVALID_CONFIG`): a replicated topic takes none yet.
    async fn create_with_default_factor(
        &self,
        request: CreateTopicsRequest,
        factor: u32,
    ) -> TopicResults {
        let mut topics = Vec::with_capacity(request.topics.len());
        for topic in request.topics {
            if !topic.configs.is_empty() {
                let message = format!(
                    "{}: a replicated topic (default.replication.factor={factor}) takes no settings yet",
                    topic.name
                );
                topics.push((topic.name, ErrorCode::InvalidConfig, message));
                continue;
            }
            let created = self
                .create_topic(CreateReplicatedTopicRequest {
                    name: topic.name.clone(),
                    partitions: topic.partitions,
                    replication_factor: factor,
                })
                .await;
            topics.push((topic.name, created.error, created.message));
        }
        TopicResults { topics }
    }

    /// CreateReplicatedTopic, passed on to the controller (as a Kafka
    /// broker forwards CreateTopics).
    async fn create_topic(
        &self,
        request: CreateReplicatedTopicRequest,
    ) -> CreateReplicatedTopicResponse {
        match self.controller.create_topic(&request).await {
            Ok(response) => response,
            Err(e) => CreateReplicatedTopicResponse {
                // No answer from the controller: retriable.
                error: e.code().unwrap_or(ErrorCode::RequestTimedOut),
                message: format!("the controller at {}: {e}", self.controller.describe()),
            },
        }
    }

    async fn handle_replication(
        &self,
        header: RequestHeader,
        api: ReplicationApi,
        body: &[u8],
    ) -> BytesMut {
        let response = match api {
            ReplicationApi::ReplicaFetch => match decode(body) {
                Ok(r) => Ok(ok(header, &self.replica_fetch(r).await)),
                Err(e) => Err(e),
            },
            ReplicationApi::OffsetsForLeaderEpoch => decode::<EpochQueryRequest>(body)
                .map(|r| ok(header, &self.with_replicas(|m, s| m.on_epoch_query(s, &r)))),
            ReplicationApi::CreateReplicatedTopic => match decode(body) {
                Ok(r) => Ok(ok(header, &self.create_topic(r).await)),
                Err(e) => Err(e),
            },
            ReplicationApi::BrokerHeartbeat | ReplicationApi::AlterPartition => {
                return protocol::error_response(
                    header.correlation_id,
                    ErrorCode::InvalidRequest,
                    format!("{api:?} goes to the controller, not to a broker"),
                );
            }
        };
        response.unwrap_or_else(|message| {
            warn!(?api, correlation_id = header.correlation_id, %message, "undecodable request body");
            protocol::error_response(header.correlation_id, ErrorCode::InvalidRequest, message)
        })
    }
}

// Group coordination, on the replicated offsets topic.
impl<L: ControllerLink> ReplicatedBroker<L> {
    /// FindCoordinator: the leader of the group's partition of
    /// `__consumer_offsets`. While the topic does not exist, asks the
    /// controller to create it and answers `COORDINATOR_NOT_AVAILABLE`
    /// (the client asks again); so too while the partition has no leader.
    async fn find_coordinator(&self, request: FindCoordinatorRequest) -> FindCoordinatorResponse {
        let refused = |error| FindCoordinatorResponse {
            error,
            node_id: NO_LEADER,
            host: String::new(),
            port: 0,
        };
        if request.key.is_empty() {
            return refused(ErrorCode::InvalidGroupId);
        }
        // The controller's topic only: a local topic of the same name (left
        // by an older version) is not the replicated one, and is taken
        // over as this broker's replica of it once that is made.
        let (topic, brokers) = {
            let metadata = self.lock_metadata();
            let topic = metadata.topics.iter().find(|t| t.name == OFFSETS_TOPIC);
            (topic.cloned(), metadata.brokers.clone())
        };
        let Some(topic) = topic else {
            self.create_offsets_topic().await;
            return refused(ErrorCode::CoordinatorNotAvailable);
        };
        let partition = offsets_partition(&request.key, topic.partitions.len() as u32);
        let leader = topic
            .partitions
            .iter()
            .find(|(p, _)| *p == partition)
            .map(|(_, leader)| *leader);
        match brokers.into_iter().find(|(id, _, _)| Some(*id) == leader) {
            Some((node_id, host, port)) => FindCoordinatorResponse {
                error: ErrorCode::None,
                node_id,
                host,
                port,
            },
            None => refused(ErrorCode::CoordinatorNotAvailable),
        }
    }

    /// Asks the controller for `__consumer_offsets`, with
    /// `offsets.topic.num.partitions` and `offsets.topic.replication.factor`
    /// (Kafka creates it the same way, on the first FindCoordinator). A
    /// refusal other than "it exists" is logged once.
    async fn create_offsets_topic(&self) {
        let created = self
            .create_topic(CreateReplicatedTopicRequest {
                name: OFFSETS_TOPIC.to_string(),
                partitions: self.config.groups.offsets.partitions,
                replication_factor: self.config.offsets_replication_factor,
            })
            .await;
        match created.error {
            ErrorCode::None | ErrorCode::TopicAlreadyExists => {
                self.offsets_topic_refused.store(false, Ordering::Relaxed);
            }
            error => {
                if !self.offsets_topic_refused.swap(true, Ordering::Relaxed) {
                    warn!(%error, message = created.message, "cannot create the offsets topic: consumer groups wait for it");
                }
            }
        }
    }

    /// Makes the groups this broker coordinates follow the offsets
    /// partitions it leads: a partition it leads at a leader epoch it has
    /// not loaded is loaded (its commits read from this broker's log of
    /// it); one it no longer leads, or leads at another epoch, is
    /// unloaded first. Called after every heartbeat, so a load that
    /// failed is tried again.
    fn coordinate(&self) {
        let leading: BTreeMap<u32, u32> = self
            .manager
            .lock()
            .unwrap()
            .partitions()
            .iter()
            .filter(|(tp, p)| tp.topic == OFFSETS_TOPIC && p.is_leader())
            .map(|(tp, p)| (tp.partition, p.state().leader_epoch))
            .collect();
        let count = self
            .lock_metadata()
            .topics
            .iter()
            .find(|t| t.name == OFFSETS_TOPIC)
            .map(|t| t.partitions.len() as u32);
        let mut coordinating = self.coordinating.lock().unwrap();
        coordinating.retain(|partition, epoch| {
            let kept = leading.get(partition) == Some(epoch);
            if !kept {
                info!(
                    partition,
                    "no longer the coordinator of this offsets partition's groups"
                );
                self.groups.unload_offsets(*partition);
            }
            kept
        });
        let Some(count) = count else { return };
        for (&partition, &epoch) in &leading {
            if coordinating.contains_key(&partition) {
                continue;
            }
            match self.groups.load_offsets(partition, count) {
                Ok(report) => {
                    info!(
                        partition,
                        epoch,
                        commits = report.records,
                        "coordinating this offsets partition's groups"
                    );
                    coordinating.insert(partition, epoch);
                }
                Err(e) => warn!(partition, error = %e, "loading the offsets partition failed"),
            }
        }
    }

    /// OffsetCommit: decided by chapter 5's coordinator, then appended to
    /// the group's offsets partition through the replicas with
    /// `acks=all`, and answered once committed. One commit at a time per
    /// offsets partition, so they are stored in the order they are
    /// answered.
    async fn commit_offsets(&self, request: OffsetCommitRequest) -> OffsetCommitResponse {
        let partition = self.groups.offsets_partition(&request.group_id);
        let turn = &self.commit_turns[partition as usize % self.commit_turns.len()];
        let _turn = turn.lock().await;
        let partition_count = |topic: &str| self.partition_count(topic);
        let pending = match self.groups.prepare_commit(request, partition_count) {
            Ok(pending) => pending,
            Err(answer) => return answer,
        };
        let stored = self.store_commit(&pending).await;
        self.groups.finish_commit(pending, stored)
    }

    /// Appends a commit's records to its offsets partition as its leader,
    /// and waits until the high watermark passes them. Errors by Kafka's
    /// mapping of a produce's to a commit's: this broker does not lead
    /// the partition (`NOT_COORDINATOR`), or the replicas did not take it
    /// in time (`COORDINATOR_NOT_AVAILABLE`).
    async fn store_commit(&self, pending: &PendingCommit) -> Result<(), ErrorCode> {
        let mut batch = ch02_segments::batch::encode(&pending.records)
            .map_err(|_| ErrorCode::UnknownServerError)?;
        let tp = TopicPartition::new(OFFSETS_TOPIC, pending.partition);
        let (token, reply) = oneshot::channel();
        let now = self.now();
        let done = self.with_replicas(|m, s| m.produce(s, &tp, &mut batch, Acks::All, now, token));
        self.appended.notify_waiters();
        let result = match done {
            Some((_, result)) => result,
            None => {
                let mut stopping = self.stopping.subscribe();
                tokio::select! {
                    reply = reply => reply.unwrap_or(Err(ErrorCode::NotLeaderOrFollower)),
                    _ = stopping.wait_for(|stopping| *stopping) => Err(ErrorCode::NotLeaderOrFollower),
                }
            }
        };
        result.map(|_| ()).map_err(|code| match code {
            ErrorCode::NotLeaderOrFollower | ErrorCode::KafkaStorageError => {
                ErrorCode::NotCoordinator
            }
            ErrorCode::UnknownTopicOrPartition
            | ErrorCode::NotEnoughReplicas
            | ErrorCode::NotEnoughReplicasAfterAppend
            | ErrorCode::RequestTimedOut => ErrorCode::CoordinatorNotAvailable,
            other => other,
        })
    }

    /// How many partitions `topic` has, cluster-wide (the controller's
    /// last answer) or on this broker alone; `None` if neither knows it.
    fn partition_count(&self, topic: &str) -> Option<u32> {
        let replicated = self
            .lock_metadata()
            .topics
            .iter()
            .find(|t| t.name == topic)
            .map(|t| t.partitions.len() as u32);
        replicated.or_else(|| self.groups.broker().read().partition_count(topic).ok())
    }

    /// A group API this layer answers itself, or `None` for chapter 5's
    /// group broker inside.
    async fn handle_group(
        &self,
        header: RequestHeader,
        api: GroupApi,
        body: &[u8],
    ) -> Option<BytesMut> {
        if header.api_version != API_VERSION {
            return None;
        }
        match api {
            GroupApi::FindCoordinator => match decode(body) {
                Ok(r) => Some(ok(header, &self.find_coordinator(r).await)),
                Err(_) => None,
            },
            GroupApi::OffsetCommit => match decode(body) {
                Ok(r) => Some(ok(header, &self.commit_offsets(r).await)),
                Err(_) => None,
            },
            _ => None,
        }
    }
}

/// A produce's answer: each partition's result, grouped by topic in the
/// order the request named them.
fn produce_response(
    results: impl IntoIterator<Item = (TopicPartition, Result<AppendInfo, ErrorCode>)>,
) -> ProduceResponse {
    let mut topics: Vec<(String, Vec<ProducePartitionResponse>)> = Vec::new();
    for (tp, result) in results {
        let (error, base_offset) = match result {
            Ok(info) => (ErrorCode::None, info.base_offset),
            Err(code) => (code, 0),
        };
        let response = ProducePartitionResponse {
            partition: tp.partition,
            error,
            base_offset,
        };
        match topics.last_mut() {
            Some((topic, partitions)) if *topic == tp.topic => partitions.push(response),
            _ => topics.push((tp.topic, vec![response])),
        }
    }
    ProduceResponse { topics }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    protocol::decode_body(body)
}

fn ok<T: Serialize>(header: RequestHeader, body: &T) -> BytesMut {
    protocol::ok_response(header.correlation_id, body)
}

impl<L: ControllerLink> Service for ReplicatedBroker<L> {
    type Error = ShutdownError;

    async fn handle(&self, header: RequestHeader, body: BytesMut) -> Handled {
        if let Some(api) = ReplicationApi::from_u16(header.api_key) {
            if header.api_version != API_VERSION {
                let message = format!(
                    "{api:?} version {} (this broker speaks 0)",
                    header.api_version
                );
                return Handled::Now(protocol::error_response(
                    header.correlation_id,
                    ErrorCode::UnsupportedVersion,
                    message,
                ));
            }
            return Handled::Now(self.handle_replication(header, api, &body).await);
        }
        if let Some(api) = GroupApi::from_u16(header.api_key)
            && let Some(response) = self.handle_group(header, api, &body).await
        {
            return Handled::Now(response);
        }
        // Another version is the group broker's to refuse.
        let api = ApiKey::from_u16(header.api_key).filter(|_| header.api_version == API_VERSION);
        match api {
            Some(ApiKey::Metadata) => {
                if let Ok(request) = decode(&body) {
                    return Handled::Now(ok(header, &self.metadata(request)));
                }
            }
            Some(ApiKey::Produce) => {
                if let Ok(request) = ProduceInPlace::decode(&body)
                    && request.topics.iter().any(|(t, _)| self.is_replicated(t))
                {
                    return self.produce(header, request, body);
                }
            }
            Some(ApiKey::Fetch) => {
                if let Ok(request) = decode::<FetchRequest>(&body)
                    && request
                        .partitions
                        .iter()
                        .any(|p| self.is_replicated(&p.topic))
                {
                    return Handled::Now(ok(header, &self.fetch(request).await));
                }
            }
            Some(ApiKey::CreateTopics) => {
                if let Ok(request) = decode::<CreateTopicsRequest>(&body) {
                    if let Some(factor) = self.config.default_replication_factor {
                        let created = self.create_with_default_factor(request, factor).await;
                        return Handled::Now(ok(header, &created));
                    }
                    let names = request.topics.into_iter().map(|t| t.name).collect();
                    if let Some(refused) =
                        self.refuse_replicated(names, ErrorCode::TopicAlreadyExists)
                    {
                        return Handled::Now(ok(header, &refused));
                    }
                }
            }
            Some(ApiKey::DeleteTopics) => {
                if let Ok(request) = decode::<DeleteTopicsRequest>(&body)
                    && let Some(refused) =
                        self.refuse_replicated(request.topics, ErrorCode::InvalidRequest)
                {
                    return Handled::Now(ok(header, &refused));
                }
            }
            Some(ApiKey::ListOffsets) => {
                if let Ok(request) = decode::<ListOffsetsRequest>(&body)
                    && request
                        .partitions
                        .iter()
                        .any(|(t, _, _)| self.is_replicated(t))
                {
                    return Handled::Now(ok(header, &self.list_offsets(request)));
                }
            }
            _ => {}
        }
        // Not replicated, or undecodable (the group broker answers that
        // with INVALID_REQUEST): the group broker's.
        self.groups.handle(header, body).await
    }

    /// The group broker's work, the heartbeats, the follower fetch loop and
    /// the replicas' clock, side by side.
    async fn background(self: Arc<Self>) {
        tokio::join!(
            Arc::clone(&self.groups).background(),
            self.heartbeats(),
            self.replicate(),
            self.tick(),
        );
    }

    fn begin_shutdown(&self) {
        // Held fetches and waiting `acks=all` produces watch this flag, and
        // answer at once.
        self.stopping.send_replace(true);
        self.groups.begin_shutdown();
    }

    fn shutdown(self: Arc<Self>) -> Result<(), ShutdownError> {
        // Kafka writes the high watermarks at a clean shutdown, so a
        // restart starts from the latest.
        let checkpoint = self.with_replicas(|m, s| m.checkpoint_high_watermarks(s));
        // Let go of this layer: the group broker is then alone, and closes
        // the store.
        let groups = Arc::clone(&self.groups);
        drop(self);
        let closed = groups.shutdown();
        checkpoint?;
        Ok(closed?)
    }
}

// Background work.
impl<L: ControllerLink> ReplicatedBroker<L> {
    /// Heartbeats the controller at once, then every
    /// `broker.heartbeat.interval.ms` and whenever the link says the
    /// controller moved, until a shutdown begins.
    async fn heartbeats(&self) {
        let mut stopping = self.stopping.subscribe();
        loop {
            self.heartbeat().await;
            tokio::select! {
                _ = stopping.wait_for(|stopping| *stopping) => return,
                _ = tokio::time::sleep(self.config.heartbeat_interval) => {}
                _ = self.controller.moved() => {}
            }
        }
    }

    /// One heartbeat. The answer brings the state of each partition this
    /// broker holds a replica of, which the manager applies (becoming
    /// leader or follower where it changed), and the live brokers'
    /// addresses, which the fetch loop sends to. Then the controller's
    /// Metadata answer refreshes the cache this broker answers its own
    /// clients' Metadata from.
    async fn heartbeat(&self) {
        let log_ends = self.with_replicas(|m, s| m.log_ends(s));
        let request = HeartbeatRequest {
            broker_id: self.config.node_id,
            incarnation: self.incarnation,
            address: self.advertised.clone(),
            log_ends,
        };
        let response: HeartbeatResponse = match self
            .unless_stopping(self.controller.heartbeat(&request))
            .await
        {
            Some(Ok(response)) => response,
            Some(Err(e)) => {
                self.controller_lost(&e);
                return;
            }
            None => return,
        };
        self.controller_found();
        self.remember_brokers(&response.brokers);
        let now = self.now();
        let applied = self.with_replicas(|m, s| {
            let before = roles(m);
            let applied = m.on_heartbeat_response(s, response, now);
            log_role_changes(&before, m);
            applied
        });
        if let Err(e) = applied {
            warn!(error = %e, "applying the controller's state failed");
        }
        // States may have changed: held fetches look again, and the fetch
        // loop sends what a new follower wants.
        self.appended.notify_waiters();
        self.committed.notify_waiters();
        self.wake.notify_one();
        match self.unless_stopping(self.controller.metadata()).await {
            Some(Ok(metadata)) => *self.lock_metadata() = metadata,
            Some(Err(e)) => {
                let controller = self.controller.describe();
                debug!(%controller, error = %e, "metadata refresh failed");
            }
            None => {}
        }
        // Leadership may have moved: so may the groups this broker
        // coordinates.
        self.coordinate();
    }

    /// `call`'s result, or `None` if a shutdown begins first: a controller
    /// that does not answer must not hold up this broker's shutdown for a
    /// whole request timeout.
    async fn unless_stopping<T>(&self, call: impl Future<Output = T>) -> Option<T> {
        let mut stopping = self.stopping.subscribe();
        tokio::select! {
            result = call => Some(result),
            _ = stopping.wait_for(|stopping| *stopping) => None,
        }
    }

    /// Logs the first heartbeat that fails in a row.
    fn controller_lost(&self, error: &ClientError) {
        if self.controller_unreachable.swap(true, Ordering::Relaxed) {
            debug!(error = %error, "heartbeat failed");
        } else {
            warn!(controller = %self.controller.describe(), error = %error, "the controller is unreachable; retrying every heartbeat interval");
        }
    }

    /// Logs the first heartbeat that succeeds after failures.
    fn controller_found(&self) {
        if self.controller_unreachable.swap(false, Ordering::Relaxed) {
            info!(controller = %self.controller.describe(), "the controller is reachable again");
        }
    }

    /// Keeps the live brokers' addresses, and forgets the clients of those
    /// that went away (a restarted broker comes back on another port).
    fn remember_brokers(&self, brokers: &[(BrokerId, String)]) {
        let addresses: BTreeMap<BrokerId, String> = brokers.iter().cloned().collect();
        self.clients
            .retain(|addr| addresses.values().any(|a| a == addr));
        *self.brokers.lock().unwrap() = addresses;
    }

    /// The follower fetch loop: sends whatever the manager wants sent (each
    /// follower's fetch or epoch query, gathered per leader; each leader's
    /// ISR change, to the controller), each on a task of its own, since a
    /// leader may hold a fetch for `replica.fetch.wait.max.ms`. It looks
    /// again as soon as an answer comes, and at least every
    /// `replica.fetch.backoff.ms`. The manager never has two requests in
    /// flight for one partition, so looking often sends nothing twice.
    async fn replicate(self: &Arc<Self>) {
        let mut stopping = self.stopping.subscribe();
        let mut in_flight = JoinSet::new();
        loop {
            let now = self.now();
            for message in self.with_replicas(|m, s| m.poll_outgoing(s, now)) {
                in_flight.spawn(Arc::clone(self).send(message));
            }
            // Reap the tasks that are done.
            while in_flight.try_join_next().is_some() {}
            tokio::select! {
                _ = stopping.wait_for(|stopping| *stopping) => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.config.replica_fetch_backoff) => {}
            }
        }
        // Nothing outlives the background work: the requests still in
        // flight are abandoned (the manager asks again after a restart).
        in_flight.abort_all();
        while in_flight.join_next().await.is_some() {}
    }

    /// Sends one message and feeds the answer back to the manager. A lost
    /// answer is simply not fed back: the manager asks again after its
    /// `retry_ms`.
    async fn send(self: Arc<Self>, message: Outgoing) {
        let result = match message {
            Outgoing::Fetch { to, request } => self.fetch_from(to, request).await,
            Outgoing::EpochQuery { to, request } => self.query_epochs(to, request).await,
            Outgoing::AlterPartition(request) => {
                match self.controller.alter_partition(&request).await {
                    Ok(response) => {
                        if response.error != ErrorCode::None {
                            info!(partition = %response.tp, error = %response.error, "ISR change refused");
                        }
                        let now = self.now();
                        let applied = self
                            .with_replicas(|m, s| m.on_alter_partition_response(s, response, now));
                        applied.map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        match result {
            Ok(()) => self.wake.notify_one(),
            // Fetched again after `replica.fetch.backoff.ms`.
            Err(e) => debug!(error = %e, "replication request failed"),
        }
    }

    /// A follower's fetch from leader `to`. An answer with an error for
    /// any partition waits for the next look (a backoff) rather than
    /// fetching again at once: the error does not pass until the
    /// controller's news arrives.
    async fn fetch_from(&self, to: BrokerId, request: ReplicaFetchRequest) -> Result<(), String> {
        let addr = self
            .address_of(to)
            .ok_or(format!("broker {to} is not alive"))?;
        let api = ReplicationApi::ReplicaFetch as u16;
        let response: ReplicaFetchResponse = self
            .call(&addr, api, &request)
            .await
            .map_err(|e| e.to_string())?;
        let errors: Vec<String> = response
            .partitions
            .iter()
            .filter(|p| p.error != ErrorCode::None)
            .map(|p| format!("{}: {}", p.tp, p.error))
            .collect();
        let taken = self.with_replicas(|m, s| m.on_fetch_response(s, to, response));
        if let Err(e) = taken {
            // A corrupt batch is refused and fetched again; nothing of it
            // was stored.
            warn!(leader = to, error = %e, "fetch answer refused");
            return Err(e.to_string());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join(", "))
        }
    }

    /// A new follower's epoch query to leader `to`.
    async fn query_epochs(&self, to: BrokerId, request: EpochQueryRequest) -> Result<(), String> {
        let addr = self
            .address_of(to)
            .ok_or(format!("broker {to} is not alive"))?;
        let api = ReplicationApi::OffsetsForLeaderEpoch as u16;
        let response: EpochQueryResponse = self
            .call(&addr, api, &request)
            .await
            .map_err(|e| e.to_string())?;
        self.with_replicas(|m, s| m.on_epoch_response(s, to, response))
            .map_err(|e| e.to_string())
    }

    /// The replicas' clock, every `tick_interval`: ISR shrinking, produce
    /// timeouts, and the high-watermark checkpoint when its interval is up,
    /// on a blocking thread (the checkpoint syncs a file).
    async fn tick(self: &Arc<Self>) {
        every(
            self.config.tick_interval,
            self.stopping.subscribe(),
            || async {
                let this = Arc::clone(self);
                let ticked = tokio::task::spawn_blocking(move || {
                    let now = this.now();
                    this.with_replicas(|m, s| m.tick(s, now))
                });
                match ticked.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!(error = %e, "writing the high-watermark checkpoint failed"),
                    Err(e) => warn!(error = %e, "the replicas' clock panicked"),
                }
                // The tick may have asked for an ISR change.
                self.wake.notify_one();
            },
        )
        .await;
    }
}

/// Each replica's role and leader epoch, to see what a change of state did.
fn roles(manager: &ReplicaManager<Token>) -> BTreeMap<TopicPartition, (bool, u32)> {
    manager
        .partitions()
        .iter()
        .map(|(tp, p)| (tp.clone(), (p.is_leader(), p.state().leader_epoch)))
        .collect()
}

/// Logs every replica whose role or leader epoch changed since `before`.
fn log_role_changes(
    before: &BTreeMap<TopicPartition, (bool, u32)>,
    manager: &ReplicaManager<Token>,
) {
    for (tp, partition) in manager.partitions() {
        let state = partition.state();
        if before.get(tp) != Some(&(partition.is_leader(), state.leader_epoch)) {
            info!(
                partition = %tp,
                leader = ?state.leader,
                epoch = state.leader_epoch,
                isr = ?state.isr,
                role = if partition.is_leader() { "leader" } else { "follower" },
                "partition state"
            );
        }
    }
}

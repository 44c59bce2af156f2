//! [`GroupBroker`]: chapter 4's broker with a group coordinator inside. It
//! answers the group APIs itself and passes every other request to the
//! chapter 4 [`Broker`], behind the same [`Server`]; each lifecycle call
//! does its own part and is passed on too. This is the thin tokio shell
//! around the sans-IO [`GroupCoordinator`] and [`OffsetStore`]: it holds a
//! join or sync on a one-shot channel until the coordinator says its answer
//! is ready, ticks the coordinator's clock, and cleans the offsets topic.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use ch02_segments::Record;
use ch03_partitions::{StoreError, TopicStore};
use ch04_network::broker::{BROKER_ID, error_code};
use ch04_network::protocol::{self, API_VERSION, RequestHeader};
use ch04_network::server::every;
use ch04_network::{Broker, BrokerConfig, ErrorCode, Handled, Server, ServerConfig, Service};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::coordinator::{
    CommitDecision, CoordinatorConfig, GroupCoordinator, Replies, Reply, ReplyTo,
};
use crate::offsets::{LoadReport, OFFSETS_TOPIC, OffsetStore, OffsetsConfig, commit_records};
use crate::protocol::{
    DescribeGroupsRequest, DescribeGroupsResponse, ErrorOnly, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupApi, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse,
};

/// How the group broker behaves: chapter 4's broker settings, and the
/// group side's.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// The broker inside (its retention timer).
    pub broker: BrokerConfig,
    /// The coordinator's limits.
    pub coordinator: CoordinatorConfig,
    /// The offsets topic.
    pub offsets: OffsetsConfig,
    /// How often the coordinator's clock ticks (session timeouts are
    /// noticed within this).
    pub tick_interval: Duration,
    /// How often the offsets topic is cleaned (5 minutes; Kafka's log
    /// cleaner looks for work every `log.cleaner.backoff.ms`, 15 s).
    pub clean_interval: Duration,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            broker: BrokerConfig::default(),
            coordinator: CoordinatorConfig::default(),
            offsets: OffsetsConfig::default(),
            tick_interval: Duration::from_millis(100),
            clean_interval: Duration::from_secs(300),
        }
    }
}

/// The coordinator's state, behind one lock: the sans-IO cores, and the
/// channels of the requests they hold.
struct Groups {
    coordinator: GroupCoordinator,
    offsets: OffsetStore,
    /// The offsets topic's partitions whose groups this broker
    /// coordinates: `None` for all of them (one broker, as in this
    /// chapter); from chapter 6 on, those it leads and has loaded.
    owned: Option<BTreeSet<u32>>,
    held: HashMap<ReplyTo, oneshot::Sender<Reply>>,
    next_reply: ReplyTo,
}

impl Groups {
    /// Whether this broker coordinates `group`.
    fn owns(&self, group: &str) -> bool {
        self.owned
            .as_ref()
            .is_none_or(|owned| owned.contains(&self.offsets.partition_for(group)))
    }

    /// Sends each ready answer to the request that waits for it. (One whose
    /// connection went away has nobody listening: that is fine.)
    fn deliver(&mut self, replies: Replies) {
        for (to, reply) in replies {
            if let Some(waiting) = self.held.remove(&to) {
                // The connection that held the request is gone.
                let _ = waiting.send(reply);
            }
        }
    }
}

/// The coordinator's state and its clock.
struct Shared {
    groups: Mutex<Groups>,
    /// The coordinator's clock starts here.
    started: Instant,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Groups> {
        self.groups.lock().unwrap()
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// A broker with a group coordinator.
pub struct GroupBroker {
    /// Chapter 4's broker, shared with its background work.
    broker: Arc<Broker>,
    shared: Shared,
    /// Raised once a shutdown has begun: no request is held any more, and
    /// the clock and the cleaner stop.
    stopping: watch::Sender<bool>,
    advertised: (String, u16),
    tick_interval: Duration,
    clean_interval: Duration,
}

/// Why a group broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Loading the committed offsets failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
}

/// Loads the committed offsets from `store`, binds `addr`, and returns a
/// server of a [`GroupBroker`], ready to run.
pub async fn bind(
    addr: SocketAddr,
    mut store: TopicStore,
    server: ServerConfig,
    groups: GroupConfig,
) -> Result<Server<GroupBroker>, BindError> {
    let (offsets, report) = OffsetStore::load(&mut store, groups.offsets.clone())?;
    if report.records > 0 || report.skipped > 0 {
        info!(
            records = report.records,
            skipped = report.skipped,
            "loaded committed offsets"
        );
    }
    let server = Server::bind_with(addr, server, |local| {
        GroupBroker::new(store, offsets, local, groups)
    })
    .await
    .map_err(|source| BindError::Listen { addr, source })?;
    Ok(server)
}

impl GroupBroker {
    /// Wraps a store whose offsets are loaded ([`OffsetStore::load`]),
    /// advertising `local`. [`bind`] does this behind a server; chapter 6
    /// calls it to wrap a group broker in a service of its own.
    pub fn new(
        store: TopicStore,
        offsets: OffsetStore,
        local: SocketAddr,
        config: GroupConfig,
    ) -> GroupBroker {
        let mut coordinator = GroupCoordinator::new(config.coordinator);
        for group in offsets.groups() {
            coordinator.ensure_group(group);
        }
        let shared = Shared {
            groups: Mutex::new(Groups {
                coordinator,
                offsets,
                owned: None,
                held: HashMap::new(),
                next_reply: 0,
            }),
            started: Instant::now(),
        };
        let host = local.ip().to_string();
        let mut broker = Broker::new(store, host.clone(), local.port(), config.broker);
        // Clients may read the offsets topic; only the coordinator writes it.
        broker.protect(OFFSETS_TOPIC);
        GroupBroker {
            broker: Arc::new(broker),
            shared,
            stopping: watch::Sender::new(false),
            advertised: (host, local.port()),
            tick_interval: config.tick_interval,
            clean_interval: config.clean_interval,
        }
    }

    /// Chapter 4's broker inside, and so the store (`broker().write()`),
    /// for a service that wraps this one (chapter 6's replicas live in the
    /// same store).
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    // ANCHOR: held
    /// Runs a held call (a join or sync) of `group`: registers a channel
    /// for its answer, lets the coordinator act (which may answer it, and
    /// others, at once), and waits. An error code instead if this broker
    /// does not coordinate the group (`NOT_COORDINATOR`) or is shutting
    /// down (`COORDINATOR_NOT_AVAILABLE`).
    async fn held(
        &self,
        group: &str,
        call: impl FnOnce(&mut GroupCoordinator, u64, ReplyTo) -> Replies,
    ) -> Result<Reply, ErrorCode> {
        let (tx, rx) = oneshot::channel();
        {
            let mut groups = self.shared.lock();
            // After a shutdown has begun nobody would answer: refuse now.
            // (Checked under the lock that `begin_shutdown` takes to drop
            // the held channels, so no call slips in between.)
            if *self.stopping.borrow() {
                return Err(ErrorCode::CoordinatorNotAvailable);
            }
            if !groups.owns(group) {
                return Err(ErrorCode::NotCoordinator);
            }
            let to = groups.next_reply;
            groups.next_reply += 1;
            groups.held.insert(to, tx);
            let now = self.shared.now();
            let replies = call(&mut groups.coordinator, now, to);
            groups.deliver(replies);
        }
        // An error: the broker is shutting down and dropped the channel.
        rx.await.map_err(|_| ErrorCode::CoordinatorNotAvailable)
    }
    // ANCHOR_END: held

    fn join(&self, request: JoinGroupRequest) -> impl Future<Output = JoinGroupResponse> + '_ {
        let member_id = request.member_id.clone();
        let group = request.group_id.clone();
        async move {
            match self
                .held(&group, |c, now, to| c.join(now, request, to))
                .await
            {
                Ok(Reply::Join(response)) => response,
                answer => JoinGroupResponse {
                    error: answer.err().unwrap_or(ErrorCode::CoordinatorNotAvailable),
                    generation_id: -1,
                    protocol_name: String::new(),
                    leader: String::new(),
                    member_id,
                    members: Vec::new(),
                },
            }
        }
    }

    async fn sync(&self, request: SyncGroupRequest) -> SyncGroupResponse {
        let group = request.group_id.clone();
        match self
            .held(&group, |c, now, to| c.sync(now, request, to))
            .await
        {
            Ok(Reply::Sync(response)) => response,
            answer => SyncGroupResponse {
                error: answer.err().unwrap_or(ErrorCode::CoordinatorNotAvailable),
                assignment: Vec::new(),
            },
        }
    }

    fn heartbeat(&self, request: HeartbeatRequest) -> ErrorOnly {
        let now = self.shared.now();
        let mut groups = self.shared.lock();
        if !groups.owns(&request.group_id) {
            return ErrorOnly {
                error: ErrorCode::NotCoordinator,
            };
        }
        let error = groups.coordinator.heartbeat(now, &request);
        ErrorOnly { error }
    }

    fn leave(&self, request: LeaveGroupRequest) -> ErrorOnly {
        let now = self.shared.now();
        let mut groups = self.shared.lock();
        if !groups.owns(&request.group_id) {
            return ErrorOnly {
                error: ErrorCode::NotCoordinator,
            };
        }
        let (error, replies) = groups.coordinator.leave(now, &request);
        groups.deliver(replies);
        ErrorOnly { error }
    }

    // ANCHOR: commit
    /// OffsetCommit: the coordinator decides what to accept (it knows the
    /// members, the store knows the partitions), and the accepted positions
    /// are appended to the offsets topic before the answer says so.
    fn commit(&self, request: OffsetCommitRequest) -> OffsetCommitResponse {
        let now = self.shared.now();
        let mut groups = self.shared.lock();
        if !groups.owns(&request.group_id) {
            return refused_commit(&request, ErrorCode::NotCoordinator);
        }
        let mut store = self.broker.write();
        let group_id = request.group_id.clone();
        let mut decision = groups
            .coordinator
            .commit(now, request, |topic| store.partition_count(topic).ok());
        if let Err(e) = groups
            .offsets
            .commit(&mut store, &group_id, &decision.accepted, now_ms())
        {
            warn!(error = %e, group = group_id, "storing commits failed");
            decision.storing_failed(error_code(&e));
        }
        decision.response
    }
    // ANCHOR_END: commit

    fn fetch_offsets(&self, request: OffsetFetchRequest) -> OffsetFetchResponse {
        let groups = self.shared.lock();
        if !groups.owns(&request.group_id) {
            return OffsetFetchResponse {
                error: ErrorCode::NotCoordinator,
                topics: Vec::new(),
            };
        }
        groups.offsets.fetch(&request)
    }

    fn describe(&self, request: DescribeGroupsRequest) -> DescribeGroupsResponse {
        let groups = self.shared.lock();
        let mut response = groups.coordinator.describe(&request.groups);
        for group in &mut response.groups {
            if !groups.owns(&group.group_id) {
                group.error = ErrorCode::NotCoordinator;
            }
        }
        response
    }

    // ANCHOR: dispatch
    async fn handle_group(&self, header: RequestHeader, api: GroupApi, body: &[u8]) -> BytesMut {
        fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
            protocol::decode_body(body)
        }
        fn ok<T: Serialize>(header: RequestHeader, body: &T) -> BytesMut {
            protocol::ok_response(header.correlation_id, body)
        }
        let response = match api {
            GroupApi::FindCoordinator => decode::<FindCoordinatorRequest>(body).map(|r| {
                let error = if r.key.is_empty() {
                    ErrorCode::InvalidGroupId
                } else {
                    ErrorCode::None
                };
                // One broker: it coordinates every group.
                ok(
                    header,
                    &FindCoordinatorResponse {
                        error,
                        node_id: BROKER_ID,
                        host: self.advertised.0.clone(),
                        port: self.advertised.1,
                    },
                )
            }),
            GroupApi::JoinGroup => match decode(body) {
                Ok(r) => Ok(ok(header, &self.join(r).await)),
                Err(e) => Err(e),
            },
            GroupApi::SyncGroup => match decode(body) {
                Ok(r) => Ok(ok(header, &self.sync(r).await)),
                Err(e) => Err(e),
            },
            GroupApi::Heartbeat => decode(body).map(|r| ok(header, &self.heartbeat(r))),
            GroupApi::LeaveGroup => decode(body).map(|r| ok(header, &self.leave(r))),
            GroupApi::OffsetCommit => decode(body).map(|r| ok(header, &self.commit(r))),
            GroupApi::OffsetFetch => decode(body).map(|r| ok(header, &self.fetch_offsets(r))),
            GroupApi::ListGroups => {
                let groups = self.shared.lock().coordinator.list();
                Ok(ok(header, &ListGroupsResponse { groups }))
            }
            GroupApi::DescribeGroups => decode(body).map(|r| ok(header, &self.describe(r))),
        };
        response.unwrap_or_else(|message| {
            warn!(api = ?api, correlation_id = header.correlation_id, %message, "undecodable request body");
            protocol::error_response(header.correlation_id, ErrorCode::InvalidRequest, message)
        })
    }
    // ANCHOR_END: dispatch
}

/// An OffsetCommit the coordinator has accepted (in part), whose records
/// the caller stores: chapter 6 appends them to its replicated offsets
/// topic and waits for every in-sync replica. See
/// [`GroupBroker::prepare_commit`].
pub struct PendingCommit {
    /// The offsets topic's partition the records go to.
    pub partition: u32,
    /// The records, to be appended as one batch.
    pub records: Vec<Record>,
    group: String,
    decision: CommitDecision,
    at: i64,
}

// Seams for a later chapter whose offsets topic is replicated, so that
// each group has one coordinator among several brokers: the leader of the
// group's offsets partition.
impl GroupBroker {
    /// From now on this broker coordinates only the groups of the offsets
    /// partitions loaded with [`GroupBroker::load_offsets`]; the others'
    /// requests get `NOT_COORDINATOR`.
    pub fn coordinate_loaded_partitions_only(&self) {
        self.shared.lock().owned = Some(BTreeSet::new());
    }

    /// Becomes the coordinator of the groups of offsets partition
    /// `partition` (of `partitions`): reads their commits from this
    /// broker's log of it, replacing what was loaded before.
    pub fn load_offsets(&self, partition: u32, partitions: u32) -> Result<LoadReport, StoreError> {
        let mut groups = self.shared.lock();
        let groups = &mut *groups;
        groups.offsets.set_partition_count(partitions);
        let offsets = &groups.offsets;
        let replies = groups
            .coordinator
            .unload(|group| offsets.partition_for(group) == partition);
        groups.deliver(replies);
        let report = groups
            .offsets
            .load_partition(&self.broker.read(), partition)?;
        let loaded: Vec<String> = groups
            .offsets
            .groups()
            .filter(|group| groups.offsets.partition_for(group) == partition)
            .cloned()
            .collect();
        for group in loaded {
            groups.coordinator.ensure_group(&group);
        }
        groups.owned.get_or_insert_default().insert(partition);
        Ok(report)
    }

    /// Stops coordinating the groups of offsets partition `partition`:
    /// forgets them and their commits, and answers their held joins and
    /// syncs with `NOT_COORDINATOR`.
    pub fn unload_offsets(&self, partition: u32) {
        let mut groups = self.shared.lock();
        let groups = &mut *groups;
        if let Some(owned) = &mut groups.owned {
            owned.remove(&partition);
        }
        groups.offsets.unload_partition(partition);
        let offsets = &groups.offsets;
        let replies = groups
            .coordinator
            .unload(|group| offsets.partition_for(group) == partition);
        groups.deliver(replies);
    }

    /// The offsets topic's partition holding `group`'s commits.
    pub fn offsets_partition(&self, group: &str) -> u32 {
        self.shared.lock().offsets.partition_for(group)
    }

    /// The first half of an OffsetCommit whose records the caller stores:
    /// the coordinator's decision (`partition_count` says how many
    /// partitions a topic has), and the records of what it accepted.
    /// `Err` is the answer to send at once: this broker does not
    /// coordinate the group, or nothing was accepted.
    pub fn prepare_commit(
        &self,
        request: OffsetCommitRequest,
        partition_count: impl Fn(&str) -> Option<u32>,
    ) -> Result<PendingCommit, OffsetCommitResponse> {
        let now = self.shared.now();
        let mut groups = self.shared.lock();
        if !groups.owns(&request.group_id) {
            return Err(refused_commit(&request, ErrorCode::NotCoordinator));
        }
        let group = request.group_id.clone();
        let decision = groups.coordinator.commit(now, request, partition_count);
        if decision.accepted.is_empty() {
            return Err(decision.response);
        }
        let at = now_ms();
        Ok(PendingCommit {
            partition: groups.offsets.partition_for(&group),
            records: commit_records(&group, &decision.accepted, at),
            group,
            decision,
            at,
        })
    }

    /// The second half: the records were stored (`Ok`), so the commits
    /// become the group's latest (if this broker still coordinates it),
    /// or storing failed with this code, which the answer gives for each
    /// accepted position.
    pub fn finish_commit(
        &self,
        pending: PendingCommit,
        stored: Result<(), ErrorCode>,
    ) -> OffsetCommitResponse {
        let mut decision = pending.decision;
        match stored {
            Ok(()) => {
                let mut groups = self.shared.lock();
                if groups.owns(&pending.group) {
                    groups
                        .offsets
                        .stored(&pending.group, &decision.accepted, pending.at);
                }
            }
            Err(code) => decision.storing_failed(code),
        }
        decision.response
    }
}

/// An OffsetCommit's answer with `code` for every position it named.
fn refused_commit(request: &OffsetCommitRequest, code: ErrorCode) -> OffsetCommitResponse {
    let topics = request
        .topics
        .iter()
        .map(|(topic, partitions)| {
            let codes = partitions.iter().map(|p| (p.partition, code)).collect();
            (topic.clone(), codes)
        })
        .collect();
    OffsetCommitResponse { topics }
}

// ANCHOR: service
impl Service for GroupBroker {
    type Error = StoreError;

    async fn handle(&self, header: RequestHeader, body: BytesMut) -> Handled {
        // Not a group API: chapter 4's broker's.
        let Some(api) = GroupApi::from_u16(header.api_key) else {
            return self.broker.handle(header, body).await.into();
        };
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
        Handled::Now(self.handle_group(header, api, &body).await)
    }

    /// The broker's retention, the coordinator's clock and the cleaner,
    /// side by side.
    async fn background(self: Arc<Self>) {
        tokio::join!(
            Arc::clone(&self.broker).background(),
            self.tick(),
            self.clean(),
        );
    }

    fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
        // Dropping the channels answers every held join and sync with
        // COORDINATOR_NOT_AVAILABLE: the clients will find the group again
        // when the broker is back.
        self.shared.lock().held.clear();
        self.broker.begin_shutdown();
    }

    fn shutdown(self: Arc<Self>) -> Result<(), StoreError> {
        // Let go of this layer: if it was the last holder, the broker is
        // now alone and closes its store (or syncs it, if it is not).
        let broker = Arc::clone(&self.broker);
        drop(self);
        broker.shutdown()
    }
}
// ANCHOR_END: service

impl GroupBroker {
    /// The coordinator's clock: every `tick_interval`, let time pass.
    async fn tick(&self) {
        every(self.tick_interval, self.stopping.subscribe(), || async {
            let now = self.shared.now();
            let mut groups = self.shared.lock();
            let replies = groups.coordinator.tick(now);
            groups.deliver(replies);
        })
        .await;
    }

    /// Every `clean_interval`, cleans the offsets topic.
    async fn clean(self: &Arc<Self>) {
        every(self.clean_interval, self.stopping.subscribe(), || async {
            // Cleaning rewrites and deletes files: a blocking thread's work.
            let this = Arc::clone(self);
            let cleaned = tokio::task::spawn_blocking(move || {
                let groups = this.shared.lock();
                // A replicated offsets topic (chapter 6) is its replicas'
                // log: only what the leader appends through replication
                // may go in it. Retention bounds it instead.
                if groups.owned.is_some() {
                    return Ok(0);
                }
                groups.offsets.clean(&mut this.broker.write())
            });
            match cleaned.await {
                Ok(Ok(0)) => {}
                Ok(Ok(deleted)) => info!(deleted, "cleaned the offsets topic"),
                Ok(Err(e)) => warn!(error = %e, "cleaning the offsets topic failed"),
                Err(e) => warn!(error = %e, "cleaning the offsets topic panicked"),
            }
        })
        .await;
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

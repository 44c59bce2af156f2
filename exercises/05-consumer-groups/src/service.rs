//! [`GroupBroker`]: chapter 4's broker with a group coordinator inside. It
//! answers the group APIs itself and passes every other request to the
//! chapter 4 [`Broker`], behind the same [`Server`]. This is the thin tokio
//! shell around the sans-IO [`GroupCoordinator`] and [`OffsetStore`]: it
//! holds a join or sync on a one-shot channel until the coordinator says
//! its answer is ready, and ticks the coordinator's clock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use ch03_partitions::{StoreError, TopicStore};
use ch04_network::broker::{BROKER_ID, error_code};
use ch04_network::protocol::{self, API_VERSION, RequestHeader};
use ch04_network::{Broker, ErrorCode, Server, ServerConfig, Service};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::coordinator::{CoordinatorConfig, GroupCoordinator, Replies, Reply, ReplyTo};
use crate::offsets::{Commit, OFFSETS_TOPIC, OffsetStore, OffsetsConfig};
use crate::protocol::{
    DescribeGroupsRequest, ErrorOnly, FetchedOffset, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupApi, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse,
};

/// Kafka's `offset.metadata.max.bytes`.
pub const MAX_METADATA_BYTES: usize = 4096;

/// How the group side of the broker behaves.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// The coordinator's limits.
    pub coordinator: CoordinatorConfig,
    /// The offsets topic.
    pub offsets: OffsetsConfig,
    /// How often the coordinator's clock ticks (session timeouts are
    /// noticed within this).
    pub tick_interval: Duration,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            coordinator: CoordinatorConfig::default(),
            offsets: OffsetsConfig::default(),
            tick_interval: Duration::from_millis(100),
        }
    }
}

/// The coordinator's state, behind one lock: the sans-IO cores, and the
/// channels of the requests they hold.
struct Groups {
    coordinator: GroupCoordinator,
    offsets: OffsetStore,
    held: HashMap<ReplyTo, oneshot::Sender<Reply>>,
    next_reply: ReplyTo,
}

impl Groups {
    /// Sends each ready answer to the request that waits for it. (One whose
    /// connection went away has nobody listening: that is fine.)
    fn deliver(&mut self, replies: Replies) {
        for (to, reply) in replies {
            if let Some(waiting) = self.held.remove(&to) {
                let _ = waiting.send(reply);
            }
        }
    }
}

/// What the ticker task and the request handlers share.
struct Shared {
    groups: Mutex<Groups>,
    /// The coordinator's clock starts here.
    started: Instant,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Groups> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// A broker with a group coordinator.
pub struct GroupBroker {
    broker: Broker,
    shared: Arc<Shared>,
    ticker: JoinHandle<()>,
    advertised: (String, u16),
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
    /// Wraps a store whose offsets are loaded; starts the coordinator's
    /// clock. Must run inside a tokio runtime.
    fn new(
        store: TopicStore,
        offsets: OffsetStore,
        local: SocketAddr,
        config: GroupConfig,
    ) -> GroupBroker {
        let mut coordinator = GroupCoordinator::new(config.coordinator);
        for group in offsets.groups() {
            coordinator.ensure_group(group);
        }
        let shared = Arc::new(Shared {
            groups: Mutex::new(Groups {
                coordinator,
                offsets,
                held: HashMap::new(),
                next_reply: 0,
            }),
            started: Instant::now(),
        });
        let ticker = tokio::spawn(tick(shared.clone(), config.tick_interval));
        let host = local.ip().to_string();
        let mut broker = Broker::new(store, host.clone(), local.port());
        // Clients may read the offsets topic; only the coordinator writes it.
        broker.protect(OFFSETS_TOPIC);
        GroupBroker {
            broker,
            shared,
            ticker,
            advertised: (host, local.port()),
        }
    }

    /// Runs a held call (a join or sync): registers a channel for its
    /// answer, lets the coordinator act (which may answer it, and others,
    /// at once), and waits.
    async fn held(
        &self,
        call: impl FnOnce(&mut GroupCoordinator, u64, ReplyTo) -> Replies,
    ) -> Option<Reply> {
        let (tx, rx) = oneshot::channel();
        {
            let mut groups = self.shared.lock();
            let to = groups.next_reply;
            groups.next_reply += 1;
            groups.held.insert(to, tx);
            let now = self.shared.now();
            let replies = call(&mut groups.coordinator, now, to);
            groups.deliver(replies);
        }
        // `None`: the broker is shutting down and dropped the channel.
        rx.await.ok()
    }

    fn join(&self, request: JoinGroupRequest) -> impl Future<Output = JoinGroupResponse> + '_ {
        let member_id = request.member_id.clone();
        async move {
            match self.held(|c, now, to| c.join(now, request, to)).await {
                Some(Reply::Join(response)) => response,
                _ => JoinGroupResponse {
                    error: ErrorCode::CoordinatorNotAvailable,
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
        match self.held(|c, now, to| c.sync(now, request, to)).await {
            Some(Reply::Sync(response)) => response,
            _ => SyncGroupResponse {
                error: ErrorCode::CoordinatorNotAvailable,
                assignment: Vec::new(),
            },
        }
    }

    fn heartbeat(&self, request: HeartbeatRequest) -> ErrorOnly {
        let now = self.shared.now();
        let error = self.shared.lock().coordinator.heartbeat(now, &request);
        ErrorOnly { error }
    }

    fn leave(&self, request: LeaveGroupRequest) -> ErrorOnly {
        let now = self.shared.now();
        let mut groups = self.shared.lock();
        let (error, replies) = groups.coordinator.leave(now, &request);
        groups.deliver(replies);
        ErrorOnly { error }
    }

    /// OffsetCommit: the coordinator checks the member and generation, the
    /// store checks each partition exists, and the valid ones are appended
    /// to the offsets topic before the answer says they are stored.
    fn commit(&self, request: OffsetCommitRequest) -> OffsetCommitResponse {
        let now = self.shared.now();
        let mut groups = self.shared.lock();
        let member_error = groups.coordinator.check_commit(
            now,
            &request.group_id,
            request.generation_id,
            &request.member_id,
        );
        let mut results = Vec::new();
        let mut commits: Vec<Commit> = Vec::new();
        let mut store = self.broker.write();
        for (topic, partitions) in request.topics {
            let count = store.partition_count(&topic).ok();
            let mut codes = Vec::new();
            for p in partitions {
                let error = if member_error != ErrorCode::None {
                    member_error
                } else if count.is_none_or(|n| p.partition >= n) {
                    ErrorCode::UnknownTopicOrPartition
                } else if p.metadata.len() > MAX_METADATA_BYTES {
                    ErrorCode::OffsetMetadataTooLarge
                } else {
                    commits.push((topic.clone(), p.partition, p.offset, p.metadata));
                    ErrorCode::None
                };
                codes.push((p.partition, error));
            }
            results.push((topic, codes));
        }
        if let Err(e) = groups
            .offsets
            .commit(&mut store, &request.group_id, &commits, now_ms())
        {
            warn!(error = %e, group = request.group_id, "storing commits failed");
            let code = error_code(&e);
            for (_, codes) in &mut results {
                for (_, error) in codes.iter_mut().filter(|(_, e)| *e == ErrorCode::None) {
                    *error = code;
                }
            }
        }
        if !commits.is_empty() {
            groups.coordinator.ensure_group(&request.group_id);
        }
        OffsetCommitResponse { topics: results }
    }

    fn fetch_offsets(&self, request: OffsetFetchRequest) -> OffsetFetchResponse {
        if request.group_id.is_empty() {
            return OffsetFetchResponse {
                error: ErrorCode::InvalidGroupId,
                topics: Vec::new(),
            };
        }
        let groups = self.shared.lock();
        let offsets = &groups.offsets;
        let fetched = |topic: &str, partition: u32| {
            let committed = offsets.get(&request.group_id, topic, partition);
            FetchedOffset {
                partition,
                offset: committed.map(|c| c.offset),
                metadata: committed.map(|c| c.metadata.clone()).unwrap_or_default(),
            }
        };
        let topics = match request.topics {
            Some(topics) => topics
                .into_iter()
                .map(|(topic, ps)| {
                    let found = ps.into_iter().map(|p| fetched(&topic, p)).collect();
                    (topic, found)
                })
                .collect(),
            None => {
                let mut by_topic: Vec<(String, Vec<FetchedOffset>)> = Vec::new();
                for tp in offsets
                    .group(&request.group_id)
                    .into_iter()
                    .flat_map(|g| g.keys())
                {
                    let entry = fetched(&tp.topic, tp.partition);
                    match by_topic.last_mut() {
                        Some((t, list)) if *t == tp.topic => list.push(entry),
                        _ => by_topic.push((tp.topic.clone(), vec![entry])),
                    }
                }
                by_topic
            }
        };
        OffsetFetchResponse {
            error: ErrorCode::None,
            topics,
        }
    }

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
            GroupApi::DescribeGroups => decode::<DescribeGroupsRequest>(body)
                .map(|r| ok(header, &self.shared.lock().coordinator.describe(&r.groups))),
        };
        response.unwrap_or_else(|message| {
            warn!(api = ?api, correlation_id = header.correlation_id, %message, "undecodable request body");
            protocol::error_response(header.correlation_id, ErrorCode::InvalidRequest, message)
        })
    }
}

impl Service for GroupBroker {
    async fn handle(&self, header: RequestHeader, body: BytesMut) -> Option<BytesMut> {
        let Some(api) = GroupApi::from_u16(header.api_key) else {
            return self.broker.handle(header, body).await;
        };
        if header.api_version != API_VERSION {
            let message = format!(
                "{api:?} version {} (this broker speaks 0)",
                header.api_version
            );
            return Some(protocol::error_response(
                header.correlation_id,
                ErrorCode::UnsupportedVersion,
                message,
            ));
        }
        Some(self.handle_group(header, api, &body).await)
    }

    fn housekeeping(&self) {
        Service::housekeeping(&self.broker);
        let groups = self.shared.lock();
        match groups.offsets.clean(&mut self.broker.write()) {
            Ok(0) => {}
            Ok(deleted) => info!(deleted, "cleaned the offsets topic"),
            Err(e) => warn!(error = %e, "cleaning the offsets topic failed"),
        }
    }

    fn begin_shutdown(&self) {
        self.ticker.abort();
        // Dropping the channels answers every held join and sync with
        // COORDINATOR_NOT_AVAILABLE: the clients will find the group again
        // when the broker is back.
        self.shared.lock().held.clear();
    }

    fn shutdown(self: Arc<Self>) -> Result<(), StoreError> {
        match Arc::try_unwrap(self) {
            Ok(service) => Service::shutdown(Arc::new(service.broker)),
            Err(service) => service.broker.sync(),
        }
    }
}

/// The coordinator's clock: every `interval`, let time pass.
async fn tick(shared: Arc<Shared>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    loop {
        ticks.tick().await;
        let now = shared.now();
        let mut groups = shared.lock();
        let replies = groups.coordinator.tick(now);
        groups.deliver(replies);
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

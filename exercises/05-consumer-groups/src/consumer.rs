//! [`GroupConsumer`]: a consumer in a group. It subscribes to topics
//! instead of assigning itself partitions; the group decides who reads
//! what. Underneath it is chapter 4's [`Consumer`] (fetching, positions,
//! `auto.offset.reset`); this module adds membership (join, sync,
//! heartbeats in a background task, leave), the leader's assignment, and
//! committed offsets.
//!
//! **Delivery is at least once.** A position is committed after `poll`
//! has returned the records before it: automatically at the next `poll`
//! once `auto.commit.interval.ms` has passed (or on a rebalance or
//! `close`), or when the application calls a commit. A consumer that dies
//! between processing records and the next commit leaves a position
//! behind them, and whoever takes its partitions reads them again.
//! Records are never skipped: a position is never committed past a record
//! `poll` has not returned.

use ch03_partitions::TopicPartition;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ch04_network::{
    Client, ClientError, Consumer, ConsumerConfig, ConsumerRecord, ErrorCode, SeekTo,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::debug;

use crate::assignor::{
    Assignor, CooperativeStickyAssignor, Members, PartitionCounts, RangeAssignor,
    RoundRobinAssignor, StickyAssignor,
};
use crate::protocol::{
    Assignment, CONSUMER_PROTOCOL, CommitPartition, ErrorOnly, GroupApi, HeartbeatRequest,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, Subscription, SyncGroupRequest,
    SyncGroupResponse, decode_metadata, encode_metadata,
};

/// How a group consumer behaves, by Kafka's names.
pub struct GroupConsumerConfig {
    /// `group.id`.
    pub group_id: String,
    /// `client.id`: names the member in `kfs groups describe`.
    pub client_id: String,
    /// `session.timeout.ms` (45 s): the coordinator drops a member it has
    /// not heard from for this long.
    pub session_timeout: Duration,
    /// `heartbeat.interval.ms` (3 s): how often the background task says
    /// "alive". Well under the session timeout, so one lost heartbeat is
    /// not fatal.
    pub heartbeat_interval: Duration,
    /// `max.poll.interval.ms` (5 min): a consumer that does not call `poll`
    /// for this long is stuck; it leaves the group so others take over.
    /// Also the rebalance timeout it asks the coordinator for.
    pub max_poll_interval: Duration,
    /// `enable.auto.commit` (true).
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms` (5 s).
    pub auto_commit_interval: Duration,
    /// `partition.assignment.strategy`: the assignors this member offers,
    /// preferred first. The member rebalances cooperatively (KIP-429) only
    /// if every one of them is cooperative, as in Kafka: the group may
    /// choose any of them, and an eager assignor's plan is only safe if
    /// everyone gave up everything first.
    pub assignors: Vec<Arc<dyn Assignor>>,
    /// Fetching: chapter 4's settings (`auto.offset.reset`, fetch sizes and
    /// waits, `request.timeout.ms`).
    pub consumer: ConsumerConfig,
}

impl GroupConsumerConfig {
    /// Kafka's defaults, for group `group_id`.
    pub fn new(group_id: impl Into<String>) -> GroupConsumerConfig {
        GroupConsumerConfig {
            group_id: group_id.into(),
            client_id: "consumer".into(),
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(3),
            max_poll_interval: Duration::from_secs(300),
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            assignors: vec![
                Arc::new(RangeAssignor),
                Arc::new(RoundRobinAssignor),
                Arc::new(StickyAssignor),
                Arc::new(CooperativeStickyAssignor),
            ],
            consumer: ConsumerConfig::default(),
        }
    }
}

/// Told when the group moves partitions (Kafka's
/// `ConsumerRebalanceListener`). Both run inside `poll`.
pub trait RebalanceListener: Send {
    /// Before the consumer gives up these partitions: the last chance to
    /// commit what was processed (with auto-commit, it has been already).
    /// Eager rebalancing revokes every partition; cooperative, only those
    /// that move to another member.
    fn on_partitions_revoked(&mut self, partitions: &[TopicPartition]) {
        let _ = partitions;
    }

    /// After the consumer got these partitions, before it reads them
    /// (cooperative rebalancing: only the new ones).
    fn on_partitions_assigned(&mut self, partitions: &[TopicPartition]) {
        let _ = partitions;
    }
}

/// This member's place in the group, shared with the heartbeat task.
#[derive(Debug, Clone, Default)]
struct Membership {
    member_id: String,
    /// The generation it last synced, which its commits carry; `None`
    /// when out of the group.
    generation: Option<i32>,
    /// A join is under way: no heartbeats (the coordinator holds the join
    /// instead), but commits still carry the generation that is ending.
    joining: bool,
}

/// What the heartbeat task and `poll` share.
struct Shared {
    membership: Mutex<Membership>,
    /// Set by the heartbeat task when the group wants this member to
    /// rejoin (a rebalance, or it was dropped).
    rejoin: AtomicBool,
    /// When `poll` was last called, for `max.poll.interval.ms`.
    last_poll: Mutex<Instant>,
}

impl Shared {
    fn membership(&self) -> Membership {
        self.membership
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_membership(&self, membership: Membership) {
        *self.membership.lock().unwrap_or_else(|p| p.into_inner()) = membership;
    }
}

/// Topic-partitions, as `(topic, partition)`.
type Partitions = Vec<TopicPartition>;

/// A consumer in a group.
pub struct GroupConsumer {
    /// Joins the group; holds the group connection.
    joiner: Joiner,
    consumer: Consumer,
    auto_commit: Option<Duration>,
    /// Every assignor is cooperative: rebalances keep what they can.
    cooperative: bool,
    /// A rebalance under way: the join and sync, in a task so that a
    /// cooperative member goes on reading meanwhile.
    rebalancing: Option<JoinHandle<Result<Partitions, ClientError>>>,
    shared: Arc<Shared>,
    heartbeat: JoinHandle<()>,
    /// (In a mutex only so that the consumer is `Sync`: `poll` has it alone.)
    listener: Mutex<Option<Box<dyn RebalanceListener>>>,
    last_commit: Instant,
    /// Positions already committed, so an idle consumer does not commit
    /// the same positions again and again.
    committed: BTreeMap<TopicPartition, u64>,
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        // Without `close`, this is a crash as far as the group knows: no
        // more heartbeats, and the session timeout removes the member.
        self.heartbeat.abort();
        if let Some(task) = &self.rebalancing {
            task.abort();
        }
    }
}

impl GroupConsumer {
    /// Connects to the broker at `bootstrap` (`host:port`). Call
    /// [`GroupConsumer::subscribe`], then `poll`.
    pub async fn connect(
        bootstrap: &str,
        config: GroupConsumerConfig,
    ) -> Result<GroupConsumer, ClientError> {
        // A JoinGroup is held until the whole group has joined, up to the
        // rebalance timeout: the group connection must wait that long.
        let wait = config
            .consumer
            .request_timeout
            .max(config.max_poll_interval + Duration::from_secs(5));
        let client = Arc::new(Client::connect(bootstrap, wait).await?);
        let consumer = Consumer::connect(bootstrap, config.consumer.clone()).await?;
        let shared = Arc::new(Shared {
            membership: Mutex::new(Membership::default()),
            rejoin: AtomicBool::new(true),
            last_poll: Mutex::new(Instant::now()),
        });
        let heartbeat = tokio::spawn(heartbeat(
            client.clone(),
            shared.clone(),
            config.group_id.clone(),
            config.heartbeat_interval,
            config.max_poll_interval,
        ));
        let cooperative = config.assignors.iter().all(|a| a.cooperative());
        Ok(GroupConsumer {
            joiner: Joiner {
                client,
                shared: shared.clone(),
                group_id: config.group_id,
                client_id: config.client_id,
                session_timeout: config.session_timeout,
                max_poll_interval: config.max_poll_interval,
                assignors: config.assignors.into(),
                topics: Vec::new(),
            },
            consumer,
            auto_commit: config
                .enable_auto_commit
                .then_some(config.auto_commit_interval),
            cooperative,
            rebalancing: None,
            shared,
            heartbeat,
            listener: Mutex::new(None),
            last_commit: Instant::now(),
            committed: BTreeMap::new(),
        })
    }

    /// Reads these topics as a member of the group, from the next `poll`.
    pub fn subscribe(&mut self, topics: impl IntoIterator<Item = impl Into<String>>) {
        self.joiner.topics = topics.into_iter().map(Into::into).collect();
        self.joiner.topics.sort();
        self.shared.rejoin.store(true, Ordering::SeqCst);
    }

    /// Tells `listener` about partitions revoked and assigned.
    pub fn set_listener(&mut self, listener: impl RebalanceListener + 'static) {
        *self.listener.get_mut().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(listener));
    }

    /// The partitions this member reads now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.consumer.assignment()
    }

    /// The next offset `poll` returns for an assigned partition, if known.
    pub fn position(&self, tp: &TopicPartition) -> Option<u64> {
        self.consumer.position(tp)
    }

    /// This member's id and generation, once it is in the group.
    pub fn generation(&self) -> Option<(String, i32)> {
        let m = self.shared.membership();
        m.generation.map(|g| (m.member_id, g))
    }

    /// Returns the records of this member's partitions that are there,
    /// waiting up to `timeout`. Takes part in a rebalance when the group
    /// has one, and commits automatically when the interval has passed.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, ClientError> {
        *self
            .shared
            .last_poll
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Instant::now();
        if self
            .auto_commit
            .is_some_and(|every| self.last_commit.elapsed() >= every)
        {
            self.auto_commit().await?;
        }
        if self.rebalancing.is_none() && self.shared.rejoin.swap(false, Ordering::SeqCst) {
            self.start_rebalance().await;
        }
        if let Some(task) = &mut self.rebalancing {
            // Eager: nothing to read until the rebalance is over.
            // Cooperative: read what we own meanwhile, if anything.
            let wait = !self.cooperative || self.consumer.assignment().is_empty();
            if wait || task.is_finished() {
                let assigned = task.await.map_err(|e| ClientError::Protocol(e.to_string()));
                self.rebalancing = None;
                match assigned.and_then(|a| a) {
                    Ok(assigned) => self.finish_rebalance(assigned).await?,
                    Err(e) => {
                        // Not in a generation yet: the next poll tries again.
                        self.shared.rejoin.store(true, Ordering::SeqCst);
                        return Err(e);
                    }
                }
            }
        }
        self.consumer.poll(timeout).await
    }

    /// Starts taking part in a rebalance. Eager: first give up every
    /// partition, committing what was read. Cooperative: keep them all for
    /// now. Then the join and sync run in a task. A member the group has
    /// dropped has lost its partitions to others already: it gives them
    /// up without committing (Kafka's `onPartitionsLost`).
    async fn start_rebalance(&mut self) {
        let dropped = self.shared.membership().generation.is_none();
        let mut owned = self.consumer.assignment();
        if !self.cooperative || dropped {
            self.revoke(&owned, !dropped).await;
            self.consumer.assign([]);
            // The subscription says what the member owned: for an eager
            // sticky assignor, a hint of what to keep; for a cooperative
            // one, a promise, which a dropped member can no longer make.
            if self.cooperative {
                owned.clear();
            }
        }
        let joiner = self.joiner.clone();
        self.rebalancing = Some(tokio::spawn(async move { joiner.rebalance(owned).await }));
    }

    /// Takes the new assignment. Partitions that went elsewhere are
    /// revoked (only in a cooperative rebalance are there any left to
    /// revoke), and then this member rejoins at once, so that their new
    /// owners get them in the next rebalance. New partitions start from
    /// the group's committed offsets; kept ones keep their positions.
    async fn finish_rebalance(&mut self, assigned: Vec<TopicPartition>) -> Result<(), ClientError> {
        let owned = self.consumer.assignment();
        let revoked: Vec<_> = owned
            .iter()
            .filter(|tp| !assigned.contains(tp))
            .cloned()
            .collect();
        let added: Vec<_> = assigned
            .iter()
            .filter(|tp| !owned.contains(tp))
            .cloned()
            .collect();
        if !revoked.is_empty() {
            self.revoke(&revoked, true).await;
            self.shared.rejoin.store(true, Ordering::SeqCst);
        }
        self.consumer.assign(assigned);
        self.resume_from_committed(&added).await?;
        if let Some(listener) = self.listener.get_mut().unwrap_or_else(|p| p.into_inner()) {
            listener.on_partitions_assigned(&added);
        }
        Ok(())
    }

    /// Gives partitions up: commits their positions first (with
    /// auto-commit, and `commit`), then tells the listener.
    async fn revoke(&mut self, revoked: &[TopicPartition], commit: bool) {
        if revoked.is_empty() {
            return;
        }
        if commit && self.auto_commit.is_some() {
            // Best effort: if the generation is already over, the
            // coordinator refuses, and the next owner re-reads.
            if let Err(e) = self.commit_positions().await {
                debug!(error = %e, "commit before revoking failed");
            }
        }
        if let Some(listener) = self.listener.get_mut().unwrap_or_else(|p| p.into_inner()) {
            listener.on_partitions_revoked(revoked);
        }
        self.committed.retain(|tp, _| !revoked.contains(tp));
    }

    /// Seeks each new partition to the group's committed offset; those with
    /// none start where `auto.offset.reset` says.
    async fn resume_from_committed(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<(), ClientError> {
        if partitions.is_empty() {
            return Ok(());
        }
        let mut by_topic: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for tp in partitions {
            by_topic
                .entry(tp.topic.clone())
                .or_default()
                .push(tp.partition);
        }
        let request = OffsetFetchRequest {
            group_id: self.joiner.group_id.clone(),
            topics: Some(by_topic.into_iter().collect()),
        };
        let fetched: OffsetFetchResponse = self
            .joiner
            .client
            .call(GroupApi::OffsetFetch, &request)
            .await?;
        if fetched.error != ErrorCode::None {
            return Err(broker_error(fetched.error, "OffsetFetch"));
        }
        for (topic, offsets) in fetched.topics {
            for o in offsets {
                if let Some(offset) = o.offset {
                    let tp = TopicPartition::new(topic.clone(), o.partition);
                    self.consumer.seek(&tp, SeekTo::Offset(offset)).await?;
                    self.committed.insert(tp, offset);
                }
            }
        }
        Ok(())
    }

    /// Commits the position of every assigned partition (the offset after
    /// the last record `poll` returned), and waits for the answer.
    pub async fn commit_sync(&mut self) -> Result<(), ClientError> {
        self.commit_positions().await
    }

    /// Commits these offsets (each the next offset to read), and waits.
    pub async fn commit_offsets_sync(
        &mut self,
        offsets: &[(TopicPartition, u64)],
    ) -> Result<(), ClientError> {
        let request = self.commit_request(offsets);
        let response: OffsetCommitResponse = self
            .joiner
            .client
            .call(GroupApi::OffsetCommit, &request)
            .await?;
        check_commit(response)?;
        for (tp, offset) in offsets {
            self.committed.insert(tp.clone(), *offset);
        }
        Ok(())
    }

    /// Commits the current positions without waiting: `callback` gets the
    /// outcome. (Kafka's `commitAsync`: faster, but a failed commit is not
    /// retried, since a later one may already have succeeded.)
    pub fn commit_async(
        &mut self,
        callback: impl FnOnce(Result<(), ClientError>) + Send + 'static,
    ) {
        let offsets = self.positions();
        let request = self.commit_request(&offsets);
        for (tp, offset) in offsets {
            self.committed.insert(tp, offset);
        }
        let client = self.joiner.client.clone();
        tokio::spawn(async move {
            let result = match client
                .call::<_, OffsetCommitResponse>(GroupApi::OffsetCommit, &request)
                .await
            {
                Ok(response) => check_commit(response),
                Err(e) => Err(e),
            };
            callback(result);
        });
    }

    /// Leaves the group (after a last commit, with auto-commit) so the
    /// others take over its partitions at once, not after the session
    /// timeout. A cooperative member may close mid-rebalance, when its
    /// generation can no longer commit: as in Kafka, that last commit is
    /// then skipped, and the next owner re-reads.
    pub async fn close(mut self) -> Result<(), ClientError> {
        let committed = if self.auto_commit.is_some() {
            self.auto_commit().await
        } else {
            Ok(())
        };
        self.heartbeat.abort();
        if let Some(task) = self.rebalancing.take() {
            task.abort();
        }
        let membership = self.shared.membership();
        if !membership.member_id.is_empty() {
            let request = LeaveGroupRequest {
                group_id: self.joiner.group_id.clone(),
                member_id: membership.member_id,
            };
            let _: ErrorOnly = self
                .joiner
                .client
                .call(GroupApi::LeaveGroup, &request)
                .await?;
        }
        committed
    }

    /// Every assigned partition's position that moved since the last
    /// commit, with its offset.
    fn positions(&self) -> Vec<(TopicPartition, u64)> {
        self.consumer
            .assignment()
            .into_iter()
            .filter_map(|tp| {
                let offset = self.consumer.position(&tp)?;
                (self.committed.get(&tp) != Some(&offset)).then_some((tp, offset))
            })
            .collect()
    }

    /// The automatic commit in `poll` and `close`. A commit the group
    /// refuses because it is rebalancing (or has moved on) is skipped, not
    /// an error: the positions are committed later, or re-read by the next
    /// owner.
    async fn auto_commit(&mut self) -> Result<(), ClientError> {
        match self.commit_positions().await {
            Err(e)
                if matches!(
                    e.code(),
                    Some(
                        ErrorCode::RebalanceInProgress
                            | ErrorCode::IllegalGeneration
                            | ErrorCode::UnknownMemberId
                    )
                ) =>
            {
                debug!(error = %e, "automatic commit skipped");
                Ok(())
            }
            other => other,
        }
    }

    async fn commit_positions(&mut self) -> Result<(), ClientError> {
        self.last_commit = Instant::now();
        let offsets = self.positions();
        if offsets.is_empty() {
            return Ok(());
        }
        self.commit_offsets_sync(&offsets).await
    }

    fn commit_request(&self, offsets: &[(TopicPartition, u64)]) -> OffsetCommitRequest {
        let membership = self.shared.membership();
        let mut topics: BTreeMap<String, Vec<CommitPartition>> = BTreeMap::new();
        for (tp, offset) in offsets {
            topics
                .entry(tp.topic.clone())
                .or_default()
                .push(CommitPartition {
                    partition: tp.partition,
                    offset: *offset,
                    metadata: String::new(),
                });
        }
        OffsetCommitRequest {
            group_id: self.joiner.group_id.clone(),
            generation_id: membership.generation.unwrap_or(-1),
            member_id: membership.member_id,
            topics: topics.into_iter().collect(),
        }
    }
}

/// What a rebalance needs, cloned into the task that runs it.
#[derive(Clone)]
struct Joiner {
    /// Group requests go here (the coordinator: the bootstrap broker, as
    /// long as there is one broker).
    client: Arc<Client>,
    shared: Arc<Shared>,
    group_id: String,
    client_id: String,
    session_timeout: Duration,
    max_poll_interval: Duration,
    assignors: Arc<[Arc<dyn Assignor>]>,
    topics: Vec<String>,
}

impl Joiner {
    /// Joins and syncs until this member is in a generation; returns its
    /// partitions. `owned` goes in the subscription, for sticky assignors.
    async fn rebalance(
        &self,
        owned: Vec<TopicPartition>,
    ) -> Result<Vec<TopicPartition>, ClientError> {
        let assignment = loop {
            let joined = self.join(&owned).await?;
            let assignments = if joined.leader == joined.member_id {
                self.assign(&joined).await?
            } else {
                Vec::new()
            };
            let request = SyncGroupRequest {
                group_id: self.group_id.clone(),
                generation_id: joined.generation_id,
                member_id: joined.member_id.clone(),
                assignments,
            };
            let synced: SyncGroupResponse = self.client.call(GroupApi::SyncGroup, &request).await?;
            debug!(group = self.group_id, error = %synced.error, generation = joined.generation_id, "synced");
            match synced.error {
                ErrorCode::None => {
                    self.shared.set_membership(Membership {
                        member_id: joined.member_id,
                        generation: Some(joined.generation_id),
                        joining: false,
                    });
                    break synced.assignment;
                }
                // The group moved on while we synced: join again.
                ErrorCode::RebalanceInProgress | ErrorCode::IllegalGeneration => continue,
                ErrorCode::UnknownMemberId => {
                    self.shared.set_membership(Membership {
                        joining: true,
                        ..Membership::default()
                    });
                    continue;
                }
                code => return Err(broker_error(code, "SyncGroup")),
            }
        };
        let assignment: Assignment = decode_metadata(&assignment).map_err(ClientError::Protocol)?;
        Ok(assignment.flatten())
    }

    /// JoinGroup until it succeeds: the first answer gives a member id
    /// (KIP-394), a rebalance in progress means try again.
    async fn join(&self, owned: &[TopicPartition]) -> Result<JoinGroupResponse, ClientError> {
        let subscription = Subscription {
            topics: self.topics.clone(),
            owned: owned.to_vec(),
        };
        let metadata = encode_metadata(&subscription);
        loop {
            let mut membership = self.shared.membership();
            membership.joining = true;
            self.shared.set_membership(membership.clone());
            let request = JoinGroupRequest {
                group_id: self.group_id.clone(),
                session_timeout_ms: self.session_timeout.as_millis() as u32,
                rebalance_timeout_ms: self.max_poll_interval.as_millis() as u32,
                member_id: membership.member_id,
                client_id: self.client_id.clone(),
                protocol_type: CONSUMER_PROTOCOL.into(),
                protocols: self
                    .assignors
                    .iter()
                    .map(|a| (a.name().to_string(), metadata.clone()))
                    .collect(),
            };
            let joined: JoinGroupResponse = self.client.call(GroupApi::JoinGroup, &request).await?;
            debug!(group = self.group_id, error = %joined.error, generation = joined.generation_id, member = joined.member_id, "joined");
            match joined.error {
                ErrorCode::None => return Ok(joined),
                ErrorCode::MemberIdRequired => {
                    self.shared.set_membership(Membership {
                        member_id: joined.member_id,
                        generation: None,
                        joining: true,
                    });
                }
                ErrorCode::UnknownMemberId => self.shared.set_membership(Membership {
                    joining: true,
                    ..Membership::default()
                }),
                ErrorCode::RebalanceInProgress => {}
                code => return Err(broker_error(code, "JoinGroup")),
            }
        }
    }

    /// The leader's job: decode every member's subscription, learn the
    /// partition counts, run the chosen assignor, encode the result.
    async fn assign(
        &self,
        joined: &JoinGroupResponse,
    ) -> Result<Vec<(String, Vec<u8>)>, ClientError> {
        let assignor = self
            .assignors
            .iter()
            .find(|a| a.name() == joined.protocol_name)
            .ok_or_else(|| {
                ClientError::Protocol(format!("unknown assignor {}", joined.protocol_name))
            })?;
        let mut members = Members::new();
        for (id, metadata) in &joined.members {
            let subscription: Subscription =
                decode_metadata(metadata).map_err(ClientError::Protocol)?;
            members.insert(id.clone(), subscription);
        }
        let mut counts = PartitionCounts::new();
        for topic in members.values().flat_map(|s| &s.topics) {
            if counts.contains_key(topic) {
                continue;
            }
            match self.client.topic_metadata(topic).await {
                Ok(t) => {
                    counts.insert(topic.clone(), t.partitions.len() as u32);
                }
                // A topic that does not exist (yet) has nothing to assign.
                Err(e) if e.code() == Some(ErrorCode::UnknownTopicOrPartition) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(assignor
            .assign(&members, &counts)
            .into_iter()
            .map(|(member, assignment)| (member, encode_metadata(&assignment)))
            .collect())
    }
}

fn broker_error(code: ErrorCode, what: &str) -> ClientError {
    ClientError::Broker {
        code,
        message: what.to_string(),
    }
}

/// The first partition error of a commit, if any.
fn check_commit(response: OffsetCommitResponse) -> Result<(), ClientError> {
    for (topic, partitions) in response.topics {
        for (partition, error) in partitions {
            if error != ErrorCode::None {
                return Err(broker_error(
                    error,
                    &format!("committing {topic}-{partition}"),
                ));
            }
        }
    }
    Ok(())
}

/// The background task: a heartbeat every `interval` while in a
/// generation. An answer saying the group is rebalancing (or has dropped
/// us) sets the rejoin flag for the next `poll`. A member that has not
/// polled for `max_poll_interval` is stuck: it leaves, as Kafka's does.
async fn heartbeat(
    client: Arc<Client>,
    shared: Arc<Shared>,
    group_id: String,
    interval: Duration,
    max_poll_interval: Duration,
) {
    let mut ticks = tokio::time::interval(interval);
    loop {
        ticks.tick().await;
        let membership = shared.membership();
        let Some(generation) = membership.generation.filter(|_| !membership.joining) else {
            continue;
        };
        let last_poll = *shared.last_poll.lock().unwrap_or_else(|p| p.into_inner());
        if last_poll.elapsed() > max_poll_interval {
            let request = LeaveGroupRequest {
                group_id: group_id.clone(),
                member_id: membership.member_id,
            };
            let _ = client
                .call::<_, ErrorOnly>(GroupApi::LeaveGroup, &request)
                .await;
            shared.set_membership(Membership::default());
            shared.rejoin.store(true, Ordering::SeqCst);
            continue;
        }
        let request = HeartbeatRequest {
            group_id: group_id.clone(),
            generation_id: generation,
            member_id: membership.member_id.clone(),
        };
        match client
            .call::<_, ErrorOnly>(GroupApi::Heartbeat, &request)
            .await
        {
            Ok(ErrorOnly {
                error: ErrorCode::None,
            }) => {}
            Ok(ErrorOnly {
                error: ErrorCode::UnknownMemberId,
            }) => {
                shared.set_membership(Membership::default());
                shared.rejoin.store(true, Ordering::SeqCst);
            }
            // A rebalance (or a generation that ended): rejoin at the next
            // poll, which first commits with the generation we still have.
            Ok(ErrorOnly { error }) => {
                debug!(%error, "heartbeat: rejoin");
                shared.rejoin.store(true, Ordering::SeqCst);
            }
            // A lost heartbeat is not fatal: the session allows several.
            Err(e) => debug!(error = %e, "heartbeat failed"),
        }
    }
}

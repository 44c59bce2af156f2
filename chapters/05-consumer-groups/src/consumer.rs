//! [`GroupConsumer`]: a consumer in a group. It subscribes to topics
//! instead of assigning itself partitions; the group decides who reads
//! what. Underneath it is chapter 4's [`Consumer`] (fetching, positions,
//! `auto.offset.reset`); this module adds membership and committed offsets.
//!
//! **A shell around the member.** Every decision about the group (when to
//! join, sync, heartbeat or leave, what the leader assigns, which
//! partitions to give up and whether to commit them first) is the sans-IO
//! [`Member`]'s. This module only does what it says: a background task,
//! the *driver*, sends the requests the member asks for and hands back the
//! answers, and `poll` carries out the member's actions with the
//! application's consumer and listener.
//!
//! **Delivery is at least once.** A position is committed after `poll`
//! has returned the records before it: automatically at the next `poll`
//! once `auto.commit.interval.ms` has passed (or on a rebalance or
//! `close`), or when the application calls a commit. A consumer that dies
//! between processing records and the next commit leaves a position
//! behind them, and whoever takes its partitions reads them again.
//! Records are never skipped: a position is never committed past a record
//! `poll` has not returned.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ch03_partitions::TopicPartition;
use ch04_network::{ClientError, Consumer, ConsumerConfig, ConsumerRecord, ErrorCode, SeekTo};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::debug;

use crate::assignor::{
    Assignor, CooperativeStickyAssignor, RangeAssignor, RoundRobinAssignor, StickyAssignor,
};
use crate::link::{CoordinatorLink, coordinator_moved, coordinator_unavailable};
use crate::member::{Action, Member, MemberConfig, Next, Request, Response, commit_result};
use crate::protocol::{
    ErrorOnly, GroupApi, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
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

/// What the driver and `poll` share.
struct Shared {
    /// The state machine; locked only between awaits.
    member: Mutex<Member>,
    /// Group requests go to the group's coordinator, found and found
    /// again through this.
    link: CoordinatorLink,
    /// `poll` asked for a rejoin: the driver has a JoinGroup to send.
    wake_driver: Notify,
    /// The driver handed the member an answer: a `poll` waiting for a
    /// rebalance looks again.
    answered: Notify,
    /// The member's clock starts here.
    started: Instant,
}

impl Shared {
    fn member(&self) -> MutexGuard<'_, Member> {
        self.member.lock().unwrap()
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// A consumer in a group.
pub struct GroupConsumer {
    shared: Arc<Shared>,
    /// Sends what the member asks for.
    driver: JoinHandle<()>,
    consumer: Consumer,
    group_id: String,
    auto_commit: Option<Duration>,
    /// (In a mutex only so that the consumer is `Sync`: `poll` has it alone.)
    listener: Mutex<Option<Box<dyn RebalanceListener>>>,
    last_commit: Instant,
    /// How long a commit or an offset fetch keeps finding the coordinator
    /// again before it gives up (Kafka's `default.api.timeout.ms`; here
    /// the consumer's `request.timeout.ms`).
    api_timeout: Duration,
    /// Positions already committed, so an idle consumer does not commit
    /// the same positions again and again.
    committed: BTreeMap<TopicPartition, u64>,
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        // Without `close`, this is a crash as far as the group knows: no
        // more heartbeats, and the session timeout removes the member.
        self.driver.abort();
    }
}

impl GroupConsumer {
    /// Connects to the cluster at `bootstrap` (`host:port[,host:port...]`).
    /// Call [`GroupConsumer::subscribe`], then `poll`.
    pub async fn connect(
        bootstrap: &str,
        config: GroupConsumerConfig,
    ) -> Result<GroupConsumer, ClientError> {
        // A JoinGroup is held until the whole group has joined, up to the
        // rebalance timeout: its call must wait that long.
        let join_timeout = config
            .consumer
            .request_timeout
            .max(config.max_poll_interval + Duration::from_secs(5));
        let link = CoordinatorLink::new(
            bootstrap,
            config.group_id.clone(),
            config.consumer.client(),
            join_timeout,
            config.consumer.retry_backoff,
        );
        let consumer = Consumer::connect(bootstrap, config.consumer.clone()).await?;
        let member = Member::new(
            MemberConfig {
                group_id: config.group_id.clone(),
                client_id: config.client_id,
                session_timeout: config.session_timeout,
                heartbeat_interval: config.heartbeat_interval,
                max_poll_interval: config.max_poll_interval,
                assignors: config.assignors,
            },
            0,
        );
        let shared = Arc::new(Shared {
            member: Mutex::new(member),
            link,
            wake_driver: Notify::new(),
            answered: Notify::new(),
            started: Instant::now(),
        });
        let driver = tokio::spawn(drive(shared.clone()));
        Ok(GroupConsumer {
            shared,
            driver,
            consumer,
            group_id: config.group_id,
            auto_commit: config
                .enable_auto_commit
                .then_some(config.auto_commit_interval),
            listener: Mutex::new(None),
            last_commit: Instant::now(),
            api_timeout: config.consumer.request_timeout,
            committed: BTreeMap::new(),
        })
    }

    /// Reads these topics as a member of the group, from the next `poll`.
    pub fn subscribe(&mut self, topics: impl IntoIterator<Item = impl Into<String>>) {
        let topics = topics.into_iter().map(Into::into).collect();
        self.shared.member().subscribe(topics);
    }

    /// Tells `listener` about partitions revoked and assigned.
    pub fn set_listener(&mut self, listener: impl RebalanceListener + 'static) {
        *self.listener.get_mut().unwrap() = Some(Box::new(listener));
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
        self.shared.member().generation()
    }

    // ANCHOR: poll
    /// Returns the records of this member's partitions that are there,
    /// waiting up to `timeout`. Commits automatically when the interval
    /// has passed, then does what the member says: revoke, assign, rejoin,
    /// wait for a rebalance, or fail.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, ClientError> {
        if self
            .auto_commit
            .is_some_and(|every| self.last_commit.elapsed() >= every)
        {
            self.auto_commit().await?;
        }
        loop {
            let actions = self.shared.member().poll(self.shared.now());
            let mut wait = false;
            for action in actions {
                match action {
                    Action::Revoke { partitions, commit } => self.revoke(&partitions, commit).await,
                    Action::Assign { assigned, added } => self.assign(assigned, &added).await?,
                    Action::Rejoin => {
                        self.shared.member().rejoin();
                        self.shared.wake_driver.notify_one();
                    }
                    Action::AwaitRebalance => wait = true,
                    Action::Fail(e) => return Err(e),
                }
            }
            if !wait {
                break;
            }
            self.shared.answered.notified().await;
        }
        self.consumer.poll(timeout).await
    }
    // ANCHOR_END: poll

    // ANCHOR: rebalance
    /// Gives partitions up: commits their positions first (with
    /// auto-commit, and `commit`), tells the listener, stops reading them.
    async fn revoke(&mut self, revoked: &[TopicPartition], commit: bool) {
        if commit && self.auto_commit.is_some() {
            // Best effort: if the generation is already over, the
            // coordinator refuses, and the next owner re-reads.
            if let Err(e) = self.commit_positions().await {
                debug!(error = %e, "commit before revoking failed");
            }
        }
        if let Some(listener) = self.listener.get_mut().unwrap() {
            listener.on_partitions_revoked(revoked);
        }
        self.committed.retain(|tp, _| !revoked.contains(tp));
        let kept: Vec<_> = self
            .consumer
            .assignment()
            .into_iter()
            .filter(|tp| !revoked.contains(tp))
            .collect();
        self.consumer.assign(kept);
    }

    /// Reads `assigned` from now on: new partitions start from the group's
    /// committed offsets; kept ones keep their positions.
    async fn assign(
        &mut self,
        assigned: Vec<TopicPartition>,
        added: &[TopicPartition],
    ) -> Result<(), ClientError> {
        self.consumer.assign(assigned);
        self.resume_from_committed(added).await?;
        if let Some(listener) = self.listener.get_mut().unwrap() {
            listener.on_partitions_assigned(added);
        }
        Ok(())
    }
    // ANCHOR_END: rebalance

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
            group_id: self.group_id.clone(),
            topics: Some(by_topic.into_iter().collect()),
        };
        let moved = |answer: &OffsetFetchResponse| coordinator_moved(answer.error);
        let fetched = self
            .shared
            .link
            .call_until_found(GroupApi::OffsetFetch, &request, self.api_timeout, moved)
            .await?;
        if fetched.error != ErrorCode::None {
            return Err(ClientError::Broker {
                code: fetched.error,
                message: "OffsetFetch".into(),
            });
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

    // ANCHOR: commit
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
        let request = self.shared.member().commit_request(offsets);
        let response = self
            .shared
            .link
            .call_until_found(
                GroupApi::OffsetCommit,
                &request,
                self.api_timeout,
                commit_moved,
            )
            .await?;
        commit_result(response)?;
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
        let request = self.shared.member().commit_request(&offsets);
        for (tp, offset) in offsets {
            self.committed.insert(tp, offset);
        }
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let result = match shared
                .link
                .call::<_, OffsetCommitResponse>(GroupApi::OffsetCommit, &request)
                .await
            {
                Ok(response) => {
                    if commit_moved(&response) {
                        shared.link.moved();
                    }
                    commit_result(response)
                }
                Err(e) => Err(e),
            };
            callback(result);
        });
    }
    // ANCHOR_END: commit

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
        self.driver.abort();
        let leave = self.shared.member().close();
        if let Some(request) = leave {
            let _: ErrorOnly = self
                .shared
                .link
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
}

// ANCHOR: driver
/// The driver: sends what the member asks for, one request at a time, and
/// hands back each answer. Between requests it sleeps until the member's
/// next deadline (a heartbeat, or `max.poll.interval.ms`), or until `poll`
/// wakes it to rejoin.
async fn drive(shared: Arc<Shared>) {
    loop {
        let next = shared.member().next_request(shared.now());
        let request = match next {
            Next::Send(request) => request,
            Next::Wait(Some(at)) => {
                let at = shared.started + Duration::from_millis(at);
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = shared.wake_driver.notified() => {}
                }
                continue;
            }
            Next::Wait(None) => {
                shared.wake_driver.notified().await;
                continue;
            }
        };
        let response = send(&shared.link, request).await;
        debug!(?response, "group answer");
        let unavailable = coordinator_trouble(&response);
        if unavailable {
            // Found again before the next request, a little later.
            shared.link.moved();
        }
        shared.member().on_response(shared.now(), response);
        shared.answered.notify_one();
        if unavailable {
            shared.link.back_off().await;
        }
    }
}

/// Whether an answer says the coordinator moved or could not be reached.
fn coordinator_trouble(response: &Response) -> bool {
    let code = |code: &ErrorCode| coordinator_moved(*code);
    match response {
        Response::Joined(Ok(answer)) => code(&answer.error),
        Response::Synced(Ok(answer)) => code(&answer.error),
        Response::Heartbeat(Ok(answer)) => code(answer),
        Response::Joined(Err(e)) | Response::Synced(Err(e)) | Response::Heartbeat(Err(e)) => {
            coordinator_unavailable(e)
        }
        Response::Metadata(_) | Response::Left => false,
    }
}

/// Whether a commit's answer says the coordinator moved.
fn commit_moved(response: &OffsetCommitResponse) -> bool {
    response
        .topics
        .iter()
        .flat_map(|(_, partitions)| partitions)
        .any(|(_, code)| coordinator_moved(*code))
}

/// Sends one of the member's requests to the coordinator (the leader's
/// metadata lookup to any broker); its answer, or why there is none.
async fn send(link: &CoordinatorLink, request: Request) -> Response {
    match request {
        Request::Join(r) => Response::Joined(link.call(GroupApi::JoinGroup, &r).await),
        Request::Metadata(topics) => {
            // Asked afresh: the leader must see partitions added since.
            let brokers = link.brokers();
            let refreshed = brokers.refresh(Some(topics.clone())).await;
            let mut counts = Vec::new();
            for topic in topics {
                let count = match &refreshed {
                    Ok(()) => brokers.partition_count(&topic).await,
                    Err(e) => Err(e.duplicate()),
                };
                counts.push((topic, count));
            }
            Response::Metadata(counts)
        }
        Request::Sync(r) => Response::Synced(link.call(GroupApi::SyncGroup, &r).await),
        Request::Heartbeat(r) => Response::Heartbeat(
            link.call::<_, ErrorOnly>(GroupApi::Heartbeat, &r)
                .await
                .map(|answer| answer.error),
        ),
        Request::Leave(r) => {
            // Best effort: a member whose leave is lost is dropped by the
            // coordinator when its session times out.
            let _ = link.call::<_, ErrorOnly>(GroupApi::LeaveGroup, &r).await;
            Response::Left
        }
    }
}
// ANCHOR_END: driver

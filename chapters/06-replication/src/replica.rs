//! Sans-IO. One partition's replica on one broker: the leader's view of
//! its followers, the ISR and the high watermark; the follower's fetch
//! loop and its truncation by leader epoch.
//!
//! [`Partition`] is driven from outside: the controller's decisions come in
//! through [`Partition::apply_state`], the leader's side of the protocol
//! through [`Partition::append`], [`Partition::on_replica_fetch`] and
//! [`Partition::on_epoch_query`], the follower's through
//! [`Partition::poll_request`] and the `on_*` answers, and time through
//! [`Partition::tick`]. It never reads a clock or a socket: the log is
//! passed in, and so is `now`.

use std::collections::{BTreeMap, BTreeSet};

use ch02_segments::{AppendInfo, BatchHeader, LogError, StoredBatch};
use ch03_partitions::TopicPartition;
use ch04_network::error::ErrorCode;
use ch04_network::protocol::StoredBytes;

use crate::epoch::{EpochEnd, LeaderEpochCache};
use crate::protocol::{
    AlterPartitionRequest, AlterPartitionResponse, BrokerId, EpochAnswer, EpochBatch, EpochQuery,
    PartitionState, ReplicaFetchData, ReplicaFetchPartition,
};
use crate::storage::ReplicaLog;

/// Milliseconds, on whatever clock the caller drives the replica with.
pub type Millis = u64;

/// How a follower finds where its log diverged from a new leader's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    /// Ask the leader where the follower's latest epoch ends (KIP-101,
    /// KIP-279): what Kafka does since 0.11.
    LeaderEpoch,
    /// Cut back to the follower's own high watermark, as Kafka did before
    /// KIP-101. Kept only to show, in tests and in the simulator, the two
    /// ways it loses or corrupts data.
    HighWatermark,
}

/// When a replica's writes are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Kafka's default: leave it to the operating system (and chapter 2's
    /// flush policy). A write is acknowledged once it is in every in-sync
    /// replica's *memory*; durability comes from there being several.
    Os,
    /// Sync before a write counts: the leader syncs after each append, a
    /// follower before it fetches again. (Redpanda's default; Kafka can
    /// come close with `flush.messages=1`.) A write is acknowledged only
    /// once every in-sync replica has it on disk.
    BeforeAck,
}

/// The settings of replication, with Kafka's names where they exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// `replica.lag.time.max.ms`: a follower that has not been caught up
    /// for this long leaves the ISR (Kafka: 30 s).
    pub replica_lag_time_max_ms: Millis,
    /// `min.insync.replicas`: an `acks=all` write is refused while the ISR
    /// is smaller (Kafka: 1, a per-topic setting; here per broker).
    pub min_insync_replicas: usize,
    /// `replica.fetch.max.bytes`: at most about this much per partition
    /// per fetch (Kafka: 1 MiB).
    pub replica_fetch_max_bytes: u32,
    /// How long a follower waits for an answer before asking again, and
    /// a leader before sending an ISR change again (Kafka's
    /// `request.timeout.ms`, 30 s; shorter here, where answers are lost
    /// on purpose).
    pub retry_ms: Millis,
    /// How a follower truncates.
    pub truncation: Truncation,
    /// When writes are synced.
    pub flush: Flush,
}

impl Default for ReplicaConfig {
    fn default() -> ReplicaConfig {
        ReplicaConfig {
            replica_lag_time_max_ms: 30_000,
            min_insync_replicas: 1,
            replica_fetch_max_bytes: 1024 * 1024,
            retry_ms: 1_000,
            truncation: Truncation::LeaderEpoch,
            flush: Flush::Os,
        }
    }
}

/// What the leader knows of one follower, from its fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The follower's log end offset, as its last fetch said; `None` until
    /// it has fetched from this leader (so a new leader does not count a
    /// follower it has not heard from).
    pub log_end: Option<u64>,
    /// The last time the follower was caught up with the leader's log end.
    pub last_caught_up_ms: Millis,
    /// When it last fetched, and the leader's log end then: Kafka's rule
    /// for "caught up" looks one fetch back.
    last_fetch_ms: Millis,
    last_fetch_leader_end: u64,
}

/// The leader's side.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Leading {
    followers: BTreeMap<BrokerId, FollowerProgress>,
    /// An ISR change asked of the controller and not yet answered, and
    /// when it was last sent (`None`: not sent yet).
    pending_isr: Option<(Vec<BrokerId>, Option<Millis>)>,
}

/// Where a follower is in its loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Finding where its log diverged from the leader's.
    Truncating,
    /// Copying the leader's log.
    Fetching,
}

/// The follower's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Following {
    leader: BrokerId,
    phase: Phase,
    /// When the request now awaited was sent.
    in_flight_since: Option<Millis>,
}

/// What a replica is doing now.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    Leader(Leading),
    Follower(Following),
    /// Not a replica of the partition (any more), or the partition has no
    /// leader: serves nothing, fetches nothing.
    Idle,
}

/// A request a follower wants sent to its leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowerRequest {
    /// Where does my latest epoch end on your log?
    EpochQuery(EpochQuery),
    /// Send me what you have from my log end on.
    Fetch(ReplicaFetchPartition),
}

/// What can go wrong on the follower's side of a fetch.
#[derive(Debug, thiserror::Error)]
pub enum FollowerError {
    /// The leader sent a batch that is not valid; nothing of it was
    /// stored, and the follower will fetch it again.
    #[error("{tp}: corrupt batch from the leader at offset {offset}: {source}")]
    CorruptBatch {
        /// The partition.
        tp: TopicPartition,
        /// Where the follower's log ends (where the batch would have gone).
        offset: u64,
        /// What was wrong with it.
        source: LogError,
    },
    /// Writing a checkpoint failed (a disk error).
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] LogError),
    /// The log failed (a disk error).
    #[error("{tp}: {source}")]
    Log {
        /// The partition.
        tp: TopicPartition,
        /// What the log said.
        source: LogError,
    },
}

/// One partition's replica on this broker.
#[derive(Debug, Clone)]
pub struct Partition {
    tp: TopicPartition,
    me: BrokerId,
    config: ReplicaConfig,
    /// The latest state the controller decided, as far as this broker knows.
    state: PartitionState,
    epochs: LeaderEpochCache,
    high_watermark: u64,
    role: Role,
    /// Whether the epoch cache changed since the caller last saved it.
    epochs_changed: bool,
}

impl Partition {
    // ANCHOR: open
    /// The replica as it is on disk: its log, its epoch cache and its
    /// checkpointed high watermark. Both may be ahead of the log after a
    /// crash that lost the log's unsynced tail; they are cut back to it.
    /// It does nothing until the controller's state says what it is.
    pub fn open(
        tp: TopicPartition,
        me: BrokerId,
        config: ReplicaConfig,
        log: &impl ReplicaLog,
        mut epochs: LeaderEpochCache,
        high_watermark: u64,
    ) -> Partition {
        let log_end = log.log_end_offset();
        let epochs_changed = epochs.truncate_from_end(log_end);
        Partition {
            tp,
            me,
            config,
            state: PartitionState {
                leader: None,
                leader_epoch: 0,
                partition_epoch: 0,
                replicas: Vec::new(),
                isr: Vec::new(),
                elr: Vec::new(),
                last_known_elr: Vec::new(),
            },
            epochs,
            high_watermark: high_watermark.min(log_end),
            role: Role::Idle,
            epochs_changed,
        }
    }
    // ANCHOR_END: open

    /// The partition.
    pub fn tp(&self) -> &TopicPartition {
        &self.tp
    }

    /// The controller's latest state as this replica knows it.
    pub fn state(&self) -> &PartitionState {
        &self.state
    }

    /// The high watermark: every record below it is on every in-sync
    /// replica, and may be read by consumers.
    pub fn high_watermark(&self) -> u64 {
        self.high_watermark
    }

    /// The epoch cache.
    pub fn epochs(&self) -> &LeaderEpochCache {
        &self.epochs
    }

    /// Whether this replica leads the partition now.
    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    /// The leader this replica follows, if it follows one.
    pub fn following(&self) -> Option<BrokerId> {
        match &self.role {
            Role::Follower(f) => Some(f.leader),
            _ => None,
        }
    }

    /// The leader this follower awaits an answer from at `now`: a request
    /// is in flight to it, and not yet overdue.
    pub fn awaiting(&self, now: Millis) -> Option<BrokerId> {
        match &self.role {
            Role::Follower(f)
                if f.in_flight_since
                    .is_some_and(|since| now < since + self.config.retry_ms) =>
            {
                Some(f.leader)
            }
            _ => None,
        }
    }

    /// What the leader knows of each follower (empty unless leading).
    pub fn followers(&self) -> BTreeMap<BrokerId, FollowerProgress> {
        match &self.role {
            Role::Leader(l) => l.followers.clone(),
            _ => BTreeMap::new(),
        }
    }

    /// Whether the epoch cache changed since the last call, and must be
    /// written to the partition's checkpoint.
    pub fn take_epochs_changed(&mut self) -> bool {
        std::mem::take(&mut self.epochs_changed)
    }

    // ANCHOR: apply_state
    /// Takes the controller's state for the partition, if it is newer than
    /// what this replica has: it may become the leader, a follower of a new
    /// leader, or idle; or only learn a new ISR. Older state (a message
    /// overtaken by a newer one) is ignored: the epochs order them.
    pub fn apply_state(
        &mut self,
        log: &mut impl ReplicaLog,
        state: PartitionState,
        now: Millis,
    ) -> Result<(), LogError> {
        let newer = (state.leader_epoch, state.partition_epoch)
            > (self.state.leader_epoch, self.state.partition_epoch);
        let first = self.state.replicas.is_empty() && !state.replicas.is_empty();
        if !newer && !first {
            return Ok(());
        }
        let new_epoch = state.leader_epoch != self.state.leader_epoch || first;
        let leader = state.leader;
        let is_replica = state.replicas.contains(&self.me);
        self.state = state;
        match leader {
            Some(leader) if is_replica && leader == self.me => {
                if new_epoch || !self.is_leader() {
                    self.become_leader(log, now);
                } else if let Role::Leader(leading) = &mut self.role {
                    // Only the ISR changed: the change asked for (if any)
                    // is answered by it.
                    leading.pending_isr = None;
                }
                self.maybe_advance_high_watermark(log);
            }
            Some(leader) if is_replica => {
                if new_epoch || self.following() != Some(leader) {
                    self.become_follower(log, leader)?;
                }
            }
            _ => self.role = Role::Idle,
        }
        Ok(())
    }
    // ANCHOR_END: apply_state

    /// Starts leading: the new epoch starts at the log end, and no
    /// follower counts for the high watermark until it has fetched.
    fn become_leader(&mut self, log: &impl ReplicaLog, now: Millis) {
        let log_end = log.log_end_offset();
        self.epochs_changed |= self.epochs.assign(self.state.leader_epoch, log_end);
        let followers = self
            .state
            .replicas
            .iter()
            .filter(|&&id| id != self.me)
            .map(|&id| {
                let progress = FollowerProgress {
                    log_end: None,
                    // As Kafka does: every follower gets a full
                    // `replica.lag.time.max.ms` to show it keeps up.
                    last_caught_up_ms: now,
                    last_fetch_ms: now,
                    last_fetch_leader_end: log_end,
                };
                (id, progress)
            })
            .collect();
        self.role = Role::Leader(Leading {
            followers,
            pending_isr: None,
        });
    }

    /// Starts following `leader`. With epochs, it first asks where its
    /// log diverged; without, it cuts to its high watermark at once.
    fn become_follower(
        &mut self,
        log: &mut impl ReplicaLog,
        leader: BrokerId,
    ) -> Result<(), LogError> {
        let phase = match self.config.truncation {
            Truncation::LeaderEpoch if self.epochs.latest().is_some() => Phase::Truncating,
            // An empty cache: nothing to ask about. (Kafka falls back to the
            // high watermark for logs written before epochs existed.)
            _ => {
                self.truncate(log, self.high_watermark)?;
                Phase::Fetching
            }
        };
        self.role = Role::Follower(Following {
            leader,
            phase,
            in_flight_since: None,
        });
        Ok(())
    }

    /// Cuts the log to end at `offset` (or below: at a batch boundary), and
    /// the epoch cache and high watermark with it.
    fn truncate(&mut self, log: &mut impl ReplicaLog, offset: u64) -> Result<(), LogError> {
        let log_end = log.truncate_to(offset)?;
        self.epochs_changed |= self.epochs.truncate_from_end(log_end);
        self.high_watermark = self.high_watermark.min(log_end);
        Ok(())
    }

    /// The ISR the high watermark is computed over: the controller's,
    /// plus any replica an expansion in flight adds (KIP-497's "maximal
    /// ISR": a replica being added must already have the records, and one
    /// being removed still counts until the controller agrees).
    fn maximal_isr(&self) -> BTreeSet<BrokerId> {
        let mut isr: BTreeSet<BrokerId> = self.state.isr.iter().copied().collect();
        if let Role::Leader(Leading {
            pending_isr: Some((pending, _)),
            ..
        }) = &self.role
        {
            isr.extend(pending.iter().copied());
        }
        isr
    }

    /// Appends a producer's batch, as the leader. With `acks=all` the ISR
    /// must hold at least `min.insync.replicas` replicas first. The caller
    /// answers `acks=all` once the high watermark passes the batch.
    pub fn append(
        &mut self,
        log: &mut impl ReplicaLog,
        batch: &mut [u8],
        acks_all: bool,
    ) -> Result<AppendInfo, ErrorCode> {
        if !self.is_leader() {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        if acks_all && self.state.isr.len() < self.config.min_insync_replicas {
            return Err(ErrorCode::NotEnoughReplicas);
        }
        let info = log.append(batch).map_err(|e| log_error_code(&e))?;
        if self.config.flush == Flush::BeforeAck {
            log.sync().map_err(|e| log_error_code(&e))?;
        }
        self.maybe_advance_high_watermark(log);
        Ok(info)
    }

    /// Whether the ISR is now too small for `acks=all` writes to be
    /// acknowledged (`NOT_ENOUGH_REPLICAS_AFTER_APPEND`).
    pub fn isr_too_small(&self) -> bool {
        self.state.isr.len() < self.config.min_insync_replicas
    }

    // ANCHOR: advance_hw
    /// Moves the high watermark up to the smallest log end offset in the
    /// (maximal) ISR, if that is higher. Returns whether it moved.
    ///
    /// Only while the ISR holds at least `min.insync.replicas` (KIP-966):
    /// a leader alone must not commit what it alone has, or a consumer
    /// could read a record that the next leader, an eligible replica from
    /// outside the ISR, never had.
    fn maybe_advance_high_watermark(&mut self, log: &impl ReplicaLog) -> bool {
        let Role::Leader(leading) = &self.role else {
            return false;
        };
        // exercise-hole: advance_hw | While the ISR has at least `self.config.min_insync_replicas` members, the high watermark is the smallest log end offset among the in-sync replicas (`self.maximal_isr()`): the leader's own is `log.log_end_offset()`, a follower's is `leading.followers[&id].log_end`. A follower whose end is still unknown (`None`) holds it where it is. It never goes back.
        // exercise-hint: Work out `Option<u64>`: for each id of the maximal ISR, `Some(log.log_end_offset())` for `self.me`, else the follower's `log_end` (or `None` if the leader has no progress for it).
        // exercise-hint: `let smallest = isr.iter().map(|id| ...).collect::<Option<Vec<u64>>>()` gives `None` if any is unknown; then take `.min()`, and only move up: `if new > self.high_watermark { self.high_watermark = new; return true }`.
        if self.state.isr.len() < self.config.min_insync_replicas {
            return false;
        }
        let mut smallest = log.log_end_offset();
        for id in self.maximal_isr() {
            if id == self.me {
                continue;
            }
            match leading.followers.get(&id).and_then(|f| f.log_end) {
                Some(end) => smallest = smallest.min(end),
                // Not heard from since this leader took over: wait for it.
                None => return false,
            }
        }
        if smallest > self.high_watermark {
            self.high_watermark = smallest;
            return true;
        }
        false
        // exercise-end
    }
    // ANCHOR_END: advance_hw

    // ANCHOR: fencing
    /// Checks a request's leader epoch against this replica's, as a leader
    /// must before acting on it (KIP-320).
    fn check_leader_epoch(&self, epoch: u32) -> Result<(), ErrorCode> {
        // exercise-hole: fencing | Only a leader answers: otherwise NOT_LEADER_OR_FOLLOWER. A request from an older leader epoch than this replica's is from a replica that is behind: FENCED_LEADER_EPOCH. From a newer one, this replica is behind: UNKNOWN_LEADER_EPOCH.
        // exercise-hint: Compare `epoch` with `self.state.leader_epoch` (`Ord::cmp` gives all three cases).
        if !self.is_leader() {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        match epoch.cmp(&self.state.leader_epoch) {
            std::cmp::Ordering::Less => Err(ErrorCode::FencedLeaderEpoch),
            std::cmp::Ordering::Greater => Err(ErrorCode::UnknownLeaderEpoch),
            std::cmp::Ordering::Equal => Ok(()),
        }
        // exercise-end
    }
    // ANCHOR_END: fencing

    // ANCHOR: on_replica_fetch
    /// Answers a follower's fetch, as the leader: records what the fetch
    /// says of the follower (its log end, whether it is caught up), which
    /// may move the high watermark or let the follower into the ISR, and
    /// returns the batches from its log end on.
    pub fn on_replica_fetch(
        &mut self,
        log: &impl ReplicaLog,
        replica: BrokerId,
        fetch: &ReplicaFetchPartition,
        now: Millis,
    ) -> ReplicaFetchData {
        let tp = self.tp.clone();
        let answer = |error, high_watermark, batches| ReplicaFetchData {
            tp: tp.clone(),
            error,
            leader_epoch: fetch.leader_epoch,
            high_watermark,
            batches,
        };
        if let Err(error) = self.check_leader_epoch(fetch.leader_epoch) {
            return answer(error, 0, Vec::new());
        }
        let log_end = log.log_end_offset();
        let Role::Leader(leading) = &mut self.role else {
            unreachable!("check_leader_epoch passed, so this replica leads");
        };
        let Some(progress) = leading.followers.get_mut(&replica) else {
            return answer(ErrorCode::NotLeaderOrFollower, 0, Vec::new());
        };
        if fetch.fetch_offset > log_end || fetch.fetch_offset < log.log_start_offset() {
            return answer(ErrorCode::OffsetOutOfRange, self.high_watermark, Vec::new());
        }
        update_progress(progress, fetch.fetch_offset, log_end, now);
        self.maybe_expand_isr(replica, log);
        self.maybe_advance_high_watermark(log);
        let max_bytes = u64::from(fetch.max_bytes.min(self.config.replica_fetch_max_bytes));
        match log.read(fetch.fetch_offset, max_bytes) {
            Ok(batches) => {
                let batches = self.tag_epochs(batches);
                answer(ErrorCode::None, self.high_watermark, batches)
            }
            Err(e) => answer(log_error_code(&e), self.high_watermark, Vec::new()),
        }
    }
    // ANCHOR_END: on_replica_fetch

    /// Each batch with the epoch that wrote it, from the epoch cache.
    fn tag_epochs(&self, batches: Vec<StoredBatch>) -> Vec<EpochBatch> {
        batches
            .into_iter()
            .map(|batch| EpochBatch {
                epoch: self.epochs.epoch_at(batch.header.base_offset).unwrap_or(0),
                bytes: StoredBytes(batch.bytes),
            })
            .collect()
    }

    // ANCHOR: isr_rules
    /// Asks for `replica` to join the ISR if it has caught up: its log
    /// reaches the high watermark and the start of this leader's epoch
    /// (so it holds every record this leader has committed).
    fn maybe_expand_isr(&mut self, replica: BrokerId, log: &impl ReplicaLog) {
        let epoch_start = self
            .epochs
            .latest()
            .map_or(log.log_start_offset(), |e| e.start_offset);
        let isr = self.maximal_isr();
        let Role::Leader(leading) = &mut self.role else {
            return;
        };
        if leading.pending_isr.is_some() || isr.contains(&replica) {
            return;
        }
        let log_end = leading.followers[&replica].log_end.unwrap_or(0);
        // exercise-hole: isr_expand | A follower rejoins when its log end reaches both the high watermark and `epoch_start`. Ask the controller by setting `leading.pending_isr` to the ISR plus `replica` (not yet sent: `None`).
        // exercise-hint: Reaching the high watermark alone is not enough after a leader change: the new leader's high watermark may lag, and a follower with an old diverged tail could look caught up. Requiring `epoch_start` too means it has fetched from this leader.
        if log_end >= self.high_watermark && log_end >= epoch_start {
            let mut new_isr = self.state.isr.clone();
            new_isr.push(replica);
            leading.pending_isr = Some((new_isr, None));
        }
        // exercise-end
    }

    /// On the leader's clock: asks for every follower that has not been
    /// caught up for `replica.lag.time.max.ms` to leave the ISR.
    pub fn tick(&mut self, now: Millis) {
        let lag_max = self.config.replica_lag_time_max_ms;
        let isr = self.state.isr.clone();
        let me = self.me;
        let Role::Leader(leading) = &mut self.role else {
            return;
        };
        if leading.pending_isr.is_some() {
            return;
        }
        // exercise-hole: isr_shrink | Keep in the ISR the leader itself and every follower caught up within `lag_max` ms of `now` (`leading.followers[&id].last_caught_up_ms`). If that drops any, ask the controller for the smaller ISR through `leading.pending_isr` (not yet sent: `None`).
        // exercise-hint: Kafka's rule is about time, not offsets: a follower 10,000 records behind that catches up every few seconds stays in; a follower one record behind that has not reached the end for `replica.lag.time.max.ms` leaves.
        let in_sync: Vec<BrokerId> = isr
            .iter()
            .copied()
            .filter(|id| {
                *id == me
                    || leading
                        .followers
                        .get(id)
                        .is_some_and(|f| now.saturating_sub(f.last_caught_up_ms) <= lag_max)
            })
            .collect();
        if in_sync.len() < isr.len() {
            leading.pending_isr = Some((in_sync, None));
        }
        // exercise-end
    }
    // ANCHOR_END: isr_rules

    /// The ISR change to send to the controller now, if one is waiting
    /// and not already in flight (or its answer is overdue).
    pub fn poll_alter_partition(&mut self, now: Millis) -> Option<AlterPartitionRequest> {
        let retry = self.config.retry_ms;
        let Role::Leader(Leading {
            pending_isr: Some((isr, sent)),
            ..
        }) = &mut self.role
        else {
            return None;
        };
        if sent.is_some_and(|at| now < at + retry) {
            return None;
        }
        *sent = Some(now);
        Some(AlterPartitionRequest {
            broker_id: self.me,
            tp: self.tp.clone(),
            leader_epoch: self.state.leader_epoch,
            partition_epoch: self.state.partition_epoch,
            new_isr: isr.clone(),
        })
    }

    /// Takes the controller's answer to an ISR change: on success, the new
    /// state; on refusal, the pending change is dropped (the next fetch or
    /// tick asks again if it is still wanted, on the state the answer
    /// brings). `NOT_CONTROLLER` (chapter 8: the controller resigned, with
    /// the change perhaps stored) says nothing of what happened: the change
    /// stays pending, counts for the high watermark, and is asked again,
    /// until an answer says which.
    pub fn on_alter_partition(
        &mut self,
        log: &mut impl ReplicaLog,
        response: AlterPartitionResponse,
        now: Millis,
    ) -> Result<(), LogError> {
        if response.error == ErrorCode::NotController {
            return Ok(());
        }
        if let Role::Leader(leading) = &mut self.role {
            leading.pending_isr = None;
        }
        match response.state {
            Some(state) => self.apply_state(log, state, now),
            None => Ok(()),
        }
    }

    // ANCHOR: on_epoch_query
    /// Answers a follower's OffsetsForLeaderEpoch, as the leader.
    pub fn on_epoch_query(&self, log: &impl ReplicaLog, query: &EpochQuery) -> EpochAnswer {
        let (error, end) = match self.check_leader_epoch(query.current_leader_epoch) {
            Ok(()) => (
                ErrorCode::None,
                self.epochs
                    .end_offset_for(query.epoch, log.log_end_offset()),
            ),
            Err(error) => (error, None),
        };
        EpochAnswer {
            tp: self.tp.clone(),
            error,
            leader_epoch: query.current_leader_epoch,
            end,
        }
    }
    // ANCHOR_END: on_epoch_query

    /// The request this follower wants sent now, with the leader to send
    /// it to: nothing if it is not following, or if a request is in flight
    /// and not yet overdue.
    pub fn poll_request(
        &mut self,
        log: &impl ReplicaLog,
        now: Millis,
    ) -> Option<(BrokerId, FollowerRequest)> {
        let Role::Follower(following) = &mut self.role else {
            return None;
        };
        if following
            .in_flight_since
            .is_some_and(|since| now < since + self.config.retry_ms)
        {
            return None;
        }
        following.in_flight_since = Some(now);
        let leader_epoch = self.state.leader_epoch;
        let request = match following.phase {
            Phase::Truncating => FollowerRequest::EpochQuery(EpochQuery {
                tp: self.tp.clone(),
                current_leader_epoch: leader_epoch,
                epoch: self.epochs.latest().map_or(0, |e| e.epoch),
            }),
            Phase::Fetching => FollowerRequest::Fetch(ReplicaFetchPartition {
                tp: self.tp.clone(),
                leader_epoch,
                fetch_offset: log.log_end_offset(),
                max_bytes: self.config.replica_fetch_max_bytes,
            }),
        };
        Some((following.leader, request))
    }

    /// Whether an answer from `from` for `leader_epoch` is one this
    /// follower is waiting for in `phase`: a late answer from an old leader
    /// or an old epoch must never touch the log.
    fn expects(&self, from: BrokerId, leader_epoch: u32, phase: Phase) -> bool {
        matches!(self.role, Role::Follower(f) if f.leader == from && f.phase == phase)
            && leader_epoch == self.state.leader_epoch
    }

    /// Marks the request in flight as answered.
    fn answered(&mut self) {
        if let Role::Follower(following) = &mut self.role {
            following.in_flight_since = None;
        }
    }

    // ANCHOR: truncate_by_epoch
    /// Takes the leader's answer to the follower's epoch query: cuts the
    /// log where it diverges from the leader's, and starts fetching.
    pub fn on_epoch_answer(
        &mut self,
        log: &mut impl ReplicaLog,
        from: BrokerId,
        answer: EpochAnswer,
    ) -> Result<(), LogError> {
        if !self.expects(from, answer.leader_epoch, Phase::Truncating) {
            return Ok(());
        }
        self.answered();
        if answer.error != ErrorCode::None {
            // A newer or older epoch: wait for the controller's news, and ask again.
            return Ok(());
        }
        // exercise-hole: truncate_by_epoch | The leader said where the epoch `end.epoch` ends on its log (`None`: the leader knows no epoch that old, so keep nothing: cut to 0). Cut this log to the smaller of that `end.end_offset` and where `end.epoch` ends in this log (`self.epochs.end_offset_for`), with `self.truncate`; then switch the phase to `Phase::Fetching`.
        // exercise-hint: If the leader answered for an older epoch than the one asked about, this follower has records of an epoch the leader never saw: they end where that older epoch ends *here*, which can be before the leader's end for it (KIP-279).
        // exercise-hint: `let mine = self.epochs.end_offset_for(end.epoch, log.log_end_offset()).map_or(0, |e| e.end_offset); self.truncate(log, end.end_offset.min(mine))?;` then set the phase through `if let Role::Follower(f) = &mut self.role`.
        let cut = match answer.end {
            Some(EpochEnd { epoch, end_offset }) => {
                let mine = self
                    .epochs
                    .end_offset_for(epoch, log.log_end_offset())
                    .map_or(0, |e| e.end_offset);
                end_offset.min(mine)
            }
            None => 0,
        };
        self.truncate(log, cut)?;
        if let Role::Follower(following) = &mut self.role {
            following.phase = Phase::Fetching;
        }
        Ok(())
        // exercise-end
    }
    // ANCHOR_END: truncate_by_epoch

    // ANCHOR: on_fetch_data
    /// Takes the leader's answer to the follower's fetch: appends the
    /// batches that continue its log (an answer duplicated or overtaken on
    /// the way is skipped batch by batch), and moves its high watermark up
    /// to the leader's, as far as its own log reaches.
    pub fn on_fetch_data(
        &mut self,
        log: &mut impl ReplicaLog,
        from: BrokerId,
        data: ReplicaFetchData,
    ) -> Result<(), FollowerError> {
        if !self.expects(from, data.leader_epoch, Phase::Fetching) {
            return Ok(());
        }
        self.answered();
        match data.error {
            ErrorCode::None => {}
            // The logs disagree about where this one ends: find out again.
            ErrorCode::OffsetOutOfRange => {
                if let Role::Follower(following) = &mut self.role {
                    following.phase = match self.config.truncation {
                        Truncation::LeaderEpoch => Phase::Truncating,
                        Truncation::HighWatermark => Phase::Fetching,
                    };
                }
                if self.config.truncation == Truncation::HighWatermark {
                    let hw = self.high_watermark;
                    self.truncate(log, hw)
                        .map_err(|source| self.log_error(source))?;
                }
                return Ok(());
            }
            _ => return Ok(()),
        }
        let mut corrupt = None;
        for EpochBatch { epoch, bytes } in data.batches {
            let mut bytes = bytes.0;
            let log_end = log.log_end_offset();
            let checked = match BatchHeader::parse(&bytes) {
                Ok(header) if header.base_offset == log_end => log.append(&mut bytes),
                // Already have it (a duplicate), or a gap: not for us.
                Ok(_) => continue,
                Err(e) => Err(e.into()),
            };
            match checked {
                Ok(_) => self.epochs_changed |= self.epochs.assign(epoch, log_end),
                Err(source @ (LogError::InvalidBatch(_) | LogError::BatchTooLarge { .. })) => {
                    corrupt = Some(FollowerError::CorruptBatch {
                        tp: self.tp.clone(),
                        offset: log_end,
                        source,
                    });
                    break;
                }
                Err(source) => return Err(self.log_error(source)),
            }
        }
        // Before a corrupt batch is reported too: the next fetch tells the
        // leader this replica has the batches before it.
        if self.config.flush == Flush::BeforeAck {
            log.sync().map_err(|source| self.log_error(source))?;
        }
        if let Some(corrupt) = corrupt {
            return Err(corrupt);
        }
        let high_watermark = data.high_watermark.min(log.log_end_offset());
        self.high_watermark = self.high_watermark.max(high_watermark);
        Ok(())
    }
    // ANCHOR_END: on_fetch_data

    fn log_error(&self, source: LogError) -> FollowerError {
        FollowerError::Log {
            tp: self.tp.clone(),
            source,
        }
    }

    /// The committed batches from `offset` on, for a consumer: only what
    /// lies below the high watermark, from the leader only.
    pub fn read_committed(
        &self,
        log: &impl ReplicaLog,
        offset: u64,
        max_bytes: u64,
    ) -> Result<Vec<StoredBatch>, ErrorCode> {
        if !self.is_leader() {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        if offset > log.log_end_offset() || offset < log.log_start_offset() {
            return Err(ErrorCode::OffsetOutOfRange);
        }
        if offset >= self.high_watermark {
            return Ok(Vec::new());
        }
        let mut batches = log
            .read(offset, max_bytes)
            .map_err(|e| log_error_code(&e))?;
        batches.retain(|b| b.header.base_offset < self.high_watermark);
        Ok(batches)
    }
}

// ANCHOR: update_progress
/// What one fetch says of a follower (Kafka's `Replica.updateFetchState`).
/// A fetch from the leader's log end means the follower is caught up now.
/// A fetch from where the leader's log ended at the *previous* fetch means
/// it was caught up then: under steady load a follower is always a little
/// behind, yet it keeps up.
fn update_progress(
    progress: &mut FollowerProgress,
    fetch_offset: u64,
    leader_end: u64,
    now: Millis,
) {
    // exercise-hole: update_progress | Record the fetch: the follower's `log_end` is now `fetch_offset`. It is caught up *now* if it fetched from `leader_end`; it *was* caught up at its previous fetch (`last_fetch_ms`) if it fetched from where the leader's log ended then (`last_fetch_leader_end`). `last_caught_up_ms` never goes back. Then remember this fetch's time and leader end.
    // exercise-hint: Without the second rule, a follower under steady load (always one batch behind, never at the very end) would leave the ISR after `replica.lag.time.max.ms` although it keeps up.
    if fetch_offset >= leader_end {
        progress.last_caught_up_ms = progress.last_caught_up_ms.max(now);
    } else if fetch_offset >= progress.last_fetch_leader_end {
        progress.last_caught_up_ms = progress.last_caught_up_ms.max(progress.last_fetch_ms);
    }
    progress.log_end = Some(fetch_offset);
    progress.last_fetch_ms = now;
    progress.last_fetch_leader_end = leader_end;
    // exercise-end
}
// ANCHOR_END: update_progress

/// The error code a log error means on the wire.
pub fn log_error_code(error: &LogError) -> ErrorCode {
    match error {
        LogError::InvalidBatch(_) => ErrorCode::CorruptMessage,
        LogError::BatchTooLarge { .. } => ErrorCode::MessageTooLarge,
        LogError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        _ => ErrorCode::KafkaStorageError,
    }
}

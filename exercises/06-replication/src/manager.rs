//! Sans-IO. A broker's replicas: every [`Partition`] it holds, the
//! produce requests waiting for `acks=all` (Kafka's *purgatory*), the
//! requests its followers want sent, and the checkpoints. Kafka splits
//! this among `ReplicaManager`, `ReplicaFetcherThread` and
//! `DelayedProduce`; here it is one state machine.
//!
//! The caller owns the I/O: it passes in the [`Storage`], the time, and
//! what arrived, and sends what [`ReplicaManager::poll_outgoing`] returns.
//! The simulator and the tokio shell are two such callers.

use std::collections::{BTreeMap, BTreeSet};

use ch02_segments::{AppendInfo, LogError, StoredBatch};
use ch03_partitions::TopicPartition;
use ch04_network::error::ErrorCode;

use crate::epoch::{EpochEnd, LeaderEpochCache};
use crate::protocol::{
    Acks, AlterPartitionRequest, AlterPartitionResponse, BrokerId, EpochQueryRequest,
    EpochQueryResponse, HeartbeatResponse, ReplicaFetchRequest, ReplicaFetchResponse,
};
use crate::replica::{
    FollowerError, FollowerRequest, Millis, Partition, ReplicaConfig, log_error_code,
};
use crate::storage::ReplicaLog;
use crate::storage::Storage;

/// The broker-wide settings around the replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManagerConfig {
    /// Each partition's replication settings.
    pub replica: ReplicaConfig,
    /// How long an `acks=all` produce waits for the high watermark before
    /// it fails with `REQUEST_TIMED_OUT` (the producer's
    /// `request.timeout.ms`, 30 s).
    pub request_timeout_ms: Millis,
    /// `replica.high.watermark.checkpoint.interval.ms` (Kafka: 5 s).
    pub high_watermark_checkpoint_interval_ms: Millis,
}

impl Default for ManagerConfig {
    fn default() -> ManagerConfig {
        ManagerConfig {
            replica: ReplicaConfig::default(),
            request_timeout_ms: 30_000,
            high_watermark_checkpoint_interval_ms: 5_000,
        }
    }
}

/// A message the broker must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A fetch to the leader `to`, for every partition this broker follows
    /// there that is ready to fetch.
    Fetch {
        /// The leader.
        to: BrokerId,
        /// The request.
        request: ReplicaFetchRequest,
    },
    /// An epoch query to the leader `to`.
    EpochQuery {
        /// The leader.
        to: BrokerId,
        /// The request.
        request: EpochQueryRequest,
    },
    /// An ISR change, to the controller.
    AlterPartition(AlterPartitionRequest),
}

/// An `acks=all` produce waiting for the high watermark.
#[derive(Debug)]
struct DelayedProduce<T> {
    tp: TopicPartition,
    /// The leader epoch it was appended in: a change of leader fails it.
    leader_epoch: u32,
    info: AppendInfo,
    deadline: Millis,
    token: T,
}

/// A broker's replicas; `T` is whatever the caller uses to find a waiting
/// producer again (a reply channel, a request id).
#[derive(Debug)]
pub struct ReplicaManager<T> {
    me: BrokerId,
    config: ManagerConfig,
    partitions: BTreeMap<TopicPartition, Partition>,
    purgatory: Vec<DelayedProduce<T>>,
    completed: Vec<(T, Result<AppendInfo, ErrorCode>)>,
    last_checkpoint_ms: Millis,
}

impl<T> ReplicaManager<T> {
    /// Opens every partition `storage` holds, from its log and
    /// checkpoints. None of them does anything until the controller's
    /// state arrives ([`ReplicaManager::on_heartbeat_response`]).
    pub fn open(
        me: BrokerId,
        config: ManagerConfig,
        storage: &mut impl Storage,
        now: Millis,
    ) -> ReplicaManager<T> {
        let high_watermarks = storage.read_high_watermarks();
        let mut manager = ReplicaManager {
            me,
            config,
            partitions: BTreeMap::new(),
            purgatory: Vec::new(),
            completed: Vec::new(),
            last_checkpoint_ms: now,
        };
        for tp in storage.partitions() {
            let hw = high_watermarks.get(&tp).copied().unwrap_or(0);
            manager.open_partition(storage, tp, hw);
        }
        manager
    }

    fn open_partition(
        &mut self,
        storage: &mut impl Storage,
        tp: TopicPartition,
        high_watermark: u64,
    ) {
        let epochs = LeaderEpochCache::from_entries(storage.read_epochs(&tp));
        let Some(log) = storage.log(&tp) else { return };
        let partition = Partition::open(
            tp.clone(),
            self.me,
            self.config.replica,
            log,
            epochs,
            high_watermark,
        );
        self.partitions.insert(tp, partition);
    }

    /// The replica of `tp`, if this broker has one.
    pub fn partition(&self, tp: &TopicPartition) -> Option<&Partition> {
        self.partitions.get(tp)
    }

    /// Where each of this broker's logs ends (latest epoch, log end), for
    /// its heartbeat.
    pub fn log_ends(&self, storage: &mut impl Storage) -> Vec<(TopicPartition, EpochEnd)> {
        self.partitions
            .iter()
            .filter_map(|(tp, p)| {
                let log = storage.log(tp)?;
                let epoch = p.epochs().latest().map_or(0, |e| e.epoch);
                Some((
                    tp.clone(),
                    EpochEnd {
                        epoch,
                        end_offset: log.log_end_offset(),
                    },
                ))
            })
            .collect()
    }

    /// Every replica this broker has.
    pub fn partitions(&self) -> &BTreeMap<TopicPartition, Partition> {
        &self.partitions
    }

    /// Takes the controller's answer to a heartbeat: creates the logs of
    /// partitions newly assigned here, and applies every partition's state
    /// (becoming leader or follower where it changed).
    pub fn on_heartbeat_response(
        &mut self,
        storage: &mut impl Storage,
        response: HeartbeatResponse,
        now: Millis,
    ) -> Result<(), LogError> {
        for (tp, state) in response.partitions {
            if !self.partitions.contains_key(&tp) {
                storage.create_log(&tp)?;
                self.open_partition(storage, tp.clone(), 0);
            }
            self.apply(storage, &tp, |partition, log| {
                partition.apply_state(log, state, now)
            })?;
        }
        self.complete_delayed(now);
        Ok(())
    }

    /// Runs `f` on the partition `tp` and its log, then saves its epoch
    /// cache if `f` changed it (Kafka writes `leader-epoch-checkpoint` at
    /// once: truncation after a crash depends on it).
    fn apply<S: Storage, R, E: From<LogError>>(
        &mut self,
        storage: &mut S,
        tp: &TopicPartition,
        f: impl FnOnce(&mut Partition, &mut S::Log) -> Result<R, E>,
    ) -> Result<Option<R>, E> {
        let (Some(partition), Some(log)) = (self.partitions.get_mut(tp), storage.log(tp)) else {
            return Ok(None);
        };
        let result = f(partition, log)?;
        if partition.take_epochs_changed() {
            storage.write_epochs(tp, partition.epochs().entries())?;
        }
        Ok(Some(result))
    }

    /// A producer's batch for `tp`. With `acks` 0 or 1, or on an error, the
    /// answer is returned at once; with `acks=all` the request waits in the
    /// purgatory (`None`) and its answer comes out of
    /// [`ReplicaManager::take_completed`] once the high watermark passes
    /// the batch, or the leader changes, or `request_timeout_ms` passes.
    pub fn produce(
        &mut self,
        storage: &mut impl Storage,
        tp: &TopicPartition,
        batch: &mut [u8],
        acks: Acks,
        now: Millis,
        token: T,
    ) -> Option<(T, Result<AppendInfo, ErrorCode>)> {
        let acks_all = acks == Acks::All;
        let appended = self.apply(storage, tp, |partition, log| {
            Ok::<_, LogError>(partition.append(log, batch, acks_all))
        });
        let info = match appended {
            Ok(Some(Ok(info))) => info,
            Ok(Some(Err(code))) => return Some((token, Err(code))),
            Ok(None) => return Some((token, Err(ErrorCode::NotLeaderOrFollower))),
            Err(e) => return Some((token, Err(log_error_code(&e)))),
        };
        if !acks_all {
            return Some((token, Ok(info)));
        }
        let leader_epoch = self.partitions[tp].state().leader_epoch;
        self.purgatory.push(DelayedProduce {
            tp: tp.clone(),
            leader_epoch,
            info,
            deadline: now + self.config.request_timeout_ms,
            token,
        });
        // A partition whose ISR is the leader alone commits at once.
        self.complete_delayed(now);
        None
    }

    /// Answers every waiting `acks=all` produce that can be answered now.
    fn complete_delayed(&mut self, now: Millis) {
        let mut waiting = Vec::with_capacity(self.purgatory.len());
        for delayed in std::mem::take(&mut self.purgatory) {
            let partition = self.partitions.get(&delayed.tp);
            match delayed_result(partition, &delayed, now) {
                Some(result) => self.completed.push((delayed.token, result)),
                None => waiting.push(delayed),
            }
        }
        self.purgatory = waiting;
    }

    /// The `acks=all` produces answered since the last call.
    pub fn take_completed(&mut self) -> Vec<(T, Result<AppendInfo, ErrorCode>)> {
        std::mem::take(&mut self.completed)
    }

    /// How many `acks=all` produces are waiting.
    pub fn waiting(&self) -> usize {
        self.purgatory.len()
    }

    /// Answers a follower's fetch, partition by partition.
    pub fn on_replica_fetch(
        &mut self,
        storage: &mut impl Storage,
        request: &ReplicaFetchRequest,
        now: Millis,
    ) -> ReplicaFetchResponse {
        let mut partitions = Vec::with_capacity(request.partitions.len());
        for fetch in &request.partitions {
            let answer = self.apply(storage, &fetch.tp, |partition, log| {
                Ok::<_, LogError>(partition.on_replica_fetch(log, request.replica_id, fetch, now))
            });
            partitions.push(match answer {
                Ok(Some(data)) => data,
                _ => crate::protocol::ReplicaFetchData {
                    tp: fetch.tp.clone(),
                    error: ErrorCode::NotLeaderOrFollower,
                    leader_epoch: fetch.leader_epoch,
                    high_watermark: 0,
                    batches: Vec::new(),
                },
            });
        }
        self.complete_delayed(now);
        ReplicaFetchResponse { partitions }
    }

    /// Answers a follower's epoch query, partition by partition.
    pub fn on_epoch_query(
        &mut self,
        storage: &mut impl Storage,
        request: &EpochQueryRequest,
    ) -> EpochQueryResponse {
        let partitions = request
            .partitions
            .iter()
            .map(
                |query| match (self.partitions.get(&query.tp), storage.log(&query.tp)) {
                    (Some(partition), Some(log)) => partition.on_epoch_query(log, query),
                    _ => crate::protocol::EpochAnswer {
                        tp: query.tp.clone(),
                        error: ErrorCode::NotLeaderOrFollower,
                        leader_epoch: query.current_leader_epoch,
                        end: None,
                    },
                },
            )
            .collect();
        EpochQueryResponse { partitions }
    }

    /// A consumer's read of `tp`: committed batches from `offset` on, and
    /// the high watermark.
    pub fn read(
        &self,
        storage: &mut impl Storage,
        tp: &TopicPartition,
        offset: u64,
        max_bytes: u64,
    ) -> Result<(Vec<StoredBatch>, u64), ErrorCode> {
        let partition = self
            .partitions
            .get(tp)
            .ok_or(ErrorCode::NotLeaderOrFollower)?;
        let log = storage.log(tp).ok_or(ErrorCode::NotLeaderOrFollower)?;
        let batches = partition.read_committed(log, offset, max_bytes)?;
        Ok((batches, partition.high_watermark()))
    }

    /// What to send now: each follower's fetch or epoch query, gathered
    /// into one request per leader, and each leader's ISR change.
    ///
    /// Nothing goes to a leader that still owes this broker an answer: as
    /// Kafka's fetcher (one thread per leader) does, a broker waits for
    /// its request to a leader before it sends that leader another, and
    /// the partitions that became ready meanwhile go in the next one. A
    /// leader serves a connection's requests in order and holds a fetch
    /// that finds nothing new for `replica.fetch.wait.max.ms`, so a second
    /// request behind a held one would wait that long: a partition being
    /// written would be fetched only as often as another one's idle fetch
    /// times out, and its `acks=all` writes would wait as long.
    pub fn poll_outgoing(&mut self, storage: &mut impl Storage, now: Millis) -> Vec<Outgoing> {
        let mut fetches: BTreeMap<BrokerId, ReplicaFetchRequest> = BTreeMap::new();
        let mut queries: BTreeMap<BrokerId, EpochQueryRequest> = BTreeMap::new();
        let mut outgoing = Vec::new();
        let awaited: BTreeSet<BrokerId> = self
            .partitions
            .values()
            .filter_map(|p| p.awaiting(now))
            .collect();
        for (tp, partition) in &mut self.partitions {
            if let Some(alter) = partition.poll_alter_partition(now) {
                outgoing.push(Outgoing::AlterPartition(alter));
            }
            if partition.following().is_some_and(|l| awaited.contains(&l)) {
                continue;
            }
            let Some(log) = storage.log(tp) else { continue };
            match partition.poll_request(log, now) {
                Some((leader, FollowerRequest::Fetch(fetch))) => fetches
                    .entry(leader)
                    .or_insert_with(|| ReplicaFetchRequest {
                        replica_id: self.me,
                        partitions: Vec::new(),
                    })
                    .partitions
                    .push(fetch),
                Some((leader, FollowerRequest::EpochQuery(query))) => queries
                    .entry(leader)
                    .or_insert_with(|| EpochQueryRequest {
                        replica_id: self.me,
                        partitions: Vec::new(),
                    })
                    .partitions
                    .push(query),
                None => {}
            }
        }
        outgoing.extend(
            queries
                .into_iter()
                .map(|(to, request)| Outgoing::EpochQuery { to, request }),
        );
        outgoing.extend(
            fetches
                .into_iter()
                .map(|(to, request)| Outgoing::Fetch { to, request }),
        );
        outgoing
    }

    /// Takes a leader's answer to this broker's fetch. A corrupt batch is
    /// refused (nothing stored) and reported; the other partitions of the
    /// answer are still taken.
    pub fn on_fetch_response(
        &mut self,
        storage: &mut impl Storage,
        from: BrokerId,
        response: ReplicaFetchResponse,
    ) -> Result<(), FollowerError> {
        let mut first_error = None;
        for data in response.partitions {
            let tp = data.tp.clone();
            let result = self.apply(storage, &tp, |partition, log| {
                partition.on_fetch_data(log, from, data)
            });
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Takes a leader's answer to this broker's epoch query.
    pub fn on_epoch_response(
        &mut self,
        storage: &mut impl Storage,
        from: BrokerId,
        response: EpochQueryResponse,
    ) -> Result<(), LogError> {
        for answer in response.partitions {
            let tp = answer.tp.clone();
            self.apply(storage, &tp, |partition, log| {
                partition.on_epoch_answer(log, from, answer)
            })?;
        }
        Ok(())
    }

    /// Takes the controller's answer to an ISR change.
    pub fn on_alter_partition_response(
        &mut self,
        storage: &mut impl Storage,
        response: AlterPartitionResponse,
        now: Millis,
    ) -> Result<(), LogError> {
        let tp = response.tp.clone();
        self.apply(storage, &tp, |partition, log| {
            partition.on_alter_partition(log, response, now)
        })?;
        self.complete_delayed(now);
        Ok(())
    }

    /// Time passes: ISR shrinking, produce timeouts, and the
    /// high-watermark checkpoint when its interval is up.
    pub fn tick(&mut self, storage: &mut impl Storage, now: Millis) -> Result<(), LogError> {
        for partition in self.partitions.values_mut() {
            partition.tick(now);
        }
        self.complete_delayed(now);
        if now >= self.last_checkpoint_ms + self.config.high_watermark_checkpoint_interval_ms {
            self.checkpoint_high_watermarks(storage)?;
            self.last_checkpoint_ms = now;
        }
        Ok(())
    }

    /// Writes every partition's high watermark to the checkpoint now (at
    /// a clean shutdown, and every interval).
    pub fn checkpoint_high_watermarks(&self, storage: &mut impl Storage) -> Result<(), LogError> {
        let hws = self
            .partitions
            .iter()
            .map(|(tp, p)| (tp.clone(), p.high_watermark()))
            .collect();
        storage.write_high_watermarks(&hws)
    }
}

/// The answer for a waiting `acks=all` produce, if it has one now (`None`:
/// keep waiting).
fn delayed_result<T>(
    partition: Option<&Partition>,
    delayed: &DelayedProduce<T>,
    now: Millis,
) -> Option<Result<AppendInfo, ErrorCode>> {
    todo!("exercise `complete_delayed`: If `partition` is no longer led here in `delayed.leader_epoch`: NOT_LEADER_OR_FOLLOWER. If its high watermark has passed `delayed.info.last_offset`: `Ok(delayed.info)`. Else, if the ISR is now too small (`isr_too_small`): NOT_ENOUGH_REPLICAS_AFTER_APPEND; or past `delayed.deadline`: REQUEST_TIMED_OUT. Otherwise `None`: keep waiting.")
}

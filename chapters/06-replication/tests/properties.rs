//! Properties, checked on random inputs with proptest:
//!
//! - the leader-epoch cache answers as a simple model does (a list
//!   scanned from one end), and stays strictly increasing;
//! - the simulator's [`MemoryLog`] and chapter 2's [`Log`] give the same
//!   answers to the same operations: the simulator's findings hold for the
//!   real log only if the two implementations of [`ReplicaLog`] agree;
//! - every protocol message survives a bincode round trip;
//! - whatever bytes a leader sends as a batch, the follower does not
//!   panic, and its log changes only by a valid batch that continues it.

mod common;

use std::fmt::Debug;

use ch02_segments::batch::{self, BatchHeader};
use ch02_segments::{Log, LogConfig, Record, StoredBatch};
use ch03_partitions::TopicPartition;
use ch04_network::error::ErrorCode;
use ch04_network::protocol::StoredBytes;
use ch06_replication::epoch::{EpochEnd, EpochEntry, LeaderEpochCache};
use ch06_replication::memory::MemoryLog;
use ch06_replication::protocol::{
    Acks, AlterPartitionRequest, AlterPartitionResponse, BrokerId, CreateReplicatedTopicRequest,
    CreateReplicatedTopicResponse, EpochAnswer, EpochBatch, EpochQuery, EpochQueryRequest,
    EpochQueryResponse, HeartbeatRequest, HeartbeatResponse, PartitionState, ReplicaFetchData,
    ReplicaFetchPartition, ReplicaFetchRequest, ReplicaFetchResponse,
};
use ch06_replication::replica::{FollowerError, ReplicaConfig};
use ch06_replication::storage::ReplicaLog;
use common::{A, B, Replica, state};
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

// The leader-epoch cache against a model.

#[derive(Debug, Clone)]
enum EpochOp {
    Assign { epoch: u32, start_offset: u64 },
    TruncateFromEnd(u64),
}

fn epoch_op() -> impl Strategy<Value = EpochOp> {
    prop_oneof![
        3 => (0..12u32, 0..40u64)
            .prop_map(|(epoch, start_offset)| EpochOp::Assign { epoch, start_offset }),
        1 => (0..45u64).prop_map(EpochOp::TruncateFromEnd),
    ]
}

/// The cache as a plain list of `(epoch, start offset)`, every question
/// answered by scanning it.
#[derive(Debug, Default)]
struct EpochModel(Vec<(u32, u64)>);

impl EpochModel {
    /// An epoch is taken if it is newer than every epoch here and starts
    /// no earlier than any; it replaces whatever starts where it does (an
    /// epoch that wrote nothing).
    fn assign(&mut self, epoch: u32, start: u64) -> bool {
        if self.0.iter().any(|&(e, s)| e >= epoch || s > start) {
            return false;
        }
        self.0.retain(|&(_, s)| s < start);
        self.0.push((epoch, start));
        true
    }

    fn truncate_from_end(&mut self, offset: u64) -> bool {
        let before = self.0.len();
        self.0.retain(|&(_, s)| s < offset);
        self.0.len() != before
    }

    /// The newest epoch at or below `epoch`, and where the first epoch
    /// after it starts (or the log end).
    fn end_offset_for(&self, epoch: u32, log_end: u64) -> Option<(u32, u64)> {
        let found = self.0.iter().rev().find(|&&(e, _)| e <= epoch)?.0;
        let end = self
            .0
            .iter()
            .find(|&&(e, _)| e > epoch)
            .map_or(log_end, |&(_, s)| s);
        Some((found, end))
    }

    fn epoch_at(&self, offset: u64) -> Option<u32> {
        self.0
            .iter()
            .rev()
            .find(|&&(_, s)| s <= offset)
            .map(|&(e, _)| e)
    }
}

fn pairs(cache: &LeaderEpochCache) -> Vec<(u32, u64)> {
    cache
        .entries()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect()
}

fn strictly_increasing(cache: &LeaderEpochCache) -> bool {
    cache
        .entries()
        .windows(2)
        .all(|w| w[0].epoch < w[1].epoch && w[0].start_offset < w[1].start_offset)
}

proptest! {
    #[test]
    fn the_epoch_cache_answers_as_a_linear_scan_does(ops in prop::collection::vec(epoch_op(), 0..40)) {
        let mut cache = LeaderEpochCache::default();
        let mut model = EpochModel::default();
        for op in ops {
            let (changed, expected) = match op {
                EpochOp::Assign { epoch, start_offset } => (
                    cache.assign(epoch, start_offset),
                    model.assign(epoch, start_offset),
                ),
                EpochOp::TruncateFromEnd(offset) => (
                    cache.truncate_from_end(offset),
                    model.truncate_from_end(offset),
                ),
            };
            prop_assert_eq!(changed, expected, "after {:?}", op);
            prop_assert_eq!(pairs(&cache), model.0.clone());
            prop_assert!(strictly_increasing(&cache), "{:?}", cache);
            let log_end = cache.latest().map_or(0, |e| e.start_offset) + 3;
            for epoch in 0..14 {
                let answer = cache.end_offset_for(epoch, log_end).map(|e| (e.epoch, e.end_offset));
                prop_assert_eq!(answer, model.end_offset_for(epoch, log_end), "epoch {}", epoch);
            }
            for offset in 0..log_end {
                prop_assert_eq!(cache.epoch_at(offset), model.epoch_at(offset), "offset {}", offset);
            }
        }
    }

    #[test]
    fn a_cache_read_back_keeps_its_entries_up_to_the_first_out_of_order(
        entries in prop::collection::vec((0..12u32, 0..40u64), 0..10),
    ) {
        let cache = LeaderEpochCache::from_entries(
            entries
                .iter()
                .map(|&(epoch, start_offset)| EpochEntry { epoch, start_offset })
                .collect(),
        );
        prop_assert!(strictly_increasing(&cache));
        let mut model = EpochModel::default();
        for &(epoch, start) in &entries {
            if !model.assign(epoch, start) {
                break;
            }
        }
        prop_assert_eq!(pairs(&cache), model.0);
    }
}

// MemoryLog and chapter 2's Log.

#[derive(Debug, Clone)]
enum LogOp {
    /// A batch of records: (timestamp, value).
    Append(Vec<(i64, Vec<u8>)>),
    Read {
        offset: u64,
        max_bytes: u64,
    },
    TruncateTo(u64),
    Sync,
}

fn log_op() -> impl Strategy<Value = LogOp> {
    let record = (0..1_000i64, prop::collection::vec(any::<u8>(), 0..40));
    prop_oneof![
        4 => prop::collection::vec(record, 1..4).prop_map(LogOp::Append),
        3 => (0..40u64, 1..400u64).prop_map(|(offset, max_bytes)| LogOp::Read { offset, max_bytes }),
        1 => (0..40u64).prop_map(LogOp::TruncateTo),
        1 => Just(LogOp::Sync),
    ]
}

/// What an operation answered, comparable across the two logs (errors by
/// their message).
#[derive(Debug, PartialEq)]
enum Outcome {
    Appended(Result<(u64, u64, Vec<u8>), String>),
    Read(Result<Vec<StoredBatch>, String>),
    Truncated(Result<u64, String>),
    Synced(Result<(), String>),
}

fn apply(log: &mut impl ReplicaLog, op: &LogOp) -> Outcome {
    let text = |e: ch02_segments::LogError| e.to_string();
    match op {
        LogOp::Append(records) => {
            let records: Vec<Record> = records
                .iter()
                .map(|(ts, value)| Record::new(value.clone()).with_timestamp(*ts))
                .collect();
            let mut bytes = batch::encode(&records).unwrap();
            Outcome::Appended(
                log.append(&mut bytes)
                    .map(|info| (info.base_offset, info.last_offset, bytes))
                    .map_err(text),
            )
        }
        LogOp::Read { offset, max_bytes } => {
            Outcome::Read(log.read(*offset, *max_bytes).map_err(text))
        }
        LogOp::TruncateTo(offset) => Outcome::Truncated(log.truncate_to(*offset).map_err(text)),
        LogOp::Sync => Outcome::Synced(log.sync().map_err(text)),
    }
}

/// Runs `ops` on a [`MemoryLog`] and on a [`Log`] with `config`, and checks
/// that they answer alike. Chapter 2's reads stop at the end of a segment,
/// which a [`MemoryLog`] does not have: with several segments, a read of
/// the real log may return fewer batches (never none where the memory log
/// has some, and always the same first ones). Every record has a
/// timestamp: chapter 2 stamps a batch that has none with its clock's time,
/// and a MemoryLog keeps it as it is.
fn agree(config: LogConfig, ops: &[LogOp]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let (mut real, _) = Log::open(dir.path(), config).unwrap();
    let mut memory = MemoryLog::default();
    for op in ops {
        match (apply(&mut memory, op), apply(&mut real, op)) {
            (Outcome::Read(Ok(all)), Outcome::Read(Ok(to_segment_end))) => {
                prop_assert!(all.starts_with(&to_segment_end), "{:?}", op);
                prop_assert_eq!(all.is_empty(), to_segment_end.is_empty(), "{:?}", op);
                if real.segments().len() == 1 {
                    prop_assert_eq!(all, to_segment_end, "{:?}", op);
                }
            }
            (from_memory, from_real) => prop_assert_eq!(from_memory, from_real, "{:?}", op),
        }
        prop_assert_eq!(
            memory.log_start_offset(),
            ReplicaLog::log_start_offset(&real)
        );
        prop_assert_eq!(memory.log_end_offset(), ReplicaLog::log_end_offset(&real));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn memory_log_and_chapter_2s_log_agree(ops in prop::collection::vec(log_op(), 1..30)) {
        // One segment: the records' timestamps are from 1970, and would
        // roll a segment per batch by age.
        agree(LogConfig { segment_ms: None, ..LogConfig::default() }, &ops)?;
    }

    #[test]
    fn memory_log_and_chapter_2s_log_agree_across_segments(
        ops in prop::collection::vec(log_op(), 1..30),
    ) {
        agree(LogConfig { segment_ms: None, segment_bytes: 200, ..LogConfig::default() }, &ops)?;
    }
}

// The protocol on the wire.

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(
    value: &T,
) -> Result<(), TestCaseError> {
    let config = bincode::config::standard();
    let bytes = bincode::serde::encode_to_vec(value, config).unwrap();
    let (back, read): (T, usize) = bincode::serde::decode_from_slice(&bytes, config).unwrap();
    prop_assert_eq!(&back, value);
    prop_assert_eq!(read, bytes.len(), "every byte read");
    Ok(())
}

fn tp() -> impl Strategy<Value = TopicPartition> {
    ("[a-z._-]{1,12}", any::<u32>()).prop_map(|(topic, n)| TopicPartition::new(topic, n))
}

fn brokers() -> impl Strategy<Value = Vec<BrokerId>> {
    prop::collection::vec(any::<BrokerId>(), 0..5)
}

fn error() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        Just(ErrorCode::None),
        Just(ErrorCode::OffsetOutOfRange),
        Just(ErrorCode::NotLeaderOrFollower),
        Just(ErrorCode::FencedLeaderEpoch),
        Just(ErrorCode::UnknownLeaderEpoch),
        Just(ErrorCode::InvalidUpdateVersion),
        Just(ErrorCode::IneligibleReplica),
        Just(ErrorCode::InvalidReplicationFactor),
        Just(ErrorCode::UnknownTopicOrPartition),
        Just(ErrorCode::InvalidPartitions),
    ]
}

fn epoch_end() -> impl Strategy<Value = EpochEnd> {
    (any::<u32>(), any::<u64>()).prop_map(|(epoch, end_offset)| EpochEnd { epoch, end_offset })
}

fn partition_state() -> impl Strategy<Value = PartitionState> {
    (
        any::<Option<BrokerId>>(),
        any::<u32>(),
        any::<u32>(),
        (brokers(), brokers(), brokers(), brokers()),
    )
        .prop_map(
            |(leader, leader_epoch, partition_epoch, (replicas, isr, elr, last_known_elr))| {
                PartitionState {
                    leader,
                    leader_epoch,
                    partition_epoch,
                    replicas,
                    isr,
                    elr,
                    last_known_elr,
                }
            },
        )
}

fn fetch_request() -> impl Strategy<Value = ReplicaFetchRequest> {
    let partition = (tp(), any::<u32>(), any::<u64>(), any::<u32>()).prop_map(
        |(tp, leader_epoch, fetch_offset, max_bytes)| ReplicaFetchPartition {
            tp,
            leader_epoch,
            fetch_offset,
            max_bytes,
        },
    );
    (any::<BrokerId>(), prop::collection::vec(partition, 0..4)).prop_map(
        |(replica_id, partitions)| ReplicaFetchRequest {
            replica_id,
            partitions,
        },
    )
}

fn fetch_response() -> impl Strategy<Value = ReplicaFetchResponse> {
    let epoch_batch =
        (any::<u32>(), prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(epoch, bytes)| {
            EpochBatch {
                epoch,
                bytes: StoredBytes(bytes),
            }
        });
    let data = (
        tp(),
        error(),
        any::<u32>(),
        any::<u64>(),
        prop::collection::vec(epoch_batch, 0..3),
    )
        .prop_map(
            |(tp, error, leader_epoch, high_watermark, batches)| ReplicaFetchData {
                tp,
                error,
                leader_epoch,
                high_watermark,
                batches,
            },
        );
    prop::collection::vec(data, 0..4).prop_map(|partitions| ReplicaFetchResponse { partitions })
}

fn epoch_query_request() -> impl Strategy<Value = EpochQueryRequest> {
    let query = (tp(), any::<u32>(), any::<u32>()).prop_map(|(tp, current_leader_epoch, epoch)| {
        EpochQuery {
            tp,
            current_leader_epoch,
            epoch,
        }
    });
    (any::<BrokerId>(), prop::collection::vec(query, 0..4)).prop_map(|(replica_id, partitions)| {
        EpochQueryRequest {
            replica_id,
            partitions,
        }
    })
}

fn epoch_query_response() -> impl Strategy<Value = EpochQueryResponse> {
    let answer = (tp(), error(), any::<u32>(), prop::option::of(epoch_end())).prop_map(
        |(tp, error, leader_epoch, end)| EpochAnswer {
            tp,
            error,
            leader_epoch,
            end,
        },
    );
    prop::collection::vec(answer, 0..4).prop_map(|partitions| EpochQueryResponse { partitions })
}

fn alter_partition() -> impl Strategy<Value = (AlterPartitionRequest, AlterPartitionResponse)> {
    let request = (
        any::<BrokerId>(),
        tp(),
        any::<u32>(),
        any::<u32>(),
        brokers(),
    )
        .prop_map(|(broker_id, tp, leader_epoch, partition_epoch, new_isr)| {
            AlterPartitionRequest {
                broker_id,
                tp,
                leader_epoch,
                partition_epoch,
                new_isr,
            }
        });
    let response = (tp(), error(), prop::option::of(partition_state()))
        .prop_map(|(tp, error, state)| AlterPartitionResponse { tp, error, state });
    (request, response)
}

fn heartbeat() -> impl Strategy<Value = (HeartbeatRequest, HeartbeatResponse)> {
    let request = (
        any::<BrokerId>(),
        any::<u64>(),
        ".{0,20}",
        prop::collection::vec((tp(), epoch_end()), 0..4),
    )
        .prop_map(
            |(broker_id, incarnation, address, log_ends)| HeartbeatRequest {
                broker_id,
                incarnation,
                address,
                log_ends,
            },
        );
    let response = (
        prop::collection::vec((tp(), partition_state()), 0..4),
        prop::collection::vec((any::<BrokerId>(), ".{0,20}"), 0..4),
    )
        .prop_map(|(partitions, brokers)| HeartbeatResponse {
            partitions,
            brokers,
        });
    (request, response)
}

fn create_topic()
-> impl Strategy<Value = (CreateReplicatedTopicRequest, CreateReplicatedTopicResponse)> {
    let request = (".{0,20}", any::<u32>(), any::<u32>()).prop_map(
        |(name, partitions, replication_factor)| CreateReplicatedTopicRequest {
            name,
            partitions,
            replication_factor,
        },
    );
    let response = (error(), ".{0,40}")
        .prop_map(|(error, message)| CreateReplicatedTopicResponse { error, message });
    (request, response)
}

proptest! {
    #[test]
    fn partition_states_and_acks_round_trip(
        state in partition_state(),
        acks in prop_oneof![Just(Acks::None), Just(Acks::Leader), Just(Acks::All)],
    ) {
        round_trip(&state)?;
        round_trip(&acks)?;
    }

    #[test]
    fn fetches_round_trip(request in fetch_request(), response in fetch_response()) {
        round_trip(&request)?;
        round_trip(&response)?;
    }

    #[test]
    fn epoch_queries_round_trip(request in epoch_query_request(), response in epoch_query_response()) {
        round_trip(&request)?;
        round_trip(&response)?;
    }

    #[test]
    fn alter_partitions_round_trip((request, response) in alter_partition()) {
        round_trip(&request)?;
        round_trip(&response)?;
    }

    #[test]
    fn heartbeats_round_trip((request, response) in heartbeat()) {
        round_trip(&request)?;
        round_trip(&response)?;
    }

    #[test]
    fn topic_creations_round_trip((request, response) in create_topic()) {
        round_trip(&request)?;
        round_trip(&response)?;
    }
}

// Whatever the leader sends.

/// Bytes for a follower whose log ends at 1: anything at all, or a valid
/// batch with bytes changed and maybe cut short, its base offset (if
/// there is room for one) set to 1 or not.
fn fetched_bytes() -> impl Strategy<Value = Vec<u8>> {
    let valid = batch::encode(&[
        Record::new("value").with_timestamp(7),
        Record::new("other")
            .with_key("k")
            .with_header("h", "v")
            .with_timestamp(9),
    ])
    .unwrap();
    let len = valid.len();
    let damaged = (
        prop::collection::vec((0..len, any::<u8>()), 0..4),
        prop::option::of(0..len),
        any::<bool>(),
    )
        .prop_map(move |(flips, cut, at_the_end)| {
            let mut bytes = valid.clone();
            for (at, value) in flips {
                bytes[at] = value;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut);
            }
            if at_the_end && bytes.len() >= 8 {
                batch::set_base_offset(&mut bytes, 1);
            }
            bytes
        });
    prop_oneof![prop::collection::vec(any::<u8>(), 0..80), damaged]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_follower_stores_only_a_valid_batch_that_continues_its_log(bytes in fetched_bytes()) {
        let mut leader = Replica::new(A, ReplicaConfig::default());
        leader.apply(&state(A, 0, &[A, B]), 0);
        leader.produce("a");
        leader.produce("b");
        let mut follower = Replica::new(B, ReplicaConfig::default());
        follower.apply(&state(A, 0, &[A, B]), 0);
        // The follower copies "a", then asks from offset 1.
        let first = leader.answer_fetch(B, 0, 0, 0);
        let first = ReplicaFetchData { batches: first.batches[..1].to_vec(), ..first };
        follower.partition.on_fetch_data(&mut follower.log, A, first).unwrap();
        let mut data = leader.answer_fetch(B, 1, 0, 1);
        data.batches = vec![EpochBatch { epoch: 0, bytes: StoredBytes(bytes.clone()) }];

        let before = follower.log.clone();
        let result = follower.partition.on_fetch_data(&mut follower.log, A, data);
        let at_the_end = BatchHeader::parse(&bytes).map(|h| h.base_offset == 1);
        match (batch::validate(&bytes), at_the_end) {
            (Ok(_), Ok(true)) => {
                prop_assert!(result.is_ok(), "{:?}", result);
                prop_assert_eq!(&follower.log.batches()[..1], before.batches());
                prop_assert_eq!(follower.log.batches().len(), 2);
                prop_assert_eq!(&follower.log.batches()[1].bytes, &bytes);
            }
            (_, Ok(false)) => {
                prop_assert!(result.is_ok(), "not for this follower: skipped");
                prop_assert_eq!(&follower.log, &before);
            }
            (_, _) => {
                let corrupt = matches!(result, Err(FollowerError::CorruptBatch { offset: 1, .. }));
                prop_assert!(corrupt, "{:?}", result);
                prop_assert_eq!(&follower.log, &before);
            }
        }
        prop_assert!(follower.partition.high_watermark() <= follower.log.log_end_offset());
    }
}

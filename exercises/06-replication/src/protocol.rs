//! Sans-IO. The messages of replication, between followers and leaders and
//! between brokers and the controller, with Kafka's names.
//!
//! The simulator passes these values between nodes as they are; the tokio
//! shell encodes them with bincode in chapter 4's frames, under the API
//! keys of [`ReplicationApi`].

use ch03_partitions::TopicPartition;
use ch04_network::error::ErrorCode;
use ch04_network::protocol::StoredBytes;
use serde::{Deserialize, Serialize};

use crate::epoch::EpochEnd;

/// A broker's id (Kafka's `node.id`).
pub type BrokerId = u32;

/// The replication APIs, with Kafka's API key numbers (their bodies are
/// this chapter's, not Kafka's: chapter 11 speaks Kafka's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicationApi {
    /// A follower's fetch. Kafka uses the Fetch API (key 1) with the
    /// follower's id in `replica_id`; this course gives the follower's
    /// fetch a key of its own, outside Kafka's numbers, so chapter 4's
    /// consumer fetch keeps its body.
    ReplicaFetch = 1001,
    /// Where does an epoch end in the leader's log? (KIP-101, key 23.)
    OffsetsForLeaderEpoch = 23,
    /// A leader asks the controller to change the ISR (KIP-497, key 56).
    AlterPartition = 56,
    /// A broker tells the controller it is alive, and learns the
    /// partitions' state (KRaft's BrokerHeartbeat, key 63).
    BrokerHeartbeat = 63,
    /// Create a replicated topic through the controller (key 19 is
    /// chapter 4's CreateTopics; this one carries replica assignment).
    CreateReplicatedTopic = 1019,
}

impl ReplicationApi {
    /// The API for a key number, if it is one of these.
    pub fn from_u16(key: u16) -> Option<ReplicationApi> {
        Some(match key {
            1001 => ReplicationApi::ReplicaFetch,
            23 => ReplicationApi::OffsetsForLeaderEpoch,
            56 => ReplicationApi::AlterPartition,
            63 => ReplicationApi::BrokerHeartbeat,
            1019 => ReplicationApi::CreateReplicatedTopic,
            _ => return None,
        })
    }
}

/// How many replicas must have a write before the producer hears of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Acks {
    /// `acks=0`: no answer at all.
    None,
    /// `acks=1`: once the leader has appended it.
    Leader,
    /// `acks=all` (`-1`): once every in-sync replica has it, that is, once
    /// the high watermark passes it.
    All,
}

impl Acks {
    /// The setting from its number on the wire: 0, 1 or -1.
    pub fn from_i8(acks: i8) -> Option<Acks> {
        match acks {
            0 => Some(Acks::None),
            1 => Some(Acks::Leader),
            -1 => Some(Acks::All),
            _ => None,
        }
    }
}

/// One partition's state as the controller decided it (Kafka's
/// `PartitionRegistration`, sent to brokers as `LeaderAndIsr` once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// The leader, or `None` while the partition has none (offline).
    pub leader: Option<BrokerId>,
    /// Bumped on every change of leader.
    pub leader_epoch: u32,
    /// Bumped on every change at all (leader or ISR): an AlterPartition
    /// built on an older one is refused.
    pub partition_epoch: u32,
    /// Every replica, in preference order.
    pub replicas: Vec<BrokerId>,
    /// The in-sync replicas, the leader among them.
    pub isr: Vec<BrokerId>,
    /// The eligible leader replicas (KIP-966): replicas the controller took
    /// out of the ISR when it fell below `min.insync.replicas`. They hold
    /// every write acknowledged before, so one may lead when no ISR member
    /// is left.
    pub elr: Vec<BrokerId>,
    /// Eligible replicas that have since restarted after a crash (KIP-966's
    /// `LastKnownElr`): each may have lost its unsynced tail, so none is
    /// trusted alone; once all are back, the one with the longest log leads.
    pub last_known_elr: Vec<BrokerId>,
}

/// A follower's fetch: from each partition it follows on one leader, the
/// records from its log end on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaFetchRequest {
    /// The follower.
    pub replica_id: BrokerId,
    /// What to read.
    pub partitions: Vec<ReplicaFetchPartition>,
}

/// One partition of a [`ReplicaFetchRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaFetchPartition {
    /// The partition.
    pub tp: TopicPartition,
    /// The leader epoch the follower knows (KIP-320): the leader refuses
    /// a fetch from another epoch, so neither side acts on stale state.
    pub leader_epoch: u32,
    /// The follower's log end offset: it has every record below it.
    pub fetch_offset: u64,
    /// At most about this many bytes.
    pub max_bytes: u32,
}

/// The answer to a [`ReplicaFetchRequest`], partition by partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaFetchResponse {
    /// One entry per partition asked for.
    pub partitions: Vec<ReplicaFetchData>,
}

/// One partition's answer to a follower.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaFetchData {
    /// The partition.
    pub tp: TopicPartition,
    /// `None` on success.
    pub error: ErrorCode,
    /// The leader epoch of the fetch this answers: a follower ignores an
    /// answer from an epoch it has left.
    pub leader_epoch: u32,
    /// The leader's high watermark: the follower's may go up to it.
    pub high_watermark: u64,
    /// Whole stored batches from the fetch offset on, each with the
    /// leader epoch that wrote it.
    pub batches: Vec<EpochBatch>,
}

/// A stored batch and the leader epoch that appended it. Kafka keeps the
/// epoch in the batch header (`partitionLeaderEpoch`); chapter 2's batches
/// have no such field, so the leader looks it up in its epoch cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochBatch {
    /// The epoch that wrote the batch.
    pub epoch: u32,
    /// The batch, as stored.
    pub bytes: StoredBytes,
}

/// "Where does this epoch end in your log?", asked by a follower of its
/// new leader before it fetches (Kafka's OffsetsForLeaderEpoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochQueryRequest {
    /// The follower.
    pub replica_id: BrokerId,
    /// One query per partition.
    pub partitions: Vec<EpochQuery>,
}

/// One partition of an [`EpochQueryRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochQuery {
    /// The partition.
    pub tp: TopicPartition,
    /// The leader epoch the follower knows now (fencing, as in a fetch).
    pub current_leader_epoch: u32,
    /// The latest epoch in the follower's own log.
    pub epoch: u32,
}

/// The answer to an [`EpochQueryRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochQueryResponse {
    /// One answer per partition asked about.
    pub partitions: Vec<EpochAnswer>,
}

/// One partition's answer: where the epoch ends on the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochAnswer {
    /// The partition.
    pub tp: TopicPartition,
    /// `None` on success.
    pub error: ErrorCode,
    /// The leader epoch of the query this answers.
    pub leader_epoch: u32,
    /// The leader's answer; `None` if every epoch it knows is newer than
    /// the one asked about (the follower keeps nothing).
    pub end: Option<EpochEnd>,
}

/// A leader asks the controller to change a partition's ISR (Kafka's
/// AlterPartition, KIP-497).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterPartitionRequest {
    /// The leader asking.
    pub broker_id: BrokerId,
    /// The partition.
    pub tp: TopicPartition,
    /// The leader's epoch: a deposed leader's request is refused.
    pub leader_epoch: u32,
    /// The partition epoch the change is built on.
    pub partition_epoch: u32,
    /// The ISR wanted.
    pub new_isr: Vec<BrokerId>,
}

/// The controller's answer to an [`AlterPartitionRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterPartitionResponse {
    /// The partition.
    pub tp: TopicPartition,
    /// `None` if the change was made.
    pub error: ErrorCode,
    /// The partition's state now (changed or not), so the leader can
    /// catch up at once.
    pub state: Option<PartitionState>,
}

/// A broker's heartbeat to the controller. A broker that misses them for
/// the session timeout is fenced: it leads and follows nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    /// The broker.
    pub broker_id: BrokerId,
    /// Which run of the broker this is, new at every start: a broker that
    /// comes back with a new one has restarted, and may have lost its
    /// unsynced records (KRaft's `incarnationId`).
    pub incarnation: u64,
    /// Where other brokers and clients reach it (`host:port`; empty in the
    /// simulator).
    pub address: String,
    /// Where each of its logs ends: the latest leader epoch in it and its
    /// log end offset. The controller needs them only to choose among
    /// replicas that all crashed (KIP-966's unclean recovery).
    pub log_ends: Vec<(TopicPartition, EpochEnd)>,
}

/// The controller's answer to a heartbeat: the state of every partition
/// the broker holds a replica of, and where every live broker is. (KRaft
/// brokers instead replay the controller's metadata log; answering each
/// heartbeat with the current state is the same idea without the log, and
/// it survives lost messages: the next heartbeat brings everything again.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// The partitions this broker is a replica of, and their state.
    pub partitions: Vec<(TopicPartition, PartitionState)>,
    /// The live brokers and their addresses.
    pub brokers: Vec<(BrokerId, String)>,
}

/// Create a topic whose partitions are replicated, through the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateReplicatedTopicRequest {
    /// The topic.
    pub name: String,
    /// How many partitions.
    pub partitions: u32,
    /// How many replicas each.
    pub replication_factor: u32,
}

/// The answer to a [`CreateReplicatedTopicRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateReplicatedTopicResponse {
    /// `None` if the topic was created.
    pub error: ErrorCode,
    /// Why not, if it was not.
    pub message: String,
}

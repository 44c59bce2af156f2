//! The group APIs' messages, with Kafka's API key numbers and the fields of
//! Kafka's classic group protocol, in chapter 4's framing and bincode.
//! Sans-IO, like chapter 4's protocol module.

use ch03_partitions::TopicPartition;
use ch04_network::ErrorCode;
use serde::{Deserialize, Serialize};

/// The group APIs, with Kafka's API key numbers. Any other key goes on to
/// chapter 4's broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupApi {
    /// Store a group's positions.
    OffsetCommit = 8,
    /// Read a group's positions.
    OffsetFetch = 9,
    /// Which broker coordinates a group.
    FindCoordinator = 10,
    /// Join a group (and wait for the rest to join).
    JoinGroup = 11,
    /// "I am alive" from a member.
    Heartbeat = 12,
    /// Leave a group now, instead of timing out.
    LeaveGroup = 13,
    /// The leader hands in the assignment; every member gets its part.
    SyncGroup = 14,
    /// Groups' states, members and assignments.
    DescribeGroups = 15,
    /// The groups this broker coordinates.
    ListGroups = 16,
}

impl GroupApi {
    /// The API for a key number, if it is a group API.
    pub fn from_u16(key: u16) -> Option<GroupApi> {
        Some(match key {
            8 => GroupApi::OffsetCommit,
            9 => GroupApi::OffsetFetch,
            10 => GroupApi::FindCoordinator,
            11 => GroupApi::JoinGroup,
            12 => GroupApi::Heartbeat,
            13 => GroupApi::LeaveGroup,
            14 => GroupApi::SyncGroup,
            15 => GroupApi::DescribeGroups,
            16 => GroupApi::ListGroups,
            _ => return None,
        })
    }
}

impl From<GroupApi> for u16 {
    fn from(api: GroupApi) -> u16 {
        api as u16
    }
}

/// The protocol type consumers use; other kinds of groups (Kafka Connect's
/// workers, say) use other types with the same coordinator.
pub const CONSUMER_PROTOCOL: &str = "consumer";

/// Which broker coordinates group `key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindCoordinatorRequest {
    /// The group id.
    pub key: String,
}

/// Where the group's coordinator is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindCoordinatorResponse {
    /// `InvalidGroupId` for an empty id.
    pub error: ErrorCode,
    /// The coordinator's broker id.
    pub node_id: u32,
    /// Its host.
    pub host: String,
    /// Its port.
    pub port: u16,
}

/// Join a group, or rejoin it for a rebalance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinGroupRequest {
    /// The group.
    pub group_id: String,
    /// Drop the member if no heartbeat comes for this long
    /// (`session.timeout.ms`).
    pub session_timeout_ms: u32,
    /// How long the coordinator waits for every member to rejoin in a
    /// rebalance (the consumer sends its `max.poll.interval.ms`).
    pub rebalance_timeout_ms: u32,
    /// Empty on the first join; then the id the coordinator gave.
    pub member_id: String,
    /// Who the member is, for people (`client.id`).
    pub client_id: String,
    /// [`CONSUMER_PROTOCOL`] for consumers.
    pub protocol_type: String,
    /// The assignors the member can use, in its order of preference, each
    /// with the member's metadata for it (an encoded [`Subscription`]).
    pub protocols: Vec<(String, Vec<u8>)>,
}

/// The answer to a join, sent once the group has formed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinGroupResponse {
    /// `MemberIdRequired` on a first join (rejoin with `member_id`),
    /// `UnknownMemberId`, `InconsistentGroupProtocol`, ...
    pub error: ErrorCode,
    /// The new generation of the group.
    pub generation_id: i32,
    /// The assignor every member supports, chosen by vote.
    pub protocol_name: String,
    /// The member that computes the assignment.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// For the leader only: every member and its metadata.
    pub members: Vec<(String, Vec<u8>)>,
}

/// Hand in the assignment (the leader), or ask for one's part (everyone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncGroupRequest {
    /// The group.
    pub group_id: String,
    /// The generation the assignment is for.
    pub generation_id: i32,
    /// The sender.
    pub member_id: String,
    /// From the leader: each member's encoded [`Assignment`]. Empty from
    /// everyone else.
    pub assignments: Vec<(String, Vec<u8>)>,
}

/// This member's part of the assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncGroupResponse {
    /// `RebalanceInProgress`, `IllegalGeneration`, `UnknownMemberId`, ...
    pub error: ErrorCode,
    /// An encoded [`Assignment`].
    pub assignment: Vec<u8>,
}

/// A member is alive, in a generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    /// The group.
    pub group_id: String,
    /// The member's generation.
    pub generation_id: i32,
    /// The member.
    pub member_id: String,
}

/// Answers to heartbeats and leaves: only an error code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorOnly {
    /// `RebalanceInProgress` tells a live member to rejoin.
    pub error: ErrorCode,
}

/// Leave the group now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveGroupRequest {
    /// The group.
    pub group_id: String,
    /// The member.
    pub member_id: String,
}

/// One partition's position, to commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitPartition {
    /// The partition.
    pub partition: u32,
    /// The next offset to read: one past the last record processed.
    pub offset: u64,
    /// Free text stored with it (at most 4096 bytes, Kafka's
    /// `offset.metadata.max.bytes`).
    pub metadata: String,
}

/// Store positions for a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetCommitRequest {
    /// The group.
    pub group_id: String,
    /// The committer's generation, or -1 for a consumer outside group
    /// management (one that assigns itself partitions).
    pub generation_id: i32,
    /// The committer, or empty with generation -1.
    pub member_id: String,
    /// Per topic, the positions.
    pub topics: Vec<(String, Vec<CommitPartition>)>,
}

/// Per topic, per partition, whether the commit was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetCommitResponse {
    /// Per topic, `(partition, error)`.
    pub topics: Vec<(String, Vec<(u32, ErrorCode)>)>,
}

/// Read a group's positions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetFetchRequest {
    /// The group.
    pub group_id: String,
    /// Per topic, the partitions; `None` for every committed partition.
    pub topics: Option<Vec<(String, Vec<u32>)>>,
}

/// One partition's committed position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchedOffset {
    /// The partition.
    pub partition: u32,
    /// The committed offset; `None` if there is none.
    pub offset: Option<u64>,
    /// What was committed with it.
    pub metadata: String,
}

/// A group's committed positions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetFetchResponse {
    /// `InvalidGroupId` for an empty id.
    pub error: ErrorCode,
    /// Per topic, the positions.
    pub topics: Vec<(String, Vec<FetchedOffset>)>,
}

/// List the groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListGroupsRequest {}

/// The groups, each with its protocol type and state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListGroupsResponse {
    /// `(group id, protocol type, state)`.
    pub groups: Vec<(String, String, String)>,
}

/// Describe groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribeGroupsRequest {
    /// The groups.
    pub groups: Vec<String>,
}

/// One member, as `kafka-consumer-groups --describe --members` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberDescription {
    /// Its id.
    pub member_id: String,
    /// Its `client.id`.
    pub client_id: String,
    /// Its metadata for the group's protocol (an encoded
    /// [`Subscription`]).
    pub metadata: Vec<u8>,
    /// Its part of the assignment (an encoded [`Assignment`]).
    pub assignment: Vec<u8>,
}

/// One group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDescription {
    /// `GroupIdNotFound` if there is no such group.
    pub error: ErrorCode,
    /// The group.
    pub group_id: String,
    /// Its state: `Empty`, `PreparingRebalance`, `CompletingRebalance`,
    /// `Stable` or `Dead`.
    pub state: String,
    /// Its protocol type.
    pub protocol_type: String,
    /// Its chosen assignor.
    pub protocol: String,
    /// Its generation.
    pub generation_id: i32,
    /// Its members.
    pub members: Vec<MemberDescription>,
}

/// The groups described.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribeGroupsResponse {
    /// One per group asked for.
    pub groups: Vec<GroupDescription>,
}

/// What a consumer tells the leader when it joins: the metadata of the
/// consumer protocol. (Kafka's `ConsumerProtocolSubscription`.)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// The topics it wants to read.
    pub topics: Vec<String>,
    /// The partitions it read in the last generation, for assignors that
    /// keep partitions where they were (sticky).
    pub owned: Vec<TopicPartition>,
}

/// What the leader gives each consumer: its partitions, per topic.
/// (Kafka's `ConsumerProtocolAssignment`.)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// Per topic, the partitions, ascending.
    pub partitions: Vec<(String, Vec<u32>)>,
}

impl Assignment {
    /// Every `(topic, partition)`, in order.
    pub fn flatten(&self) -> Vec<TopicPartition> {
        self.partitions
            .iter()
            .flat_map(|(topic, ps)| ps.iter().map(move |&p| TopicPartition::new(topic, p)))
            .collect()
    }
}

/// Encodes consumer-protocol metadata (a [`Subscription`] or an
/// [`Assignment`]) as the opaque bytes the group APIs carry.
pub fn encode_metadata<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .expect("encoding to memory cannot fail")
}

/// Decodes consumer-protocol metadata; bytes from another member may be
/// anything, so this is an error, never a panic.
pub fn decode_metadata<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    ch04_network::protocol::decode_body(bytes)
}

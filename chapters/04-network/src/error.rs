//! Error codes on the wire (Kafka's numbers and names), and the errors the
//! clients return.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An error code in a response, with Kafka's number. `None` is success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// Success.
    None,
    /// The broker failed in a way it did not expect.
    UnknownServerError,
    /// The offset is not in the partition.
    OffsetOutOfRange,
    /// The batch's bytes are not a valid batch.
    CorruptMessage,
    /// No such topic or partition. Retriable: it may be being created.
    UnknownTopicOrPartition,
    /// The request timed out on the broker. Retriable.
    RequestTimedOut,
    /// A batch is larger than the topic's `max.message.bytes`.
    MessageTooLarge,
    /// A topic name breaks the rules.
    InvalidTopicException,
    /// The broker does not speak this API or version.
    UnsupportedVersion,
    /// The topic exists already.
    TopicAlreadyExists,
    /// A partition count that cannot be.
    InvalidPartitions,
    /// A bad topic setting.
    InvalidConfig,
    /// The request is malformed.
    InvalidRequest,
    /// The broker's disk failed.
    KafkaStorageError,
    // Consumer groups (chapter 5) from here on. (Added at the end: bincode
    // numbers variants in order, so old codes keep their encoding.)
    /// The group coordinator is not running (yet).
    CoordinatorNotAvailable,
    /// This broker is not the group's coordinator.
    NotCoordinator,
    /// A request from an old generation of the group.
    IllegalGeneration,
    /// The member's protocols share none with the group's.
    InconsistentGroupProtocol,
    /// An empty or otherwise unusable group id.
    InvalidGroupId,
    /// The group does not know this member (it left, or timed out).
    UnknownMemberId,
    /// A session timeout outside the broker's allowed range.
    InvalidSessionTimeout,
    /// The group is rebalancing: join again.
    RebalanceInProgress,
    /// A commit's metadata string is too large.
    OffsetMetadataTooLarge,
    /// The group does not exist.
    GroupIdNotFound,
    /// The group still has members.
    NonEmptyGroup,
    /// A first JoinGroup: here is your member id, join again with it
    /// (KIP-394).
    MemberIdRequired,
    // Replication (chapter 6) from here on.
    /// No leader for the partition right now (an election is under way, or
    /// no in-sync replica is alive). Retriable.
    LeaderNotAvailable,
    /// This broker is not the partition's leader (or, for a follower's
    /// fetch, not a replica of it). Retriable: ask for metadata again.
    NotLeaderOrFollower,
    /// Fewer in-sync replicas than `min.insync.replicas`: the write was
    /// refused before it was appended. Retriable.
    NotEnoughReplicas,
    /// The write was appended, but the in-sync replicas shrank below
    /// `min.insync.replicas` before it was committed. Retriable.
    NotEnoughReplicasAfterAppend,
    /// The request carries an older leader epoch than the broker's: the
    /// sender is behind (KIP-320).
    FencedLeaderEpoch,
    /// The request carries a newer leader epoch than the broker knows: the
    /// broker is behind. Retriable.
    UnknownLeaderEpoch,
    /// A partition change built on an old partition epoch (AlterPartition).
    InvalidUpdateVersion,
    /// A replica that may not join the in-sync set (its broker is fenced).
    IneligibleReplica,
    /// A replication factor below 1, or above the number of live brokers.
    InvalidReplicationFactor,
    // The cluster (chapter 8) from here on.
    /// The request carries an older controller epoch than one the broker
    /// has obeyed: it comes from a deposed controller.
    StaleControllerEpoch,
    /// This broker is not the controller. Retriable: find the controller
    /// again.
    NotController,
    /// The broker is not registered in the cluster (its session ended, or
    /// it never joined). Retriable: register again.
    BrokerIdNotRegistered,
}

impl ErrorCode {
    /// Kafka's number for the code.
    pub fn code(self) -> i16 {
        match self {
            ErrorCode::None => 0,
            ErrorCode::UnknownServerError => -1,
            ErrorCode::OffsetOutOfRange => 1,
            ErrorCode::CorruptMessage => 2,
            ErrorCode::UnknownTopicOrPartition => 3,
            ErrorCode::RequestTimedOut => 7,
            ErrorCode::MessageTooLarge => 10,
            ErrorCode::InvalidTopicException => 17,
            ErrorCode::UnsupportedVersion => 35,
            ErrorCode::TopicAlreadyExists => 36,
            ErrorCode::InvalidPartitions => 37,
            ErrorCode::InvalidConfig => 40,
            ErrorCode::InvalidRequest => 42,
            ErrorCode::KafkaStorageError => 56,
            ErrorCode::CoordinatorNotAvailable => 15,
            ErrorCode::NotCoordinator => 16,
            ErrorCode::IllegalGeneration => 22,
            ErrorCode::InconsistentGroupProtocol => 23,
            ErrorCode::InvalidGroupId => 24,
            ErrorCode::UnknownMemberId => 25,
            ErrorCode::InvalidSessionTimeout => 26,
            ErrorCode::RebalanceInProgress => 27,
            ErrorCode::OffsetMetadataTooLarge => 12,
            ErrorCode::GroupIdNotFound => 69,
            ErrorCode::NonEmptyGroup => 68,
            ErrorCode::MemberIdRequired => 79,
            ErrorCode::LeaderNotAvailable => 5,
            ErrorCode::NotLeaderOrFollower => 6,
            ErrorCode::NotEnoughReplicas => 19,
            ErrorCode::NotEnoughReplicasAfterAppend => 20,
            ErrorCode::FencedLeaderEpoch => 74,
            ErrorCode::UnknownLeaderEpoch => 75,
            ErrorCode::InvalidUpdateVersion => 95,
            ErrorCode::IneligibleReplica => 107,
            ErrorCode::InvalidReplicationFactor => 38,
            ErrorCode::StaleControllerEpoch => 11,
            ErrorCode::NotController => 41,
            ErrorCode::BrokerIdNotRegistered => 102,
        }
    }

    /// Kafka's name for the code, as its tools print it.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::None => "NONE",
            ErrorCode::UnknownServerError => "UNKNOWN_SERVER_ERROR",
            ErrorCode::OffsetOutOfRange => "OFFSET_OUT_OF_RANGE",
            ErrorCode::CorruptMessage => "CORRUPT_MESSAGE",
            ErrorCode::UnknownTopicOrPartition => "UNKNOWN_TOPIC_OR_PARTITION",
            ErrorCode::RequestTimedOut => "REQUEST_TIMED_OUT",
            ErrorCode::MessageTooLarge => "MESSAGE_TOO_LARGE",
            ErrorCode::InvalidTopicException => "INVALID_TOPIC_EXCEPTION",
            ErrorCode::UnsupportedVersion => "UNSUPPORTED_VERSION",
            ErrorCode::TopicAlreadyExists => "TOPIC_ALREADY_EXISTS",
            ErrorCode::InvalidPartitions => "INVALID_PARTITIONS",
            ErrorCode::InvalidConfig => "INVALID_CONFIG",
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::KafkaStorageError => "KAFKA_STORAGE_ERROR",
            ErrorCode::CoordinatorNotAvailable => "COORDINATOR_NOT_AVAILABLE",
            ErrorCode::NotCoordinator => "NOT_COORDINATOR",
            ErrorCode::IllegalGeneration => "ILLEGAL_GENERATION",
            ErrorCode::InconsistentGroupProtocol => "INCONSISTENT_GROUP_PROTOCOL",
            ErrorCode::InvalidGroupId => "INVALID_GROUP_ID",
            ErrorCode::UnknownMemberId => "UNKNOWN_MEMBER_ID",
            ErrorCode::InvalidSessionTimeout => "INVALID_SESSION_TIMEOUT",
            ErrorCode::RebalanceInProgress => "REBALANCE_IN_PROGRESS",
            ErrorCode::OffsetMetadataTooLarge => "OFFSET_METADATA_TOO_LARGE",
            ErrorCode::GroupIdNotFound => "GROUP_ID_NOT_FOUND",
            ErrorCode::NonEmptyGroup => "NON_EMPTY_GROUP",
            ErrorCode::MemberIdRequired => "MEMBER_ID_REQUIRED",
            ErrorCode::LeaderNotAvailable => "LEADER_NOT_AVAILABLE",
            ErrorCode::NotLeaderOrFollower => "NOT_LEADER_OR_FOLLOWER",
            ErrorCode::NotEnoughReplicas => "NOT_ENOUGH_REPLICAS",
            ErrorCode::NotEnoughReplicasAfterAppend => "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
            ErrorCode::FencedLeaderEpoch => "FENCED_LEADER_EPOCH",
            ErrorCode::UnknownLeaderEpoch => "UNKNOWN_LEADER_EPOCH",
            ErrorCode::InvalidUpdateVersion => "INVALID_UPDATE_VERSION",
            ErrorCode::IneligibleReplica => "INELIGIBLE_REPLICA",
            ErrorCode::InvalidReplicationFactor => "INVALID_REPLICATION_FACTOR",
            ErrorCode::StaleControllerEpoch => "STALE_CONTROLLER_EPOCH",
            ErrorCode::NotController => "NOT_CONTROLLER",
            ErrorCode::BrokerIdNotRegistered => "BROKER_ID_NOT_REGISTERED",
        }
    }

    /// Whether sending the same request again may succeed.
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            ErrorCode::UnknownTopicOrPartition
                | ErrorCode::RequestTimedOut
                | ErrorCode::KafkaStorageError
                | ErrorCode::CoordinatorNotAvailable
                | ErrorCode::NotCoordinator
                | ErrorCode::LeaderNotAvailable
                | ErrorCode::NotLeaderOrFollower
                | ErrorCode::NotEnoughReplicas
                | ErrorCode::NotEnoughReplicasAfterAppend
                | ErrorCode::UnknownLeaderEpoch
                | ErrorCode::NotController
                | ErrorCode::BrokerIdNotRegistered
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

/// What a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The broker could not be reached, the connection broke, or the
    /// broker sent bytes that are not a response frame (the client closed
    /// the connection). Retriable: the next call connects again.
    #[error("connection to {addr}: {source}")]
    Io {
        /// The broker's address.
        addr: String,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The broker answered with an error code.
    #[error("{code}: {message}")]
    Broker {
        /// The code.
        code: ErrorCode,
        /// The broker's explanation, or what was asked.
        message: String,
    },
    /// The broker's answer could not be decoded.
    #[error("bad response from the broker: {0}")]
    Protocol(String),
    /// No answer in time.
    #[error("timed out after {0} ms")]
    Timeout(u64),
    /// The client was closed.
    #[error("the client is closed")]
    Closed,
}

impl ClientError {
    /// The broker's error code, if this error is one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether making the same call again may succeed: the connection
    /// broke or the call timed out (the client connects again on the next
    /// call), or the broker's code is one that may pass. Kafka calls these
    /// `RetriableException`s.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Io { .. } | ClientError::Timeout(_) => true,
            ClientError::Broker { code, .. } => code.is_retriable(),
            ClientError::Protocol(_) | ClientError::Closed => false,
        }
    }

    /// An equal error, for when one failure is the answer to several
    /// calls (every record of a batch). `std::io::Error` is not `Clone`:
    /// the copy keeps its kind and message.
    pub fn duplicate(&self) -> ClientError {
        match self {
            ClientError::Io { addr, source } => ClientError::Io {
                addr: addr.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            ClientError::Broker { code, message } => ClientError::Broker {
                code: *code,
                message: message.clone(),
            },
            ClientError::Protocol(message) => ClientError::Protocol(message.clone()),
            ClientError::Timeout(ms) => ClientError::Timeout(*ms),
            ClientError::Closed => ClientError::Closed,
        }
    }
}

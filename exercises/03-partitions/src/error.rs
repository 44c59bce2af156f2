//! The errors a [`crate::TopicStore`] can return.

use std::io;
use std::path::{Path, PathBuf};

use ch02_segments::LogError;

use crate::config::ConfigError;
use crate::name::NameError;

/// Everything that can go wrong with topics and partitions. Each names
/// Kafka's error code where there is one.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The topic name breaks a naming rule (`INVALID_TOPIC_EXCEPTION`).
    #[error("invalid topic name: {0}")]
    InvalidName(#[from] NameError),

    /// A topic of that name exists (`TOPIC_ALREADY_EXISTS`).
    #[error("topic {0:?} already exists")]
    TopicExists(String),

    /// The name differs from an existing topic's only in `.` against `_`
    /// (`INVALID_TOPIC_EXCEPTION`, as Kafka reports it).
    #[error(
        "topic {name:?} collides with existing topic {existing:?} ('.' and '_' are the same in metric names)"
    )]
    Collision {
        /// The name asked for.
        name: String,
        /// The topic it collides with.
        existing: String,
    },

    /// No topic of that name (`UNKNOWN_TOPIC_OR_PARTITION`).
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),

    /// The topic has no such partition (`UNKNOWN_TOPIC_OR_PARTITION`).
    #[error("topic {topic:?} has no partition {partition} (it has {count})")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// How many partitions the topic has.
        count: u32,
    },

    /// A partition count that cannot be (`INVALID_PARTITIONS`).
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),

    /// A bad or unsupported topic setting (`INVALID_CONFIG`).
    #[error(transparent)]
    InvalidConfig(#[from] ConfigError),

    /// The topic metadata file cannot be read. Nothing is deleted when this
    /// happens: the partitions are still on disk for an operator to look at.
    #[error("topic metadata {}: {detail}", path.display())]
    Metadata {
        /// The metadata file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },

    /// Another store (in this process or another) has the directory open.
    #[error("the data directory {} is in use by another process", dir.display())]
    Locked {
        /// The data directory.
        dir: PathBuf,
    },

    /// A partition's log failed.
    #[error("partition {topic}-{partition}: {source}")]
    Log {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The log's error.
        source: LogError,
    },

    /// The operating system refused a file operation.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
}

impl StoreError {
    /// A [`StoreError::Io`] for `path`.
    pub(crate) fn io(path: impl AsRef<Path>, source: io::Error) -> StoreError {
        StoreError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}

/// A `Result` whose error is a [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

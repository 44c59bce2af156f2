//! # Chapter 3: topics and partitions
//!
//! A *topic* is a name for a set of *partitions*, and each partition is
//! one chapter 2 log. The partition is Kafka's unit of order (records are
//! ordered within a partition, not across them), of parallelism (one
//! consumer per partition in a group, chapter 5) and of replication
//! (chapter 6). The record's *key* decides its partition, so all records
//! with one key stay in order.
//!
//! ```
//! use ch03_partitions::{TopicStore, TopicConfig, partition_for_key};
//! use ch02_segments::Record;
//!
//! let dir = tempfile::tempdir()?;
//! let (mut store, _report) = TopicStore::open(dir.path())?;
//! store.create_topic("orders", 3, TopicConfig::default())?;
//! let partition = partition_for_key(b"customer-42", 3); // as the Java client would
//! store.append("orders", partition, &[Record::new("shoes").with_key("customer-42")])?;
//! assert_eq!(store.describe("orders")?.partitions[partition as usize].log_end_offset, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Layout
//!
//! - [`name`]: topic name rules, as Kafka's, with an error per rule, and
//!   the `.`/`_` collision rule. Pure.
//! - [`config`]: [`TopicConfig`], a topic's settings by Kafka's names
//!   (`retention.ms`, `segment.bytes`, `cleanup.policy`, ...), and how it
//!   becomes each partition's chapter 2 `LogConfig`. Pure.
//! - [`partitioner`]: Kafka's `murmur2` and [`partition_for_key`], the
//!   [`Partitioner`] trait, the sticky [`DefaultPartitioner`] (KIP-480) and
//!   a round-robin one. Pure.
//! - [`accumulator`]: the producer's per-partition batches, which drive the
//!   sticky partitioner. Pure (sans-IO); chapter 4's producer wraps it.
//! - [`metadata`]: `topics.meta`, the crash-safe record of which topics
//!   exist, replaced atomically (write, sync, rename, sync the directory).
//! - [`store`]: [`TopicStore`], the data directory of partition logs
//!   (`<data>/<topic>-<partition>/`): create, describe, add partitions and
//!   delete topics; recovery of interrupted changes on open.
//! - [`topic_partition`]: [`TopicPartition`], the name of one partition
//!   of one topic, the key of everything per partition from here on.
//! - [`error`]: [`StoreError`], with Kafka's error code names.
//!
//! ## How this differs from real Kafka
//!
//! - **Topic metadata lives in a file in the data directory.** Kafka keeps
//!   it in the controller's metadata log (KRaft, KIP-500; ZooKeeper before
//!   that), because a cluster has many brokers; each partition directory
//!   also holds a `partition.metadata` file with the topic's id (KIP-516).
//!   Chapter 8 moves metadata to the coordinator.
//! - **Topics are named, not numbered.** Kafka gives each topic a UUID
//!   (KIP-516), so a topic deleted and created again under the same name is
//!   a different topic to clients that cached the old one.
//! - **Deletion is synchronous.** Kafka renames a deleted partition's
//!   directory to `<topic>-<partition>.<uuid>-delete` and removes it in the
//!   background (`file.delete.delay.ms`). Here the rule "what `topics.meta`
//!   does not list is garbage" gives the same crash safety without the
//!   rename.
//! - **`cleanup.policy=compact` is named but refused.** Log compaction
//!   (keep the newest record per key) is not built; `delete` is.
//! - **The sticky partitioner is the one from KIP-480** (Kafka 2.4 to
//!   3.2): switch partitions when a batch is full. Since Kafka 3.3
//!   (KIP-794) the producer switches after `batch.size` bytes and prefers
//!   partitions whose brokers are keeping up
//!   (`partitioner.adaptive.partitioning.enable`).
//! - **One store per broker, one data directory.** Kafka spreads
//!   partitions over several `log.dirs` and moves them between disks
//!   (KIP-113).
//! - **No per-topic `min.insync.replicas` or replication factor yet**:
//!   chapter 6.

pub mod accumulator;
pub mod config;
pub mod error;
pub mod metadata;
pub mod name;
pub mod partitioner;
pub mod store;
pub mod topic_partition;

pub use accumulator::{Accumulator, ReadyBatch};
pub use config::{CleanupPolicy, ConfigError, TopicConfig};
pub use error::{Result, StoreError};
pub use name::NameError;
pub use partitioner::{
    DefaultPartitioner, Partitioner, RoundRobinPartitioner, murmur2, partition_for_key,
};
pub use store::{Created, OpenReport, PartitionDescription, TopicDescription, TopicStore};
pub use topic_partition::TopicPartition;

//! What a replica needs from its disk, as two traits, so the same state
//! machines run on chapter 2's real log and on the simulator's disk.
//!
//! [`ReplicaLog`] is one partition's log: chapter 2's [`Log`] implements it
//! as it is. [`Storage`] is a broker's logs and its two checkpoints, the
//! leader-epoch cache of each partition and the high watermarks. The state
//! machines never touch a file: they call these methods, and say when they
//! need a sync. The simulator's implementation (in
//! [`crate::memory`]) remembers what was synced, so a simulated
//! crash loses exactly what a real one could.

use std::collections::BTreeMap;

use ch02_segments::{AppendInfo, Log, LogError, StoredBatch};
use ch03_partitions::TopicPartition;

use crate::epoch::EpochEntry;

/// One partition's log, as replication uses it.
pub trait ReplicaLog {
    /// The first offset still in the log.
    fn log_start_offset(&self) -> u64;
    /// The offset the next appended record gets (the LEO).
    fn log_end_offset(&self) -> u64;
    /// Validates `batch` and appends it at the log end, writing the base
    /// offset into it. A follower appends the leader's batches with this
    /// too, after checking that they start at its log end.
    fn append(&mut self, batch: &mut [u8]) -> Result<AppendInfo, LogError>;
    /// Whole batches from the one holding `offset`, about `max_bytes` of
    /// them (at least one, if there is one).
    fn read(&self, offset: u64, max_bytes: u64) -> Result<Vec<StoredBatch>, LogError>;
    /// Removes every record at or after `offset` (at a batch boundary) and
    /// returns the new log end.
    fn truncate_to(&mut self, offset: u64) -> Result<u64, LogError>;
    /// Makes everything appended so far durable.
    fn sync(&mut self) -> Result<(), LogError>;
}

impl ReplicaLog for Log {
    fn log_start_offset(&self) -> u64 {
        Log::log_start_offset(self)
    }

    fn log_end_offset(&self) -> u64 {
        Log::log_end_offset(self)
    }

    fn append(&mut self, batch: &mut [u8]) -> Result<AppendInfo, LogError> {
        self.append_batch(batch)
    }

    fn read(&self, offset: u64, max_bytes: u64) -> Result<Vec<StoredBatch>, LogError> {
        Log::read(self, offset, max_bytes)
    }

    fn truncate_to(&mut self, offset: u64) -> Result<u64, LogError> {
        Log::truncate_to(self, offset)
    }

    fn sync(&mut self) -> Result<(), LogError> {
        Log::sync(self)
    }
}

/// A broker's replicated state on disk: its partitions' logs, each
/// partition's leader-epoch checkpoint, and the high-watermark checkpoint.
pub trait Storage {
    /// The kind of log.
    type Log: ReplicaLog;
    /// The partitions this broker has a log for.
    fn partitions(&self) -> Vec<TopicPartition>;
    /// The partition's log, if this broker has one.
    fn log(&mut self, tp: &TopicPartition) -> Option<&mut Self::Log>;
    /// Creates an empty log for `tp` (a replica assigned to this broker for
    /// the first time). Creating one that exists is not an error.
    fn create_log(&mut self, tp: &TopicPartition) -> Result<(), LogError>;
    /// The partition's leader-epoch checkpoint (empty if none).
    fn read_epochs(&self, tp: &TopicPartition) -> Vec<EpochEntry>;
    /// Replaces the partition's leader-epoch checkpoint, durably. Kafka
    /// writes this file on every change, because truncation depends on it.
    fn write_epochs(&mut self, tp: &TopicPartition, entries: &[EpochEntry])
    -> Result<(), LogError>;
    /// The high-watermark checkpoint (Kafka's
    /// `replication-offset-checkpoint`).
    fn read_high_watermarks(&self) -> BTreeMap<TopicPartition, u64>;
    /// Replaces the high-watermark checkpoint, durably. Kafka writes it
    /// every `replica.high.watermark.checkpoint.interval.ms` (5 s), so after
    /// a crash it may be behind: nothing may depend on it being current.
    fn write_high_watermarks(
        &mut self,
        hws: &BTreeMap<TopicPartition, u64>,
    ) -> Result<(), LogError>;
}

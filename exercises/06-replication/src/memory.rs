//! The simulator's disk: [`Storage`] in memory, which remembers what was
//! synced so that a crash loses exactly what a real one could.
//!
//! A [`MemoryLog`] is a vector of batches and a count of how many of them
//! are synced. A crash keeps the synced ones and a random number of the
//! rest (the operating system may have written some of them back already),
//! in order: a log never keeps a later batch and loses an earlier one,
//! which is what chapter 2's recovery guarantees for a real file. The
//! checkpoints (epochs, high watermarks) are written durably, as the real
//! files are (temporary file, sync, rename).

use std::collections::BTreeMap;

use ch02_segments::{AppendInfo, BatchHeader, LogError, StoredBatch, batch};
use ch03_partitions::TopicPartition;

use crate::epoch::EpochEntry;
use crate::storage::{ReplicaLog, Storage};

/// One partition's log in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryLog {
    start: u64,
    batches: Vec<StoredBatch>,
    /// How many of `batches`, from the first, are durable.
    synced: usize,
}

impl MemoryLog {
    /// How many records are not yet synced.
    pub fn unsynced_records(&self) -> u64 {
        self.batches[self.synced..]
            .iter()
            .map(|b| u64::from(b.header.record_count))
            .sum()
    }

    /// Every batch, in order.
    pub fn batches(&self) -> &[StoredBatch] {
        &self.batches
    }

    /// A crash: the synced batches stay, and of the others a prefix of
    /// `keep` batches (the caller chooses how many the OS had written).
    pub fn crash(&mut self, keep: usize) {
        let keep = self.synced + keep.min(self.batches.len() - self.synced);
        self.batches.truncate(keep);
        self.synced = keep;
    }

    /// How many batches a crash could lose.
    pub fn unsynced_batches(&self) -> usize {
        self.batches.len() - self.synced
    }
}

impl ReplicaLog for MemoryLog {
    fn log_start_offset(&self) -> u64 {
        self.start
    }

    fn log_end_offset(&self) -> u64 {
        self.batches
            .last()
            .map_or(self.start, |b| b.header.next_offset())
    }

    fn append(&mut self, bytes: &mut [u8]) -> Result<AppendInfo, LogError> {
        let header = batch::validate(bytes)?;
        let base_offset = self.log_end_offset();
        batch::set_base_offset(bytes, base_offset);
        let header = BatchHeader {
            base_offset,
            ..header
        };
        self.batches.push(StoredBatch {
            header,
            bytes: bytes.to_vec(),
        });
        Ok(AppendInfo {
            base_offset,
            last_offset: header.last_offset(),
        })
    }

    fn read(&self, offset: u64, max_bytes: u64) -> Result<Vec<StoredBatch>, LogError> {
        let log_end = self.log_end_offset();
        if offset < self.start || offset > log_end {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start: self.start,
                log_end,
            });
        }
        let first = self
            .batches
            .partition_point(|b| b.header.last_offset() < offset);
        let mut bytes = 0;
        let mut out = Vec::new();
        for batch in &self.batches[first..] {
            // As chapter 2's segment reads: batches while fewer than
            // `max_bytes` are read, so the last may go past it.
            if !out.is_empty() && bytes >= max_bytes {
                break;
            }
            bytes += batch.bytes.len() as u64;
            out.push(batch.clone());
        }
        Ok(out)
    }

    fn truncate_to(&mut self, offset: u64) -> Result<u64, LogError> {
        if offset <= self.start {
            self.batches.clear();
            self.start = offset;
        } else {
            let keep = self
                .batches
                .partition_point(|b| b.header.next_offset() <= offset);
            self.batches.truncate(keep);
        }
        // A truncation is made durable at once, as chapter 2's is.
        self.synced = self.synced.min(self.batches.len());
        Ok(self.log_end_offset())
    }

    fn sync(&mut self) -> Result<(), LogError> {
        self.synced = self.batches.len();
        Ok(())
    }
}

/// A broker's disk in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStorage {
    logs: BTreeMap<TopicPartition, MemoryLog>,
    epochs: BTreeMap<TopicPartition, Vec<EpochEntry>>,
    high_watermarks: BTreeMap<TopicPartition, u64>,
}

impl MemoryStorage {
    /// An empty disk.
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }

    /// The partition's log, to look at.
    pub fn log_ref(&self, tp: &TopicPartition) -> Option<&MemoryLog> {
        self.logs.get(tp)
    }

    /// The operating system writing dirty pages back: every log synced.
    pub fn write_back(&mut self) {
        for log in self.logs.values_mut() {
            log.synced = log.batches.len();
        }
    }

    /// A crash: each log keeps what was synced and, of the rest, a prefix
    /// `keep(unsynced batches)` long.
    pub fn crash(&mut self, mut keep: impl FnMut(usize) -> usize) {
        for log in self.logs.values_mut() {
            let unsynced = log.unsynced_batches();
            log.crash(keep(unsynced));
        }
    }
}

impl Storage for MemoryStorage {
    type Log = MemoryLog;

    fn partitions(&self) -> Vec<TopicPartition> {
        self.logs.keys().cloned().collect()
    }

    fn log(&mut self, tp: &TopicPartition) -> Option<&mut MemoryLog> {
        self.logs.get_mut(tp)
    }

    fn create_log(&mut self, tp: &TopicPartition) -> Result<(), LogError> {
        self.logs.entry(tp.clone()).or_default();
        Ok(())
    }

    fn read_epochs(&self, tp: &TopicPartition) -> Vec<EpochEntry> {
        self.epochs.get(tp).cloned().unwrap_or_default()
    }

    fn write_epochs(
        &mut self,
        tp: &TopicPartition,
        entries: &[EpochEntry],
    ) -> Result<(), LogError> {
        self.epochs.insert(tp.clone(), entries.to_vec());
        Ok(())
    }

    fn read_high_watermarks(&self) -> BTreeMap<TopicPartition, u64> {
        self.high_watermarks.clone()
    }

    fn write_high_watermarks(
        &mut self,
        hws: &BTreeMap<TopicPartition, u64>,
    ) -> Result<(), LogError> {
        self.high_watermarks = hws.clone();
        Ok(())
    }
}

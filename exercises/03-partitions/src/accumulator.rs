//! The producer's side of partitioning: records go into one open batch per
//! partition, and a batch is handed over when it is full. This is where the
//! sticky partitioner earns its name: when the batch of a keyless record's
//! partition fills up, the partitioner is told, and the next keyless
//! records start a batch for another partition.
//!
//! Sans-IO: it takes records and returns batches. Chapter 4's producer
//! adds `linger.ms` (hand a batch over when it is old enough, full or not)
//! and sends the batches over the network.

use std::collections::BTreeMap;
use std::mem;

use ch02_segments::Record;
use ch02_segments::batch;

use crate::partitioner::Partitioner;

/// A full (or flushed) batch, ready to append to its partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyBatch {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The records, in the order they were added.
    pub records: Vec<Record>,
}

#[derive(Debug, Default)]
struct OpenBatch {
    records: Vec<Record>,
    bytes: usize,
}

impl OpenBatch {
    /// Whether a record of `size` bytes would overflow this batch. A record
    /// bigger than a whole batch gets a batch of its own.
    fn would_overflow(&self, size: usize, batch_size: usize) -> bool {
        !self.records.is_empty() && self.bytes + size > batch_size
    }

    fn take(&mut self, topic: &str, partition: u32) -> ReadyBatch {
        self.bytes = 0;
        // The next batch will likely hold as many records as this one: make
        // room for them once rather than growing the vector step by step.
        let room = Vec::with_capacity(self.records.len());
        ReadyBatch {
            topic: topic.to_string(),
            partition,
            records: mem::replace(&mut self.records, room),
        }
    }
}

/// Collects records into per-partition batches of up to `batch_size`
/// bytes (Kafka's `batch.size`, 16 KiB by default).
#[derive(Debug)]
pub struct Accumulator<P> {
    batch_size: usize,
    partitioner: P,
    /// Each topic's open batches, indexed by partition. Looked up by `&str`,
    /// so adding a record allocates nothing but the record's place. (A
    /// `BTreeMap`: with the few topics a producer writes to, a comparison or
    /// two is cheaper than hashing the name.)
    open: BTreeMap<String, Vec<OpenBatch>>,
}

impl<P: Partitioner> Accumulator<P> {
    /// An accumulator that fills batches to `batch_size` bytes of encoded
    /// records and chooses partitions with `partitioner`.
    pub fn new(batch_size: usize, partitioner: P) -> Accumulator<P> {
        Accumulator {
            batch_size,
            partitioner,
            open: BTreeMap::new(),
        }
    }

    /// Adds a record for `topic`, which has `partitions` partitions. Returns
    /// the partition it went to, and the batches it closed because the
    /// record did not fit in them.
    pub fn add(&mut self, topic: &str, partitions: u32, record: Record) -> (u32, Vec<ReadyBatch>) {
        todo!("exercise `add`: Ask the partitioner for a partition; if that partition's open batch would overflow with this record, hand the batch over (`take`), tell the partitioner (`on_new_batch`) and ask again (the new choice's batch may be full too). Then add the record to the open batch and return the partition and the batches handed over.")
    }

    /// Hands over every open batch, full or not (a producer's `flush`), by
    /// topic and partition.
    pub fn drain(&mut self) -> Vec<ReadyBatch> {
        let mut ready = Vec::new();
        for (topic, batches) in &mut self.open {
            for (partition, open) in batches.iter_mut().enumerate() {
                if !open.records.is_empty() {
                    ready.push(open.take(topic, partition as u32));
                }
            }
        }
        ready
    }

    /// The partitioner, to inspect or reconfigure.
    pub fn partitioner(&mut self) -> &mut P {
        &mut self.partitioner
    }
}

/// The open batches of `topic`, one per partition, made on first use and
/// grown when the topic gains partitions.
fn open_batches<'a>(
    open: &'a mut BTreeMap<String, Vec<OpenBatch>>,
    topic: &str,
    partitions: u32,
) -> &'a mut Vec<OpenBatch> {
    if !open.contains_key(topic) {
        open.insert(topic.to_string(), Vec::new());
    }
    let batches = open.get_mut(topic).expect("inserted above");
    if batches.len() < partitions as usize {
        batches.resize_with(partitions as usize, OpenBatch::default);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partitioner::{DefaultPartitioner, partition_for_key};

    fn record(value: &str) -> Record {
        Record::new(value)
    }

    #[test]
    fn keyless_records_fill_one_partition_then_switch() {
        let size = batch::encoded_len(&record("0123456789"));
        // Room for exactly 4 records per batch.
        let mut acc = Accumulator::new(4 * size, DefaultPartitioner::with_seed(11));
        let mut partitions = Vec::new();
        let mut closed = Vec::new();
        for _ in 0..12 {
            let (p, ready) = acc.add("t", 3, record("0123456789"));
            partitions.push(p);
            closed.extend(ready);
        }
        // Runs of 4 on one partition, each run on another than the last.
        for run in partitions.chunks(4) {
            assert!(run.iter().all(|&p| p == run[0]), "{partitions:?}");
        }
        assert_ne!(partitions[0], partitions[4]);
        assert_ne!(partitions[4], partitions[8]);
        assert_eq!(closed.len(), 2);
        assert!(closed.iter().all(|b| b.records.len() == 4));
        let rest = acc.drain();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].records.len(), 4);
        assert!(acc.drain().is_empty());
    }

    #[test]
    fn keyed_records_go_by_key_and_keep_their_order() {
        let mut acc = Accumulator::new(16 * 1024, DefaultPartitioner::with_seed(2));
        for i in 0..50 {
            let key = format!("user-{}", i % 5);
            let (p, _) = acc.add("t", 4, record(&i.to_string()).with_key(key.clone()));
            assert_eq!(p, partition_for_key(key.as_bytes(), 4));
        }
        for batch in acc.drain() {
            let values: Vec<u32> = batch
                .records
                .iter()
                .map(|r| String::from_utf8_lossy(&r.value).parse().unwrap())
                .collect();
            assert!(
                values.is_sorted(),
                "partition {}: {values:?}",
                batch.partition
            );
        }
    }

    #[test]
    fn a_record_larger_than_a_batch_gets_its_own() {
        let mut acc = Accumulator::new(10, DefaultPartitioner::with_seed(4));
        let (p, closed) = acc.add("t", 1, record(&"x".repeat(100)));
        assert_eq!((p, closed), (0, vec![]));
        let (_, closed) = acc.add("t", 1, record("y"));
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].records.len(), 1);
    }
}

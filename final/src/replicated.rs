//! `kfs produce` and `kfs consume` on a replicated topic (created with
//! `--replication-factor`): through chapter 6's `ClusterClient`, which
//! finds each partition's leader and follows it when it moves, retrying
//! on `NOT_LEADER_OR_FOLLOWER`, a missing leader or a lost connection.
//!
//! A real system would make the full producer and consumer leader-aware
//! instead: chapter 4's producer batches and pipelines many requests per
//! broker, and chapter 5's consumer groups assign partitions; here a
//! partition's records go one batch at a time, and a consumer reads its
//! partitions by itself (no `--group`).

use std::collections::BTreeMap;
use std::time::Duration;

use ch02_segments::Record;
use ch03_partitions::TopicPartition;
use ch03_partitions::partitioner::{DefaultPartitioner, Partitioner};
use ch04_network::{ClientError, ConsumerRecord, SeekTo};
use ch06_replication::client::ClusterClient;
use ch06_replication::protocol::Acks;

use crate::{Bootstrap, Result, cluster};

/// Records are sent once a partition has this many waiting.
const MAX_BATCH: usize = 500;

/// The producer's side: records grouped by partition, each group sent to
/// its partition's leader as one batch.
pub(crate) struct Writer {
    client: ClusterClient,
    topic: String,
    partitions: u32,
    acks: Acks,
    partitioner: DefaultPartitioner,
    pending: BTreeMap<u32, Vec<Record>>,
}

impl Writer {
    /// A writer to `topic`, which has `partitions` partitions.
    pub(crate) fn new(bootstrap: &Bootstrap, topic: &str, partitions: u32, acks: Acks) -> Writer {
        Writer {
            client: ClusterClient::new(bootstrap.servers(), cluster::client_config()),
            topic: topic.to_string(),
            partitions,
            acks,
            partitioner: DefaultPartitioner::new(),
            pending: BTreeMap::new(),
        }
    }

    /// Queues `record` for its partition (by key, as chapter 3's
    /// partitioner chooses), sending the partition's batch once full.
    pub(crate) async fn send(&mut self, record: Record) -> Result<()> {
        let partition =
            self.partitioner
                .partition(&self.topic, record.key.as_deref(), self.partitions);
        let batch = self.pending.entry(partition).or_default();
        batch.push(record);
        if batch.len() >= MAX_BATCH {
            self.partitioner
                .on_new_batch(&self.topic, self.partitions, partition);
            self.send_batch(partition).await?;
        }
        Ok(())
    }

    /// Sends every waiting record; an error means some were not
    /// acknowledged.
    pub(crate) async fn flush(&mut self) -> Result<()> {
        let partitions: Vec<u32> = self.pending.keys().copied().collect();
        for partition in partitions {
            self.send_batch(partition).await?;
        }
        Ok(())
    }

    async fn send_batch(&mut self, partition: u32) -> Result<()> {
        let Some(records) = self.pending.remove(&partition) else {
            return Ok(());
        };
        let tp = TopicPartition::new(self.topic.clone(), partition);
        self.client
            .produce_with(&tp, &records, self.acks)
            .await
            .map_err(|e| format!("{} records to {tp} not acknowledged: {e}", records.len()))?;
        Ok(())
    }
}

/// The consumer's side: each partition read from its leader in turn.
pub(crate) struct Reader {
    client: ClusterClient,
    /// Each partition and the next offset to read.
    next: Vec<(TopicPartition, u64)>,
}

impl Reader {
    /// A reader of `partitions` of `topic`, each from `start`.
    pub(crate) async fn new(
        bootstrap: &Bootstrap,
        topic: &str,
        partitions: &[u32],
        start: SeekTo,
    ) -> Result<Reader> {
        let client = ClusterClient::new(bootstrap.servers(), cluster::client_config());
        let mut next = Vec::new();
        for &partition in partitions {
            let tp = TopicPartition::new(topic.to_string(), partition);
            let offset = match start {
                SeekTo::Beginning => 0,
                SeekTo::Offset(offset) => offset,
                // The high watermark: the end of what consumers may read.
                SeekTo::End => client.fetch(&tp, 0, Duration::ZERO).await?.high_watermark,
                SeekTo::Timestamp(_) => {
                    return Err("a replicated topic is read from an offset, not a time".into());
                }
            };
            next.push((tp, offset));
        }
        Ok(Reader { client, next })
    }

    /// The committed records that came within about `wait`, from every
    /// partition.
    pub(crate) async fn poll(
        &mut self,
        wait: Duration,
    ) -> std::result::Result<Vec<ConsumerRecord>, ClientError> {
        let share = wait / self.next.len().max(1) as u32;
        let mut records = Vec::new();
        for (tp, next) in &mut self.next {
            let fetched = self.client.fetch(tp, *next, share).await?;
            for (offset, record) in fetched.records {
                *next = offset + 1;
                records.push(ConsumerRecord {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    offset,
                    record,
                });
            }
        }
        Ok(records)
    }
}

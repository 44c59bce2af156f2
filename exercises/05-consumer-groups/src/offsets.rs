//! Committed offsets, kept where Kafka keeps them: as records in an
//! internal topic, `__consumer_offsets`, one record per commit, keyed by
//! group, topic and partition. The latest value of each key is the
//! committed offset; a map in memory holds those latest values, and is
//! rebuilt by reading the topic from the start when the broker starts.
//!
//! **Cleaning up.** Commits pile up: a consumer committing every 5 seconds
//! writes one record per partition each time, and only the last counts.
//! Kafka cleans the topic with *log compaction* (`cleanup.policy=compact`):
//! a background cleaner rewrites old segments keeping only each key's
//! latest record. This course has no compaction; instead it uses what the
//! log already has, *retention with the latest values kept*: once a
//! partition of the topic has more than `cleanup_segments` segments, the
//! store rolls it, appends every current value of the groups it holds (a
//! snapshot), syncs, and deletes every segment before the snapshot. Each
//! key's latest value is then in the snapshot or after it, so nothing is
//! lost, and a crash at any step leaves the old records or the snapshot (or
//! both: the latest still wins on replay). Compaction does less I/O (it
//! never rewrites live keys that sit in the newest segments); this does
//! less code.

use ch03_partitions::TopicPartition;
use std::collections::BTreeMap;

use ch02_segments::Record;
use ch03_partitions::{StoreError, TopicConfig, TopicStore, partition_for_key};
use serde::{Deserialize, Serialize};

/// The internal topic's name, as in Kafka.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How the offsets topic is laid out and cleaned, by Kafka's names where
/// it has them.
#[derive(Debug, Clone)]
pub struct OffsetsConfig {
    /// `offsets.topic.num.partitions`: Kafka's default is 50; a group's
    /// commits all go to one partition, chosen by hashing its id.
    pub partitions: u32,
    /// `offsets.topic.segment.bytes` (100 MiB).
    pub segment_bytes: u64,
    /// Clean a partition once it has more segments than this.
    pub cleanup_segments: usize,
}

impl Default for OffsetsConfig {
    fn default() -> Self {
        OffsetsConfig {
            partitions: 10,
            segment_bytes: 100 * 1024 * 1024,
            cleanup_segments: 3,
        }
    }
}

/// One committed position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The next offset to read.
    pub offset: u64,
    /// What the committer stored with it.
    pub metadata: String,
    /// When it was committed (ms since the epoch).
    pub timestamp: i64,
}

/// A commit record's key: which position it is. The version lets a later
/// format be told apart, as Kafka's key schemas do.
#[derive(Debug, Serialize, Deserialize)]
struct CommitKey {
    version: u16,
    group: String,
    topic: String,
    partition: u32,
}

/// A commit record's value.
#[derive(Debug, Serialize, Deserialize)]
struct CommitValue {
    offset: u64,
    metadata: String,
    timestamp: i64,
}

const KEY_VERSION: u16 = 1;

/// Records of at most about this many bytes go in one batch, well under
/// the topic's `max.message.bytes`.
const BATCH_BYTES: usize = 256 * 1024;

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .expect("encoding to memory cannot fail")
}

/// What loading found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Commit records read.
    pub records: u64,
    /// Records that were not commits (written by someone else, or a
    /// future format): skipped, and counted here.
    pub skipped: u64,
}

/// Every group's latest committed offsets, backed by the offsets topic.
pub struct OffsetStore {
    config: OffsetsConfig,
    /// Group → (topic, partition) → its latest commit.
    latest: BTreeMap<String, BTreeMap<TopicPartition, Committed>>,
}

/// One position to commit: topic, partition, offset, metadata.
pub type Commit = (String, u32, u64, String);

impl OffsetStore {
    /// Creates the offsets topic if it does not exist, and rebuilds the
    /// latest offsets by reading it from the start.
    pub fn load(
        store: &mut TopicStore,
        config: OffsetsConfig,
    ) -> Result<(OffsetStore, LoadReport), StoreError> {
        if !store.topics().iter().any(|t| t == OFFSETS_TOPIC) {
            let topic_config = TopicConfig {
                segment_bytes: config.segment_bytes,
                // Never deleted by age or size: cleaning keeps the latest.
                retention_ms: None,
                retention_bytes: None,
                ..TopicConfig::default()
            };
            store.create_topic(OFFSETS_TOPIC, config.partitions, topic_config)?;
        }
        let mut offsets = OffsetStore {
            config,
            latest: BTreeMap::new(),
        };
        let mut report = LoadReport::default();
        let partitions = store.partition_count(OFFSETS_TOPIC)?;
        offsets.config.partitions = partitions;
        for partition in 0..partitions {
            let log = store.log(OFFSETS_TOPIC, partition)?;
            let mut at = log.log_start_offset();
            while at < log.log_end_offset() {
                let batches = store.read(OFFSETS_TOPIC, partition, at, 1024 * 1024)?;
                let Some(last) = batches.last() else { break };
                at = last.header.next_offset();
                for batch in batches {
                    // A batch that does not decode was checked by its CRC
                    // when stored, so this is a bug elsewhere: skip it.
                    let Ok(records) = batch.records() else {
                        report.skipped += 1;
                        continue;
                    };
                    for (_, record) in records {
                        if offsets.apply(&record) {
                            report.records += 1;
                        } else {
                            report.skipped += 1;
                        }
                    }
                }
            }
        }
        Ok((offsets, report))
    }

    /// Applies one record of the topic to the map; false if it is not a
    /// commit record.
    fn apply(&mut self, record: &Record) -> bool {
        let decode_key = |bytes: &[u8]| ch04_network::protocol::decode_body::<CommitKey>(bytes);
        let Some(Ok(key)) = record.key.as_deref().map(decode_key) else {
            return false;
        };
        if key.version != KEY_VERSION {
            return false;
        }
        let Ok(value) = ch04_network::protocol::decode_body::<CommitValue>(&record.value) else {
            return false;
        };
        self.latest.entry(key.group).or_default().insert(
            TopicPartition::new(key.topic, key.partition),
            Committed {
                offset: value.offset,
                metadata: value.metadata,
                timestamp: value.timestamp,
            },
        );
        true
    }

    /// The offsets topic's partition holding `group`'s commits.
    pub fn partition_for(&self, group: &str) -> u32 {
        partition_for_key(group.as_bytes(), self.config.partitions)
    }

    /// Stores commits for a group: appended to the group's partition of the
    /// offsets topic (one batch, so all or none survive a crash), and only
    /// then made visible in memory.
    pub fn commit(
        &mut self,
        store: &mut TopicStore,
        group: &str,
        commits: &[Commit],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if commits.is_empty() {
            return Ok(());
        }
        let records: Vec<Record> = commits
            .iter()
            .map(|(topic, partition, offset, metadata)| {
                commit_record(group, topic, *partition, *offset, metadata, now_ms)
            })
            .collect();
        store.append(OFFSETS_TOPIC, self.partition_for(group), &records)?;
        let positions = self.latest.entry(group.to_string()).or_default();
        for (topic, partition, offset, metadata) in commits {
            positions.insert(
                TopicPartition::new(topic.clone(), *partition),
                Committed {
                    offset: *offset,
                    metadata: metadata.clone(),
                    timestamp: now_ms,
                },
            );
        }
        Ok(())
    }

    /// A group's committed offset for one partition.
    pub fn get(&self, group: &str, topic: &str, partition: u32) -> Option<&Committed> {
        self.latest
            .get(group)
            .and_then(|positions| positions.get(&TopicPartition::new(topic, partition)))
    }

    /// Every committed position of a group, by topic and partition.
    pub fn group(&self, group: &str) -> Option<&BTreeMap<TopicPartition, Committed>> {
        self.latest.get(group)
    }

    /// The groups with committed offsets.
    pub fn groups(&self) -> impl Iterator<Item = &String> {
        self.latest.keys()
    }

    /// Cleans every partition of the offsets topic that has grown past
    /// `cleanup_segments` segments (see the module docs); returns how many
    /// segments were deleted.
    pub fn clean(&self, store: &mut TopicStore) -> Result<usize, StoreError> {
        let mut deleted = 0;
        for partition in 0..self.config.partitions {
            let segments = store.log(OFFSETS_TOPIC, partition)?.segments().len();
            if segments <= self.config.cleanup_segments {
                continue;
            }
            let log = store.log_mut(OFFSETS_TOPIC, partition)?;
            let io = |source| StoreError::Log {
                topic: OFFSETS_TOPIC.to_string(),
                partition,
                source,
            };
            log.roll().map_err(io)?;
            let snapshot_start = log.log_end_offset();
            // Every current value of this partition's groups, again.
            let mut batch = Vec::new();
            let mut bytes = 0;
            for (group, positions) in &self.latest {
                if self.partition_for(group) != partition {
                    continue;
                }
                for (tp, c) in positions {
                    let record = commit_record(
                        group,
                        &tp.topic,
                        tp.partition,
                        c.offset,
                        &c.metadata,
                        c.timestamp,
                    );
                    bytes += record.value.len() + record.key.as_ref().map_or(0, Vec::len);
                    batch.push(record);
                    if bytes >= BATCH_BYTES {
                        log.append(&std::mem::take(&mut batch)).map_err(io)?;
                        bytes = 0;
                    }
                }
            }
            if !batch.is_empty() {
                log.append(&batch).map_err(io)?;
            }
            // The snapshot must be on disk before what it replaces goes.
            log.sync().map_err(io)?;
            deleted += log
                .delete_segments_before(snapshot_start)
                .map_err(io)?
                .len();
        }
        Ok(deleted)
    }
}

/// One commit as a record of the offsets topic.
fn commit_record(
    group: &str,
    topic: &str,
    partition: u32,
    offset: u64,
    metadata: &str,
    timestamp: i64,
) -> Record {
    let key = CommitKey {
        version: KEY_VERSION,
        group: group.to_string(),
        topic: topic.to_string(),
        partition,
    };
    let value = CommitValue {
        offset,
        metadata: metadata.to_string(),
        timestamp,
    };
    Record::new(encode(&value))
        .with_timestamp(timestamp)
        .with_key(encode(&key))
}

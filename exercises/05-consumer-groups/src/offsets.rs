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
use ch04_network::ErrorCode;
use serde::{Deserialize, Serialize};

use crate::protocol::{FetchedOffset, OffsetFetchRequest, OffsetFetchResponse};

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
        let mut offsets = OffsetStore::empty(config);
        let mut report = LoadReport::default();
        offsets.config.partitions = store.partition_count(OFFSETS_TOPIC)?;
        for partition in 0..offsets.config.partitions {
            let loaded = offsets.load_partition(store, partition)?;
            report.records += loaded.records;
            report.skipped += loaded.skipped;
        }
        Ok((offsets, report))
    }

    /// Reads one partition of the offsets topic from the start, replacing
    /// whatever this store held for that partition's groups. (Chapter 6
    /// loads a partition when its broker becomes the partition's leader,
    /// and so its groups' coordinator.)
    pub fn load_partition(
        &mut self,
        store: &TopicStore,
        partition: u32,
    ) -> Result<LoadReport, StoreError> {
        self.unload_partition(partition);
        let mut report = LoadReport::default();
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
                    if self.apply(&record) {
                        report.records += 1;
                    } else {
                        report.skipped += 1;
                    }
                }
            }
        }
        Ok(report)
    }


    /// Applies one record of the topic to the map; false if it is not a
    /// commit record.
    fn apply(&mut self, record: &Record) -> bool {
        todo!("exercise `apply`: Decode the record's key as a `CommitKey` (no key, a key that does not decode, or a `version` other than `KEY_VERSION`: return false) and its value as a `CommitValue` (false if it does not decode); then store `Committed {{ offset, metadata, timestamp }}` as the latest for the key's group and `TopicPartition`, and return true.")
    }

    /// The offsets topic's partition holding `group`'s commits.
    pub fn partition_for(&self, group: &str) -> u32 {
        offsets_partition(group, self.config.partitions)
    }

    /// A store holding nothing yet, for a broker whose offsets topic is
    /// replicated: it loads a partition when it leads it.
    pub fn empty(config: OffsetsConfig) -> OffsetStore {
        OffsetStore {
            config,
            latest: BTreeMap::new(),
        }
    }

    /// Says how many partitions the offsets topic has (a replicated one's
    /// count comes from the controller, not from this broker's store).
    pub fn set_partition_count(&mut self, partitions: u32) {
        self.config.partitions = partitions;
    }

    /// Forgets the commits of every group of one partition (its broker no
    /// longer coordinates them).
    pub fn unload_partition(&mut self, partition: u32) {
        let partitions = self.config.partitions;
        self.latest
            .retain(|group, _| offsets_partition(group, partitions) != partition);
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
        todo!("exercise `store_commit`: Nothing to commit: `Ok(())`. Otherwise append all of the commits' records (`commit_records(group, commits, now_ms)`) in one call to the group's partition of `OFFSETS_TOPIC` (`self.partition_for(group)`), and only if that succeeded, make them the group's latest in memory (`self.stored(group, commits, now_ms)`).")
    }

    /// Makes commits the group's latest, once their records are stored:
    /// [`OffsetStore::commit`]'s last step, and chapter 6's when the
    /// replicated offsets topic has acknowledged them.
    pub fn stored(&mut self, group: &str, commits: &[Commit], now_ms: i64) {
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

    /// An OffsetFetch's answer: the positions asked for (a partition with
    /// no commit has offset `None`), or with no topics named, every
    /// committed position of the group, grouped by topic in order.
    pub fn fetch(&self, request: &OffsetFetchRequest) -> OffsetFetchResponse {
        if request.group_id.is_empty() {
            return OffsetFetchResponse {
                error: ErrorCode::InvalidGroupId,
                topics: Vec::new(),
            };
        }
        let fetched = |topic: &str, partition: u32| {
            let committed = self.get(&request.group_id, topic, partition);
            FetchedOffset {
                partition,
                offset: committed.map(|c| c.offset),
                metadata: committed.map(|c| c.metadata.clone()).unwrap_or_default(),
            }
        };
        let topics = match &request.topics {
            Some(topics) => topics
                .iter()
                .map(|(topic, ps)| {
                    (
                        topic.clone(),
                        ps.iter().map(|&p| fetched(topic, p)).collect(),
                    )
                })
                .collect(),
            None => {
                // The map is ordered by topic, then partition: each topic's
                // positions are consecutive.
                let mut by_topic: Vec<(String, Vec<FetchedOffset>)> = Vec::new();
                for tp in self
                    .group(&request.group_id)
                    .into_iter()
                    .flat_map(|g| g.keys())
                {
                    let entry = fetched(&tp.topic, tp.partition);
                    match by_topic.last_mut() {
                        Some((t, list)) if *t == tp.topic => list.push(entry),
                        _ => by_topic.push((tp.topic.clone(), vec![entry])),
                    }
                }
                by_topic
            }
        };
        OffsetFetchResponse {
            error: ErrorCode::None,
            topics,
        }
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

/// The partition of an offsets topic of `partitions` partitions that
/// holds `group`'s commits: the one whose leader coordinates the group,
/// once the topic is replicated (chapter 6).
pub fn offsets_partition(group: &str, partitions: u32) -> u32 {
    partition_for_key(group.as_bytes(), partitions)
}

/// A group's commits as records of the offsets topic, one per position,
/// to be appended in one batch.
pub fn commit_records(group: &str, commits: &[Commit], now_ms: i64) -> Vec<Record> {
    commits
        .iter()
        .map(|(topic, partition, offset, metadata)| {
            commit_record(group, topic, *partition, *offset, metadata, now_ms)
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A store holding these commits of group `g`, with no topic behind it:
    /// `fetch` only reads the map.
    fn store(commits: &[(&str, u32, u64)]) -> OffsetStore {
        let positions = commits
            .iter()
            .map(|&(topic, partition, offset)| {
                let committed = Committed {
                    offset,
                    metadata: format!("m{offset}"),
                    timestamp: 0,
                };
                (TopicPartition::new(topic, partition), committed)
            })
            .collect();
        OffsetStore {
            config: OffsetsConfig::default(),
            latest: BTreeMap::from([("g".to_string(), positions)]),
        }
    }

    fn fetched(partition: u32, offset: Option<u64>) -> FetchedOffset {
        FetchedOffset {
            partition,
            offset,
            metadata: offset.map(|o| format!("m{o}")).unwrap_or_default(),
        }
    }

    #[test]
    fn fetching_every_position_groups_them_by_topic_in_order() {
        let offsets = store(&[("b", 1, 10), ("a", 2, 7), ("b", 0, 3), ("a", 0, 5)]);
        let request = OffsetFetchRequest {
            group_id: "g".into(),
            topics: None,
        };
        let answer = offsets.fetch(&request);
        assert_eq!(answer.error, ErrorCode::None);
        assert_eq!(
            answer.topics,
            vec![
                ("a".into(), vec![fetched(0, Some(5)), fetched(2, Some(7))]),
                ("b".into(), vec![fetched(0, Some(3)), fetched(1, Some(10))]),
            ]
        );
    }

    #[test]
    fn fetching_named_partitions_answers_each_in_the_order_asked() {
        let offsets = store(&[("a", 0, 5), ("a", 1, 6)]);
        let request = OffsetFetchRequest {
            group_id: "g".into(),
            topics: Some(vec![("a".into(), vec![1, 9, 0]), ("z".into(), vec![0])]),
        };
        assert_eq!(
            offsets.fetch(&request).topics,
            vec![
                (
                    "a".into(),
                    vec![fetched(1, Some(6)), fetched(9, None), fetched(0, Some(5))]
                ),
                ("z".into(), vec![fetched(0, None)]),
            ]
        );
    }

    #[test]
    fn an_unknown_group_has_nothing_and_an_empty_id_is_invalid() {
        let offsets = store(&[("a", 0, 5)]);
        let all = |group: &str| OffsetFetchRequest {
            group_id: group.into(),
            topics: None,
        };
        let unknown = offsets.fetch(&all("other"));
        assert_eq!((unknown.error, unknown.topics), (ErrorCode::None, vec![]));
        assert_eq!(offsets.fetch(&all("")).error, ErrorCode::InvalidGroupId);
    }
}

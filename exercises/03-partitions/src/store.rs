//! [`TopicStore`]: the topics of one broker, each a set of partition logs
//! in a data directory laid out as Kafka lays it out:
//!
//! ```text
//! data/
//!   .lock              held while a store has the directory open
//!   topics.meta        which topics exist: the single source of truth
//!   orders-0/          partition 0 of "orders": a chapter 2 log
//!   orders-1/
//!   clicks.v2-0/
//! ```
//!
//! The rule that makes create, delete and add-partitions crash-safe:
//! **a partition directory that `topics.meta` does not list is garbage.**
//! Creating a topic makes its directories first and commits it to
//! `topics.meta` last; deleting commits first and removes directories
//! after. A crash between the two leaves directories nobody lists, and
//! the next open removes them: a half-created topic is rolled back, a
//! half-deleted one is finished, and neither is ever visible.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ch02_segments::{AppendInfo, Clock, Log, Record, StoredBatch, SystemClock};

use crate::config::TopicConfig;
use crate::error::{Result, StoreError};
use crate::metadata::{self, Metadata, TopicMeta};
use crate::name;

/// The most partitions one topic may have. Kafka has no hard limit, but
/// every partition is a directory and open files; this catches typos.
pub const MAX_PARTITIONS: u32 = 10_000;

/// The lock file in the data directory.
pub const LOCK_FILE: &str = ".lock";

/// The directory name of a topic's partition: `<topic>-<partition>`.
pub fn partition_dir_name(topic: &str, partition: u32) -> String {
    format!("{topic}-{partition}")
}

/// The topic and partition a directory name stands for, if it is one.
/// Topic names may contain `-`, so the partition is after the last one.
pub fn parse_partition_dir(dir_name: &str) -> Option<(&str, u32)> {
    let (topic, partition) = dir_name.rsplit_once('-')?;
    let number: u32 = partition.parse().ok()?;
    // Only the canonical spelling: "t-01" or "t-+1" are not ours.
    (number.to_string() == partition && name::validate(topic).is_ok()).then_some((topic, number))
}

/// What [`TopicStore::open`] found and did. Never silent.
#[derive(Debug, Default)]
pub struct OpenReport {
    /// Topics in the store.
    pub topics: usize,
    /// Partitions in the store, over all topics.
    pub partitions: usize,
    /// Partition directories `topics.meta` does not list, removed: the
    /// leftovers of a create or add-partitions that did not finish (rolled
    /// back) or of a delete that did not finish (completed).
    pub removed_dirs: Vec<String>,
    /// Partitions `topics.meta` lists whose directory was missing, created
    /// again, empty. Their data is gone: someone deleted it.
    pub recreated: Vec<String>,
    /// Partitions whose log was not closed cleanly and so was recovered,
    /// with what recovery did.
    pub recovered: Vec<(String, ch02_segments::OpenReport)>,
}

/// What [`TopicStore::create_topic`] has to say besides success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// Kafka's warning for names with `.` or `_`, which could collide with
    /// another topic's in metric names.
    pub warning: Option<String>,
}

/// One partition, as [`TopicStore::describe`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    /// The partition's number.
    pub partition: u32,
    /// Its first offset still stored.
    pub log_start_offset: u64,
    /// The offset its next record will get.
    pub log_end_offset: u64,
    /// Its bytes on disk, over all segments.
    pub size_bytes: u64,
    /// Its segment count.
    pub segments: usize,
}

/// One topic, as `kafka-topics --describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// The topic's name.
    pub name: String,
    /// Its settings.
    pub config: TopicConfig,
    /// Its partitions, in order.
    pub partitions: Vec<PartitionDescription>,
}

/// The topics of one broker: the metadata, and an open chapter 2 [`Log`]
/// for every partition.
pub struct TopicStore {
    dir: PathBuf,
    /// Held (with an operating system lock) until the store is dropped.
    _lock: File,
    clock: Arc<dyn Clock>,
    /// What `topics.meta` says; changed only after the file is.
    metadata: Metadata,
    /// Each topic's partition logs, indexed by partition number.
    logs: BTreeMap<String, Vec<Log>>,
}

impl TopicStore {
    /// Opens (or creates) the store in `dir`, finishing or rolling back any
    /// topic change a crash interrupted.
    pub fn open(dir: impl AsRef<Path>) -> Result<(TopicStore, OpenReport)> {
        TopicStore::open_with_clock(dir, Arc::new(SystemClock))
    }

    /// [`TopicStore::open`] with a clock for every log (tests use a
    /// [`ch02_segments::ManualClock`] to drive retention).
    pub fn open_with_clock(
        dir: impl AsRef<Path>,
        clock: Arc<dyn Clock>,
    ) -> Result<(TopicStore, OpenReport)> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let lock = lock(&dir)?;
        // A temporary metadata file is a write that never became the truth.
        remove_file_if_present(&dir.join(metadata::TMP_FILE))?;
        let metadata = match metadata::read(&dir)? {
            Some(metadata) => metadata,
            None => first_open(&dir)?,
        };
        let mut store = TopicStore {
            dir,
            _lock: lock,
            clock,
            metadata,
            logs: BTreeMap::new(),
        };
        let report = store.recover()?;
        Ok((store, report))
    }

    /// Makes the directory agree with `topics.meta`: removes every
    /// partition directory it does not list, then opens (or, if missing,
    /// creates) every partition it does.
    fn recover(&mut self) -> Result<OpenReport> {
        let removed_dirs = self.remove_unlisted()?;
        if !removed_dirs.is_empty() {
            // The removals must be on disk before anything new is made.
            metadata::sync_dir(&self.dir)?;
        }
        let mut report = OpenReport {
            removed_dirs,
            ..OpenReport::default()
        };
        todo!("exercise `open_listed`: For each topic `self.metadata` lists, open each partition's log (`Log::open_with_clock` on its directory, with the topic's `log_config()` and `self.clock`), noting in `report` a directory that was missing (`recreated`) or a log that did not shut down cleanly (`recovered`); count topics and partitions, and keep the logs in `self.logs`.")
    }

    /// Removes every partition directory that `topics.meta` does not list:
    /// the leftovers of changes a crash interrupted. Returns their names,
    /// sorted.
    fn remove_unlisted(&self) -> Result<Vec<String>> {
        todo!("exercise `remove_unlisted`: For each entry of the data directory whose name `parse_partition_dir` accepts: if `self.metadata` has no such topic, or the partition is not below its count, remove the directory (`fs::remove_dir_all`) and keep its name. Return the names sorted.")
    }

    /// Creates a topic with `partitions` empty partitions. The topic becomes
    /// visible (to [`TopicStore::topics`], and after a crash) all at once,
    /// when `topics.meta` is replaced, or not at all.
    pub fn create_topic(
        &mut self,
        topic: &str,
        partitions: u32,
        config: TopicConfig,
    ) -> Result<Created> {
        name::validate(topic)?;
        config.check_supported()?;
        check_partition_count(partitions)?;
        if self.metadata.topics.contains_key(topic) {
            return Err(StoreError::TopicExists(topic.to_string()));
        }
        let key = name::collision_key(topic);
        if let Some(existing) = self
            .metadata
            .topics
            .keys()
            .find(|t| name::collision_key(t) == key)
        {
            return Err(StoreError::Collision {
                name: topic.to_string(),
                existing: existing.clone(),
            });
        }
        todo!("exercise `create_topic`: Make the partitions first (`self.create_partitions(topic, 0..partitions, &config)`), invisible until the commit point: `metadata::write` of a copy of `self.metadata` with the topic added. If that write fails, `discard` the logs and return the error; otherwise adopt the new metadata, keep the logs, and warn (`name::has_collision_chars`) about a name with both '.' and '_'.")
    }

    /// Adds partitions to a topic, up to `new_count` in all. Partitions are
    /// never removed (their data and the keys that hash to them would be
    /// lost), so `new_count` must be more than the topic has. Keyed records
    /// after this may go to other partitions than before: the book's
    /// chapter explains why Kafka lets this happen.
    pub fn add_partitions(&mut self, topic: &str, new_count: u32) -> Result<()> {
        let meta = self.topic_meta(topic)?.clone();
        check_partition_count(new_count)?;
        if new_count <= meta.partitions {
            return Err(StoreError::InvalidPartitions(format!(
                "topic {topic:?} has {} partitions; the new count must be more (partitions are never removed)",
                meta.partitions
            )));
        }
        todo!("exercise `add_partitions`: As `create_topic`: make partitions `meta.partitions..new_count` first, then commit by writing metadata with the new count (discarding the new logs if the write fails), then extend the topic's logs.")
    }

    /// Deletes a topic and all its data. It disappears at once, when
    /// `topics.meta` is replaced; its directories are removed after. If
    /// removing them fails, the error is returned, the topic is deleted all
    /// the same, and the next open (or create of the same name) removes them.
    pub fn delete_topic(&mut self, topic: &str) -> Result<()> {
        self.topic_meta(topic)?;
        todo!("exercise `delete_topic`: Commit first: write metadata without the topic. Then drop its logs (closing their files) and remove each partition directory, and sync the data directory (`metadata::sync_dir`).")
    }

    /// Makes a directory and an empty log for each partition in `range`.
    /// On failure, removes what it made.
    fn create_partitions(
        &self,
        topic: &str,
        range: std::ops::Range<u32>,
        config: &TopicConfig,
    ) -> Result<Vec<Log>> {
        let mut logs = Vec::with_capacity(range.len());
        for partition in range {
            let path = self.dir.join(partition_dir_name(topic, partition));
            let made = remove_garbage(&path)
                .and_then(|()| fs::create_dir(&path).map_err(|e| StoreError::io(&path, e)))
                .and_then(|()| {
                    Log::open_with_clock(&path, config.log_config(), self.clock.clone())
                        .map(|(log, _)| log)
                        .map_err(|source| StoreError::Log {
                            topic: topic.to_string(),
                            partition,
                            source,
                        })
                });
            match made {
                Ok(log) => logs.push(log),
                Err(e) => {
                    discard(logs);
                    // As in `discard`: the open's error matters more, and
                    // an unlisted directory is removed at the next open.
                    let _ = fs::remove_dir_all(&path);
                    return Err(e);
                }
            }
        }
        // The new directory entries must be durable before the metadata
        // that lists them is, or a power cut could leave a listed partition
        // without its directory.
        if let Err(e) = metadata::sync_dir(&self.dir) {
            discard(logs);
            return Err(e);
        }
        Ok(logs)
    }

    /// The names of all topics, sorted.
    pub fn topics(&self) -> Vec<String> {
        self.metadata.topics.keys().cloned().collect()
    }

    /// A topic's partition count.
    pub fn partition_count(&self, topic: &str) -> Result<u32> {
        Ok(self.topic_meta(topic)?.partitions)
    }

    /// A topic's settings and the state of each partition.
    pub fn describe(&self, topic: &str) -> Result<TopicDescription> {
        let meta = self.topic_meta(topic)?;
        let partitions = self.logs[topic]
            .iter()
            .enumerate()
            .map(|(partition, log)| {
                let segments = log.segments();
                PartitionDescription {
                    partition: partition as u32,
                    log_start_offset: log.log_start_offset(),
                    log_end_offset: log.log_end_offset(),
                    size_bytes: segments.iter().map(|s| s.size).sum(),
                    segments: segments.len(),
                }
            })
            .collect();
        Ok(TopicDescription {
            name: topic.to_string(),
            config: meta.config.clone(),
            partitions,
        })
    }

    /// A partition's log, to read from.
    pub fn log(&self, topic: &str, partition: u32) -> Result<&Log> {
        let count = self.topic_meta(topic)?.partitions;
        self.logs[topic]
            .get(partition as usize)
            .ok_or_else(|| unknown_partition(topic, partition, count))
    }

    /// A partition's log, to append to.
    pub fn log_mut(&mut self, topic: &str, partition: u32) -> Result<&mut Log> {
        let count = self.topic_meta(topic)?.partitions;
        self.logs
            .get_mut(topic)
            .and_then(|logs| logs.get_mut(partition as usize))
            .ok_or_else(|| unknown_partition(topic, partition, count))
    }

    /// Appends records to one partition, as one batch.
    pub fn append(
        &mut self,
        topic: &str,
        partition: u32,
        records: &[Record],
    ) -> Result<AppendInfo> {
        self.log_mut(topic, partition)?
            .append(records)
            .map_err(|source| log_error(topic, partition, source))
    }

    /// Appends an encoded batch (from a producer) to one partition.
    pub fn append_batch(
        &mut self,
        topic: &str,
        partition: u32,
        batch: &mut [u8],
    ) -> Result<AppendInfo> {
        self.log_mut(topic, partition)?
            .append_batch(batch)
            .map_err(|source| log_error(topic, partition, source))
    }

    /// Reads whole batches from one partition, from the batch holding
    /// `offset`, up to about `max_bytes`.
    pub fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_bytes: u64,
    ) -> Result<Vec<StoredBatch>> {
        self.log(topic, partition)?
            .read(offset, max_bytes)
            .map_err(|source| log_error(topic, partition, source))
    }

    /// Applies every partition's retention; returns how many segments were
    /// deleted in all.
    pub fn apply_retention(&mut self) -> Result<usize> {
        let mut deleted = 0;
        for (topic, logs) in &mut self.logs {
            for (partition, log) in logs.iter_mut().enumerate() {
                let report = log
                    .apply_retention()
                    .map_err(|source| log_error(topic, partition as u32, source))?;
                deleted += report.deleted_segments.len();
            }
        }
        Ok(deleted)
    }

    /// Syncs every partition's log to disk.
    pub fn sync(&mut self) -> Result<()> {
        for (topic, logs) in &mut self.logs {
            for (partition, log) in logs.iter_mut().enumerate() {
                log.sync()
                    .map_err(|source| log_error(topic, partition as u32, source))?;
            }
        }
        Ok(())
    }

    /// Closes every log cleanly, so the next open reads almost nothing.
    pub fn close(self) -> Result<()> {
        for (topic, logs) in self.logs {
            for (partition, log) in logs.into_iter().enumerate() {
                log.close()
                    .map_err(|source| log_error(&topic, partition as u32, source))?;
            }
        }
        Ok(())
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn topic_meta(&self, topic: &str) -> Result<&TopicMeta> {
        self.metadata
            .topics
            .get(topic)
            .ok_or_else(|| StoreError::UnknownTopic(topic.to_string()))
    }
}

fn check_partition_count(partitions: u32) -> Result<()> {
    if partitions == 0 || partitions > MAX_PARTITIONS {
        return Err(StoreError::InvalidPartitions(format!(
            "{partitions}; a topic has 1 to {MAX_PARTITIONS} partitions"
        )));
    }
    Ok(())
}

fn unknown_partition(topic: &str, partition: u32, count: u32) -> StoreError {
    StoreError::UnknownPartition {
        topic: topic.to_string(),
        partition,
        count,
    }
}

fn log_error(topic: &str, partition: u32, source: ch02_segments::LogError) -> StoreError {
    StoreError::Log {
        topic: topic.to_string(),
        partition,
        source,
    }
}

/// Closes and removes partition logs that were never committed. Errors
/// are ignored: what is left is garbage the next open removes.
fn discard(logs: Vec<Log>) {
    for log in logs {
        let path = log.dir().to_path_buf();
        drop(log);
        let _ = fs::remove_dir_all(&path);
    }
}

/// Removes a partition directory that no metadata lists (a delete whose
/// cleanup failed), so that the name can be used again.
fn remove_garbage(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::io(path, e)),
        _ => Ok(()),
    }
}

fn remove_file_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::io(path, e)),
        _ => Ok(()),
    }
}

/// Takes the data directory's lock, so that two stores (two brokers
/// started on one directory by mistake) cannot both write to it.
fn lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(StoreError::io(&path, e)),
    }
}

/// A directory without `topics.meta`: a new store, if it is empty. If it
/// holds anything else, it is not a data directory (or its metadata was
/// lost), and removing "unlisted" directories would destroy what is there.
fn first_open(dir: &Path) -> Result<Metadata> {
    let entries = fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let name = entry.file_name();
        if name != LOCK_FILE {
            return Err(StoreError::Metadata {
                path: dir.join(metadata::FILE),
                detail: format!(
                    "missing, and the directory is not empty (it holds {:?}); refusing to treat it as a new data directory",
                    name
                ),
            });
        }
    }
    let empty = Metadata::default();
    metadata::write(dir, &empty)?;
    Ok(empty)
}

//! [`DiskStorage`]: a broker's replicated state in its real data
//! directory, over chapter 3's [`TopicStore`], laid out as Kafka lays it
//! out:
//!
//! ```text
//! data/
//!   topics.meta                    chapter 3: which topics exist here
//!   replication-offset-checkpoint  every hosted partition's high watermark
//!   orders-0/                      chapter 2's log of partition 0, and
//!     leader-epoch-checkpoint      its leader-epoch cache (KIP-101)
//! ```
//!
//! Both checkpoints are in Kafka's own text format: a version line (`0`), a
//! count line, then one entry per line (`epoch start_offset` for the epoch
//! cache, `topic partition offset` for the high watermarks). Each is
//! replaced atomically and durably: written to a temporary file, synced,
//! renamed over the old one, and the directory synced, so that a crash
//! leaves the old file or the new one, never half of either. Chapter 2's
//! log removes a partition directory's leftover `*.tmp` files when it
//! opens; chapter 3's store leaves alone files in the data directory that
//! are not partition directories, so neither chokes on these.
//!
//! A [`DiskStorage`] borrows the store for one call into the
//! [`crate::manager::ReplicaManager`]: the service takes the store's lock,
//! wraps it, and lets go when the call returns.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use ch02_segments::{Log, LogError};
use ch03_partitions::store::partition_dir_name;
use ch03_partitions::{StoreError, TopicConfig, TopicPartition, TopicStore};
use tracing::warn;

use crate::epoch::EpochEntry;
use crate::storage::Storage;

/// A partition's leader-epoch checkpoint, in its directory.
pub const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";

/// The high-watermark checkpoint, in the data directory.
pub const REPLICATION_OFFSET_CHECKPOINT: &str = "replication-offset-checkpoint";

/// The only version of the checkpoint format (Kafka's is 0 too).
const VERSION: u32 = 0;

/// Why a checkpoint file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The operating system refused a file operation.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is not a checkpoint: damaged, cut short, or from
    /// something else.
    #[error("{}: line {line}: {detail}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The line (from 1) where it went wrong.
        line: usize,
        /// What was wrong with it.
        detail: String,
    },
}

impl From<CheckpointError> for LogError {
    /// The [`Storage`] trait speaks chapter 2's errors: a checkpoint that
    /// cannot be written is an I/O error on its file.
    fn from(error: CheckpointError) -> LogError {
        match error {
            CheckpointError::Io { path, source } => LogError::Io { path, source },
            CheckpointError::Corrupt { ref path, .. } => LogError::Io {
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, error.to_string()),
            },
        }
    }
}

// ANCHOR: checkpoint_format
/// Parses a checkpoint: the version line, the count line, then `count`
/// lines of exactly `fields` fields separated by spaces, each ended by a
/// newline. A file cut short (a torn write the rename should have made
/// impossible, or a disk that lied) fails the count check or the final
/// newline check, rather than passing for a shorter list or for a number
/// cut in half (`3 150` torn to `3 1`).
fn parse(path: &Path, text: &str, fields: usize) -> Result<Vec<Vec<String>>, CheckpointError> {
    let corrupt = |line: usize, detail: String| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        line,
        detail,
    };
    if !text.ends_with('\n') {
        let line = text.lines().count().max(1);
        return Err(corrupt(line, "the last line is cut short".to_string()));
    }
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let number = |(line, text): (usize, &str)| {
        text.trim()
            .parse::<u64>()
            .map_err(|_| corrupt(line, format!("expected a number, found {text:?}")))
    };
    let version = number(lines.next().unwrap_or((1, "")))?;
    if version != u64::from(VERSION) {
        return Err(corrupt(1, format!("unknown version {version}")));
    }
    let count = number(lines.next().unwrap_or((2, "")))?;
    let mut entries = Vec::new();
    for (line, text) in lines {
        let entry: Vec<String> = text.split_whitespace().map(str::to_string).collect();
        if entry.len() != fields {
            return Err(corrupt(
                line,
                format!("expected {fields} fields, found {text:?}"),
            ));
        }
        entries.push(entry);
    }
    if entries.len() as u64 != count {
        return Err(corrupt(
            entries.len() + 3,
            format!(
                "the count line says {count} entries, the file has {}",
                entries.len()
            ),
        ));
    }
    Ok(entries)
}

/// The text of a checkpoint holding `entries` (one line each).
fn render(entries: &[String]) -> String {
    let mut text = format!("{VERSION}\n{}\n", entries.len());
    for entry in entries {
        text.push_str(entry);
        text.push('\n');
    }
    text
}

/// Replaces the file at `path` with `contents`, atomically and durably:
/// a temporary file beside it, synced, renamed over it, and the directory
/// synced (the rename is a change to the directory, and is only durable
/// once the directory is). Chapter 7's Raft storage uses it too.
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), CheckpointError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CheckpointError::Io { path, source }
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!("{name}.tmp"));
    let mut file = File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}
// ANCHOR_END: checkpoint_format

/// Reads a checkpoint file's text; `None` if there is no such file.
fn read_text(path: &Path) -> Result<Option<String>, CheckpointError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        // Bytes that are not UTF-8 are a damaged file, not a disk error.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(CheckpointError::Corrupt {
            path: path.to_path_buf(),
            line: 1,
            detail: "not text".to_string(),
        }),
        Err(source) => Err(CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Reads a partition's leader-epoch checkpoint; `None` if it has none.
pub fn read_epoch_checkpoint(path: &Path) -> Result<Option<Vec<EpochEntry>>, CheckpointError> {
    let Some(text) = read_text(path)? else {
        return Ok(None);
    };
    let entries = parse(path, &text, 2)?;
    let mut epochs = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let (Ok(epoch), Ok(start_offset)) = (entry[0].parse(), entry[1].parse()) else {
            return Err(CheckpointError::Corrupt {
                path: path.to_path_buf(),
                line: i + 3,
                detail: format!("expected `epoch offset`, found {:?}", entry.join(" ")),
            });
        };
        epochs.push(EpochEntry {
            epoch,
            start_offset,
        });
    }
    Ok(Some(epochs))
}

/// Replaces a partition's leader-epoch checkpoint.
pub fn write_epoch_checkpoint(path: &Path, entries: &[EpochEntry]) -> Result<(), CheckpointError> {
    let lines: Vec<String> = entries
        .iter()
        .map(|e| format!("{} {}", e.epoch, e.start_offset))
        .collect();
    write_atomically(path, render(&lines).as_bytes())
}

/// Reads the high-watermark checkpoint (empty if there is none).
pub fn read_offset_checkpoint(
    path: &Path,
) -> Result<BTreeMap<TopicPartition, u64>, CheckpointError> {
    let Some(text) = read_text(path)? else {
        return Ok(BTreeMap::new());
    };
    let mut offsets = BTreeMap::new();
    for (i, entry) in parse(path, &text, 3)?.into_iter().enumerate() {
        let (Ok(partition), Ok(offset)) = (entry[1].parse(), entry[2].parse()) else {
            return Err(CheckpointError::Corrupt {
                path: path.to_path_buf(),
                line: i + 3,
                detail: format!(
                    "expected `topic partition offset`, found {:?}",
                    entry.join(" ")
                ),
            });
        };
        offsets.insert(TopicPartition::new(entry[0].clone(), partition), offset);
    }
    Ok(offsets)
}

/// Replaces the high-watermark checkpoint. (Topic names never hold a
/// space: chapter 3's naming rules allow letters, digits, `.`, `_`, `-`.)
pub fn write_offset_checkpoint(
    path: &Path,
    offsets: &BTreeMap<TopicPartition, u64>,
) -> Result<(), CheckpointError> {
    let lines: Vec<String> = offsets
        .iter()
        .map(|(tp, offset)| format!("{} {} {offset}", tp.topic, tp.partition))
        .collect();
    write_atomically(path, render(&lines).as_bytes())
}

/// A broker's replicated state on disk: chapter 3's store for the logs,
/// and the two checkpoints beside them.
///
/// Which partitions does this broker *host*? Those whose directory holds
/// a `leader-epoch-checkpoint`: [`Storage::create_log`] writes an empty
/// one when the controller first assigns a replica here. Topics the
/// broker's clients created with chapter 4's CreateTopics (and chapter
/// 5's `__consumer_offsets`) have none, so replication never touches them.
pub struct DiskStorage<'a> {
    store: &'a mut TopicStore,
}

impl<'a> DiskStorage<'a> {
    /// The replicated state in `store`'s data directory.
    pub fn new(store: &'a mut TopicStore) -> DiskStorage<'a> {
        DiskStorage { store }
    }

    fn epoch_path(&self, tp: &TopicPartition) -> PathBuf {
        self.store
            .dir()
            .join(partition_dir_name(&tp.topic, tp.partition))
            .join(LEADER_EPOCH_CHECKPOINT)
    }

    fn offsets_path(&self) -> PathBuf {
        self.store.dir().join(REPLICATION_OFFSET_CHECKPOINT)
    }
}

/// Chapter 3's errors in chapter 2's terms, which [`Storage`] speaks.
fn store_error(error: StoreError, dir: &Path) -> LogError {
    match error {
        StoreError::Log { source, .. } => source,
        StoreError::Io { path, source } => LogError::Io { path, source },
        other => LogError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::other(other.to_string()),
        },
    }
}

impl Storage for DiskStorage<'_> {
    type Log = Log;

    fn partitions(&self) -> Vec<TopicPartition> {
        let mut hosted = Vec::new();
        for topic in self.store.topics() {
            // Listed, so it has a count.
            let count = self.store.partition_count(&topic).unwrap_or(0);
            for partition in 0..count {
                let tp = TopicPartition::new(topic.clone(), partition);
                if self.epoch_path(&tp).exists() {
                    hosted.push(tp);
                }
            }
        }
        hosted
    }

    fn log(&mut self, tp: &TopicPartition) -> Option<&mut Log> {
        self.store.log_mut(&tp.topic, tp.partition).ok()
    }

    /// Creates the topic here, or adds partitions to it, so that `tp`
    /// exists; then marks `tp` hosted with an empty epoch checkpoint.
    ///
    /// Chapter 3's store numbers a topic's partitions from 0 without gaps,
    /// so a broker assigned only partition 2 gets empty logs for 0 and 1
    /// too. They are never hosted (no checkpoint): they cost two empty
    /// directories and nothing else. A real broker creates only its own
    /// partitions' logs. The topic gets the default settings; a real
    /// broker takes them from the controller's metadata.
    fn create_log(&mut self, tp: &TopicPartition) -> Result<(), LogError> {
        let dir = self.store.dir().to_path_buf();
        let wanted = tp.partition + 1;
        let created = match self.store.partition_count(&tp.topic) {
            Ok(count) if count >= wanted => Ok(()),
            Ok(_) => self.store.add_partitions(&tp.topic, wanted),
            Err(_) => self
                .store
                .create_topic(&tp.topic, wanted, TopicConfig::default())
                .map(|_| ()),
        };
        created.map_err(|e| store_error(e, &dir))?;
        let path = self.epoch_path(tp);
        if !path.exists() {
            write_epoch_checkpoint(&path, &[])?;
        }
        Ok(())
    }

    fn read_epochs(&self, tp: &TopicPartition) -> Vec<EpochEntry> {
        match read_epoch_checkpoint(&self.epoch_path(tp)) {
            Ok(entries) => entries.unwrap_or_default(),
            // An unreadable cache is taken as empty. A follower with no
            // epochs cannot ask where its log diverged, so it truncates
            // to its high watermark (Kafka's rule for logs written before
            // epochs) and fetches the rest again. Guessing at a damaged
            // file instead could keep records no leader ever committed.
            Err(e) => {
                warn!(partition = %tp, error = %e, "unreadable leader-epoch checkpoint; starting with an empty cache");
                Vec::new()
            }
        }
    }

    fn write_epochs(
        &mut self,
        tp: &TopicPartition,
        entries: &[EpochEntry],
    ) -> Result<(), LogError> {
        Ok(write_epoch_checkpoint(&self.epoch_path(tp), entries)?)
    }

    fn read_high_watermarks(&self) -> BTreeMap<TopicPartition, u64> {
        match read_offset_checkpoint(&self.offsets_path()) {
            Ok(offsets) => offsets,
            // Every high watermark starts at 0 instead: consumers see
            // nothing until the leader has heard from its followers again,
            // which it soon does. Nothing committed is lost; the high
            // watermark only says what may be read.
            Err(e) => {
                warn!(error = %e, "unreadable high-watermark checkpoint; starting from 0");
                BTreeMap::new()
            }
        }
    }

    fn write_high_watermarks(
        &mut self,
        hws: &BTreeMap<TopicPartition, u64>,
    ) -> Result<(), LogError> {
        Ok(write_offset_checkpoint(&self.offsets_path(), hws)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(topic: &str, partition: u32) -> TopicPartition {
        TopicPartition::new(topic, partition)
    }

    fn epochs(entries: &[(u32, u64)]) -> Vec<EpochEntry> {
        entries
            .iter()
            .map(|&(epoch, start_offset)| EpochEntry {
                epoch,
                start_offset,
            })
            .collect()
    }

    #[test]
    fn checkpoints_are_kafkas_text_format_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LEADER_EPOCH_CHECKPOINT);
        let entries = epochs(&[(0, 0), (3, 150)]);
        write_epoch_checkpoint(&path, &entries).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "0\n2\n0 0\n3 150\n");
        assert_eq!(read_epoch_checkpoint(&path).unwrap(), Some(entries));

        let path = dir.path().join(REPLICATION_OFFSET_CHECKPOINT);
        let offsets = BTreeMap::from([(tp("orders", 0), 150), (tp("orders", 1), 20)]);
        write_offset_checkpoint(&path, &offsets).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "0\n2\norders 0 150\norders 1 20\n"
        );
        assert_eq!(read_offset_checkpoint(&path).unwrap(), offsets);
    }

    #[test]
    fn a_missing_checkpoint_is_empty_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            read_epoch_checkpoint(&dir.path().join("none")).unwrap(),
            None
        );
        assert!(
            read_offset_checkpoint(&dir.path().join("none"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_torn_or_damaged_checkpoint_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LEADER_EPOCH_CHECKPOINT);
        let cases: [&[u8]; 7] = [
            b"0\n2\n0 0\n",         // cut after the first entry
            b"0\n2\n0 0\n3 1",      // cut inside the last line: `3 150` would read as `3 1`
            b"0\n",                 // cut after the version
            b"",                    // empty
            b"1\n0\n",              // an unknown version
            b"0\n1\n0 x\n",         // not a number
            b"\xff\xfe\x00garbage", // not text
        ];
        for (i, bytes) in cases.iter().enumerate() {
            fs::write(&path, bytes).unwrap();
            let result = read_epoch_checkpoint(&path);
            assert!(
                matches!(result, Err(CheckpointError::Corrupt { .. })),
                "case {i}: {result:?}"
            );
        }
        let path = dir.path().join(REPLICATION_OFFSET_CHECKPOINT);
        fs::write(&path, "0\n3\norders 0 1\norders 1 2\n").unwrap();
        assert!(matches!(
            read_offset_checkpoint(&path),
            Err(CheckpointError::Corrupt { line: 5, .. })
        ));
        fs::write(&path, "0\n1\norders 0\n").unwrap();
        assert!(matches!(
            read_offset_checkpoint(&path),
            Err(CheckpointError::Corrupt { line: 3, .. })
        ));
    }

    #[test]
    fn storage_falls_back_safely_on_damaged_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = TopicStore::open(dir.path()).unwrap();
        let mut storage = DiskStorage::new(&mut store);
        storage.create_log(&tp("t", 0)).unwrap();
        storage
            .write_epochs(&tp("t", 0), &epochs(&[(1, 0)]))
            .unwrap();
        fs::write(
            dir.path().join("t-0").join(LEADER_EPOCH_CHECKPOINT),
            "0\n5\n1 0\n",
        )
        .unwrap();
        fs::write(dir.path().join(REPLICATION_OFFSET_CHECKPOINT), "garbage").unwrap();
        assert_eq!(storage.read_epochs(&tp("t", 0)), Vec::new());
        assert!(storage.read_high_watermarks().is_empty());
        // Still hosted: the damaged file marks it.
        assert_eq!(storage.partitions(), vec![tp("t", 0)]);
    }

    #[test]
    fn hosted_partitions_and_checkpoints_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut store, _) = TopicStore::open(dir.path()).unwrap();
            // A local, unreplicated topic: never hosted.
            store
                .create_topic("local", 1, TopicConfig::default())
                .unwrap();
            let mut storage = DiskStorage::new(&mut store);
            // Only partition 2 is assigned here: 0 and 1 get empty logs,
            // not hosted.
            storage.create_log(&tp("orders", 2)).unwrap();
            storage.create_log(&tp("orders", 2)).unwrap(); // again: no error
            storage.create_log(&tp("orders", 4)).unwrap(); // adds partitions
            storage
                .write_epochs(&tp("orders", 2), &epochs(&[(0, 0), (2, 1)]))
                .unwrap();
            let mut batch =
                ch02_segments::batch::encode(&[ch02_segments::Record::new("v")]).unwrap();
            storage
                .log(&tp("orders", 2))
                .unwrap()
                .append_batch(&mut batch)
                .unwrap();
            let hws = BTreeMap::from([(tp("orders", 2), 1), (tp("orders", 4), 0)]);
            storage.write_high_watermarks(&hws).unwrap();
            // No clean close: as after a crash.
        }
        // Chapter 3's store and chapter 2's logs open the directory with
        // the checkpoint files (and a leftover temporary file) in it.
        fs::write(
            dir.path()
                .join("orders-2")
                .join("leader-epoch-checkpoint.tmp"),
            "0\n",
        )
        .unwrap();
        let (mut store, report) = TopicStore::open(dir.path()).unwrap();
        assert!(report.removed_dirs.is_empty(), "{report:?}");
        assert_eq!(store.partition_count("orders").unwrap(), 5);
        assert!(
            !dir.path()
                .join("orders-2")
                .join("leader-epoch-checkpoint.tmp")
                .exists()
        );
        let mut storage = DiskStorage::new(&mut store);
        assert_eq!(storage.partitions(), vec![tp("orders", 2), tp("orders", 4)]);
        assert_eq!(
            storage.read_epochs(&tp("orders", 2)),
            epochs(&[(0, 0), (2, 1)])
        );
        assert_eq!(storage.read_epochs(&tp("orders", 4)), Vec::new());
        assert_eq!(storage.read_high_watermarks()[&tp("orders", 2)], 1);
        assert_eq!(storage.log(&tp("orders", 2)).unwrap().log_end_offset(), 1);
        assert!(storage.log(&tp("orders", 9)).is_none());
    }
}

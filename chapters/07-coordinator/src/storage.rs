//! A server's durable state on disk: Raft's hard state, its latest
//! snapshot, and its log, with one `fsync` for every write since the last
//! (group commit).
//!
//! ## Layout
//!
//! Three files in the server's data directory:
//!
//! - `hard-state`: the term and vote, rewritten whole (atomically: a
//!   temporary file, synced, renamed over the old one, the directory
//!   synced) whenever they change;
//! - `snapshot`: the latest snapshot, rewritten the same way;
//! - `log`: the entries after the snapshot, each in a chapter 1 frame
//!   (length, CRC, bytes) so that a torn or damaged tail is found and cut on
//!   open. A truncation cuts the file; a snapshot rewrites it without the
//!   entries it covers.
//!
//! ## When things are durable
//!
//! [`Storage::write`] only hands the writes to the operating system.
//! [`Storage::sync`] makes them all durable: the hard state and snapshot
//! first, then one `fsync` of the log. Raft's shell sends nothing that
//! depends on a write until `sync` returns. A crash before then may keep
//! any prefix of the log's unsynced entries (a torn last frame is cut),
//! which Raft allows: none of them was promised to anyone.
//!
//! A damaged `hard-state` or `snapshot` is an error, not a reason to start
//! empty: a server that forgot its vote could vote twice in one term.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ch01_commit_log::frame;
use ch06_replication::disk::{CheckpointError, write_atomically};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::raft::{DiskWrite, Entry, HardState, Index, Snapshot};
use crate::state::LogEntry;

/// What can go wrong with a server's files.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The operating system refused a file operation.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// A file does not hold what it should.
    #[error("{} is damaged: {detail}", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

impl From<CheckpointError> for StorageError {
    fn from(error: CheckpointError) -> Self {
        match error {
            CheckpointError::Io { path, source } => StorageError::Io { path, source },
            CheckpointError::Corrupt { path, detail, .. } => StorageError::Damaged { path, detail },
        }
    }
}

type Result<T> = std::result::Result<T, StorageError>;

/// What a server finds on disk when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recovered {
    /// Its term and vote.
    pub hard: HardState,
    /// Its latest snapshot.
    pub snapshot: Option<Snapshot>,
    /// The log after the snapshot.
    pub log: Vec<Entry<LogEntry>>,
    /// Bytes cut from the log's tail: a torn or damaged last write.
    pub cut_bytes: u64,
}

/// A server's files.
#[derive(Debug)]
pub struct Storage {
    dir: PathBuf,
    log: File,
    /// Each entry's index and where its frame starts, in order.
    positions: Vec<(Index, u64)>,
    log_len: u64,
    /// The snapshot's last index, below which entries are not kept.
    base: Index,
    hard: HardState,
    hard_dirty: bool,
    snapshot: Option<Snapshot>,
    snapshot_dirty: bool,
    log_dirty: bool,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).expect("our own types encode")
}

fn decode<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(value, _)| value)
        .map_err(|e| StorageError::Damaged {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })
}

/// Reads a whole file, or `None` if there is none.
fn read_file(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path)(e)),
    }
}

impl Storage {
    /// Opens (or creates) the files in `dir`, cutting a torn or damaged log
    /// tail, and returns what they hold.
    pub fn open(dir: &Path) -> Result<(Storage, Recovered)> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let hard_path = dir.join("hard-state");
        let hard = match read_file(&hard_path)? {
            Some(bytes) => decode(&hard_path, &bytes)?,
            None => HardState::default(),
        };
        let snapshot_path = dir.join("snapshot");
        let snapshot: Option<Snapshot> = match read_file(&snapshot_path)? {
            Some(bytes) => Some(decode(&snapshot_path, &bytes)?),
            None => None,
        };
        let base = snapshot.as_ref().map_or(0, |s| s.last_index);
        let log_path = dir.join("log");
        let bytes = read_file(&log_path)?.unwrap_or_default();
        let scan = frame::scan(&bytes);
        let mut log = Vec::new();
        let mut positions = Vec::new();
        for &position in &scan.positions {
            let frame::Decoded::Frame { payload, .. } = frame::decode(&bytes[position as usize..])
            else {
                unreachable!("scan found a whole frame here");
            };
            let entry: Entry<LogEntry> = decode(&log_path, payload)?;
            let expected = log.last().map_or(base, |e: &Entry<LogEntry>| e.index) + 1;
            if entry.index <= base {
                // Covered by the snapshot: a rewrite of the log was cut
                // short by a crash. Skip it.
                continue;
            }
            if entry.index != expected {
                return Err(StorageError::Damaged {
                    path: log_path,
                    detail: format!("entry {} where {expected} should be", entry.index),
                });
            }
            positions.push((entry.index, position));
            log.push(entry);
        }
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&log_path)
            .map_err(io_error(&log_path))?;
        let cut_bytes = bytes.len() as u64 - scan.valid_len;
        if cut_bytes > 0 {
            file.set_len(scan.valid_len)
                .and_then(|()| file.sync_all())
                .map_err(io_error(&log_path))?;
        }
        let storage = Storage {
            dir: dir.to_path_buf(),
            log: file,
            positions,
            log_len: scan.valid_len,
            base,
            hard,
            hard_dirty: false,
            snapshot: snapshot.clone(),
            snapshot_dirty: false,
            log_dirty: false,
        };
        let recovered = Recovered {
            hard,
            snapshot,
            log,
            cut_bytes,
        };
        Ok((storage, recovered))
    }

    /// The index of the last entry written.
    pub fn last_index(&self) -> Index {
        self.positions.last().map_or(self.base, |&(i, _)| i)
    }

    /// Makes `writes`, in order; durable only after [`Storage::sync`].
    pub fn write(&mut self, writes: &[DiskWrite<LogEntry>]) -> Result<()> {
        let log_path = self.dir.join("log");
        // A group of appends goes to the file in one `write` call: their
        // frames are collected here, and written before a truncation and
        // at the end.
        let mut frames = Vec::new();
        for write in writes {
            match write {
                DiskWrite::Hard(hard) => {
                    self.hard = *hard;
                    self.hard_dirty = true;
                }
                DiskWrite::Snapshot(snapshot) => {
                    self.base = self.base.max(snapshot.last_index);
                    self.snapshot = Some(snapshot.clone());
                    self.snapshot_dirty = true;
                }
                DiskWrite::Truncate(from) => {
                    self.log.write_all(&frames).map_err(io_error(&log_path))?;
                    frames.clear();
                    let keep = self.positions.partition_point(|&(i, _)| i < *from);
                    if let Some(&(_, position)) = self.positions.get(keep) {
                        self.log.set_len(position).map_err(io_error(&log_path))?;
                        self.log_len = position;
                        self.positions.truncate(keep);
                        self.log_dirty = true;
                    }
                }
                DiskWrite::Append(entry) => {
                    if entry.index <= self.last_index() {
                        continue;
                    }
                    let start = frames.len();
                    frame::encode(&encode(entry), &mut frames);
                    self.positions.push((entry.index, self.log_len));
                    self.log_len += (frames.len() - start) as u64;
                    self.log_dirty = true;
                }
            }
        }
        self.log.write_all(&frames).map_err(io_error(&log_path))?;
        Ok(())
    }

    /// Makes every write so far durable; returns the last index synced.
    pub fn sync(&mut self) -> Result<Index> {
        if self.hard_dirty {
            write_atomically(&self.dir.join("hard-state"), &encode(&self.hard))?;
            self.hard_dirty = false;
        }
        if self.snapshot_dirty
            && let Some(snapshot) = &self.snapshot
        {
            write_atomically(&self.dir.join("snapshot"), &encode(snapshot))?;
            self.snapshot_dirty = false;
            self.compact()?;
        }
        if self.log_dirty {
            let path = self.dir.join("log");
            self.log.sync_data().map_err(io_error(&path))?;
            self.log_dirty = false;
        }
        Ok(self.last_index())
    }

    /// Rewrites the log without the entries the snapshot covers.
    fn compact(&mut self) -> Result<()> {
        let path = self.dir.join("log");
        let bytes = fs::read(&path).map_err(io_error(&path))?;
        let keep = self.positions.partition_point(|&(i, _)| i <= self.base);
        let from = self
            .positions
            .get(keep)
            .map_or(bytes.len() as u64, |&(_, p)| p);
        let tail = &bytes[from as usize..];
        write_atomically(&path, tail)?;
        self.log = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        self.positions = self.positions[keep..]
            .iter()
            .map(|&(i, p)| (i, p - from))
            .collect();
        self.log_len = tail.len() as u64;
        self.log_dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Command;

    fn entry(term: u64, index: Index) -> Entry<LogEntry> {
        Entry {
            term,
            index,
            command: Some(LogEntry {
                time: index,
                command: Command::CloseSession { session: index },
            }),
        }
    }

    fn appends(range: std::ops::RangeInclusive<Index>, term: u64) -> Vec<DiskWrite<LogEntry>> {
        range.map(|i| DiskWrite::Append(entry(term, i))).collect()
    }

    #[test]
    fn what_was_synced_is_there_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (mut storage, recovered) = Storage::open(dir.path()).unwrap();
        assert_eq!(recovered, Recovered::default());
        let hard = HardState {
            term: 3,
            voted_for: Some(2),
        };
        storage.write(&[DiskWrite::Hard(hard)]).unwrap();
        storage.write(&appends(1..=5, 3)).unwrap();
        assert_eq!(storage.sync().unwrap(), 5);
        drop(storage);
        let (_, recovered) = Storage::open(dir.path()).unwrap();
        assert_eq!(recovered.hard, hard);
        assert_eq!(
            recovered.log,
            (1..=5).map(|i| entry(3, i)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_torn_last_entry_is_cut_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (mut storage, _) = Storage::open(dir.path()).unwrap();
        storage.write(&appends(1..=3, 1)).unwrap();
        storage.sync().unwrap();
        drop(storage);
        // A crash in the middle of the fourth entry's write.
        let mut torn = Vec::new();
        frame::encode(&encode(&entry(1, 4)), &mut torn);
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join("log"))
            .unwrap();
        file.write_all(&torn[..torn.len() / 2]).unwrap();
        drop(file);
        let (mut storage, recovered) = Storage::open(dir.path()).unwrap();
        assert_eq!(recovered.log.len(), 3);
        assert_eq!(recovered.cut_bytes, (torn.len() / 2) as u64);
        // And the log goes on from there.
        storage.write(&appends(4..=4, 2)).unwrap();
        storage.sync().unwrap();
        drop(storage);
        let (_, recovered) = Storage::open(dir.path()).unwrap();
        assert_eq!(recovered.log.last(), Some(&entry(2, 4)));
    }

    #[test]
    fn a_truncation_replaces_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (mut storage, _) = Storage::open(dir.path()).unwrap();
        storage.write(&appends(1..=5, 1)).unwrap();
        storage.sync().unwrap();
        let mut writes = vec![DiskWrite::Truncate(3)];
        writes.extend(appends(3..=4, 2));
        storage.write(&writes).unwrap();
        storage.sync().unwrap();
        drop(storage);
        let (_, recovered) = Storage::open(dir.path()).unwrap();
        let terms: Vec<_> = recovered.log.iter().map(|e| (e.index, e.term)).collect();
        assert_eq!(terms, vec![(1, 1), (2, 1), (3, 2), (4, 2)]);
    }

    #[test]
    fn a_snapshot_drops_the_entries_it_covers() {
        let dir = tempfile::tempdir().unwrap();
        let (mut storage, _) = Storage::open(dir.path()).unwrap();
        storage.write(&appends(1..=6, 1)).unwrap();
        storage.sync().unwrap();
        let snapshot = Snapshot {
            last_index: 4,
            last_term: 1,
            data: b"state".to_vec(),
        };
        storage
            .write(&[DiskWrite::Snapshot(snapshot.clone())])
            .unwrap();
        storage.write(&appends(7..=7, 1)).unwrap();
        storage.sync().unwrap();
        drop(storage);
        let (_, recovered) = Storage::open(dir.path()).unwrap();
        assert_eq!(recovered.snapshot, Some(snapshot));
        let indexes: Vec<_> = recovered.log.iter().map(|e| e.index).collect();
        assert_eq!(indexes, vec![5, 6, 7]);
    }

    #[test]
    fn a_snapshot_from_the_leader_replaces_the_whole_log() {
        let dir = tempfile::tempdir().unwrap();
        let (mut storage, _) = Storage::open(dir.path()).unwrap();
        storage.write(&appends(1..=3, 1)).unwrap();
        storage.sync().unwrap();
        let first = Snapshot {
            last_index: 2,
            last_term: 1,
            data: b"one".to_vec(),
        };
        storage.write(&[DiskWrite::Snapshot(first)]).unwrap();
        storage.sync().unwrap();
        // The leader's snapshot is past our log, which disagrees with it.
        let theirs = Snapshot {
            last_index: 9,
            last_term: 4,
            data: b"theirs".to_vec(),
        };
        let writes = [DiskWrite::Snapshot(theirs.clone()), DiskWrite::Truncate(3)];
        storage.write(&writes).unwrap();
        storage.sync().unwrap();
        assert_eq!(storage.last_index(), 9);
        drop(storage);
        let (_, recovered) = Storage::open(dir.path()).unwrap();
        assert_eq!(recovered.snapshot, Some(theirs));
        assert!(recovered.log.is_empty());
    }

    #[test]
    fn a_damaged_vote_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("hard-state"), [0xff; 3]).unwrap();
        let error = Storage::open(dir.path()).unwrap_err();
        assert!(matches!(error, StorageError::Damaged { .. }), "{error}");
    }
}

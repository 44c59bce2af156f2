//! A server's durable state on disk: Raft's hard state, its latest
//! snapshot, and its log, with one `fsync` for every write since the last
//! (group commit).
//!
//! ## Layout
//!
//! Files in the server's data directory:
//!
//! - `hard-state`: the term and vote, rewritten whole (atomically: a
//!   temporary file, synced, renamed over the old one, the directory
//!   synced) whenever they change;
//! - `snapshot-<index>`: the latest snapshot, named by the last index it
//!   covers (20 digits), written the same way. An older one is deleted
//!   once a newer one is on disk;
//! - `log-<index>`: the log, in segments named by their first entry's
//!   index, each entry in a chapter 1 frame (length, CRC, bytes) so that a
//!   torn or damaged tail is found and cut on open;
//! - `<name>.trash`: a file no longer needed, on its way out (see
//!   [`remove_files_slowly`]); open removes any a crash left.
//!
//! A new segment starts after each snapshot, and a snapshot deletes the
//! segments that the *previous* one covers whole: the log keeps the entries
//! since the snapshot before the latest, as [`Raft::compact`] does in
//! memory, and compaction is the deletion of a file, never a rewrite (as
//! Kafka deletes whole segments, and ZooKeeper whole transaction logs). A
//! truncation cuts the segment it falls in and deletes those after it.
//!
//! [`Raft::compact`]: crate::raft::Raft::compact
//!
//! ## When things are durable
//!
//! [`Storage::write`] only hands the writes to the operating system, except
//! a snapshot, which is on disk when `write` returns (a truncation that may
//! follow it must never reach the disk first). [`Storage::sync`] makes the
//! rest durable: the hard state, the directory (for a new segment), then
//! one `fsync` of the log. Raft's shell sends nothing that depends on a
//! write until `sync` returns. A crash before then may keep any prefix of
//! the log's unsynced entries (a torn last frame is cut), which Raft
//! allows: none of them was promised to anyone.
//!
//! A snapshot can also be written by another thread
//! ([`write_snapshot`]), so that a large one does not stop the server;
//! [`Storage::snapshot_written`] then drops the log it makes unneeded.
//!
//! A damaged `hard-state` or snapshot is an error, not a reason to start
//! empty: a server that forgot its vote could vote twice in one term.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ch01_commit_log::frame;
use ch06_replication::disk::{CheckpointError, write_atomically};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::raft::{DiskWrite, Entry, HardState, Index, Snapshot, Term};
use std::sync::Arc;

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
    /// The log: it reaches the snapshot, and may begin before it.
    pub log: Vec<Entry<Arc<LogEntry>>>,
    /// Bytes cut from the log's tail: a torn or damaged last write.
    pub cut_bytes: u64,
}

/// One file of the log.
#[derive(Debug)]
struct Segment {
    /// The index of its first entry, which names it.
    first: Index,
    path: PathBuf,
    file: File,
    /// Each entry's term, and where its frame starts.
    entries: Vec<(Term, u64)>,
    len: u64,
}

impl Segment {
    /// The index of its last entry (`first - 1` if it has none).
    fn last(&self) -> Index {
        self.first + self.entries.len() as Index - 1
    }
}

/// A server's files.
#[derive(Debug)]
pub struct Storage {
    dir: PathBuf,
    /// The log's segments, in order.
    segments: Vec<Segment>,
    /// Whether the next entry starts a new segment.
    roll: bool,
    /// The last index the snapshot on disk covers (0: none).
    snapshot_index: Index,
    hard: HardState,
    hard_dirty: bool,
    /// Whether files were created since the last sync.
    dir_dirty: bool,
    /// Whether the last segment has unsynced writes.
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

fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(path)(e)),
        _ => Ok(()),
    }
}

/// Removes files no longer needed, in order ([`Storage::snapshot_written`]
/// says which).
pub fn remove_files(paths: &[PathBuf]) -> Result<()> {
    paths.iter().try_for_each(|path| remove(path))
}

/// How much of a file [`remove_files_slowly`] cuts at a time.
const CUT_BYTES: u64 = 1024 * 1024;

/// The pause between two cuts.
const CUT_PAUSE: Duration = Duration::from_millis(2);

/// Removes files no longer needed as [`remove_files`] does, but slowly,
/// for a thread that may take its time. Unlinking a segment of a hundred
/// thousand entries frees its blocks in one journal transaction, and every
/// `fsync` on the disk meanwhile waits for it: 24 to 40 ms, measured on
/// servers sharing one disk (every one of them at once, while they took
/// their snapshots at the same index). Here each
/// file is first renamed to `<name>.trash`, in order, with the directory
/// synced, so that the log is still one run of entries whatever a crash
/// leaves; then it is cut a megabyte at a time, a pause between cuts, and
/// unlinked when empty. (RocksDB deletes its files the same way, for the
/// same reason: its `DeleteScheduler`.) [`Storage::open`] removes what a
/// crash left in the trash.
pub fn remove_files_slowly(paths: &[PathBuf]) -> Result<()> {
    for path in &to_trash(paths)? {
        cut_down(path)?;
        remove(path)?;
    }
    Ok(())
}

/// Renames each file to `<name>.trash`, in order, and syncs their
/// directory: once this returns, a crash can no longer bring any of them
/// back under its own name, cut short.
fn to_trash(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut trash = Vec::new();
    for path in paths {
        let to = path.with_extension(TRASH);
        match fs::rename(path, &to) {
            Ok(()) => trash.push(to),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(path)(e)),
        }
    }
    if let Some(dir) = trash.first().and_then(|path| path.parent()) {
        sync_dir(dir)?;
    }
    Ok(trash)
}

/// Cuts the file at `path` down to nothing, [`CUT_BYTES`] at a time.
fn cut_down(path: &Path) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_error(path))?;
    let mut len = file.metadata().map_err(io_error(path))?.len();
    while len > 0 {
        len = len.saturating_sub(CUT_BYTES);
        file.set_len(len).map_err(io_error(path))?;
        std::thread::sleep(CUT_PAUSE);
    }
    Ok(())
}

/// The extension of a file on its way out (see [`remove_files_slowly`]).
const TRASH: &str = "trash";

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

fn snapshot_path(dir: &Path, index: Index) -> PathBuf {
    dir.join(format!("snapshot-{index:020}"))
}

/// Writes `snapshot` to `dir`, durably, under its own name; any thread may
/// call it. The server's [`Storage`] learns of it by
/// [`Storage::snapshot_written`].
pub fn write_snapshot(dir: &Path, snapshot: &Snapshot) -> Result<()> {
    write_atomically(&snapshot_path(dir, snapshot.last_index), &encode(snapshot))?;
    Ok(())
}

/// The files in `dir` named `prefix` and an index, by index.
fn numbered(dir: &Path, prefix: &str) -> Result<Vec<(Index, PathBuf)>> {
    let mut found = Vec::new();
    for dir_entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let path = dir_entry.map_err(io_error(dir))?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if let Some(index) = name.strip_prefix(prefix).and_then(|n| n.parse().ok()) {
            found.push((index, path));
        }
    }
    found.sort();
    Ok(found)
}

impl Storage {
    /// Opens (or creates) the files in `dir`, cutting a torn or damaged log
    /// tail, and returns what they hold.
    pub fn open(dir: &Path) -> Result<(Storage, Recovered)> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        // Files a crash left on their way out (`remove_files_slowly`).
        for dir_entry in fs::read_dir(dir).map_err(io_error(dir))? {
            let path = dir_entry.map_err(io_error(dir))?.path();
            if path.extension().is_some_and(|e| e == TRASH) {
                remove(&path)?;
            }
        }
        let hard_path = dir.join("hard-state");
        let hard = match read_file(&hard_path)? {
            Some(bytes) => decode(&hard_path, &bytes)?,
            None => HardState::default(),
        };
        // The newest snapshot; older ones are left from a crash before
        // they were deleted.
        let snapshot: Option<Snapshot> = match numbered(dir, "snapshot-")?.pop() {
            Some((_, path)) => Some(decode(&path, &fs::read(&path).map_err(io_error(&path))?)?),
            None => None,
        };
        let snapshot_index = snapshot.as_ref().map_or(0, |s| s.last_index);
        let mut storage = Storage {
            dir: dir.to_path_buf(),
            segments: Vec::new(),
            roll: true,
            snapshot_index,
            hard,
            hard_dirty: false,
            dir_dirty: false,
            log_dirty: false,
        };
        let mut log: Vec<Entry<Arc<LogEntry>>> = Vec::new();
        let mut cut_bytes = 0;
        for (first, path) in numbered(dir, "log-")? {
            // Segments are deleted from the last, and the deletion is
            // synced before anything else is written: what a crash leaves
            // is still one run of entries.
            if let Some(previous) = storage.segments.last()
                && first != previous.last() + 1
            {
                return Err(StorageError::Damaged {
                    path,
                    detail: format!("starts at {first}, after entry {}", previous.last()),
                });
            }
            let bytes = fs::read(&path).map_err(io_error(&path))?;
            let scan = frame::scan(&bytes);
            let mut entries = Vec::new();
            for &position in &scan.positions {
                let frame::Decoded::Frame { payload, .. } =
                    frame::decode(&bytes[position as usize..])
                else {
                    unreachable!("scan found a whole frame here");
                };
                let entry: Entry<Arc<LogEntry>> = decode(&path, payload)?;
                let expected = first + entries.len() as Index;
                if entry.index != expected {
                    return Err(StorageError::Damaged {
                        path,
                        detail: format!("entry {} where {expected} should be", entry.index),
                    });
                }
                entries.push((entry.term, position));
                log.push(entry);
            }
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .open(&path)
                .map_err(io_error(&path))?;
            let cut = bytes.len() as u64 - scan.valid_len;
            if cut > 0 {
                file.set_len(scan.valid_len)
                    .and_then(|()| file.sync_all())
                    .map_err(io_error(&path))?;
                cut_bytes += cut;
            }
            if entries.is_empty() {
                // Started, but its first entry never reached the disk.
                remove(&path)?;
                continue;
            }
            storage.segments.push(Segment {
                first,
                path,
                file,
                entries,
                len: scan.valid_len,
            });
        }
        if let Some(snapshot) = &snapshot {
            let first = storage
                .segments
                .first()
                .map_or(snapshot_index + 1, |s| s.first);
            if first > snapshot_index + 1 {
                return Err(StorageError::Damaged {
                    path: dir.join(format!("log-{first:020}")),
                    detail: format!(
                        "the log starts at {first}, after the snapshot's {snapshot_index}"
                    ),
                });
            }
            // A log that does not reach the snapshot, or disagrees with it
            // (a snapshot from the leader, written before the truncation
            // that was to follow it), is replaced by it.
            if storage.term_at(snapshot_index) != Some(snapshot.last_term) {
                storage.remove_segments(0)?;
                log.clear();
            }
        }
        storage.roll = storage.segments.is_empty();
        let recovered = Recovered {
            hard,
            snapshot,
            log,
            cut_bytes,
        };
        Ok((storage, recovered))
    }

    /// The index of the last entry written (or the snapshot's last).
    pub fn last_index(&self) -> Index {
        self.segments
            .last()
            .map_or(0, Segment::last)
            .max(self.snapshot_index)
    }

    /// The last index the snapshot on disk covers (0: no snapshot).
    pub fn snapshot_index(&self) -> Index {
        self.snapshot_index
    }

    /// The term of the stored entry at `index`, if there is one.
    fn term_at(&self, index: Index) -> Option<Term> {
        let at = self
            .segments
            .partition_point(|s| s.first <= index)
            .checked_sub(1)?;
        let segment = &self.segments[at];
        segment
            .entries
            .get((index - segment.first) as usize)
            .map(|&(term, _)| term)
    }

    /// Deletes the segments from position `from` on, the last first, and
    /// makes that durable at once: a crash leaves the ones before.
    fn remove_segments(&mut self, from: usize) -> Result<()> {
        if from >= self.segments.len() {
            return Ok(());
        }
        for segment in self.segments.drain(from..).rev() {
            remove(&segment.path)?;
        }
        sync_dir(&self.dir)?;
        self.roll = true;
        // What was not synced was in the last segment, which is gone.
        self.log_dirty = false;
        Ok(())
    }

    /// Makes `writes`, in order; durable only after [`Storage::sync`] (a
    /// snapshot at once).
    pub fn write(&mut self, writes: &[DiskWrite<Arc<LogEntry>>]) -> Result<()> {
        // A group of appends goes to a segment in one `write` call: their
        // frames are collected here, and written before anything else
        // touches the files, and at the end.
        let mut frames = Vec::new();
        for write in writes {
            match write {
                DiskWrite::Hard(hard) => {
                    self.hard = *hard;
                    self.hard_dirty = true;
                }
                DiskWrite::Snapshot(snapshot) => {
                    self.flush(&mut frames)?;
                    write_snapshot(&self.dir, snapshot)?;
                    let obsolete =
                        self.snapshot_written(snapshot.last_index, snapshot.last_term)?;
                    remove_files(&obsolete)?;
                }
                DiskWrite::Truncate(from) => {
                    self.flush(&mut frames)?;
                    self.truncate(*from)?;
                }
                DiskWrite::Append(entry) => {
                    if entry.index <= self.last_index() {
                        continue;
                    }
                    if self.roll {
                        self.flush(&mut frames)?;
                        self.start_segment(entry.index)?;
                    }
                    let segment = self.segments.last_mut().expect("a segment was started");
                    let start = frames.len();
                    frame::encode(&encode(entry), &mut frames);
                    segment.entries.push((entry.term, segment.len));
                    segment.len += (frames.len() - start) as u64;
                    self.log_dirty = true;
                }
            }
        }
        self.flush(&mut frames)
    }

    /// Writes the collected `frames` to the last segment.
    fn flush(&mut self, frames: &mut Vec<u8>) -> Result<()> {
        if let Some(segment) = self.segments.last_mut()
            && !frames.is_empty()
        {
            segment
                .file
                .write_all(frames)
                .map_err(io_error(&segment.path))?;
            frames.clear();
        }
        Ok(())
    }

    /// Starts a segment whose first entry is `first`. The one before is
    /// synced first, so that `sync` has only the last one to sync.
    fn start_segment(&mut self, first: Index) -> Result<()> {
        if let Some(segment) = self.segments.last()
            && self.log_dirty
        {
            segment.file.sync_data().map_err(io_error(&segment.path))?;
        }
        let path = self.dir.join(format!("log-{first:020}"));
        // Appends go at the end, after a truncation too. (A file of that
        // name can only be left from a crash: it starts empty.)
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|file| file.set_len(0).map(|()| file))
            .map_err(io_error(&path))?;
        self.segments.push(Segment {
            first,
            path,
            file,
            entries: Vec::new(),
            len: 0,
        });
        self.roll = false;
        self.dir_dirty = true;
        Ok(())
    }

    /// Drops the stored entries from index `from` on.
    fn truncate(&mut self, from: Index) -> Result<()> {
        let keep = self.segments.partition_point(|s| s.first < from);
        self.remove_segments(keep)?;
        if let Some(segment) = self.segments.last_mut()
            && from <= segment.last()
        {
            let cut = (from - segment.first) as usize;
            let position = segment.entries[cut].1;
            segment
                .file
                .set_len(position)
                .map_err(io_error(&segment.path))?;
            segment.entries.truncate(cut);
            segment.len = position;
            self.roll = false;
            self.log_dirty = true;
        }
        Ok(())
    }

    /// A snapshot up to `index` (of `term`) is on disk: older snapshots and
    /// the segments the previous one covers are no longer needed, and the
    /// log goes on in a new segment. If the log does not agree with the
    /// snapshot at its edge, the snapshot replaces all of it.
    ///
    /// Returns the files no longer needed, in the order to remove them
    /// ([`remove_files`], or [`remove_files_slowly`]): deleting a segment
    /// of a hundred thousand entries takes milliseconds, which a caller
    /// that must not pause spends on another thread.
    pub fn snapshot_written(&mut self, index: Index, term: Term) -> Result<Vec<PathBuf>> {
        if index < self.snapshot_index {
            // Overtaken by a newer one (a leader's, while this one was
            // being written).
            return Ok(vec![snapshot_path(&self.dir, index)]);
        }
        if index == self.snapshot_index {
            return Ok(Vec::new());
        }
        let previous = self.snapshot_index;
        self.snapshot_index = index;
        let mut obsolete: Vec<PathBuf> = numbered(&self.dir, "snapshot-")?
            .into_iter()
            .filter(|&(older, _)| older < index)
            .map(|(_, path)| path)
            .collect();
        if self.term_at(index) != Some(term) {
            self.remove_segments(0)?;
            return Ok(obsolete);
        }
        // From the first: a crash leaves the ones after, which the next
        // open finds covered by the snapshot.
        let covered = self.segments.partition_point(|s| s.last() <= previous);
        obsolete.extend(self.segments.drain(..covered).map(|s| s.path));
        self.roll = true;
        Ok(obsolete)
    }

    /// Makes every write so far durable; returns the last index synced.
    pub fn sync(&mut self) -> Result<Index> {
        if self.hard_dirty {
            write_atomically(&self.dir.join("hard-state"), &encode(&self.hard))?;
            self.hard_dirty = false;
        }
        if self.dir_dirty {
            sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        if self.log_dirty
            && let Some(segment) = self.segments.last()
        {
            segment.file.sync_data().map_err(io_error(&segment.path))?;
            self.log_dirty = false;
        }
        Ok(self.last_index())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Command;

    fn entry(term: u64, index: Index) -> Entry<Arc<LogEntry>> {
        Entry {
            term,
            index,
            command: Some(Arc::new(LogEntry {
                time: index,
                command: Command::CloseSession { session: index },
            })),
        }
    }

    fn appends(range: std::ops::RangeInclusive<Index>, term: u64) -> Vec<DiskWrite<Arc<LogEntry>>> {
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
            .open(dir.path().join(format!("log-{:020}", 1)))
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

    fn snapshot(last_index: Index, last_term: u64) -> Snapshot {
        Snapshot {
            last_index,
            last_term,
            data: format!("state up to {last_index}").into_bytes(),
        }
    }

    /// The names of the files in `dir`, sorted.
    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".tmp"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_snapshot_deletes_the_segments_the_previous_one_covers() {
        let dir = tempfile::tempdir().unwrap();
        let (mut storage, _) = Storage::open(dir.path()).unwrap();
        storage.write(&appends(1..=6, 1)).unwrap();
        storage
            .write(&[DiskWrite::Snapshot(snapshot(4, 1))])
            .unwrap();
        storage.write(&appends(7..=10, 1)).unwrap();
        storage
            .write(&[DiskWrite::Snapshot(snapshot(8, 1))])
            .unwrap();
        // Nothing went yet: the first segment holds entries after 4.
        storage.write(&appends(11..=12, 1)).unwrap();
        storage
            .write(&[DiskWrite::Snapshot(snapshot(12, 1))])
            .unwrap();
        storage.sync().unwrap();
        let names = files(dir.path());
        let log = |i: u64| format!("log-{i:020}");
        assert_eq!(names, vec![log(7), log(11), format!("snapshot-{:020}", 12)]);
        drop(storage);
        let (_, recovered) = Storage::open(dir.path()).unwrap();
        assert_eq!(recovered.snapshot, Some(snapshot(12, 1)));
        // The log keeps the entries since the previous snapshot (8), and
        // a little more: whole segments go.
        let indexes: Vec<_> = recovered.log.iter().map(|e| e.index).collect();
        assert_eq!(indexes, (7..=12).collect::<Vec<_>>());
    }

    #[test]
    fn a_snapshot_written_by_another_thread_is_taken_in_afterwards() {
        let dir = tempfile::tempdir().unwrap();
        let (mut storage, _) = Storage::open(dir.path()).unwrap();
        storage.write(&appends(1..=3, 1)).unwrap();
        storage.sync().unwrap();
        let path = dir.path().to_path_buf();
        std::thread::spawn(move || write_snapshot(&path, &snapshot(3, 1)))
            .join()
            .unwrap()
            .unwrap();
        storage.write(&appends(4..=5, 1)).unwrap();
        let obsolete = storage.snapshot_written(3, 1).unwrap();
        remove_files(&obsolete).unwrap();
        storage.write(&appends(6..=6, 1)).unwrap();
        storage.sync().unwrap();
        assert_eq!(storage.snapshot_index(), 3);
        drop(storage);
        let (_, recovered) = Storage::open(dir.path()).unwrap();
        assert_eq!(recovered.snapshot, Some(snapshot(3, 1)));
        assert_eq!(recovered.log.len(), 6);
    }

    #[test]
    fn the_files_a_snapshot_makes_unneeded_may_outlive_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let (mut storage, _) = Storage::open(dir.path()).unwrap();
        storage.write(&appends(1..=3, 1)).unwrap();
        storage.sync().unwrap();
        write_snapshot(dir.path(), &snapshot(3, 1)).unwrap();
        assert!(storage.snapshot_written(3, 1).unwrap().is_empty());
        storage.write(&appends(4..=6, 1)).unwrap();
        storage.sync().unwrap();
        write_snapshot(dir.path(), &snapshot(6, 1)).unwrap();
        // The first snapshot, and the segment it covers.
        let obsolete = storage.snapshot_written(6, 1).unwrap();
        let names: Vec<_> = obsolete
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [format!("snapshot-{:020}", 3), format!("log-{:020}", 1)]
        );
        // A crash before they were removed: the newest snapshot wins, and
        // the log is still one run.
        drop(storage);
        let (_, recovered) = Storage::open(dir.path()).unwrap();
        assert_eq!(recovered.snapshot, Some(snapshot(6, 1)));
        let indexes: Vec<_> = recovered.log.iter().map(|e| e.index).collect();
        assert_eq!(indexes, (1..=6).collect::<Vec<_>>());
    }

    /// The first snapshot's obsolete files, after a second snapshot: the
    /// storage, and the files in the order to remove them.
    fn two_snapshots(dir: &Path) -> (Storage, Vec<PathBuf>) {
        let (mut storage, _) = Storage::open(dir).unwrap();
        storage.write(&appends(1..=3, 1)).unwrap();
        storage.sync().unwrap();
        write_snapshot(dir, &snapshot(3, 1)).unwrap();
        assert!(storage.snapshot_written(3, 1).unwrap().is_empty());
        storage.write(&appends(4..=6, 1)).unwrap();
        storage.sync().unwrap();
        write_snapshot(dir, &snapshot(6, 1)).unwrap();
        let obsolete = storage.snapshot_written(6, 1).unwrap();
        (storage, obsolete)
    }

    #[test]
    fn files_removed_slowly_are_gone_and_the_log_is_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, obsolete) = two_snapshots(dir.path());
        remove_files_slowly(&obsolete).unwrap();
        assert!(obsolete.iter().all(|path| !path.exists()));
        assert_eq!(
            files(dir.path()),
            [format!("log-{:020}", 4), format!("snapshot-{:020}", 6)]
        );
        drop(storage);
        let (_, recovered) = Storage::open(dir.path()).unwrap();
        let indexes: Vec<_> = recovered.log.iter().map(|e| e.index).collect();
        assert_eq!(indexes, (4..=6).collect::<Vec<_>>());
    }

    #[test]
    fn a_file_a_crash_left_half_cut_on_its_way_out_is_cleared_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, obsolete) = two_snapshots(dir.path());
        // A crash in the middle of cutting the old segment: it is in the
        // trash, half its size.
        let trash = to_trash(&obsolete).unwrap();
        let segment = &trash[1];
        let len = fs::metadata(segment).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(segment)
            .and_then(|f| f.set_len(len / 2))
            .unwrap();
        drop(storage);
        // Under its own name the cut segment would break the log's run of
        // entries; in the trash it is only removed.
        let (_, recovered) = Storage::open(dir.path()).unwrap();
        assert_eq!(recovered.snapshot, Some(snapshot(6, 1)));
        let indexes: Vec<_> = recovered.log.iter().map(|e| e.index).collect();
        assert_eq!(indexes, (4..=6).collect::<Vec<_>>());
        assert_eq!(
            files(dir.path()),
            [format!("log-{:020}", 4), format!("snapshot-{:020}", 6)]
        );
    }

    #[test]
    fn a_snapshot_the_log_disagrees_with_replaces_it_even_without_the_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let (mut storage, _) = Storage::open(dir.path()).unwrap();
        storage.write(&appends(1..=12, 1)).unwrap();
        storage.sync().unwrap();
        // A leader's snapshot of term 2 at 9, and a crash before the
        // truncation that follows it.
        storage
            .write(&[DiskWrite::Snapshot(snapshot(9, 2))])
            .unwrap();
        drop(storage);
        let (storage, recovered) = Storage::open(dir.path()).unwrap();
        assert_eq!(recovered.snapshot, Some(snapshot(9, 2)));
        assert!(recovered.log.is_empty());
        assert_eq!(storage.last_index(), 9);
    }

    #[test]
    fn a_missing_segment_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let (mut storage, _) = Storage::open(dir.path()).unwrap();
        storage.write(&appends(1..=3, 1)).unwrap();
        storage
            .write(&[DiskWrite::Snapshot(snapshot(2, 1))])
            .unwrap();
        storage.write(&appends(4..=5, 1)).unwrap();
        storage
            .write(&[DiskWrite::Snapshot(snapshot(4, 1))])
            .unwrap();
        storage.write(&appends(6..=7, 1)).unwrap();
        storage.sync().unwrap();
        drop(storage);
        fs::remove_file(dir.path().join(format!("log-{:020}", 4))).unwrap();
        let error = Storage::open(dir.path()).unwrap_err();
        assert!(matches!(error, StorageError::Damaged { .. }), "{error}");
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

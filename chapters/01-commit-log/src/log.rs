//! The log itself: a file of frames, an index from offset to position, and
//! the write buffer in front of the file.

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{LogError, Result};
use crate::frame::{self, Damage, Decoded};

/// How a [`Log`] behaves. `Config::default()` suits most uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The largest record payload [`Log::append`] accepts, in bytes.
    /// Kafka's broker default (`message.max.bytes`) is about 1 MiB too.
    pub max_record_size: u32,
    /// How many bytes of appended frames the log holds in memory before it
    /// writes them to the operating system by itself. [`Log::flush`] and
    /// [`Log::sync`] write them out at once.
    pub write_buffer_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_record_size: 1024 * 1024,
            write_buffer_size: 64 * 1024,
        }
    }
}

/// One record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record's position in the log: 0 for the first record, then 1, 2, ...
    pub offset: u64,
    /// The bytes that were appended.
    pub payload: Vec<u8>,
}

/// What [`Log::open`] found, and what it threw away to get back to a valid log.
///
/// Recovery never happens silently: the caller gets this report and decides
/// whether to log it, alert on it, or (in later chapters) re-fetch the lost
/// records from a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// How many valid records the file holds: also the next offset.
    pub records: u64,
    /// How many bytes from the start of the file hold those records.
    pub valid_bytes: u64,
    /// How many bytes after them were damaged or torn and have been cut off.
    pub truncated_bytes: u64,
    /// Why bytes were cut off, if any were.
    pub damage: Option<Damage>,
}

impl Recovery {
    /// True when the file ended exactly at the end of a valid frame.
    pub fn is_clean(&self) -> bool {
        self.truncated_bytes == 0
    }
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} valid records in {} bytes",
            self.records, self.valid_bytes
        )?;
        match self.damage {
            None => write!(f, ", nothing to repair"),
            Some(damage) => {
                let why = match damage {
                    Damage::Incomplete => "an incomplete frame (as a torn write leaves)",
                    Damage::Corrupt => "a frame whose checksum does not match",
                };
                write!(f, "; cut off {} bytes after {why}", self.truncated_bytes)
            }
        }
    }
}

// ANCHOR: log
/// An append-only log of records in a single file.
///
/// Appends go into an in-memory write buffer; [`Log::flush`] hands the
/// buffer to the operating system, and [`Log::sync`] also asks the operating
/// system to put it on the disk. Only synced records survive a power failure.
pub struct Log {
    path: PathBuf,
    file: File,
    config: Config,
    /// The index: `positions[offset]` is the byte position of that record's frame.
    positions: Vec<u64>,
    /// Bytes of the file already handed to the operating system.
    written_len: u64,
    /// Frames appended but not yet handed to the operating system; they
    /// start at byte `written_len` of the log.
    pending: Vec<u8>,
    /// Set when a write or sync failed: the log refuses further writes.
    failed: bool,
}
// ANCHOR_END: log

impl Log {
    // ANCHOR: open
    /// Opens the log at `path`, creating an empty one if there is no file.
    ///
    /// Opening reads the whole file, rebuilds the index, and cuts the file
    /// back to the end of the last valid frame. The returned [`Recovery`]
    /// says what, if anything, was cut.
    pub fn open(path: impl AsRef<Path>, config: Config) -> Result<(Log, Recovery)> {
        let path = path.as_ref().to_path_buf();
        let io_err = |source| LogError::Io {
            path: path.clone(),
            source,
        };
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_err)?;
        // One writer per file: the lock is the operating system's, so it is
        // released even if the process is killed.
        file.try_lock().map_err(|e| match e {
            TryLockError::WouldBlock => LogError::Locked { path: path.clone() },
            TryLockError::Error(source) => io_err(source),
        })?;
        if !existed {
            // A new file is only durable once the directory entry naming it
            // is on disk too, which takes a sync of the directory.
            sync_parent_dir(&path)?;
        }

        // The whole file goes into memory for the scan: simple, and fine
        // for a teaching log. Chapter 2 scans a chunk at a time, and only
        // the segments written since the last recovery point.
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_err)?;
        let scan = frame::scan(&bytes);
        let truncated_bytes =
            cut_damaged_tail(&file, bytes.len() as u64, scan.valid_len).map_err(io_err)?;

        let recovery = Recovery {
            records: scan.positions.len() as u64,
            valid_bytes: scan.valid_len,
            truncated_bytes,
            damage: scan.damage,
        };
        let log = Log {
            path,
            file,
            config,
            positions: scan.positions,
            written_len: scan.valid_len,
            pending: Vec::new(),
            failed: false,
        };
        Ok((log, recovery))
    }
    // ANCHOR_END: open

    // ANCHOR: append
    /// Appends one record and returns its offset.
    ///
    /// The record is in memory until the write buffer fills or the caller
    /// calls [`Log::flush`] or [`Log::sync`]; it can be read back at once.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64> {
        self.check_not_failed()?;
        if payload.len() > self.config.max_record_size as usize {
            return Err(LogError::RecordTooLarge {
                size: payload.len(),
                max: self.config.max_record_size,
            });
        }
        // exercise-hole: append | The new record's offset is the number of records so far; remember where its frame starts (the end of the log: written bytes plus pending bytes), encode it into `self.pending`, and flush once the buffer reaches `config.write_buffer_size`.
        // exercise-hint: `self.positions` holds where each frame starts, so its length is the next offset and `self.end()` (written plus pending) is where this frame will start.
        // exercise-hint: `let offset = self.positions.len() as u64; self.positions.push(self.end()); frame::encode(payload, &mut self.pending);` then `self.flush()?` when `self.pending.len() >= self.config.write_buffer_size`; return `Ok(offset)`.
        let offset = self.positions.len() as u64;
        self.positions.push(self.end());
        frame::encode(payload, &mut self.pending);
        // exercise-rule: flush_when_full | a full write buffer is written without being asked
        if self.pending.len() >= self.config.write_buffer_size {
            self.flush()?;
        }
        // exercise-rule-end
        Ok(offset)
        // exercise-end
    }
    // ANCHOR_END: append

    // ANCHOR: read
    /// Reads the record at `offset`, checking its checksum again: the bytes
    /// may have changed on disk since the log was opened.
    pub fn read(&self, offset: u64) -> Result<Vec<u8>> {
        // exercise-hole: read | Find the record's bytes with `self.frame_range(offset)` and `self.read_range`, take the payload with `payload_of`, and refuse (LogError::Corrupt) a frame whose length is not what the index says.
        // exercise-hint: The index only says where a frame starts and ends; the bytes may have changed on disk since `open`, so decode them again (`payload_of` checks the checksum) rather than trusting them.
        // exercise-hint: `let (start, end) = self.frame_range(offset)?; let bytes = self.read_range(start, end)?; let (payload, frame_len) = payload_of(offset, &bytes)?;` then compare `frame_len` with `bytes.len()` and return `payload.to_vec()`.
        let (start, end) = self.frame_range(offset)?;
        let bytes = self.read_range(start, end)?;
        let (payload, frame_len) = payload_of(offset, &bytes)?;
        if frame_len != bytes.len() {
            return Err(LogError::Corrupt {
                offset,
                detail: format!(
                    "the frame is {frame_len} bytes, the index says {}",
                    bytes.len()
                ),
            });
        }
        Ok(payload.to_vec())
        // exercise-end
    }
    // ANCHOR_END: read

    /// Iterates over the records from `offset` to the end of the log, as it
    /// is when the iterator is made.
    ///
    /// Asking for `next_offset()` gives an empty iterator (nothing new yet);
    /// asking past it is an [`LogError::OffsetOutOfRange`].
    pub fn iter_from(&self, offset: u64) -> Result<Iter<'_>> {
        if offset > self.next_offset() {
            return Err(self.out_of_range(offset));
        }
        Ok(Iter {
            log: self,
            next: offset,
            end: self.next_offset(),
            chunk: Vec::new(),
            chunk_pos: 0,
            done: false,
        })
    }

    /// The offset the next append will get, which is also the number of
    /// records in the log.
    pub fn next_offset(&self) -> u64 {
        self.positions.len() as u64
    }

    /// The log's size in bytes, counting records not yet flushed.
    pub fn len_bytes(&self) -> u64 {
        self.end()
    }

    /// The path of the log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    // ANCHOR: durability
    /// Hands buffered records to the operating system. After this they
    /// survive the process crashing, but not the machine losing power: the
    /// operating system may still hold them only in its page cache.
    pub fn flush(&mut self) -> Result<()> {
        self.check_not_failed()?;
        // exercise-hole: flush | Write all of `self.pending` to `self.file` (it is in append mode); on an error return `self.fail(error)`, since some bytes may be in the file and some not. On success add the pending length to `written_len` and clear the buffer.
        // exercise-hint: An empty buffer needs no write. `write_all` may write part of the buffer before failing, which is why a failure poisons the log (`self.fail`) instead of being retried.
        // exercise-hint: `if let Err(source) = self.file.write_all(&self.pending) { return Err(self.fail(source)); }` then `self.written_len += self.pending.len() as u64; self.pending.clear(); Ok(())`.
        if self.pending.is_empty() {
            return Ok(());
        }
        if let Err(source) = self.file.write_all(&self.pending) {
            // Some of the bytes may be in the file and some not; only a
            // reopen (which rescans the file) knows which.
            return Err(self.fail(source));
        }
        self.written_len += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
        // exercise-end
    }

    /// Flushes, then waits until the operating system reports the records
    /// are on the disk (`fsync`). After this they survive a power failure.
    ///
    /// A failed sync is not retried: after a failed `fsync` Linux may have
    /// dropped the dirty pages and report the next `fsync` as a success
    /// (PostgreSQL's "fsyncgate", 2018), so the log refuses further writes.
    pub fn sync(&mut self) -> Result<()> {
        self.flush()?;
        // `sync_data` skips metadata such as the modification time but still
        // includes the file's length, which is all that recovery needs.
        self.file.sync_data().map_err(|source| self.fail(source))
    }
    // ANCHOR_END: durability

    /// The byte position just past the last appended frame.
    fn end(&self) -> u64 {
        self.written_len + self.pending.len() as u64
    }

    /// Where the frame of `offset` starts and ends.
    fn frame_range(&self, offset: u64) -> Result<(u64, u64)> {
        let index = usize::try_from(offset).map_err(|_| self.out_of_range(offset))?;
        let start = *self
            .positions
            .get(index)
            .ok_or_else(|| self.out_of_range(offset))?;
        if self.failed && start >= self.written_len {
            // Appended, but the write that was to carry it failed.
            return Err(LogError::Failed {
                path: self.path.clone(),
            });
        }
        let end = self
            .positions
            .get(index + 1)
            .copied()
            .unwrap_or_else(|| self.end());
        Ok((start, end))
    }

    /// Reads bytes `start..end` of the log: the part already written from
    /// the file, the rest from the write buffer.
    fn read_range(&self, start: u64, end: u64) -> Result<Vec<u8>> {
        let mut bytes = vec![0; (end - start) as usize];
        let from_file = end.min(self.written_len).saturating_sub(start) as usize;
        self.file
            .read_exact_at(&mut bytes[..from_file], start)
            .map_err(|source| LogError::Io {
                path: self.path.clone(),
                source,
            })?;
        if from_file < bytes.len() {
            let pending_start = (start + from_file as u64 - self.written_len) as usize;
            let rest = bytes.len() - from_file;
            bytes[from_file..].copy_from_slice(&self.pending[pending_start..pending_start + rest]);
        }
        Ok(bytes)
    }

    fn out_of_range(&self, offset: u64) -> LogError {
        LogError::OffsetOutOfRange {
            offset,
            next_offset: self.next_offset(),
        }
    }

    fn check_not_failed(&self) -> Result<()> {
        if self.failed {
            return Err(LogError::Failed {
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    fn fail(&mut self, source: io::Error) -> LogError {
        self.failed = true;
        LogError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

impl Drop for Log {
    /// Hands buffered records to the operating system, as `std::io::BufWriter`
    /// does. An error here has nowhere to go, so call [`Log::flush`] or
    /// [`Log::sync`] before dropping a log whose last records matter.
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log")
            .field("path", &self.path)
            .field("next_offset", &self.next_offset())
            .field("written_len", &self.written_len)
            .field("pending_len", &self.pending.len())
            .finish()
    }
}

/// Iterates over records in offset order; made by [`Log::iter_from`].
///
/// It reads the log in chunks of whole frames (about 64 KiB) rather than one
/// system call per record, and checks each frame's checksum as it goes. After
/// an error it yields nothing more.
pub struct Iter<'a> {
    log: &'a Log,
    /// The offset of the next record to yield.
    next: u64,
    /// The log's next offset when the iterator was made.
    end: u64,
    /// Whole frames read ahead, starting with a frame boundary.
    chunk: Vec<u8>,
    /// Where the frame of `next` starts in `chunk`.
    chunk_pos: usize,
    done: bool,
}

/// How many bytes an [`Iter`] reads at a time (at least one whole frame).
const READ_AHEAD: u64 = 64 * 1024;

impl Iter<'_> {
    /// Reads the whole frames from `self.next` that fit in [`READ_AHEAD`]
    /// bytes (at least one frame, however big).
    fn refill(&mut self) -> Result<()> {
        let (start, _) = self.log.frame_range(self.next)?;
        let mut last = self.next;
        while last + 1 < self.end {
            let (_, next_end) = self.log.frame_range(last + 1)?;
            if next_end - start > READ_AHEAD {
                break;
            }
            last += 1;
        }
        let (_, end) = self.log.frame_range(last)?;
        self.chunk = self.log.read_range(start, end)?;
        self.chunk_pos = 0;
        Ok(())
    }
}

impl Iterator for Iter<'_> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.next >= self.end {
            return None;
        }
        // The chunk is empty at the start and used up at its end.
        if self.chunk_pos >= self.chunk.len()
            && let Err(e) = self.refill()
        {
            self.done = true;
            return Some(Err(e));
        }
        match payload_of(self.next, &self.chunk[self.chunk_pos..]) {
            Ok((payload, frame_len)) => {
                let record = Record {
                    offset: self.next,
                    payload: payload.to_vec(),
                };
                self.chunk_pos += frame_len;
                self.next += 1;
                Some(Ok(record))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Decodes the frame of `offset` at the start of `bytes`: its payload and
/// its length, or why it no longer reads back.
fn payload_of(offset: u64, bytes: &[u8]) -> Result<(&[u8], usize)> {
    let detail = match frame::decode(bytes) {
        Decoded::Frame { payload, frame_len } => return Ok((payload, frame_len)),
        Decoded::Incomplete => "the frame is cut short".to_string(),
        Decoded::Corrupt { stored, computed } => {
            format!("stored checksum {stored:#010x}, computed {computed:#010x}")
        }
    };
    Err(LogError::Corrupt { offset, detail })
}

// ANCHOR: cut
/// Cuts `file` (of `file_len` bytes) back to `valid_len`, the end of its
/// last valid frame, and returns how many bytes were cut off. The cut is
/// synced before anything else happens, so that new appends can never land
/// after garbage.
fn cut_damaged_tail(file: &File, file_len: u64, valid_len: u64) -> io::Result<u64> {
    let cut = cut_to(file, file_len, valid_len)?;
    if cut > 0 {
        // A cut that is not on disk could come back after a crash.
        file.sync_all()?;
    }
    Ok(cut)
}

/// Cuts `file` back to `valid_len` if it is longer; returns how many bytes
/// went.
fn cut_to(file: &File, file_len: u64, valid_len: u64) -> io::Result<u64> {
    // exercise-hole: cut | If the file is longer than `valid_len`, `set_len` it to `valid_len`. Return the number of bytes cut (0 when there was nothing to cut).
    // exercise-hint: `File::set_len` shortens a file in place; everything after `valid_len` is the torn or corrupt tail `scan` found. (The caller syncs the cut: no test can observe a sync short of pulling the power, so it is given.)
    // exercise-hint: `if file_len > valid_len { file.set_len(valid_len)?; } Ok(file_len - valid_len)`
    if file_len > valid_len {
        file.set_len(valid_len)?;
    }
    Ok(file_len - valid_len)
    // exercise-end
}
// ANCHOR_END: cut

/// Syncs the directory holding `path`, so that a newly created file's name
/// is on disk as well as its contents.
fn sync_parent_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| LogError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

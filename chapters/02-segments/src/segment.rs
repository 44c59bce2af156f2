//! One segment: a `.log` file of framed batches, its offset index and its
//! time index. The segment does the I/O; the framing comes from chapter 1
//! and the indexes from [`crate::index`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ch01_commit_log::frame::{self, Decoded};

use crate::batch::{self, BatchHeader, StoredBatch};
use crate::error::{LogError, Result};
use crate::index::{OffsetIndex, TimeIndex};

/// The name of a segment's file: its base offset, zero-padded to 20 digits
/// so that names sort in offset order, and an extension.
pub fn file_name(base_offset: u64, extension: &str) -> String {
    format!("{base_offset:020}.{extension}")
}

/// The base offset in a segment file's name, if it is one.
pub fn parse_file_name(name: &str, extension: &str) -> Option<u64> {
    let stem = name.strip_suffix(extension)?.strip_suffix('.')?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

/// How a batch read from a segment failed to be a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// The frame is cut short by the end of the file (a torn write).
    Incomplete,
    /// The frame fails its checksum, or the batch inside it is not valid or
    /// not the offset that should come next.
    Corrupt,
}

/// What a scan of a segment's file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// Bytes of valid batches from the start of the file.
    pub valid_len: u64,
    /// Bytes after them (damaged or torn).
    pub invalid_len: u64,
    /// Why the scan stopped early, if it did.
    pub damage: Option<Damage>,
}

/// One segment of a log.
#[derive(Debug)]
pub struct Segment {
    base_offset: u64,
    dir: PathBuf,
    file: File,
    /// Bytes in the `.log` file.
    size: u64,
    /// The offset after the segment's last batch.
    next_offset: u64,
    /// The largest timestamp in the segment, and the batch that first had it.
    max_timestamp: Option<(i64, u64)>,
    /// The first batch's max timestamp: the segment's age for `segment.ms`.
    first_timestamp: Option<i64>,
    index: OffsetIndex,
    time_index: TimeIndex,
    /// Bytes appended since the last offset index entry.
    bytes_since_index: u64,
    index_interval: u64,
}

impl Segment {
    fn path(dir: &Path, base_offset: u64, extension: &str) -> PathBuf {
        dir.join(file_name(base_offset, extension))
    }

    fn log_path(&self) -> PathBuf {
        Segment::path(&self.dir, self.base_offset, "log")
    }

    fn io(&self, source: io::Error) -> LogError {
        LogError::io(self.log_path(), source)
    }

    fn open_file(path: &Path) -> Result<File> {
        OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| LogError::io(path, e))
    }

    fn new(dir: &Path, base_offset: u64, file: File, size: u64, index_interval: u64) -> Segment {
        Segment {
            base_offset,
            dir: dir.to_path_buf(),
            file,
            size,
            next_offset: base_offset,
            max_timestamp: None,
            first_timestamp: None,
            index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            bytes_since_index: 0,
            index_interval,
        }
    }

    /// Creates a new, empty segment starting at `base_offset`.
    pub fn create(dir: &Path, base_offset: u64, index_interval: u64) -> Result<Segment> {
        let path = Segment::path(dir, base_offset, "log");
        let file = Segment::open_file(&path)?;
        // A file left by a roll that crashed half-way is emptied. An empty
        // file is left alone: on ext4, cutting a file to nothing marks it
        // to be written back in full when it is closed (the
        // `auto_da_alloc` heuristic, meant for programs that rewrite a file
        // in place), which would start a burst of writeback at every
        // segment close for no reason.
        let len = file.metadata().map_err(|e| LogError::io(&path, e))?.len();
        if len > 0 {
            file.set_len(0).map_err(|e| LogError::io(&path, e))?;
        }
        Ok(Segment::new(dir, base_offset, file, 0, index_interval))
    }

    // ANCHOR: recover
    /// Opens a segment by scanning its whole `.log` file: every batch's
    /// checksum and offset is checked and both indexes are rebuilt. The file
    /// is cut back to the end of the last valid batch. This is recovery.
    pub fn recover(
        dir: &Path,
        base_offset: u64,
        index_interval: u64,
    ) -> Result<(Segment, ScanReport)> {
        let path = Segment::path(dir, base_offset, "log");
        let file = Segment::open_file(&path)?;
        let len = file.metadata().map_err(|e| LogError::io(&path, e))?.len();
        // The reader needs the file while `track` changes the segment, so
        // it gets a handle of its own.
        let scan_file = file.try_clone().map_err(|e| LogError::io(&path, e))?;
        let mut segment = Segment::new(dir, base_offset, file, 0, index_interval);
        // exercise-hole: recover | Read batches from position 0 with `FrameReader` (it stops at damage); `track` each valid one at its position. Then, if bytes are left over, cut the file back (`set_len`) to where the valid batches end and report the damage.
        // exercise-hint: `FrameReader::new(&scan_file, 0, len)` and `reader.next_batch(segment.next_offset)` give `Ok(Some((position, header, bytes)))` per valid batch, `Ok(None)` at the end, and `Err(ReadError::Damaged(d))` at damage; an `Err(ReadError::Io(e))` is an error, not damage.
        // exercise-hint: After the loop, `segment.size` is where the valid batches end: `let invalid_len = len - segment.size;` cut with `segment.file.set_len(segment.size)` if it is positive, and return `(segment, ScanReport { valid_len: segment.size, invalid_len, damage })`.
        let mut reader = FrameReader::new(&scan_file, 0, len);
        let mut damage = None;
        loop {
            match reader.next_batch(segment.next_offset) {
                Ok(Some((position, header, bytes))) => {
                    segment.track(position, &header, bytes.len() as u64)
                }
                Ok(None) => break,
                Err(ReadError::Damaged(d)) => {
                    damage = Some(d);
                    break;
                }
                Err(ReadError::Io(e)) => return Err(LogError::io(&path, e)),
            }
        }
        let invalid_len = len - segment.size;
        if invalid_len > 0 {
            segment
                .file
                .set_len(segment.size)
                .map_err(|e| LogError::io(&path, e))?;
        }
        let report = ScanReport {
            valid_len: segment.size,
            invalid_len,
            damage,
        };
        Ok((segment, report))
        // exercise-end
    }
    // ANCHOR_END: recover

    /// Opens a segment after a clean shutdown, trusting its index files
    /// after a sanity check. Only the bytes after the last index entry are
    /// read, to find the segment's end. A segment whose index files are
    /// missing or fail the check, or whose end is damaged, is scanned
    /// instead ([`Segment::recover`]), and the scan's report returned.
    pub fn load(
        dir: &Path,
        base_offset: u64,
        index_interval: u64,
    ) -> Result<(Segment, Option<ScanReport>)> {
        match Segment::load_trusting_indexes(dir, base_offset, index_interval)? {
            Some(segment) => Ok((segment, None)),
            None => {
                let (segment, scan) = Segment::recover(dir, base_offset, index_interval)?;
                Ok((segment, Some(scan)))
            }
        }
    }

    // ANCHOR: load
    /// [`Segment::load`]'s fast path; `None` when the indexes can't be trusted.
    fn load_trusting_indexes(
        dir: &Path,
        base_offset: u64,
        index_interval: u64,
    ) -> Result<Option<Segment>> {
        // exercise-hole: load | Read the `.index` file and check it (`OffsetIndex::from_bytes`); from its last entry, read batches to the end of the `.log` file to find the segment's end and next offset; then read and check the `.timeindex` file. Any missing file, failed check, damage or size mismatch returns `Ok(None)`: don't trust, scan.
        // exercise-hint: Only the bytes after the last index entry are read, however large the segment, so the state a scan would compute comes from the files instead: `max_timestamp` from the time index's last entry, `first_timestamp` from the first batch's header (`read_header_at(0)`), `bytes_since_index` from the bytes read past the last entry.
        // exercise-hint: Start with `next_offset = base + last relative offset` and `size = last position` (or the base and 0 with no entries), and loop `FrameReader::next_batch(segment.next_offset)` adding each frame's length; `Err(ReadError::Damaged(_))` or `size != len` → `Ok(None)`. Check the time index with `TimeIndex::from_bytes(&bytes, next_offset - base_offset)`.
        let path = Segment::path(dir, base_offset, "log");
        let file = Segment::open_file(&path)?;
        let len = file.metadata().map_err(|e| LogError::io(&path, e))?.len();
        let Ok(index_bytes) = fs::read(Segment::path(dir, base_offset, "index")) else {
            return Ok(None);
        };
        let Ok(index) = OffsetIndex::from_bytes(&index_bytes, len) else {
            return Ok(None);
        };
        let mut segment = Segment::new(dir, base_offset, file, 0, index_interval);

        // Read from the last indexed batch to the end: at most one index
        // interval of bytes, however large the segment.
        let (start_offset, start) = match index.last() {
            Some((relative, position)) => (base_offset + u64::from(relative), u64::from(position)),
            None => (base_offset, 0),
        };
        segment.next_offset = start_offset;
        segment.size = start;
        let mut reader = FrameReader::new(&segment.file, start, len);
        loop {
            match reader.next_batch(segment.next_offset) {
                Ok(Some((_, header, bytes))) => {
                    segment.next_offset = header.next_offset();
                    segment.size += bytes.len() as u64 + frame::HEADER_LEN as u64;
                }
                Ok(None) => break,
                // Damage after a clean shutdown means the index or the file
                // is not what we wrote: don't trust either, scan it all.
                Err(ReadError::Damaged(_)) => return Ok(None),
                Err(ReadError::Io(e)) => return Err(LogError::io(&path, e)),
            }
        }
        if segment.size != len {
            return Ok(None);
        }
        segment.bytes_since_index = len - start;
        let Ok(time_bytes) = fs::read(Segment::path(dir, base_offset, "timeindex")) else {
            return Ok(None);
        };
        let Ok(time_index) = TimeIndex::from_bytes(&time_bytes, segment.next_offset - base_offset)
        else {
            return Ok(None);
        };
        segment.max_timestamp = time_index
            .last()
            .map(|(ts, relative)| (ts, base_offset + u64::from(relative)));
        if len > 0 {
            let first = segment.read_header_at(0)?;
            segment.first_timestamp = Some(first.max_timestamp);
        }
        segment.index = index;
        segment.time_index = time_index;
        Ok(Some(segment))
        // exercise-end
    }
    // ANCHOR_END: load

    // ANCHOR: track
    /// Records a batch that is now at `position` in the file: advances the
    /// segment's end and adds index entries when an interval has passed.
    fn track(&mut self, position: u64, header: &BatchHeader, batch_len: u64) {
        // exercise-hole: track | Keep the segment's state up to date for a batch now at `position`: the largest timestamp (and the batch that first had it), the first batch's timestamp, index entries (`maybe_add_index_entries`), the file size and bytes since the last index entry (both grow by the whole frame), and the next offset.
        // exercise-hint: Appending and scanning both call this, so everything a segment knows about its batches is set here. The size grows by the frame, not the batch: `batch_len + frame::HEADER_LEN`. Index entries are added for this batch *before* its bytes count towards the next interval.
        // exercise-hint: `max_timestamp` only changes on a strictly larger `header.max_timestamp`; `first_timestamp.get_or_insert(..)`; `maybe_add_index_entries((header.base_offset - self.base_offset) as u32, position)`; then `size` and `bytes_since_index` `+=` the frame length and `next_offset = header.next_offset()`.
        let relative = (header.base_offset - self.base_offset) as u32;
        if self
            .max_timestamp
            .is_none_or(|(ts, _)| header.max_timestamp > ts)
        {
            self.max_timestamp = Some((header.max_timestamp, header.base_offset));
        }
        self.first_timestamp.get_or_insert(header.max_timestamp);
        self.maybe_add_index_entries(relative, position);
        let frame_len = batch_len + frame::HEADER_LEN as u64;
        self.size += frame_len;
        self.bytes_since_index += frame_len;
        self.next_offset = header.next_offset();
        // exercise-end
    }
    // ANCHOR_END: track

    // ANCHOR: index_entries
    /// Adds index entries for the batch at `position` if more than an index
    /// interval of bytes has passed since the last ones: this is what makes
    /// the indexes sparse.
    fn maybe_add_index_entries(&mut self, relative_offset: u32, position: u64) {
        // exercise-hole: index_entries | Once more than `index_interval` bytes were appended since the last entry: push an offset index entry (relative_offset, position), push the segment's max timestamp so far into the time index (`maybe_push`, with the relative offset of the batch that had it), and reset `bytes_since_index`.
        // exercise-hint: The indexes are sparse: an entry only once `self.bytes_since_index > self.index_interval`. The time index entry is the segment's maximum timestamp so far (`self.max_timestamp`, with the offset of the batch that had it), not this batch's.
        // exercise-hint: `self.index.push(relative_offset, position as u32);` then `if let Some((ts, offset)) = self.max_timestamp { self.time_index.maybe_push(ts, (offset - self.base_offset) as u32); }` and `self.bytes_since_index = 0;`.
        if self.bytes_since_index > self.index_interval {
            self.index.push(relative_offset, position as u32);
            if let Some((ts, offset)) = self.max_timestamp {
                self.time_index
                    .maybe_push(ts, (offset - self.base_offset) as u32);
            }
            self.bytes_since_index = 0;
        }
        // exercise-end
    }
    // ANCHOR_END: index_entries

    // ANCHOR: append
    /// Appends an encoded batch whose base offset is already this segment's
    /// next offset, framed as in chapter 1. The frame's header and the batch
    /// go out in one vectored `write` (`writev`), so the batch is never
    /// copied: at a megabyte a batch, the copy would cost as much as the write.
    pub fn append(&mut self, batch: &[u8], header: &BatchHeader) -> Result<()> {
        let frame_header = frame::header(batch);
        let mut parts = [IoSlice::new(&frame_header), IoSlice::new(batch)];
        let mut parts = &mut parts[..];
        while !parts.is_empty() {
            // A write may take only part of what it was given; go on from
            // where it stopped.
            match self.file.write_vectored(parts) {
                Ok(0) => return Err(self.io(io::ErrorKind::WriteZero.into())),
                Ok(written) => IoSlice::advance_slices(&mut parts, written),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        let position = self.size;
        self.track(position, header, batch.len() as u64);
        Ok(())
    }
    // ANCHOR_END: append

    /// Reads the batch header of the frame at `position`.
    fn read_header_at(&self, position: u64) -> Result<BatchHeader> {
        let mut buf = [0; frame::HEADER_LEN + batch::HEADER_LEN];
        self.file
            .read_exact_at(&mut buf, position)
            .map_err(|e| self.io(e))?;
        BatchHeader::parse(&buf[frame::HEADER_LEN..])
            .map_err(|e| self.corrupt(position, e.to_string()))
    }

    fn corrupt(&self, position: u64, detail: String) -> LogError {
        LogError::Corrupt {
            segment: self.log_path(),
            detail: format!("at byte {position}: {detail}"),
        }
    }

    // ANCHOR: read
    /// Reads whole batches, starting with the one that holds `offset`, until
    /// about `max_bytes` are read. The first batch is returned even if it is
    /// larger than `max_bytes`, so a reader always makes progress (as Kafka
    /// does since KIP-74).
    pub fn read(&self, offset: u64, max_bytes: u64) -> Result<Vec<StoredBatch>> {
        // exercise-hole: read | Ask the offset index where to start (`lookup` takes the offset relative to the segment's base), then read frames from there to the segment's end with `FrameReader::next_frame`, skipping batches that end before `offset`, until `max_bytes` are read (but always at least one batch).
        // exercise-hint: The index points at or before the batch you want, never after, so scan forward and keep a batch once its `last_offset() >= offset`. A frame that fails its checksum is `Corrupt` (the index may have pointed at the wrong byte: an error, never wrong data); an I/O error is `self.io(e)`.
        // exercise-hint: `let start = self.index.lookup((offset - self.base_offset) as u32); let mut reader = FrameReader::new(&self.file, u64::from(start), self.size);` then `while read < max_bytes || batches.is_empty() { match reader.next_frame() { .. } }`, parsing each payload with `BatchHeader::parse`.
        let start = self.index.lookup((offset - self.base_offset) as u32);
        let mut reader = FrameReader::new(&self.file, u64::from(start), self.size);
        let mut batches = Vec::new();
        let mut read = 0;
        while read < max_bytes || batches.is_empty() {
            match reader.next_frame() {
                Ok(Some((_, bytes))) => {
                    let header = BatchHeader::parse(&bytes)
                        .map_err(|e| self.corrupt(reader.position, e.to_string()))?;
                    // The index points at or before the batch we want.
                    if header.last_offset() >= offset {
                        read += bytes.len() as u64;
                        batches.push(StoredBatch { header, bytes });
                    }
                }
                Ok(None) => break,
                Err(ReadError::Damaged(_)) => {
                    return Err(self.corrupt(reader.position, "a batch fails its checksum".into()));
                }
                Err(ReadError::Io(e)) => return Err(self.io(e)),
            }
        }
        Ok(batches)
        // exercise-end
    }
    // ANCHOR_END: read

    /// The offset of the first record at or after `timestamp`, if the
    /// segment has one.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<u64>> {
        if self.max_timestamp.is_none_or(|(max, _)| max < timestamp) {
            return Ok(None);
        }
        let mut offset = self.base_offset + u64::from(self.time_index.lookup(timestamp));
        loop {
            let batches = self.read(offset, 64 * 1024)?;
            let Some(last) = batches.last() else {
                return Ok(None);
            };
            offset = last.header.next_offset();
            for batch in batches
                .iter()
                .filter(|b| b.header.max_timestamp >= timestamp)
            {
                let records = batch.records().map_err(|e| {
                    self.corrupt(
                        0,
                        format!("batch at offset {}: {e}", batch.header.base_offset),
                    )
                })?;
                if let Some((offset, _)) = records.iter().find(|(_, r)| r.timestamp >= timestamp) {
                    return Ok(Some(*offset));
                }
            }
        }
    }

    // ANCHOR: truncate
    /// Cuts the segment so that its last offset is below `offset`, at the
    /// start of the batch that holds `offset`; returns the new next offset.
    pub fn truncate_to(&mut self, offset: u64) -> Result<u64> {
        if offset >= self.next_offset {
            return Ok(self.next_offset);
        }
        // exercise-hole: truncate | Find the batch that holds `offset` (start from the offset index, scan frames forward), cut the file at that batch's start (`set_len`), and rebuild the segment's state from what is left with `Segment::recover`.
        // exercise-hint: A batch is never split: the cut falls at the start of the batch whose `last_offset() >= offset`, so the new end may be below `offset`. Reaching the end or damage before finding it is `Corrupt`. Dropping index entries is not enough to fix the state: the maximum timestamp may have been in the part cut off.
        // exercise-hint: Scan as `read` does, from `self.index.lookup(..)`, and `break (position, header.base_offset)` at the batch; then `self.file.set_len(position)`, `let (rebuilt, _) = Segment::recover(&self.dir, self.base_offset, self.index_interval)?; *self = rebuilt;` and return `Ok(self.next_offset)`.
        let start = self.index.lookup((offset - self.base_offset) as u32);
        let mut reader = FrameReader::new(&self.file, u64::from(start), self.size);
        let (position, new_next) = loop {
            match reader.next_frame() {
                Ok(Some((position, bytes))) => {
                    let header = BatchHeader::parse(&bytes)
                        .map_err(|e| self.corrupt(position, e.to_string()))?;
                    if header.last_offset() >= offset {
                        break (position, header.base_offset);
                    }
                }
                Ok(None) | Err(ReadError::Damaged(_)) => {
                    return Err(self.corrupt(
                        reader.position,
                        format!("no valid batch holds offset {offset}"),
                    ));
                }
                Err(ReadError::Io(e)) => return Err(self.io(e)),
            }
        };
        self.file.set_len(position).map_err(|e| self.io(e))?;
        // Rebuild the in-memory state from what is left: dropping index
        // entries is not enough, since the maximum timestamp may have been
        // in the part cut off.
        let (rebuilt, _) = Segment::recover(&self.dir, self.base_offset, self.index_interval)?;
        debug_assert_eq!(rebuilt.next_offset, new_next);
        *self = rebuilt;
        Ok(self.next_offset)
        // exercise-end
    }
    // ANCHOR_END: truncate

    /// Adds the final time index entry (the segment's maximum timestamp),
    /// syncs the `.log` file, and writes both index files and syncs them.
    /// After this the segment is trusted on open.
    pub fn seal(&mut self) -> Result<()> {
        if let Some((ts, offset)) = self.max_timestamp {
            self.time_index
                .maybe_push(ts, (offset - self.base_offset) as u32);
        }
        self.sync()?;
        write_synced(
            &Segment::path(&self.dir, self.base_offset, "index"),
            &self.index.to_bytes(),
        )?;
        write_synced(
            &Segment::path(&self.dir, self.base_offset, "timeindex"),
            &self.time_index.to_bytes(),
        )?;
        Ok(())
    }

    /// Waits for the `.log` file to be on disk.
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| self.io(e))
    }

    /// Deletes the segment's files.
    pub fn delete(self) -> Result<()> {
        delete_files(&self.dir, self.base_offset)
    }

    /// The first offset in the segment.
    pub fn base_offset(&self) -> u64 {
        self.base_offset
    }

    /// The offset after the segment's last batch.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The size of the `.log` file in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The largest timestamp in the segment.
    pub fn max_timestamp(&self) -> Option<i64> {
        self.max_timestamp.map(|(ts, _)| ts)
    }

    /// The first batch's timestamp, from which `segment.ms` counts.
    pub fn first_timestamp(&self) -> Option<i64> {
        self.first_timestamp
    }

    /// How many entries the offset index holds.
    pub fn index_entries(&self) -> usize {
        self.index.len()
    }
}

/// Deletes the files of the segment at `base_offset`, index files first: a
/// `.log` left without its index is rebuilt on open, while an index left
/// without its `.log` is removed.
pub fn delete_files(dir: &Path, base_offset: u64) -> Result<()> {
    for extension in ["index", "timeindex", "log"] {
        let path = Segment::path(dir, base_offset, extension);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::io(&path, e)),
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` and syncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::create(path).map_err(|e| LogError::io(path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_data())
        .map_err(|e| LogError::io(path, e))
}

/// Why [`FrameReader`] stopped.
#[derive(Debug)]
enum ReadError {
    /// The bytes at the reader's position are not a valid frame or batch.
    Damaged(Damage),
    Io(io::Error),
}

/// Reads frames one after another from a range of a file, 64 KiB at a
/// time, so that scanning a segment takes one system call per chunk rather
/// than per batch.
struct FrameReader<'a> {
    file: &'a File,
    /// The file position of the next frame.
    position: u64,
    end: u64,
    /// Bytes read ahead, starting at file position `buffer_start`.
    buffer: Vec<u8>,
    buffer_start: u64,
}

const READ_CHUNK: u64 = 64 * 1024;

impl<'a> FrameReader<'a> {
    fn new(file: &'a File, position: u64, end: u64) -> Self {
        FrameReader {
            file,
            position,
            end,
            buffer: Vec::new(),
            buffer_start: position,
        }
    }

    /// The next frame's position and payload, or `None` at the end.
    fn next_frame(&mut self) -> std::result::Result<Option<(u64, Vec<u8>)>, ReadError> {
        if self.position >= self.end {
            return Ok(None);
        }
        loop {
            let offset_in_buffer = (self.position - self.buffer_start) as usize;
            match frame::decode(&self.buffer[offset_in_buffer.min(self.buffer.len())..]) {
                Decoded::Frame { payload, frame_len } => {
                    let frame = (self.position, payload.to_vec());
                    self.position += frame_len as u64;
                    return Ok(Some(frame));
                }
                Decoded::Corrupt { .. } => return Err(ReadError::Damaged(Damage::Corrupt)),
                Decoded::Incomplete => {
                    let buffered_end = self.buffer_start + self.buffer.len() as u64;
                    if buffered_end >= self.end {
                        return Err(ReadError::Damaged(Damage::Incomplete));
                    }
                    self.refill(offset_in_buffer)?;
                }
            }
        }
    }

    /// Like [`FrameReader::next_frame`], but also checks that the payload
    /// is a batch starting at `expected_offset`, the offset that must come next.
    fn next_batch(
        &mut self,
        expected_offset: u64,
    ) -> std::result::Result<Option<(u64, BatchHeader, Vec<u8>)>, ReadError> {
        let Some((position, bytes)) = self.next_frame()? else {
            return Ok(None);
        };
        match BatchHeader::parse(&bytes) {
            Ok(header) if header.base_offset == expected_offset && header.record_count > 0 => {
                Ok(Some((position, header, bytes)))
            }
            _ => {
                self.position = position;
                Err(ReadError::Damaged(Damage::Corrupt))
            }
        }
    }

    /// Keeps the unread part of the buffer and reads more after it: at least
    /// a chunk, and at least the whole of a frame whose header says it is bigger.
    fn refill(&mut self, keep_from: usize) -> std::result::Result<(), ReadError> {
        self.buffer.drain(..keep_from.min(self.buffer.len()));
        self.buffer_start = self.position;
        let pending = &self.buffer;
        let wanted = if pending.len() >= frame::HEADER_LEN {
            let len = u32::from_be_bytes([pending[0], pending[1], pending[2], pending[3]]);
            (frame::HEADER_LEN as u64 + u64::from(len)).max(READ_CHUNK)
        } else {
            READ_CHUNK
        };
        let read_from = self.buffer_start + self.buffer.len() as u64;
        let to_read = wanted.min(self.end - read_from) as usize;
        let old_len = self.buffer.len();
        self.buffer.resize(old_len + to_read, 0);
        self.file
            .read_exact_at(&mut self.buffer[old_len..], read_from)
            .map_err(ReadError::Io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_sort_in_offset_order_and_parse_back() {
        assert_eq!(file_name(0, "log"), "00000000000000000000.log");
        assert_eq!(file_name(170_000, "index"), "00000000000000170000.index");
        assert_eq!(
            parse_file_name("00000000000000170000.index", "index"),
            Some(170_000)
        );
        assert_eq!(parse_file_name("00000000000000170000.index", "log"), None);
        assert_eq!(parse_file_name("170000.log", "log"), None);
        assert_eq!(parse_file_name("0000000000000017000x.log", "log"), None);
    }

    #[test]
    fn a_new_segment_empties_a_file_left_by_a_crashed_roll() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(Segment::path(dir.path(), 40, "log"), b"left over").unwrap();
        let segment = Segment::create(dir.path(), 40, 4096).unwrap();
        assert_eq!(segment.size(), 0);
        let len = std::fs::metadata(Segment::path(dir.path(), 40, "log"))
            .unwrap()
            .len();
        assert_eq!(len, 0);
    }
}

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
        todo!("exercise `recover`: Read batches from position 0 with `FrameReader` (it stops at damage); `track` each valid one at its position. Then, if bytes are left over, cut the file back (`set_len`) to where the valid batches end and report the damage.")
    }

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

    /// [`Segment::load`]'s fast path; `None` when the indexes can't be trusted.
    fn load_trusting_indexes(
        dir: &Path,
        base_offset: u64,
        index_interval: u64,
    ) -> Result<Option<Segment>> {
        todo!("exercise `load`: Read the `.index` file and check it (`OffsetIndex::from_bytes`); from its last entry, read batches to the end of the `.log` file to find the segment's end and next offset; then read and check the `.timeindex` file. Any missing file, failed check, damage or size mismatch returns `Ok(None)`: don't trust, scan.")
    }

    /// Records a batch that is now at `position` in the file: advances the
    /// segment's end and adds index entries when an interval has passed.
    fn track(&mut self, position: u64, header: &BatchHeader, batch_len: u64) {
        todo!("exercise `track`: Keep the segment's state up to date for a batch now at `position`: the largest timestamp (and the batch that first had it), the first batch's timestamp, index entries (`maybe_add_index_entries`), the file size and bytes since the last index entry (both grow by the whole frame), and the next offset.")
    }

    /// Adds index entries for the batch at `position` if more than an index
    /// interval of bytes has passed since the last ones: this is what makes
    /// the indexes sparse.
    fn maybe_add_index_entries(&mut self, relative_offset: u32, position: u64) {
        todo!("exercise `index_entries`: Once more than `index_interval` bytes were appended since the last entry: push an offset index entry (relative_offset, position), push the segment's max timestamp so far into the time index (`maybe_push`, with the relative offset of the batch that had it), and reset `bytes_since_index`.")
    }

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

    /// Reads whole batches, starting with the one that holds `offset`, until
    /// about `max_bytes` are read. The first batch is returned even if it is
    /// larger than `max_bytes`, so a reader always makes progress (as Kafka
    /// does since KIP-74).
    pub fn read(&self, offset: u64, max_bytes: u64) -> Result<Vec<StoredBatch>> {
        todo!("exercise `read`: Ask the offset index where to start (`lookup` takes the offset relative to the segment's base), then read frames from there to the segment's end with `FrameReader::next_frame`, skipping batches that end before `offset`, until `max_bytes` are read (but always at least one batch).")
    }

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

    /// Cuts the segment so that its last offset is below `offset`, at the
    /// start of the batch that holds `offset`; returns the new next offset.
    pub fn truncate_to(&mut self, offset: u64) -> Result<u64> {
        if offset >= self.next_offset {
            return Ok(self.next_offset);
        }
        todo!("exercise `truncate`: Find the batch that holds `offset` (start from the offset index, scan frames forward), cut the file at that batch's start (`set_len`), and rebuild the segment's state from what is left with `Segment::recover`.")
    }

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

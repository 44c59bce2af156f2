//! The log: a directory of segments, of which the last is the active one.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{self, BatchHeader, Record, StoredBatch};
use crate::clock::{Clock, SystemClock};
use crate::error::{LogError, Result};
use crate::segment::{self, Segment};

/// The file that says the last shutdown was clean (Kafka: `.kafka_cleanshutdown`).
pub const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
/// The file that holds the recovery point (Kafka: `recovery-point-offset-checkpoint`).
pub const RECOVERY_POINT_FILE: &str = "recovery-point";
/// The file whose lock says a `Log` has the directory open (Kafka: `.lock`).
pub const LOCK_FILE: &str = ".lock";

/// When the log asks the operating system to put appended data on disk
/// (`fsync`), as Kafka's `flush.messages` and `flush.ms`. With neither set
/// (the default, as in Kafka), the log never syncs on its own except when a
/// segment rolls and at a clean shutdown: the operating system writes dirty
/// pages back within about 30 seconds, and chapter 6's replicas cover the
/// machine that dies before it does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushPolicy {
    /// Sync after this many records (1: after every append).
    pub messages: Option<u64>,
    /// Sync on an append that comes this many milliseconds or more after the
    /// last sync. (A real broker also has a background flusher, so that a
    /// quiet log is synced too; [`Log::sync`] is there for that.)
    pub interval_ms: Option<i64>,
}

/// Which time a record's timestamp is (`message.timestamp.type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TimestampType {
    /// The time the producer created (sent) the record; the log keeps the
    /// timestamps it is given, stamping the append time only into a batch
    /// that carries none at all. Kafka's default.
    #[default]
    CreateTime,
    /// The time the log appended the record: every record's timestamp is
    /// replaced with the log's clock at append, so retention goes by when
    /// data arrived, whatever clocks the producers have.
    LogAppendTime,
}

/// How a [`Log`] behaves. The defaults are Kafka's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll to a new segment before the active one would pass this size
    /// (`segment.bytes`, 1 GiB).
    pub segment_bytes: u64,
    /// Roll a segment whose first batch is this old (`segment.ms`, 7 days).
    pub segment_ms: Option<i64>,
    /// Add an offset index entry after every this many bytes
    /// (`index.interval.bytes`, 4 KiB).
    pub index_interval_bytes: u64,
    /// The largest batch an append accepts (`message.max.bytes`, about 1 MiB).
    pub max_batch_bytes: u32,
    /// Delete old segments while the log is bigger than this
    /// (`retention.bytes`, unlimited).
    pub retention_bytes: Option<u64>,
    /// Delete segments whose newest record is older than this
    /// (`retention.ms`, 7 days).
    pub retention_ms: Option<i64>,
    /// When to sync (`flush.messages`, `flush.ms`).
    pub flush: FlushPolicy,
    /// Whose time a record's timestamp is (`message.timestamp.type`).
    pub timestamp_type: TimestampType,
}

impl Default for LogConfig {
    fn default() -> Self {
        const WEEK_MS: i64 = 7 * 24 * 60 * 60 * 1000;
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: Some(WEEK_MS),
            index_interval_bytes: 4096,
            max_batch_bytes: 1024 * 1024 + 12,
            retention_bytes: None,
            retention_ms: Some(WEEK_MS),
            flush: FlushPolicy::default(),
            timestamp_type: TimestampType::CreateTime,
        }
    }
}

/// Where an appended batch went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// The offset of the batch's first record.
    pub base_offset: u64,
    /// The offset of its last record.
    pub last_offset: u64,
}

/// What [`Log::open`] found and did. Never silent: the caller decides
/// whether to log it or alert on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// True when the last shutdown was clean, so nothing was scanned.
    pub clean_shutdown: bool,
    /// The recovery point read from disk: offsets below it were synced.
    pub recovery_point: u64,
    /// Segments read in full: those after the recovery point after an
    /// unclean shutdown, and any whose index files could not be trusted.
    pub scanned_segments: usize,
    /// Bytes cut off the end of a segment (torn or damaged batches).
    pub truncated_bytes: u64,
    /// Segments deleted because they came after damage.
    pub deleted_segments: usize,
    /// The log's offsets after opening: start (inclusive) and end (exclusive).
    pub offsets: (u64, u64),
}

impl fmt::Display for OpenReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (start, end) = self.offsets;
        if self.clean_shutdown {
            write!(f, "clean shutdown")?;
        } else {
            write!(
                f,
                "unclean shutdown, recovery point {}",
                self.recovery_point
            )?;
        }
        write!(
            f,
            "; scanned {} segment(s), cut {} bytes, deleted {} segment(s); offsets {start}..{end}",
            self.scanned_segments, self.truncated_bytes, self.deleted_segments
        )
    }
}

/// What [`Log::apply_retention`] deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    /// The base offsets of the deleted segments.
    pub deleted_segments: Vec<u64>,
    /// The first offset still in the log.
    pub log_start_offset: u64,
}

/// A summary of one segment, for tools and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Its first offset (and its file name).
    pub base_offset: u64,
    /// The offset after its last batch.
    pub next_offset: u64,
    /// Its `.log` file's size.
    pub size: u64,
    /// Its newest timestamp.
    pub max_timestamp: Option<i64>,
    /// Entries in its offset index.
    pub index_entries: usize,
}

// ANCHOR: log
/// A partition's log: a directory of segments named by base offset.
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    clock: Arc<dyn Clock>,
    /// Every segment by base offset; the last is the active one, the only
    /// one appended to. Never empty.
    segments: BTreeMap<u64, Segment>,
    /// Offsets below this are known to be on disk; recovery starts here.
    recovery_point: u64,
    /// Records appended since the last sync, and when that sync was.
    unsynced_records: u64,
    last_sync_ms: i64,
    /// Set when a write failed: the log refuses further writes.
    failed: bool,
    /// Holds the directory's lock for as long as the log is open.
    _lock: File,
}
// ANCHOR_END: log

impl Log {
    /// Opens (or creates) the log in `dir` with the system clock.
    pub fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<(Log, OpenReport)> {
        Log::open_with_clock(dir, config, Arc::new(SystemClock))
    }

    // ANCHOR: open_state
    /// Opens (or creates) the log in `dir`, reading the time from `clock`.
    ///
    /// After a clean shutdown every segment's index files are trusted (after
    /// a sanity check) and only the end of the active segment is read. After
    /// an unclean one, segments before the recovery point are trusted in the
    /// same way and the rest are scanned batch by batch; the first damaged
    /// batch ends the log, and any later segments are deleted.
    pub fn open_with_clock(
        dir: impl AsRef<Path>,
        config: LogConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<(Log, OpenReport)> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| LogError::io(&dir, e))?;
        let lock = lock_dir(&dir)?;
        let bases = list_segments(&dir)?;
        let clean_path = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean_shutdown = clean_path.exists();
        let recovery_point = read_recovery_point(&dir);
        let mut report = OpenReport {
            clean_shutdown,
            recovery_point,
            scanned_segments: 0,
            truncated_bytes: 0,
            deleted_segments: 0,
            offsets: (0, 0),
        };
        // ANCHOR_END: open_state

        // ANCHOR: open_segments
        let interval = config.index_interval_bytes;
        let mut segments = BTreeMap::new();
        for (i, &base) in bases.iter().enumerate() {
            // exercise-hole: open_segment | Trust the segment if the shutdown was clean or the next segment starts at or below the recovery point: `Segment::load` it (which may still scan it); otherwise `Segment::recover` it. Count what a scan found in `report`. After damage, delete every later segment's files and stop; a scanned segment that is not the last is sealed again.
            // exercise-hint: A segment before the recovery point was sealed (synced, index files written) when it rolled, so only its index files need a check; the active segment and anything after the recovery point may hold a torn write. Damage ends the log: nothing after it can be trusted to follow on from what was kept.
            // exercise-hint: `let trusted = clean_shutdown || next_base.is_some_and(|next| next <= recovery_point);` then, for a scan, `report.scanned_segments += 1; report.truncated_bytes += scan.invalid_len;`, on `scan.damage.is_some()` call `segment::delete_files(&dir, later)?` for each of `bases[i + 1..]` (counting `deleted_segments`), insert the segment and `break`; `segment.seal()?` when `next_base.is_some()`.
            let next_base = bases.get(i + 1).copied();
            // A segment is trusted if the shutdown was clean, or if it ends
            // at or before the recovery point (it was sealed when it rolled).
            let trusted = clean_shutdown || next_base.is_some_and(|next| next <= recovery_point);
            let (mut segment, scan) = if trusted {
                Segment::load(&dir, base, interval)?
            } else {
                let (segment, scan) = Segment::recover(&dir, base, interval)?;
                (segment, Some(scan))
            };
            let Some(scan) = scan else {
                segments.insert(base, segment);
                continue;
            };
            report.scanned_segments += 1;
            report.truncated_bytes += scan.invalid_len;
            if scan.damage.is_some() {
                // Nothing after damage can be trusted to follow on from it.
                for &later in &bases[i + 1..] {
                    segment::delete_files(&dir, later)?;
                    report.deleted_segments += 1;
                }
                segments.insert(base, segment);
                break;
            }
            if next_base.is_some() {
                // A scanned segment that is not the last is sealed again,
                // so the next open can trust it.
                segment.seal()?;
            }
            segments.insert(base, segment);
            // exercise-end
        }
        if segments.is_empty() {
            segments.insert(0, Segment::create(&dir, 0, interval)?);
        }
        // ANCHOR_END: open_segments

        // ANCHOR: open_finish
        let mut log = Log {
            dir,
            config,
            last_sync_ms: clock.now_ms(),
            clock,
            segments,
            recovery_point,
            unsynced_records: 0,
            failed: false,
            _lock: lock,
        };
        if !clean_shutdown {
            // Make what recovery kept durable, so the next recovery can
            // start from here.
            log.active().sync()?;
            log.write_recovery_point(log.active().base_offset())?;
        }
        // From now on a crash must not look like a clean shutdown.
        if clean_shutdown {
            fs::remove_file(&clean_path).map_err(|e| LogError::io(&clean_path, e))?;
            sync_dir(&log.dir)?;
        }
        report.offsets = (log.log_start_offset(), log.log_end_offset());
        Ok((log, report))
    }
    // ANCHOR_END: open_finish

    /// Appends `records` as one batch and returns its offsets.
    pub fn append(&mut self, records: &[Record]) -> Result<AppendInfo> {
        let mut bytes = batch::encode(records)?;
        let header = BatchHeader::parse(&bytes)?;
        self.append_checked(&mut bytes, header)
    }

    /// Appends an already encoded batch, as a producer would send it: the
    /// bytes are checked first (every record walked, the header's count
    /// and maximum timestamp confirmed), and the log assigns the base offset
    /// by writing it into `bytes`. Bad bytes get [`LogError::InvalidBatch`]
    /// and nothing is written.
    pub fn append_batch(&mut self, bytes: &mut [u8]) -> Result<AppendInfo> {
        self.check_size(bytes.len())?;
        let header = batch::validate(bytes)?;
        self.append_checked(bytes, header)
    }

    fn check_size(&self, size: usize) -> Result<()> {
        if size > self.config.max_batch_bytes as usize {
            return Err(LogError::BatchTooLarge {
                size,
                max: self.config.max_batch_bytes,
            });
        }
        Ok(())
    }

    // ANCHOR: append
    fn append_checked(&mut self, bytes: &mut [u8], mut header: BatchHeader) -> Result<AppendInfo> {
        if self.failed {
            return Err(LogError::Failed {
                dir: self.dir.clone(),
            });
        }
        self.check_size(bytes.len())?;
        // A batch with no timestamp at all gets the append time, so that
        // retention and `segment.ms` have a real time to go by.
        let log_append_time = self.config.timestamp_type == TimestampType::LogAppendTime;
        if log_append_time || header.max_timestamp == batch::NO_TIMESTAMP {
            header = batch::stamp(bytes, self.clock.now_ms(), log_append_time)?;
        }
        self.maybe_roll(bytes.len() as u64, header.record_count)?;
        header.base_offset = self.log_end_offset();
        batch::set_base_offset(bytes, header.base_offset);
        let active = self
            .segments
            .last_entry()
            .expect("a log always has a segment");
        if let Err(e) = active.into_mut().append(bytes, &header) {
            // Part of the frame may be in the file; only a reopen knows.
            self.failed = true;
            return Err(e);
        }
        self.unsynced_records += u64::from(header.record_count);
        self.maybe_sync()?;
        Ok(AppendInfo {
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
        })
    }
    // ANCHOR_END: append

    // ANCHOR: roll
    /// Rolls to a new segment if [`roll_reason`] finds a reason to, before
    /// a batch of `batch_len` bytes and `record_count` records is appended.
    fn maybe_roll(&mut self, batch_len: u64, record_count: u32) -> Result<()> {
        let active = self.active();
        let next = RollCheck {
            active_size: active.size(),
            active_base: active.base_offset(),
            active_first_timestamp: active.first_timestamp(),
            frame_len: batch_len + ch01_commit_log::frame::HEADER_LEN as u64,
            last_offset: self.log_end_offset() + u64::from(record_count) - 1,
            now_ms: self.clock.now_ms(),
        };
        if roll_reason(&self.config, &next).is_some() {
            self.roll()?;
        }
        Ok(())
    }
    // ANCHOR_END: roll

    /// Seals the active segment (syncs it and writes its index files) and
    /// starts a new one at the log end. Everything before the new segment
    /// is now on disk, so the recovery point moves up to it.
    pub fn roll(&mut self) -> Result<()> {
        if self.active().size() == 0 {
            return Ok(());
        }
        let end = self.log_end_offset();
        self.segments
            .last_entry()
            .expect("a log always has a segment")
            .into_mut()
            .seal()?;
        let segment = Segment::create(&self.dir, end, self.config.index_interval_bytes)?;
        self.segments.insert(end, segment);
        sync_dir(&self.dir)?;
        self.write_recovery_point(end)
    }
    // ANCHOR_END: roll

    /// Syncs the active segment if the flush policy says it is time.
    fn maybe_sync(&mut self) -> Result<()> {
        let FlushPolicy {
            messages,
            interval_ms,
        } = self.config.flush;
        let due_by_count = messages.is_some_and(|n| self.unsynced_records >= n);
        let due_by_time =
            interval_ms.is_some_and(|ms| self.clock.now_ms() - self.last_sync_ms >= ms);
        if due_by_count || due_by_time {
            self.sync()
        } else {
            Ok(())
        }
    }

    /// Waits until everything appended is on disk. (Rolled segments were
    /// synced when they rolled, so this syncs only the active one.)
    pub fn sync(&mut self) -> Result<()> {
        if let Err(e) = self.active().sync() {
            self.failed = true;
            return Err(e);
        }
        self.unsynced_records = 0;
        self.last_sync_ms = self.clock.now_ms();
        Ok(())
    }

    /// Shuts the log down cleanly: seals the active segment, writes the
    /// recovery point, and leaves the clean-shutdown marker, so the next
    /// [`Log::open`] reads almost nothing. Dropping a log without calling
    /// this is treated, on the next open, like a crash.
    pub fn close(mut self) -> Result<()> {
        self.segments
            .last_entry()
            .expect("a log always has a segment")
            .into_mut()
            .seal()?;
        self.write_recovery_point(self.log_end_offset())?;
        let marker = self.dir.join(CLEAN_SHUTDOWN_FILE);
        File::create(&marker)
            .and_then(|f| f.sync_all())
            .map_err(|e| LogError::io(&marker, e))?;
        sync_dir(&self.dir)
    }

    // ANCHOR: read
    /// Reads whole batches starting with the one that holds `offset`, up to
    /// about `max_bytes` (at least one batch) and never past the end of that
    /// batch's segment, as Kafka's fetch does: the caller asks again from
    /// the next offset. Reading at the log end gives nothing; below the log
    /// start or past the end is an error.
    pub fn read(&self, offset: u64, max_bytes: u64) -> Result<Vec<StoredBatch>> {
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        if offset == end {
            return Ok(Vec::new());
        }
        if offset < start || offset > end {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start: start,
                log_end: end,
            });
        }
        // The segment with the greatest base offset at or below `offset`.
        let (_, segment) = self
            .segments
            .range(..=offset)
            .next_back()
            .expect("offset >= log start, the first segment's base");
        segment.read(offset, max_bytes)
    }
    // ANCHOR_END: read

    /// The offset of the first record whose timestamp is at least
    /// `timestamp`, as Kafka's ListOffsets answers; `None` if every record
    /// is older.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<u64>> {
        for segment in self.segments.values() {
            if let Some(offset) = segment.offset_for_timestamp(timestamp)? {
                return Ok(Some(offset));
            }
        }
        Ok(None)
    }

    // ANCHOR: retention
    /// Deletes old segments, oldest first, by `retention.ms` (every record
    /// in the segment is older than that) and `retention.bytes` (the log
    /// stays at least that big after the deletion). Never deletes the active
    /// segment. Deleting a whole file is one system call, however big it is:
    /// this is what segments are for.
    pub fn apply_retention(&mut self) -> Result<RetentionReport> {
        // exercise-hole: retention | While more than one segment is left, look at the oldest: delete it if `retention_ms` is set and its newest record is older than now minus that, or if `retention_bytes` is set and the log without it would still be at least that big; stop at the first one kept. Report the deleted base offsets and the new log start.
        // exercise-hint: Whole segments go, oldest first, and never the active one (the last). Keep a running total of the segments' sizes so the size rule sees the log as it shrinks. A segment with no timestamp is not expired; `saturating_sub` keeps a huge `retention_ms` from overflowing.
        // exercise-hint: `let oldest = self.segments.first_key_value().expect(..).1;` expired: `max < now.saturating_sub(ms)` on `oldest.max_timestamp()`; too big: `total - oldest.size() >= limit`. Then `self.segments.pop_first()`, `total -= segment.size()`, `segment.delete()?`.
        let now = self.clock.now_ms();
        let mut total: u64 = self.segments.values().map(Segment::size).sum();
        let mut deleted = Vec::new();
        while self.segments.len() > 1 {
            let oldest = self.segments.first_key_value().expect("more than one").1;
            let expired = match (self.config.retention_ms, oldest.max_timestamp()) {
                (Some(ms), Some(max)) => max < now.saturating_sub(ms),
                _ => false,
            };
            let too_big = self
                .config
                .retention_bytes
                .is_some_and(|limit| total - oldest.size() >= limit);
            if !(expired || too_big) {
                break;
            }
            let (base, segment) = self.segments.pop_first().expect("more than one");
            total -= segment.size();
            segment.delete()?;
            deleted.push(base);
        }
        Ok(RetentionReport {
            deleted_segments: deleted,
            log_start_offset: self.log_start_offset(),
        })
        // exercise-end
    }
    // ANCHOR_END: retention

    /// Deletes the segments whose records all come before `offset`, oldest
    /// first, never the active one; returns their base offsets. This is
    /// Kafka's DeleteRecords (KIP-107) at segment granularity: chapter 5
    /// drops old commits this way once their latest values have been
    /// written again further on.
    pub fn delete_segments_before(&mut self, offset: u64) -> Result<Vec<u64>> {
        let mut deleted = Vec::new();
        while let Some(second) = self.segments.keys().nth(1) {
            // The next segment's base is one past this segment's last offset.
            if *second > offset {
                break;
            }
            let (base, segment) = self.segments.pop_first().expect("two segments");
            segment.delete()?;
            deleted.push(base);
        }
        Ok(deleted)
    }

    /// Removes every record at or after `offset`, and returns the new log
    /// end. The cut falls at a batch boundary: if `offset` is inside a
    /// batch, that whole batch goes, so the new end may be below `offset`.
    /// Replication (chapter 6) truncates a follower that diverged from its
    /// leader this way. Truncating at or below the log start empties the log
    /// and restarts it at `offset`.
    pub fn truncate_to(&mut self, offset: u64) -> Result<u64> {
        if offset >= self.log_end_offset() {
            return Ok(self.log_end_offset());
        }
        if offset <= self.log_start_offset() {
            for (_, segment) in std::mem::take(&mut self.segments) {
                segment.delete()?;
            }
            let segment = Segment::create(&self.dir, offset, self.config.index_interval_bytes)?;
            self.segments.insert(offset, segment);
        } else {
            while let Some(entry) = self.segments.last_entry() {
                if *entry.key() < offset {
                    break;
                }
                entry.remove().delete()?;
            }
            self.segments
                .last_entry()
                .expect("offset > log start, so a segment is left")
                .into_mut()
                .truncate_to(offset)?;
        }
        sync_dir(&self.dir)?;
        // The active segment changed: it must be rescanned after a crash.
        let base = self.active().base_offset();
        if self.recovery_point > base {
            self.write_recovery_point(base)?;
        }
        Ok(self.log_end_offset())
    }

    /// The first offset in the log.
    pub fn log_start_offset(&self) -> u64 {
        *self
            .segments
            .first_key_value()
            .expect("a log always has a segment")
            .0
    }

    /// The offset the next appended record will get.
    pub fn log_end_offset(&self) -> u64 {
        self.active().next_offset()
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.segments
            .values()
            .map(|s| SegmentInfo {
                base_offset: s.base_offset(),
                next_offset: s.next_offset(),
                size: s.size(),
                max_timestamp: s.max_timestamp(),
                index_entries: s.index_entries(),
            })
            .collect()
    }

    /// Records appended since the last sync: what a power cut could lose.
    pub fn unsynced_records(&self) -> u64 {
        self.unsynced_records
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn active(&self) -> &Segment {
        self.segments
            .last_key_value()
            .expect("a log always has a segment")
            .1
    }

    /// Writes the recovery point atomically: a new file, synced, renamed
    /// over the old one, and the directory synced.
    fn write_recovery_point(&mut self, offset: u64) -> Result<()> {
        let path = self.dir.join(RECOVERY_POINT_FILE);
        let tmp = self.dir.join(format!("{RECOVERY_POINT_FILE}.tmp"));
        let mut file = File::create(&tmp).map_err(|e| LogError::io(&tmp, e))?;
        file.write_all(format!("{offset}\n").as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| LogError::io(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| LogError::io(&path, e))?;
        sync_dir(&self.dir)?;
        self.recovery_point = offset;
        Ok(())
    }
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.dir)
            .field("offsets", &(self.log_start_offset()..self.log_end_offset()))
            .field("segments", &self.segments.len())
            .field("recovery_point", &self.recovery_point)
            .finish()
    }
}

/// The base offsets of the segments in `dir`, sorted. Leftovers of
/// interrupted operations are removed: index files without a `.log` (the
/// `.log` is deleted last) and half-written `*.tmp` files.
fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut logs = Vec::new();
    let mut others = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| LogError::io(dir, e))? {
        let entry = entry.map_err(|e| LogError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(base) = segment::parse_file_name(&name, "log") {
            logs.push(base);
        } else if name.ends_with(".tmp") {
            fs::remove_file(entry.path()).map_err(|e| LogError::io(entry.path(), e))?;
        } else {
            others.push(name);
        }
    }
    for name in others {
        let base = segment::parse_file_name(&name, "index")
            .or_else(|| segment::parse_file_name(&name, "timeindex"));
        if base.is_some_and(|b| !logs.contains(&b)) {
            let path = dir.join(&name);
            fs::remove_file(&path).map_err(|e| LogError::io(&path, e))?;
        }
    }
    logs.sort_unstable();
    Ok(logs)
}

/// Takes the directory's lock, so that one `Log` at a time writes to it. The
/// lock is the operating system's (`flock`): the kernel releases it when the
/// process exits, even by `SIGKILL`, so a stale `.lock` file never blocks.
fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = File::create(&path).map_err(|e| LogError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(LogError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(LogError::io(&path, e)),
    }
}

/// The recovery point on disk, or 0 (recover everything) if there is none
/// or it cannot be read.
fn read_recovery_point(dir: &Path) -> u64 {
    fs::read_to_string(dir.join(RECOVERY_POINT_FILE))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Syncs a directory, so that file creations, renames and deletions in it
/// survive a crash.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io(dir, e))
}

/// The active segment and the next batch, as [`roll_reason`] sees them.
#[derive(Debug, Clone, Copy)]
struct RollCheck {
    /// The active segment's `.log` size in bytes.
    active_size: u64,
    /// Its base offset.
    active_base: u64,
    /// Its first batch's timestamp, if it has a batch.
    active_first_timestamp: Option<i64>,
    /// The next batch's bytes on disk: the batch and its frame header.
    frame_len: u64,
    /// The offset the next batch's last record will get.
    last_offset: u64,
    /// The clock, now.
    now_ms: i64,
}

/// Why the active segment must be sealed before the next batch goes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RollReason {
    /// The batch would take it past `segment.bytes`.
    Full,
    /// Its first batch is `segment.ms` old.
    Old,
    /// An offset of the batch would be too far past its base for the
    /// index's 4-byte relative offsets.
    OffsetsOverflow,
}

// ANCHOR: roll_reason
/// Whether to roll, and why: the decision alone, sans-IO, so that each rule
/// is tested without writing a segment (the overflow rule would need 2³¹
/// records). An empty segment never rolls: the batch could not fit in a new
/// one either.
fn roll_reason(config: &LogConfig, next: &RollCheck) -> Option<RollReason> {
    // exercise-hole: roll_reason | An empty active segment never rolls. Otherwise roll when its size plus the next frame would pass `segment_bytes` (Full), when `segment_ms` is set and now minus its first timestamp reaches it (Old), or when the batch's last offset minus the segment's base would not fit a signed 32-bit int (OffsetsOverflow).
    // exercise-hint: Check the rules in turn and return the first that holds: `next.active_size == 0` → None; `active_size + frame_len > config.segment_bytes` → Full; `segment_ms` and `active_first_timestamp` both set and `now_ms - first >= ms` → Old; `last_offset - active_base > i32::MAX` → OffsetsOverflow; else None.
    // exercise-hint: Use `saturating_sub` for the age (a clock may step back), and compare the offset span with `i32::MAX as u64`: Kafka reads relative offsets as a Java `int`, which is signed.
    if next.active_size == 0 {
        return None;
    }
    if next.active_size + next.frame_len > config.segment_bytes {
        return Some(RollReason::Full);
    }
    if let (Some(ms), Some(first)) = (config.segment_ms, next.active_first_timestamp)
        && next.now_ms.saturating_sub(first) >= ms
    {
        return Some(RollReason::Old);
    }
    // exercise-rule: offsets_overflow | a segment rolls before a relative offset would pass i32::MAX
    if next.last_offset - next.active_base > i32::MAX as u64 {
        return Some(RollReason::OffsetsOverflow);
    }
    // exercise-rule-end
    None
    // exercise-end
}
// ANCHOR_END: roll_reason

#[cfg(test)]
mod tests {
    use super::*;

    /// A segment of 100 bytes based at offset 1000, with its first batch
    /// stamped at 5000, and a small batch to come at 6000.
    fn check() -> RollCheck {
        RollCheck {
            active_size: 100,
            active_base: 1000,
            active_first_timestamp: Some(5_000),
            frame_len: 50,
            last_offset: 1010,
            now_ms: 6_000,
        }
    }

    fn config(segment_bytes: u64, segment_ms: Option<i64>) -> LogConfig {
        LogConfig {
            segment_bytes,
            segment_ms,
            ..LogConfig::default()
        }
    }

    #[test]
    fn a_segment_with_room_does_not_roll_and_an_empty_one_never_does() {
        assert_eq!(roll_reason(&config(1_000, Some(10_000)), &check()), None);
        let empty = RollCheck {
            active_size: 0,
            frame_len: 10_000,
            ..check()
        };
        assert_eq!(roll_reason(&config(1_000, Some(1)), &empty), None);
    }

    #[test]
    fn a_segment_rolls_when_the_next_frame_would_pass_segment_bytes() {
        assert_eq!(roll_reason(&config(150, None), &check()), None);
        assert_eq!(
            roll_reason(&config(149, None), &check()),
            Some(RollReason::Full)
        );
    }

    #[test]
    fn a_segment_rolls_when_its_first_batch_is_segment_ms_old() {
        assert_eq!(roll_reason(&config(1_000, Some(1_001)), &check()), None);
        assert_eq!(
            roll_reason(&config(1_000, Some(1_000)), &check()),
            Some(RollReason::Old)
        );
        // A clock that stepped back is not an age.
        let earlier = RollCheck {
            now_ms: 0,
            ..check()
        };
        assert_eq!(roll_reason(&config(1_000, Some(1)), &earlier), None);
    }

    #[test]
    fn a_segment_rolls_before_a_relative_offset_would_pass_a_signed_int() {
        let at_limit = RollCheck {
            last_offset: 1000 + i32::MAX as u64,
            ..check()
        };
        assert_eq!(roll_reason(&config(1_000, None), &at_limit), None);
        let past = RollCheck {
            last_offset: 1001 + i32::MAX as u64,
            ..check()
        };
        assert_eq!(
            roll_reason(&config(1_000, None), &past),
            Some(RollReason::OffsetsOverflow)
        );
    }
}

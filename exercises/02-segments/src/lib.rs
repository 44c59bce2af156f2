//! # Chapter 2: segments, indexes, retention and recovery
//!
//! One file cannot grow forever, and a reader should not scan a file to
//! find offset 9,000,000. Kafka splits each partition's log into
//! *segments*, each with a sparse *offset index* and a *time index*; old
//! data is deleted a whole segment at a time, and after a crash only the
//! segments written since the last *recovery point* are checked. This
//! chapter builds that storage engine, on top of chapter 1's checksummed
//! frames; every later chapter, and the final broker, stores data in it.
//!
//! ```
//! use ch02_segments::{Log, LogConfig, Record};
//!
//! let dir = tempfile::tempdir()?;
//! let (mut log, _report) = Log::open(dir.path(), LogConfig::default())?;
//! let info = log.append(&[Record::new("a").with_timestamp(1_000), Record::new("b").with_timestamp(1_001)])?;
//! assert_eq!((info.base_offset, info.last_offset), (0, 1));
//! let batches = log.read(1, 1024 * 1024)?; // the whole batch holding offset 1
//! assert_eq!(batches[0].records()?[1].1.value, b"b");
//! log.close()?; // a clean shutdown: the next open reads almost nothing
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Layout
//!
//! - [`batch`]: the unit of storage. A record batch is a byte blob with a
//!   20-byte header (base offset, record count, max timestamp); `encode`,
//!   `decode` (checked, for bytes from outside) and [`StoredBatch`]. Pure.
//! - [`index`]: [`index::OffsetIndex`] (relative offset → file position, 8-byte
//!   entries) and [`index::TimeIndex`] (timestamp → relative offset, 12-byte
//!   entries): binary search, truncation, their file format and its sanity
//!   check. Pure.
//! - [`segment`]: one segment's files (`00000000000000000000.log`, `.index`,
//!   `.timeindex`): append, read through the index, scan-and-truncate
//!   recovery, sealing, and the chunked frame reader they share. Each batch
//!   is stored in a chapter 1 frame (`length | crc | batch`).
//! - [`log`]: [`Log`], the directory of segments: roll by size and age,
//!   retention by size and time, truncation, the flush policy, the
//!   recovery point and the clean-shutdown marker.
//! - [`clock`]: the injectable [`Clock`], so tests move time without sleeping.
//! - [`error`]: the [`LogError`] type.
//!
//! ## How this differs from real Kafka
//!
//! - **The batch format is our own.** Kafka's record batch (message format
//!   v2, KIP-98) has more header fields (producer id and epoch for
//!   idempotence, a partition leader epoch, attributes for compression and
//!   transactions), varint-encoded records with timestamp and offset
//!   deltas, and a CRC-32C over the batch. Ours keeps the shape (a header
//!   the log reads, a blob it stores) and leaves the checksum to chapter 1's
//!   frame. Chapter 11 stores Kafka's batches byte for byte.
//! - **Indexes live in memory and are written when a segment is sealed**
//!   (when it rolls, and at a clean shutdown). Kafka preallocates its index
//!   files and memory-maps them (`segment.index.bytes`, 10 MiB). The active
//!   segment's index is rebuilt by a scan after a crash in both designs.
//! - **The recovery point moves only when a segment rolls** (and at a clean
//!   shutdown), so recovery scans the active segment. Kafka advances it on
//!   every flush and checkpoints it every
//!   `log.flush.offset.checkpoint.interval.ms` (60 s).
//! - **Roll by age counts from the first batch's timestamp**, as Kafka
//!   does, but without `segment.jitter.ms`.
//! - **Retention runs when called** ([`Log::apply_retention`]); Kafka runs
//!   it every `log.retention.check.interval.ms` (5 minutes). It never
//!   deletes the active segment, where Kafka's time retention deletes an
//!   expired active segment too (it rolls first: a log keeps one segment). `cleanup.policy=compact` (log
//!   compaction: keep the newest record per key) is not implemented;
//!   chapter 5 explains what it is for.
//! - **The flush policy is checked on append.** Kafka also runs a
//!   background flusher (`log.flush.scheduler.interval.ms`).
//! - **Truncation rescans the segment it cuts** to rebuild its indexes;
//!   Kafka truncates the index files in place.
//! - **No log start offset checkpoint.** The log start is the first
//!   segment's base offset; Kafka also keeps a `log-start-offset-checkpoint`
//!   for `DeleteRecords` (KIP-107), which can move it inside a segment.
//! - **Reads and appends do not overlap**: appends take `&mut Log`, reads
//!   `&Log`. Kafka's reads run concurrently with appends, up to the last
//!   fully written offset. Chapter 4 puts the log behind a lock.
//! - **One `Log` per directory**, enforced by an operating system lock on
//!   `.lock`, as Kafka locks each log directory.

pub mod batch;
pub mod clock;
pub mod error;
pub mod index;
pub mod log;
pub mod segment;

pub use batch::{BatchHeader, Header, NO_TIMESTAMP, Record, StoredBatch};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{LogError, Result};
pub use log::{
    AppendInfo, FlushPolicy, Log, LogConfig, OpenReport, RetentionReport, SegmentInfo,
    TimestampType,
};

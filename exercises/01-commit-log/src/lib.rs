//! # Chapter 1: a commit log
//!
//! A log is the simplest durable data structure there is: a file you only
//! ever append to. Each record gets an *offset*, its position in the log
//! (0, 1, 2, ...), and readers ask for records by offset. Because nothing is
//! ever overwritten, the only thing a crash can damage is the end of the
//! file, and *recovery* is just finding where the valid data ends.
//!
//! ```
//! use ch01_commit_log::{Config, Log};
//!
//! let dir = tempfile::tempdir()?;
//! let (mut log, _recovery) = Log::open(dir.path().join("events.log"), Config::default())?;
//! assert_eq!(log.append(b"first")?, 0);
//! assert_eq!(log.append(b"second")?, 1);
//! log.sync()?; // both records are now on disk
//! assert_eq!(log.read(1)?, b"second");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Layout
//!
//! - [`frame`]: the on-disk format of one record (`length | crc | payload`)
//!   and the scan that finds where valid frames end. Pure functions over
//!   byte slices, no I/O: this is the part to read first.
//! - [`log`]: [`Log`], the file, the in-memory index from offset to byte
//!   position, the write buffer, and the `flush` / `sync` steps. Opening
//!   reads the whole file into memory to scan it (chapter 2 scans in chunks).
//! - [`error`]: [`LogError`], one variant per thing that can go wrong.
//!
//! The tests are the specification: `tests/log.rs` for the behaviour a user
//! sees, `tests/properties.rs` for the properties that hold for every input,
//! `tests/crash.rs`, which kills a writing process with `SIGKILL` and
//! checks that every record it synced is still there, and
//! `tests/write_failure.rs`, which makes a real write fail (`EFBIG`, under
//! `ulimit -f`) and checks that the log refuses further writes.
//!
//! ## How this differs from real Kafka
//!
//! - **One file, forever.** Kafka splits a partition's log into *segments*
//!   (`log.segment.bytes`, 1 GiB by default) so that old data can be deleted
//!   a file at a time and recovery only rescans recent segments
//!   (`recovery-point-offset-checkpoint`). Chapter 2 builds that.
//! - **The index lives in memory and is rebuilt by reading the whole file on
//!   open.** Kafka keeps a sparse, memory-mapped `.index` file per segment
//!   (`log.index.interval.bytes`, one entry per 4 KiB) and trusts it after a
//!   clean shutdown. Chapter 2 builds that too.
//! - **Records, not batches.** Kafka stores *record batches* (message format
//!   v2, KIP-98) with a base offset, and one CRC-32C per batch covering its
//!   attributes to its end. Here every record has its own frame and an IEEE
//!   CRC-32 that also covers the length field. Chapter 2 moves to batches;
//!   chapter 11 stores Kafka's own batches.
//! - **The offset is implicit.** It is the frame's position in the file,
//!   counted on open. Kafka writes each batch's base offset into the batch,
//!   so a log can start at any offset after old segments are deleted.
//! - **Durability is the caller's call.** [`Log::flush`] hands data to the
//!   operating system, [`Log::sync`] waits for the disk. Kafka by default
//!   does not `fsync` per write (`log.flush.interval.messages` defaults to
//!   `Long.MAX_VALUE`): it syncs a segment when it rolls and at shutdown,
//!   and relies on replication (chapter 6) for the rest.
//! - **What the tests cannot see.** The crash test kills the process, and a
//!   killed process's writes are still in the operating system's page
//!   cache; so it proves that `sync` hands everything to the operating
//!   system, not that the `fsync` calls are there. Testing that takes a
//!   file system that can forget unsynced writes (LazyFS, `dm-flakey`).
//! - **One writer per file**, enforced with an operating system lock
//!   (`flock`); Kafka locks each log directory with a `.lock` file.
//! - **Recovery truncates at the first bad frame.** A flipped bit in the
//!   middle of the file loses every record after it, valid or not, because
//!   nothing after a bad length can be trusted to be a frame boundary. Kafka
//!   does the same per segment, but only for segments after the last
//!   recovery point, and a follower that loses data re-fetches it from the
//!   leader (chapter 6).
//! - **Unix only.** Reads use positioned reads (`pread`, through
//!   [`std::os::unix::fs::FileExt`]) so that readers need no `&mut` access.

pub mod error;
pub mod frame;
pub mod log;

pub use error::{LogError, Result};
pub use frame::Damage;
pub use log::{Config, Iter, Log, Record, Recovery};

//! The errors a [`crate::Log`] can return.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong with a log. Each variant says what happened
/// in one line, with the numbers needed to act on it.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The record is larger than the log's configured maximum. Nothing was
    /// written. (Kafka's equivalent is `MESSAGE_TOO_LARGE`.)
    #[error("record of {size} bytes is larger than the maximum of {max} bytes")]
    RecordTooLarge {
        /// The size of the refused record.
        size: usize,
        /// The log's `max_record_size`.
        max: u32,
    },

    /// The offset is not in the log. (Kafka's `OFFSET_OUT_OF_RANGE`.)
    #[error(
        "offset {offset} is out of range: the log holds offsets 0 to {next_offset} (exclusive)"
    )]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: u64,
        /// The offset the next append will get.
        next_offset: u64,
    },

    /// A record that was valid when the log was opened no longer reads back:
    /// its bytes changed on disk underneath us. (Kafka's `CORRUPT_MESSAGE`.)
    #[error("record at offset {offset} is corrupt: {detail}")]
    Corrupt {
        /// The damaged record's offset.
        offset: u64,
        /// What was wrong with it.
        detail: String,
    },

    /// An earlier write or sync failed, so what is on disk is unknown. The
    /// only safe way on is to reopen the log, which recovers from what the
    /// disk really holds.
    #[error("an earlier write to {path} failed; reopen the log to recover")]
    Failed {
        /// The log file.
        path: PathBuf,
    },

    /// Another `Log` (in this process or another) has the file open. Two
    /// writers would each append at what they think is the end, and each
    /// index would point at the other's records.
    #[error("{path} is already open in another Log")]
    Locked {
        /// The log file.
        path: PathBuf,
    },

    /// The operating system refused a read, write or sync.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The log file (or its directory).
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
}

/// A `Result` whose error is a [`LogError`].
pub type Result<T, E = LogError> = std::result::Result<T, E>;

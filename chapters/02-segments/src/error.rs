//! The errors a [`crate::Log`] can return.

use std::io;
use std::path::{Path, PathBuf};

use crate::batch::BatchError;

/// Everything that can go wrong with a segmented log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The batch is larger than `max_batch_bytes`; nothing was written.
    /// (Kafka's `MESSAGE_TOO_LARGE` / `RECORD_LIST_TOO_LARGE`.)
    #[error("batch of {size} bytes is larger than the maximum of {max} bytes")]
    BatchTooLarge {
        /// The size of the refused batch.
        size: usize,
        /// The configured maximum.
        max: u32,
    },

    /// The bytes given to [`crate::Log::append_batch`] are not a valid
    /// batch; nothing was written. (Kafka's `CORRUPT_MESSAGE` /
    /// `INVALID_RECORD`.)
    #[error("invalid batch: {0}")]
    InvalidBatch(#[from] BatchError),

    /// The offset is not in the log: below its start (deleted by retention)
    /// or past its end. (Kafka's `OFFSET_OUT_OF_RANGE`.)
    #[error(
        "offset {offset} is out of range: the log holds offsets {log_start} to {log_end} (exclusive)"
    )]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: u64,
        /// The first offset still in the log.
        log_start: u64,
        /// The offset the next append will get.
        log_end: u64,
    },

    /// Stored bytes that were valid when the log was opened no longer are.
    #[error("{}: {detail}", segment.display())]
    Corrupt {
        /// The segment's `.log` file.
        segment: PathBuf,
        /// What is wrong.
        detail: String,
    },

    /// An earlier write or sync failed, so what is on disk is unknown; the
    /// log refuses further writes until it is reopened (which recovers).
    #[error("an earlier write to the log in {} failed; reopen it to recover", dir.display())]
    Failed {
        /// The log's directory.
        dir: PathBuf,
    },

    /// Another `Log` (in this process or another) has the directory open.
    #[error("the log in {} is already open in another Log", dir.display())]
    Locked {
        /// The log's directory.
        dir: PathBuf,
    },

    /// The operating system refused a file operation.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
}

impl LogError {
    /// An [`LogError::Io`] for `path`.
    pub(crate) fn io(path: impl AsRef<Path>, source: io::Error) -> LogError {
        LogError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}

/// A `Result` whose error is a [`LogError`].
pub type Result<T, E = LogError> = std::result::Result<T, E>;

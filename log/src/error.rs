//! Errors of reading and recovering a partition log.

use sluice_record::BatchError;
use sluice_storage::StorageError;

/// What went wrong reading a partition's log or checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(
        "offset {offset} is out of range for {partition}: the earliest offset is {start} and the next offset to be written is {end}"
    )]
    OffsetOutOfRange {
        partition: String,
        offset: i64,
        start: i64,
        end: i64,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("checkpoint {path} is corrupt: {reason}")]
    CorruptCheckpoint { path: String, reason: String },
    #[error("index {path} is corrupt: {reason}")]
    CorruptIndex { path: String, reason: String },
    #[error("segment {path} holds a bad record batch at byte {position}: {source}")]
    CorruptSegment {
        path: String,
        position: u64,
        source: BatchError,
    },
    #[error("volume {url} is not configured on this node; configure it with --volume")]
    UnknownVolume { url: String },
}

impl LogError {
    /// Whether trying again later can succeed (a storage hiccup).
    pub fn is_retriable(&self) -> bool {
        match self {
            LogError::Storage(e) => e.is_retriable(),
            LogError::OffsetOutOfRange { .. }
            | LogError::CorruptCheckpoint { .. }
            | LogError::CorruptIndex { .. }
            | LogError::CorruptSegment { .. }
            | LogError::UnknownVolume { .. } => false,
        }
    }
}

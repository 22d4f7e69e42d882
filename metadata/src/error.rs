//! Errors of the metadata store.

use std::path::PathBuf;

/// What went wrong talking to the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("cannot {op} the metadata file {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the metadata file {path} is corrupt ({reason}); restore it from a backup or move it away to start empty"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("metadata value under {key} is not valid JSON for {what}: {reason}")]
    BadValue {
        key: String,
        what: &'static str,
        reason: String,
    },
    #[error("the metadata store is unavailable: {reason}")]
    Unavailable { reason: String },
}

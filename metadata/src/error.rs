//! Errors of the metadata store.

use std::path::PathBuf;

use crate::LeaseId;

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
    /// The store did not answer (etcd down, unreachable, or too slow). A write
    /// that fails this way may or may not have been applied.
    #[error("the metadata store is unavailable: {reason}")]
    Unavailable { reason: String },
    /// No etcd endpoint answered when connecting.
    #[error(
        "cannot reach etcd at {endpoints}: {reason}; check that etcd is running and the --etcd URLs are right"
    )]
    Unreachable { endpoints: String, reason: String },
    /// etcd answered with an error: the request itself is wrong (for example
    /// a transaction that writes one key twice) or the cluster refuses it.
    #[error("etcd refused to {op}: {reason}")]
    Rejected { op: &'static str, reason: String },
    /// The lease expired or was revoked; keys bound to it are gone.
    #[error("lease {lease} has expired or was revoked")]
    LeaseExpired { lease: LeaseId },
}

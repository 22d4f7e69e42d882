//! Errors of the broker's write path.

use sluice_record::BatchError;

/// Why a produce was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "topic {topic:?} does not exist; create it first (sluice topic create {topic} --partitions N)"
    )]
    UnknownTopic { topic: String },
    #[error(
        "partition {partition} is out of range for topic {topic:?}, which has {partitions} partitions (0..{partitions})"
    )]
    PartitionOutOfRange {
        topic: String,
        partition: u32,
        partitions: u32,
    },
    #[error("this broker does not own {topic}/{partition} (it is moving or recovering); retry")]
    NotOwner { topic: String, partition: u32 },
    #[error("{topic}/{partition} was taken over by a newer owner (epoch {by_epoch}); retry")]
    Fenced {
        topic: String,
        partition: u32,
        by_epoch: u64,
    },
    #[error(
        "record batch of {size} bytes at byte {position} is larger than the limit of {max} bytes for topic {topic:?}"
    )]
    BatchTooLarge {
        topic: String,
        position: usize,
        size: usize,
        max: u32,
    },
    #[error("invalid record batch: {0}; nothing of this request was stored")]
    InvalidBatch(#[from] BatchError),
    #[error("the request holds no record batch")]
    EmptyRequest,
    #[error("{topic}/{partition} is shutting down; retry")]
    ShuttingDown { topic: String, partition: u32 },
    #[error("metadata store error: {0}")]
    Metadata(#[from] sluice_metadata::MetadataError),
}

impl BrokerError {
    /// Whether the same request can succeed if retried later.
    pub fn is_retriable(&self) -> bool {
        match self {
            BrokerError::NotOwner { .. }
            | BrokerError::Fenced { .. }
            | BrokerError::ShuttingDown { .. }
            | BrokerError::Metadata(_) => true,
            BrokerError::UnknownTopic { .. }
            | BrokerError::PartitionOutOfRange { .. }
            | BrokerError::BatchTooLarge { .. }
            | BrokerError::InvalidBatch(_)
            | BrokerError::EmptyRequest => false,
        }
    }
}

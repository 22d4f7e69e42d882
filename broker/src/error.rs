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
    /// The owning broker (another process) refused the request.
    #[error("{message}")]
    Remote {
        code: tonic::Code,
        name: String,
        message: String,
    },
}

impl BrokerError {
    /// The gRPC code and the stable `sluice-error` name of this error.
    pub fn wire(&self) -> (tonic::Code, &'static str) {
        use tonic::Code;
        match self {
            BrokerError::UnknownTopic { .. } => (Code::NotFound, "UNKNOWN_TOPIC"),
            BrokerError::PartitionOutOfRange { .. } => {
                (Code::InvalidArgument, "PARTITION_OUT_OF_RANGE")
            }
            BrokerError::NotOwner { .. }
            | BrokerError::Fenced { .. }
            | BrokerError::ShuttingDown { .. } => (Code::Unavailable, "NOT_OWNER"),
            BrokerError::BatchTooLarge { .. } => (Code::InvalidArgument, "BATCH_TOO_LARGE"),
            BrokerError::InvalidBatch(batch) => match batch.root() {
                BatchError::BadCrc { .. } => (Code::InvalidArgument, "CORRUPT_BATCH_CRC"),
                _ => (Code::InvalidArgument, "INVALID_BATCH"),
            },
            BrokerError::EmptyRequest => (Code::InvalidArgument, "INVALID_BATCH"),
            BrokerError::Metadata(_) => (Code::Unavailable, "METADATA_UNAVAILABLE"),
            BrokerError::Remote { code, .. } => (*code, "REMOTE"),
        }
    }

    /// This error as a gRPC status.
    pub fn to_status(&self) -> tonic::Status {
        if let BrokerError::Remote {
            code,
            name,
            message,
        } = self
        {
            let mut status = tonic::Status::new(*code, message.clone());
            if let Ok(value) = name.parse() {
                status
                    .metadata_mut()
                    .insert(sluice_proto::ERROR_CODE_KEY, value);
            }
            return status;
        }
        let (code, name) = self.wire();
        sluice_proto::status(code, name, self.to_string())
    }

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
            | BrokerError::EmptyRequest
            | BrokerError::Remote { .. } => false,
        }
    }
}

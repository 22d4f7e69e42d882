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
    #[error(
        "{topic}/{partition}: cannot delete records before offset {offset}: offsets go from 0 to the high watermark {high_watermark} (-1 means the high watermark)"
    )]
    DeleteOffsetOutOfRange {
        topic: String,
        partition: u32,
        offset: i64,
        high_watermark: i64,
    },
    #[error("{topic}/{partition} is shutting down; retry")]
    ShuttingDown { topic: String, partition: u32 },
    #[error("metadata store error: {0}")]
    Metadata(#[from] sluice_metadata::MetadataError),
    #[error(
        "{topic}/{partition}: producer {producer_id} with epoch {epoch} is fenced: a newer producer with the same id exists (epoch {current_epoch}); nothing of this request was stored"
    )]
    ProducerFenced {
        topic: String,
        partition: u32,
        producer_id: i64,
        epoch: i16,
        current_epoch: i16,
    },
    #[error(
        "{topic}/{partition} has no state for producer {producer_id} (never seen here, or expired) and its batch starts at sequence {sequence}, not 0; nothing of this request was stored"
    )]
    UnknownProducer {
        topic: String,
        partition: u32,
        producer_id: i64,
        sequence: i32,
    },
    #[error(
        "{topic}/{partition}: out-of-order sequence from producer {producer_id}: expected {expected}, got {got}; nothing of this request was stored"
    )]
    OutOfOrderSequence {
        topic: String,
        partition: u32,
        producer_id: i64,
        expected: i32,
        got: i32,
    },
    #[error(
        "{topic}/{partition}: producer {producer_id}'s batch with sequences {first_seq}..={last_seq} was appended before but is older than the {kept} remembered batches; its offsets are not known any more"
    , kept = sluice_log::checkpoint::PRODUCER_BATCHES_KEPT)]
    DuplicateSequence {
        topic: String,
        partition: u32,
        producer_id: i64,
        first_seq: i32,
        last_seq: i32,
    },
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
            BrokerError::DeleteOffsetOutOfRange { .. } => (Code::OutOfRange, "OFFSET_OUT_OF_RANGE"),
            BrokerError::Metadata(_) => (Code::Unavailable, "METADATA_UNAVAILABLE"),
            BrokerError::ProducerFenced { .. } => (Code::FailedPrecondition, "PRODUCER_FENCED"),
            BrokerError::UnknownProducer { .. } => {
                (Code::FailedPrecondition, "UNKNOWN_PRODUCER_ID")
            }
            BrokerError::OutOfOrderSequence { .. } => {
                (Code::FailedPrecondition, "OUT_OF_ORDER_SEQUENCE")
            }
            BrokerError::DuplicateSequence { .. } => (Code::AlreadyExists, "DUPLICATE_SEQUENCE"),
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
            | BrokerError::DeleteOffsetOutOfRange { .. }
            // The producer (its SDK) decides: start a new epoch, or fail.
            | BrokerError::ProducerFenced { .. }
            | BrokerError::UnknownProducer { .. }
            | BrokerError::OutOfOrderSequence { .. }
            | BrokerError::DuplicateSequence { .. }
            | BrokerError::Remote { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    fn producer_errors() -> Vec<BrokerError> {
        let topic = || "orders".to_owned();
        vec![
            BrokerError::ProducerFenced {
                topic: topic(),
                partition: 1,
                producer_id: 1000,
                epoch: 0,
                current_epoch: 1,
            },
            BrokerError::UnknownProducer {
                topic: topic(),
                partition: 1,
                producer_id: 1000,
                sequence: 7,
            },
            BrokerError::OutOfOrderSequence {
                topic: topic(),
                partition: 1,
                producer_id: 1000,
                expected: 3,
                got: 5,
            },
            BrokerError::DuplicateSequence {
                topic: topic(),
                partition: 1,
                producer_id: 1000,
                first_seq: 0,
                last_seq: 2,
            },
        ]
    }

    #[test]
    fn producer_errors_are_final_and_keep_their_code_through_a_proxy() {
        let expected = [
            (Code::FailedPrecondition, "PRODUCER_FENCED"),
            (Code::FailedPrecondition, "UNKNOWN_PRODUCER_ID"),
            (Code::FailedPrecondition, "OUT_OF_ORDER_SEQUENCE"),
            (Code::AlreadyExists, "DUPLICATE_SEQUENCE"),
        ];
        for (error, (code, name)) in producer_errors().into_iter().zip(expected) {
            assert_eq!(error.wire(), (code, name));
            assert!(!error.is_retriable(), "{name}: the producer decides");
            let status = error.to_status();
            assert_eq!(status.code(), code);
            assert_eq!(sluice_proto::error_code(&status), Some(name));
            // A proxy passes the broker's refusal on as a `Remote` error.
            let remote = BrokerError::Remote {
                code: status.code(),
                name: name.to_owned(),
                message: status.message().to_owned(),
            };
            let forwarded = remote.to_status();
            assert_eq!(forwarded.code(), code);
            assert_eq!(sluice_proto::error_code(&forwarded), Some(name));
            assert_eq!(forwarded.message(), error.to_string());
        }
    }

    #[test]
    fn producer_error_messages_say_what_happened() {
        let messages: Vec<String> = producer_errors().iter().map(|e| e.to_string()).collect();
        assert!(messages[0].contains("a newer producer with the same id exists"));
        assert!(messages[2].contains("expected 3, got 5"));
        assert!(messages[3].contains("older than the 5 remembered batches"));
    }
}

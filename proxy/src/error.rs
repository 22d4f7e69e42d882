//! Every error a client can get, mapped to its gRPC status exhaustively (no
//! catch-all arm: a new variant must choose its status). The status carries
//! a message a person can act on and, in the `sluice-error` metadata, a
//! stable code programs can match.

use sluice_broker::BrokerError;
use sluice_controller::AdminError;
use sluice_controller::planner::PlanError;
use sluice_log::LogError;
use sluice_storage::StorageError;
use tonic::{Code, Status};

/// Errors of the proxy's requests.
#[derive(Debug)]
pub enum ProxyError {
    UnknownTopic {
        topic: String,
    },
    PartitionOutOfRange {
        topic: String,
        partition: u32,
        partitions: u32,
    },
    /// The partition is recovering or moving; retry shortly.
    NotAvailable {
        partition: String,
        reason: &'static str,
    },
    BadRequest {
        reason: String,
    },
    Broker(BrokerError),
    Log(LogError),
    Admin(AdminError),
}

impl From<BrokerError> for ProxyError {
    fn from(e: BrokerError) -> Self {
        ProxyError::Broker(e)
    }
}

impl From<LogError> for ProxyError {
    fn from(e: LogError) -> Self {
        ProxyError::Log(e)
    }
}

impl From<AdminError> for ProxyError {
    fn from(e: AdminError) -> Self {
        ProxyError::Admin(e)
    }
}

impl From<ProxyError> for Status {
    fn from(error: ProxyError) -> Status {
        let (code, name, message) = match error {
            // Already a status (from this or another broker process).
            ProxyError::Broker(e) => return e.to_status(),
            ProxyError::UnknownTopic { topic } => (
                Code::NotFound,
                "UNKNOWN_TOPIC",
                format!(
                    "topic {topic:?} does not exist; create it first (sluice topic create {topic} --partitions N)"
                ),
            ),
            ProxyError::PartitionOutOfRange {
                topic,
                partition,
                partitions,
            } => (
                Code::InvalidArgument,
                "PARTITION_OUT_OF_RANGE",
                format!(
                    "partition {partition} is out of range for topic {topic:?}, which has {partitions} partitions (0..{partitions})"
                ),
            ),
            ProxyError::NotAvailable { partition, reason } => (
                Code::Unavailable,
                "NOT_AVAILABLE",
                format!("partition {partition} is {reason}; retry"),
            ),
            ProxyError::BadRequest { reason } => (Code::InvalidArgument, "BAD_REQUEST", reason),
            ProxyError::Log(e) => log(e),
            ProxyError::Admin(e) => admin(e),
        };
        match code {
            Code::Internal | Code::Unavailable => {
                tracing::warn!(code = name, %message, "request failed")
            }
            _ => tracing::debug!(code = name, %message, "request refused"),
        }
        sluice_proto::status(code, name, message)
    }
}

fn log(e: LogError) -> (Code, &'static str, String) {
    let message = e.to_string();
    match e {
        LogError::OffsetOutOfRange { .. } => (Code::OutOfRange, "OFFSET_OUT_OF_RANGE", message),
        LogError::Storage(ref storage) => storage_status(storage, message),
        LogError::CorruptCheckpoint { .. }
        | LogError::CorruptIndex { .. }
        | LogError::CorruptSegment { .. } => (Code::DataLoss, "CORRUPT_DATA", message),
        LogError::UnknownVolume { .. } => (Code::Internal, "UNKNOWN_VOLUME", message),
    }
}

fn storage_status(e: &StorageError, message: String) -> (Code, &'static str, String) {
    match e {
        StorageError::Io { .. } | StorageError::ObjectStore { .. } | StorageError::Hdfs { .. } => {
            (Code::Unavailable, "STORAGE_UNAVAILABLE", message)
        }
        StorageError::NotFound { .. }
        | StorageError::OutOfBounds { .. }
        | StorageError::Corrupt { .. } => (Code::DataLoss, "CORRUPT_DATA", message),
        StorageError::AlreadyExists { .. } | StorageError::BadUrl { .. } => {
            (Code::Internal, "STORAGE_ERROR", message)
        }
    }
}

fn admin(e: AdminError) -> (Code, &'static str, String) {
    let message = e.to_string();
    match e {
        AdminError::TopicExists { .. } => (Code::AlreadyExists, "TOPIC_EXISTS", message),
        AdminError::UnknownTopic { .. } => (Code::NotFound, "UNKNOWN_TOPIC", message),
        AdminError::InvalidTopicName { .. } => {
            (Code::InvalidArgument, "INVALID_TOPIC_NAME", message)
        }
        AdminError::InvalidPartitions { .. } => {
            (Code::InvalidArgument, "INVALID_PARTITIONS", message)
        }
        AdminError::InvalidConfig { .. } => (Code::InvalidArgument, "INVALID_CONFIG", message),
        AdminError::NoBrokers => (Code::Unavailable, "NO_BROKERS", message),
        AdminError::Conflict => (Code::Aborted, "CONFLICT", message),
        AdminError::Metadata(_) => (Code::Unavailable, "METADATA_UNAVAILABLE", message),
        AdminError::Plan(plan) => match plan {
            PlanError::UnknownTopic { .. } => (Code::NotFound, "UNKNOWN_TOPIC", message),
            PlanError::PartitionOutOfRange { .. } => {
                (Code::InvalidArgument, "PARTITION_OUT_OF_RANGE", message)
            }
            PlanError::NotAssigned { .. } => (Code::FailedPrecondition, "NOT_ASSIGNED", message),
            PlanError::BrokerNotLive { .. } => {
                (Code::FailedPrecondition, "BROKER_NOT_LIVE", message)
            }
            PlanError::BrokerDraining { .. } => {
                (Code::FailedPrecondition, "BROKER_DRAINING", message)
            }
            PlanError::AlreadyOnBroker { .. } => {
                (Code::AlreadyExists, "ALREADY_ON_BROKER", message)
            }
        },
    }
}

//! Errors of topic administration.

use sluice_metadata::MetadataError;

/// Why an admin operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("topic {name:?} already exists")]
    TopicExists { name: String },
    #[error("topic {name:?} does not exist")]
    UnknownTopic { name: String },
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName { name: String, reason: &'static str },
    #[error("invalid partition count {partitions}: a topic needs between 1 and {max} partitions")]
    InvalidPartitions { partitions: u32, max: u32 },
    #[error("invalid topic config: {reason}")]
    InvalidConfig { reason: String },
    #[error("no broker is available to take partitions")]
    NoBrokers,
    #[error("the topic changed while this request ran; retry")]
    Conflict,
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    Plan(#[from] crate::planner::PlanError),
}

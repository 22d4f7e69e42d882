//! Errors of group requests, each with the gRPC code and the stable
//! `sluice-error` name clients match on (Kafka's error names where Kafka
//! has one).

use sluice_metadata::MetadataError;
use tonic::Code;

/// Why a group request was refused or failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GroupError {
    #[error(
        "member {member:?} is not in the group (expired or never joined); rejoin without a member id"
    )]
    UnknownMember { member: String },
    #[error("generation {got} is not the group's current generation {current}; rejoin the group")]
    IllegalGeneration { got: i32, current: i32 },
    #[error("the group is rebalancing; rejoin it")]
    RebalanceInProgress,
    #[error("inconsistent group protocol: {reason}")]
    InconsistentProtocol { reason: String },
    #[error(
        "unknown assignor(s) {asked:?}; Sluice's coordinator assigns with \"sticky\", \"range\" or \"roundrobin\""
    )]
    UnknownAssignor { asked: Vec<String> },
    #[error("session timeout {ms} ms is outside the allowed range of 500 ms to 30 minutes")]
    InvalidSessionTimeout { ms: u64 },
    #[error("invalid group request: {reason}")]
    InvalidRequest { reason: String },
    #[error("invalid group id {group:?}: {reason}")]
    InvalidGroupId { group: String, reason: &'static str },
    #[error(
        "member {member:?} of generation {generation} does not own {topic}/{partition}; commit only the partitions assigned to it"
    )]
    NotOwned {
        member: String,
        generation: i32,
        topic: String,
        partition: u32,
    },
    #[error(
        "group {group:?} has {members} active member(s); stop its consumers first (or wait for their sessions to time out)"
    )]
    NotEmpty { group: String, members: usize },
    #[error("group {group:?} does not exist")]
    UnknownGroup { group: String },
    #[error(
        "topic {topic:?} does not exist; create it first (sluice topic create {topic} --partitions N)"
    )]
    UnknownTopic { topic: String },
    #[error("another member joined with the same instance id {instance:?}")]
    FencedInstance { instance: String },
    #[error("this process is not the group coordinator (it is moving); retry")]
    NotCoordinator,
    #[error("metadata store error: {0}")]
    Metadata(String),
}

impl From<MetadataError> for GroupError {
    fn from(e: MetadataError) -> Self {
        GroupError::Metadata(e.to_string())
    }
}

impl GroupError {
    /// The gRPC code and the `sluice-error` name.
    pub fn wire(&self) -> (Code, &'static str) {
        match self {
            GroupError::UnknownMember { .. } => (Code::NotFound, "UNKNOWN_MEMBER_ID"),
            GroupError::IllegalGeneration { .. } => {
                (Code::FailedPrecondition, "ILLEGAL_GENERATION")
            }
            GroupError::RebalanceInProgress => (Code::Aborted, "REBALANCE_IN_PROGRESS"),
            GroupError::InconsistentProtocol { .. } => {
                (Code::InvalidArgument, "INCONSISTENT_GROUP_PROTOCOL")
            }
            GroupError::UnknownAssignor { .. } => (Code::InvalidArgument, "UNKNOWN_ASSIGNOR"),
            GroupError::InvalidSessionTimeout { .. } => {
                (Code::InvalidArgument, "INVALID_SESSION_TIMEOUT")
            }
            GroupError::InvalidRequest { .. } => (Code::InvalidArgument, "INVALID_REQUEST"),
            GroupError::InvalidGroupId { .. } => (Code::InvalidArgument, "INVALID_GROUP_ID"),
            GroupError::NotOwned { .. } => (Code::FailedPrecondition, "PARTITION_NOT_OWNED"),
            GroupError::NotEmpty { .. } => (Code::FailedPrecondition, "GROUP_NOT_EMPTY"),
            GroupError::UnknownGroup { .. } => (Code::NotFound, "UNKNOWN_GROUP"),
            GroupError::UnknownTopic { .. } => (Code::NotFound, "UNKNOWN_TOPIC"),
            GroupError::FencedInstance { .. } => (Code::FailedPrecondition, "FENCED_INSTANCE_ID"),
            GroupError::NotCoordinator => (Code::Unavailable, "NOT_COORDINATOR"),
            GroupError::Metadata(_) => (Code::Unavailable, "METADATA_UNAVAILABLE"),
        }
    }

    pub fn to_status(&self) -> tonic::Status {
        let (code, name) = self.wire();
        sluice_proto::status(code, name, self.to_string())
    }
}

impl From<GroupError> for tonic::Status {
    fn from(e: GroupError) -> Self {
        e.to_status()
    }
}

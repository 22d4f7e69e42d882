//! The one error type of the SDK, what each failure means on the wire, and
//! which failures are worth retrying.

use std::time::Duration;

use sluice_record::BatchError;
use tonic::Code;

/// `sluice-error` codes that name a passing condition: the same request
/// succeeds once a partition has moved, a coordinator has been elected, or
/// storage is back.
pub(crate) const RETRIABLE_CODES: [&str; 5] = [
    "NOT_OWNER",
    "NOT_AVAILABLE",
    "NOT_COORDINATOR",
    "METADATA_UNAVAILABLE",
    "STORAGE_UNAVAILABLE",
];

/// Result of the SDK's calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure of the SDK.
///
/// [`Error::code`] gives the stable `sluice-error` code of a server's
/// refusal (`UNKNOWN_TOPIC`, `NOT_OWNER`, ...), [`Error::status`] the gRPC
/// status code and [`Error::is_retriable`] whether the same call may succeed
/// later. `Display` is a message a person can act on.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with an error.
    #[error("{}", server_message(*.status, .code.as_deref(), .message))]
    Server {
        /// gRPC status code.
        status: Code,
        /// The `sluice-error` code, when the server gave one.
        code: Option<String>,
        /// The server's message.
        message: String,
    },
    /// No answer from an endpoint: it could not be reached, the connection
    /// broke, or it did not answer in time. Always retriable.
    #[error("no answer from {endpoint}: {message}")]
    Transport {
        /// The endpoint tried.
        endpoint: String,
        /// gRPC status code of the failure (usually `Unavailable`).
        status: Code,
        /// What went wrong.
        message: String,
    },
    /// Retries went on until the deadline of the operation passed.
    #[error("{operation} did not succeed within {after:?}{}", last_failure(.last.as_deref()))]
    Timeout {
        /// What was attempted (`"produce"`, `"join group"`, ...).
        operation: &'static str,
        /// The deadline it had.
        after: Duration,
        /// The last failure, if an attempt was made.
        last: Option<Box<Error>>,
    },
    /// An endpoint address that is not a valid URI.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The address as given.
        endpoint: String,
        /// Why it was refused.
        reason: String,
    },
    /// A builder setting out of range, or settings that contradict each other.
    #[error("invalid configuration: {reason}")]
    InvalidConfig {
        /// Which setting and why.
        reason: String,
    },
    /// A record larger than the producer can ever send.
    #[error("record of {size} bytes is larger than the limit of {max} bytes ({limit})")]
    RecordTooLarge {
        /// Estimated encoded size of the record.
        size: usize,
        /// The limit.
        max: usize,
        /// Which limit: the producer's buffer or the largest request.
        limit: &'static str,
    },
    /// A record batch could not be built, or a fetched batch is corrupt.
    #[error("{context}: {source}")]
    Batch {
        /// Where: `"record batch for orders/3"`, `"fetched data of orders/3"`.
        context: String,
        /// The codec's error.
        source: BatchError,
    },
    /// The producer or consumer was closed.
    #[error("the {what} is closed")]
    Closed {
        /// `"producer"` or `"consumer"`.
        what: &'static str,
    },
    /// A call that does not fit the client's state: committing without a
    /// group, seeking in a partition that is not assigned, ...
    #[error("{reason}")]
    InvalidState {
        /// What is wrong.
        reason: String,
    },
    /// An earlier batch of the same partition failed for good, so this one
    /// was given up too (sending it later would break the partition's
    /// order). It may have been written already, if it was in flight: its
    /// outcome is unknown, as a delivery timeout's is; resending it can
    /// write it twice.
    #[error(
        "an earlier batch of {topic}/{partition} failed, so this one was given up (it may have been written if it was in flight): {cause}"
    )]
    EarlierBatchFailed {
        /// Topic of the partition.
        topic: String,
        /// The partition.
        partition: u32,
        /// Why the earlier batch failed.
        cause: Box<Error>,
    },
}

fn server_message(status: Code, code: Option<&str>, message: &str) -> String {
    let code = code.map_or_else(|| format!("{status:?}"), str::to_owned);
    if message.is_empty() {
        code
    } else {
        format!("{message} ({code})")
    }
}

fn last_failure(last: Option<&Error>) -> String {
    last.map_or_else(String::new, |last| format!(": {last}"))
}

impl Error {
    /// The stable `sluice-error` code of a server's refusal, such as
    /// `UNKNOWN_TOPIC` or `NOT_OWNER`; for a timeout, that of the last failure.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Server { code, .. } => code.as_deref(),
            Error::Timeout { last, .. } => last.as_deref().and_then(Error::code),
            Error::EarlierBatchFailed { .. }
            | Error::Transport { .. }
            | Error::InvalidEndpoint { .. }
            | Error::InvalidConfig { .. }
            | Error::RecordTooLarge { .. }
            | Error::Batch { .. }
            | Error::Closed { .. }
            | Error::InvalidState { .. } => None,
        }
    }

    /// The gRPC status code of the failure (client-side failures get the
    /// closest one).
    pub fn status(&self) -> Code {
        match self {
            Error::Server { status, .. } | Error::Transport { status, .. } => *status,
            Error::Timeout { .. } => Code::DeadlineExceeded,
            Error::InvalidEndpoint { .. }
            | Error::InvalidConfig { .. }
            | Error::RecordTooLarge { .. } => Code::InvalidArgument,
            Error::Batch { .. } => Code::DataLoss,
            Error::Closed { .. } => Code::Cancelled,
            Error::InvalidState { .. } => Code::FailedPrecondition,
            Error::EarlierBatchFailed { .. } => Code::Aborted,
        }
    }

    /// Whether the same call may succeed if made again later: transport
    /// failures, timeouts, and the server codes `NOT_OWNER`,
    /// `NOT_AVAILABLE`, `NOT_COORDINATOR`, `METADATA_UNAVAILABLE` and
    /// `STORAGE_UNAVAILABLE`.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Server { status, code, .. } => match code {
                Some(code) => RETRIABLE_CODES.contains(&code.as_str()),
                None => matches!(status, Code::Unavailable | Code::DeadlineExceeded),
            },
            Error::Transport { .. } | Error::Timeout { .. } => true,
            Error::EarlierBatchFailed { .. }
            | Error::InvalidEndpoint { .. }
            | Error::InvalidConfig { .. }
            | Error::RecordTooLarge { .. }
            | Error::Batch { .. }
            | Error::Closed { .. }
            | Error::InvalidState { .. } => false,
        }
    }

    /// A server's answer or a transport failure at `endpoint`, told apart.
    ///
    /// Without a `sluice-error` code, `UNAVAILABLE`, `DEADLINE_EXCEEDED`
    /// and any status tonic made from a local I/O or HTTP/2 error (it then
    /// has a source) mean the endpoint did not answer.
    pub(crate) fn from_status(status: &tonic::Status, endpoint: &str) -> Error {
        let code = sluice_proto::error_code(status).map(str::to_owned);
        let local = std::error::Error::source(status).is_some();
        let transport = code.is_none()
            && (matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded) || local);
        if transport {
            Error::Transport {
                endpoint: endpoint.to_owned(),
                status: status.code(),
                message: status.message().to_owned(),
            }
        } else {
            Error::Server {
                status: status.code(),
                code,
                message: status.message().to_owned(),
            }
        }
    }

    /// Whether the endpoint itself failed (another endpoint may answer).
    pub(crate) fn is_transport(&self) -> bool {
        matches!(self, Error::Transport { .. })
    }

    pub(crate) fn invalid_state(reason: impl Into<String>) -> Error {
        Error::InvalidState {
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retriable_codes_and_transport_failures() {
        let refused = |code: &'static str| {
            Error::from_status(&sluice_proto::status(Code::Unavailable, code, "x"), "a:1")
        };
        assert!(refused("NOT_OWNER").is_retriable());
        assert!(!refused("NOT_OWNER").is_transport());
        assert!(!refused("NO_BROKERS").is_retriable());
        let bare = Error::from_status(&tonic::Status::unavailable("connect refused"), "a:1");
        assert!(bare.is_transport() && bare.is_retriable());
        let unknown_topic = Error::from_status(
            &sluice_proto::status(Code::NotFound, "UNKNOWN_TOPIC", "no such topic"),
            "a:1",
        );
        assert_eq!(unknown_topic.code(), Some("UNKNOWN_TOPIC"));
        assert_eq!(unknown_topic.status(), Code::NotFound);
        assert!(!unknown_topic.is_retriable());
        assert_eq!(unknown_topic.to_string(), "no such topic (UNKNOWN_TOPIC)");
    }

    #[test]
    fn a_timeout_reports_the_last_failure_code() {
        let timeout = Error::Timeout {
            operation: "produce",
            after: Duration::from_secs(1),
            last: Some(Box::new(Error::Server {
                status: Code::Unavailable,
                code: Some("NOT_OWNER".into()),
                message: "moving".into(),
            })),
        };
        assert_eq!(timeout.code(), Some("NOT_OWNER"));
        assert!(timeout.is_retriable());
        assert!(timeout.to_string().contains("moving (NOT_OWNER)"));
    }
}

//! Sluice's gRPC API, generated from `proto/sluice/v1/*.proto`.
//!
//! `sluice.v1.Sluice` is the data plane (produce, fetch, list offsets) and
//! `sluice.v1.Admin` the topic administration. Errors travel as gRPC statuses;
//! the metadata key [`ERROR_CODE_KEY`] carries a stable, machine-readable code.

#![allow(clippy::all, missing_docs)]

/// Version 1 of the API.
pub mod v1 {
    tonic::include_proto!("sluice.v1");
}

/// The gRPC metadata key whose value names the Sluice error (`UNKNOWN_TOPIC`, ...).
pub const ERROR_CODE_KEY: &str = "sluice-error";

/// A status with a message for people and, under [`ERROR_CODE_KEY`], a
/// stable code for programs.
pub fn status(code: tonic::Code, name: &'static str, message: impl Into<String>) -> tonic::Status {
    let mut status = tonic::Status::new(code, message);
    if let Ok(value) = name.parse() {
        status.metadata_mut().insert(ERROR_CODE_KEY, value);
    }
    status
}

/// The `sluice-error` code of a status, if it has one.
pub fn error_code(status: &tonic::Status) -> Option<&str> {
    status.metadata().get(ERROR_CODE_KEY)?.to_str().ok()
}

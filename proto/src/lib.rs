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

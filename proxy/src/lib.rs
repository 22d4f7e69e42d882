//! The Sluice proxy: the endpoint clients talk to. It routes produce to the
//! broker that owns the partition and serves fetch itself, from storage, with
//! long-poll woken by the partition's checkpoints (DESIGN.md, "Read path").
//!
//! A request's path: `grpc/produce.rs` → [`Backend::produce`] → the broker;
//! `grpc/fetch.rs` → `fetch.rs` (long-poll) → `sluice_log::read`.

mod backend;
mod cluster;
mod error;
pub mod fetch;
pub mod grpc;
pub mod kafka;

pub use backend::{Backend, LocalBackend};
pub use cluster::ClusterBackend;
pub use grpc::{AdminService, GroupsForwarder, SluiceService};

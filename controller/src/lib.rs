//! The Sluice controller: creates and deletes topics and assigns each
//! partition to a broker with an epoch that increases on every move. All of
//! its state is in the metadata store (DESIGN.md, "Controller").
//!
//! Standalone runs it in-process with one broker; cluster mode (etcd, leader
//! election, rebalancing) builds on the same [`TopicAdmin`].

pub mod assign;
pub mod coordinator;
mod error;
pub mod leader;
mod ops;
pub mod planner;
mod topics;

pub use error::AdminError;
pub use ops::{BrokerStatus, ClusterOps, ClusterStatus};
pub use topics::{TopicAdmin, TopicInfo, validate_topic_name};

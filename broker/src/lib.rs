//! The Sluice broker: it holds the write lease of its assigned partitions and
//! drives each through the partition state machine (DESIGN.md): acquire write
//! lease → recover checkpoint → write buffer → async flush → build index →
//! save checkpoint → roll segment, with failover to a new segment when a
//! storage write fails. Brokers only write; readers use the published
//! [`PartitionView`](sluice_log::PartitionView)s or the checkpoints.
//!
//! A request's path: [`Broker::produce`] validates the batches →
//! [`partition::PartitionHandle`] (mailbox) → `partition/task.rs` (I/O) →
//! `partition/machine.rs` (the state machine).

mod broker;
pub mod config;
mod error;
pub mod partition;
mod server;

pub use broker::Broker;
pub use config::{BrokerConfig, OBJECT_STORE_MIN_FLUSH_INTERVAL, PartitionConfig};
pub use error::BrokerError;
pub use partition::machine::{AckMode, Appended};
pub use server::{BrokerService, node_volume_stats};

//! Sluice SDK (work in progress).

mod backoff;
mod connection;
mod error;
mod producer;
mod types;

pub use error::{Error, Result};
pub use producer::{
    Acks, Delivery, DeliveryFuture, PartitionFn, Partitioner, Producer, ProducerBuilder, Record,
};
pub use sluice_record::Compression;
pub use types::{Header, OffsetSpec, TopicPartition};

//! The Rust client of Sluice: a [`Producer`] that batches, compresses and
//! writes each message once, a [`Consumer`] with consumer groups, commits
//! and seeks, and an [`Admin`] client for topics, the cluster and groups.
//!
//! Every client takes a list of proxy endpoints ("host:port" or URLs). It
//! talks to one at a time and moves to the next when one stops answering;
//! calls retry passing conditions (a partition moving to another broker, a
//! coordinator election, storage briefly unavailable) with backoff, within
//! their deadline. Errors are one type, [`Error`], with the server's stable
//! code ([`Error::code`]) and [`Error::is_retriable`].
//!
//! # Quick start
//!
//! ```no_run
//! use std::time::Duration;
//! use sluice_sdk::{Admin, Consumer, OffsetReset, Producer, Record, TopicConfig};
//!
//! # async fn example() -> sluice_sdk::Result<()> {
//! let endpoints = ["127.0.0.1:7070"];
//!
//! let admin = Admin::connect(endpoints).await?;
//! admin.create_topic("orders", 4, TopicConfig::default()).await?;
//!
//! let producer = Producer::builder(endpoints).build().await?;
//! let delivery = producer
//!     .send(Record::new("orders", "one pizza").with_key("customer-42"))
//!     .await? // queued (waits only while the producer's buffer is full)
//!     .await?; // acknowledged
//! println!("written to partition {} at offset {}", delivery.partition, delivery.offset);
//! producer.close().await?;
//!
//! let mut consumer = Consumer::builder(endpoints)
//!     .group("kitchen")
//!     .auto_offset_reset(OffsetReset::Earliest)
//!     .build()
//!     .await?;
//! consumer.subscribe(["orders"])?;
//! for record in consumer.poll(Duration::from_secs(5)).await? {
//!     println!("{}/{}@{}: {:?}", record.topic, record.partition, record.offset, record.value);
//! }
//! consumer.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Delivery guarantees
//!
//! **Producer.** A record's [`DeliveryFuture`] resolves once the server
//! acknowledged it: with [`Acks::Durable`] (the default) it is then flushed
//! to storage and survives any broker's crash; with [`Acks::Buffer`] it is
//! in the broker's memory and lost if that broker dies before its next
//! flush. Failed sends are retried until the delivery timeout.
//!
//! With idempotence (the default) the producer never writes a message
//! twice, even when it retries after a lost answer: every batch carries the
//! producer's id and a per-partition sequence, retries resend the same
//! bytes, and the broker answers a batch it already has with the offsets of
//! the first write. Records of one partition are written in the order they
//! were sent. If a batch fails for good (or its delivery timeout passes),
//! the later batches of its partition fail too
//! ([`Error::EarlierBatchFailed`]) rather than be written after a gap.
//! A delivery timeout, and an `EarlierBatchFailed` of a batch that was in
//! flight, mean the outcome is unknown: the batch may have been written,
//! and sending it again may write it twice. Idempotence removes the
//! duplicates the producer's own retries would make; it does not make an
//! application's resend of a failed record safe.
//!
//! Without idempotence a retry after a lost answer may write a batch a
//! second time, and with more than one request in flight a retried batch
//! may land after a later one.
//!
//! **Consumer.** Delivery is at least once: a record is returned by
//! [`Consumer::poll`] until its offset is committed, and a consumer starts
//! from the committed offset. A consumer sees a message again when the
//! message's partition moves to another member (a rebalance), or the
//! consumer restarts or loses its membership (its session timed out),
//! before the offsets of the processed messages were committed: the
//! partition's next reader starts from the last commit. Auto-commit (every
//! 5 s by default, before each rebalance and on close) narrows that window;
//! committing by hand after processing ([`Consumer::commit`]) closes it for
//! a consumer that shuts down cleanly. Commits hold the position after the
//! records `poll` returned, so commit only once they are processed.
//! Messages are skipped only when the consumer's position is no longer in
//! the log (deleted by retention, `OFFSET_OUT_OF_RANGE`): it then starts
//! again at the earliest or latest offset, as `auto_offset_reset` says.

mod admin;
mod backoff;
mod connection;
mod consumer;
mod error;
mod producer;
mod types;

pub use admin::{
    Admin, AdminBuilder, BrokerStatus, ClusterStatus, GroupDescription, GroupSummary,
    MemberDescription, PartitionDescription, PartitionLag, ResetTo, SegmentDescription,
    TopicConfig, TopicDescription, TopicSummary,
};
pub use consumer::{Consumer, ConsumerBuilder, ConsumerRecord, OffsetReset, RebalanceListener};
pub use error::{Error, Result};
pub use producer::{
    Acks, Delivery, DeliveryFuture, PartitionFn, Partitioner, Producer, ProducerBuilder,
    ProducerStats, Record,
};
pub use types::{Header, OffsetSpec, TopicPartition};

/// The compression of the producer's batches.
pub use sluice_record::Compression;

/// For implementing [`RebalanceListener`] without depending on `async-trait`.
pub use async_trait::async_trait;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn is_send<T: Send>(_: &T) {}
    fn is_send_sync<T: Send + Sync>(_: &T) {}

    /// Clients and their futures can move to spawned tasks; never run.
    #[allow(dead_code)]
    async fn clients_and_their_futures_are_send(
        mut consumer: Consumer,
        producer: Producer,
        admin: Admin,
    ) -> Result<()> {
        is_send_sync(&producer);
        is_send_sync(&admin);
        is_send(&consumer);
        let send = producer.send(Record::new("t", "v"));
        is_send(&send);
        let delivery = send.await?;
        is_send(&delivery);
        let poll = consumer.poll(Duration::ZERO);
        is_send(&poll);
        drop(poll);
        let commit = consumer.commit();
        is_send(&commit);
        drop(commit);
        let close = consumer.close();
        is_send(&close);
        let describe = admin.describe_group("g");
        is_send(&describe);
        Ok(())
    }
}

//! Where a proxy sends writes and finds partitions' visible logs. In
//! standalone both are the in-process broker ([`LocalBackend`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sluice_broker::partition::ViewReceiver;
use sluice_broker::{AckMode, Appended, Broker, BrokerError, node_volume_stats};
use sluice_log::{PartitionKey, VolumeSet};
use sluice_proto::v1;

/// The brokers, as a proxy sees them.
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Appends record batches to a partition through its owner.
    async fn produce(
        &self,
        topic: &str,
        partition: u32,
        records: Bytes,
        ack: AckMode,
    ) -> Result<Appended, BrokerError>;
    /// Deletes a partition's records before `offset` through its owner
    /// (Kafka's DeleteRecords; -1: the high watermark) and returns the new
    /// log start offset. Durable when it returns, and this proxy's
    /// [`view`](Self::view) shows the new start by then.
    async fn delete_records(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
    ) -> Result<i64, BrokerError>;
    /// The partition count of a topic, `None` if the topic is unknown.
    fn partition_count(&self, topic: &str) -> Option<u32>;
    /// Every topic's name, sorted.
    fn topics(&self) -> Vec<String>;
    /// The visible log of a partition, updated on every checkpoint.
    fn view(&self, key: &PartitionKey) -> Option<ViewReceiver>;
    /// The storage volumes segments may live on.
    fn volumes(&self) -> &VolumeSet;
    /// Waits until the partition accepts writes and serves reads, up to `timeout`.
    async fn wait_ready(&self, key: &PartitionKey, timeout: Duration) -> bool;
    /// Changes whenever the topics or partitions this backend knows change.
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;
    /// The storage request counts of this process and of every broker.
    async fn volume_stats(&self) -> Vec<v1::NodeVolumeStats>;
}

/// The broker of this very process.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    broker: Arc<Broker>,
}

impl LocalBackend {
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }
}

#[async_trait]
impl Backend for LocalBackend {
    async fn produce(
        &self,
        topic: &str,
        partition: u32,
        records: Bytes,
        ack: AckMode,
    ) -> Result<Appended, BrokerError> {
        self.broker
            .produce(topic, partition, records, ack, None)
            .await
    }

    async fn delete_records(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
    ) -> Result<i64, BrokerError> {
        // The partition publishes the checkpoint before it answers.
        self.broker.delete_records(topic, partition, offset).await
    }

    fn partition_count(&self, topic: &str) -> Option<u32> {
        self.broker.partition_count(topic)
    }

    fn topics(&self) -> Vec<String> {
        self.broker.topics()
    }

    fn view(&self, key: &PartitionKey) -> Option<ViewReceiver> {
        self.broker.view(key)
    }

    fn volumes(&self) -> &VolumeSet {
        self.broker.volumes()
    }

    async fn wait_ready(&self, key: &PartitionKey, timeout: Duration) -> bool {
        self.broker.wait_ready(key, timeout).await
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.broker.partition_changes()
    }

    async fn volume_stats(&self) -> Vec<v1::NodeVolumeStats> {
        vec![node_volume_stats("standalone", self.broker.volumes())]
    }
}

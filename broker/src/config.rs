//! Broker and per-partition write-path settings.

use std::time::Duration;

use sluice_metadata::records::TopicConfig;

/// The default `min_flush_interval` when a volume is an object store: at
/// 8 partitions and 50 MB/s it makes chunks of about 1.5 MB, under 1,000
/// PUTs per GB with the checkpoints, at the price of up to this much added
/// latency for durable produces.
pub const OBJECT_STORE_MIN_FLUSH_INTERVAL: Duration = Duration::from_millis(250);

/// Write-path settings of the broker; topic configs override some of them.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// Longest time data acknowledged with `buffer` waits before it is flushed.
    pub flush_interval: Duration,
    /// Flush as soon as this many bytes are buffered.
    pub flush_bytes: u64,
    /// No flush starts sooner than this after the previous one started,
    /// unless `flush_bytes` are buffered — not even for durable produces,
    /// which wait for it. On object stores every flush is a billed PUT of a
    /// chunk plus one of a checkpoint, so this turns a steady stream into few
    /// large objects; on disks and HDFS it is zero. `None`: chosen by the
    /// volumes when the broker starts ([`OBJECT_STORE_MIN_FLUSH_INTERVAL`]
    /// if any is an object store, else zero).
    pub min_flush_interval: Option<Duration>,
    /// Default segment size before rolling.
    pub segment_bytes: u64,
    /// Default segment age before rolling.
    pub segment_age: Duration,
    /// Bytes between sparse index entries.
    pub index_interval_bytes: u64,
    /// Default largest accepted record batch.
    pub max_batch_bytes: u32,
    /// Default retention by age (`None`: forever).
    pub retention: Option<Duration>,
    /// Default retention by size per partition (`None`: unlimited).
    pub retention_bytes: Option<u64>,
    /// How often retention is checked.
    pub retention_check_interval: Duration,
    /// Producers wait (back-pressure) while a partition buffers more than this.
    pub max_buffer_bytes: u64,
    /// How long a volume whose write failed is avoided for new segments.
    pub unhealthy_volume_period: Duration,
    /// Decode every record of every produced batch (decompressing it) before
    /// accepting it, as Kafka does, so a batch no consumer could read is
    /// refused. Costs CPU per record; the CRC check is always done.
    pub validate_records: bool,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            flush_interval: Duration::from_millis(10),
            flush_bytes: 4 << 20,
            min_flush_interval: None,
            segment_bytes: 256 << 20,
            segment_age: Duration::from_secs(24 * 3600),
            index_interval_bytes: 64 << 10,
            max_batch_bytes: 8 << 20,
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
            retention_bytes: None,
            retention_check_interval: Duration::from_secs(30),
            max_buffer_bytes: 64 << 20,
            unhealthy_volume_period: Duration::from_secs(30),
            validate_records: true,
        }
    }
}

/// The effective settings of one partition.
#[derive(Clone, Debug, PartialEq)]
pub struct PartitionConfig {
    pub flush_interval: Duration,
    pub flush_bytes: u64,
    pub min_flush_interval: Duration,
    pub segment_bytes: u64,
    pub segment_age: Duration,
    pub index_interval_bytes: u64,
    pub max_batch_bytes: u32,
    pub retention: Option<Duration>,
    pub retention_bytes: Option<u64>,
    pub retention_check_interval: Duration,
    pub max_buffer_bytes: u64,
}

impl PartitionConfig {
    /// The broker defaults with a topic's overrides applied.
    pub fn resolve(broker: &BrokerConfig, topic: &TopicConfig) -> Self {
        let retention = match topic.retention_ms {
            Some(ms) if ms < 0 => None,
            Some(ms) => Some(Duration::from_millis(ms as u64)),
            None => broker.retention,
        };
        let retention_bytes = match topic.retention_bytes {
            Some(bytes) if bytes < 0 => None,
            Some(bytes) => Some(bytes as u64),
            None => broker.retention_bytes,
        };
        Self {
            flush_interval: broker.flush_interval,
            flush_bytes: broker.flush_bytes,
            min_flush_interval: broker.min_flush_interval.unwrap_or_default(),
            segment_bytes: topic.segment_bytes.unwrap_or(broker.segment_bytes).max(1),
            segment_age: topic
                .segment_ms
                .map_or(broker.segment_age, Duration::from_millis),
            index_interval_bytes: broker.index_interval_bytes,
            max_batch_bytes: topic.max_batch_bytes.unwrap_or(broker.max_batch_bytes),
            retention,
            retention_bytes,
            retention_check_interval: broker.retention_check_interval,
            max_buffer_bytes: broker.max_buffer_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_overrides_win_and_negative_means_unlimited() {
        let broker = BrokerConfig::default();
        let topic = TopicConfig {
            retention_ms: Some(-1),
            retention_bytes: Some(1000),
            segment_bytes: Some(4096),
            ..TopicConfig::default()
        };
        let config = PartitionConfig::resolve(&broker, &topic);
        assert_eq!(config.retention, None);
        assert_eq!(config.retention_bytes, Some(1000));
        assert_eq!(config.segment_bytes, 4096);
        assert_eq!(config.max_batch_bytes, broker.max_batch_bytes);
        let defaults = PartitionConfig::resolve(&broker, &TopicConfig::default());
        assert_eq!(defaults.retention, broker.retention);
    }
}

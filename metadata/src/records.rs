//! The JSON values stored under the metadata keys.

use serde::{Deserialize, Serialize};

use crate::MetadataError;

/// `/sluice/topics/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    /// Unique per incarnation: a deleted and recreated topic gets a new id.
    pub id: String,
    pub partitions: u32,
    #[serde(default)]
    pub config: TopicConfig,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: i64,
}

/// Per-topic settings; `None` takes the server default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    /// Whole segments whose newest record is older than this are deleted; -1 keeps forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_ms: Option<i64>,
    /// Oldest whole segments are deleted while a partition holds more; -1: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_bytes: Option<i64>,
    /// Roll to a new segment at this size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_bytes: Option<u64>,
    /// Roll to a new segment at this age (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_ms: Option<u64>,
    /// Largest record batch accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_bytes: Option<u32>,
}

/// `/sluice/assignments/<topic>/<p>`: which broker writes the partition, and
/// the epoch of that assignment (it increases on every move).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub broker: u64,
    pub epoch: u64,
}

/// `/sluice/producer-ids`: producer ids below `next` are reserved (handed
/// out, or held in an allocator's memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerIdCounter {
    pub next: i64,
}

/// Serializes a record to the stored JSON.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain data structures always serialize.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Parses a stored JSON record.
pub fn decode<T: for<'de> Deserialize<'de>>(
    key: &str,
    what: &'static str,
    bytes: &[u8],
) -> Result<T, MetadataError> {
    serde_json::from_slice(bytes).map_err(|e| MetadataError::BadValue {
        key: key.to_owned(),
        what,
        reason: e.to_string(),
    })
}

/// `/sluice/brokers/<id>`: a live broker (bound to its lease).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRecord {
    /// Address of its `sluice.v1.Broker` gRPC service.
    pub addr: String,
    /// Availability zone, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

//! Small types shared by the producer, the consumer and the admin client,
//! and the ListOffsets call they all make.

use std::fmt;
use std::sync::Arc;

/// A record header: a UTF-8 key and a nullable value.
pub type Header = (String, Option<bytes::Bytes>);

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic's name.
    pub topic: String,
    /// The partition, from 0.
    pub partition: u32,
}

impl TopicPartition {
    /// Partition `partition` of `topic`.
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

impl<T: Into<String>> From<(T, u32)> for TopicPartition {
    fn from((topic, partition): (T, u32)) -> Self {
        TopicPartition::new(topic, partition)
    }
}

/// Which offset of a partition to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The earliest offset still stored.
    Earliest,
    /// The offset after the last readable record (the high watermark).
    Latest,
    /// The first offset whose record's timestamp is at or after this time
    /// (milliseconds since the Unix epoch).
    Timestamp(i64),
}

/// A topic name shared by many records without copying it.
pub(crate) type TopicName = Arc<str>;

//! Small types shared by the producer, the consumer and the admin client,
//! and the ListOffsets call they all make.

use std::fmt;
use std::sync::Arc;

use sluice_proto::v1;

use crate::connection::{Connection, Deadline, data_client};
use crate::error::{Error, Result};

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

impl OffsetSpec {
    fn to_proto(self) -> v1::list_offsets_request::Spec {
        use v1::list_offsets_request::Spec;
        match self {
            OffsetSpec::Earliest => Spec::Earliest(v1::Empty {}),
            OffsetSpec::Latest => Spec::Latest(v1::Empty {}),
            OffsetSpec::Timestamp(ms) => Spec::Timestamp(ms),
        }
    }
}

/// The offset `spec` names in `topic`/`partition`; `None` when no record
/// has a timestamp at or after the one asked for.
pub(crate) async fn list_offset(
    connection: &Connection,
    deadline: Deadline,
    topic: &str,
    partition: u32,
    spec: OffsetSpec,
) -> Result<Option<i64>> {
    let request = v1::ListOffsetsRequest {
        topic: topic.to_owned(),
        partition,
        spec: Some(spec.to_proto()),
    };
    let answer = connection
        .call("list offsets", deadline, |channel| {
            let request = request.clone();
            async move { data_client(channel).list_offsets(request).await }
        })
        .await?;
    match (answer.offset, spec) {
        (Some(offset), _) => Ok(Some(offset)),
        (None, OffsetSpec::Timestamp(_)) => Ok(None),
        (None, OffsetSpec::Earliest | OffsetSpec::Latest) => Err(Error::Server {
            status: tonic::Code::Internal,
            code: None,
            message: format!("the server gave no {spec:?} offset for {topic}/{partition}"),
        }),
    }
}

/// Like [`list_offset`], but a timestamp after every record gives the
/// latest offset, where a consumer seeking to that time should start.
pub(crate) async fn resolve_offset(
    connection: &Connection,
    deadline: Deadline,
    topic: &str,
    partition: u32,
    spec: OffsetSpec,
) -> Result<i64> {
    match list_offset(connection, deadline, topic, partition, spec).await? {
        Some(offset) => Ok(offset),
        None => list_offset(connection, deadline, topic, partition, OffsetSpec::Latest)
            .await?
            .ok_or_else(|| Error::invalid_state("no latest offset")),
    }
}

/// A topic name shared by many records without copying it.
pub(crate) type TopicName = Arc<str>;

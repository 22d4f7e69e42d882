//! The partition count of each topic the producer writes to, from Admin
//! DescribeTopic, cached; refreshed when stale or when the server says the
//! topic or partition is unknown.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use sluice_proto::v1;
use tokio::time::Instant;

use crate::connection::{Connection, Deadline, admin_client};
use crate::error::{Error, Result};

/// How long a partition count is trusted (partitions can be added).
pub(crate) const MAX_AGE: Duration = Duration::from_secs(300);

pub(crate) struct TopicMetadata {
    connection: Connection,
    request_timeout: Duration,
    /// Partition count and when it was read. Never held across an `.await`.
    cache: Mutex<HashMap<String, (NonZeroU32, Instant)>>,
}

impl TopicMetadata {
    pub(crate) fn new(connection: Connection, request_timeout: Duration) -> Self {
        TopicMetadata {
            connection,
            request_timeout,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The partition count of `topic`; an unknown topic is an UNKNOWN_TOPIC error.
    pub(crate) async fn partitions(&self, topic: &str) -> Result<NonZeroU32> {
        if let Some(count) = self.cached(topic) {
            return Ok(count);
        }
        let request = v1::DescribeTopicRequest {
            name: topic.to_owned(),
        };
        let description = self
            .connection
            .call(
                "describe topic",
                Deadline::request(self.request_timeout),
                |channel| {
                    let request = request.clone();
                    async move { admin_client(channel).describe_topic(request).await }
                },
            )
            .await?;
        let count = u32::try_from(description.partitions.len())
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or_else(|| Error::Server {
                status: tonic::Code::Internal,
                code: None,
                message: format!("the server describes topic {topic:?} with no partition"),
            })?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(topic.to_owned(), (count, Instant::now()));
        }
        Ok(count)
    }

    fn cached(&self, topic: &str) -> Option<NonZeroU32> {
        let cache = self.cache.lock().ok()?;
        let (count, read) = cache.get(topic)?;
        (read.elapsed() < MAX_AGE).then_some(*count)
    }

    /// Forget `topic`'s count: the next send reads it again.
    pub(crate) fn invalidate(&self, topic: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(topic);
        }
    }
}

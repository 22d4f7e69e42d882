//! What a producer sends (`Record`) and what it gets back (`Delivery`,
//! through a `DeliveryFuture` per record that shares its batch's outcome).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::{FutureExt, Shared};
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::types::{Header, TopicName};

/// Bytes a record takes in a batch beyond its key, value and headers:
/// length, attributes, deltas and length varints, at their largest.
const RECORD_OVERHEAD: usize = 32;
/// Extra bytes per header beyond its key and value.
const HEADER_OVERHEAD: usize = 10;

/// A message to send.
///
/// ```
/// use sluice_sdk::Record;
///
/// let record = Record::new("orders", "payload").with_key("customer-42");
/// assert_eq!(record.partition, None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// The topic.
    pub topic: String,
    /// An explicit partition; `None` lets the partitioner choose (by key,
    /// else sticky or round-robin).
    pub partition: Option<u32>,
    /// The key; records with the same key go to the same partition.
    pub key: Option<Bytes>,
    /// The value; `None` is a null value (a tombstone).
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch; `None` takes the time of `send`.
    pub timestamp: Option<i64>,
}

impl Record {
    /// A record with a value and no key.
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Record {
        Record {
            topic: topic.into(),
            value: Some(value.into()),
            ..Record::default()
        }
    }

    /// With this key.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Record {
        self.key = Some(key.into());
        self
    }

    /// Sent to this partition.
    pub fn with_partition(mut self, partition: u32) -> Record {
        self.partition = Some(partition);
        self
    }

    /// With one more header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Record {
        self.headers.push((key.into(), Some(value.into())));
        self
    }

    /// With this timestamp (milliseconds since the Unix epoch).
    pub fn with_timestamp(mut self, timestamp: i64) -> Record {
        self.timestamp = Some(timestamp);
        self
    }

    /// An upper bound of the bytes the record takes in an uncompressed batch.
    pub(crate) fn estimated_size(&self) -> usize {
        let len = |bytes: &Option<Bytes>| bytes.as_ref().map_or(0, Bytes::len);
        RECORD_OVERHEAD
            + len(&self.key)
            + len(&self.value)
            + self
                .headers
                .iter()
                .map(|(key, value)| HEADER_OVERHEAD + key.len() + len(value))
                .sum::<usize>()
    }
}

/// Where a record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The topic.
    pub topic: TopicName,
    /// The partition.
    pub partition: u32,
    /// The record's offset in the partition.
    pub offset: i64,
    /// The record's timestamp (milliseconds since the Unix epoch).
    pub timestamp: i64,
}

/// The outcome of one batch: its base offset, or why it failed.
pub(crate) type BatchOutcome = Result<i64>;

/// Every record future of a batch shares this one.
pub(crate) type BatchFuture = Shared<oneshot::Receiver<BatchOutcome>>;

/// A batch's completion: the sender side, and the future its records share.
pub(crate) fn batch_completion() -> (oneshot::Sender<BatchOutcome>, BatchFuture) {
    let (sender, receiver) = oneshot::channel();
    (sender, receiver.shared())
}

/// Resolves to the [`Delivery`] of one record once its batch is
/// acknowledged, or to the error that failed it.
///
/// Dropping it does not cancel the send.
#[must_use = "a send's outcome is only known by awaiting its DeliveryFuture"]
pub struct DeliveryFuture {
    state: DeliveryState,
}

enum DeliveryState {
    Pending {
        batch: BatchFuture,
        index: u32,
        topic: TopicName,
        partition: u32,
        timestamp: i64,
    },
    Failed(Option<Error>),
}

impl std::fmt::Debug for DeliveryFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.state {
            DeliveryState::Pending {
                topic,
                partition,
                index,
                ..
            } => write!(
                f,
                "DeliveryFuture({topic}/{partition}, record {index} of its batch)"
            ),
            DeliveryState::Failed(error) => write!(f, "DeliveryFuture(failed: {error:?})"),
        }
    }
}

impl DeliveryFuture {
    pub(crate) fn pending(
        batch: BatchFuture,
        index: u32,
        topic: TopicName,
        partition: u32,
        timestamp: i64,
    ) -> Self {
        DeliveryFuture {
            state: DeliveryState::Pending {
                batch,
                index,
                topic,
                partition,
                timestamp,
            },
        }
    }

    pub(crate) fn failed(error: Error) -> Self {
        DeliveryFuture {
            state: DeliveryState::Failed(Some(error)),
        }
    }
}

impl Future for DeliveryFuture {
    type Output = Result<Delivery>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            DeliveryState::Failed(error) => Poll::Ready(Err(error
                .take()
                .unwrap_or(Error::Closed { what: "producer" }))),
            DeliveryState::Pending {
                batch,
                index,
                topic,
                partition,
                timestamp,
            } => match Pin::new(batch).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(Ok(base_offset))) => Poll::Ready(Ok(Delivery {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: base_offset + i64::from(*index),
                    timestamp: *timestamp,
                })),
                Poll::Ready(Ok(Err(error))) => Poll::Ready(Err(error)),
                // The sender task ended without answering: the producer was dropped.
                Poll::Ready(Err(_)) => Poll::Ready(Err(Error::Closed { what: "producer" })),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_record_of_a_batch_gets_its_own_offset() -> Result<()> {
        let (done, batch) = batch_completion();
        let topic: TopicName = "t".into();
        let first = DeliveryFuture::pending(batch.clone(), 0, topic.clone(), 3, 10);
        let third = DeliveryFuture::pending(batch, 2, topic, 3, 12);
        let _ = done.send(Ok(500));
        assert_eq!(first.await?.offset, 500);
        let third = third.await?;
        assert_eq!(
            (third.partition, third.offset, third.timestamp),
            (3, 502, 12)
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_dropped_batch_fails_its_records() {
        let (done, batch) = batch_completion();
        let future = DeliveryFuture::pending(batch, 0, "t".into(), 0, 0);
        drop(done);
        assert!(matches!(future.await, Err(Error::Closed { .. })));
    }

    #[test]
    fn estimated_size_counts_key_value_and_headers() {
        let record = Record::new("t", vec![0u8; 100])
            .with_key("abc")
            .with_header("h", "vv");
        assert_eq!(record.estimated_size(), 32 + 100 + 3 + 10 + 1 + 2);
    }
}

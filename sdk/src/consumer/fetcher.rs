//! One partition's fetcher task: long-poll fetches from an offset, decodes
//! the batches, skips records below the offset asked for, and hands the
//! records to the consumer through its channel (at most one answer ahead).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluice_proto::v1;
use sluice_record::BatchIter;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::connection::{Connection, Deadline, data_client};
use crate::consumer::builder::ConsumerConfig;
use crate::error::{Error, Result};
use crate::types::{Header, OffsetSpec, TopicName, resolve_offset};

/// A record as consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The topic.
    pub topic: TopicName,
    /// The partition.
    pub partition: u32,
    /// The record's offset.
    pub offset: i64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The key, or `None`.
    pub key: Option<Bytes>,
    /// The value, or `None` (a tombstone).
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<Header>,
}

/// What a fetcher tells the consumer.
pub(crate) enum FetchEvent {
    /// Records from `start` on (possibly none), and the offset to fetch next.
    Records {
        partition: Arc<PartitionKey>,
        fetcher: u64,
        records: Vec<ConsumerRecord>,
        next_offset: i64,
    },
    /// A failure that is not passing: the fetcher retries after a backoff.
    Failed {
        partition: Arc<PartitionKey>,
        fetcher: u64,
        error: Error,
    },
}

/// The partition a fetcher reads.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct PartitionKey {
    pub topic: TopicName,
    pub partition: u32,
}

/// Decode fetched `data` (whole batches; a cut last batch is ignored) into
/// the records at or after `from`, and the offset to fetch next.
///
/// The first batch may start before `from` (the server answers with whole
/// batches): its earlier records are skipped. Control batches are skipped.
pub(crate) fn decode_fetched(
    topic: &TopicName,
    partition: u32,
    data: Bytes,
    from: i64,
) -> Result<(Vec<ConsumerRecord>, i64)> {
    let corrupt = |source| Error::Batch {
        context: format!("fetched data of {topic}/{partition} at offset {from}"),
        source,
    };
    let mut records = Vec::new();
    let mut next = from;
    for batch in BatchIter::new(data) {
        let batch = batch.map_err(corrupt)?;
        let batch_next = batch.header.next_offset();
        if batch_next <= from {
            continue;
        }
        if !batch.header.is_control() {
            for record in sluice_record::decode_records_shared(&batch.bytes).map_err(corrupt)? {
                if record.offset >= from {
                    records.push(ConsumerRecord {
                        topic: topic.clone(),
                        partition,
                        offset: record.offset,
                        timestamp: record.timestamp,
                        key: record.key,
                        value: record.value,
                        headers: record.headers,
                    });
                }
            }
        }
        next = next.max(batch_next);
    }
    Ok((records, next))
}

/// The longest a fetcher waits between failed fetches.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(crate) struct Fetcher {
    pub connection: Connection,
    pub config: Arc<ConsumerConfig>,
    pub partition: Arc<PartitionKey>,
    pub id: u64,
    pub offset: i64,
    pub events: mpsc::Sender<FetchEvent>,
}

impl Fetcher {
    pub(crate) async fn run(mut self) {
        let config = Arc::clone(&self.config);
        let max_wait = config.fetch_max_wait;
        let deadline = Deadline {
            attempt: max_wait + config.request_timeout,
            total: max_wait + config.request_timeout,
        };
        let mut backoff = Backoff::new(crate::backoff::INITIAL, MAX_BACKOFF);
        loop {
            let request = v1::FetchRequest {
                topic: self.partition.topic.to_string(),
                partition: self.partition.partition,
                offset: self.offset,
                max_bytes: config.fetch_max_bytes,
                min_bytes: config.fetch_min_bytes,
                max_wait_ms: u32::try_from(max_wait.as_millis()).unwrap_or(u32::MAX),
            };
            let started = Instant::now();
            let answer = self
                .connection
                .call("fetch", deadline, |channel| {
                    let request = request.clone();
                    async move { data_client(channel).fetch(request).await }
                })
                .await;
            let outcome = match answer {
                Ok(answer) => decode_fetched(
                    &self.partition.topic,
                    self.partition.partition,
                    answer.records,
                    self.offset,
                ),
                Err(error) => Err(error),
            };
            let delivered = match outcome {
                Ok((records, next_offset)) => {
                    backoff.reset();
                    let progress = !records.is_empty() || next_offset != self.offset;
                    if progress {
                        self.offset = next_offset;
                        self.send_records(records, next_offset).await
                    } else {
                        // An empty answer before the long poll's end: do
                        // not spin on a server that answers at once.
                        let floor = max_wait.min(Duration::from_millis(50));
                        tokio::time::sleep_until(started + floor).await;
                        true
                    }
                }
                Err(error) if error.code() == Some("OFFSET_OUT_OF_RANGE") => {
                    self.reset_offset(error, &mut backoff).await
                }
                Err(error) => {
                    let delivered = if error.is_retriable() {
                        tracing::debug!(partition = ?self.partition, %error, "fetch failed; retrying");
                        true
                    } else {
                        self.send_failure(error).await
                    };
                    tokio::time::sleep(backoff.next_delay()).await;
                    delivered
                }
            };
            if !delivered {
                // The consumer stopped listening: this fetcher is stale.
                return;
            }
        }
    }

    /// The offset fell out of the log (retention) or beyond its end: start
    /// again where `auto_offset_reset` says.
    async fn reset_offset(&mut self, error: Error, backoff: &mut Backoff) -> bool {
        let spec = OffsetSpec::from(self.config.auto_offset_reset);
        let reset = resolve_offset(
            &self.connection,
            Deadline::request(self.config.request_timeout),
            &self.partition.topic,
            self.partition.partition,
            spec,
        )
        .await;
        match reset {
            Ok(offset) => {
                tracing::warn!(partition = ?self.partition, from = self.offset, to = offset, %error,
                    "offset out of range; resetting");
                self.offset = offset;
                self.send_records(Vec::new(), offset).await
            }
            Err(reset_error) => {
                tokio::time::sleep(backoff.next_delay()).await;
                if reset_error.is_retriable() {
                    true
                } else {
                    self.send_failure(reset_error).await
                }
            }
        }
    }

    async fn send_records(&self, records: Vec<ConsumerRecord>, next_offset: i64) -> bool {
        let event = FetchEvent::Records {
            partition: Arc::clone(&self.partition),
            fetcher: self.id,
            records,
            next_offset,
        };
        self.events.send(event).await.is_ok()
    }

    async fn send_failure(&self, error: Error) -> bool {
        tracing::warn!(partition = ?self.partition, %error, "fetch failed");
        let event = FetchEvent::Failed {
            partition: Arc::clone(&self.partition),
            fetcher: self.id,
            error,
        };
        self.events.send(event).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_record::{BatchBuilder, Compression, set_base_offset};

    /// A batch of `count` records whose first offset is `base`.
    fn batch(base: i64, count: usize, codec: Compression) -> Result<Vec<u8>> {
        let to_error = |source| Error::Batch {
            context: "test".into(),
            source,
        };
        let mut builder = BatchBuilder::new(codec);
        for i in 0..count {
            let value = format!("v{}", base + i as i64);
            builder
                .push(1000 + i as i64, None, Some(value.as_bytes()), &[])
                .map_err(to_error)?;
        }
        let mut bytes = builder.build().map_err(to_error)?.to_vec();
        set_base_offset(&mut bytes, base).map_err(to_error)?;
        Ok(bytes)
    }

    #[test]
    fn records_below_the_offset_asked_for_are_skipped() -> Result<()> {
        let mut data = batch(10, 5, Compression::None)?;
        data.extend(batch(15, 3, Compression::Zstd)?);
        let topic: TopicName = "t".into();
        let (records, next) = decode_fetched(&topic, 2, Bytes::from(data), 13)?;
        let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [13, 14, 15, 16, 17]);
        assert_eq!(next, 18);
        assert_eq!(records[0].value.as_deref(), Some(&b"v13"[..]));
        assert_eq!((records[0].partition, &*records[0].topic), (2, "t"));
        Ok(())
    }

    #[test]
    fn a_cut_last_batch_is_left_for_the_next_fetch() -> Result<()> {
        let mut data = batch(0, 2, Compression::None)?;
        let second = batch(2, 2, Compression::None)?;
        data.extend_from_slice(&second[..second.len() - 3]);
        let (records, next) = decode_fetched(&"t".into(), 0, Bytes::from(data), 0)?;
        assert_eq!(records.len(), 2);
        assert_eq!(next, 2);
        Ok(())
    }

    #[test]
    fn an_empty_answer_stays_at_the_offset_and_garbage_is_an_error() -> Result<()> {
        assert_eq!(
            decode_fetched(&"t".into(), 0, Bytes::new(), 7)?,
            (Vec::new(), 7)
        );
        let mut data = batch(0, 2, Compression::None)?;
        let last = data.len() - 1;
        data[last] ^= 0xff;
        assert!(matches!(
            decode_fetched(&"t".into(), 0, Bytes::from(data), 0),
            Err(Error::Batch { .. })
        ));
        Ok(())
    }
}

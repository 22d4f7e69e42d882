//! The producer's settings and their builder.

use std::time::Duration;

use sluice_proto::v1;
use sluice_record::Compression;

use crate::connection::MAX_MESSAGE_BYTES;
use crate::error::{Error, Result};
use crate::producer::Producer;
use crate::producer::partitioner::Partitioner;

/// Room left in a produce request for everything but the batch.
const REQUEST_OVERHEAD: usize = 64 << 10;

/// Most requests in flight per partition for an idempotent producer: the
/// recent batches a broker remembers per producer (as Kafka's).
const MAX_IN_FLIGHT_IDEMPOTENT: usize = 5;

/// When the server acknowledges a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Once the batch is flushed to storage and covered by a checkpoint
    /// (Kafka's `acks=all`): survives the broker's crash.
    #[default]
    Durable,
    /// Once the batch is in the broker's write buffer (Kafka's `acks=1`):
    /// faster, lost if the broker dies before its next flush.
    Buffer,
}

impl Acks {
    pub(crate) fn to_proto(self) -> v1::AckMode {
        match self {
            Acks::Durable => v1::AckMode::Durable,
            Acks::Buffer => v1::AckMode::Buffer,
        }
    }
}

/// The producer's settings (see [`ProducerBuilder`] for each).
#[derive(Debug, Clone)]
pub(crate) struct ProducerConfig {
    pub linger: Duration,
    pub batch_bytes: usize,
    pub compression: Compression,
    pub acks: Acks,
    pub idempotence: bool,
    pub delivery_timeout: Duration,
    pub request_timeout: Duration,
    pub buffer_bytes: usize,
    pub max_in_flight: usize,
    pub partitioner: Partitioner,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            linger: Duration::from_millis(5),
            batch_bytes: 1 << 20,
            compression: Compression::None,
            acks: Acks::Durable,
            idempotence: true,
            delivery_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
            buffer_bytes: 64 << 20,
            max_in_flight: 5,
            partitioner: Partitioner::Sticky,
        }
    }
}

impl ProducerConfig {
    fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Err(Error::InvalidConfig { reason });
        if self.batch_bytes == 0 || self.batch_bytes > MAX_MESSAGE_BYTES - REQUEST_OVERHEAD {
            return invalid(format!(
                "batch_bytes must be between 1 and {} (got {})",
                MAX_MESSAGE_BYTES - REQUEST_OVERHEAD,
                self.batch_bytes
            ));
        }
        if self.buffer_bytes == 0 || self.buffer_bytes > u32::MAX as usize {
            return invalid(format!(
                "buffer_bytes must be between 1 and {} (got {})",
                u32::MAX,
                self.buffer_bytes
            ));
        }
        if self.max_in_flight == 0 {
            return invalid("max_in_flight must be at least 1".into());
        }
        if self.idempotence && self.max_in_flight > MAX_IN_FLIGHT_IDEMPOTENT {
            return invalid(format!(
                "max_in_flight must be at most {MAX_IN_FLIGHT_IDEMPOTENT} with idempotence: \
                 the broker remembers that many recent batches per producer to answer retries"
            ));
        }
        if self.delivery_timeout.is_zero() || self.request_timeout.is_zero() {
            return invalid("delivery_timeout and request_timeout must be above zero".into());
        }
        Ok(())
    }

    /// The largest record `send` accepts.
    pub(crate) fn max_record_bytes(&self) -> usize {
        self.buffer_bytes.min(MAX_MESSAGE_BYTES - REQUEST_OVERHEAD)
    }
}

/// Builds a [`Producer`]: `Producer::builder(["127.0.0.1:7070"])...build().await?`.
#[derive(Debug, Clone)]
pub struct ProducerBuilder {
    endpoints: Vec<String>,
    config: ProducerConfig,
}

impl ProducerBuilder {
    pub(crate) fn new<I, S>(endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ProducerBuilder {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            config: ProducerConfig::default(),
        }
    }

    /// How long a batch waits for more records before it is sent (default
    /// 5 ms). Longer lingers make fewer, larger batches.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.config.linger = linger;
        self
    }

    /// Size at which a batch is sent without waiting for the linger
    /// (default 1 MiB, uncompressed). A larger record gets a batch of its own.
    pub fn batch_bytes(mut self, bytes: usize) -> Self {
        self.config.batch_bytes = bytes;
        self
    }

    /// Compression of the batches (default none).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.config.compression = compression;
        self
    }

    /// When the server acknowledges a batch (default [`Acks::Durable`]).
    pub fn acks(mut self, acks: Acks) -> Self {
        self.config.acks = acks;
        self
    }

    /// Idempotent writes (default on): retries never write a record twice,
    /// and per partition records are written in the order they were sent.
    /// Off, a retry after a lost answer may write a batch again, and a retry
    /// may overtake a later batch.
    pub fn idempotence(mut self, enabled: bool) -> Self {
        self.config.idempotence = enabled;
        self
    }

    /// The longest a record may take from `send` to its acknowledgement,
    /// retries included (default 120 s); then its future fails with
    /// [`Error::Timeout`]. Retries back off from 100 ms to 1 s.
    pub fn delivery_timeout(mut self, timeout: Duration) -> Self {
        self.config.delivery_timeout = timeout;
        self
    }

    /// The longest wait for one answer of the server (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// Bytes of records waiting to be acknowledged before `send` waits for
    /// room (default 64 MiB): the producer's back-pressure.
    pub fn buffer_bytes(mut self, bytes: usize) -> Self {
        self.config.buffer_bytes = bytes;
        self
    }

    /// Produce requests of one partition sent without waiting for the
    /// earlier ones' answers (default 5, at most 5 with idempotence).
    pub fn max_in_flight(mut self, requests: usize) -> Self {
        self.config.max_in_flight = requests;
        self
    }

    /// How records without a partition or key are spread (default sticky).
    pub fn partitioner(mut self, partitioner: Partitioner) -> Self {
        self.config.partitioner = partitioner;
        self
    }

    /// Check the settings and start the producer; with idempotence, this
    /// asks the server for a producer id (InitProducer).
    pub async fn build(self) -> Result<Producer> {
        self.config.validate()?;
        Producer::start(self.endpoints, self.config).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_nonsense_is_refused() {
        assert!(ProducerConfig::default().validate().is_ok());
        for config in [
            ProducerConfig {
                batch_bytes: 0,
                ..ProducerConfig::default()
            },
            ProducerConfig {
                batch_bytes: 200 << 20,
                ..ProducerConfig::default()
            },
            ProducerConfig {
                max_in_flight: 0,
                ..ProducerConfig::default()
            },
            ProducerConfig {
                max_in_flight: 6,
                ..ProducerConfig::default()
            },
            ProducerConfig {
                delivery_timeout: Duration::ZERO,
                ..ProducerConfig::default()
            },
        ] {
            assert!(matches!(
                config.validate(),
                Err(Error::InvalidConfig { .. })
            ));
        }
    }
}

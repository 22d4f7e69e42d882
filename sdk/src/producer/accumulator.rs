//! One partition's accumulator: records are encoded into an open batch as
//! they are sent; a batch closes when it reaches `batch_bytes`, and the
//! partition's sender takes closed batches (and the open one once linger
//! elapsed, or on flush). Sealing a batch writes the idempotent producer's
//! id, epoch and sequence into it and builds its bytes, once.
//!
//! No I/O: the producer holds it under a mutex, never across an `.await`.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use sluice_record::{BatchBuilder, Compression};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::producer::record::{BatchFuture, BatchOutcome, batch_completion};
use crate::types::Header;

/// A batch still taking records, or closed and waiting for the sender.
pub(crate) struct OpenBatch {
    pub id: u64,
    builder: BatchBuilder,
    /// When its first record was appended.
    pub created: Instant,
    pub records: u32,
    /// Producer buffer bytes its records hold.
    pub reserved: usize,
    completion: oneshot::Sender<BatchOutcome>,
    future: BatchFuture,
}

/// A record's place in a batch.
pub(crate) struct Appended {
    pub batch: BatchFuture,
    pub batch_id: u64,
    pub index: u32,
    /// The sender should look again: a batch opened (linger starts) or closed.
    pub wake_sender: bool,
}

/// The batches of one partition that the sender has not taken yet.
pub(crate) struct Accumulator {
    compression: Compression,
    batch_bytes: usize,
    next_batch_id: u64,
    open: Option<OpenBatch>,
    closed: VecDeque<OpenBatch>,
}

impl Accumulator {
    pub(crate) fn new(compression: Compression, batch_bytes: usize) -> Self {
        Accumulator {
            compression,
            batch_bytes,
            next_batch_id: 0,
            open: None,
            closed: VecDeque::new(),
        }
    }

    /// Append a record; it holds `reserved` bytes of the producer's buffer
    /// until its batch completes.
    ///
    /// A record that would take the open batch past `batch_bytes` closes it
    /// and starts the next one; a batch that reaches `batch_bytes` closes.
    /// A single record larger than `batch_bytes` gets a batch of its own.
    pub(crate) fn append(
        &mut self,
        now: Instant,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
        reserved: usize,
    ) -> Result<Appended> {
        let mut wake_sender = false;
        if let Some(open) = &self.open
            && open.records > 0
            && open.builder.estimated_size() + reserved > self.batch_bytes
        {
            self.close_open();
            wake_sender = true;
        }
        let open = match &mut self.open {
            Some(open) => open,
            empty => {
                let (completion, future) = batch_completion();
                let id = self.next_batch_id;
                self.next_batch_id += 1;
                wake_sender = true;
                empty.insert(OpenBatch {
                    id,
                    builder: BatchBuilder::new(self.compression),
                    created: now,
                    records: 0,
                    reserved: 0,
                    completion,
                    future,
                })
            }
        };
        let pushed = if headers.is_empty() {
            open.builder.push(timestamp, key, value, &[])
        } else {
            let headers: Vec<(&str, Option<&[u8]>)> = headers
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_deref()))
                .collect();
            open.builder.push(timestamp, key, value, &headers)
        };
        pushed.map_err(|source| Error::Batch {
            context: "cannot add the record to a batch".into(),
            source,
        })?;
        if open.records == 0 {
            open.created = now;
        }
        let appended = Appended {
            batch: open.future.clone(),
            batch_id: open.id,
            index: open.records,
            wake_sender,
        };
        open.records += 1;
        open.reserved += reserved;
        if open.builder.estimated_size() >= self.batch_bytes {
            self.close_open();
            return Ok(Appended {
                wake_sender: true,
                ..appended
            });
        }
        Ok(appended)
    }

    fn close_open(&mut self) {
        if let Some(open) = self.open.take() {
            if open.records > 0 {
                self.closed.push_back(open);
            }
        }
    }

    /// The id of the batch open for records, if any.
    pub(crate) fn open_batch(&self) -> Option<u64> {
        self.open.as_ref().filter(|b| b.records > 0).map(|b| b.id)
    }

    /// The id of the newest batch made so far (open or not).
    pub(crate) fn last_batch_id(&self) -> Option<u64> {
        self.next_batch_id.checked_sub(1)
    }

    /// The batches to send now, oldest first: every closed one, and the
    /// open one if `force` or once `linger` has passed since its first record.
    pub(crate) fn take_ready(
        &mut self,
        now: Instant,
        linger: Duration,
        force: bool,
    ) -> Vec<OpenBatch> {
        if let Some(open) = &self.open
            && (force || now >= open.created + linger)
        {
            self.close_open();
        }
        self.closed.drain(..).collect()
    }

    /// When the open batch's linger ends.
    pub(crate) fn linger_deadline(&self, linger: Duration) -> Option<Instant> {
        match (&self.open, self.closed.is_empty()) {
            // A closed batch is ready now.
            (_, false) => Some(Instant::now()),
            (Some(open), true) if open.records > 0 => Some(open.created + linger),
            _ => None,
        }
    }

    /// Whether no record waits here.
    pub(crate) fn is_empty(&self) -> bool {
        self.closed.is_empty() && self.open.as_ref().is_none_or(|b| b.records == 0)
    }
}

/// The producer identity an idempotent batch carries, and the partition's
/// next sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerIdentity {
    pub producer_id: i64,
    pub epoch: i16,
    pub next_sequence: i32,
}

impl ProducerIdentity {
    pub(crate) fn new(producer_id: i64, epoch: i16) -> Self {
        ProducerIdentity {
            producer_id,
            epoch,
            next_sequence: 0,
        }
    }
}

/// The sequence after `sequence` and `records` records, wrapping as
/// Kafka's does: after `i32::MAX` comes 0.
pub(crate) fn next_sequence(sequence: i32, records: u32) -> i32 {
    let next = (i64::from(sequence) + i64::from(records)) % (i64::from(i32::MAX) + 1);
    // The modulo keeps it within 0..=i32::MAX.
    i32::try_from(next).unwrap_or(0)
}

/// A batch built and numbered: its bytes never change, retries resend them.
pub(crate) struct SealedBatch {
    pub id: u64,
    pub bytes: Bytes,
    pub records: u32,
    /// The first record's sequence (idempotent producers).
    pub base_sequence: Option<i32>,
    pub reserved: usize,
    completion: Option<oneshot::Sender<BatchOutcome>>,
}

impl std::fmt::Debug for SealedBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedBatch")
            .field("id", &self.id)
            .field("bytes", &self.bytes.len())
            .field("records", &self.records)
            .field("base_sequence", &self.base_sequence)
            .finish()
    }
}

impl OpenBatch {
    /// Build the batch's bytes. With an `identity`, the batch takes the
    /// partition's next sequence, which then moves past its records. A
    /// batch that fails to build takes no sequence: its records fail with
    /// the error, and the buffer bytes they held are returned.
    pub(crate) fn seal(
        self,
        identity: Option<&mut ProducerIdentity>,
        context: impl FnOnce() -> String,
    ) -> std::result::Result<SealedBatch, (Error, usize)> {
        let OpenBatch {
            id,
            builder,
            created: _,
            records,
            reserved,
            completion,
            future: _,
        } = self;
        let base_sequence = identity.as_ref().map(|identity| identity.next_sequence);
        let builder = match &identity {
            Some(identity) => {
                builder.producer(identity.producer_id, identity.epoch, identity.next_sequence)
            }
            None => builder,
        };
        match builder.build() {
            Ok(bytes) => {
                if let Some(identity) = identity {
                    identity.next_sequence = next_sequence(identity.next_sequence, records);
                }
                Ok(SealedBatch {
                    id,
                    bytes,
                    records,
                    base_sequence,
                    reserved,
                    completion: Some(completion),
                })
            }
            Err(source) => {
                let error = Error::Batch {
                    context: context(),
                    source,
                };
                let _ = completion.send(Err(error.clone()));
                Err((error, reserved))
            }
        }
    }

    /// Fail the batch's records without sending them.
    pub(crate) fn fail(self, error: Error) -> usize {
        let _ = self.completion.send(Err(error));
        self.reserved
    }
}

impl SealedBatch {
    /// Resolve every record future of the batch. Returns the buffer bytes to release.
    pub(crate) fn complete(&mut self, outcome: BatchOutcome) -> usize {
        if let Some(completion) = self.completion.take() {
            let _ = completion.send(outcome);
        }
        std::mem::take(&mut self.reserved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_record::{BatchHeader, decode_records};

    fn value(n: usize) -> Vec<u8> {
        vec![7u8; n]
    }

    #[test]
    fn a_batch_closes_when_it_reaches_batch_bytes() -> Result<()> {
        let now = Instant::now();
        let mut acc = Accumulator::new(Compression::None, 1000);
        let first = acc.append(now, 1, None, Some(&value(300)), &[], 332)?;
        assert!(first.wake_sender, "a new batch starts the linger timer");
        let second = acc.append(now, 1, None, Some(&value(300)), &[], 332)?;
        assert!(!second.wake_sender);
        assert_eq!((second.batch_id, second.index), (0, 1));
        // 61 header + 2 records of ~305 bytes: a third would go past 1000 bytes.
        let third = acc.append(now, 1, None, Some(&value(300)), &[], 332)?;
        assert!(third.wake_sender, "the full batch closed");
        assert_eq!((third.batch_id, third.index), (1, 0));
        let ready = acc.take_ready(now, Duration::from_secs(1), false);
        assert_eq!(ready.iter().map(|b| b.records).collect::<Vec<_>>(), [2]);
        assert_eq!(acc.open_batch(), Some(1));
        // A record that fills the batch past the limit closes it at once.
        let big = acc.append(now, 1, None, Some(&value(950)), &[], 982)?;
        assert_eq!(
            big.batch_id, 2,
            "does not fit in batch 1: a batch of its own"
        );
        assert_eq!(acc.open_batch(), None, "batch 2 reached batch_bytes");
        let ready = acc.take_ready(now, Duration::from_secs(1), false);
        assert_eq!(
            ready.iter().map(|b| (b.id, b.records)).collect::<Vec<_>>(),
            [(1, 1), (2, 1)]
        );
        assert!(acc.is_empty());
        Ok(())
    }

    #[test]
    fn the_open_batch_goes_after_linger_or_on_force() -> Result<()> {
        let start = Instant::now();
        let linger = Duration::from_millis(5);
        let mut acc = Accumulator::new(Compression::None, 1 << 20);
        assert_eq!(acc.linger_deadline(linger), None);
        acc.append(start, 1, Some(b"k"), Some(b"v"), &[], 40)?;
        assert_eq!(acc.linger_deadline(linger), Some(start + linger));
        assert!(acc.take_ready(start, linger, false).is_empty());
        assert_eq!(acc.take_ready(start + linger, linger, false).len(), 1);
        acc.append(start, 1, None, Some(b"v"), &[], 40)?;
        assert_eq!(acc.take_ready(start, linger, true).len(), 1);
        assert!(acc.take_ready(start, linger, true).is_empty());
        assert_eq!(acc.last_batch_id(), Some(1));
        Ok(())
    }

    #[test]
    fn sealing_numbers_batches_consecutively_per_partition() -> Result<()> {
        let now = Instant::now();
        let mut acc = Accumulator::new(Compression::Lz4, 1 << 20);
        let mut identity = ProducerIdentity::new(77, 3);
        let mut sequences = Vec::new();
        for records in [3, 1, 5] {
            for _ in 0..records {
                acc.append(now, 1, None, Some(b"x"), &[("h".into(), None)], 50)?;
            }
            for batch in acc.take_ready(now, Duration::ZERO, true) {
                let sealed = batch
                    .seal(Some(&mut identity), String::new)
                    .map_err(|(error, _)| error)?;
                let header = BatchHeader::parse(&sealed.bytes).map_err(batch_error)?;
                assert_eq!((header.producer_id, header.producer_epoch), (77, 3));
                assert_eq!(Some(header.base_sequence), sealed.base_sequence);
                assert_eq!(
                    decode_records(&sealed.bytes).map_err(batch_error)?.len(),
                    records
                );
                sequences.push(header.base_sequence);
            }
        }
        assert_eq!(sequences, [0, 3, 4]);
        assert_eq!(identity.next_sequence, 9);
        Ok(())
    }

    #[test]
    fn sequences_wrap_to_zero_after_i32_max() {
        assert_eq!(next_sequence(0, 5), 5);
        assert_eq!(next_sequence(i32::MAX - 1, 1), i32::MAX);
        assert_eq!(next_sequence(i32::MAX - 1, 2), 0);
        assert_eq!(next_sequence(i32::MAX, 3), 2);
    }

    #[test]
    fn without_idempotence_batches_carry_no_producer() -> Result<()> {
        let now = Instant::now();
        let mut acc = Accumulator::new(Compression::None, 1 << 20);
        acc.append(now, 1, None, Some(b"x"), &[], 40)?;
        let batch = acc.take_ready(now, Duration::ZERO, true).remove(0);
        let sealed = batch.seal(None, String::new).map_err(|(error, _)| error)?;
        let header = BatchHeader::parse(&sealed.bytes).map_err(batch_error)?;
        assert_eq!((header.producer_id, header.base_sequence), (-1, -1));
        assert_eq!(sealed.base_sequence, None);
        Ok(())
    }

    fn batch_error(source: sluice_record::BatchError) -> Error {
        Error::Batch {
            context: "test".into(),
            source,
        }
    }
}

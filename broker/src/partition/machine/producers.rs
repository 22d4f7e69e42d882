//! Idempotent producers (Kafka semantics): per producer id, its epoch and
//! its last appended batches with their sequence numbers and offsets. A
//! retry of an appended batch is answered with its offsets, a gap or an old
//! epoch is refused, and a request is checked whole before anything of it is
//! appended. Checkpoints carry the state of the batches they cover, so a new
//! owner dedupes the old owner's batches, and a batch lost in a crash can be
//! written again.

use std::collections::{HashMap, VecDeque};

use sluice_log::checkpoint::{PRODUCER_BATCHES_KEPT, ProducerBatch, ProducerRecord};
use sluice_record::BatchHeader;

use super::Appended;

/// A producer that has not appended for this long is forgotten (Kafka's
/// `transactional.id.expiration.ms` default); its next batch must start a
/// new sequence.
const PRODUCER_EXPIRY_MS: i64 = 7 * 24 * 3600 * 1000;
/// At most this many producers per partition; past it the least recently
/// appending one is forgotten.
const PRODUCERS_KEPT: usize = 10_000;
/// At most this many batches per producer in memory, even while they wait
/// for a checkpoint (normally a producer holds only a few more than
/// [`PRODUCER_BATCHES_KEPT`]).
const BATCHES_IN_MEMORY: usize = 1000;
/// Sequence numbers run from 0 to `i32::MAX`, then start again at 0.
const SEQUENCE_MODULUS: i64 = 1 << 31;

/// Why a producer's batch was refused. Nothing of the request was appended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProducerRejection {
    /// A newer producer with the same id (epoch `current_epoch`) exists.
    Fenced {
        producer_id: i64,
        epoch: i16,
        current_epoch: i16,
    },
    /// The partition knows nothing of this producer (never seen, expired or
    /// evicted) and the batch does not start its sequence at 0.
    UnknownProducer { producer_id: i64, sequence: i32 },
    /// The batch does not follow the producer's last one (a gap), or a
    /// request mixes retries of appended batches with new ones.
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
    /// The batch was appended before, but is older than the batches
    /// remembered, so its offsets are not known any more.
    DuplicateSequence {
        producer_id: i64,
        first_seq: i32,
        last_seq: i32,
    },
}

impl ProducerRejection {
    /// The batch is ahead of the producer's sequence: the batches before
    /// it may still arrive (calls in flight together are not ordered).
    pub fn is_ahead(&self) -> bool {
        match self {
            ProducerRejection::UnknownProducer { .. } => true,
            ProducerRejection::OutOfOrderSequence { expected, got, .. } => {
                is_before(*expected, *got)
            }
            ProducerRejection::Fenced { .. } | ProducerRejection::DuplicateSequence { .. } => false,
        }
    }
}

/// What to do with a request whose producer batches were checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Append the request (then [`Producers::appended`] every batch).
    Append,
    /// Every batch is a retry of an appended one: answer with these
    /// offsets, append nothing.
    Duplicate(Appended),
}

/// One appended batch of a producer, under the epoch it was sent with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    epoch: i16,
    batch: ProducerBatch,
}

#[derive(Debug)]
struct Producer {
    /// Appended batches, oldest first; never empty. The last one's epoch is
    /// the producer's current epoch. Batches of older epochs stay only until
    /// a checkpoint covers a newer one (a checkpoint built before that
    /// still describes the older epoch).
    entries: VecDeque<Entry>,
    last_append_ms: i64,
}

impl Producer {
    fn latest(&self) -> Option<&Entry> {
        self.entries.back()
    }

    /// A remembered batch of `epoch` with exactly these sequence numbers.
    fn find(&self, epoch: i16, first_seq: i32, last_seq: i32) -> Option<&ProducerBatch> {
        self.entries
            .iter()
            .rev()
            .find(|e| {
                e.epoch == epoch && e.batch.first_seq == first_seq && e.batch.last_seq == last_seq
            })
            .map(|e| &e.batch)
    }

    /// Forgets entries no checkpoint will need: every checkpoint from now on
    /// covers at least `high_watermark`, and holds the newest
    /// [`PRODUCER_BATCHES_KEPT`] entries of the newest epoch it covers.
    fn prune(&mut self, high_watermark: i64) {
        loop {
            let Some(front) = self.entries.front() else {
                return;
            };
            let covered: Vec<&Entry> = self
                .entries
                .iter()
                .skip(1)
                .take_while(|e| e.batch.last_offset < high_watermark)
                .collect();
            let superseded = covered.len() >= PRODUCER_BATCHES_KEPT
                || covered.iter().any(|e| e.epoch != front.epoch);
            if !superseded && self.entries.len() <= BATCHES_IN_MEMORY {
                return;
            }
            self.entries.pop_front();
        }
    }

    /// This producer as a checkpoint covering offsets below
    /// `high_watermark` records it, if it appended anything there.
    fn record(&self, producer_id: i64, high_watermark: i64) -> Option<ProducerRecord> {
        let covered: Vec<&Entry> = self
            .entries
            .iter()
            .take_while(|e| e.batch.last_offset < high_watermark)
            .collect();
        let epoch = covered.last()?.epoch;
        let mut batches: Vec<ProducerBatch> = covered
            .iter()
            .rev()
            .take_while(|e| e.epoch == epoch)
            .take(PRODUCER_BATCHES_KEPT)
            .map(|e| e.batch)
            .collect();
        batches.reverse();
        Some(ProducerRecord {
            producer_id,
            epoch,
            batches,
            last_append_ms: self.last_append_ms,
        })
    }
}

/// The idempotent producers of one partition.
#[derive(Debug, Default)]
pub(super) struct Producers {
    by_id: HashMap<i64, Producer>,
}

/// A request's producer batch, as the check sees it.
struct Sent {
    producer_id: i64,
    epoch: i16,
    first_seq: i32,
    last_seq: i32,
}

impl Sent {
    fn of(header: &BatchHeader) -> Self {
        Self {
            producer_id: header.producer_id,
            epoch: header.producer_epoch,
            first_seq: header.base_sequence,
            last_seq: add_sequence(header.base_sequence, header.records_count.max(1) - 1),
        }
    }
}

impl Producers {
    /// The state a checkpoint holds, keeping only batches below `end` (the
    /// log recovered may end before the checkpoint's high watermark).
    pub(super) fn load(records: &[ProducerRecord], end: i64) -> Self {
        let by_id = records
            .iter()
            .filter_map(|record| {
                let entries: VecDeque<Entry> = record
                    .batches
                    .iter()
                    .filter(|b| b.last_offset < end)
                    .map(|batch| Entry {
                        epoch: record.epoch,
                        batch: *batch,
                    })
                    .collect();
                (!entries.is_empty()).then_some((
                    record.producer_id,
                    Producer {
                        entries,
                        last_append_ms: record.last_append_ms,
                    },
                ))
            })
            .collect();
        let mut producers = Self { by_id };
        producers.evict_over_cap();
        producers
    }

    /// Checks a request's producer batches against the state and against
    /// its own earlier batches. Batches without a producer id pass.
    pub(super) fn check(
        &self,
        batches: &[(usize, BatchHeader)],
    ) -> Result<Verdict, ProducerRejection> {
        // Producers' (epoch, last sequence) after the request's earlier
        // new batches.
        let mut pending: HashMap<i64, (i16, i32)> = HashMap::new();
        let mut duplicates: Vec<ProducerBatch> = Vec::new();
        // The first duplicate's producer id, the sequence a new batch of it
        // must start at, and the duplicate's first sequence.
        let mut first_duplicate: Option<(i64, i32, i32)> = None;
        let mut new = 0usize;
        for (_, header) in batches {
            if !header.has_producer_id() {
                new += 1;
                continue;
            }
            let batch = Sent::of(header);
            let stored = self.by_id.get(&batch.producer_id);
            // Only a retry under the current epoch is a duplicate; an older
            // epoch is fenced below.
            if let Some(producer) =
                stored.filter(|p| p.latest().is_some_and(|e| e.epoch == batch.epoch))
                && let Some(duplicate) = producer.find(batch.epoch, batch.first_seq, batch.last_seq)
            {
                let expected = producer
                    .latest()
                    .map_or(0, |e| add_sequence(e.batch.last_seq, 1));
                first_duplicate.get_or_insert((batch.producer_id, expected, batch.first_seq));
                duplicates.push(*duplicate);
                continue;
            }
            let current = pending.get(&batch.producer_id).copied().or_else(|| {
                stored
                    .and_then(Producer::latest)
                    .map(|e| (e.epoch, e.batch.last_seq))
            });
            check_sequence(&batch, current)?;
            pending.insert(batch.producer_id, (batch.epoch, batch.last_seq));
            new += 1;
        }
        match (duplicates.first(), duplicates.last()) {
            (Some(first), Some(last)) if new == 0 => Ok(Verdict::Duplicate(Appended {
                base_offset: first.base_offset,
                last_offset: last.last_offset,
                duplicate: true,
            })),
            (Some(_), _) => {
                // Retries mixed with new batches: clients never send this (a
                // retry holds the same batches as the first attempt).
                let (producer_id, expected, got) = first_duplicate.unwrap_or((-1, 0, -1));
                Err(ProducerRejection::OutOfOrderSequence {
                    producer_id,
                    expected,
                    got,
                })
            }
            (None, _) => Ok(Verdict::Append),
        }
    }

    /// Remembers an appended batch (checked by [`check`](Self::check)) and
    /// the offsets it got. `high_watermark` is the saved checkpoint's.
    pub(super) fn appended(
        &mut self,
        header: &BatchHeader,
        base_offset: i64,
        now_ms: i64,
        high_watermark: i64,
    ) {
        if !header.has_producer_id() {
            return;
        }
        let sent = Sent::of(header);
        let entry = Entry {
            epoch: sent.epoch,
            batch: ProducerBatch {
                first_seq: sent.first_seq,
                last_seq: sent.last_seq,
                base_offset,
                last_offset: base_offset + i64::from(header.records_count.max(1)) - 1,
            },
        };
        let producer = self
            .by_id
            .entry(sent.producer_id)
            .or_insert_with(|| Producer {
                entries: VecDeque::new(),
                last_append_ms: now_ms,
            });
        producer.entries.push_back(entry);
        producer.last_append_ms = producer.last_append_ms.max(now_ms);
        producer.prune(high_watermark);
        self.evict_over_cap();
    }

    /// A checkpoint covering `high_watermark` was saved: forget what no
    /// later checkpoint needs.
    pub(super) fn checkpointed(&mut self, high_watermark: i64) {
        for producer in self.by_id.values_mut() {
            producer.prune(high_watermark);
        }
    }

    /// Forgets producers idle for longer than [`PRODUCER_EXPIRY_MS`].
    pub(super) fn expire(&mut self, now_ms: i64) {
        let horizon = now_ms.saturating_sub(PRODUCER_EXPIRY_MS);
        self.by_id.retain(|_, p| p.last_append_ms >= horizon);
    }

    /// The state a checkpoint covering offsets below `high_watermark`
    /// holds, by producer id.
    pub(super) fn records(&self, high_watermark: i64) -> Vec<ProducerRecord> {
        let mut records: Vec<ProducerRecord> = self
            .by_id
            .iter()
            .filter_map(|(id, producer)| producer.record(*id, high_watermark))
            .collect();
        records.sort_by_key(|r| r.producer_id);
        records
    }

    /// Forgets the least recently appending producers past [`PRODUCERS_KEPT`].
    fn evict_over_cap(&mut self) {
        while self.by_id.len() > PRODUCERS_KEPT {
            let oldest = self
                .by_id
                .iter()
                .min_by_key(|(id, p)| (p.last_append_ms, **id))
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => self.by_id.remove(&id),
                None => return,
            };
        }
    }
}

/// Checks a new batch against its producer's current `(epoch, last
/// sequence)`, if known.
fn check_sequence(batch: &Sent, current: Option<(i16, i32)>) -> Result<(), ProducerRejection> {
    let producer_id = batch.producer_id;
    let got = batch.first_seq;
    match current {
        None if got == 0 => Ok(()),
        None => Err(ProducerRejection::UnknownProducer {
            producer_id,
            sequence: got,
        }),
        Some((epoch, _)) if batch.epoch < epoch => Err(ProducerRejection::Fenced {
            producer_id,
            epoch: batch.epoch,
            current_epoch: epoch,
        }),
        Some((epoch, _)) if batch.epoch > epoch => {
            if got == 0 {
                Ok(())
            } else {
                Err(ProducerRejection::OutOfOrderSequence {
                    producer_id,
                    expected: 0,
                    got,
                })
            }
        }
        Some((_, last)) => {
            let expected = add_sequence(last, 1);
            if got == expected {
                Ok(())
            } else if got >= 0 && is_before(got, expected) {
                Err(ProducerRejection::DuplicateSequence {
                    producer_id,
                    first_seq: got,
                    last_seq: batch.last_seq,
                })
            } else {
                Err(ProducerRejection::OutOfOrderSequence {
                    producer_id,
                    expected,
                    got,
                })
            }
        }
    }
}

/// `sequence + delta` in the sequence space: after `i32::MAX` comes 0.
fn add_sequence(sequence: i32, delta: i32) -> i32 {
    let sum = (i64::from(sequence) + i64::from(delta)).rem_euclid(SEQUENCE_MODULUS);
    // In 0..2^31 after the modulus, so it fits.
    i32::try_from(sum).unwrap_or(0)
}

/// Whether `sequence` comes before `expected` (within half the sequence
/// space behind it), so it was sent before.
fn is_before(sequence: i32, expected: i32) -> bool {
    let behind = (i64::from(expected) - i64::from(sequence)).rem_euclid(SEQUENCE_MODULUS);
    behind != 0 && behind <= SEQUENCE_MODULUS / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_to_zero_after_the_maximum() {
        assert_eq!(add_sequence(i32::MAX, 1), 0);
        assert_eq!(add_sequence(i32::MAX - 1, 4), 2);
        assert_eq!(add_sequence(5, 4), 9);
        assert!(is_before(i32::MAX, 2));
        assert!(is_before(3, 9));
        assert!(!is_before(9, 9));
        assert!(!is_before(10, 9));
        assert!(!is_before(2, i32::MAX));
    }
}

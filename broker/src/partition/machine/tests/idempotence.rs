//! Idempotent producers: batches carry (producer id, epoch, sequence); a
//! retry of an appended batch gets its offsets and is never written twice
//! (also by a new owner after a move), a request ahead of its producer's
//! sequence is parked until the batches before it arrive (and refused, with
//! nothing of it written, if they do not come within [`PARK_TIMEOUT`]), an
//! old epoch is refused at once, and a batch lost in a crash is accepted
//! again.

use sluice_log::checkpoint::{ProducerBatch, ProducerRecord};

use super::*;

const PRODUCER: i64 = 1000;
const OTHER_PRODUCER: i64 = 1001;

/// A batch of `records` records from producer `id` under `epoch`, its first
/// record at sequence `sequence`.
fn sent(id: i64, epoch: i16, sequence: i32, records: usize) -> Bytes {
    let mut builder = BatchBuilder::new(Compression::None).producer(id, epoch, sequence);
    for i in 0..records {
        let value = format!("{id}-{epoch}-{sequence}-{i}");
        builder
            .push(i as i64, None, Some(value.as_bytes()), &[])
            .expect("push");
    }
    builder.build().expect("build")
}

/// A batch of [`PRODUCER`] under epoch 0.
fn seq(sequence: i32, records: usize) -> Bytes {
    sent(PRODUCER, 0, sequence, records)
}

fn duplicate(base_offset: i64, last_offset: i64) -> Result<Appended, WriteRejected> {
    Ok(Appended {
        base_offset,
        last_offset,
        duplicate: true,
    })
}

fn refused(rejection: ProducerRejection) -> Result<Appended, WriteRejected> {
    Err(WriteRejected::Producer(rejection))
}

fn out_of_order(expected: i32, got: i32) -> Result<Appended, WriteRejected> {
    refused(ProducerRejection::OutOfOrderSequence {
        producer_id: PRODUCER,
        expected,
        got,
    })
}

fn remembered(first_seq: i32, last_seq: i32, base_offset: i64, last_offset: i64) -> ProducerBatch {
    ProducerBatch {
        first_seq,
        last_seq,
        base_offset,
        last_offset,
    }
}

/// Bytes written to storage so far, over every segment.
fn stored_bytes(d: &Driver) -> usize {
    d.store.values().map(Vec::len).sum()
}

/// Lets [`PARK_TIMEOUT`] pass and ticks: requests still parked are refused.
fn wait_out_park(d: &mut Driver) -> Vec<&'static str> {
    d.advance_to(d.now_ms + PARK_TIMEOUT.as_millis() as u64);
    d.tick()
}

/// Flushes and checkpoints everything buffered.
fn write_out(d: &mut Driver) {
    d.settle();
    while d.machine.buffered_bytes() > 0 {
        d.tick_at_deadline();
        d.settle();
    }
}

/// A new owner of `previous`'s partition: it finds `previous`'s storage and
/// takes over from `found`, as if `previous` had crashed or moved.
fn take_over(previous: &Driver, found: Checkpoint) -> Driver {
    let mut d = Driver::new(config());
    for (name, bytes) in &previous.store {
        let durable = previous.durable.get(name).copied().unwrap_or(0) as usize;
        let batch = Bytes::copy_from_slice(&bytes[..durable]);
        d.store_previous_segment(name, &[batch]);
    }
    for (name, index) in &previous.indexes {
        d.store_previous_index(name, index.clone());
    }
    let verified_end = found
        .segments
        .last()
        .filter(|s| !s.sealed)
        .map(|s| (s.end_offset, s.len()));
    assert_eq!(d.recover(Some(found), verified_end), ["SaveCheckpoint"]);
    d.save_ok();
    d
}

#[test]
fn in_order_batches_are_appended_and_checkpointed() {
    let mut d = Driver::writing(config());
    assert_eq!(d.produce(&[seq(0, 3)], AckMode::Buffer, 1), ["Reply"]);
    assert_eq!(d.produce(&[seq(3, 2)], AckMode::Buffer, 2), ["Reply"]);
    // Another producer and a plain batch in between do not interfere.
    d.produce(&[sent(OTHER_PRODUCER, 4, 0, 1)], AckMode::Buffer, 3);
    d.produce(&[batch(1, 0)], AckMode::Buffer, 4);
    d.produce(&[seq(5, 1)], AckMode::Durable, 5);
    write_out(&mut d);
    assert_eq!(d.reply(1), Some(&ok(0, 2)));
    assert_eq!(d.reply(2), Some(&ok(3, 4)));
    assert_eq!(d.reply(3), Some(&ok(5, 5)));
    assert_eq!(d.reply(4), Some(&ok(6, 6)));
    assert_eq!(d.reply(5), Some(&ok(7, 7)));
    assert_eq!(
        d.last_published().producers,
        [
            ProducerRecord {
                producer_id: PRODUCER,
                epoch: 0,
                batches: vec![
                    remembered(0, 2, 0, 2),
                    remembered(3, 4, 3, 4),
                    remembered(5, 5, 7, 7)
                ],
                last_append_ms: START_MS,
            },
            ProducerRecord {
                producer_id: OTHER_PRODUCER,
                epoch: 4,
                batches: vec![remembered(0, 0, 5, 5)],
                last_append_ms: START_MS,
            },
        ]
    );
}

#[test]
fn a_retry_gets_the_first_offsets_once_as_durable_and_writes_nothing() {
    let mut d = Driver::writing(config());
    assert_eq!(d.produce(&[seq(0, 3)], AckMode::Durable, 1), ["Flush"]);
    // Retries while the first attempt is being flushed: a buffer ack is
    // answered at once, a durable one with the checkpoint.
    assert_eq!(d.produce(&[seq(0, 3)], AckMode::Buffer, 2), ["Reply"]);
    assert_eq!(d.reply(2), Some(&duplicate(0, 2)));
    assert!(d.produce(&[seq(0, 3)], AckMode::Durable, 3).is_empty());
    assert_eq!(
        d.machine.log_end_offset(),
        3,
        "nothing appended for retries"
    );
    assert_eq!(d.machine.buffered_bytes(), seq(0, 3).len() as u64);
    assert_eq!(d.flush_ok(), ["SaveCheckpoint"]);
    assert_eq!(d.reply(3), None, "not durable before the checkpoint");
    d.save_ok();
    assert_eq!(d.reply(1), Some(&ok(0, 2)));
    assert_eq!(d.reply(3), Some(&duplicate(0, 2)));
    // After the checkpoint, at once for either ack.
    assert_eq!(d.produce(&[seq(0, 3)], AckMode::Durable, 4), ["Reply"]);
    assert_eq!(d.reply(4), Some(&duplicate(0, 2)));
    assert_eq!(d.produce(&[seq(0, 3)], AckMode::Buffer, 5), ["Reply"]);
    assert_eq!(d.reply(5), Some(&duplicate(0, 2)));
    assert!(d.tick().is_empty(), "nothing to flush");
    assert_eq!(stored_bytes(&d), seq(0, 3).len());
    // The next sequence is appended.
    d.produce(&[seq(3, 1)], AckMode::Buffer, 6);
    assert_eq!(d.reply(6), Some(&ok(3, 3)));
    write_out(&mut d);
}

#[test]
fn a_durable_retry_waits_for_the_checkpoint_covering_the_first_attempt_only() {
    let mut d = Driver::writing(config());
    d.produce(&[seq(0, 1)], AckMode::Durable, 1);
    d.flush_ok();
    // Appended (and flushing) while batch 0's checkpoint is saved.
    assert_eq!(d.produce(&[seq(1, 1)], AckMode::Durable, 2), ["Flush"]);
    assert!(d.produce(&[seq(0, 1)], AckMode::Durable, 3).is_empty());
    d.save_ok();
    assert_eq!(d.answered(), [1, 3], "the retry of batch 0 needs no more");
    assert_eq!(d.reply(3), Some(&duplicate(0, 0)));
    write_out(&mut d);
    assert_eq!(d.reply(2), Some(&ok(1, 1)));
}

#[test]
fn a_gap_is_refused_and_nothing_is_written() {
    let mut d = Driver::writing(config());
    d.produce(&[seq(0, 3)], AckMode::Buffer, 1);
    // Parked: the missing batch may still be on its way.
    assert!(d.produce(&[seq(5, 1)], AckMode::Buffer, 2).is_empty());
    assert_eq!(d.reply(2), None);
    assert_eq!(d.machine.log_end_offset(), 3);
    // It does not come: refused, and only the first batch is flushed.
    assert_eq!(wait_out_park(&mut d), ["Reply", "Flush"]);
    assert_eq!(d.reply(2), Some(&out_of_order(3, 5)));
    assert_eq!(d.machine.log_end_offset(), 3);
    assert_eq!(d.machine.buffered_bytes(), seq(0, 3).len() as u64);
    assert_eq!(total_len(&d.pending_flush().data), seq(0, 3).len() as u64);
    d.settle();
    assert_eq!(stored_bytes(&d), seq(0, 3).len());
    // The missing batch, then the refused one, are appended.
    d.produce(&[seq(3, 2)], AckMode::Buffer, 3);
    d.produce(&[seq(5, 1)], AckMode::Buffer, 4);
    assert_eq!(d.reply(3), Some(&ok(3, 4)));
    assert_eq!(d.reply(4), Some(&ok(5, 5)));
    write_out(&mut d);
}

#[test]
fn a_batch_older_than_the_remembered_ones_is_a_duplicate_sequence() {
    let mut d = Driver::writing(config());
    for i in 0..7 {
        d.produce(&[seq(i, 1)], AckMode::Buffer, i as u32);
    }
    write_out(&mut d);
    let checkpointed = &d.last_published().producers[0].batches;
    assert_eq!(
        checkpointed.iter().map(|b| b.first_seq).collect::<Vec<_>>(),
        [2, 3, 4, 5, 6],
        "the last five"
    );
    d.produce(&[seq(2, 1)], AckMode::Buffer, 10);
    assert_eq!(d.reply(10), Some(&duplicate(2, 2)));
    d.produce(&[seq(1, 1)], AckMode::Buffer, 11);
    assert_eq!(
        d.reply(11),
        Some(&refused(ProducerRejection::DuplicateSequence {
            producer_id: PRODUCER,
            first_seq: 1,
            last_seq: 1,
        }))
    );
    // Overlapping the last batch without matching it: also older.
    d.produce(&[seq(5, 2)], AckMode::Buffer, 12);
    assert!(matches!(
        d.reply(12),
        Some(Err(WriteRejected::Producer(
            ProducerRejection::DuplicateSequence { .. }
        )))
    ));
    assert_eq!(d.machine.log_end_offset(), 7);
}

#[test]
fn an_old_epoch_is_fenced() {
    let mut d = Driver::writing(config());
    d.produce(&[sent(PRODUCER, 0, 0, 2)], AckMode::Buffer, 1);
    // A new incarnation of the producer (same id, next epoch).
    d.produce(&[sent(PRODUCER, 1, 0, 1)], AckMode::Buffer, 2);
    assert_eq!(d.reply(2), Some(&ok(2, 2)));
    let fenced_producer = refused(ProducerRejection::Fenced {
        producer_id: PRODUCER,
        epoch: 0,
        current_epoch: 1,
    });
    d.produce(&[sent(PRODUCER, 0, 2, 1)], AckMode::Buffer, 3);
    assert_eq!(d.reply(3), Some(&fenced_producer));
    // Even a retry of a batch it appended.
    d.produce(&[sent(PRODUCER, 0, 0, 2)], AckMode::Buffer, 4);
    assert_eq!(d.reply(4), Some(&fenced_producer));
    assert_eq!(d.machine.log_end_offset(), 3);
    write_out(&mut d);
    let producers = &d.last_published().producers;
    assert_eq!(producers.len(), 1);
    assert_eq!(producers[0].epoch, 1);
    assert_eq!(producers[0].batches, [remembered(0, 0, 2, 2)]);
}

#[test]
fn a_new_epoch_or_an_unknown_producer_starts_at_sequence_zero() {
    let mut d = Driver::writing(config());
    d.produce(&[sent(PRODUCER, 0, 0, 3)], AckMode::Buffer, 1);
    // Both are ahead (sequences 0.. may still arrive): parked, then refused.
    assert!(
        d.produce(&[sent(PRODUCER, 1, 3, 1)], AckMode::Buffer, 2)
            .is_empty()
    );
    assert!(
        d.produce(&[sent(OTHER_PRODUCER, 0, 5, 1)], AckMode::Buffer, 3)
            .is_empty()
    );
    assert_eq!(d.machine.log_end_offset(), 3);
    wait_out_park(&mut d);
    assert_eq!(d.reply(2), Some(&out_of_order(0, 3)));
    assert_eq!(
        d.reply(3),
        Some(&refused(ProducerRejection::UnknownProducer {
            producer_id: OTHER_PRODUCER,
            sequence: 5,
        }))
    );
    assert_eq!(d.machine.log_end_offset(), 3);
    d.produce(&[sent(PRODUCER, 1, 0, 1)], AckMode::Buffer, 4);
    d.produce(&[sent(OTHER_PRODUCER, 0, 0, 1)], AckMode::Buffer, 5);
    assert_eq!(d.reply(4), Some(&ok(3, 3)));
    assert_eq!(d.reply(5), Some(&ok(4, 4)));
    write_out(&mut d);
}

#[test]
fn a_new_owner_dedupes_batches_the_old_owner_checkpointed() {
    let mut previous = Driver::writing(config());
    previous.produce(&[seq(0, 4)], AckMode::Durable, 1);
    write_out(&mut previous);
    assert_eq!(previous.reply(1), Some(&ok(0, 3)));
    let found = previous.last_published().clone();

    let mut d = take_over(&previous, found);
    let written = stored_bytes(&d);
    // The answer was lost with the old owner; the producer retries here.
    assert_eq!(d.produce(&[seq(0, 4)], AckMode::Durable, 2), ["Reply"]);
    assert_eq!(d.reply(2), Some(&duplicate(0, 3)));
    assert_eq!(d.machine.log_end_offset(), 4);
    // Its state came along: a gap waits for batch 4 (not for batch 0, as
    // for an unknown producer) and is refused, the next batch appended.
    assert!(d.produce(&[seq(5, 1)], AckMode::Buffer, 3).is_empty());
    wait_out_park(&mut d);
    assert_eq!(d.reply(3), Some(&out_of_order(4, 5)));
    d.produce(&[seq(4, 1)], AckMode::Buffer, 4);
    assert_eq!(d.reply(4), Some(&ok(4, 4)));
    write_out(&mut d);
    assert_eq!(stored_bytes(&d), written + seq(4, 1).len());
}

#[test]
fn a_batch_lost_in_a_crash_is_accepted_again() {
    let mut previous = Driver::writing(config());
    previous.produce(&[seq(0, 2)], AckMode::Durable, 1);
    write_out(&mut previous);
    let found = previous.last_published().clone();
    // Answered from the buffer, then lost: the broker crashed before its flush.
    previous.produce(&[seq(2, 3)], AckMode::Buffer, 2);
    assert_eq!(previous.reply(2), Some(&ok(2, 4)));

    let mut d = take_over(&previous, found);
    d.produce(&[seq(2, 3)], AckMode::Durable, 3);
    write_out(&mut d);
    assert_eq!(d.reply(3), Some(&ok(2, 4)), "written anew, not a duplicate");
    assert_eq!(d.machine.high_watermark(), 5);
}

#[test]
fn a_batch_flushed_but_not_checkpointed_before_a_crash_is_accepted_again() {
    let mut previous = Driver::writing(config());
    previous.produce(&[seq(0, 2)], AckMode::Durable, 1);
    write_out(&mut previous);
    let found = previous.last_published().clone();
    previous.produce(&[seq(2, 1)], AckMode::Durable, 2);
    previous.flush_ok();
    // The checkpoint covering it is being saved when the broker dies.
    assert!(
        previous.pending_save().1.producers[0]
            .batches
            .contains(&remembered(2, 2, 2, 2))
    );

    let mut d = take_over(&previous, found);
    assert_eq!(d.machine.log_end_offset(), 2);
    d.produce(&[seq(2, 1)], AckMode::Buffer, 3);
    assert_eq!(d.reply(3), Some(&ok(2, 2)));
    write_out(&mut d);
}

#[test]
fn checkpoints_keep_the_last_covered_batches_while_newer_ones_wait() {
    let mut d = Driver::writing(config());
    for i in 0..5 {
        d.produce(&[seq(i, 1)], AckMode::Buffer, i as u32);
    }
    assert_eq!(d.tick_at_deadline(), ["Flush"]);
    // Six more while those five are flushed: not in the next checkpoint.
    for i in 5..11 {
        d.produce(&[seq(i, 1)], AckMode::Buffer, i as u32);
    }
    assert_eq!(d.flush_ok(), ["SaveCheckpoint"]);
    let (_, checkpoint) = d.pending_save();
    assert_eq!(checkpoint.high_watermark, 5);
    assert_eq!(
        checkpoint.producers[0].batches,
        (0..5)
            .map(|i| remembered(i, i, i64::from(i), i64::from(i)))
            .collect::<Vec<_>>()
    );
    d.save_ok();
    let found = d.last_published().clone();
    // The broker dies now: its successor dedupes the five checkpointed
    // batches and takes the others anew.
    let mut next = take_over(&d, found);
    next.produce(&[seq(0, 1)], AckMode::Buffer, 20);
    assert_eq!(next.reply(20), Some(&duplicate(0, 0)));
    next.produce(&[seq(5, 1)], AckMode::Buffer, 21);
    assert_eq!(next.reply(21), Some(&ok(5, 5)));
    write_out(&mut next);
    write_out(&mut d);
}

#[test]
fn sequences_wrap_around_to_zero() {
    let mut d = Driver::new(config());
    let mut found = previous_log_file(&mut d);
    // Offsets 20..25 were the producer's batch ending at i32::MAX - 2.
    found.producers = vec![ProducerRecord {
        producer_id: PRODUCER,
        epoch: 0,
        batches: vec![remembered(i32::MAX - 6, i32::MAX - 2, 20, 24)],
        last_append_ms: START_MS,
    }];
    let open = found.segments[1].clone();
    d.recover(Some(found), Some((25, open.len())));
    d.save_ok();
    // Sequences i32::MAX - 1, i32::MAX, 0; then 1 and 2.
    d.produce(&[seq(i32::MAX - 1, 3)], AckMode::Buffer, 1);
    assert_eq!(d.reply(1), Some(&ok(25, 27)));
    d.produce(&[seq(1, 2)], AckMode::Buffer, 2);
    assert_eq!(d.reply(2), Some(&ok(28, 29)));
    d.produce(&[seq(i32::MAX - 1, 3)], AckMode::Buffer, 3);
    assert_eq!(d.reply(3), Some(&duplicate(25, 27)));
    d.produce(&[seq(i32::MAX - 6, 5)], AckMode::Buffer, 4);
    assert_eq!(d.reply(4), Some(&duplicate(20, 24)));
    // Before the wrap is older, not ahead.
    d.produce(&[seq(i32::MAX - 100, 1)], AckMode::Buffer, 5);
    assert!(matches!(
        d.reply(5),
        Some(Err(WriteRejected::Producer(
            ProducerRejection::DuplicateSequence { .. }
        )))
    ));
    // After the wrap is ahead: parked, then refused.
    assert!(d.produce(&[seq(10, 1)], AckMode::Buffer, 6).is_empty());
    wait_out_park(&mut d);
    assert_eq!(d.reply(6), Some(&out_of_order(3, 10)));
    write_out(&mut d);
    assert_eq!(
        d.last_published().producers[0].batches,
        [
            remembered(i32::MAX - 6, i32::MAX - 2, 20, 24),
            remembered(i32::MAX - 1, 0, 25, 27),
            remembered(1, 2, 28, 29),
        ]
    );
}

#[test]
fn a_request_of_several_batches_is_checked_whole() {
    let mut d = Driver::writing(config());
    // Two batches of one producer, and one of another, in one request.
    let first = [seq(0, 2), seq(2, 3), sent(OTHER_PRODUCER, 0, 0, 1)];
    d.produce(&first, AckMode::Buffer, 1);
    assert_eq!(d.reply(1), Some(&ok(0, 5)));
    // Its retry: a duplicate, answered with the first's base and the last's end.
    d.produce(&first, AckMode::Buffer, 2);
    assert_eq!(d.reply(2), Some(&duplicate(0, 5)));
    // A gap in the second batch holds back (and in the end refuses) the
    // first too.
    assert!(
        d.produce(&[seq(5, 1), seq(7, 1)], AckMode::Buffer, 3)
            .is_empty()
    );
    assert_eq!(d.machine.log_end_offset(), 6);
    wait_out_park(&mut d);
    assert_eq!(d.reply(3), Some(&out_of_order(6, 7)));
    assert_eq!(d.machine.log_end_offset(), 6);
    // Retries mixed with new batches: refused (clients never send that).
    d.produce(&[seq(2, 3), seq(5, 1)], AckMode::Buffer, 4);
    assert_eq!(d.reply(4), Some(&out_of_order(5, 2)));
    d.produce(&[seq(5, 1), batch(1, 0), seq(2, 3)], AckMode::Buffer, 5);
    assert!(matches!(d.reply(5), Some(Err(WriteRejected::Producer(_)))));
    assert_eq!(d.machine.log_end_offset(), 6);
    // An epoch bump within a request starts again at 0.
    d.produce(&[seq(5, 1), sent(PRODUCER, 1, 0, 1)], AckMode::Buffer, 6);
    assert_eq!(d.reply(6), Some(&ok(6, 7)));
    write_out(&mut d);
    let producer = &d.last_published().producers[0];
    assert_eq!((producer.epoch, producer.batches.len()), (1, 1));
}

#[test]
fn idle_producers_expire_after_seven_days() {
    let mut d = Driver::writing(config());
    d.produce(&[seq(0, 1)], AckMode::Durable, 1);
    write_out(&mut d);
    assert_eq!(d.last_published().producers.len(), 1);
    d.advance_to(7 * 24 * 3600 * 1000 + 1);
    d.produce(&[sent(OTHER_PRODUCER, 0, 0, 1)], AckMode::Durable, 2);
    write_out(&mut d);
    let producers = &d.last_published().producers;
    assert_eq!(producers.len(), 1);
    assert_eq!(producers[0].producer_id, OTHER_PRODUCER);
    assert!(d.produce(&[seq(1, 1)], AckMode::Buffer, 3).is_empty());
    wait_out_park(&mut d);
    assert_eq!(
        d.reply(3),
        Some(&refused(ProducerRejection::UnknownProducer {
            producer_id: PRODUCER,
            sequence: 1,
        }))
    );
}

/// Batches 2 and 1 of a producer (in that order) arrive before batch 0:
/// both wait, and go in right after batch 0, in sequence order.
fn batches_ahead_wait_for_the_missing_ones(ack: AckMode) {
    let mut d = Driver::writing(config());
    let batches = [seq(0, 1), seq(1, 2), seq(3, 3)];
    assert!(d.produce(&batches[2..3], ack, 2).is_empty());
    assert!(d.produce(&batches[1..2], ack, 1).is_empty());
    assert_eq!(d.machine.log_end_offset(), 0);
    assert!(d.answered().is_empty());
    assert!(d.flush.is_none());
    let kinds = d.produce(&batches[0..1], ack, 0);
    // All three appended in the same call.
    assert_eq!(d.machine.log_end_offset(), 6);
    match ack {
        AckMode::Buffer => {
            assert_eq!(kinds, ["Reply", "Reply", "Reply"]);
            assert_eq!(d.answered(), [0, 1, 2]);
        }
        AckMode::Durable => {
            assert_eq!(kinds, ["Flush"]);
            assert_eq!(d.pending_flush().data.len(), 3);
            assert_eq!(total_len(&d.pending_flush().data), total_len(&batches));
        }
    }
    write_out(&mut d);
    assert_eq!(d.answered(), [0, 1, 2]);
    assert_eq!(d.reply(0), Some(&ok(0, 0)));
    assert_eq!(d.reply(1), Some(&ok(1, 2)));
    assert_eq!(d.reply(2), Some(&ok(3, 5)));
    assert_eq!(
        d.last_published().producers[0].batches,
        [
            remembered(0, 0, 0, 0),
            remembered(1, 2, 1, 2),
            remembered(3, 5, 3, 5)
        ]
    );
    assert_eq!(stored_bytes(&d) as u64, total_len(&batches));
}

#[test]
fn batches_ahead_wait_for_the_missing_ones_with_buffer_acks() {
    batches_ahead_wait_for_the_missing_ones(AckMode::Buffer);
}

#[test]
fn batches_ahead_wait_for_the_missing_ones_with_durable_acks() {
    batches_ahead_wait_for_the_missing_ones(AckMode::Durable);
}

#[test]
fn a_gap_that_never_fills_is_refused_after_the_park_timeout() {
    let mut d = Driver::writing(config());
    d.produce(&[seq(0, 2)], AckMode::Durable, 1);
    write_out(&mut d);
    let written = stored_bytes(&d);
    let parked_at = d.now_ms;
    // Batch 2.. never arrives.
    assert!(d.produce(&[seq(5, 1)], AckMode::Durable, 2).is_empty());
    assert_eq!(
        d.machine.next_deadline(),
        Some(d.at(parked_at).instant + PARK_TIMEOUT),
        "a tick is due when the park times out"
    );
    d.advance_to(parked_at + PARK_TIMEOUT.as_millis() as u64 - 1);
    assert!(d.tick().is_empty(), "still waiting");
    assert_eq!(d.reply(2), None);
    d.advance_to(parked_at + PARK_TIMEOUT.as_millis() as u64);
    assert_eq!(d.tick(), ["Reply"]);
    assert_eq!(d.reply(2), Some(&out_of_order(2, 5)));
    // Nothing of it is kept, buffered or written.
    assert_eq!(d.machine.log_end_offset(), 2);
    assert_eq!(d.machine.buffered_bytes(), 0);
    write_out(&mut d);
    assert_eq!(stored_bytes(&d), written);
    // The producer carries on from the right sequence, then resends.
    d.produce(&[seq(2, 3)], AckMode::Buffer, 3);
    assert_eq!(d.reply(3), Some(&ok(2, 4)));
    d.produce(&[seq(5, 1)], AckMode::Buffer, 4);
    assert_eq!(d.reply(4), Some(&ok(5, 5)));
    write_out(&mut d);
    assert_eq!(
        d.last_published().producers[0].batches,
        [
            remembered(0, 1, 0, 1),
            remembered(2, 4, 2, 4),
            remembered(5, 5, 5, 5)
        ]
    );
    assert_eq!(
        stored_bytes(&d),
        written + seq(2, 3).len() + seq(5, 1).len()
    );
}

#[test]
fn stop_answers_parked_requests_with_stopped() {
    let mut d = Driver::writing(config());
    assert_eq!(d.produce(&[seq(0, 1)], AckMode::Durable, 1), ["Flush"]);
    assert!(d.produce(&[seq(2, 1)], AckMode::Buffer, 2).is_empty());
    assert!(d.produce(&[seq(3, 1)], AckMode::Durable, 3).is_empty());
    assert_eq!(d.stop(), ["Reply", "Reply", "Reply"]);
    let mut answered = d.answered();
    answered.sort_unstable();
    assert_eq!(answered, [1, 2, 3]);
    for waiter in 1..=3 {
        assert_eq!(d.reply(waiter), Some(&Err(WriteRejected::Stopped)));
    }
    assert_eq!(d.machine.log_end_offset(), 1);
}

#[test]
fn drain_answers_parked_requests_with_stopped_and_writes_the_rest() {
    let mut d = Driver::writing(config());
    d.produce(&[seq(0, 1)], AckMode::Buffer, 1);
    assert!(d.produce(&[seq(2, 1)], AckMode::Durable, 2).is_empty());
    let actions = d.machine.drain(d.now());
    assert_eq!(d.absorb(actions), ["Reply", "Flush"]);
    assert_eq!(d.reply(2), Some(&Err(WriteRejected::Stopped)));
    d.settle();
    assert!(d.machine.is_drained());
    assert_eq!(d.machine.high_watermark(), 1);
    assert_eq!(stored_bytes(&d), seq(0, 1).len());
}

#[test]
fn a_fence_answers_parked_requests_with_the_fence() {
    let mut d = Driver::writing(config());
    assert_eq!(d.produce(&[seq(0, 1)], AckMode::Durable, 1), ["Flush"]);
    assert!(d.produce(&[seq(2, 1)], AckMode::Buffer, 2).is_empty());
    assert_eq!(d.flush_ok(), ["SaveCheckpoint"]);
    let kinds = d.save_fenced(EPOCH + 1);
    assert_eq!(kinds.iter().filter(|k| **k == "Reply").count(), 2);
    assert!(d.stopped);
    assert_eq!(d.reply(1), Some(&fenced(EPOCH + 1)));
    assert_eq!(d.reply(2), Some(&fenced(EPOCH + 1)));
}

#[test]
fn a_parked_request_does_not_fill_the_buffer() {
    let (first, ahead, missing) = (seq(0, 1), seq(2, 1), seq(1, 1));
    let limit = (first.len() + ahead.len()) as u64;
    let mut d = Driver::writing(PartitionConfig {
        max_buffer_bytes: limit,
        ..config()
    });
    d.produce(std::slice::from_ref(&first), AckMode::Buffer, 1);
    assert!(
        d.produce(std::slice::from_ref(&ahead), AckMode::Buffer, 2)
            .is_empty()
    );
    // The request that fills the gap must still get in.
    assert_eq!(d.machine.buffered_bytes(), first.len() as u64);
    assert!(
        !d.machine.is_full(),
        "parked bytes must not hold back the missing batch"
    );
    d.produce(std::slice::from_ref(&missing), AckMode::Buffer, 3);
    assert_eq!(d.answered()[1..], [3, 2]);
    assert_eq!(
        d.machine.buffered_bytes(),
        (first.len() + missing.len() + ahead.len()) as u64
    );
    write_out(&mut d);
}

#[test]
fn a_producer_parks_at_most_five_requests() {
    let mut d = Driver::writing(config());
    d.produce(&[seq(0, 1)], AckMode::Buffer, 1);
    for (i, sequence) in (2..7).enumerate() {
        assert!(
            d.produce(&[seq(sequence, 1)], AckMode::Buffer, 10 + i as u32)
                .is_empty()
        );
    }
    // A sixth request ahead is refused at once.
    assert_eq!(d.produce(&[seq(7, 1)], AckMode::Buffer, 20), ["Reply"]);
    assert_eq!(d.reply(20), Some(&out_of_order(1, 7)));
    // The gap fills: the five follow in order, in one loop.
    d.produce(&[seq(1, 1)], AckMode::Buffer, 2);
    assert_eq!(d.machine.log_end_offset(), 7);
    write_out(&mut d);
}

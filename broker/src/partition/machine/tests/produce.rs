//! Produce: offsets, acks, when buffered data is flushed, back-pressure,
//! stopping, and inputs that find nothing to do.

use sluice_log::PartitionKey;
use sluice_record::{BatchHeader, BatchIter};

use super::*;

#[test]
fn buffer_acks_are_answered_at_once_with_contiguous_offsets() {
    let mut d = Driver::writing(config());
    assert_eq!(d.produce(&[batch(3, 0)], AckMode::Buffer, 1), ["Reply"]);
    assert_eq!(d.reply(1), Some(&ok(0, 2)));
    assert_eq!(
        d.produce(&[batch(2, 0), batch(4, 0)], AckMode::Buffer, 2),
        ["Reply"]
    );
    assert_eq!(d.reply(2), Some(&ok(3, 8)));
    assert_eq!(d.produce(&[batch(1, 0)], AckMode::Buffer, 3), ["Reply"]);
    assert_eq!(d.reply(3), Some(&ok(9, 9)));
    assert_eq!(d.machine.log_end_offset(), 10);
    assert_eq!(d.machine.high_watermark(), 0, "nothing is visible yet");
    assert!(d.flush.is_none(), "buffer acks alone do not flush at once");
}

#[test]
fn durable_acks_wait_for_the_covering_checkpoint() {
    let mut d = Driver::writing(config());
    assert_eq!(d.produce(&[batch(5, 0)], AckMode::Durable, 1), ["Flush"]);
    assert_eq!(d.flush_ok(), ["SaveCheckpoint"]);
    assert!(d.replies.is_empty());
    assert_eq!(d.machine.high_watermark(), 0);
    assert_eq!(d.save_ok(), ["Publish", "Reply"]);
    assert_eq!(d.reply(1), Some(&ok(0, 4)));
    assert_eq!(d.machine.high_watermark(), 5);
}

#[test]
fn offsets_and_the_leader_epoch_are_written_into_the_batch_headers() {
    let mut d = Driver::writing(config());
    let first = [batch(2, 0), batch(3, 0)];
    let second = [batch(4, 0)];
    d.produce(&first, AckMode::Buffer, 1);
    d.produce(&second, AckMode::Buffer, 2);
    d.advance_to(10);
    assert_eq!(d.tick(), ["Flush"]);
    let job = d.pending_flush();
    assert_eq!(job.data.len(), 2, "one buffer per request");
    let mut bases = Vec::new();
    for data in &job.data {
        for slice in BatchIter::new(data.clone()) {
            let slice = slice.expect("batch");
            let header = BatchHeader::parse(&slice.bytes).expect("header");
            assert_eq!(header.partition_leader_epoch, EPOCH as i32);
            sluice_record::validate_batch(&slice.bytes).expect("the CRC still holds");
            bases.push(header.base_offset);
        }
    }
    assert_eq!(bases, [0, 2, 5]);
    // Only the two header fields outside the CRC changed.
    let mut expected: Vec<u8> = first.iter().flat_map(|b| b.to_vec()).collect();
    let epoch = (EPOCH as i32).to_be_bytes();
    let second_at = first[0].len();
    expected[12..16].copy_from_slice(&epoch);
    expected[second_at..second_at + 8].copy_from_slice(&2i64.to_be_bytes());
    expected[second_at + 12..second_at + 16].copy_from_slice(&epoch);
    assert_eq!(&job.data[0][..], &expected[..]);
    d.settle();
}

#[test]
fn buffer_only_data_is_flushed_after_the_flush_interval() {
    let mut d = Driver::writing(config());
    d.advance_to(100);
    d.produce(&[batch(1, 0)], AckMode::Buffer, 1);
    d.advance_to(105);
    d.produce(&[batch(1, 0)], AckMode::Buffer, 2);
    assert_eq!(
        d.machine.next_deadline(),
        Some(d.at(110).instant),
        "the interval runs from the oldest buffered byte"
    );
    d.advance_to(109);
    assert!(d.tick().is_empty());
    d.advance_to(110);
    assert_eq!(d.tick(), ["Flush"]);
    assert_eq!(d.pending_flush().data.len(), 2);
    assert!(
        d.machine.next_deadline() != Some(d.at(110).instant),
        "no flush deadline while a flush is in flight"
    );
    d.settle();
    assert_eq!(d.machine.high_watermark(), 2);
}

#[test]
fn buffer_only_data_is_flushed_at_flush_bytes() {
    let one = batch(1, 0);
    let mut cfg = config();
    cfg.flush_bytes = 2 * one.len() as u64;
    let mut d = Driver::writing(cfg);
    assert_eq!(
        d.produce(std::slice::from_ref(&one), AckMode::Buffer, 1),
        ["Reply"]
    );
    assert_eq!(
        d.produce(std::slice::from_ref(&one), AckMode::Buffer, 2),
        ["Reply", "Flush"]
    );
    assert_eq!(total_len(&d.pending_flush().data), 2 * one.len() as u64);
    d.settle();
}

#[test]
fn a_durable_waiter_flushes_at_once_with_what_is_buffered() {
    let mut d = Driver::writing(config());
    d.produce(&[batch(1, 0)], AckMode::Buffer, 1);
    assert_eq!(d.produce(&[batch(1, 0)], AckMode::Durable, 2), ["Flush"]);
    assert_eq!(d.pending_flush().data.len(), 2);
    d.settle();
    assert_eq!(d.reply(2), Some(&ok(1, 1)));
}

#[test]
fn the_buffer_is_full_at_max_buffer_bytes_in_flight_included() {
    let one = batch(1, 0);
    let mut cfg = config();
    cfg.max_buffer_bytes = 2 * one.len() as u64;
    let mut d = Driver::writing(cfg);
    assert!(!d.machine.is_full());
    d.produce(std::slice::from_ref(&one), AckMode::Buffer, 1);
    assert_eq!(d.machine.buffered_bytes(), one.len() as u64);
    assert!(!d.machine.is_full());
    d.produce(std::slice::from_ref(&one), AckMode::Durable, 2);
    // Both are now in flight and still count.
    assert_eq!(d.pending_flush().data.len(), 2);
    assert_eq!(d.machine.buffered_bytes(), 2 * one.len() as u64);
    assert!(d.machine.is_full());
    d.flush_ok();
    assert_eq!(
        d.machine.buffered_bytes(),
        0,
        "flushed bytes no longer count while their checkpoint is saved"
    );
    assert!(!d.machine.is_full());
    d.settle();
}

#[test]
fn a_failed_flush_keeps_its_bytes_counted() {
    let one = batch(1, 0);
    let mut d = Driver::writing(config());
    d.produce(std::slice::from_ref(&one), AckMode::Durable, 1);
    d.produce(std::slice::from_ref(&one), AckMode::Buffer, 2);
    assert_eq!(d.flush_err(), ["Flush"]);
    assert_eq!(d.machine.buffered_bytes(), 2 * one.len() as u64);
    d.flush_err();
    assert!(d.flush.is_none(), "backing off");
    assert_eq!(d.machine.buffered_bytes(), 2 * one.len() as u64);
    d.tick_at_deadline();
    d.settle();
}

#[test]
fn stop_rejects_every_waiter_in_order() {
    let mut d = Driver::writing(config());
    d.produce(&[batch(1, 0)], AckMode::Durable, 1);
    d.flush_ok();
    // 1 is flushed, its checkpoint is being saved; 2 is being flushed.
    d.produce(&[batch(1, 0)], AckMode::Durable, 2);
    d.produce(&[batch(1, 0)], AckMode::Durable, 3);
    d.produce(&[batch(1, 0)], AckMode::Buffer, 4);
    assert_eq!(d.stop(), ["Reply", "Reply", "Reply"]);
    assert_eq!(
        d.replies,
        vec![
            (4, ok(3, 3)),
            (1, Err(WriteRejected::Stopped)),
            (2, Err(WriteRejected::Stopped)),
            (3, Err(WriteRejected::Stopped)),
        ]
    );
    assert!(d.stop().is_empty());
}

#[test]
fn completions_with_nothing_in_flight_are_ignored() {
    let mut d = Driver::writing(config());
    let flushed = Flushed {
        volume: VOLUME.into(),
        layout: SegmentLayout::File { len: 10 },
    };
    assert!(d.machine.flush_done(Ok(flushed), d.now()).is_empty());
    assert!(
        d.machine
            .checkpoint_done(Ok(sluice_log::checkpoint::SaveOutcome::Saved), d.now())
            .is_empty()
    );
    assert!(d.machine.flush_done(Err("late".into()), d.now()).is_empty());
    assert!(
        d.machine
            .checkpoint_done(Err("late".into()), d.now())
            .is_empty()
    );
    assert_eq!(d.machine.high_watermark(), 0);
    assert_eq!(d.machine.phase(), Phase::Writing);
    assert!(d.tick().is_empty());
}

#[test]
fn an_idle_partition_has_nothing_to_do_but_check_retention() {
    let mut d = Driver::writing(config());
    assert!(d.tick().is_empty());
    d.advance_to(3_600_000);
    assert!(d.tick().is_empty());
    assert!(d.flush.is_none() && d.save.is_none());
    let deadline = d.machine.next_deadline();
    assert!(
        deadline.is_none_or(|at| at > d.now().instant),
        "an idle partition's next deadline is not already due"
    );
}

#[test]
fn accessors_describe_the_partition() {
    let d = Driver::writing(config());
    assert_eq!(d.machine.key(), &PartitionKey::new("orders", 3));
    assert_eq!(d.machine.epoch(), EPOCH);
    assert_eq!(d.machine.config(), &config());
}

//! DeleteRecords: the log start offset rises only through a saved
//! checkpoint (and is answered only then), whole segments below it are
//! deleted like retention's, it survives a takeover, and offsets past the
//! high watermark are refused.

use super::*;

/// Three segments of one 3-record batch each, [0, 3) and [3, 6) sealed,
/// [6, 9) open, all checkpointed.
fn three_segments() -> Driver {
    let mut cfg = config();
    cfg.segment_bytes = 1;
    let mut d = Driver::writing(cfg);
    for waiter in 0..3 {
        d.produce(&[batch(3, START_MS)], AckMode::Durable, waiter);
        d.settle();
    }
    assert_eq!(d.last_published().high_watermark, 9);
    assert_eq!(d.machine.sealed_segments().len(), 2);
    d
}

fn out_of_range(offset: i64, high_watermark: i64) -> Result<i64, DeleteRecordsRejected> {
    Err(DeleteRecordsRejected::OffsetOutOfRange {
        offset,
        high_watermark,
    })
}

#[test]
fn the_log_start_rises_once_a_checkpoint_records_it_and_whole_segments_below_go() {
    let mut d = three_segments();
    let oldest = d.last_published().segments[0].clone();
    assert_eq!(d.delete_records(4, 100), ["SaveCheckpoint"]);
    let (_, checkpoint) = d.pending_save();
    assert_eq!(checkpoint.log_start_offset, 4);
    assert_eq!(checkpoint.high_watermark, 9);
    assert_eq!(
        checkpoint
            .segments
            .iter()
            .map(|s| s.base_offset)
            .collect::<Vec<_>>(),
        [3, 6],
        "[0, 3) is wholly below the new start; [3, 6) holds offset 4"
    );
    assert_eq!(
        d.delete_reply(100),
        None,
        "not before the checkpoint is saved"
    );
    assert!(d.deleted_segments.is_empty());
    assert_eq!(
        d.save_ok(),
        ["Publish", "ReplyDeleteRecords", "DeleteSegments"]
    );
    assert_eq!(d.delete_reply(100), Some(&Ok(4)));
    assert_eq!(d.last_published().log_start_offset, 4);
    assert_eq!(d.deleted_segments, vec![oldest]);
    assert!(d.tick().is_empty(), "nothing more is due");
}

#[test]
fn minus_one_deletes_up_to_the_high_watermark_and_the_open_segment_goes_after_it_rolls() {
    let mut d = three_segments();
    assert_eq!(d.delete_records(-1, 100), ["SaveCheckpoint"]);
    let (_, checkpoint) = d.pending_save();
    assert_eq!(checkpoint.log_start_offset, 9);
    // The open segment stays (it is never dropped), wholly below the start.
    assert_eq!(checkpoint.segments.len(), 1);
    assert!(!checkpoint.segments[0].sealed);
    d.save_ok();
    assert_eq!(d.delete_reply(100), Some(&Ok(9)));
    assert_eq!(d.deleted_segments.len(), 2);
    // Writing goes on at the high watermark; the next flush rolls the
    // segment, and the next retention check drops it.
    d.produce(&[batch(2, START_MS)], AckMode::Durable, 10);
    d.settle();
    assert_eq!(d.reply(10), Some(&ok(9, 10)));
    assert_eq!(d.last_published().segments.len(), 2);
    d.advance_to(30_000);
    assert_eq!(d.tick(), ["SaveCheckpoint"]);
    assert_eq!(d.pending_save().1.segments[0].base_offset, 9);
    assert_eq!(d.save_ok(), ["Publish", "DeleteSegments"]);
    assert_eq!(d.deleted_segments.len(), 3);
    assert_eq!(d.last_published().log_start_offset, 9);
}

#[test]
fn offsets_past_the_high_watermark_or_negative_are_refused_at_once() {
    let mut d = three_segments();
    assert_eq!(d.delete_records(10, 1), ["ReplyDeleteRecords"]);
    assert_eq!(d.delete_reply(1), Some(&out_of_range(10, 9)));
    assert_eq!(d.delete_records(-2, 2), ["ReplyDeleteRecords"]);
    assert_eq!(d.delete_reply(2), Some(&out_of_range(-2, 9)));
    // Buffered, not yet checkpointed records are not visible: not deletable.
    d.produce(&[batch(1, START_MS)], AckMode::Buffer, 20);
    assert_eq!(d.delete_records(10, 3), ["ReplyDeleteRecords"]);
    assert_eq!(d.delete_reply(3), Some(&out_of_range(10, 9)));
    d.settle();
    assert_eq!(d.last_published().log_start_offset, 0, "nothing deleted");
    assert!(d.deleted_segments.is_empty());
}

#[test]
fn an_offset_at_or_below_the_start_changes_nothing() {
    let mut d = three_segments();
    d.delete_records(5, 1);
    d.save_ok();
    let saves = d.saves.len();
    for (waiter, offset) in [(2, 5), (3, 0), (4, 3)] {
        assert_eq!(d.delete_records(offset, waiter), ["ReplyDeleteRecords"]);
        assert_eq!(d.delete_reply(waiter), Some(&Ok(5)), "offset {offset}");
    }
    assert_eq!(d.saves.len(), saves, "no checkpoint for nothing");
}

#[test]
fn a_checkpoint_built_before_the_request_does_not_answer_it() {
    let mut d = Driver::writing(config());
    d.produce(&[batch(3, START_MS)], AckMode::Durable, 1);
    d.settle();
    d.produce(&[batch(3, START_MS)], AckMode::Durable, 2);
    assert_eq!(d.flush_ok(), ["SaveCheckpoint"]);
    assert!(
        d.delete_records(2, 100).is_empty(),
        "a checkpoint is in flight"
    );
    assert_eq!(d.save_ok(), ["Publish", "Reply", "SaveCheckpoint"]);
    assert_eq!(d.delete_reply(100), None);
    assert_eq!(d.pending_save().1.log_start_offset, 2);
    assert_eq!(d.save_ok(), ["Publish", "ReplyDeleteRecords"]);
    assert_eq!(d.delete_reply(100), Some(&Ok(2)));
    // The start is inside the one segment: it stays, readers skip below it.
    assert_eq!(d.last_published().segments.len(), 1);
    assert!(d.deleted_segments.is_empty());
}

#[test]
fn requests_in_order_are_answered_by_the_checkpoint_that_covers_each() {
    let mut d = three_segments();
    assert_eq!(d.delete_records(2, 1), ["SaveCheckpoint"]);
    assert!(d.delete_records(7, 2).is_empty());
    assert!(d.delete_records(4, 3).is_empty());
    assert_eq!(
        d.save_ok(),
        ["Publish", "ReplyDeleteRecords", "SaveCheckpoint"]
    );
    assert_eq!(d.delete_reply(1), Some(&Ok(2)));
    assert_eq!(d.pending_save().1.log_start_offset, 7);
    d.save_ok();
    // Both answered with the start now saved, which covers each.
    assert_eq!(d.delete_reply(2), Some(&Ok(7)));
    assert_eq!(d.delete_reply(3), Some(&Ok(7)));
    assert_eq!(d.deleted_segments.len(), 2);
}

#[test]
fn the_log_start_survives_a_takeover() {
    let mut d = Driver::new(config());
    let mut found = previous_log_file(&mut d);
    found.log_start_offset = 12;
    d.recover(Some(found), None);
    assert_eq!(d.pending_save().1.log_start_offset, 12);
    d.save_ok();
    assert_eq!(d.last_published().log_start_offset, 12);
    // Lower: nothing to do; the same start is answered.
    assert_eq!(d.delete_records(11, 1), ["ReplyDeleteRecords"]);
    assert_eq!(d.delete_reply(1), Some(&Ok(12)));
    // Retention's next checks keep it.
    d.produce(&[batch(1, START_MS)], AckMode::Durable, 2);
    d.settle();
    assert_eq!(d.last_published().log_start_offset, 12);
    // And [0, 10), wholly below, goes at the next retention check.
    d.advance_to(30_000);
    assert_eq!(d.tick(), ["SaveCheckpoint"]);
    assert_eq!(d.pending_save().1.segments[0].base_offset, 10);
    d.save_ok();
    assert_eq!(d.deleted_segments.len(), 1);
}

#[test]
fn a_request_while_recovering_waits_for_the_takeover() {
    let mut d = Driver::new(config());
    assert!(d.delete_records(3, 1).is_empty(), "waits for recovery");
    let found = previous_log_file(&mut d);
    assert_eq!(d.recover(Some(found), None), ["SaveCheckpoint"]);
    assert_eq!(d.pending_save().1.log_start_offset, 0);
    assert_eq!(d.save_ok(), ["Publish", "SaveCheckpoint"]);
    assert_eq!(d.pending_save().1.log_start_offset, 3);
    assert_eq!(d.save_ok(), ["Publish", "ReplyDeleteRecords"]);
    assert_eq!(d.delete_reply(1), Some(&Ok(3)));
}

#[test]
fn a_fenced_or_stopping_partition_refuses() {
    let mut d = three_segments();
    d.delete_records(4, 1);
    let kinds = d.save_fenced(EPOCH + 1);
    assert!(kinds.contains(&"ReplyDeleteRecords"), "{kinds:?}");
    let fenced = WriteRejected::Fenced {
        by_epoch: EPOCH + 1,
    };
    assert_eq!(
        d.delete_reply(1),
        Some(&Err(DeleteRecordsRejected::Write(fenced.clone())))
    );
    assert_eq!(d.delete_records(5, 2), ["ReplyDeleteRecords"]);
    assert_eq!(
        d.delete_reply(2),
        Some(&Err(DeleteRecordsRejected::Write(fenced)))
    );

    let mut d = Driver::new(config());
    d.delete_records(0, 1);
    assert_eq!(d.stop(), ["ReplyDeleteRecords"]);
    assert_eq!(
        d.delete_reply(1),
        Some(&Err(DeleteRecordsRejected::Write(WriteRejected::Stopped)))
    );
}

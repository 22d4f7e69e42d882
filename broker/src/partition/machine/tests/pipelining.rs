//! Pipelining: a flush writes while a checkpoint is saved (at most one of
//! each); each checkpoint covers everything flushed when it is built;
//! durable producers are answered when that checkpoint is saved; no
//! checkpoint is built while a seal is outstanding.

use super::*;

#[test]
fn produces_during_a_flush_go_out_together_in_the_next_one() {
    let mut d = Driver::writing(config());
    assert_eq!(d.produce(&[batch(1, 0)], AckMode::Durable, 1), ["Flush"]);
    // While the flush is in flight no other starts.
    assert!(d.produce(&[batch(2, 0)], AckMode::Durable, 2).is_empty());
    assert_eq!(d.produce(&[batch(3, 0)], AckMode::Buffer, 3), ["Reply"]);
    d.advance_to(50);
    assert!(
        d.tick().is_empty(),
        "no second flush while one is in flight"
    );
    // The first flush's checkpoint and the next flush start together.
    assert_eq!(d.flush_ok(), ["SaveCheckpoint", "Flush"]);
    let job = d.pending_flush();
    assert_eq!(job.target, SegmentTarget::Open);
    assert_eq!(job.data.len(), 2, "the two requests in one flush");
    assert!(d.produce(&[batch(4, 0)], AckMode::Durable, 4).is_empty());
    assert_eq!(d.save_ok(), ["Publish", "Reply"]);
    assert_eq!(d.reply(1), Some(&ok(0, 0)));
    assert_eq!(d.reply(3), Some(&ok(3, 5)));
    assert_eq!(d.flush_ok(), ["SaveCheckpoint", "Flush"]);
    assert_eq!(d.save_ok(), ["Publish", "Reply"]);
    assert_eq!(d.reply(2), Some(&ok(1, 2)));
    assert_eq!(d.flush_ok(), ["SaveCheckpoint"]);
    assert_eq!(d.save_ok(), ["Publish", "Reply"]);
    assert_eq!(d.reply(4), Some(&ok(6, 9)));
    assert_eq!(d.answered(), [3, 1, 2, 4]);
    assert_eq!(d.flushes.len(), 3);
    assert!(d.flush.is_none() && d.save.is_none());
}

#[test]
fn a_flush_runs_while_a_checkpoint_is_saved() {
    let mut d = Driver::writing(config());
    d.produce(&[batch(1, 0)], AckMode::Durable, 1);
    assert_eq!(d.flush_ok(), ["SaveCheckpoint"]);
    assert_eq!(d.produce(&[batch(2, 0)], AckMode::Durable, 2), ["Flush"]);
    assert!(d.save.is_some() && d.flush.is_some(), "both in flight");
    // The checkpoint in flight covers the first flush only; the next waits for it.
    assert!(d.flush_ok().is_empty());
    assert!(d.tick().is_empty());
    assert_eq!(d.save_ok(), ["Publish", "Reply", "SaveCheckpoint"]);
    assert_eq!(d.reply(1), Some(&ok(0, 0)));
    assert_eq!(d.reply(2), None, "not covered yet");
    assert_eq!(d.pending_save().1.high_watermark, 3);
    assert_eq!(d.save_ok(), ["Publish", "Reply"]);
    assert_eq!(d.reply(2), Some(&ok(1, 2)));
}

#[test]
fn the_next_checkpoint_covers_every_flush_finished_while_one_was_saved() {
    let mut d = Driver::writing(config());
    let batches = [batch(1, 0), batch(2, 0), batch(3, 0)];
    d.produce(&batches[..1], AckMode::Durable, 1);
    assert_eq!(d.flush_ok(), ["SaveCheckpoint"]);
    let first = d.pending_save().1.clone();
    assert_eq!(first.high_watermark, 1);
    assert_eq!(d.produce(&batches[1..2], AckMode::Durable, 2), ["Flush"]);
    assert!(d.flush_ok().is_empty());
    assert_eq!(d.produce(&batches[2..], AckMode::Durable, 3), ["Flush"]);
    assert!(d.flush_ok().is_empty());
    assert!(d.replies.is_empty(), "nothing covered yet");
    assert_eq!(d.machine.high_watermark(), 0);

    // Saving the first answers only what it covers, and builds the next at once.
    assert_eq!(d.save_ok(), ["Publish", "Reply", "SaveCheckpoint"]);
    assert_eq!(d.answered(), [1]);
    assert_eq!(d.machine.high_watermark(), 1);
    let (seal, second) = d.pending_save();
    assert!(seal.is_none());
    assert_eq!(second.sequence, first.sequence + 1);
    assert_eq!(second.high_watermark, 6, "both later flushes");
    assert_eq!(second.segments.len(), 1);
    assert_eq!(second.segments[0].end_offset, 6);
    assert_eq!(second.segments[0].len(), total_len(&batches));
    assert_eq!(second.segments[0].index.len(), 3);

    assert_eq!(d.save_ok(), ["Publish", "Reply", "Reply"]);
    assert_eq!(d.reply(2), Some(&ok(1, 2)));
    assert_eq!(d.reply(3), Some(&ok(3, 5)));
    assert_eq!(d.answered(), [1, 2, 3]);
    assert!(d.tick().is_empty(), "nothing more is due");
    assert_eq!(
        d.saves.len(),
        3,
        "takeover and two checkpoints for three flushes"
    );
}

#[test]
fn a_new_segment_starts_at_the_flushed_end_not_the_checkpointed_one() {
    let one = batch(1, 0);
    let mut cfg = config();
    cfg.segment_bytes = 2 * one.len() as u64;
    let mut d = Driver::writing(cfg);
    d.produce(std::slice::from_ref(&one), AckMode::Durable, 1);
    assert_eq!(d.flush_ok(), ["SaveCheckpoint"]);
    // The second flush fills the segment while the first checkpoint is saved.
    d.produce(std::slice::from_ref(&one), AckMode::Durable, 2);
    assert!(d.flush_ok().is_empty());
    assert_eq!(
        d.produce(std::slice::from_ref(&one), AckMode::Durable, 3),
        ["Flush"]
    );
    let job = d.pending_flush();
    assert!(job.seal.is_some(), "the roll");
    assert_eq!(
        job.target,
        SegmentTarget::New {
            name: paths::segment_name(2, EPOCH, 0),
            avoid: Some(VOLUME.into()),
        },
        "at the flushed end (2), not the saved high watermark (0) or the one being saved (1)"
    );
    assert_eq!(d.machine.high_watermark(), 0);
    d.settle();
    let last = d.last_published();
    assert_eq!(last.high_watermark, 3);
    assert_eq!(last.segments.len(), 2);
    assert_eq!(last.segments[0].end_offset, 2);
    assert_eq!(last.segments[1].base_offset, 2);
    assert_eq!(d.answered(), [1, 2, 3]);
}

#[test]
fn a_roll_flush_in_flight_blocks_checkpoints_until_it_completes() {
    let mut cfg = config();
    cfg.segment_bytes = 1;
    let mut d = Driver::writing(cfg);
    d.chunked = true;
    d.produce(&[batch(2, 0)], AckMode::Durable, 1);
    assert_eq!(d.flush_ok(), ["SaveCheckpoint"]);
    // The roll flush seals the first segment while its checkpoint is saved.
    assert_eq!(d.produce(&[batch(1, 0)], AckMode::Durable, 2), ["Flush"]);
    let rolled = d.pending_flush().seal.clone().expect("a seal");
    // Its merge reports before the flush ends: a checkpoint is due ...
    assert!(d.merge(&rolled.name).is_empty());
    // ... but none is built while the seal may not have happened, not when
    // the checkpoint in flight is saved, nor on a tick.
    assert_eq!(d.save_ok(), ["Publish", "Reply"]);
    assert!(d.tick().is_empty());
    d.advance_to(30_000);
    assert!(d.tick().is_empty());
    assert!(d.save.is_none());
    // Once the seal is done, the next checkpoint names the segment sealed.
    assert_eq!(d.flush_ok(), ["SaveCheckpoint"]);
    let (seal, checkpoint) = d.pending_save();
    assert!(seal.is_none());
    assert!(checkpoint.segments[0].sealed);
    assert_eq!(
        checkpoint.segments[0].layout,
        SegmentLayout::Object {
            len: rolled.layout.len()
        }
    );
    assert_eq!(checkpoint.high_watermark, 3);
    assert_eq!(d.save_ok(), ["Publish", "Reply", "DeleteChunks"]);
}

#[test]
fn a_failed_checkpoint_holds_up_answers_but_not_flushes() {
    let mut d = Driver::writing(config());
    d.produce(&[batch(2, 0)], AckMode::Durable, 1);
    d.flush_ok();
    let checkpoint = d.pending_save().1.clone();
    assert!(d.save_err().is_empty());
    assert!(d.replies.is_empty());
    assert_eq!(d.machine.high_watermark(), 0);
    // New data is flushed while the checkpoint is retried ...
    assert_eq!(d.produce(&[batch(1, 0)], AckMode::Durable, 2), ["Flush"]);
    // ... at once the first time ...
    assert_eq!(d.machine.next_deadline(), Some(d.now().instant));
    assert_eq!(d.tick(), ["SaveCheckpoint"]);
    assert_eq!(d.pending_save().1, &checkpoint, "the same checkpoint again");
    assert!(d.flush_ok().is_empty());
    assert!(d.save_err().is_empty());
    // ... then after a backoff.
    d.advance_to(99);
    assert!(d.tick().is_empty());
    d.advance_to(100);
    assert_eq!(d.tick(), ["SaveCheckpoint"]);
    assert_eq!(d.pending_save().1, &checkpoint);
    assert_eq!(d.save_ok(), ["Publish", "Reply", "SaveCheckpoint"]);
    assert_eq!(d.reply(1), Some(&ok(0, 1)));
    assert_eq!(d.save_ok(), ["Publish", "Reply"]);
    assert_eq!(d.reply(2), Some(&ok(2, 2)));
}

#[test]
fn flushes_and_checkpoints_back_off_separately() {
    let mut d = Driver::writing(config());
    d.produce(&[batch(1, 0)], AckMode::Durable, 1);
    d.flush_ok();
    d.save_err();
    d.tick();
    // Two checkpoint failures: the next save at 100 ms.
    d.save_err();
    assert_eq!(d.machine.next_deadline(), Some(d.at(100).instant));
    d.advance_to(50);
    assert_eq!(d.produce(&[batch(1, 0)], AckMode::Durable, 2), ["Flush"]);
    assert_eq!(
        d.flush_err(),
        ["Flush"],
        "the first failure retries at once"
    );
    // Two flush failures: the next flush at 150 ms.
    assert!(d.flush_err().is_empty());
    assert_eq!(d.machine.next_deadline(), Some(d.at(100).instant));
    assert_eq!(d.tick_at_deadline(), ["SaveCheckpoint"]);
    assert_eq!(d.now_ms, 100);
    assert!(d.flush.is_none(), "the flush still backs off");
    // With no flush in flight, the next checkpoint seals the abandoned segment.
    assert_eq!(d.save_ok(), ["Publish", "Reply", "SaveCheckpoint"]);
    assert!(d.pending_save().0.is_some());
    assert_eq!(d.machine.next_deadline(), Some(d.at(150).instant));
    assert_eq!(d.tick_at_deadline(), ["Flush"]);
    d.settle();
    assert_eq!(d.reply(2), Some(&ok(1, 1)));
}

#[test]
fn a_pending_seal_goes_with_a_checkpoint_when_no_flush_is_in_flight() {
    let mut d = Driver::writing(config());
    d.produce(&[batch(2, 0)], AckMode::Durable, 1);
    d.settle();
    let abandoned = d.last_published().segments[0].clone();
    d.produce(&[batch(1, 0)], AckMode::Durable, 2);
    // With no checkpoint in flight, the abandoned segment is sealed by one
    // at once, and the failed data is written again meanwhile.
    assert_eq!(d.flush_err(), ["SaveCheckpoint", "Flush"]);
    let (seal, checkpoint) = d.pending_save();
    assert_eq!(seal.as_ref().map(|s| &s.name), Some(&abandoned.name));
    assert_eq!(checkpoint.high_watermark, 2);
    assert!(checkpoint.segments[0].sealed);
    let retry = d.pending_flush();
    assert_eq!(retry.seal, None, "the checkpoint seals");
    assert!(
        matches!(&retry.target, SegmentTarget::New { name, .. } if *name == paths::segment_name(2, EPOCH, 1))
    );
    // A failed save is retried with its seal.
    assert!(d.save_err().is_empty());
    assert_eq!(d.tick(), ["SaveCheckpoint"]);
    assert_eq!(
        d.pending_save().0.as_ref().map(|s| &s.name),
        Some(&abandoned.name)
    );
    assert_eq!(d.save_ok(), ["Publish"]);
    assert_eq!(d.flush_ok(), ["SaveCheckpoint"]);
    assert_eq!(d.save_ok(), ["Publish", "Reply"]);
    assert_eq!(d.reply(2), Some(&ok(2, 2)));
}

//! Fencing and the takeover race: a newer owner fences this one, an older
//! owner that saved first makes this one recover again; takeover
//! checkpoints are carried by every checkpoint and kept from pruning.

use super::*;

/// The previous owner, still running, appended a batch (offsets 25..30) to
/// its open segment `B` and saved checkpoint 6 first.
fn previous_owner_saved_again(d: &mut Driver, found: &Checkpoint) -> Checkpoint {
    let extra = previous_batches(25, 1, 3_000);
    let mut newer = found.clone();
    let open = &mut newer.segments[1];
    let len = open.len();
    d.store
        .get_mut(&open.name)
        .expect("B")
        .extend_from_slice(&extra[0]);
    d.durable
        .insert(open.name.clone(), len + extra[0].len() as u64);
    open.layout = match &open.layout {
        SegmentLayout::Chunks { lens } => {
            let mut lens = lens.clone();
            lens.push(extra[0].len() as u64);
            SegmentLayout::Chunks { lens }
        }
        _ => SegmentLayout::File {
            len: len + extra[0].len() as u64,
        },
    };
    open.index.push(entry(25, len, open.max_timestamp));
    open.max_timestamp = max_timestamp(&extra);
    open.end_offset = 30;
    newer.sequence = 6;
    newer.high_watermark = 30;
    newer.written_at_ms = 4;
    newer
}

#[test]
fn a_fenced_takeover_rejects_the_queued_produces_and_stops() {
    let mut d = Driver::new(config());
    d.recover(None, None);
    assert!(d.produce(&[batch(2, 0)], AckMode::Durable, 1).is_empty());
    assert!(d.produce(&[batch(1, 0)], AckMode::Buffer, 2).is_empty());
    assert_eq!(d.save_fenced(9), ["Reply", "Reply", "Stop"]);
    assert!(d.stopped);
    assert_eq!(d.machine.phase(), Phase::Fenced);
    assert_eq!(d.replies, vec![(1, fenced(9)), (2, fenced(9))]);
    assert_eq!(d.machine.buffered_bytes(), 0);
    assert!(d.save.is_none() && d.flush.is_none());
    // Anything after that is rejected, naming the new owner's epoch.
    assert_eq!(d.produce(&[batch(1, 0)], AckMode::Buffer, 3), ["Reply"]);
    assert_eq!(d.reply(3), Some(&fenced(9)));
    assert!(d.tick().is_empty());
    assert!(d.published.is_empty());
}

#[test]
fn a_fenced_writer_stops_and_rejects_its_waiters() {
    let mut d = Driver::writing(config());
    d.produce(&[batch(2, 0)], AckMode::Durable, 1);
    assert_eq!(d.flush_ok(), ["SaveCheckpoint"]);
    // The next flush runs while the checkpoint is saved.
    assert_eq!(d.produce(&[batch(2, 0)], AckMode::Durable, 2), ["Flush"]);
    assert_eq!(d.save_fenced(11), ["Reply", "Reply", "Stop"]);
    assert_eq!(d.replies, vec![(1, fenced(11)), (2, fenced(11))]);
    assert_eq!(d.machine.phase(), Phase::Fenced);
    assert_eq!(d.machine.high_watermark(), 0, "nothing became visible");
    assert!(d.tick().is_empty());
    // The flush still in flight ends; nothing follows.
    assert!(d.flush_ok().is_empty());
    assert_eq!(d.produce(&[batch(1, 0)], AckMode::Durable, 3), ["Reply"]);
    assert_eq!(d.reply(3), Some(&fenced(11)));
}

#[test]
fn a_checkpoint_of_a_newer_epoch_fences_recovery() {
    // This writer (epoch 7) was paused while epoch 9 took over and saved:
    // it must not save the next sequence over the newer owner's log.
    let mut d = Driver::new(config());
    let mut found = previous_log_file(&mut d);
    found.epoch = 9;
    assert!(d.produce(&[batch(1, 0)], AckMode::Durable, 1).is_empty());
    assert_eq!(d.recover(Some(found), None), ["Reply", "Stop"]);
    assert_eq!(d.reply(1), Some(&fenced(9)));
    assert!(d.save.is_none());
    assert_eq!(d.machine.phase(), Phase::Fenced);
    assert_eq!(d.produce(&[batch(1, 0)], AckMode::Durable, 2), ["Reply"]);
    assert_eq!(d.reply(2), Some(&fenced(9)));
}

#[test]
fn a_checkpoint_of_the_same_epoch_is_taken_over() {
    let mut d = Driver::new(config());
    let mut found = previous_log_file(&mut d);
    found.epoch = EPOCH;
    let len = found.segments[1].len();
    assert_eq!(d.recover(Some(found), Some((25, len))), ["SaveCheckpoint"]);
    d.save_ok();
}

#[test]
fn a_failed_takeover_checkpoint_is_retried_with_the_same_sequence_after_backoff() {
    let mut d = Driver::new(config());
    d.recover(None, None);
    let first = d.pending_save().1.clone();
    assert!(d.save_err().is_empty());
    assert_eq!(d.machine.phase(), Phase::Recovering);
    // The first retry is immediate.
    assert_eq!(d.machine.next_deadline(), Some(d.now().instant));
    assert_eq!(d.tick(), ["SaveCheckpoint"]);
    assert_eq!(d.pending_save().1, &first);
    // The second waits 100 ms.
    assert!(d.save_err().is_empty());
    assert_eq!(
        d.machine.next_deadline(),
        Some(d.at(100).instant),
        "backoff after two failures"
    );
    d.advance_to(50);
    assert!(d.tick().is_empty());
    d.advance_to(100);
    assert_eq!(d.tick(), ["SaveCheckpoint"]);
    assert_eq!(d.pending_save().1, &first, "same sequence, same content");
    assert_eq!(d.save_ok(), ["Publish"]);
    assert_eq!(d.machine.phase(), Phase::Writing);
}

#[test]
fn losing_the_takeover_race_to_an_older_owner_recovers_again() {
    let mut d = Driver::new(config());
    let found = previous_log_file(&mut d);
    let open = found.segments[1].clone();
    assert!(d.produce(&[batch(2, 0)], AckMode::Durable, 1).is_empty());
    d.recover(Some(found.clone()), Some((25, open.len())));
    assert_eq!(d.pending_save().1.sequence, 6);
    let newer = previous_owner_saved_again(&mut d, &found);
    assert_eq!(d.save_fenced(PREVIOUS_EPOCH), ["Recover"]);
    assert_eq!(d.machine.phase(), Phase::Recovering, "not fenced");
    assert_eq!(d.recoveries, 2);
    assert!(d.replies.is_empty(), "the queued produce still waits");
    assert!(d.tick().is_empty());
    assert!(d.produce(&[batch(1, 0)], AckMode::Buffer, 2).is_empty());

    let len = newer.segments[1].len();
    assert_eq!(
        d.recover(Some(newer.clone()), Some((30, len))),
        ["SaveCheckpoint"]
    );
    let (seal, checkpoint) = d.pending_save();
    assert_eq!(
        seal.as_ref().map(|s| (&s.name, &s.layout)),
        Some((&open.name, &SegmentLayout::File { len })),
        "sealed at the length the newer checkpoint covers"
    );
    assert_eq!(checkpoint.sequence, 7);
    assert_eq!(checkpoint.high_watermark, 30);
    assert_eq!(
        checkpoint.takeovers,
        [1, 3, 7],
        "the lost attempt at 6 is no takeover"
    );
    assert_eq!(d.save_ok(), ["Publish", "Reply", "Flush"]);
    assert_eq!(d.machine.phase(), Phase::Writing);
    assert_eq!(d.reply(2), Some(&ok(32, 32)));
    d.settle();
    assert_eq!(d.reply(1), Some(&ok(30, 31)));
    assert_eq!(d.machine.high_watermark(), 33);
    // The lost attempt wrote B's index for the shorter length first; the
    // task keeps an existing `.idx` (created if absent), whose entries
    // still point at batch boundaries, so the log reads correctly.
    assert_eq!(d.index_conflicts, std::slice::from_ref(&open.name));
    d.index_conflicts.clear();
}

#[test]
fn a_recovery_that_finds_a_newer_owner_after_a_lost_race_stops() {
    let mut d = Driver::new(config());
    let found = previous_log_file(&mut d);
    let len = found.segments[1].len();
    assert!(d.produce(&[batch(1, 0)], AckMode::Durable, 1).is_empty());
    d.recover(Some(found.clone()), Some((25, len)));
    assert_eq!(d.save_fenced(PREVIOUS_EPOCH), ["Recover"]);
    let mut newer = found;
    newer.sequence = 6;
    newer.epoch = 9;
    assert_eq!(d.recover(Some(newer), Some((25, len))), ["Reply", "Stop"]);
    assert_eq!(d.reply(1), Some(&fenced(9)));
    assert_eq!(d.machine.phase(), Phase::Fenced);
}

#[test]
fn merges_reported_for_a_lost_takeover_never_delete_chunks_still_read() {
    // The lost attempt sealed the previous owner's open segment B (three
    // chunks) and started merging them; the previous owner went on writing
    // B. Neither the merge reported before the second recovery nor the one
    // reported after it may touch B as the newer checkpoint describes it.
    let mut d = Driver::new(config());
    d.chunked = true;
    let found = previous_log(&mut d, true, [1_000, 2_000]);
    let open = found.segments[1].clone();
    d.recover(Some(found.clone()), Some((25, open.len())));
    let stale = SegmentLayout::Object { len: open.len() };
    assert!(d.merge_done(&open.name, stale.clone()).is_empty());
    let newer = previous_owner_saved_again(&mut d, &found);
    assert_eq!(d.save_fenced(PREVIOUS_EPOCH), ["Recover"]);
    let len = newer.segments[1].len();
    d.recover(Some(newer.clone()), Some((30, len)));
    let kinds = d.save_ok();
    assert!(!kinds.contains(&"DeleteChunks"), "{kinds:?}");
    d.settle();
    assert!(d.deleted_chunks.is_empty());
    assert!(
        d.merge_done(&open.name, stale).is_empty(),
        "a merge of fewer bytes than the segment holds is stale"
    );
    assert_eq!(
        d.machine.sealed_segments()[1].layout,
        newer.segments[1].layout
    );
    assert!(d.tick().is_empty());
    assert!(d.deleted_chunks.is_empty());
    assert_eq!(d.index_conflicts, std::slice::from_ref(&open.name));
    d.index_conflicts.clear();
}

#[test]
fn takeovers_are_carried_by_every_checkpoint_and_kept_from_pruning() {
    let mut d = Driver::new(config());
    let mut found = previous_log_file(&mut d);
    found.sequence = 63;
    let len = found.segments[1].len();
    d.recover(Some(found), Some((25, len)));
    assert_eq!(d.pending_save().1.sequence, 64);
    assert_eq!(d.save_ok(), ["PruneCheckpoints", "Publish"]);
    assert_eq!(d.pruned, [(64, vec![1, 3, 64])]);
    d.produce(&[batch(1, 0)], AckMode::Durable, 0);
    d.settle();
    assert_eq!(d.last_published().sequence, 65);
    assert_eq!(d.pruned.len(), 1, "not again until 128");
    for waiter in 1..64 {
        d.produce(&[batch(1, 0)], AckMode::Durable, waiter);
        d.settle();
    }
    assert_eq!(d.last_published().sequence, 128);
    assert!(d.published.iter().all(|c| c.takeovers == [1, 3, 64]));
    assert_eq!(d.pruned, [(64, vec![1, 3, 64]), (128, vec![1, 3, 64])]);
}

#[test]
fn only_the_newest_64_takeovers_are_kept() {
    let mut d = Driver::new(config());
    let mut found = previous_log_file(&mut d);
    found.sequence = 1000;
    found.takeovers = (1..=64).map(|i| i * 10).collect();
    let len = found.segments[1].len();
    d.recover(Some(found), Some((25, len)));
    let takeovers = &d.pending_save().1.takeovers;
    assert_eq!(takeovers.len(), 64);
    assert_eq!(takeovers[0], 20, "the oldest dropped");
    assert_eq!(takeovers[63], 1001);
    d.save_ok();
}

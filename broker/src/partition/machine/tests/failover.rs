//! Failover: a failed write abandons the open segment at its last
//! successful flush and writes the failed data again into a new segment;
//! retries back off; seals that may not have happened are redone.

use super::*;

#[test]
fn a_failed_first_write_starts_over_in_a_segment_with_a_new_name() {
    let mut d = Driver::writing(config());
    let data = batch(2, 0);
    d.produce(std::slice::from_ref(&data), AckMode::Durable, 1);
    let first = d.pending_flush().clone();
    assert_eq!(d.flush_err(), ["Flush"], "the first retry is immediate");
    assert!(d.replies.is_empty());
    let retry = d.pending_flush().clone();
    assert_eq!(retry.seal, None, "nothing was flushed, nothing to seal");
    assert_eq!(
        retry.target,
        SegmentTarget::New {
            name: paths::segment_name(0, EPOCH, 1),
            avoid: None,
        }
    );
    assert_ne!(retry.target, first.target);
    assert_eq!(retry.data, first.data, "the same bytes again");
    d.settle();
    assert_eq!(d.reply(1), Some(&ok(0, 1)));
    assert_eq!(
        d.last_published().segments[0].name,
        paths::segment_name(0, EPOCH, 1)
    );

    // A later new segment at another offset starts again at attempt 0.
    let mut cfg = config();
    cfg.segment_bytes = 1;
    let mut d = Driver::writing(cfg);
    d.produce(&[batch(1, 0)], AckMode::Durable, 1);
    d.flush_err();
    d.settle();
    d.produce(&[batch(1, 0)], AckMode::Durable, 2);
    assert_eq!(
        d.pending_flush().target,
        SegmentTarget::New {
            name: paths::segment_name(1, EPOCH, 0),
            avoid: Some(VOLUME.into()),
        }
    );
    d.settle();
}

#[test]
fn a_failed_append_abandons_the_segment_at_its_last_flushed_length() {
    let mut d = Driver::writing(config());
    d.produce(&[batch(2, 100)], AckMode::Durable, 1);
    d.settle();
    let flushed = d.last_published().segments[0].clone();
    assert_eq!(flushed.end_offset, 2);

    d.produce(&[batch(3, 200)], AckMode::Durable, 2);
    let failed = d.pending_flush().clone();
    assert_eq!(failed.target, SegmentTarget::Open);
    assert_eq!(d.produce(&[batch(1, 300)], AckMode::Buffer, 3), ["Reply"]);
    assert_eq!(d.reply(3), Some(&ok(5, 5)));
    // Part of the data reaches the file before the error. With no
    // checkpoint in flight one seals the segment at once, while the failed
    // data is written again.
    assert_eq!(
        d.flush_err_after_partial_write(),
        ["SaveCheckpoint", "Flush"]
    );
    let (seal, checkpoint) = d.pending_save();
    assert_eq!(
        seal.as_ref(),
        Some(&SealJob {
            name: flushed.name.clone(),
            volume: VOLUME.into(),
            layout: flushed.layout.clone(),
            index: SparseIndex::new(flushed.index.clone()).encode(),
        })
    );
    assert_eq!(checkpoint.high_watermark, 2);
    let retry = d.pending_flush().clone();
    assert_eq!(retry.seal, None);
    assert!(
        matches!(&retry.target, SegmentTarget::New { name, .. } if *name == paths::segment_name(2, EPOCH, 1))
    );
    assert_eq!(
        retry.data[..1],
        failed.data[..],
        "the failed data first, unchanged"
    );
    assert_eq!(retry.data.len(), 2);
    d.settle();
    let checkpoint = d.last_published();
    assert_eq!(checkpoint.segments.len(), 2);
    let mut sealed = flushed.clone();
    sealed.sealed = true;
    sealed.index.clear();
    assert_eq!(checkpoint.segments[0], sealed);
    assert_eq!(checkpoint.segments[1].base_offset, 2);
    assert_eq!(checkpoint.segments[1].end_offset, 6);
    assert_eq!(checkpoint.high_watermark, 6);
    assert_eq!(d.reply(2), Some(&ok(2, 4)));
}

#[test]
fn failover_while_a_checkpoint_is_in_flight_abandons_the_segment_at_its_flushed_length() {
    let mut d = Driver::writing(config());
    let (first, second) = (batch(2, 100), batch(3, 200));
    d.produce(std::slice::from_ref(&first), AckMode::Durable, 1);
    assert_eq!(d.flush_ok(), ["SaveCheckpoint"]);
    assert_eq!(d.pending_save().1.high_watermark, 2);
    // Flushed while checkpoint 2 (up to offset 2) is saved.
    d.produce(std::slice::from_ref(&second), AckMode::Durable, 2);
    assert!(d.flush_ok().is_empty());
    d.produce(&[batch(1, 300)], AckMode::Durable, 3);
    let failed = d.pending_flush().clone();
    assert_eq!(d.produce(&[batch(1, 400)], AckMode::Buffer, 4), ["Reply"]);
    assert_eq!(d.flush_err_after_partial_write(), ["Flush"]);
    let retry = d.pending_flush().clone();
    let flushed_len = (first.len() + second.len()) as u64;
    assert_eq!(
        retry.seal,
        Some(SealJob {
            name: paths::segment_name(0, EPOCH, 0),
            volume: VOLUME.into(),
            layout: SegmentLayout::File { len: flushed_len },
            index: SparseIndex::new(vec![entry(0, 0, -1), entry(2, first.len() as u64, 101)])
                .encode(),
        }),
        "sealed at its flushed length, not the checkpointed one"
    );
    assert_eq!(
        retry.target,
        SegmentTarget::New {
            name: paths::segment_name(5, EPOCH, 1),
            avoid: Some(VOLUME.into()),
        }
    );
    assert_eq!(retry.data[..1], failed.data[..]);
    assert_eq!(retry.data.len(), 2);
    // The checkpoint in flight is saved; the next waits for the seal.
    assert_eq!(d.save_ok(), ["Publish", "Reply"]);
    assert_eq!(d.reply(1), Some(&ok(0, 1)));
    assert_eq!(d.flush_ok(), ["SaveCheckpoint"]);
    let (_, checkpoint) = d.pending_save();
    assert_eq!(checkpoint.segments.len(), 2);
    assert!(checkpoint.segments[0].sealed);
    assert_eq!(checkpoint.segments[0].end_offset, 5);
    assert_eq!(checkpoint.segments[0].len(), flushed_len);
    assert_eq!(checkpoint.segments[1].base_offset, 5);
    assert_eq!(checkpoint.segments[1].end_offset, 7);
    assert_eq!(checkpoint.segments[1].volume, OTHER_VOLUME);
    assert_eq!(checkpoint.high_watermark, 7);
    assert_eq!(d.save_ok(), ["Publish", "Reply", "Reply"]);
    assert_eq!(d.reply(2), Some(&ok(2, 4)));
    assert_eq!(d.reply(3), Some(&ok(5, 5)));
    assert_eq!(d.reply(4), Some(&ok(6, 6)));
}

#[test]
fn write_retries_back_off() {
    let mut d = Driver::writing(config());
    d.produce(&[batch(1, 0)], AckMode::Durable, 1);
    assert_eq!(d.flush_err(), ["Flush"], "the first retry is immediate");
    assert!(d.flush_err().is_empty());
    // 100 ms after the second failure, 200 after the third.
    assert_eq!(d.machine.next_deadline(), Some(d.at(100).instant));
    d.advance_to(99);
    assert!(d.tick().is_empty());
    assert!(
        d.produce(&[batch(1, 0)], AckMode::Durable, 2).is_empty(),
        "a produce does not jump the backoff"
    );
    d.advance_to(100);
    assert_eq!(d.tick(), ["Flush"]);
    assert_eq!(d.pending_flush().data.len(), 2);
    assert!(d.flush_err().is_empty());
    assert_eq!(d.machine.next_deadline(), Some(d.at(300).instant));
    d.advance_to(299);
    assert!(d.tick().is_empty());
    d.advance_to(300);
    assert_eq!(d.tick(), ["Flush"]);
    d.settle();
    assert_eq!(d.reply(1), Some(&ok(0, 0)));
    assert_eq!(d.reply(2), Some(&ok(1, 1)));
    // Success resets the backoff.
    d.produce(&[batch(1, 0)], AckMode::Durable, 3);
    assert_eq!(d.flush_err(), ["SaveCheckpoint", "Flush"]);
    d.settle();
    assert_eq!(d.reply(3), Some(&ok(2, 2)));
}

#[test]
fn backoff_is_capped() {
    let mut d = Driver::writing(config());
    d.produce(&[batch(1, 0)], AckMode::Durable, 1);
    let mut waits = Vec::new();
    for _ in 0..12 {
        let failed_at = d.now_ms;
        let mut kinds = d.flush_err();
        // Retention checks may come first; the retry comes at its time.
        for _ in 0..3 {
            if !kinds.is_empty() {
                break;
            }
            kinds = d.tick_at_deadline();
        }
        assert_eq!(kinds, ["Flush"]);
        waits.push(d.now_ms - failed_at);
    }
    assert_eq!(
        waits,
        [
            0, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000, 5000
        ]
    );
    d.settle();
    assert_eq!(d.reply(1), Some(&ok(0, 0)));
}

#[test]
fn the_next_deadline_during_a_backoff_is_the_retry() {
    // With only buffer acks buffered, a tick before the retry can do nothing;
    // the deadline must not ask for one (the task would spin until the retry).
    let mut d = Driver::writing(config());
    d.produce(&[batch(1, 0)], AckMode::Buffer, 1);
    d.advance_to(10);
    assert_eq!(d.tick(), ["Flush"]);
    assert_eq!(
        d.flush_err(),
        ["Flush"],
        "a retry does not wait for the interval"
    );
    assert!(d.flush_err().is_empty());
    let retry = d.at(110).instant;
    for ms in [10, 20, 30, 50, 109] {
        d.advance_to(ms);
        let deadline = d.machine.next_deadline().expect("a deadline");
        assert!(
            deadline >= retry || deadline > d.now().instant,
            "at {ms} ms the next deadline is already due but nothing can happen until 110 ms"
        );
        assert!(d.tick().is_empty());
    }
    assert_eq!(d.machine.next_deadline(), Some(retry));
    d.advance_to(110);
    assert_eq!(d.tick(), ["Flush"]);
    d.settle();
}

#[test]
fn a_retry_is_not_held_back_by_a_longer_flush_interval() {
    let mut cfg = config();
    cfg.flush_interval = Duration::from_secs(1);
    let mut d = Driver::writing(cfg);
    d.produce(&[batch(1, 0)], AckMode::Durable, 1);
    assert_eq!(d.flush_err(), ["Flush"]);
    assert!(d.flush_err().is_empty());
    assert_eq!(
        d.machine.next_deadline(),
        Some(d.at(100).instant),
        "the retry is due after its backoff"
    );
    assert_eq!(d.tick_at_deadline(), ["Flush"]);
    assert_eq!(d.now_ms, 100);
    d.settle();
    assert_eq!(d.reply(1), Some(&ok(0, 0)));
}

#[test]
fn the_seal_of_an_abandoned_segment_survives_a_failed_retry() {
    // The abandoned segment's volume may be the one failing, so a retry
    // carrying its seal can fail too; the seal must not be forgotten.
    let mut d = Driver::writing(config());
    d.produce(&[batch(2, 0)], AckMode::Durable, 1);
    // Its checkpoint stays in flight, so the seal goes with the retries.
    assert_eq!(d.flush_ok(), ["SaveCheckpoint"]);
    let abandoned = paths::segment_name(0, EPOCH, 0);
    d.produce(&[batch(2, 0)], AckMode::Durable, 2);
    assert_eq!(d.flush_err(), ["Flush"]);
    assert_eq!(
        d.pending_flush().seal.as_ref().map(|s| &s.name),
        Some(&abandoned)
    );
    // This retry seals, then fails to create its segment.
    assert!(d.flush_err_after_partial_write().is_empty());
    assert_eq!(d.tick_at_deadline(), ["Flush"]);
    let retry = d.pending_flush();
    assert_eq!(
        retry.seal.as_ref().map(|s| &s.name),
        Some(&abandoned),
        "the seal is redone"
    );
    assert_eq!(
        retry.target,
        SegmentTarget::New {
            name: paths::segment_name(2, EPOCH, 2),
            avoid: Some(VOLUME.into()),
        }
    );
    d.settle();
    assert_eq!(d.reply(2), Some(&ok(2, 3)));
}

#[test]
fn the_seal_of_a_rolled_segment_survives_a_failed_write() {
    let mut cfg = config();
    cfg.segment_bytes = 1;
    let mut d = Driver::writing(cfg);
    d.produce(&[batch(2, 0)], AckMode::Durable, 1);
    assert_eq!(d.flush_ok(), ["SaveCheckpoint"]);
    let rolled = paths::segment_name(0, EPOCH, 0);
    d.produce(&[batch(2, 0)], AckMode::Durable, 2);
    assert_eq!(
        d.pending_flush().seal.as_ref().map(|s| &s.name),
        Some(&rolled)
    );
    // With a checkpoint in flight, the retry redoes the seal ...
    assert_eq!(d.flush_err(), ["Flush"]);
    assert_eq!(
        d.pending_flush().seal.as_ref().map(|s| &s.name),
        Some(&rolled),
        "the seal is retried"
    );
    // ... and with none, a checkpoint does, while the data is written again.
    d.save_ok();
    assert_eq!(d.flush_err(), ["SaveCheckpoint"]);
    assert_eq!(d.pending_save().0.as_ref().map(|s| &s.name), Some(&rolled));
    assert_eq!(d.tick_at_deadline(), ["Flush"]);
    assert_eq!(d.pending_flush().seal, None);
    d.settle();
    assert_eq!(d.reply(2), Some(&ok(2, 3)));
}

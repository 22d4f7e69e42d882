//! Recovery: the first action, taking over the last checkpoint (sealing,
//! truncating), and produce requests queued until the takeover is saved.

use sluice_record::BatchIter;

use super::*;

#[test]
fn a_started_partition_recovers_before_anything_else() {
    let mut d = Driver::new(config());
    assert_eq!(d.recoveries, 1, "start asks to recover");
    assert_eq!(d.machine.phase(), Phase::Recovering);
    assert_eq!(d.machine.next_deadline(), None);
    d.advance_to(60_000);
    assert!(d.tick().is_empty(), "nothing to do until recovered");
    assert!(d.flush.is_none() && d.save.is_none());
}

#[test]
fn recovering_an_empty_partition_saves_checkpoint_one_then_writes() {
    let mut d = Driver::new(config());
    assert_eq!(d.recover(None, None), ["SaveCheckpoint"]);
    let (seal, checkpoint) = d.pending_save();
    assert!(seal.is_none());
    assert_eq!(
        checkpoint,
        &Checkpoint {
            sequence: 1,
            epoch: EPOCH,
            topic_id: TOPIC_ID.into(),
            log_start_offset: 0,
            high_watermark: 0,
            segments: Vec::new(),
            takeovers: vec![1],
            requests: Vec::new(),
            producers: Default::default(),
            written_at_ms: START_MS,
        }
    );
    assert_eq!(d.machine.phase(), Phase::Recovering);
    assert_eq!(d.save_ok(), ["Publish"]);
    assert_eq!(d.machine.phase(), Phase::Writing);
    assert_eq!(d.last_published().sequence, 1);
    assert_eq!(d.machine.high_watermark(), 0);
    assert_eq!(d.machine.log_end_offset(), 0);
}

#[test]
fn recovery_seals_the_open_segment_and_saves_the_next_sequence_under_its_epoch() {
    let mut d = Driver::new(config());
    let found = previous_log_file(&mut d);
    let open = found.segments[1].clone();
    assert_eq!(
        d.recover(Some(found.clone()), Some((25, open.len()))),
        ["SaveCheckpoint"]
    );
    let (seal, checkpoint) = d.pending_save();
    assert_eq!(
        seal.as_ref(),
        Some(&SealJob {
            name: open.name.clone(),
            volume: OTHER_VOLUME.into(),
            layout: open.layout.clone(),
            index: SparseIndex::new(open.index.clone()).encode(),
        })
    );
    assert_eq!(checkpoint.sequence, 6);
    assert_eq!(checkpoint.epoch, EPOCH);
    assert_eq!(checkpoint.high_watermark, 25);
    assert_eq!(checkpoint.log_start_offset, 0);
    assert_eq!(checkpoint.takeovers, [1, 3, 6], "its own takeover added");
    let mut sealed = open.clone();
    sealed.sealed = true;
    sealed.index = Vec::new();
    assert_eq!(checkpoint.segments, vec![found.segments[0].clone(), sealed]);

    // Nothing is writable, and the old high watermark stays, until the save.
    assert_eq!(d.machine.phase(), Phase::Recovering);
    assert_eq!(d.save_ok(), ["Publish"]);
    assert_eq!(d.machine.phase(), Phase::Writing);
    assert_eq!(d.machine.high_watermark(), 25);

    // New data goes to a new segment at the end, named for this epoch.
    assert_eq!(d.produce(&[batch(2, 5000)], AckMode::Durable, 1), ["Flush"]);
    let job = d.pending_flush();
    assert_eq!(job.seal, None);
    assert_eq!(
        job.target,
        SegmentTarget::New {
            name: paths::segment_name(25, EPOCH, 0),
            avoid: None,
        }
    );
    d.settle();
    assert_eq!(d.reply(1), Some(&ok(25, 26)));
    let last = d.last_published();
    assert_eq!(last.sequence, 7);
    assert_eq!(last.high_watermark, 27);
    assert_eq!(last.segments.len(), 3);
    assert_eq!(last.segments[2].base_offset, 25);
    assert_eq!(last.segments[2].epoch, EPOCH);
    assert_eq!(last.takeovers, [1, 3, 6], "carried by later checkpoints");
}

#[test]
fn recovery_truncates_the_open_segment_to_its_verified_prefix() {
    let mut d = Driver::new(config());
    let found = previous_log_file(&mut d);
    let open = found.segments[1].clone();
    // The third batch (offsets 20..25) is damaged.
    let cut = open.index[2].position;
    d.store.get_mut(&open.name).expect("B")[cut as usize + 30] ^= 0xff;
    d.recover(Some(found), Some((20, cut)));
    let (seal, checkpoint) = d.pending_save();
    let seal = seal.as_ref().expect("seal job");
    assert_eq!(seal.layout, SegmentLayout::File { len: cut });
    let index = SparseIndex::decode("idx", &seal.index).expect("index");
    // The entry of the third batch pointed past the verified prefix.
    assert_eq!(index.entries(), &open.index[..2]);
    assert_eq!(checkpoint.high_watermark, 20);
    let truncated = &checkpoint.segments[1];
    assert_eq!(truncated.end_offset, 20);
    assert_eq!(truncated.layout, SegmentLayout::File { len: cut });
    assert!(truncated.sealed);
    d.save_ok();
    assert_eq!(d.machine.high_watermark(), 20);
    assert_eq!(d.produce(&[batch(1, 0)], AckMode::Buffer, 1), ["Reply"]);
    assert_eq!(d.reply(1), Some(&ok(20, 20)));
}

#[test]
fn recovery_truncates_a_chunked_open_segment_after_its_last_verified_chunk() {
    let mut d = Driver::new(config());
    let found = previous_log(&mut d, true, [1_000, 2_000]);
    let open = &found.segments[1];
    let SegmentLayout::Chunks { lens } = open.layout.clone() else {
        panic!("chunked");
    };
    d.recover(Some(found.clone()), Some((20, lens[0] + lens[1])));
    let (seal, checkpoint) = d.pending_save();
    let chunks = SegmentLayout::Chunks {
        lens: lens[..2].to_vec(),
    };
    assert_eq!(seal.as_ref().map(|s| &s.layout), Some(&chunks));
    assert_eq!(checkpoint.segments[1].layout, chunks);
    d.save_ok();
}

#[test]
fn recovery_keeps_the_verified_part_of_a_damaged_chunk() {
    let mut d = Driver::new(config());
    let mut found = previous_log(&mut d, true, [1_000, 2_000]);
    let open = &mut found.segments[1];
    let SegmentLayout::Chunks { lens } = open.layout.clone() else {
        panic!("chunked");
    };
    // One flush wrote the second and third batches as one chunk; the third is damaged.
    open.layout = SegmentLayout::Chunks {
        lens: vec![lens[0], lens[1] + lens[2]],
    };
    let cut = lens[0] + lens[1];
    d.recover(Some(found.clone()), Some((20, cut)));
    let (seal, checkpoint) = d.pending_save();
    let kept = SegmentLayout::Chunks {
        lens: vec![lens[0], lens[1]],
    };
    assert_eq!(seal.as_ref().map(|s| &s.layout), Some(&kept));
    assert_eq!(checkpoint.segments[1].layout, kept);
    assert_eq!(checkpoint.segments[1].len(), cut);
    assert_eq!(checkpoint.high_watermark, 20);
    d.save_ok();
}

#[test]
fn recovery_keeps_a_checkpoint_whose_segments_are_all_sealed() {
    let mut d = Driver::new(config());
    let mut found = previous_log_file(&mut d);
    let index = SparseIndex::new(std::mem::take(&mut found.segments[1].index)).encode();
    found.segments[1].sealed = true;
    d.store_previous_index(&found.segments[1].name, index);
    d.recover(Some(found.clone()), None);
    let (seal, checkpoint) = d.pending_save();
    assert_eq!(seal, &None);
    assert_eq!(checkpoint.segments, found.segments);
    assert_eq!(checkpoint.high_watermark, 25);
    assert_eq!(checkpoint.sequence, 6);
    d.save_ok();
}

#[test]
fn recovery_drops_an_empty_open_segment_without_sealing_it() {
    let mut d = Driver::new(config());
    let mut found = previous_log_file(&mut d);
    found.high_watermark = 10;
    found.segments[1].end_offset = 10;
    found.segments[1].layout = SegmentLayout::File { len: 0 };
    found.segments[1].index.clear();
    d.recover(Some(found.clone()), Some((10, 0)));
    let (seal, checkpoint) = d.pending_save();
    assert_eq!(seal, &None, "nothing to seal");
    assert_eq!(checkpoint.segments, vec![found.segments[0].clone()]);
    assert_eq!(checkpoint.high_watermark, 10);
    d.save_ok();
}

#[test]
fn recovery_keeps_the_log_start_offset() {
    let mut d = Driver::new(config());
    let mut found = previous_log_file(&mut d);
    found.segments.remove(0);
    found.log_start_offset = 10;
    let len = found.segments[0].len();
    d.recover(Some(found), Some((25, len)));
    assert_eq!(d.pending_save().1.log_start_offset, 10);
    d.save_ok();
}

#[test]
fn produces_during_recovery_wait_and_are_appended_in_order_after_the_takeover() {
    let mut d = Driver::new(config());
    let found = previous_log_file(&mut d);
    let len = found.segments[1].len();
    // Before the checkpoint is even read: no offsets yet, so no answer either.
    let (first, second, third) = (batch(2, 10), batch(1, 20), batch(3, 30));
    assert!(
        d.produce(std::slice::from_ref(&first), AckMode::Durable, 1)
            .is_empty()
    );
    assert!(
        d.produce(std::slice::from_ref(&second), AckMode::Buffer, 2)
            .is_empty()
    );
    assert_eq!(
        d.machine.buffered_bytes(),
        (first.len() + second.len()) as u64,
        "queued requests count against the buffer"
    );
    assert_eq!(d.machine.log_end_offset(), 0);
    assert!(d.tick().is_empty());
    assert_eq!(d.recover(Some(found), Some((25, len))), ["SaveCheckpoint"]);
    // While the takeover is saved too.
    assert!(
        d.produce(std::slice::from_ref(&third), AckMode::Durable, 3)
            .is_empty()
    );
    assert!(d.replies.is_empty());
    assert_eq!(d.save_ok(), ["Publish", "Reply", "Flush"]);
    assert_eq!(d.reply(2), Some(&ok(27, 27)));
    let job = d.pending_flush();
    assert_eq!(
        job.target,
        SegmentTarget::New {
            name: paths::segment_name(25, EPOCH, 0),
            avoid: None,
        }
    );
    assert_eq!(job.data.len(), 3, "the three requests, in order");
    let bases: Vec<i64> = job
        .data
        .iter()
        .flat_map(|data| BatchIter::new(data.clone()))
        .map(|b| b.expect("batch").header.base_offset)
        .collect();
    assert_eq!(bases, [25, 27, 28]);
    d.settle();
    assert_eq!(d.reply(1), Some(&ok(25, 26)));
    assert_eq!(d.reply(3), Some(&ok(28, 30)));
    assert_eq!(d.answered(), [2, 1, 3]);
    assert_eq!(d.machine.high_watermark(), 31);
}

#[test]
fn queued_buffer_acks_are_flushed_on_the_interval_after_the_takeover() {
    let mut d = Driver::new(config());
    assert!(d.produce(&[batch(1, 0)], AckMode::Buffer, 1).is_empty());
    d.recover(None, None);
    d.advance_to(5);
    assert_eq!(d.save_ok(), ["Publish", "Reply"]);
    assert_eq!(d.reply(1), Some(&ok(0, 0)));
    // The first retention check is due at once; then the flush interval,
    // counted from the append.
    assert!(d.tick().is_empty());
    assert_eq!(d.machine.next_deadline(), Some(d.at(15).instant));
    assert_eq!(d.tick_at_deadline(), ["Flush"]);
    d.settle();
    assert_eq!(d.machine.high_watermark(), 1);
}

#[test]
fn stop_during_recovery_rejects_the_queued_produces_in_order() {
    let mut d = Driver::new(config());
    d.produce(&[batch(1, 0)], AckMode::Buffer, 1);
    d.produce(&[batch(1, 0)], AckMode::Durable, 2);
    assert_eq!(d.stop(), ["Reply", "Reply"]);
    assert_eq!(
        d.replies,
        vec![
            (1, Err(WriteRejected::Stopped)),
            (2, Err(WriteRejected::Stopped)),
        ]
    );
    assert_eq!(d.machine.buffered_bytes(), 0);
}

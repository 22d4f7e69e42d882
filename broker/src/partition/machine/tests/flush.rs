//! Flush, index and roll: what a flush and its checkpoint record, sparse
//! index entries across flushes, rolling by size and age.

use super::*;

#[test]
fn a_flush_checkpoints_the_open_segment_before_anything_is_visible() {
    let mut d = Driver::writing(config());
    d.advance_to(20);
    let batches = [batch(2, 1_000), batch(3, 2_000)];
    let len = total_len(&batches);
    d.produce(&batches, AckMode::Durable, 1);
    assert_eq!(
        d.pending_flush().target,
        SegmentTarget::New {
            name: paths::segment_name(0, EPOCH, 0),
            avoid: None,
        }
    );
    assert_eq!(d.flush_ok(), ["SaveCheckpoint"]);
    assert_eq!(d.machine.high_watermark(), 0, "flushed is not yet visible");
    let (seal, checkpoint) = d.pending_save();
    assert!(seal.is_none());
    assert_eq!(checkpoint.sequence, 2);
    assert_eq!(checkpoint.epoch, EPOCH);
    assert_eq!(checkpoint.high_watermark, 5);
    assert_eq!(checkpoint.log_start_offset, 0);
    assert_eq!(checkpoint.written_at_ms, START_MS + 20);
    assert_eq!(checkpoint.takeovers, [1]);
    assert_eq!(
        checkpoint.segments,
        vec![SegmentMeta {
            name: paths::segment_name(0, EPOCH, 0),
            base_offset: 0,
            end_offset: 5,
            epoch: EPOCH,
            volume: VOLUME.into(),
            layout: SegmentLayout::File { len },
            max_timestamp: 2_002,
            created_at_ms: START_MS + 20,
            sealed: false,
            index: vec![entry(0, 0, -1), entry(2, batches[0].len() as u64, 1_001)],
        }]
    );
    d.save_ok();
    assert_eq!(d.machine.high_watermark(), 5);
    assert_eq!(d.last_published().high_watermark, 5);
    d.check_log();
}

#[test]
fn a_chunked_segment_records_one_chunk_per_flush() {
    let mut d = Driver::writing(config());
    d.chunked = true;
    let (first, second) = (batch(2, 0), batch(1, 0));
    d.produce(std::slice::from_ref(&first), AckMode::Durable, 1);
    d.settle();
    d.produce(std::slice::from_ref(&second), AckMode::Durable, 2);
    d.settle();
    assert_eq!(
        d.last_published().segments[0].layout,
        SegmentLayout::Chunks {
            lens: vec![first.len() as u64, second.len() as u64]
        }
    );
}

#[test]
fn index_entries_continue_across_flushes_at_the_interval() {
    let one = batch(1, 0);
    let mut cfg = config();
    // An entry at most every two batches.
    cfg.index_interval_bytes = 2 * one.len() as u64;
    let mut d = Driver::writing(cfg);
    for waiter in 0..5 {
        d.produce(
            &[batch(1, i64::from(waiter) * 10)],
            AckMode::Durable,
            waiter,
        );
        d.settle();
    }
    let segment = &d.last_published().segments[0];
    let step = one.len() as u64;
    assert_eq!(
        segment.index,
        vec![
            entry(0, 0, -1),
            entry(2, 2 * step, 10),
            entry(4, 4 * step, 30)
        ]
    );
}

#[test]
fn a_full_segment_is_sealed_and_the_next_opens_at_its_end() {
    let mut cfg = config();
    cfg.segment_bytes = 1;
    let mut d = Driver::writing(cfg);
    d.produce(&[batch(2, 10), batch(1, 20)], AckMode::Durable, 1);
    d.settle();
    let first = d.last_published().segments[0].clone();
    assert!(!first.sealed);
    // The roll happens with the next flush.
    assert!(d.tick().is_empty());
    assert_eq!(d.produce(&[batch(4, 30)], AckMode::Durable, 2), ["Flush"]);
    let job = d.pending_flush().clone();
    assert_eq!(
        job.seal,
        Some(SealJob {
            name: first.name.clone(),
            volume: VOLUME.into(),
            layout: first.layout.clone(),
            index: SparseIndex::new(first.index.clone()).encode(),
        })
    );
    assert_eq!(
        job.target,
        SegmentTarget::New {
            name: paths::segment_name(3, EPOCH, 0),
            avoid: Some(VOLUME.into()),
        }
    );
    d.settle();
    let checkpoint = d.last_published();
    assert_eq!(checkpoint.segments.len(), 2);
    assert!(checkpoint.segments[0].sealed);
    assert!(checkpoint.segments[0].index.is_empty());
    assert_eq!(checkpoint.segments[0].end_offset, 3);
    assert_eq!(checkpoint.segments[1].base_offset, 3);
    assert_eq!(checkpoint.segments[1].end_offset, 7);
    assert!(!checkpoint.segments[1].sealed);
    assert_eq!(checkpoint.segments[1].volume, OTHER_VOLUME);
    assert_eq!(d.machine.sealed_segments().len(), 1);
    assert!(
        d.writer
            .as_ref()
            .is_some_and(|w| w.name == paths::segment_name(3, EPOCH, 0))
    );
    assert!(d.indexes.contains_key(&first.name), "the .idx is written");
}

#[test]
fn a_segment_below_the_size_limit_is_not_rolled() {
    let mut cfg = config();
    cfg.segment_bytes = 10 * batch(1, 0).len() as u64;
    let mut d = Driver::writing(cfg);
    for waiter in 0..9 {
        d.produce(&[batch(1, 0)], AckMode::Durable, waiter);
        assert_eq!(d.pending_flush().seal, None);
        d.settle();
    }
    assert_eq!(d.last_published().segments.len(), 1);
    d.produce(&[batch(1, 0)], AckMode::Durable, 9);
    d.settle();
    // Now at the limit: the next flush rolls.
    d.produce(&[batch(1, 0)], AckMode::Durable, 10);
    assert!(d.pending_flush().seal.is_some());
    d.settle();
}

#[test]
fn an_old_segment_is_rolled_by_age() {
    let mut cfg = config();
    cfg.segment_age = Duration::from_secs(60);
    let mut d = Driver::writing(cfg);
    d.produce(&[batch(1, 0)], AckMode::Durable, 1);
    d.settle();
    d.advance_to(59_999);
    d.produce(&[batch(1, 0)], AckMode::Durable, 2);
    assert_eq!(d.pending_flush().seal, None);
    d.advance_to(60_000);
    d.settle();
    d.produce(&[batch(1, 0)], AckMode::Durable, 3);
    let job = d.pending_flush();
    assert!(job.seal.is_some(), "rolled at 60 s");
    assert_eq!(
        job.target,
        SegmentTarget::New {
            name: paths::segment_name(2, EPOCH, 0),
            avoid: Some(VOLUME.into()),
        }
    );
    d.settle();
}

#[test]
fn min_flush_interval_gathers_durable_produces_into_one_flush() {
    let mut cfg = config();
    cfg.min_flush_interval = Duration::from_millis(100);
    let mut d = Driver::writing(cfg);
    d.advance_to(10);
    // The first flush starts at once: nothing was flushed recently.
    assert_eq!(d.produce(&[batch(1, 0)], AckMode::Durable, 1), ["Flush"]);
    d.settle();
    assert_eq!(d.answered(), [1]);
    // The next durable produces wait for the interval, then go out together.
    d.advance_to(20);
    assert!(d.produce(&[batch(1, 0)], AckMode::Durable, 2).is_empty());
    d.advance_to(50);
    assert!(d.produce(&[batch(2, 0)], AckMode::Durable, 3).is_empty());
    assert!(
        d.tick().is_empty(),
        "held until 100 ms after the last flush"
    );
    assert_eq!(
        d.machine.next_deadline(),
        Some(d.at(110).instant),
        "the machine asks to be woken when the interval ends"
    );
    assert_eq!(d.tick_at_deadline(), ["Flush"]);
    assert_eq!(
        d.pending_flush().data.len(),
        2,
        "both produces in one flush"
    );
    d.settle();
    assert_eq!(d.answered(), [1, 2, 3]);
    d.check_log();
}

#[test]
fn min_flush_interval_never_holds_back_a_full_buffer() {
    let one = batch(1, 0);
    let mut cfg = config();
    cfg.min_flush_interval = Duration::from_secs(3600);
    cfg.flush_bytes = 2 * one.len() as u64;
    let mut d = Driver::writing(cfg);
    d.produce(std::slice::from_ref(&one), AckMode::Durable, 1);
    d.settle();
    assert!(
        d.produce(std::slice::from_ref(&one), AckMode::Durable, 2)
            .is_empty()
    );
    assert_eq!(
        d.produce(std::slice::from_ref(&one), AckMode::Durable, 3),
        ["Flush"],
        "flush_bytes reached"
    );
    d.settle();
    assert_eq!(d.answered(), [1, 2, 3]);
}

//! Retention and merges: segments dropped by age or size, and chunks of
//! merged segments, are deleted only once a saved checkpoint no longer
//! names them; a merge report starts a checkpoint.

use super::*;

/// A partition with three segments of one 3-record batch each: two sealed, one open.
fn three_segments(mut cfg: PartitionConfig, timestamps: [i64; 3]) -> Driver {
    cfg.segment_bytes = 1;
    let mut d = Driver::writing(cfg);
    for (waiter, timestamp) in timestamps.into_iter().enumerate() {
        d.produce(&[batch(3, timestamp)], AckMode::Durable, waiter as u32);
        d.settle();
    }
    assert_eq!(d.last_published().segments.len(), 3);
    assert_eq!(d.machine.sealed_segments().len(), 2);
    d
}

#[test]
fn retention_by_size_drops_the_oldest_segments_once_a_checkpoint_forgets_them() {
    let size = batch(3, 0).len() as u64;
    let mut cfg = config();
    // Three segments of `size`; keeping 2 * size allows dropping one.
    cfg.retention_bytes = Some(2 * size);
    let mut d = three_segments(cfg, [START_MS; 3]);
    let oldest = d.last_published().segments[0].clone();
    assert!(
        d.tick().is_empty(),
        "no retention check before its interval"
    );
    d.advance_to(30_000);
    assert_eq!(d.tick(), ["SaveCheckpoint"]);
    let (seal, checkpoint) = d.pending_save();
    assert!(seal.is_none());
    assert_eq!(checkpoint.segments.len(), 2);
    assert_eq!(checkpoint.segments[0].base_offset, 3);
    assert_eq!(checkpoint.log_start_offset, 3);
    assert_eq!(checkpoint.high_watermark, 9);
    assert!(
        d.deleted_segments.is_empty(),
        "not before the checkpoint is saved"
    );
    assert_eq!(d.save_ok(), ["Publish", "DeleteSegments"]);
    assert_eq!(d.deleted_segments, vec![oldest]);
    assert_eq!(d.last_published().log_start_offset, 3);
    // Nothing more to drop.
    assert!(d.tick().is_empty());
    d.advance_to(60_000);
    assert!(d.tick().is_empty());
}

#[test]
fn retention_by_size_never_drops_the_open_segment() {
    let mut cfg = config();
    cfg.retention_bytes = Some(1);
    let mut d = three_segments(cfg, [START_MS; 3]);
    d.advance_to(30_000);
    assert_eq!(d.tick(), ["SaveCheckpoint"]);
    let (_, checkpoint) = d.pending_save();
    assert_eq!(checkpoint.segments.len(), 1);
    assert!(!checkpoint.segments[0].sealed);
    assert_eq!(checkpoint.log_start_offset, 6);
    d.save_ok();
    assert_eq!(d.deleted_segments.len(), 2);
}

#[test]
fn retention_by_age_drops_segments_whose_newest_record_is_old() {
    let hour = 3_600_000;
    let mut cfg = config();
    cfg.retention = Some(Duration::from_secs(3600));
    let mut d = three_segments(cfg, [START_MS - 3 * hour, START_MS - hour / 2, START_MS]);
    let oldest = d.last_published().segments[0].clone();
    // At the check 30 s in, only the first is older than an hour.
    d.advance_to(30_000);
    assert_eq!(d.tick(), ["SaveCheckpoint"]);
    assert_eq!(d.pending_save().1.log_start_offset, 3);
    assert_eq!(d.save_ok(), ["Publish", "DeleteSegments"]);
    assert_eq!(d.deleted_segments, vec![oldest]);
    // Half an hour later the second is too, at the next check.
    d.advance_to(hour as u64 / 2 + 10);
    assert_eq!(d.tick(), ["SaveCheckpoint"]);
    assert_eq!(d.pending_save().1.log_start_offset, 6);
    d.save_ok();
    assert_eq!(d.deleted_segments.len(), 2);
}

#[test]
fn retention_does_not_wait_for_buffered_data_to_be_flushed() {
    let size = batch(3, 0).len() as u64;
    let mut cfg = config();
    cfg.retention_bytes = Some(2 * size);
    let mut d = three_segments(cfg, [START_MS; 3]);
    d.advance_to(30_000);
    d.produce(&[batch(1, 0)], AckMode::Buffer, 10);
    assert_eq!(d.tick(), ["SaveCheckpoint"]);
    assert_eq!(d.pending_save().1.log_start_offset, 3);
    assert_eq!(
        d.pending_save().1.high_watermark,
        9,
        "the buffer is not in it"
    );
    // The flush interval passes while that checkpoint is saved.
    d.advance_to(30_010);
    assert_eq!(d.tick(), ["Flush"]);
    assert!(d.flush_ok().is_empty());
    assert_eq!(d.save_ok(), ["Publish", "DeleteSegments", "SaveCheckpoint"]);
    assert_eq!(d.deleted_segments.len(), 1);
    assert_eq!(d.pending_save().1.high_watermark, 10);
    d.settle();
}

#[test]
fn segments_stay_while_the_checkpoint_in_flight_still_references_them() {
    let size = batch(3, 0).len() as u64;
    let mut cfg = config();
    cfg.retention_bytes = Some(2 * size);
    let mut d = three_segments(cfg, [START_MS; 3]);
    // A flush and its checkpoint start before retention runs: that checkpoint lists
    // every segment.
    d.produce(&[batch(1, 0)], AckMode::Durable, 10);
    d.flush_ok();
    // (The flush rolled the third segment and opened a fourth.)
    assert_eq!(d.pending_save().1.segments.len(), 4);
    d.advance_to(30_000);
    assert!(d.tick().is_empty());
    let kinds = d.save_ok();
    assert!(
        d.deleted_segments.is_empty(),
        "deleted while the saved checkpoint references them: {kinds:?}"
    );
    assert_eq!(kinds, ["Publish", "Reply", "SaveCheckpoint"]);
    assert_eq!(d.pending_save().1.log_start_offset, 3);
    assert_eq!(d.save_ok(), ["Publish", "DeleteSegments"]);
    assert_eq!(d.deleted_segments.len(), 1);
}

#[test]
fn retention_runs_on_a_partition_that_is_never_written() {
    // A partition recovered with old data and no producers still gets its
    // retention applied: the task only ticks at the machine's next deadline.
    let mut cfg = config();
    cfg.retention = Some(Duration::from_secs(3600));
    let mut d = Driver::new(cfg);
    let found = previous_log(&mut d, false, [START_MS - 10 * 3_600_000, START_MS]);
    let len = found.segments[1].len();
    d.recover(Some(found.clone()), Some((25, len)));
    d.save_ok();
    let deadline = d
        .machine
        .next_deadline()
        .expect("a deadline to check retention");
    assert!(deadline <= d.at(30_000).instant);
    d.advance_to((deadline - d.zero).as_millis() as u64);
    assert_eq!(d.tick(), ["SaveCheckpoint"]);
    assert_eq!(d.pending_save().1.log_start_offset, 10);
    d.save_ok();
    assert_eq!(d.deleted_segments, vec![found.segments[0].clone()]);
    assert!(d.machine.next_deadline().is_some(), "and keeps checking");
}

/// A chunked partition whose first segment is sealed by a roll: the roll
/// flush is in flight.
fn rolled_chunked() -> Driver {
    let mut cfg = config();
    cfg.segment_bytes = 1;
    let mut d = Driver::writing(cfg);
    d.chunked = true;
    d.produce(&[batch(2, 0)], AckMode::Durable, 1);
    d.settle();
    d.produce(&[batch(2, 0)], AckMode::Durable, 2);
    assert!(d.pending_flush().seal.is_some());
    d
}

#[test]
fn merged_chunks_are_deleted_after_a_checkpoint_names_the_merged_object() {
    let mut d = rolled_chunked();
    d.settle();
    let sealed = d.last_published().segments[0].clone();
    assert!(matches!(sealed.layout, SegmentLayout::Chunks { .. }));
    assert_eq!(d.merge(&sealed.name), ["SaveCheckpoint"], "at once");
    let (seal, checkpoint) = d.pending_save();
    assert!(seal.is_none());
    assert_eq!(
        checkpoint.segments[0].layout,
        SegmentLayout::Object { len: sealed.len() }
    );
    assert_eq!(checkpoint.high_watermark, 4);
    assert!(d.deleted_chunks.is_empty());
    assert_eq!(d.save_ok(), ["Publish", "DeleteChunks"]);
    assert_eq!(d.deleted_chunks, vec![sealed]);
    assert!(d.tick().is_empty(), "nothing more is due");
}

#[test]
fn a_merge_reported_during_a_roll_flush_goes_into_its_checkpoint() {
    let mut d = rolled_chunked();
    let sealed = d.machine.sealed_segments()[0].clone();
    assert!(d.merge(&sealed.name).is_empty(), "the seal is in flight");
    assert_eq!(d.flush_ok(), ["SaveCheckpoint"]);
    assert_eq!(
        d.pending_save().1.segments[0].layout,
        SegmentLayout::Object { len: sealed.len() }
    );
    let kinds = d.save_ok();
    assert!(kinds.contains(&"DeleteChunks"));
    assert_eq!(d.deleted_chunks, vec![sealed]);
}

#[test]
fn chunks_merged_during_a_checkpoint_wait_for_the_next_one() {
    let mut d = rolled_chunked();
    d.flush_ok();
    let (_, in_flight) = d.pending_save();
    let sealed = in_flight.segments[0].clone();
    assert!(matches!(sealed.layout, SegmentLayout::Chunks { .. }));
    assert!(d.merge(&sealed.name).is_empty());
    let kinds = d.save_ok();
    assert!(
        d.deleted_chunks.is_empty(),
        "chunks deleted while the saved checkpoint still names them: {kinds:?}"
    );
    assert_eq!(kinds, ["Publish", "Reply", "SaveCheckpoint"]);
    assert_eq!(
        d.pending_save().1.segments[0].layout,
        SegmentLayout::Object { len: sealed.len() }
    );
    assert_eq!(d.save_ok(), ["Publish", "DeleteChunks"]);
    assert_eq!(d.deleted_chunks, vec![sealed]);
}

#[test]
fn chunks_stay_while_a_checkpoint_built_before_the_seal_reads_them() {
    // A checkpoint names the segment open with one chunk; while it is saved
    // the segment gets a second chunk, is rolled and merged. Saving that
    // checkpoint must not delete the chunk it names.
    let one = batch(1, 0);
    let mut cfg = config();
    cfg.segment_bytes = 2 * one.len() as u64;
    let mut d = Driver::writing(cfg);
    d.chunked = true;
    d.produce(std::slice::from_ref(&one), AckMode::Durable, 1);
    assert_eq!(d.flush_ok(), ["SaveCheckpoint"]);
    let name = d.pending_save().1.segments[0].name.clone();
    d.produce(std::slice::from_ref(&one), AckMode::Durable, 2);
    assert!(d.flush_ok().is_empty());
    d.produce(std::slice::from_ref(&one), AckMode::Durable, 3);
    assert_eq!(
        d.pending_flush().seal.as_ref().map(|s| &s.name),
        Some(&name)
    );
    assert!(d.flush_ok().is_empty());
    assert!(d.merge(&name).is_empty());
    assert_eq!(d.save_ok(), ["Publish", "Reply", "SaveCheckpoint"]);
    assert!(d.deleted_chunks.is_empty());
    assert_eq!(
        d.pending_save().1.segments[0].layout,
        SegmentLayout::Object {
            len: 2 * one.len() as u64
        }
    );
    assert_eq!(d.save_ok(), ["Publish", "Reply", "Reply", "DeleteChunks"]);
    assert_eq!(d.deleted_chunks.len(), 1);
}

#[test]
fn a_repeated_merge_report_changes_nothing() {
    // A seal that is retried starts its merge again; the second report finds
    // the merged object already there and names the same layout.
    let mut d = rolled_chunked();
    d.settle();
    let sealed = d.last_published().segments[0].clone();
    d.merge(&sealed.name);
    d.save_ok();
    assert_eq!(d.deleted_chunks, vec![sealed.clone()]);
    assert!(d.merge(&sealed.name).is_empty(), "no checkpoint is due");
    assert!(d.tick().is_empty());
    assert!(d.machine.merged.is_empty());
    assert_eq!(d.deleted_chunks, vec![sealed]);
}

#[test]
fn a_merge_of_an_unknown_segment_is_ignored() {
    let mut d = Driver::writing(config());
    assert!(
        d.merge_done("no-such-segment", SegmentLayout::Object { len: 1 })
            .is_empty()
    );
    assert!(d.tick().is_empty());
}

#[test]
fn a_merge_of_another_length_than_the_segment_is_ignored() {
    let mut d = rolled_chunked();
    d.settle();
    let sealed = d.last_published().segments[0].clone();
    let shorter = SegmentLayout::Object {
        len: sealed.len() - 1,
    };
    assert!(
        d.machine
            .merge_done(&sealed.name, shorter, d.now())
            .is_empty()
    );
    assert_eq!(d.machine.sealed_segments()[0].layout, sealed.layout);
    assert!(d.tick().is_empty());
}

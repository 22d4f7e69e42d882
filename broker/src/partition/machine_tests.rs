//! Unit tests of the partition state machine: every input and transition,
//! driven by a fake task (fake clock, fake storage) so time and I/O outcomes
//! are chosen by the test.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sluice_log::checkpoint::{Checkpoint, SaveOutcome};
use sluice_log::{IndexEntry, PartitionKey, SegmentMeta, SparseIndex, paths};
use sluice_record::{BatchBuilder, BatchHeader, BatchIter, Compression};
use sluice_storage::SegmentLayout;

use super::*;
use crate::config::PartitionConfig;

const EPOCH: u64 = 7;
const TOPIC_ID: &str = "topic-id-1";
const VOLUME: &str = "memory://machine-tests-a";
const OTHER_VOLUME: &str = "memory://machine-tests-b";
/// Wall clock at the tests' time zero, ms since the Unix epoch.
const START_MS: i64 = 1_700_000_000_000;
const FLUSH_INTERVAL: Duration = Duration::from_millis(10);

fn config() -> PartitionConfig {
    PartitionConfig {
        flush_interval: FLUSH_INTERVAL,
        flush_bytes: 1 << 20,
        segment_bytes: 1 << 30,
        segment_age: Duration::from_secs(24 * 3600),
        // Every batch gets an index entry unless a test says otherwise.
        index_interval_bytes: 1,
        max_batch_bytes: 1 << 20,
        retention: None,
        retention_bytes: None,
        retention_check_interval: Duration::from_secs(30),
        max_buffer_bytes: 1 << 20,
    }
}

/// A batch of `records` records whose timestamps are `first_timestamp`, +1, ...
fn batch(records: usize, first_timestamp: i64) -> Bytes {
    let mut builder = BatchBuilder::new(Compression::None);
    for i in 0..records {
        let value = format!("value-{i}");
        builder
            .push(
                first_timestamp + i as i64,
                Some(b"key"),
                Some(value.as_bytes()),
                &[],
            )
            .expect("push");
    }
    builder.build().expect("build")
}

/// A validated produce request of `batches`, as `broker::validate` makes it.
fn request(batches: &[Bytes]) -> ProduceBatches {
    let mut data = BytesMut::new();
    for batch in batches {
        data.extend_from_slice(batch);
    }
    let slices = sluice_record::split_batches(data.clone().freeze()).expect("valid batches");
    ProduceBatches {
        data,
        batches: slices.into_iter().map(|s| (s.position, s.header)).collect(),
    }
}

fn total_len(data: &[Bytes]) -> u64 {
    data.iter().map(|b| b.len() as u64).sum()
}

fn kind<W>(action: &Action<W>) -> &'static str {
    match action {
        Action::Flush(_) => "Flush",
        Action::SaveCheckpoint { .. } => "SaveCheckpoint",
        Action::Publish(_) => "Publish",
        Action::Reply(..) => "Reply",
        Action::DeleteSegments(_) => "DeleteSegments",
        Action::DeleteChunks(_) => "DeleteChunks",
        Action::PruneCheckpoints(_) => "PruneCheckpoints",
        Action::Stop => "Stop",
    }
}

fn ok(base_offset: i64, last_offset: i64) -> Result<Appended, WriteRejected> {
    Ok(Appended {
        base_offset,
        last_offset,
    })
}

fn entry(offset: i64, position: u64, max_timestamp_before: i64) -> IndexEntry {
    IndexEntry {
        offset,
        position,
        max_timestamp_before,
    }
}

/// The flush or checkpoint the machine asked for and the fake task runs.
#[derive(Debug)]
enum Io {
    Flush(FlushJob),
    Save {
        seal: Option<SealJob>,
        checkpoint: Checkpoint,
    },
}

/// The segment the fake task holds open.
#[derive(Debug)]
struct FakeWriter {
    name: String,
    volume: String,
    lens: Vec<u64>,
}

/// A fake partition task: performs the machine's actions against in-memory
/// "storage" and records what it was asked to do.
struct Driver {
    machine: PartitionMachine<u32>,
    zero: Instant,
    /// Milliseconds after time zero.
    now_ms: u64,
    /// Segments are written as chunks (object store) instead of one file.
    chunked: bool,
    io: Option<Io>,
    writer: Option<FakeWriter>,
    /// Segment name → every byte ever appended to it (checkpointed or not).
    store: HashMap<String, Vec<u8>>,
    /// Segment name → the `.idx` written when it was sealed.
    indexes: HashMap<String, Bytes>,
    replies: Vec<(u32, Result<Appended, WriteRejected>)>,
    published: Vec<Checkpoint>,
    deleted_segments: Vec<SegmentMeta>,
    deleted_chunks: Vec<SegmentMeta>,
    pruned: Vec<u64>,
    stopped: bool,
    /// Every flush job issued, in order.
    flushes: Vec<FlushJob>,
}

impl Driver {
    fn new(config: PartitionConfig) -> Self {
        Self {
            machine: PartitionMachine::new(
                PartitionKey::new("orders", 3),
                TOPIC_ID.into(),
                EPOCH,
                config,
            ),
            zero: Instant::now(),
            now_ms: 0,
            chunked: false,
            io: None,
            writer: None,
            store: HashMap::new(),
            indexes: HashMap::new(),
            replies: Vec::new(),
            published: Vec::new(),
            deleted_segments: Vec::new(),
            deleted_chunks: Vec::new(),
            pruned: Vec::new(),
            stopped: false,
            flushes: Vec::new(),
        }
    }

    /// A recovered, writable partition with an empty log.
    fn writing(config: PartitionConfig) -> Self {
        let mut driver = Self::new(config);
        driver.recover(None, None);
        driver.save_ok();
        // The first tick runs the first retention check; the next is 30 s later.
        assert!(driver.tick().is_empty());
        driver
    }

    fn now(&self) -> Now {
        self.at(self.now_ms)
    }

    fn at(&self, ms: u64) -> Now {
        Now {
            instant: self.zero + Duration::from_millis(ms),
            ms: START_MS + ms as i64,
        }
    }

    fn advance_to(&mut self, ms: u64) {
        assert!(ms >= self.now_ms, "time goes forward");
        self.now_ms = ms;
    }

    /// Records the actions as the task would perform them; returns their kinds in order.
    fn absorb(&mut self, actions: Vec<Action<u32>>) -> Vec<&'static str> {
        let kinds = actions.iter().map(kind).collect();
        for action in actions {
            match action {
                Action::Flush(job) => {
                    assert!(self.io.is_none(), "a second I/O while {:?}", self.io);
                    self.flushes.push(job.clone());
                    self.io = Some(Io::Flush(job));
                }
                Action::SaveCheckpoint { seal, checkpoint } => {
                    assert!(self.io.is_none(), "a second I/O while {:?}", self.io);
                    self.io = Some(Io::Save { seal, checkpoint });
                }
                Action::Publish(checkpoint) => self.published.push(checkpoint),
                Action::Reply(waiter, result) => {
                    assert!(
                        self.replies.iter().all(|(w, _)| *w != waiter),
                        "waiter {waiter} answered twice"
                    );
                    self.replies.push((waiter, result));
                }
                Action::DeleteSegments(segments) => self.deleted_segments.extend(segments),
                Action::DeleteChunks(segment) => self.deleted_chunks.push(segment),
                Action::PruneCheckpoints(sequence) => self.pruned.push(sequence),
                Action::Stop => self.stopped = true,
            }
        }
        kinds
    }

    fn recover(
        &mut self,
        found: Option<Checkpoint>,
        verified_end: Option<(i64, u64)>,
    ) -> Vec<&'static str> {
        let actions = self.machine.recover(found, verified_end, self.now());
        self.absorb(actions)
    }

    fn produce(&mut self, batches: &[Bytes], ack: AckMode, waiter: u32) -> Vec<&'static str> {
        let actions = self
            .machine
            .produce(request(batches), ack, waiter, self.now());
        self.absorb(actions)
    }

    fn tick(&mut self) -> Vec<&'static str> {
        let actions = self.machine.tick(self.now());
        self.absorb(actions)
    }

    /// Lets time pass until the machine's next deadline, then ticks.
    fn tick_at_deadline(&mut self) -> Vec<&'static str> {
        let deadline = self.machine.next_deadline().expect("a deadline");
        let wait = deadline.saturating_duration_since(self.now().instant);
        self.advance_to(self.now_ms + wait.as_millis() as u64);
        self.tick()
    }

    fn pending_flush(&self) -> &FlushJob {
        match &self.io {
            Some(Io::Flush(job)) => job,
            other => panic!("expected a flush in flight, found {other:?}"),
        }
    }

    fn pending_save(&self) -> (&Option<SealJob>, &Checkpoint) {
        match &self.io {
            Some(Io::Save { seal, checkpoint }) => (seal, checkpoint),
            other => panic!("expected a checkpoint save in flight, found {other:?}"),
        }
    }

    fn take_flush(&mut self) -> FlushJob {
        match self.io.take() {
            Some(Io::Flush(job)) => job,
            other => panic!("expected a flush in flight, found {other:?}"),
        }
    }

    fn take_save(&mut self) -> (Option<SealJob>, Checkpoint) {
        match self.io.take() {
            Some(Io::Save { seal, checkpoint }) => (seal, checkpoint),
            other => panic!("expected a checkpoint save in flight, found {other:?}"),
        }
    }

    /// Performs a seal as the task does: closes the writer if it is the
    /// sealed segment, writes the index.
    fn apply_seal(&mut self, seal: &SealJob) {
        if self.writer.as_ref().is_some_and(|w| w.name == seal.name) {
            self.writer = None;
        }
        // Segments found at recovery were written before the test began.
        if let Some(stored) = self.store.get(&seal.name) {
            assert!(
                seal.layout.len() <= stored.len() as u64,
                "{} sealed at {} bytes but only {} were written",
                seal.name,
                seal.layout.len(),
                stored.len()
            );
        }
        let previous = self.indexes.insert(seal.name.clone(), seal.index.clone());
        if let Some(previous) = previous {
            assert_eq!(
                previous, seal.index,
                "{} sealed twice, differently",
                seal.name
            );
        }
    }

    /// The flush in flight succeeds.
    fn flush_ok(&mut self) -> Vec<&'static str> {
        let job = self.take_flush();
        if let Some(seal) = &job.seal {
            self.apply_seal(seal);
        }
        if let SegmentTarget::New { name, avoid } = &job.target {
            assert!(!self.store.contains_key(name), "segment name {name} reused");
            let volume = if avoid.as_deref() == Some(VOLUME) {
                OTHER_VOLUME
            } else {
                VOLUME
            };
            self.store.insert(name.clone(), Vec::new());
            self.writer = Some(FakeWriter {
                name: name.clone(),
                volume: volume.into(),
                lens: Vec::new(),
            });
        }
        let writer = self.writer.as_mut().expect("an open writer to append to");
        let stored = self.store.get_mut(&writer.name).expect("stored segment");
        for data in &job.data {
            stored.extend_from_slice(data);
        }
        writer.lens.push(total_len(&job.data));
        let layout = if self.chunked {
            SegmentLayout::Chunks {
                lens: writer.lens.clone(),
            }
        } else {
            SegmentLayout::File {
                len: writer.lens.iter().sum(),
            }
        };
        let flushed = Flushed {
            volume: writer.volume.clone(),
            layout,
        };
        let actions = self.machine.flush_done(Ok(flushed), self.now());
        self.absorb(actions)
    }

    /// The flush in flight fails before doing anything.
    fn flush_err(&mut self) -> Vec<&'static str> {
        self.take_flush();
        self.writer = None;
        let actions = self
            .machine
            .flush_done(Err("disk on fire".into()), self.now());
        self.absorb(actions)
    }

    /// The flush in flight seals and appends part of its data, then fails.
    fn flush_err_after_partial_write(&mut self) -> Vec<&'static str> {
        let job = self.take_flush();
        if let Some(seal) = &job.seal {
            self.apply_seal(seal);
        }
        if let (SegmentTarget::Open, Some(writer)) = (&job.target, &self.writer) {
            let stored = self.store.get_mut(&writer.name).expect("stored segment");
            let first = &job.data[0];
            stored.extend_from_slice(&first[..first.len() / 2]);
        }
        self.writer = None;
        let actions = self
            .machine
            .flush_done(Err("disk on fire".into()), self.now());
        self.absorb(actions)
    }

    fn save_ok(&mut self) -> Vec<&'static str> {
        let (seal, _) = self.take_save();
        if let Some(seal) = &seal {
            self.apply_seal(seal);
        }
        let actions = self
            .machine
            .checkpoint_done(Ok(SaveOutcome::Saved), self.now());
        self.absorb(actions)
    }

    fn save_err(&mut self) -> Vec<&'static str> {
        self.take_save();
        let actions = self
            .machine
            .checkpoint_done(Err("store unavailable".into()), self.now());
        self.absorb(actions)
    }

    fn save_fenced(&mut self, by_epoch: u64) -> Vec<&'static str> {
        self.take_save();
        let actions = self
            .machine
            .checkpoint_done(Ok(SaveOutcome::Fenced { by_epoch }), self.now());
        self.absorb(actions)
    }

    /// Completes every flush and checkpoint until none is in flight.
    fn settle(&mut self) {
        while let Some(io) = &self.io {
            match io {
                Io::Flush(_) => self.flush_ok(),
                Io::Save { .. } => self.save_ok(),
            };
        }
    }

    fn reply(&self, waiter: u32) -> Option<&Result<Appended, WriteRejected>> {
        self.replies
            .iter()
            .find(|(w, _)| *w == waiter)
            .map(|(_, r)| r)
    }

    fn last_published(&self) -> &Checkpoint {
        self.published.last().expect("a published checkpoint")
    }

    /// Reads the last published checkpoint back from the fake storage as a
    /// reader would, and checks that it describes exactly the data there:
    /// every offset from the log start to the high watermark once, in
    /// order, and indexes that point at batch boundaries.
    fn check_log(&self) {
        let checkpoint = self.last_published();
        let mut expected_offset = checkpoint.log_start_offset;
        for (i, segment) in checkpoint.segments.iter().enumerate() {
            assert_eq!(
                segment.base_offset, expected_offset,
                "segment {} starts where the previous ended",
                segment.name
            );
            assert!(
                segment.sealed || i + 1 == checkpoint.segments.len(),
                "only the last segment may be open"
            );
            let stored = self.store.get(&segment.name).expect("segment data");
            let len = segment.len() as usize;
            assert!(
                len <= stored.len(),
                "{} is longer than its data",
                segment.name
            );
            let data = Bytes::copy_from_slice(&stored[..len]);
            let mut iter = BatchIter::new(data.clone());
            let mut boundaries = HashMap::new();
            let mut max_timestamp = -1;
            for batch in iter.by_ref() {
                let batch = batch.expect("valid batch");
                sluice_record::validate_batch(&batch.bytes).expect("crc still valid");
                assert_eq!(
                    batch.header.base_offset, expected_offset,
                    "offsets are contiguous and unique in {}",
                    segment.name
                );
                boundaries.insert(batch.position as u64, (expected_offset, max_timestamp));
                max_timestamp = max_timestamp.max(batch.header.max_timestamp);
                expected_offset = batch.header.next_offset();
            }
            assert_eq!(
                iter.position(),
                len,
                "{} ends on a batch boundary",
                segment.name
            );
            assert_eq!(
                segment.end_offset, expected_offset,
                "end offset of {}",
                segment.name
            );
            assert_eq!(
                segment.max_timestamp, max_timestamp,
                "max timestamp of {}",
                segment.name
            );
            let index = if segment.sealed {
                assert!(
                    segment.index.is_empty(),
                    "a sealed segment's index is in .idx"
                );
                let idx = self
                    .indexes
                    .get(&segment.name)
                    .unwrap_or_else(|| panic!("sealed segment {} has no .idx", segment.name));
                SparseIndex::decode("idx", idx).expect("decodable index")
            } else {
                SparseIndex::new(segment.index.clone())
            };
            assert!(
                !index.entries().is_empty(),
                "{} has index entries",
                segment.name
            );
            for e in index.entries() {
                assert_eq!(
                    boundaries.get(&e.position),
                    Some(&(e.offset, e.max_timestamp_before)),
                    "index entry {e:?} of {} is a batch boundary",
                    segment.name
                );
            }
        }
        assert_eq!(expected_offset, checkpoint.high_watermark);
    }
}

// ---------------------------------------------------------------- recovery

#[test]
fn recovering_an_empty_partition_saves_checkpoint_one_then_writes() {
    let mut d = Driver::new(config());
    assert_eq!(d.machine.phase(), Phase::Recovering);
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

/// A checkpoint left by epoch 3: one sealed segment [0, 10) and one open [10, 25).
fn found_checkpoint(open_layout: SegmentLayout) -> Checkpoint {
    Checkpoint {
        sequence: 5,
        epoch: 3,
        topic_id: TOPIC_ID.into(),
        log_start_offset: 0,
        high_watermark: 25,
        segments: vec![
            SegmentMeta {
                name: paths::segment_name(0, 3, 0),
                base_offset: 0,
                end_offset: 10,
                epoch: 3,
                volume: VOLUME.into(),
                layout: SegmentLayout::File { len: 1000 },
                max_timestamp: 999,
                created_at_ms: 1,
                sealed: true,
                index: Vec::new(),
            },
            SegmentMeta {
                name: paths::segment_name(10, 3, 0),
                base_offset: 10,
                end_offset: 25,
                epoch: 3,
                volume: OTHER_VOLUME.into(),
                layout: open_layout,
                max_timestamp: 1020,
                created_at_ms: 2,
                sealed: false,
                index: vec![
                    entry(10, 0, -1),
                    entry(15, 600, 1005),
                    entry(20, 1200, 1010),
                ],
            },
        ],
        producers: Default::default(),
        written_at_ms: 3,
    }
}

#[test]
fn recovery_seals_the_open_segment_and_saves_the_next_sequence_under_its_epoch() {
    let found = found_checkpoint(SegmentLayout::File { len: 1500 });
    let mut d = Driver::new(config());
    assert_eq!(
        d.recover(Some(found.clone()), Some((25, 1500))),
        ["SaveCheckpoint"]
    );
    let (seal, checkpoint) = d.pending_save();
    let open = &found.segments[1];
    assert_eq!(
        seal.as_ref(),
        Some(&SealJob {
            name: open.name.clone(),
            volume: OTHER_VOLUME.into(),
            layout: SegmentLayout::File { len: 1500 },
            index: SparseIndex::new(open.index.clone()).encode(),
        })
    );
    assert_eq!(checkpoint.sequence, 6);
    assert_eq!(checkpoint.epoch, EPOCH);
    assert_eq!(checkpoint.high_watermark, 25);
    assert_eq!(checkpoint.log_start_offset, 0);
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
}

#[test]
fn recovery_truncates_the_open_segment_to_its_verified_prefix() {
    let found = found_checkpoint(SegmentLayout::File { len: 1500 });
    let mut d = Driver::new(config());
    d.recover(Some(found), Some((20, 1200)));
    let (seal, checkpoint) = d.pending_save();
    let seal = seal.as_ref().expect("seal job");
    assert_eq!(seal.layout, SegmentLayout::File { len: 1200 });
    let index = SparseIndex::decode("idx", &seal.index).expect("index");
    // The entry at 1200 pointed past the verified prefix.
    assert_eq!(index.entries(), &[entry(10, 0, -1), entry(15, 600, 1005)]);
    assert_eq!(checkpoint.high_watermark, 20);
    let truncated = &checkpoint.segments[1];
    assert_eq!(truncated.end_offset, 20);
    assert_eq!(truncated.layout, SegmentLayout::File { len: 1200 });
    assert!(truncated.sealed);
    d.save_ok();
    assert_eq!(d.machine.high_watermark(), 20);
    assert_eq!(d.produce(&[batch(1, 0)], AckMode::Buffer, 1), ["Reply"]);
    assert_eq!(d.reply(1), Some(&ok(20, 20)));
}

#[test]
fn recovery_truncates_a_chunked_open_segment_at_whole_chunks() {
    let found = found_checkpoint(SegmentLayout::Chunks {
        lens: vec![600, 600, 300],
    });
    let mut d = Driver::new(config());
    d.recover(Some(found), Some((20, 1200)));
    let (seal, checkpoint) = d.pending_save();
    let chunks = SegmentLayout::Chunks {
        lens: vec![600, 600],
    };
    assert_eq!(seal.as_ref().map(|s| &s.layout), Some(&chunks));
    assert_eq!(checkpoint.segments[1].layout, chunks);
}

#[test]
fn recovery_keeps_a_checkpoint_whose_segments_are_all_sealed() {
    let mut found = found_checkpoint(SegmentLayout::File { len: 1500 });
    found.segments[1].sealed = true;
    found.segments[1].index.clear();
    let mut d = Driver::new(config());
    d.recover(Some(found.clone()), None);
    let (seal, checkpoint) = d.pending_save();
    assert_eq!(seal, &None);
    assert_eq!(checkpoint.segments, found.segments);
    assert_eq!(checkpoint.high_watermark, 25);
    assert_eq!(checkpoint.sequence, 6);
}

#[test]
fn recovery_drops_an_empty_open_segment() {
    let mut found = found_checkpoint(SegmentLayout::File { len: 0 });
    found.high_watermark = 10;
    found.segments[1].end_offset = 10;
    found.segments[1].index.clear();
    let mut d = Driver::new(config());
    d.recover(Some(found.clone()), Some((10, 0)));
    let (_, checkpoint) = d.pending_save();
    assert_eq!(checkpoint.segments, vec![found.segments[0].clone()]);
    assert_eq!(checkpoint.high_watermark, 10);
}

#[test]
fn recovery_keeps_the_log_start_offset() {
    let mut found = found_checkpoint(SegmentLayout::File { len: 1500 });
    found.segments.remove(0);
    found.log_start_offset = 10;
    let mut d = Driver::new(config());
    d.recover(Some(found), Some((25, 1500)));
    assert_eq!(d.pending_save().1.log_start_offset, 10);
}

#[test]
fn a_fenced_recovery_rejects_waiters_and_stops() {
    let mut d = Driver::new(config());
    d.recover(None, None);
    // Produces that arrive while recovering: buffer acks are answered, durable ones wait.
    assert!(d.produce(&[batch(2, 0)], AckMode::Durable, 1).is_empty());
    assert_eq!(d.produce(&[batch(1, 0)], AckMode::Buffer, 2), ["Reply"]);
    assert_eq!(d.reply(2), Some(&ok(2, 2)));
    assert_eq!(d.save_fenced(9), ["Reply", "Stop"]);
    assert!(d.stopped);
    assert_eq!(d.machine.phase(), Phase::Fenced);
    assert_eq!(
        d.reply(1),
        Some(&Err(WriteRejected::Fenced { by_epoch: 9 }))
    );
    assert_eq!(d.machine.buffered_bytes(), 0);
    assert!(d.io.is_none());
    // Anything after that is rejected, naming the new owner's epoch.
    assert_eq!(d.produce(&[batch(1, 0)], AckMode::Buffer, 3), ["Reply"]);
    assert_eq!(
        d.reply(3),
        Some(&Err(WriteRejected::Fenced { by_epoch: 9 }))
    );
    assert!(d.tick().is_empty());
    assert!(d.io.is_none());
}

#[test]
fn a_fenced_writer_stops_and_rejects_its_waiters() {
    let mut d = Driver::writing(config());
    d.produce(&[batch(2, 0)], AckMode::Durable, 1);
    d.flush_ok();
    d.produce(&[batch(2, 0)], AckMode::Durable, 2);
    assert_eq!(d.save_fenced(11), ["Reply", "Reply", "Stop"]);
    assert_eq!(
        d.reply(1),
        Some(&Err(WriteRejected::Fenced { by_epoch: 11 }))
    );
    assert_eq!(
        d.reply(2),
        Some(&Err(WriteRejected::Fenced { by_epoch: 11 }))
    );
    assert_eq!(d.machine.phase(), Phase::Fenced);
    assert_eq!(d.machine.high_watermark(), 0, "nothing became visible");
    assert!(d.tick().is_empty());
}

#[test]
fn a_checkpoint_of_a_newer_epoch_fences_recovery() {
    // This writer (epoch 7) was paused while epoch 9 took over and saved:
    // it must not save the next sequence over the newer owner's log.
    let mut found = found_checkpoint(SegmentLayout::File { len: 1500 });
    found.epoch = 9;
    let mut d = Driver::new(config());
    assert_eq!(d.recover(Some(found), Some((25, 1500))), ["Stop"]);
    assert!(d.io.is_none());
    assert_eq!(d.machine.phase(), Phase::Fenced);
    assert_eq!(d.produce(&[batch(1, 0)], AckMode::Durable, 1), ["Reply"]);
    assert_eq!(
        d.reply(1),
        Some(&Err(WriteRejected::Fenced { by_epoch: 9 }))
    );
}

#[test]
fn a_checkpoint_of_the_same_epoch_is_taken_over() {
    let mut found = found_checkpoint(SegmentLayout::File { len: 1500 });
    found.epoch = EPOCH;
    let mut d = Driver::new(config());
    assert_eq!(d.recover(Some(found), Some((25, 1500))), ["SaveCheckpoint"]);
}

#[test]
fn a_failed_recovery_checkpoint_is_retried_with_the_same_sequence_after_backoff() {
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
fn checkpoints_are_pruned_every_64_sequences() {
    let mut found = found_checkpoint(SegmentLayout::File { len: 1500 });
    found.sequence = 63;
    let mut d = Driver::new(config());
    d.recover(Some(found), Some((25, 1500)));
    assert_eq!(d.pending_save().1.sequence, 64);
    assert_eq!(d.save_ok(), ["PruneCheckpoints", "Publish"]);
    assert_eq!(d.pruned, [64]);
    d.produce(&[batch(1, 0)], AckMode::Durable, 1);
    d.settle();
    assert_eq!(d.last_published().sequence, 65);
    assert_eq!(d.pruned, [64], "not again until 128");
}

// ----------------------------------------------------------------- produce

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
    assert!(d.io.is_none(), "buffer acks alone do not flush at once");
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
    d.check_log();
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
}

#[test]
fn produces_during_a_flush_and_its_checkpoint_go_out_in_one_group_commit() {
    let mut d = Driver::writing(config());
    assert_eq!(d.produce(&[batch(1, 0)], AckMode::Durable, 1), ["Flush"]);
    // While the flush is in flight nothing else is started.
    assert!(d.produce(&[batch(2, 0)], AckMode::Durable, 2).is_empty());
    assert_eq!(d.produce(&[batch(3, 0)], AckMode::Buffer, 3), ["Reply"]);
    d.advance_to(50);
    assert!(
        d.tick().is_empty(),
        "no second flush while one is in flight"
    );
    assert_eq!(d.flush_ok(), ["SaveCheckpoint"]);
    // Nor while its checkpoint is.
    assert!(d.produce(&[batch(4, 0)], AckMode::Durable, 4).is_empty());
    assert!(d.tick().is_empty());
    assert_eq!(d.save_ok(), ["Publish", "Reply", "Flush"]);
    assert_eq!(d.reply(1), Some(&ok(0, 0)));
    assert_eq!(d.reply(3), Some(&ok(3, 5)));
    let job = d.pending_flush();
    assert_eq!(job.target, SegmentTarget::Open);
    assert_eq!(job.data.len(), 3, "the three requests in one flush");
    assert!(d.reply(2).is_none() && d.reply(4).is_none());
    assert_eq!(d.flush_ok(), ["SaveCheckpoint"]);
    assert_eq!(d.save_ok(), ["Publish", "Reply", "Reply"]);
    assert_eq!(d.reply(2), Some(&ok(1, 2)));
    assert_eq!(d.reply(4), Some(&ok(6, 9)));
    let answered: Vec<u32> = d.replies.iter().map(|(w, _)| *w).collect();
    assert_eq!(answered, [3, 1, 2, 4]);
    assert_eq!(d.flushes.len(), 2);
    assert!(d.io.is_none());
    d.check_log();
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
}

#[test]
fn a_durable_waiter_flushes_at_once_with_what_is_buffered() {
    let mut d = Driver::writing(config());
    d.produce(&[batch(1, 0)], AckMode::Buffer, 1);
    assert_eq!(d.produce(&[batch(1, 0)], AckMode::Durable, 2), ["Flush"]);
    assert_eq!(d.pending_flush().data.len(), 2);
}

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
    d.check_log();
}

// ---------------------------------------------------------------- failover

#[test]
fn a_failed_first_write_starts_over_in_a_segment_with_a_new_name() {
    let mut d = Driver::writing(config());
    let data = batch(2, 0);
    d.produce(std::slice::from_ref(&data), AckMode::Durable, 1);
    let first = d.pending_flush().clone();
    assert!(d.flush_err().is_empty());
    assert!(d.replies.is_empty());
    assert_eq!(d.tick(), ["Flush"], "the first retry is immediate");
    let retry = d.pending_flush().clone();
    assert_eq!(
        retry.seal, None,
        "nothing was checkpointed, nothing to seal"
    );
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
    d.check_log();

    // A later new segment at another offset starts again at attempt 0.
    let mut cfg = config();
    cfg.segment_bytes = 1;
    let mut d = Driver::writing(cfg);
    d.produce(&[batch(1, 0)], AckMode::Durable, 1);
    d.flush_err();
    d.tick();
    d.settle();
    d.produce(&[batch(1, 0)], AckMode::Durable, 2);
    assert_eq!(
        d.pending_flush().target,
        SegmentTarget::New {
            name: paths::segment_name(1, EPOCH, 0),
            avoid: Some(VOLUME.into()),
        }
    );
}

#[test]
fn a_failed_append_abandons_the_segment_at_its_checkpointed_length() {
    let mut d = Driver::writing(config());
    d.produce(&[batch(2, 100)], AckMode::Durable, 1);
    d.settle();
    let checkpointed = d.last_published().segments[0].clone();
    assert_eq!(checkpointed.end_offset, 2);

    d.produce(&[batch(3, 200)], AckMode::Durable, 2);
    let failed = d.pending_flush().clone();
    assert_eq!(failed.target, SegmentTarget::Open);
    assert_eq!(d.produce(&[batch(1, 300)], AckMode::Buffer, 3), ["Reply"]);
    assert_eq!(d.reply(3), Some(&ok(5, 5)));
    // Part of the data reaches the file before the error.
    assert!(d.flush_err_after_partial_write().is_empty());
    assert_eq!(d.tick(), ["Flush"]);
    let retry = d.pending_flush().clone();
    assert_eq!(
        retry.seal,
        Some(SealJob {
            name: checkpointed.name.clone(),
            volume: VOLUME.into(),
            layout: checkpointed.layout.clone(),
            index: SparseIndex::new(checkpointed.index.clone()).encode(),
        })
    );
    assert_eq!(
        retry.target,
        SegmentTarget::New {
            name: paths::segment_name(2, EPOCH, 1),
            avoid: Some(VOLUME.into()),
        }
    );
    assert_eq!(
        retry.data[..1],
        failed.data[..],
        "the failed data first, unchanged"
    );
    assert_eq!(retry.data.len(), 2);
    assert_eq!(d.flush_ok(), ["SaveCheckpoint"]);
    let (_, checkpoint) = d.pending_save();
    assert_eq!(checkpoint.segments.len(), 2);
    let mut sealed = checkpointed.clone();
    sealed.sealed = true;
    sealed.index.clear();
    assert_eq!(checkpoint.segments[0], sealed);
    assert_eq!(checkpoint.segments[1].base_offset, 2);
    assert_eq!(checkpoint.segments[1].end_offset, 6);
    assert_eq!(checkpoint.segments[1].volume, OTHER_VOLUME);
    assert_eq!(checkpoint.high_watermark, 6);
    d.save_ok();
    assert_eq!(d.reply(2), Some(&ok(2, 4)));
    d.check_log();
}

#[test]
fn write_retries_back_off() {
    let mut d = Driver::writing(config());
    d.produce(&[batch(1, 0)], AckMode::Durable, 1);
    d.flush_err();
    assert_eq!(d.machine.next_deadline(), Some(d.now().instant));
    assert_eq!(d.tick(), ["Flush"]);
    d.flush_err();
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
    d.flush_err();
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
    d.flush_err();
    assert_eq!(d.machine.next_deadline(), Some(d.now().instant));
    d.check_log();
}

#[test]
fn backoff_is_capped() {
    let mut d = Driver::writing(config());
    d.produce(&[batch(1, 0)], AckMode::Durable, 1);
    let mut waits = Vec::new();
    for _ in 0..12 {
        d.flush_err();
        let failed_at = d.now_ms;
        // Retention checks may come first; the retry comes at its time.
        let kinds = (0..3)
            .map(|_| d.tick_at_deadline())
            .find(|kinds| !kinds.is_empty())
            .expect("a retry");
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
fn the_next_deadline_during_a_backoff_is_the_retry_not_the_flush_interval() {
    // With only buffer acks buffered, a tick before the retry can do nothing;
    // the deadline must not ask for one (the task would spin until the retry).
    let mut d = Driver::writing(config());
    d.produce(&[batch(1, 0)], AckMode::Buffer, 1);
    d.advance_to(10);
    assert_eq!(d.tick(), ["Flush"]);
    d.flush_err();
    // Buffer-only data is retried at the next flush interval.
    assert!(d.tick().is_empty());
    assert_eq!(d.machine.next_deadline(), Some(d.at(20).instant));
    d.advance_to(20);
    assert_eq!(d.tick(), ["Flush"]);
    d.flush_err();
    let retry = d.at(120).instant;
    for ms in [20, 30, 50, 119] {
        d.advance_to(ms);
        let deadline = d.machine.next_deadline().expect("a deadline");
        assert!(
            deadline >= retry || deadline > d.now().instant,
            "at {ms} ms the next deadline is already due but nothing can happen until 120 ms"
        );
        assert!(d.tick().is_empty());
    }
    assert_eq!(d.machine.next_deadline(), Some(retry));
    d.advance_to(120);
    assert_eq!(d.tick(), ["Flush"]);
}

#[test]
fn the_seal_of_an_abandoned_segment_survives_a_failed_retry() {
    // The abandoned segment lives on the volume that just failed, so sealing it
    // (writing its index) can fail too; the seal must not be forgotten.
    let mut d = Driver::writing(config());
    d.produce(&[batch(2, 0)], AckMode::Durable, 1);
    d.settle();
    let abandoned = d.last_published().segments[0].name.clone();
    d.produce(&[batch(2, 0)], AckMode::Durable, 2);
    d.flush_err();
    d.tick();
    assert_eq!(
        d.pending_flush().seal.as_ref().map(|s| &s.name),
        Some(&abandoned)
    );
    d.flush_err();
    assert_eq!(d.tick_at_deadline(), ["Flush"]);
    let retry = d.pending_flush();
    assert_eq!(
        retry.seal.as_ref().map(|s| &s.name),
        Some(&abandoned),
        "the seal is retried"
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
    d.check_log();
}

#[test]
fn the_seal_of_a_rolled_segment_survives_a_failed_write() {
    let mut cfg = config();
    cfg.segment_bytes = 1;
    let mut d = Driver::writing(cfg);
    d.produce(&[batch(2, 0)], AckMode::Durable, 1);
    d.settle();
    let rolled = d.last_published().segments[0].name.clone();
    d.produce(&[batch(2, 0)], AckMode::Durable, 2);
    assert_eq!(
        d.pending_flush().seal.as_ref().map(|s| &s.name),
        Some(&rolled)
    );
    d.flush_err();
    d.tick();
    assert_eq!(
        d.pending_flush().seal.as_ref().map(|s| &s.name),
        Some(&rolled),
        "the seal is retried"
    );
    d.settle();
    d.check_log();
}

#[test]
fn failover_neither_loses_nor_duplicates_acknowledged_offsets() {
    let mut cfg = config();
    cfg.segment_bytes = 3 * batch(3, 0).len() as u64;
    let mut d = Driver::writing(cfg);
    let mut expected: Vec<(u32, Result<Appended, WriteRejected>)> = Vec::new();
    let mut next_offset = 0i64;
    // A fixed, varied schedule of outcomes: F fail, P partial write then fail, O ok.
    let schedule = "OOFOPOOFFOOPOFOOOOFPOOOOFO";
    let mut outcomes = schedule.chars().cycle();
    for waiter in 0..60u32 {
        let records = (waiter % 4 + 1) as usize;
        let ack = if waiter % 3 == 0 {
            AckMode::Buffer
        } else {
            AckMode::Durable
        };
        d.produce(&[batch(records, i64::from(waiter))], ack, waiter);
        expected.push((waiter, ok(next_offset, next_offset + records as i64 - 1)));
        next_offset += records as i64;
        // Complete whatever is in flight with the next scheduled outcome.
        for _ in 0..3 {
            match &d.io {
                Some(Io::Flush(_)) => match outcomes.next() {
                    Some('F') => d.flush_err(),
                    Some('P') => d.flush_err_after_partial_write(),
                    _ => d.flush_ok(),
                },
                Some(Io::Save { .. }) => d.save_ok(),
                None => d.tick(),
            };
        }
        d.advance_to(d.now_ms + 7);
    }
    // Drain: time passes and storage recovers.
    for _ in 0..100 {
        if d.io.is_none() {
            d.advance_to(d.now_ms + 5_000);
            d.tick();
        }
        d.settle();
    }
    assert_eq!(d.machine.high_watermark(), next_offset);
    let mut replies = d.replies.clone();
    replies.sort_by_key(|(w, _)| *w);
    assert_eq!(replies, expected);
    d.check_log();
    assert!(
        d.last_published().segments.len() > 3,
        "rolls and failovers made several segments"
    );
}

#[test]
fn a_failed_checkpoint_after_a_flush_is_retried_before_anyone_is_answered() {
    let mut d = Driver::writing(config());
    d.produce(&[batch(2, 0)], AckMode::Durable, 1);
    d.flush_ok();
    let (_, checkpoint) = d.pending_save();
    let checkpoint = checkpoint.clone();
    assert!(d.save_err().is_empty());
    assert!(d.replies.is_empty());
    assert_eq!(d.machine.high_watermark(), 0);
    // New data waits behind the checkpoint.
    assert!(d.produce(&[batch(1, 0)], AckMode::Durable, 2).is_empty());
    assert_eq!(d.tick(), ["SaveCheckpoint"]);
    assert_eq!(d.pending_save().1, &checkpoint);
    assert!(d.save_err().is_empty());
    d.advance_to(99);
    assert!(d.tick().is_empty());
    d.advance_to(100);
    assert_eq!(d.tick(), ["SaveCheckpoint"]);
    assert_eq!(d.pending_save().1, &checkpoint);
    assert_eq!(d.save_ok(), ["Publish", "Reply", "Flush"]);
    assert_eq!(d.reply(1), Some(&ok(0, 1)));
    d.settle();
    assert_eq!(d.reply(2), Some(&ok(2, 2)));
    d.check_log();
}

// -------------------------------------------------------------------- roll

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
    assert_eq!(d.machine.sealed_segments().len(), 1);
    assert!(
        d.writer
            .as_ref()
            .is_some_and(|w| w.name == paths::segment_name(3, EPOCH, 0))
    );
    d.check_log();
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
    d.check_log();
}

// --------------------------------------------------------------- retention

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
    d.check_log();
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
    d.check_log();
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
    d.check_log();
}

#[test]
fn retention_with_data_buffered_goes_out_with_the_next_flush() {
    let size = batch(3, 0).len() as u64;
    let mut cfg = config();
    cfg.retention_bytes = Some(2 * size);
    let mut d = three_segments(cfg, [START_MS; 3]);
    d.advance_to(30_000);
    d.produce(&[batch(1, 0)], AckMode::Buffer, 10);
    // The flush interval has not passed: retention waits for the flush.
    assert!(d.tick().is_empty());
    d.advance_to(30_010);
    assert_eq!(d.tick(), ["Flush"]);
    assert_eq!(d.flush_ok(), ["SaveCheckpoint"]);
    assert_eq!(d.pending_save().1.log_start_offset, 3);
    let kinds = d.save_ok();
    assert_eq!(&kinds[..2], ["Publish", "DeleteSegments"]);
    assert_eq!(d.deleted_segments.len(), 1);
    d.settle();
    d.check_log();
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
    d.check_log();
}

#[test]
fn retention_runs_on_a_partition_that_is_never_written() {
    // A partition recovered with old data and no producers still gets its
    // retention applied: the task only ticks at the machine's next deadline.
    let mut found = found_checkpoint(SegmentLayout::File { len: 1500 });
    found.segments[0].max_timestamp = START_MS - 10 * 3_600_000;
    found.segments[1].max_timestamp = START_MS;
    let mut cfg = config();
    cfg.retention = Some(Duration::from_secs(3600));
    let mut d = Driver::new(cfg);
    d.recover(Some(found.clone()), Some((25, 1500)));
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

// ------------------------------------------------------------------- merge

/// A chunked partition whose first segment was sealed by a roll.
fn rolled_chunked() -> Driver {
    let mut cfg = config();
    cfg.segment_bytes = 1;
    let mut d = Driver::writing(cfg);
    d.chunked = true;
    d.produce(&[batch(2, 0)], AckMode::Durable, 1);
    d.settle();
    d.produce(&[batch(2, 0)], AckMode::Durable, 2);
    d
}

#[test]
fn merged_chunks_are_deleted_after_a_checkpoint_names_the_merged_object() {
    let mut d = rolled_chunked();
    d.settle();
    let sealed = d.last_published().segments[0].clone();
    assert!(matches!(sealed.layout, SegmentLayout::Chunks { .. }));
    let merged = SegmentLayout::Object { len: sealed.len() };
    d.machine.merge_done(&sealed.name, merged.clone());
    assert_eq!(d.tick(), ["SaveCheckpoint"], "a checkpoint is due");
    let (seal, checkpoint) = d.pending_save();
    assert!(seal.is_none());
    assert_eq!(checkpoint.segments[0].layout, merged);
    assert_eq!(checkpoint.high_watermark, 4);
    assert!(d.deleted_chunks.is_empty());
    assert_eq!(d.save_ok(), ["Publish", "DeleteChunks"]);
    assert_eq!(d.deleted_chunks, vec![sealed]);
    assert!(d.tick().is_empty(), "nothing more is due");
}

#[test]
fn a_merge_reported_during_a_flush_goes_into_its_checkpoint() {
    let mut d = rolled_chunked();
    let sealed = d.machine.sealed_segments()[0].clone();
    let merged = SegmentLayout::Object { len: sealed.len() };
    d.machine.merge_done(&sealed.name, merged.clone());
    d.flush_ok();
    assert_eq!(d.pending_save().1.segments[0].layout, merged);
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
    d.machine
        .merge_done(&sealed.name, SegmentLayout::Object { len: sealed.len() });
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
fn a_repeated_merge_report_changes_nothing() {
    // A seal that is retried starts its merge again; the second report finds
    // the merged object already there and names the same layout.
    let mut d = rolled_chunked();
    d.settle();
    let sealed = d.last_published().segments[0].clone();
    let merged = SegmentLayout::Object { len: sealed.len() };
    d.machine.merge_done(&sealed.name, merged.clone());
    d.tick();
    d.save_ok();
    assert_eq!(d.deleted_chunks, vec![sealed.clone()]);
    d.machine.merge_done(&sealed.name, merged);
    assert!(d.tick().is_empty(), "no checkpoint is due");
    assert!(d.machine.merged.is_empty());
    assert_eq!(d.deleted_chunks, vec![sealed]);
}

#[test]
fn a_merge_of_an_unknown_segment_is_ignored() {
    let mut d = Driver::writing(config());
    d.machine
        .merge_done("no-such-segment", SegmentLayout::Object { len: 1 });
    assert!(d.tick().is_empty());
}

// ------------------------------------------------------ back-pressure, stop

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
    assert!(d.pending_flush().data.len() == 2);
    assert_eq!(d.machine.buffered_bytes(), 2 * one.len() as u64);
    assert!(d.machine.is_full());
    d.flush_ok();
    assert_eq!(d.machine.buffered_bytes(), 0);
    assert!(!d.machine.is_full());
}

#[test]
fn a_failed_flush_keeps_its_bytes_counted() {
    let one = batch(1, 0);
    let mut d = Driver::writing(config());
    d.produce(std::slice::from_ref(&one), AckMode::Durable, 1);
    d.produce(std::slice::from_ref(&one), AckMode::Buffer, 2);
    d.flush_err();
    assert_eq!(d.machine.buffered_bytes(), 2 * one.len() as u64);
}

#[test]
fn stop_rejects_every_waiter_in_order() {
    let mut d = Driver::writing(config());
    d.produce(&[batch(1, 0)], AckMode::Durable, 1);
    d.produce(&[batch(1, 0)], AckMode::Durable, 2);
    d.produce(&[batch(1, 0)], AckMode::Buffer, 3);
    let actions = d.machine.stop();
    let kinds = d.absorb(actions);
    assert_eq!(kinds, ["Reply", "Reply"]);
    assert_eq!(
        d.replies,
        vec![
            (3, ok(2, 2)),
            (1, Err(WriteRejected::Stopped)),
            (2, Err(WriteRejected::Stopped)),
        ]
    );
    assert!(d.machine.stop().is_empty());
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
            .checkpoint_done(Ok(SaveOutcome::Saved), d.now())
            .is_empty()
    );
    assert_eq!(d.machine.high_watermark(), 0);
    assert_eq!(d.machine.phase(), Phase::Writing);
}

#[test]
fn an_idle_partition_has_nothing_to_do_but_check_retention() {
    let mut d = Driver::writing(config());
    assert!(d.tick().is_empty());
    d.advance_to(3_600_000);
    assert!(d.tick().is_empty());
    assert!(d.io.is_none());
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

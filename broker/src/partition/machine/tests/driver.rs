//! The fake partition task: performs the machine's actions against
//! in-memory storage, with I/O outcomes the test chooses, and checks every
//! action against what the real task (`task.rs`) and readers rely on: at
//! most one flush and one checkpoint (or recovery) in flight, checkpoints
//! that name only durable data and only sealed segments whose index exists,
//! durable producers answered only once covered, nothing deleted that the
//! published checkpoint still names.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use bytes::Bytes;
use sluice_log::PartitionKey;

use super::*;

/// The segment the fake task holds open.
#[derive(Debug)]
pub(super) struct FakeWriter {
    pub(super) name: String,
    pub(super) volume: String,
    pub(super) lens: Vec<u64>,
}

/// A fake partition task and its storage.
pub(super) struct Driver {
    pub(super) machine: PartitionMachine<u32>,
    pub(super) zero: Instant,
    /// Milliseconds after time zero.
    pub(super) now_ms: u64,
    /// Segments are written as chunks (object store) instead of one file.
    pub(super) chunked: bool,
    /// An [`Action::Recover`] is being performed.
    pub(super) recovering: bool,
    /// The flush in flight.
    pub(super) flush: Option<FlushJob>,
    /// The checkpoint save in flight.
    pub(super) save: Option<(Option<SealJob>, Checkpoint)>,
    pub(super) writer: Option<FakeWriter>,
    /// Segment name → every byte ever appended to it (checkpointed or not).
    pub(super) store: HashMap<String, Vec<u8>>,
    /// Segment name → how many of its bytes a successful flush made durable.
    pub(super) durable: HashMap<String, u64>,
    /// Segments the previous owner wrote (recovery may cut them back).
    pub(super) previous: HashSet<String>,
    /// Segment name → the `.idx` on the home volume (created if absent).
    pub(super) indexes: HashMap<String, Bytes>,
    /// Seals of a segment whose `.idx` already existed with other content
    /// (the task accepts the existing one).
    pub(super) index_conflicts: Vec<String>,
    /// Segment name → length of its merged object.
    pub(super) merged_objects: HashMap<String, u64>,
    pub(super) replies: Vec<(u32, Result<Appended, WriteRejected>)>,
    /// Answers to DeleteRecords, in order.
    pub(super) delete_replies: Vec<(u32, Result<i64, DeleteRecordsRejected>)>,
    /// Waiters that asked for durable acks.
    pub(super) durable_waiters: HashSet<u32>,
    pub(super) published: Vec<Checkpoint>,
    pub(super) deleted_segments: Vec<SegmentMeta>,
    pub(super) deleted_chunks: Vec<SegmentMeta>,
    /// Every `PruneCheckpoints { newest, keep }`.
    pub(super) pruned: Vec<(u64, Vec<u64>)>,
    pub(super) stopped: bool,
    /// How many [`Action::Recover`]s were asked for.
    pub(super) recoveries: usize,
    /// Every flush job issued, in order.
    pub(super) flushes: Vec<FlushJob>,
    /// Every checkpoint a save was asked for, in order (retries included).
    pub(super) saves: Vec<Checkpoint>,
}

impl Driver {
    /// A started partition: its first action, [`Action::Recover`], is in flight.
    pub(super) fn new(config: PartitionConfig) -> Self {
        let mut driver = Self {
            machine: PartitionMachine::new(
                PartitionKey::new("orders", 3),
                TOPIC_ID.into(),
                EPOCH,
                config,
            ),
            zero: Instant::now(),
            now_ms: 0,
            chunked: false,
            recovering: false,
            flush: None,
            save: None,
            writer: None,
            store: HashMap::new(),
            durable: HashMap::new(),
            previous: HashSet::new(),
            indexes: HashMap::new(),
            index_conflicts: Vec::new(),
            merged_objects: HashMap::new(),
            replies: Vec::new(),
            delete_replies: Vec::new(),
            durable_waiters: HashSet::new(),
            published: Vec::new(),
            deleted_segments: Vec::new(),
            deleted_chunks: Vec::new(),
            pruned: Vec::new(),
            stopped: false,
            recoveries: 0,
            flushes: Vec::new(),
            saves: Vec::new(),
        };
        let actions = driver.machine.start();
        assert_eq!(driver.absorb(actions), ["Recover"]);
        driver
    }

    /// A recovered, writable partition with an empty log.
    pub(super) fn writing(config: PartitionConfig) -> Self {
        let mut driver = Self::new(config);
        driver.recover(None, None);
        driver.save_ok();
        // The first tick runs the first retention check; the next is 30 s later.
        assert!(driver.tick().is_empty());
        driver
    }

    pub(super) fn now(&self) -> Now {
        self.at(self.now_ms)
    }

    pub(super) fn at(&self, ms: u64) -> Now {
        Now {
            instant: self.zero + Duration::from_millis(ms),
            ms: START_MS + ms as i64,
        }
    }

    pub(super) fn advance_to(&mut self, ms: u64) {
        assert!(ms >= self.now_ms, "time goes forward");
        self.now_ms = ms;
    }

    /// Writes a segment the previous owner left (durable, as recovery finds it).
    pub(super) fn store_previous_segment(&mut self, name: &str, batches: &[Bytes]) {
        let bytes: Vec<u8> = batches.iter().flat_map(|b| b.to_vec()).collect();
        self.durable.insert(name.into(), bytes.len() as u64);
        self.store.insert(name.into(), bytes);
        self.previous.insert(name.into());
    }

    pub(super) fn store_previous_index(&mut self, name: &str, index: Bytes) {
        self.indexes.insert(name.into(), index);
    }

    /// Records the actions as the task would perform them, checking each;
    /// returns their kinds in order.
    pub(super) fn absorb(&mut self, actions: Vec<Action<u32>>) -> Vec<&'static str> {
        let kinds = actions.iter().map(kind).collect();
        for action in actions {
            if matches!(
                action,
                Action::Recover | Action::Flush(_) | Action::SaveCheckpoint { .. }
            ) {
                assert!(!self.stopped, "{} after Stop", kind(&action));
            }
            match action {
                Action::Recover => {
                    assert!(!self.recovering, "a second recovery");
                    assert!(self.save.is_none(), "recovery while saving");
                    assert!(self.flush.is_none(), "recovery while flushing");
                    self.recovering = true;
                    self.recoveries += 1;
                }
                Action::Flush(job) => {
                    assert!(self.flush.is_none(), "a second flush: {:?}", self.flush);
                    self.flushes.push(job.clone());
                    self.flush = Some(job);
                }
                Action::SaveCheckpoint { seal, checkpoint } => {
                    assert!(self.save.is_none(), "a second save: {:?}", self.save);
                    assert!(!self.recovering, "a save while recovering");
                    self.check_checkpoint(seal.as_ref(), &checkpoint);
                    self.saves.push(checkpoint.clone());
                    self.save = Some((seal, checkpoint));
                }
                Action::Publish(checkpoint) => {
                    if let Some(previous) = self.published.last() {
                        assert!(checkpoint.sequence > previous.sequence);
                        assert!(checkpoint.high_watermark >= previous.high_watermark);
                        assert!(checkpoint.log_start_offset >= previous.log_start_offset);
                    }
                    self.published.push(checkpoint);
                }
                Action::Reply(waiter, result) => {
                    assert!(
                        self.replies.iter().all(|(w, _)| *w != waiter),
                        "waiter {waiter} answered twice"
                    );
                    if let (Ok(appended), true) = (&result, self.durable_waiters.contains(&waiter))
                    {
                        let covered = self.published.last().map_or(0, |c| c.high_watermark);
                        assert!(
                            appended.last_offset < covered,
                            "durable waiter {waiter} ({appended:?}) answered before a checkpoint covered it ({covered})"
                        );
                    }
                    self.replies.push((waiter, result));
                }
                Action::ReplyDeleteRecords(waiter, result) => {
                    assert!(
                        self.delete_replies.iter().all(|(w, _)| *w != waiter),
                        "DeleteRecords {waiter} answered twice"
                    );
                    if let Ok(start) = result {
                        let saved = self.published.last().map_or(0, |c| c.log_start_offset);
                        assert!(
                            start <= saved,
                            "DeleteRecords {waiter} answered with log start {start} before a checkpoint recorded it ({saved})"
                        );
                    }
                    self.delete_replies.push((waiter, result));
                }
                Action::DeleteSegments(segments) => {
                    for segment in segments {
                        assert!(
                            !self.last_names(&segment.name, |_| true),
                            "{} deleted while the published checkpoint names it",
                            segment.name
                        );
                        self.store.remove(&segment.name);
                        self.indexes.remove(&segment.name);
                        self.deleted_segments.push(segment);
                    }
                }
                Action::DeleteChunks(segment) => {
                    assert!(
                        !self.last_names(&segment.name, |s| {
                            matches!(s.layout, SegmentLayout::Chunks { .. })
                        }),
                        "chunks of {} deleted while the published checkpoint reads them",
                        segment.name
                    );
                    self.deleted_chunks.push(segment);
                }
                Action::PruneCheckpoints { newest, keep } => self.pruned.push((newest, keep)),
                Action::Stop => self.stopped = true,
            }
        }
        kinds
    }

    /// Whether the last published checkpoint names segment `name` in a way
    /// `matching` accepts.
    fn last_names(&self, name: &str, matching: impl Fn(&SegmentMeta) -> bool) -> bool {
        self.published
            .last()
            .is_some_and(|c| c.segments.iter().any(|s| s.name == name && matching(s)))
    }

    /// A checkpoint about to be saved names only durable data, and sealed
    /// segments only once their index exists (or its own seal writes it).
    fn check_checkpoint(&self, seal: Option<&SealJob>, checkpoint: &Checkpoint) {
        if let Some(previous) = self.published.last() {
            assert_eq!(
                checkpoint.sequence,
                previous.sequence + 1,
                "checkpoints in sequence"
            );
        }
        assert_eq!(checkpoint.epoch, EPOCH);
        let mut end = checkpoint.log_start_offset;
        for segment in &checkpoint.segments {
            let durable = self.durable.get(&segment.name).copied().unwrap_or(0);
            assert!(
                segment.len() <= durable,
                "checkpoint {} names {} bytes of {}, only {durable} are durable",
                checkpoint.sequence,
                segment.len(),
                segment.name
            );
            if segment.sealed {
                assert!(
                    self.indexes.contains_key(&segment.name)
                        || seal.is_some_and(|s| s.name == segment.name),
                    "checkpoint {} names {} sealed before its index exists",
                    checkpoint.sequence,
                    segment.name
                );
            }
            end = segment.end_offset;
        }
        assert_eq!(
            checkpoint.high_watermark, end,
            "the high watermark ends the log"
        );
    }

    pub(super) fn recover(
        &mut self,
        found: Option<Checkpoint>,
        verified_end: Option<(i64, u64)>,
    ) -> Vec<&'static str> {
        assert!(self.recovering, "recover without a Recover action");
        self.recovering = false;
        let actions = self.machine.recover(found, verified_end, self.now());
        self.absorb(actions)
    }

    pub(super) fn produce(
        &mut self,
        batches: &[Bytes],
        ack: AckMode,
        waiter: u32,
    ) -> Vec<&'static str> {
        if ack == AckMode::Durable {
            self.durable_waiters.insert(waiter);
        }
        let actions = self
            .machine
            .produce(request(batches), ack, waiter, self.now());
        self.absorb(actions)
    }

    pub(super) fn delete_records(&mut self, offset: i64, waiter: u32) -> Vec<&'static str> {
        let actions = self.machine.delete_records(offset, waiter, self.now());
        self.absorb(actions)
    }

    /// The answer to DeleteRecords `waiter`, if any yet.
    pub(super) fn delete_reply(&self, waiter: u32) -> Option<&Result<i64, DeleteRecordsRejected>> {
        self.delete_replies
            .iter()
            .find(|(w, _)| *w == waiter)
            .map(|(_, r)| r)
    }

    pub(super) fn tick(&mut self) -> Vec<&'static str> {
        let actions = self.machine.tick(self.now());
        self.absorb(actions)
    }

    /// Lets time pass until the machine's next deadline, then ticks.
    pub(super) fn tick_at_deadline(&mut self) -> Vec<&'static str> {
        let deadline = self.machine.next_deadline().expect("a deadline");
        let wait = deadline.saturating_duration_since(self.now().instant);
        self.advance_to(self.now_ms + wait.as_millis() as u64);
        self.tick()
    }

    /// A background merge of sealed segment `name` reports `layout`; the
    /// merged object is created if absent.
    pub(super) fn merge_done(&mut self, name: &str, layout: SegmentLayout) -> Vec<&'static str> {
        self.merged_objects
            .entry(name.into())
            .or_insert(layout.len());
        let actions = self.machine.merge_done(name, layout, self.now());
        self.absorb(actions)
    }

    /// Merges sealed segment `name` into one object, as the task's seal does.
    pub(super) fn merge(&mut self, name: &str) -> Vec<&'static str> {
        let segment = self
            .machine
            .sealed_segments()
            .iter()
            .find(|s| s.name == name)
            .expect("a sealed segment");
        let merged = SegmentLayout::Object { len: segment.len() };
        self.merge_done(name, merged)
    }

    pub(super) fn stop(&mut self) -> Vec<&'static str> {
        let actions = self.machine.stop();
        self.absorb(actions)
    }

    pub(super) fn pending_flush(&self) -> &FlushJob {
        self.flush.as_ref().expect("a flush in flight")
    }

    pub(super) fn pending_save(&self) -> (&Option<SealJob>, &Checkpoint) {
        let (seal, checkpoint) = self.save.as_ref().expect("a checkpoint save in flight");
        (seal, checkpoint)
    }

    pub(super) fn reply(&self, waiter: u32) -> Option<&Result<Appended, WriteRejected>> {
        self.replies
            .iter()
            .find(|(w, _)| *w == waiter)
            .map(|(_, r)| r)
    }

    /// The waiters answered, in order.
    pub(super) fn answered(&self) -> Vec<u32> {
        self.replies.iter().map(|(w, _)| *w).collect()
    }

    pub(super) fn last_published(&self) -> &Checkpoint {
        self.published.last().expect("a published checkpoint")
    }
}

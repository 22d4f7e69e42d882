//! The partition state machine of DESIGN.md, as a plain struct with no I/O:
//!
//! ```text
//!  Recovering ──checkpoint saved──▶ Writing ⇄ Flushing → Checkpointing
//!       │                            │  roll: seal + new segment in the next flush
//!       └──── fenced ◀───────────────┴─ write failed: Failover (new segment elsewhere)
//! ```
//!
//! Every input (a produce, a finished flush, a saved checkpoint, a tick) is a
//! method that updates the state and returns the [`Action`]s the partition
//! task must perform. The task does the I/O and reports back. Flushes and
//! checkpoints alternate, one at a time, so checkpoint `n + 1` always covers
//! everything checkpoint `n` did, and only checkpointed data is visible.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sluice_log::checkpoint::{Checkpoint, SaveOutcome};
use sluice_log::index::{IndexBuilder, SparseIndex};
use sluice_log::{PartitionKey, SegmentMeta, paths};
use sluice_record::BatchHeader;
use sluice_storage::SegmentLayout;

use super::retention;
use crate::config::PartitionConfig;

/// Longest pause between attempts after storage errors.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The time an input happens at: a monotonic instant for timers and wall
/// clock milliseconds for what is written down (segment ages, checkpoints).
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub instant: Instant,
    pub ms: i64,
}

impl Now {
    pub fn current() -> Self {
        Self {
            instant: Instant::now(),
            ms: sluice_log::now_ms(),
        }
    }
}

/// How a producer wants to be answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckMode {
    /// Once the batches are in the write buffer.
    Buffer,
    /// Once the batches are flushed and covered by a checkpoint.
    Durable,
}

/// Offsets given to an appended request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
}

/// Why a write was not acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteRejected {
    /// A newer owner (epoch `by_epoch`) took the partition over.
    Fenced { by_epoch: u64 },
    /// The partition is stopping.
    Stopped,
}

/// Where a partition is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the checkpoint that takes ownership to be saved.
    Recovering,
    Writing,
    /// Another owner saved a checkpoint first; nothing more is written.
    Fenced,
}

/// A request's batches, validated, concatenated in one buffer.
#[derive(Debug)]
pub struct ProduceBatches {
    pub data: BytesMut,
    /// Position of each batch in `data`, and its header.
    pub batches: Vec<(usize, BatchHeader)>,
}

/// Where a flush writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SegmentTarget {
    /// The open segment the task already holds a writer for.
    Open,
    /// A new segment `name` on a randomly chosen volume, avoiding `avoid`.
    New { name: String, avoid: Option<String> },
}

/// Seal a segment: close its writer (if open), write its index, and, for a
/// chunked segment, merge it into one object in the background.
#[derive(Clone, Debug, PartialEq)]
pub struct SealJob {
    pub name: String,
    pub volume: String,
    /// The sealed length: nothing past it is part of the segment.
    pub layout: SegmentLayout,
    pub index: Bytes,
}

/// Append buffered batches to storage.
#[derive(Clone, Debug, PartialEq)]
pub struct FlushJob {
    /// Sealed before the write: the segment being rolled or abandoned.
    pub seal: Option<SealJob>,
    pub target: SegmentTarget,
    pub data: Vec<Bytes>,
}

/// A successful flush, as the task reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Flushed {
    /// URL of the volume written.
    pub volume: String,
    /// The segment's layout after the write.
    pub layout: SegmentLayout,
}

/// I/O the partition task performs for the machine.
#[derive(Debug)]
pub enum Action<W> {
    Flush(FlushJob),
    /// Seal `seal` first (when set), then create this checkpoint
    /// (create-if-absent); report with `checkpoint_done`.
    SaveCheckpoint {
        seal: Option<SealJob>,
        checkpoint: Checkpoint,
    },
    /// Make this checkpoint visible to readers.
    Publish(Checkpoint),
    /// Answer a producer.
    Reply(W, Result<Appended, WriteRejected>),
    /// Delete segments (data and index) no checkpoint references any more.
    DeleteSegments(Vec<SegmentMeta>),
    /// Delete the chunks of a merged segment (the checkpoint names the merged object).
    DeleteChunks(SegmentMeta),
    /// Delete checkpoints older than this sequence's predecessors.
    PruneCheckpoints(u64),
    /// The partition is fenced: stop the task.
    Stop,
}

#[derive(Debug)]
struct Waiter<W> {
    appended: Appended,
    waiter: W,
}

/// The segment being written.
#[derive(Debug, Clone)]
struct OpenSegment {
    /// Layout and end offset cover what has been flushed.
    meta: SegmentMeta,
    index: IndexBuilder,
}

#[derive(Debug)]
enum InFlight {
    Flush {
        /// Retried with the next flush if this one fails: the seal may not have happened.
        seal: Option<SealJob>,
        data: Vec<Bytes>,
        batches: Vec<BatchMeta>,
        end_offset: i64,
        /// The segment written is new (its meta is `open`).
        new_segment: bool,
    },
    Checkpoint {
        seal: Option<SealJob>,
        checkpoint: Checkpoint,
    },
}

#[derive(Clone, Copy, Debug)]
struct BatchMeta {
    base_offset: i64,
    len: u64,
    max_timestamp: i64,
}

/// The state of one partition's write path.
#[derive(Debug)]
pub struct PartitionMachine<W> {
    key: PartitionKey,
    topic_id: String,
    epoch: u64,
    config: PartitionConfig,
    phase: Phase,
    /// The last checkpoint saved (what readers see).
    saved: Checkpoint,
    /// Sealed segments, in offset order.
    sealed: Vec<SegmentMeta>,
    open: Option<OpenSegment>,
    /// The next flush seals the open segment (roll) before writing.
    roll: bool,
    /// A segment to seal in the next flush (abandoned after a failed write).
    pending_seal: Option<SealJob>,
    /// Next offset to assign.
    next_offset: i64,
    buffer: Vec<Bytes>,
    buffer_batches: Vec<BatchMeta>,
    buffer_bytes: u64,
    buffered_since: Option<Instant>,
    waiters: VecDeque<Waiter<W>>,
    in_flight: Option<InFlight>,
    /// Segment metadata changed without new data: a checkpoint is due.
    dirty: bool,
    /// Segments dropped by retention, deleted once the checkpoint without them is saved.
    doomed: Vec<SegmentMeta>,
    /// Merged segments whose chunks go once a checkpoint names the merged object.
    merged: Vec<SegmentMeta>,
    /// Epoch of the owner that fenced this one (when `Phase::Fenced`).
    fenced_by: u64,
    /// Attempts at a new segment at the same offset under this epoch.
    attempt: u32,
    failures: u32,
    retry_at: Option<Instant>,
    next_retention_check: Option<Instant>,
}

impl<W> PartitionMachine<W> {
    pub fn new(key: PartitionKey, topic_id: String, epoch: u64, config: PartitionConfig) -> Self {
        let saved = empty_checkpoint(&topic_id, epoch);
        Self {
            key,
            topic_id,
            epoch,
            config,
            phase: Phase::Recovering,
            saved,
            sealed: Vec::new(),
            open: None,
            roll: false,
            pending_seal: None,
            next_offset: 0,
            buffer: Vec::new(),
            buffer_batches: Vec::new(),
            buffer_bytes: 0,
            buffered_since: None,
            waiters: VecDeque::new(),
            in_flight: None,
            dirty: false,
            doomed: Vec::new(),
            merged: Vec::new(),
            fenced_by: epoch,
            attempt: 0,
            failures: 0,
            retry_at: None,
            next_retention_check: None,
        }
    }

    pub fn key(&self) -> &PartitionKey {
        &self.key
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The offset after the last checkpointed record.
    pub fn high_watermark(&self) -> i64 {
        self.saved.high_watermark
    }

    /// The offset the next record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.next_offset
    }

    /// Bytes accepted but not yet flushed or being flushed.
    pub fn buffered_bytes(&self) -> u64 {
        let in_flight = match &self.in_flight {
            Some(InFlight::Flush { data, .. }) => data.iter().map(|b| b.len() as u64).sum(),
            _ => 0,
        };
        self.buffer_bytes + in_flight
    }

    /// Whether producers should wait before sending more.
    pub fn is_full(&self) -> bool {
        self.buffered_bytes() >= self.config.max_buffer_bytes
    }

    pub fn config(&self) -> &PartitionConfig {
        &self.config
    }

    /// Takes ownership from the last checkpoint found in storage (if any).
    ///
    /// `verified_end`, for an open segment left by the previous writer, is
    /// the (offset, byte length) up to which its batches re-verified; the
    /// segment is sealed there. The returned actions save checkpoint `n + 1`
    /// under this epoch, which fences the previous writer.
    ///
    /// A checkpoint saved under a newer epoch means this owner is stale: it
    /// is fenced at once ([`Action::Stop`]) and saves nothing.
    pub fn recover(
        &mut self,
        found: Option<Checkpoint>,
        verified_end: Option<(i64, u64)>,
        now: Now,
    ) -> Vec<Action<W>> {
        let mut actions = Vec::new();
        if let Some(found) = found.as_ref().filter(|c| c.epoch > self.epoch) {
            // A newer owner already took over: saving over its log would fence it.
            self.phase = Phase::Fenced;
            self.fenced_by = found.epoch;
            actions.push(Action::Stop);
            return actions;
        }
        if let Some(found) = found {
            self.next_offset = found.high_watermark;
            let mut segments = found.segments.clone();
            if let Some(last) = segments.last_mut().filter(|s| !s.sealed) {
                if let Some((end_offset, len)) = verified_end {
                    truncate_meta(last, end_offset, len);
                    self.next_offset = end_offset;
                }
                last.sealed = true;
                let index = SparseIndex::new(std::mem::take(&mut last.index));
                self.pending_seal = Some(SealJob {
                    name: last.name.clone(),
                    volume: last.volume.clone(),
                    layout: last.layout.clone(),
                    index: index.encode(),
                });
            }
            segments.retain(|s| s.len() > 0);
            self.sealed = segments;
            self.saved = found;
        }
        let checkpoint = self.build_checkpoint(self.next_offset, now.ms);
        let seal = self.pending_seal.take();
        actions.push(self.save(seal, checkpoint));
        actions
    }

    /// Appends a request's batches: assigns offsets in their headers and
    /// buffers them. Answers at once for `Buffer`, after the covering
    /// checkpoint for `Durable`.
    pub fn produce(
        &mut self,
        mut request: ProduceBatches,
        ack: AckMode,
        waiter: W,
        now: Now,
    ) -> Vec<Action<W>> {
        if self.phase == Phase::Fenced {
            return vec![Action::Reply(waiter, Err(self.rejection()))];
        }
        let base_offset = self.next_offset;
        let leader_epoch = i32::try_from(self.epoch).unwrap_or(i32::MAX);
        let mut offset = base_offset;
        for (position, header) in &request.batches {
            let batch = &mut request.data[*position..*position + header.total_len()];
            // Batches were validated, so the header is there and these cannot fail.
            let _ = sluice_record::set_base_offset(batch, offset);
            let _ = sluice_record::set_partition_leader_epoch(batch, leader_epoch);
            self.buffer_batches.push(BatchMeta {
                base_offset: offset,
                len: header.total_len() as u64,
                max_timestamp: header.max_timestamp,
            });
            offset += i64::from(header.records_count);
        }
        let appended = Appended {
            base_offset,
            last_offset: offset - 1,
        };
        self.next_offset = offset;
        let data = request.data.freeze();
        self.buffer_bytes += data.len() as u64;
        self.buffer.push(data);
        self.buffered_since.get_or_insert(now.instant);
        let mut actions = Vec::new();
        match ack {
            AckMode::Buffer => actions.push(Action::Reply(waiter, Ok(appended))),
            AckMode::Durable => self.waiters.push_back(Waiter { appended, waiter }),
        }
        self.maybe_flush(now, &mut actions);
        actions
    }

    /// Time passes: flush on the interval, retry after errors, apply retention.
    pub fn tick(&mut self, now: Now) -> Vec<Action<W>> {
        let mut actions = Vec::new();
        if let (Some(InFlight::Checkpoint { seal, checkpoint }), Some(at)) =
            (&self.in_flight, self.retry_at)
        {
            if now.instant >= at {
                self.retry_at = None;
                actions.push(Action::SaveCheckpoint {
                    seal: seal.clone(),
                    checkpoint: checkpoint.clone(),
                });
            }
        }
        if self.phase != Phase::Writing {
            return actions;
        }
        if self.next_retention_check.is_none_or(|at| now.instant >= at) {
            self.next_retention_check = Some(now.instant + self.config.retention_check_interval);
            self.apply_retention(now.ms);
        }
        self.maybe_flush(now, &mut actions);
        actions
    }

    /// When the task should call [`tick`](Self::tick) next.
    pub fn next_deadline(&self) -> Option<Instant> {
        let flush = match (&self.in_flight, self.buffered_since) {
            // During a backoff nothing is flushed before the retry.
            (None, Some(since)) => {
                let due = since + self.config.flush_interval;
                Some(self.retry_at.map_or(due, |at| due.max(at)))
            }
            _ => None,
        };
        [flush, self.retry_at, self.next_retention_check]
            .into_iter()
            .flatten()
            .min()
    }

    /// The flush of the last [`Action::Flush`] ended.
    pub fn flush_done(&mut self, result: Result<Flushed, String>, now: Now) -> Vec<Action<W>> {
        let mut actions = Vec::new();
        let Some(InFlight::Flush {
            seal,
            data,
            batches,
            end_offset,
            new_segment,
        }) = self.in_flight.take()
        else {
            return actions;
        };
        match result {
            Ok(flushed) => {
                self.failures = 0;
                if new_segment {
                    self.attempt = 0;
                }
                let Some(open) = self.open.as_mut() else {
                    return actions;
                };
                let mut position = open.meta.layout.len();
                for batch in &batches {
                    open.index
                        .add_batch(batch.base_offset, position, batch.max_timestamp);
                    position += batch.len;
                }
                open.meta.volume = flushed.volume;
                open.meta.layout = flushed.layout;
                open.meta.end_offset = end_offset;
                open.meta.max_timestamp = open.index.max_timestamp();
                open.meta.index = open.index.entries().to_vec();
                let checkpoint = self.build_checkpoint(end_offset, now.ms);
                actions.push(self.save(None, checkpoint));
            }
            Err(_reason) => {
                // Failover: abandon the open segment at its checkpointed
                // length and write everything again into a new segment.
                if let Some(open) = self.open.take() {
                    self.abandon(open);
                }
                // A flush that carried a seal wrote to a new segment, so the
                // abandoned one set no seal of its own: retry this seal.
                if seal.is_some() {
                    self.pending_seal = seal;
                }
                self.attempt += 1;
                self.failures += 1;
                let mut restored = data;
                restored.append(&mut self.buffer);
                self.buffer = restored;
                let mut restored_batches = batches;
                restored_batches.append(&mut self.buffer_batches);
                self.buffer_batches = restored_batches;
                self.buffer_bytes = self.buffer.iter().map(|b| b.len() as u64).sum();
                self.buffered_since.get_or_insert(now.instant);
                self.retry_at = Some(now.instant + backoff(self.failures));
            }
        }
        actions
    }

    /// The save of the last [`Action::SaveCheckpoint`] ended.
    pub fn checkpoint_done(
        &mut self,
        result: Result<SaveOutcome, String>,
        now: Now,
    ) -> Vec<Action<W>> {
        let mut actions = Vec::new();
        let Some(InFlight::Checkpoint { seal, checkpoint }) = self.in_flight.take() else {
            return actions;
        };
        match result {
            Ok(SaveOutcome::Saved) => {
                self.failures = 0;
                self.phase = Phase::Writing;
                // The first retention check is due now, even if nothing is ever written.
                self.next_retention_check.get_or_insert(now.instant);
                let high_watermark = checkpoint.high_watermark;
                if checkpoint.sequence % checkpoint_prune_every() == 0 {
                    actions.push(Action::PruneCheckpoints(checkpoint.sequence));
                }
                self.saved = checkpoint.clone();
                actions.push(Action::Publish(checkpoint));
                while self
                    .waiters
                    .front()
                    .is_some_and(|w| w.appended.last_offset < high_watermark)
                {
                    if let Some(done) = self.waiters.pop_front() {
                        actions.push(Action::Reply(done.waiter, Ok(done.appended)));
                    }
                }
                // A checkpoint built before retention or a merge still
                // references what they replaced: delete only what this one does not.
                let referenced = |name: &str, layout: Option<&SegmentLayout>| {
                    self.saved
                        .segments
                        .iter()
                        .any(|s| s.name == name && layout.is_none_or(|l| *l == s.layout))
                };
                let (doomed, still_referenced): (Vec<_>, Vec<_>) = std::mem::take(&mut self.doomed)
                    .into_iter()
                    .partition(|s| !referenced(&s.name, None));
                self.doomed = still_referenced;
                if !doomed.is_empty() {
                    actions.push(Action::DeleteSegments(doomed));
                }
                let (merged, still_referenced): (Vec<_>, Vec<_>) = std::mem::take(&mut self.merged)
                    .into_iter()
                    .partition(|s| !referenced(&s.name, Some(&s.layout)));
                self.merged = still_referenced;
                for merged in merged {
                    actions.push(Action::DeleteChunks(merged));
                }
                self.check_roll(now.ms);
                self.maybe_flush(now, &mut actions);
            }
            Ok(SaveOutcome::Fenced { by_epoch }) => {
                self.phase = Phase::Fenced;
                self.fenced_by = by_epoch;
                let rejection = WriteRejected::Fenced { by_epoch };
                for waiter in self.waiters.drain(..) {
                    actions.push(Action::Reply(waiter.waiter, Err(rejection.clone())));
                }
                self.buffer.clear();
                self.buffer_batches.clear();
                self.buffer_bytes = 0;
                actions.push(Action::Stop);
            }
            Err(_reason) => {
                self.failures += 1;
                self.retry_at = Some(now.instant + backoff(self.failures));
                self.in_flight = Some(InFlight::Checkpoint { seal, checkpoint });
            }
        }
        actions
    }

    /// A sealed segment was merged into one object with `layout`.
    pub fn merge_done(&mut self, name: &str, layout: SegmentLayout) {
        if let Some(segment) = self
            .sealed
            .iter_mut()
            .find(|s| s.name == name && s.layout != layout)
        {
            let mut old = segment.clone();
            segment.layout = layout;
            old.sealed = true;
            self.merged.push(old);
            self.dirty = true;
        }
    }

    /// Fails every waiting producer: the partition is going away.
    pub fn stop(&mut self) -> Vec<Action<W>> {
        self.waiters
            .drain(..)
            .map(|w| Action::Reply(w.waiter, Err(WriteRejected::Stopped)))
            .collect()
    }

    fn rejection(&self) -> WriteRejected {
        WriteRejected::Fenced {
            by_epoch: self.fenced_by,
        }
    }

    fn check_roll(&mut self, now_ms: i64) {
        if let Some(open) = &self.open {
            let age =
                Duration::from_millis(now_ms.saturating_sub(open.meta.created_at_ms).max(0) as u64);
            if open.meta.layout.len() >= self.config.segment_bytes || age >= self.config.segment_age
            {
                self.roll = true;
            }
        }
    }

    /// Starts a flush (or a metadata-only checkpoint) when one is due.
    fn save(&mut self, seal: Option<SealJob>, checkpoint: Checkpoint) -> Action<W> {
        self.in_flight = Some(InFlight::Checkpoint {
            seal: seal.clone(),
            checkpoint: checkpoint.clone(),
        });
        Action::SaveCheckpoint { seal, checkpoint }
    }

    fn maybe_flush(&mut self, now: Now, actions: &mut Vec<Action<W>>) {
        if self.phase != Phase::Writing
            || self.in_flight.is_some()
            || self.retry_at.is_some_and(|at| now.instant < at)
        {
            return;
        }
        self.retry_at = None;
        if self.buffer.is_empty() {
            if self.dirty || self.pending_seal.is_some() {
                self.dirty = false;
                let checkpoint = self.build_checkpoint(self.saved.high_watermark, now.ms);
                let seal = self.pending_seal.take();
                actions.push(self.save(seal, checkpoint));
            }
            return;
        }
        let due = !self.waiters.is_empty()
            || self.buffer_bytes >= self.config.flush_bytes
            || self
                .buffered_since
                .is_some_and(|since| now.instant >= since + self.config.flush_interval);
        if !due {
            return;
        }
        let mut seal = self.pending_seal.take();
        if self.roll {
            self.roll = false;
            if let Some(open) = self.open.take() {
                seal = Some(self.seal(open));
            }
        }
        let (target, new_segment) = match &self.open {
            Some(_) => (SegmentTarget::Open, false),
            None => {
                let base_offset = self.saved.high_watermark;
                let name = paths::segment_name(base_offset, self.epoch, self.attempt);
                let avoid = seal.as_ref().map(|s| s.volume.clone());
                self.open = Some(OpenSegment {
                    meta: SegmentMeta {
                        name: name.clone(),
                        base_offset,
                        end_offset: base_offset,
                        epoch: self.epoch,
                        volume: String::new(),
                        layout: SegmentLayout::Chunks { lens: Vec::new() },
                        max_timestamp: -1,
                        created_at_ms: now.ms,
                        sealed: false,
                        index: Vec::new(),
                    },
                    index: IndexBuilder::new(self.config.index_interval_bytes),
                });
                (SegmentTarget::New { name, avoid }, true)
            }
        };
        let data = std::mem::take(&mut self.buffer);
        let batches = std::mem::take(&mut self.buffer_batches);
        self.buffer_bytes = 0;
        self.buffered_since = None;
        self.in_flight = Some(InFlight::Flush {
            seal: seal.clone(),
            data: data.clone(),
            batches,
            end_offset: self.next_offset,
            new_segment,
        });
        actions.push(Action::Flush(FlushJob { seal, target, data }));
    }

    /// Moves the open segment to the sealed list and describes its seal.
    fn seal(&mut self, open: OpenSegment) -> SealJob {
        let mut meta = open.meta;
        meta.sealed = true;
        let index = SparseIndex::new(std::mem::take(&mut meta.index)).encode();
        let job = SealJob {
            name: meta.name.clone(),
            volume: meta.volume.clone(),
            layout: meta.layout.clone(),
            index,
        };
        self.sealed.push(meta);
        job
    }

    /// Drops the open segment after a failed write: it is kept, sealed at its
    /// checkpointed length, if a checkpoint references it.
    fn abandon(&mut self, open: OpenSegment) {
        let checkpointed = self
            .saved
            .segments
            .iter()
            .find(|s| s.name == open.meta.name)
            .cloned();
        if let Some(meta) = checkpointed {
            let index = IndexBuilder::resume(
                self.config.index_interval_bytes,
                meta.index.clone(),
                meta.max_timestamp,
            );
            let job = self.seal(OpenSegment { meta, index });
            self.pending_seal = Some(job);
        }
    }

    fn apply_retention(&mut self, now_ms: i64) {
        let expired = retention::expired_segments(
            &self.sealed,
            self.open.as_ref().map(|o| &o.meta),
            now_ms,
            self.config.retention,
            self.config.retention_bytes,
        );
        if expired > 0 {
            self.doomed.extend(self.sealed.drain(..expired));
            self.dirty = true;
        }
    }

    fn build_checkpoint(&self, high_watermark: i64, now_ms: i64) -> Checkpoint {
        let mut segments = self.sealed.clone();
        if let Some(open) = self.open.as_ref().filter(|o| o.meta.layout.len() > 0) {
            let mut meta = open.meta.clone();
            meta.end_offset = meta.end_offset.min(high_watermark);
            segments.push(meta);
        }
        let log_start_offset = segments
            .first()
            .map_or(high_watermark, |s| s.base_offset)
            .max(self.saved.log_start_offset);
        Checkpoint {
            sequence: self.saved.sequence + 1,
            epoch: self.epoch,
            topic_id: self.topic_id.clone(),
            log_start_offset: log_start_offset.min(high_watermark),
            high_watermark,
            segments,
            producers: Default::default(),
            written_at_ms: now_ms,
        }
    }

    /// The segments a new checkpoint would drop and which the task should merge.
    pub fn sealed_segments(&self) -> &[SegmentMeta] {
        &self.sealed
    }
}

fn empty_checkpoint(topic_id: &str, epoch: u64) -> Checkpoint {
    Checkpoint {
        sequence: 0,
        epoch,
        topic_id: topic_id.to_owned(),
        log_start_offset: 0,
        high_watermark: 0,
        segments: Vec::new(),
        producers: Default::default(),
        written_at_ms: 0,
    }
}

/// Cuts a segment's description back to `len` bytes ending at `end_offset`.
fn truncate_meta(meta: &mut SegmentMeta, end_offset: i64, len: u64) {
    meta.end_offset = end_offset;
    meta.index.retain(|e| e.position < len);
    meta.layout = match &meta.layout {
        SegmentLayout::File { .. } => SegmentLayout::File { len },
        SegmentLayout::Object { .. } => SegmentLayout::Object { len },
        SegmentLayout::Chunks { lens } => {
            let mut kept = Vec::new();
            let mut total = 0;
            for chunk in lens {
                if total + chunk > len {
                    break;
                }
                total += chunk;
                kept.push(*chunk);
            }
            SegmentLayout::Chunks { lens: kept }
        }
    };
}

fn backoff(failures: u32) -> Duration {
    match failures {
        0 | 1 => Duration::ZERO,
        n => (Duration::from_millis(50) * 2u32.saturating_pow(n.min(10) - 1)).min(MAX_BACKOFF),
    }
}

/// Old checkpoints are pruned every this many saves.
fn checkpoint_prune_every() -> u64 {
    64
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;

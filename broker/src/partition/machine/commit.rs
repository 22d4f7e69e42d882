//! The checkpoint side of the machine: recovery and the takeover checkpoint,
//! saving checkpoints (which answers `durable` producers and DeleteRecords,
//! and publishes the log to readers), fencing, retention and merged chunks.

use sluice_log::SegmentMeta;
use sluice_log::checkpoint::{Checkpoint, SaveOutcome};
use sluice_log::index::SparseIndex;
use sluice_storage::SegmentLayout;

use super::{
    Action, CheckpointInFlight, Now, PartitionMachine, Phase, Producers, SealJob, WriteRejected,
};
use crate::partition::retention;

/// How many takeover checkpoints are kept from pruning (see
/// [`Checkpoint::takeovers`]).
const TAKEOVERS_KEPT: usize = 64;

/// Old checkpoints are pruned every this many saves.
const PRUNE_EVERY: u64 = 64;

impl<W, D> PartitionMachine<W, D> {
    /// Takes ownership from the newest checkpoint found in storage (if any).
    ///
    /// `verified_end`, for an open segment left by the previous writer, is
    /// the (offset, byte length) up to which its batches re-verified; the
    /// segment is sealed there. The returned actions save checkpoint `n + 1`
    /// under this epoch: the takeover checkpoint, which fences the previous
    /// writer. A checkpoint saved under a newer epoch means this owner is
    /// stale: it is fenced at once ([`Action::Stop`]) and saves nothing.
    pub fn recover(
        &mut self,
        found: Option<Checkpoint>,
        verified_end: Option<(i64, u64)>,
        now: Now,
    ) -> Vec<Action<W, D>> {
        let mut actions = Vec::new();
        if let Some(newer) = found.as_ref().filter(|c| c.epoch > self.epoch) {
            self.fence(newer.epoch, &mut actions);
            return actions;
        }
        self.sealed.clear();
        self.open = None;
        self.roll = false;
        self.pending_seal = None;
        self.next_offset = 0;
        self.takeovers.clear();
        self.requests.clear();
        self.producers = Producers::default();
        let had_checkpoint = found.is_some();
        if let Some(found) = found {
            self.next_offset = found.high_watermark;
            self.takeovers = found.takeovers.clone();
            self.requests = found
                .requests
                .iter()
                .filter(|r| r.last_offset < found.high_watermark)
                .cloned()
                .collect();
            let mut segments = found.segments.clone();
            if let Some(last) = segments.last_mut().filter(|s| !s.sealed) {
                if let Some((end_offset, len)) = verified_end {
                    truncate_meta(last, end_offset, len);
                    self.next_offset = end_offset;
                }
                last.sealed = true;
                if !last.layout.is_empty() {
                    let index = SparseIndex::new(std::mem::take(&mut last.index));
                    self.pending_seal = Some(SealJob {
                        name: last.name.clone(),
                        volume: last.volume.clone(),
                        layout: last.layout.clone(),
                        index: index.encode(),
                    });
                }
            }
            segments.retain(|s| !s.layout.is_empty());
            self.sealed = segments;
            self.saved = found;
        }
        let end = self.next_offset;
        // A DeleteRecords of an earlier owner is in the checkpoint found.
        self.log_start_offset = self.saved.log_start_offset;
        self.requests.retain(|r| r.last_offset < end);
        if had_checkpoint {
            // Only batches of the recovered log: one past it was lost with
            // the previous owner and its retry must be written.
            self.producers = Producers::load(&self.saved.producers, end);
        }
        self.producers.expire(now.ms);
        self.flushed_end = self.next_offset;
        self.takeovers.push(self.saved.sequence + 1);
        let excess = self.takeovers.len().saturating_sub(TAKEOVERS_KEPT);
        self.takeovers.drain(..excess);
        let checkpoint = self.build_checkpoint(self.next_offset, now.ms);
        let seal = self.pending_seal.take();
        actions.push(self.save(seal, checkpoint));
        actions
    }

    /// The save of the last [`Action::SaveCheckpoint`] ended.
    pub fn checkpoint_done(
        &mut self,
        result: Result<SaveOutcome, String>,
        now: Now,
    ) -> Vec<Action<W, D>> {
        let mut actions = Vec::new();
        let Some(in_flight) = self.checkpointing.take() else {
            return actions;
        };
        match result {
            Ok(SaveOutcome::Saved) => self.saved(in_flight.checkpoint, now, &mut actions),
            Ok(SaveOutcome::Fenced { by_epoch })
                if self.phase == Phase::Recovering && by_epoch < self.epoch =>
            {
                // An older owner saved this sequence between our read and our
                // save: read again and take over from its newest checkpoint.
                actions.push(Action::Recover);
            }
            Ok(SaveOutcome::Fenced { by_epoch }) => self.fence(by_epoch, &mut actions),
            Err(_reason) => {
                self.checkpoint_retry.failed(now.instant);
                self.checkpointing = Some(in_flight);
            }
        }
        actions
    }

    /// A checkpoint is saved: answer the producers it covers, publish it,
    /// delete what no checkpoint references any more, and carry on.
    fn saved(&mut self, checkpoint: Checkpoint, now: Now, actions: &mut Vec<Action<W, D>>) {
        self.checkpoint_retry.succeeded();
        if checkpoint.sequence.is_multiple_of(PRUNE_EVERY) {
            actions.push(Action::PruneCheckpoints {
                newest: checkpoint.sequence,
                keep: checkpoint.takeovers.clone(),
            });
        }
        let high_watermark = checkpoint.high_watermark;
        self.producers.checkpointed(high_watermark);
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
        self.answer_deletes(actions);
        self.delete_unreferenced(actions);
        if self.phase == Phase::Recovering {
            self.phase = Phase::Writing;
            // The first retention check is due now, even if nothing is ever written.
            self.next_retention_check.get_or_insert(now.instant);
            while let Some(early) = self.early.pop_front() {
                self.append(early.request, early.ack, early.waiter, now, actions);
            }
            while let Some(early) = self.early_deletes.pop_front() {
                self.advance_log_start(early.offset, early.waiter, now, actions);
            }
        }
        self.maybe_checkpoint(now, actions);
        self.maybe_flush(now, actions);
    }

    /// Retention and merges replaced segments; delete those the saved
    /// checkpoint no longer references (one built earlier may still).
    fn delete_unreferenced(&mut self, actions: &mut Vec<Action<W, D>>) {
        let referenced = |name: &str| self.saved.segments.iter().any(|s| s.name == name);
        let (doomed, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.doomed)
            .into_iter()
            .partition(|s| !referenced(&s.name));
        self.doomed = kept;
        if !doomed.is_empty() {
            actions.push(Action::DeleteSegments(doomed));
        }
        // Chunks stay while the saved checkpoint reads the segment as chunks
        // at all: one built before the segment was sealed names fewer of them.
        let chunked = |name: &str| {
            self.saved
                .segments
                .iter()
                .any(|s| s.name == name && matches!(s.layout, SegmentLayout::Chunks { .. }))
        };
        let (merged, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.merged)
            .into_iter()
            .partition(|s| !chunked(&s.name));
        self.merged = kept;
        for merged in merged {
            actions.push(Action::DeleteChunks(merged));
        }
    }

    fn fence(&mut self, by_epoch: u64, actions: &mut Vec<Action<W, D>>) {
        self.phase = Phase::Fenced;
        self.fenced_by = by_epoch;
        let rejection = WriteRejected::Fenced { by_epoch };
        let early = self.early.drain(..).map(|e| e.waiter);
        let parked = self.parked.drain(..).map(|p| p.waiter);
        let waiting = self.waiters.drain(..).map(|w| w.waiter);
        for waiter in early.chain(parked).chain(waiting) {
            actions.push(Action::Reply(waiter, Err(rejection.clone())));
        }
        self.reject_deletes(rejection, actions);
        self.buffer.clear();
        self.buffer_batches.clear();
        self.buffer_bytes = 0;
        self.buffered_since = None;
        actions.push(Action::Stop);
    }

    /// A sealed segment was merged into one object with `layout`. A merge of
    /// another length is stale (started by a takeover attempt that lost the
    /// race, before the previous owner wrote more) and is ignored.
    pub fn merge_done(&mut self, name: &str, layout: SegmentLayout, now: Now) -> Vec<Action<W, D>> {
        let mut actions = Vec::new();
        if let Some(segment) = self
            .sealed
            .iter_mut()
            .find(|s| s.name == name && s.layout != layout && s.len() == layout.len())
        {
            let old = segment.clone();
            segment.layout = layout;
            self.merged.push(old);
            self.checkpoint_due = true;
            self.maybe_checkpoint(now, &mut actions);
        }
        actions
    }

    /// Saves a checkpoint when one is due, none is being saved, and no seal
    /// is outstanding (a checkpoint never names a segment sealed before its
    /// index exists).
    pub(super) fn maybe_checkpoint(&mut self, now: Now, actions: &mut Vec<Action<W, D>>) {
        let seal_in_flush = self.flushing.as_ref().is_some_and(|f| f.seal.is_some());
        let can_take_seal = self.flushing.is_none();
        if self.phase != Phase::Writing
            || self.checkpointing.is_some()
            || self.checkpoint_retry.waiting(now.instant)
            || seal_in_flush
            || (self.pending_seal.is_some() && !can_take_seal)
            || !(self.checkpoint_due || self.pending_seal.is_some())
        {
            return;
        }
        self.checkpoint_due = false;
        let seal = self.pending_seal.take();
        self.producers.expire(now.ms);
        let checkpoint = self.build_checkpoint(self.flushed_end, now.ms);
        actions.push(self.save(seal, checkpoint));
    }

    /// Re-sends a failed checkpoint once its backoff has passed.
    pub(super) fn retry_checkpoint(&mut self, now: Now, actions: &mut Vec<Action<W, D>>) {
        let Some(at) = self.checkpoint_retry.at else {
            return;
        };
        if now.instant < at {
            return;
        }
        self.checkpoint_retry.at = None;
        if let Some(in_flight) = &self.checkpointing {
            actions.push(Action::SaveCheckpoint {
                seal: in_flight.seal.clone(),
                checkpoint: in_flight.checkpoint.clone(),
            });
        }
    }

    fn save(&mut self, seal: Option<SealJob>, checkpoint: Checkpoint) -> Action<W, D> {
        self.checkpointing = Some(CheckpointInFlight {
            seal: seal.clone(),
            checkpoint: checkpoint.clone(),
        });
        Action::SaveCheckpoint { seal, checkpoint }
    }

    /// Drops the oldest sealed segments retention expires, and those wholly
    /// below the log start offset (DeleteRecords).
    pub(super) fn apply_retention(&mut self, now_ms: i64) {
        let expired = retention::expired_segments(
            &self.sealed,
            self.open.as_ref().map(|o| &o.meta),
            now_ms,
            self.config.retention,
            self.config.retention_bytes,
        );
        self.drop_sealed(expired.max(self.sealed_below_log_start()));
    }

    /// Drops the `count` oldest sealed segments: the next checkpoint no
    /// longer names them, and they are deleted once a saved one does not.
    pub(super) fn drop_sealed(&mut self, count: usize) {
        if count > 0 {
            self.doomed.extend(self.sealed.drain(..count));
            self.checkpoint_due = true;
        }
    }

    /// The next checkpoint: sealed segments, the open one as far as it is
    /// flushed, and everything below `high_watermark` visible.
    fn build_checkpoint(&self, high_watermark: i64, now_ms: i64) -> Checkpoint {
        let mut segments = self.sealed.clone();
        if let Some(open) = self.open.as_ref().filter(|o| !o.meta.layout.is_empty()) {
            segments.push(open.meta.clone());
        }
        let log_start_offset = segments
            .first()
            .map_or(high_watermark, |s| s.base_offset)
            .max(self.saved.log_start_offset)
            .max(self.log_start_offset);
        Checkpoint {
            sequence: self.saved.sequence + 1,
            epoch: self.epoch,
            topic_id: self.topic_id.clone(),
            log_start_offset: log_start_offset.min(high_watermark),
            high_watermark,
            segments,
            takeovers: self.takeovers.clone(),
            // Only requests this checkpoint covers: after a crash, one it
            // does not cover was lost and its retry must be written.
            requests: self
                .requests
                .iter()
                .filter(|r| r.last_offset < high_watermark)
                .cloned()
                .collect(),
            // Likewise only the producer batches it covers.
            producers: self.producers.records(high_watermark),
            written_at_ms: now_ms,
        }
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
            // Keep whole chunks, and the verified part of the chunk the
            // damage is in (a ranged read never goes past it).
            let mut kept = Vec::new();
            let mut total = 0;
            for chunk in lens {
                if total >= len {
                    break;
                }
                kept.push((*chunk).min(len - total));
                total += chunk;
            }
            SegmentLayout::Chunks { lens: kept }
        }
    };
}

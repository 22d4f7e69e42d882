//! The write side of the machine: produce (assign offsets, buffer), flush
//! (group commit into the open segment), roll (seal, then a new segment on a
//! random volume) and failover (a failed write continues in a new segment).

use sluice_log::index::{IndexBuilder, SparseIndex};
use sluice_log::{SegmentMeta, paths};
use sluice_storage::SegmentLayout;

/// Request ids are remembered this long (longer than any proxy retries)...
const REQUESTS_KEPT_FOR_MS: i64 = 60_000;
/// ...and at most this many per partition.
const REQUESTS_KEPT: usize = 2048;

use super::producers::Verdict;
use super::{
    AckMode, Action, Appended, BatchMeta, EarlyProduce, FlushInFlight, FlushJob, Flushed, Now,
    OpenSegment, PARK_TIMEOUT, PARKED_MAX, PARKED_MAX_BYTES, PARKED_PER_PRODUCER, Parked,
    PartitionMachine, Phase, ProduceBatches, RequestRecord, SealJob, SegmentTarget, Waiter,
    WriteRejected,
};

impl<W, D> PartitionMachine<W, D> {
    /// Appends a request's batches: assigns offsets in their headers and
    /// buffers them. Answers at once for `Buffer`, after the covering
    /// checkpoint for `Durable`. While recovering, requests wait in order.
    pub fn produce(
        &mut self,
        request: ProduceBatches,
        ack: AckMode,
        waiter: W,
        now: Now,
    ) -> Vec<Action<W, D>> {
        let mut actions = Vec::new();
        match self.phase {
            Phase::Fenced => actions.push(Action::Reply(waiter, Err(self.rejection()))),
            Phase::Recovering => self.early.push_back(EarlyProduce {
                request,
                ack,
                waiter,
            }),
            Phase::Writing => {
                self.append(request, ack, waiter, now, &mut actions);
                self.maybe_flush(now, &mut actions);
            }
        }
        actions
    }

    /// Assigns offsets and buffers, answering `Buffer` requests. A retry
    /// (by request id or by producer sequence) is answered with the first
    /// attempt's offsets instead; a request an idempotent producer's state
    /// refuses is rejected whole.
    pub(super) fn append(
        &mut self,
        request: ProduceBatches,
        ack: AckMode,
        waiter: W,
        now: Now,
        actions: &mut Vec<Action<W, D>>,
    ) {
        self.append_one(request, ack, waiter, now, actions, false);
    }

    /// [`append`](Self::append); `unparking` when called from
    /// [`unpark`](Self::unpark), which then looks for the next itself
    /// (a loop, not a recursion as deep as the parked requests).
    fn append_one(
        &mut self,
        mut request: ProduceBatches,
        ack: AckMode,
        waiter: W,
        now: Now,
        actions: &mut Vec<Action<W, D>>,
        unparking: bool,
    ) {
        if let Some(id) = &request.request_id
            && let Some(done) = self.requests.iter().rev().find(|r| &r.id == id)
        {
            // A retry of a request already appended (perhaps by an
            // earlier owner): the same answer, once it is as durable.
            let appended = Appended {
                base_offset: done.base_offset,
                last_offset: done.last_offset,
                duplicate: false,
            };
            self.answer_retry(appended, ack, waiter, actions);
            return;
        }
        match self.producers.check(&request.batches) {
            Ok(Verdict::Append) => {}
            Ok(Verdict::Duplicate(appended)) => {
                self.answer_retry(appended, ack, waiter, actions);
                return;
            }
            Err(rejection) if rejection.is_ahead() && self.may_park(&request) => {
                // Earlier batches may still be on their way.
                self.parked.push(Parked {
                    request,
                    ack,
                    waiter,
                    since: now.instant,
                    rejection,
                });
                return;
            }
            Err(rejection) => {
                let rejected = WriteRejected::Producer(rejection);
                actions.push(Action::Reply(waiter, Err(rejected)));
                return;
            }
        }
        let producer_batches = request.batches.iter().any(|(_, h)| h.has_producer_id());
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
            self.producers
                .appended(header, offset, now.ms, self.saved.high_watermark);
            offset += i64::from(header.records_count);
        }
        let appended = Appended {
            base_offset,
            last_offset: offset - 1,
            duplicate: false,
        };
        self.next_offset = offset;
        if let Some(id) = request.request_id.take() {
            self.remember_request(id, appended, now.ms);
        }
        let data = request.data.freeze();
        self.buffer_bytes += data.len() as u64;
        self.buffer.push(data);
        self.buffered_since.get_or_insert(now.instant);
        match ack {
            AckMode::Buffer => actions.push(Action::Reply(waiter, Ok(appended))),
            AckMode::Durable => self.waiters.push_back(Waiter { appended, waiter }),
        }
        if producer_batches && !self.parked.is_empty() && !unparking {
            self.unpark(now, actions);
        }
    }

    /// Whether one more request of this producer may wait: at most
    /// [`PARKED_PER_PRODUCER`] each (an idempotent producer has at most 5
    /// requests in flight per partition), [`PARKED_MAX`] and
    /// [`PARKED_MAX_BYTES`] in all; beyond that, refused at once.
    fn may_park(&self, request: &ProduceBatches) -> bool {
        let producer = request.batches.first().map(|(_, h)| h.producer_id);
        let same = self
            .parked
            .iter()
            .filter(|p| p.request.batches.first().map(|(_, h)| h.producer_id) == producer)
            .count();
        let bytes: usize = self.parked.iter().map(|p| p.request.data.len()).sum();
        same < PARKED_PER_PRODUCER
            && self.parked.len() < PARKED_MAX
            && bytes + request.data.len() <= PARKED_MAX_BYTES
    }

    /// Appends the parked requests whose turn has come (or answers those
    /// that turn out to be retries or refusals), one after the other.
    fn unpark(&mut self, now: Now, actions: &mut Vec<Action<W, D>>) {
        while let Some(at) = self.parked.iter().position(
            |p| !matches!(self.producers.check(&p.request.batches), Err(r) if r.is_ahead()),
        ) {
            let parked = self.parked.swap_remove(at);
            self.append_one(
                parked.request,
                parked.ack,
                parked.waiter,
                now,
                actions,
                true,
            );
        }
    }

    /// Refuses parked requests whose gap was not filled in time.
    fn expire_parked(&mut self, now: Now, actions: &mut Vec<Action<W, D>>) {
        let mut i = 0;
        while i < self.parked.len() {
            if now.instant >= self.parked[i].since + PARK_TIMEOUT {
                let parked = self.parked.swap_remove(i);
                let rejected = WriteRejected::Producer(parked.rejection);
                actions.push(Action::Reply(parked.waiter, Err(rejected)));
            } else {
                i += 1;
            }
        }
    }

    /// Answers a retry of something appended (perhaps by an earlier owner)
    /// with its offsets, once they are as durable as asked.
    fn answer_retry(
        &mut self,
        appended: Appended,
        ack: AckMode,
        waiter: W,
        actions: &mut Vec<Action<W, D>>,
    ) {
        let covered = appended.last_offset < self.saved.high_watermark;
        if ack == AckMode::Buffer || covered {
            actions.push(Action::Reply(waiter, Ok(appended)));
        } else {
            // Answered with the checkpoint that covers the first attempt;
            // waiters stay in offset order (the first attempt's may be
            // anywhere among them).
            let at = self
                .waiters
                .partition_point(|w| w.appended.last_offset <= appended.last_offset);
            self.waiters.insert(at, Waiter { appended, waiter });
        }
    }

    /// Records an appended request's id, forgetting those older than
    /// [`REQUESTS_KEPT_FOR`] beyond the last [`REQUESTS_KEPT`].
    fn remember_request(&mut self, id: String, appended: Appended, now_ms: i64) {
        self.requests.push_back(RequestRecord {
            id,
            base_offset: appended.base_offset,
            last_offset: appended.last_offset,
            at_ms: now_ms,
        });
        let horizon = now_ms - REQUESTS_KEPT_FOR_MS;
        while self.requests.len() > REQUESTS_KEPT
            || self.requests.front().is_some_and(|r| r.at_ms < horizon)
        {
            self.requests.pop_front();
        }
    }

    /// Time passes: flush on the interval, retry after errors, apply retention.
    pub fn tick(&mut self, now: Now) -> Vec<Action<W, D>> {
        let mut actions = Vec::new();
        self.expire_parked(now, &mut actions);
        self.retry_checkpoint(now, &mut actions);
        if self.phase != Phase::Writing {
            return actions;
        }
        if self.next_retention_check.is_none_or(|at| now.instant >= at) {
            self.next_retention_check = Some(now.instant + self.config.retention_check_interval);
            self.apply_retention(now.ms);
        }
        self.maybe_checkpoint(now, &mut actions);
        self.maybe_flush(now, &mut actions);
        actions
    }

    /// The flush of the last [`Action::Flush`] ended.
    pub fn flush_done(&mut self, result: Result<Flushed, String>, now: Now) -> Vec<Action<W, D>> {
        let mut actions = Vec::new();
        let Some(flush) = self.flushing.take() else {
            return actions;
        };
        match result {
            Ok(flushed) => {
                self.flush_retry.succeeded();
                if flush.new_segment {
                    self.attempt = 0;
                }
                if let Some(open) = self.open.as_mut() {
                    let mut position = open.meta.layout.len();
                    for batch in &flush.batches {
                        open.index
                            .add_batch(batch.base_offset, position, batch.max_timestamp);
                        position += batch.len;
                    }
                    open.meta.volume = flushed.volume;
                    open.meta.layout = flushed.layout;
                    open.meta.end_offset = flush.end_offset;
                    open.meta.max_timestamp = open.index.max_timestamp();
                    open.meta.index = open.index.entries().to_vec();
                    self.flushed_end = flush.end_offset;
                    self.checkpoint_due = true;
                }
                self.check_roll(now.ms);
            }
            Err(_reason) => self.fail_over(flush, now),
        }
        self.maybe_checkpoint(now, &mut actions);
        self.maybe_flush(now, &mut actions);
        actions
    }

    /// A write failed: abandon the open segment at its last successful
    /// flush (everything up to there is durable) and write the failed data
    /// again, first thing, into a new segment on another volume.
    fn fail_over(&mut self, flush: FlushInFlight, now: Now) {
        if let Some(open) = self.open.take()
            && !open.meta.layout.is_empty()
        {
            let job = self.seal(open);
            self.pending_seal = Some(job);
        }
        // A flush that seals writes to a new, never flushed segment, so the
        // abandon above sealed nothing: redo this flush's own seal.
        if let Some(seal) = flush.seal {
            self.pending_seal.get_or_insert(seal);
        }
        self.attempt += 1;
        self.flush_retry.failed(now.instant);
        let mut data = flush.data;
        data.append(&mut self.buffer);
        self.buffer = data;
        let mut batches = flush.batches;
        batches.append(&mut self.buffer_batches);
        self.buffer_batches = batches;
        self.buffer_bytes = self.buffer.iter().map(|b| b.len() as u64).sum();
        self.buffered_since.get_or_insert(now.instant);
    }

    pub(super) fn check_roll(&mut self, now_ms: i64) {
        if let Some(open) = &self.open {
            let age_ms = now_ms.saturating_sub(open.meta.created_at_ms).max(0) as u128;
            if open.meta.layout.len() >= self.config.segment_bytes
                || age_ms >= self.config.segment_age.as_millis()
            {
                self.roll = true;
            }
        }
    }

    /// Whether a durable producer waits on buffered (not yet flushed) data:
    /// then a flush is due at once (subject to `min_flush_interval`); those
    /// whose data is already flushed only wait for the checkpoint.
    pub(super) fn durable_waiting(&self) -> bool {
        self.waiters
            .back()
            .is_some_and(|w| w.appended.last_offset >= self.flushed_end)
    }

    /// Starts a flush when one is due and none is running.
    pub(super) fn maybe_flush(&mut self, now: Now, actions: &mut Vec<Action<W, D>>) {
        if self.phase != Phase::Writing
            || self.flushing.is_some()
            || self.buffer.is_empty()
            || self.flush_retry.waiting(now.instant)
        {
            return;
        }
        let full = self.buffer_bytes >= self.config.flush_bytes;
        let held = self
            .last_flush_at
            .is_some_and(|last| now.instant < last + self.config.min_flush_interval);
        if held && !full && !self.draining && self.flush_retry.at.is_none() {
            return;
        }
        let due = self.draining
            || self.durable_waiting()
            || full
            || self.flush_retry.at.is_some()
            || self
                .buffered_since
                .is_some_and(|since| now.instant >= since + self.config.flush_interval);
        if !due {
            return;
        }
        self.flush_retry.at = None;
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
                let base_offset = self.flushed_end;
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
        self.last_flush_at = Some(now.instant);
        self.flushing = Some(FlushInFlight {
            seal: seal.clone(),
            data: data.clone(),
            batches,
            end_offset: self.next_offset,
            new_segment,
        });
        actions.push(Action::Flush(FlushJob { seal, target, data }));
    }

    /// Moves a segment to the sealed list and describes its seal.
    pub(super) fn seal(&mut self, open: OpenSegment) -> SealJob {
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
}

//! The partition state machine of DESIGN.md, as a plain struct with no I/O:
//!
//! ```text
//!  Recovering ──takeover checkpoint saved──▶ Writing: buffer → flush → checkpoint
//!       │  ▲ lost the race to an older writer       │  roll: seal + new segment in the next flush
//!       │  └────────── recover again ◀──────────────┤  write failed: failover to a new segment
//!       └──────────── fenced by a newer owner ◀──────┘
//! ```
//!
//! Every input (a produce, a finished flush, a saved checkpoint, a tick) is a
//! method that updates the state and returns the [`Action`]s the partition
//! task must perform; the task does the I/O and reports back.
//!
//! DeleteRecords (Kafka's) raises the log start offset: it is answered once
//! a saved checkpoint records the new start, so it survives a crash or a
//! move, and whole segments below it go as retention's do.
//!
//! Flushes and checkpoints are pipelined: while checkpoint `n` is being
//! saved, the next flush already writes (at most one of each at a time).
//! Checkpoint `n + 1` is built only after `n` is saved and covers everything
//! flushed by then, so every checkpoint covers its predecessor and only
//! durable data; producers with `durable` acks are answered when the
//! checkpoint covering their batches is saved. Only checkpointed data is
//! visible to readers.
//!
//! `write.rs` holds the write side (produce, flush, roll, failover);
//! `commit.rs` the checkpoint side (recovery, checkpoints, retention, merges);
//! `delete_records.rs` raising the log start offset (DeleteRecords);
//! `producers.rs` the idempotent producers' sequence checks.

mod commit;
mod delete_records;
mod producers;
mod write;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sluice_log::checkpoint::{Checkpoint, RequestRecord};
use sluice_log::index::IndexBuilder;
use sluice_log::{PartitionKey, SegmentMeta};
use sluice_record::BatchHeader;
use sluice_storage::SegmentLayout;

use crate::config::PartitionConfig;
pub use producers::ProducerRejection;
use producers::Producers;

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
    /// The request was a retry of an idempotent producer's batches already
    /// appended: nothing was written, the offsets are the first attempt's.
    pub duplicate: bool,
}

/// Why a write was not acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteRejected {
    /// A newer owner (epoch `by_epoch`) took the partition over.
    Fenced { by_epoch: u64 },
    /// The partition is stopping.
    Stopped,
    /// An idempotent producer's batch does not fit its state (old epoch,
    /// sequence gap, ...): nothing of the request was appended.
    Producer(ProducerRejection),
}

/// Why a DeleteRecords was not done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteRecordsRejected {
    /// The offset is past the high watermark, or negative (other than -1,
    /// which means the high watermark).
    OffsetOutOfRange { offset: i64, high_watermark: i64 },
    /// The partition is fenced or stopping, as for a write.
    Write(WriteRejected),
}

/// Where a partition is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading the last checkpoint and saving the takeover checkpoint.
    /// Produce requests wait (their offsets are not known yet).
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
    /// The sender's id for this request (a proxy's retry token): a request
    /// with an id already appended is answered with its offsets, not
    /// written again.
    pub request_id: Option<String>,
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

/// I/O the partition task performs for the machine. `W` answers a produce,
/// `D` a DeleteRecords.
#[derive(Debug)]
pub enum Action<W, D = W> {
    /// Read the newest checkpoint and verify the open segment's tail; report
    /// with [`PartitionMachine::recover`].
    Recover,
    /// Append; report with [`PartitionMachine::flush_done`].
    Flush(FlushJob),
    /// Seal `seal` first (when set), then create this checkpoint
    /// (create-if-absent); report with [`PartitionMachine::checkpoint_done`].
    SaveCheckpoint {
        seal: Option<SealJob>,
        checkpoint: Checkpoint,
    },
    /// Make this checkpoint visible to readers.
    Publish(Checkpoint),
    /// Answer a producer.
    Reply(W, Result<Appended, WriteRejected>),
    /// Answer a DeleteRecords with the log start offset now saved.
    ReplyDeleteRecords(D, Result<i64, DeleteRecordsRejected>),
    /// Delete segments (data and index) no checkpoint references any more.
    DeleteSegments(Vec<SegmentMeta>),
    /// Delete the chunks of a merged segment (the checkpoint names the merged object).
    DeleteChunks(SegmentMeta),
    /// Delete old checkpoints: those more than a few behind `newest`, except
    /// the sequences in `keep` (takeover checkpoints, which fence old owners).
    PruneCheckpoints { newest: u64, keep: Vec<u64> },
    /// The partition is fenced: stop the task.
    Stop,
}

#[derive(Debug)]
struct Waiter<W> {
    appended: Appended,
    waiter: W,
}

/// A produce received before the partition could assign offsets.
#[derive(Debug)]
struct EarlyProduce<W> {
    request: ProduceBatches,
    ack: AckMode,
    waiter: W,
}

/// An idempotent producer's request that arrived ahead of its sequence:
/// gRPC calls in flight together may reach the partition in any order, so
/// it waits (up to [`PARK_TIMEOUT`]) for the batches before it.
#[derive(Debug)]
struct Parked<W> {
    request: ProduceBatches,
    ack: AckMode,
    waiter: W,
    since: Instant,
    /// The answer if the gap is not filled in time.
    rejection: producers::ProducerRejection,
}

/// How long a request ahead of its producer's sequence waits for the gap
/// to fill before it is refused with `OUT_OF_ORDER_SEQUENCE`.
pub const PARK_TIMEOUT: Duration = Duration::from_secs(1);
/// Requests one producer may have waiting; more are refused at once.
const PARKED_PER_PRODUCER: usize = 5;
/// Requests all producers of a partition may have waiting...
const PARKED_MAX: usize = 256;
/// ...and their bytes (parked requests are outside the write buffer's limit).
const PARKED_MAX_BYTES: usize = 32 << 20;

/// The segment being written.
#[derive(Debug, Clone)]
struct OpenSegment {
    /// Layout and end offset cover what has been flushed successfully.
    meta: SegmentMeta,
    index: IndexBuilder,
}

#[derive(Debug)]
struct FlushInFlight {
    /// Redone by the next flush if this one fails: the seal may not have happened.
    seal: Option<SealJob>,
    data: Vec<Bytes>,
    batches: Vec<BatchMeta>,
    end_offset: i64,
    /// The segment written is new (its meta is `open`).
    new_segment: bool,
}

#[derive(Debug)]
struct CheckpointInFlight {
    seal: Option<SealJob>,
    checkpoint: Checkpoint,
}

#[derive(Clone, Copy, Debug)]
struct BatchMeta {
    base_offset: i64,
    len: u64,
    max_timestamp: i64,
}

/// A failing operation's retry schedule.
#[derive(Debug, Default)]
struct Retry {
    failures: u32,
    at: Option<Instant>,
}

impl Retry {
    fn failed(&mut self, now: Instant) {
        self.failures += 1;
        self.at = Some(now + backoff(self.failures));
    }

    fn succeeded(&mut self) {
        *self = Self::default();
    }

    fn waiting(&self, now: Instant) -> bool {
        self.at.is_some_and(|at| now < at)
    }
}

/// A DeleteRecords waiting for the checkpoint that records its log start.
#[derive(Debug)]
struct LogStartWaiter<D> {
    /// The log start offset asked for (already checked against the high watermark).
    offset: i64,
    waiter: D,
}

/// The state of one partition's write path; `W` is how a producer is
/// answered, `D` a DeleteRecords.
#[derive(Debug)]
pub struct PartitionMachine<W, D = W> {
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
    /// A segment sealed in memory whose seal job has not run yet.
    pending_seal: Option<SealJob>,
    /// Next offset to assign.
    next_offset: i64,
    /// The log start offset the next checkpoint records at least: raised
    /// by DeleteRecords, never lowered (retention raises it through the
    /// segments it drops).
    log_start_offset: i64,
    /// DeleteRecords received while recovering, in order.
    early_deletes: VecDeque<LogStartWaiter<D>>,
    /// DeleteRecords waiting for a saved checkpoint with their log start.
    delete_waiters: Vec<LogStartWaiter<D>>,
    /// The offset after the last durably flushed batch.
    flushed_end: i64,
    buffer: Vec<Bytes>,
    buffer_batches: Vec<BatchMeta>,
    buffer_bytes: u64,
    buffered_since: Option<Instant>,
    /// When the last flush started (for `min_flush_interval`).
    last_flush_at: Option<Instant>,
    /// Produces that arrived while recovering, in order.
    early: VecDeque<EarlyProduce<W>>,
    /// Idempotent produces waiting for earlier sequences.
    parked: Vec<Parked<W>>,
    waiters: VecDeque<Waiter<W>>,
    flushing: Option<FlushInFlight>,
    checkpointing: Option<CheckpointInFlight>,
    /// Something changed since the last checkpoint was built (a flush, a
    /// retention drop, a merge): another checkpoint is due.
    checkpoint_due: bool,
    /// Segments dropped by retention, deleted once no saved checkpoint references them.
    doomed: Vec<SegmentMeta>,
    /// Merged segments whose chunks go once a saved checkpoint names the merged object.
    merged: Vec<SegmentMeta>,
    /// Sequences of the takeover checkpoints, which pruning keeps.
    takeovers: Vec<u64>,
    /// Epoch of the owner that fenced this one (when `Phase::Fenced`).
    fenced_by: u64,
    /// Attempts at a new segment at the same offset under this epoch.
    attempt: u32,
    flush_retry: Retry,
    checkpoint_retry: Retry,
    next_retention_check: Option<Instant>,
    /// Stopping: flush everything buffered now, then save a last checkpoint.
    draining: bool,
    /// Requests appended with an id, oldest first, and their offsets.
    requests: VecDeque<RequestRecord>,
    /// Idempotent producers' epochs and last batches.
    producers: Producers,
}

impl<W, D> PartitionMachine<W, D> {
    /// A partition about to be recovered under `epoch`; the first action
    /// is [`Action::Recover`] (see [`start`](Self::start)).
    pub fn new(key: PartitionKey, topic_id: String, epoch: u64, config: PartitionConfig) -> Self {
        let saved = Checkpoint {
            sequence: 0,
            epoch,
            topic_id: topic_id.clone(),
            log_start_offset: 0,
            high_watermark: 0,
            segments: Vec::new(),
            takeovers: Vec::new(),
            requests: Vec::new(),
            producers: Default::default(),
            written_at_ms: 0,
        };
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
            log_start_offset: 0,
            early_deletes: VecDeque::new(),
            delete_waiters: Vec::new(),
            flushed_end: 0,
            buffer: Vec::new(),
            buffer_batches: Vec::new(),
            buffer_bytes: 0,
            buffered_since: None,
            last_flush_at: None,
            early: VecDeque::new(),
            parked: Vec::new(),
            waiters: VecDeque::new(),
            flushing: None,
            checkpointing: None,
            checkpoint_due: false,
            doomed: Vec::new(),
            merged: Vec::new(),
            takeovers: Vec::new(),
            fenced_by: epoch,
            attempt: 0,
            flush_retry: Retry::default(),
            checkpoint_retry: Retry::default(),
            next_retention_check: None,
            draining: false,
            requests: VecDeque::new(),
            producers: Producers::default(),
        }
    }

    /// The first actions: recover.
    pub fn start(&mut self) -> Vec<Action<W, D>> {
        vec![Action::Recover]
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

    /// Bytes accepted but not yet durably flushed.
    pub fn buffered_bytes(&self) -> u64 {
        let flushing: u64 = self
            .flushing
            .as_ref()
            .map_or(0, |f| f.data.iter().map(|b| b.len() as u64).sum());
        let early: u64 = self.early.iter().map(|e| e.request.data.len() as u64).sum();
        // Parked requests are not counted: while the partition is full it
        // reads no requests, and the one that would unpark them could not
        // get in (they are few: see `PARKED_MAX`).
        self.buffer_bytes + flushing + early
    }

    /// Whether producers should wait before sending more.
    pub fn is_full(&self) -> bool {
        self.buffered_bytes() >= self.config.max_buffer_bytes
    }

    pub fn config(&self) -> &PartitionConfig {
        &self.config
    }

    /// Sealed segments, in offset order.
    pub fn sealed_segments(&self) -> &[SegmentMeta] {
        &self.sealed
    }

    /// When the task should call [`tick`](Self::tick) next.
    pub fn next_deadline(&self) -> Option<Instant> {
        let flush = match (&self.flushing, self.buffered_since) {
            // After a failure the retry is due at its time (not before, and
            // not held back to the flush interval).
            (None, Some(since)) if self.phase == Phase::Writing => {
                Some(self.flush_retry.at.unwrap_or_else(|| {
                    let due = if self.durable_waiting() {
                        since
                    } else {
                        since + self.config.flush_interval
                    };
                    match self.last_flush_at {
                        Some(last) => due.max(last + self.config.min_flush_interval),
                        None => due,
                    }
                }))
            }
            _ => None,
        };
        let checkpoint = self.checkpoint_retry.at;
        let parked = self.parked.iter().map(|p| p.since + PARK_TIMEOUT).min();
        [flush, checkpoint, self.next_retention_check, parked]
            .into_iter()
            .flatten()
            .min()
    }

    /// Starts a clean stop: everything buffered is flushed at once and
    /// covered by a last checkpoint; see [`is_drained`](Self::is_drained).
    /// Produce requests still waiting for recovery are told to retry.
    pub fn drain(&mut self, now: Now) -> Vec<Action<W, D>> {
        self.draining = true;
        let early = self.early.drain(..).map(|e| e.waiter);
        let parked = self.parked.drain(..).map(|p| p.waiter);
        let mut actions: Vec<Action<W, D>> = early
            .chain(parked)
            .map(|waiter| Action::Reply(waiter, Err(WriteRejected::Stopped)))
            .collect();
        let stopped = DeleteRecordsRejected::Write(WriteRejected::Stopped);
        for early in self.early_deletes.drain(..) {
            actions.push(Action::ReplyDeleteRecords(
                early.waiter,
                Err(stopped.clone()),
            ));
        }
        self.maybe_checkpoint(now, &mut actions);
        self.maybe_flush(now, &mut actions);
        actions
    }

    /// Whether a draining partition has nothing left to write.
    pub fn is_drained(&self) -> bool {
        self.phase != Phase::Writing
            || (self.buffer.is_empty()
                && self.flushing.is_none()
                && self.checkpointing.is_none()
                && !self.checkpoint_due
                && self.pending_seal.is_none())
    }

    /// Fails every waiting producer and DeleteRecords: the partition is
    /// going away.
    pub fn stop(&mut self) -> Vec<Action<W, D>> {
        let early = self.early.drain(..).map(|e| e.waiter);
        let parked = self.parked.drain(..).map(|p| p.waiter);
        let waiting = self.waiters.drain(..).map(|w| w.waiter);
        let mut actions: Vec<Action<W, D>> = early
            .chain(parked)
            .chain(waiting)
            .map(|waiter| Action::Reply(waiter, Err(WriteRejected::Stopped)))
            .collect();
        self.reject_deletes(WriteRejected::Stopped, &mut actions);
        actions
    }

    /// Answers every DeleteRecords not done yet with `rejection`.
    fn reject_deletes(&mut self, rejection: WriteRejected, actions: &mut Vec<Action<W, D>>) {
        let rejected = DeleteRecordsRejected::Write(rejection);
        let early = self.early_deletes.drain(..);
        for waiting in early.chain(self.delete_waiters.drain(..)) {
            actions.push(Action::ReplyDeleteRecords(
                waiting.waiter,
                Err(rejected.clone()),
            ));
        }
    }

    fn rejection(&self) -> WriteRejected {
        WriteRejected::Fenced {
            by_epoch: self.fenced_by,
        }
    }
}

fn backoff(failures: u32) -> Duration {
    match failures {
        0 | 1 => Duration::ZERO,
        n => (Duration::from_millis(50) * 2u32.saturating_pow(n.min(10) - 1)).min(MAX_BACKOFF),
    }
}

#[cfg(test)]
mod tests;

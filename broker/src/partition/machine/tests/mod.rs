//! Unit tests of the partition state machine: every input and transition,
//! driven by a fake partition task ([`driver`], its I/O in [`io`]) whose
//! clock and storage outcomes each test chooses. When a test's driver is
//! dropped it reads the last published checkpoint back from the fake
//! storage as a reader would ([`reader`]), so every scenario ends with that
//! end-to-end check.
//!
//! Topics: `recovery` (reading the last checkpoint, queued produces),
//! `takeover` (fencing, the takeover race, takeover checkpoints, pruning),
//! `produce`, `flush` (flush, index, roll), `pipelining` (a flush and a
//! checkpoint in flight together), `failover` (failed writes, retries),
//! `no_loss` (fixed and random schedules), `retention` (retention, merges),
//! `requests` (retries by request id), `idempotence` (producer sequences),
//! `delete_records` (raising the log start offset).

mod driver;
mod io;
mod reader;

mod delete_records;
mod failover;
mod flush;
mod idempotence;
mod no_loss;
mod pipelining;
mod produce;
mod recovery;
mod requests;
mod retention;
mod takeover;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sluice_log::checkpoint::Checkpoint;
use sluice_log::{IndexEntry, SegmentMeta, SparseIndex, paths};
use sluice_record::{BatchBuilder, Compression};
use sluice_storage::SegmentLayout;

use super::*;
use crate::config::PartitionConfig;
use driver::Driver;

const EPOCH: u64 = 7;
/// The epoch of the owner before this one.
const PREVIOUS_EPOCH: u64 = 3;
const TOPIC_ID: &str = "topic-id-1";
/// Where the fake task creates new segments, unless told to avoid it.
const VOLUME: &str = "memory://machine-tests-a";
const OTHER_VOLUME: &str = "memory://machine-tests-b";
/// Wall clock at the tests' time zero, ms since the Unix epoch.
const START_MS: i64 = 1_700_000_000_000;
const FLUSH_INTERVAL: Duration = Duration::from_millis(10);

fn config() -> PartitionConfig {
    PartitionConfig {
        flush_interval: FLUSH_INTERVAL,
        flush_bytes: 1 << 20,
        min_flush_interval: Duration::ZERO,
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
        request_id: None,
    }
}

fn total_len(data: &[Bytes]) -> u64 {
    data.iter().map(|b| b.len() as u64).sum()
}

fn kind<W>(action: &Action<W>) -> &'static str {
    match action {
        Action::Recover => "Recover",
        Action::Flush(_) => "Flush",
        Action::SaveCheckpoint { .. } => "SaveCheckpoint",
        Action::Publish(_) => "Publish",
        Action::Reply(..) => "Reply",
        Action::ReplyDeleteRecords(..) => "ReplyDeleteRecords",
        Action::DeleteSegments(_) => "DeleteSegments",
        Action::DeleteChunks(_) => "DeleteChunks",
        Action::PruneCheckpoints { .. } => "PruneCheckpoints",
        Action::Stop => "Stop",
    }
}

fn ok(base_offset: i64, last_offset: i64) -> Result<Appended, WriteRejected> {
    Ok(Appended {
        base_offset,
        last_offset,
        duplicate: false,
    })
}

fn fenced(by_epoch: u64) -> Result<Appended, WriteRejected> {
    Err(WriteRejected::Fenced { by_epoch })
}

fn entry(offset: i64, position: u64, max_timestamp_before: i64) -> IndexEntry {
    IndexEntry {
        offset,
        position,
        max_timestamp_before,
    }
}

/// `count` batches of five records as the previous owner wrote them from
/// `base_offset` (offsets and leader epoch set); batch `i` has the
/// timestamps `first_timestamp + 10 * i`, +1, ...
fn previous_batches(base_offset: i64, count: usize, first_timestamp: i64) -> Vec<Bytes> {
    (0..count)
        .map(|i| {
            let mut bytes = BytesMut::from(&batch(5, first_timestamp + 10 * i as i64)[..]);
            sluice_record::set_base_offset(&mut bytes, base_offset + 5 * i as i64).expect("offset");
            sluice_record::set_partition_leader_epoch(&mut bytes, PREVIOUS_EPOCH as i32)
                .expect("epoch");
            bytes.freeze()
        })
        .collect()
}

/// An index with an entry for every one of `batches` (of five records),
/// the first at `base_offset` and byte `position`.
fn index_of(base_offset: i64, position: u64, batches: &[Bytes]) -> Vec<IndexEntry> {
    let mut entries = Vec::new();
    let mut position = position;
    let mut max_timestamp = -1;
    for (i, batch) in batches.iter().enumerate() {
        let header = sluice_record::validate_batch(batch).expect("valid batch");
        entries.push(entry(base_offset + 5 * i as i64, position, max_timestamp));
        max_timestamp = max_timestamp.max(header.max_timestamp);
        position += batch.len() as u64;
    }
    entries
}

fn max_timestamp(batches: &[Bytes]) -> i64 {
    batches
        .iter()
        .map(|b| {
            sluice_record::validate_batch(b)
                .expect("valid")
                .max_timestamp
        })
        .max()
        .unwrap_or(-1)
}

/// The log the previous owner (epoch 3) left, written into `d`'s storage,
/// and its newest checkpoint (sequence 5): segment `A` [0, 10) sealed (two
/// batches, timestamps from `timestamps[0]`, its index in `A.idx`) and
/// segment `B` [10, 25) open (three batches, timestamps from
/// `timestamps[1]`, its index inline with an entry per batch). `B` is one
/// file, or one chunk per batch when `chunked`.
fn previous_log(d: &mut Driver, chunked: bool, timestamps: [i64; 2]) -> Checkpoint {
    let a = previous_batches(0, 2, timestamps[0]);
    let b = previous_batches(10, 3, timestamps[1]);
    let a_meta = SegmentMeta {
        name: paths::segment_name(0, PREVIOUS_EPOCH, 0),
        base_offset: 0,
        end_offset: 10,
        epoch: PREVIOUS_EPOCH,
        volume: VOLUME.into(),
        layout: SegmentLayout::File { len: total_len(&a) },
        max_timestamp: max_timestamp(&a),
        created_at_ms: 1,
        sealed: true,
        index: Vec::new(),
    };
    let b_layout = if chunked {
        SegmentLayout::Chunks {
            lens: b.iter().map(|batch| batch.len() as u64).collect(),
        }
    } else {
        SegmentLayout::File { len: total_len(&b) }
    };
    let b_meta = SegmentMeta {
        name: paths::segment_name(10, PREVIOUS_EPOCH, 0),
        base_offset: 10,
        end_offset: 25,
        epoch: PREVIOUS_EPOCH,
        volume: OTHER_VOLUME.into(),
        layout: b_layout,
        max_timestamp: max_timestamp(&b),
        created_at_ms: 2,
        sealed: false,
        index: index_of(10, 0, &b),
    };
    d.store_previous_segment(&a_meta.name, &a);
    d.store_previous_index(&a_meta.name, SparseIndex::new(index_of(0, 0, &a)).encode());
    d.store_previous_segment(&b_meta.name, &b);
    Checkpoint {
        sequence: 5,
        epoch: PREVIOUS_EPOCH,
        topic_id: TOPIC_ID.into(),
        log_start_offset: 0,
        high_watermark: 25,
        segments: vec![a_meta, b_meta],
        takeovers: vec![1, 3],
        requests: Vec::new(),
        producers: Default::default(),
        written_at_ms: 3,
    }
}

/// [`previous_log`] with old timestamps.
fn previous_log_file(d: &mut Driver) -> Checkpoint {
    previous_log(d, false, [1_000, 2_000])
}

/// A small deterministic random number generator (xorshift64*), so a
/// randomised test replays from its printed seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

//! The read path against real segments on real volumes: `read_batches` and
//! `offset_for_timestamp` over sealed and open segments, in every layout
//! (object-store chunks, merged objects, local files), checked against what
//! the tests wrote, batch by batch and offset by offset.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use sluice_log::checkpoint::{Checkpoint, SegmentMeta};
use sluice_log::index::{IndexBuilder, SparseIndex};
use sluice_log::read::{check_range, offset_for_timestamp, read_batches};
use sluice_log::{LogError, PartitionKey, PartitionView, VolumeSet, paths};
use sluice_record::{BatchBuilder, BatchIter, Compression};
use sluice_storage::{SegmentLayout, Volume, open_volume};

const EPOCH: u64 = 4;
const TOPIC_ID: &str = "read-path-topic";

/// Where a test's segments are written.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Backend {
    /// An object store: a segment is one chunk object per append.
    Chunks,
    /// An object store whose sealed segments were merged into one object.
    Merged,
    /// A local directory: a segment is one file appended in place.
    LocalFile,
}

const BACKENDS: [Backend; 3] = [Backend::Chunks, Backend::Merged, Backend::LocalFile];

static NEXT_VOLUME: AtomicU64 = AtomicU64::new(0);

/// A fresh volume of `backend`, never shared with another test.
async fn volume(backend: Backend) -> (Arc<dyn Volume>, Option<tempfile::TempDir>) {
    let n = NEXT_VOLUME.fetch_add(1, Ordering::Relaxed);
    match backend {
        Backend::Chunks | Backend::Merged => {
            let url = format!("memory://read-path-{}-{n}", std::process::id());
            (open_volume(&url).await.expect("memory volume"), None)
        }
        Backend::LocalFile => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("dir://{}", dir.path().display());
            (open_volume(&url).await.expect("dir volume"), Some(dir))
        }
    }
}

/// A batch at `base_offset` with one record per timestamp, each record's
/// value `value_len` bytes.
fn batch_at(base_offset: i64, timestamps: &[i64], value_len: usize) -> Bytes {
    let mut builder = BatchBuilder::new(Compression::None);
    for (i, timestamp) in timestamps.iter().enumerate() {
        let value: Vec<u8> = (0..value_len).map(|j| (i * 31 + j) as u8).collect();
        builder
            .push(*timestamp, Some(b"k"), Some(&value), &[])
            .expect("push");
    }
    let mut bytes = BytesMut::from(&builder.build().expect("build")[..]);
    sluice_record::set_base_offset(&mut bytes, base_offset).expect("set base offset");
    bytes.freeze()
}

/// One batch to write: its records' timestamps and the size of each value.
#[derive(Clone, Debug)]
struct BatchSpec {
    timestamps: Vec<i64>,
    value_len: usize,
}

fn spec(timestamps: &[i64], value_len: usize) -> BatchSpec {
    BatchSpec {
        timestamps: timestamps.to_vec(),
        value_len,
    }
}

/// A log to write.
#[derive(Clone, Debug)]
struct LogSpec {
    /// Segments in offset order, each a list of batches.
    segments: Vec<Vec<BatchSpec>>,
    /// Batches per append (per chunk on an object store).
    batches_per_append: usize,
    index_interval: u64,
    /// The last segment is open (its index in the checkpoint), or sealed.
    last_open: bool,
    /// A batch appended to the last segment after the checkpoint: written, never visible.
    uncheckpointed_tail: bool,
}

/// Three segments of batches of 1 to 4 records and varied sizes, with
/// timestamps rising overall but not within every batch.
fn three_segments() -> LogSpec {
    let mut segments = Vec::new();
    let mut timestamp = 1_000;
    for segment in 0..3 {
        let mut batches = Vec::new();
        for i in 0..7 {
            let records = (i + segment) % 4 + 1;
            let timestamps: Vec<i64> = (0..records)
                // Within a batch: 0, +20, +10, +30 (not monotonic).
                .map(|r| timestamp + [0, 20, 10, 30][r])
                .collect();
            timestamp += 50;
            batches.push(spec(&timestamps, 20 + 37 * ((i * 5 + segment) % 7)));
        }
        segments.push(batches);
    }
    LogSpec {
        segments,
        batches_per_append: 2,
        index_interval: 500,
        last_open: true,
        uncheckpointed_tail: false,
    }
}

/// One batch as written.
#[derive(Clone, Debug)]
struct Stored {
    base_offset: i64,
    timestamps: Vec<i64>,
    bytes: Bytes,
    segment: usize,
}

impl Stored {
    fn last_offset(&self) -> i64 {
        self.base_offset + self.timestamps.len() as i64 - 1
    }
}

/// A written log and the view of its checkpoint. Segments are on a data
/// volume of the backend; sealed indexes on the home volume, as the broker
/// writes them (docs/design-notes.md).
struct Log {
    backend: Backend,
    key: PartitionKey,
    /// Holds the sealed segments' `.idx` objects.
    home: Arc<dyn Volume>,
    volume: Arc<dyn Volume>,
    volumes: VolumeSet,
    checkpoint: Checkpoint,
    view: PartitionView,
    batches: Vec<Stored>,
    _dir: Option<tempfile::TempDir>,
}

async fn write_log(backend: Backend, spec: &LogSpec) -> Log {
    let (home, _) = volume(Backend::Chunks).await;
    let (volume, dir) = volume(backend).await;
    let key = PartitionKey::new("reads", 2);
    let mut batches = Vec::new();
    let mut segments = Vec::new();
    let mut offset = 0i64;
    for (number, batch_specs) in spec.segments.iter().enumerate() {
        let sealed = number + 1 < spec.segments.len() || !spec.last_open;
        let base_offset = offset;
        let name = paths::segment_name(base_offset, EPOCH, 0);
        let path = paths::segment(&key, &name);
        let mut writer = volume.create_segment(&path).await.expect("create segment");
        let mut index = IndexBuilder::new(spec.index_interval);
        let mut position = 0u64;
        let mut layout = writer.layout();
        for group in batch_specs.chunks(spec.batches_per_append) {
            let mut data = Vec::new();
            for batch_spec in group {
                let bytes = batch_at(offset, &batch_spec.timestamps, batch_spec.value_len);
                let max_timestamp = *batch_spec.timestamps.iter().max().expect("records");
                index.add_batch(offset, position, max_timestamp);
                position += bytes.len() as u64;
                batches.push(Stored {
                    base_offset: offset,
                    timestamps: batch_spec.timestamps.clone(),
                    bytes: bytes.clone(),
                    segment: number,
                });
                offset += batch_spec.timestamps.len() as i64;
                data.push(bytes);
            }
            layout = writer.append(data).await.expect("append");
        }
        assert_eq!(layout.len(), position);
        if spec.uncheckpointed_tail && !sealed {
            // Written after the checkpoint: valid data at the next offsets.
            let tail = batch_at(offset, &[i64::MAX - 1], 10);
            writer.append(vec![tail]).await.expect("append tail");
        }
        if sealed {
            layout = writer.seal().await.expect("seal");
            home.put_if_absent(
                &paths::segment_index(&key, &name),
                SparseIndex::new(index.entries().to_vec()).encode(),
            )
            .await
            .expect("write index");
            if backend == Backend::Merged {
                let chunks = layout.clone();
                layout = volume.merge_segment(&path, &chunks).await.expect("merge");
                // Reads must now come from the merged object alone.
                volume
                    .delete_chunks(&path, &chunks)
                    .await
                    .expect("delete chunks");
            }
        }
        match (backend, sealed) {
            (Backend::LocalFile, _) => assert!(matches!(layout, SegmentLayout::File { .. })),
            (Backend::Merged, true) => assert!(matches!(layout, SegmentLayout::Object { .. })),
            _ => {
                let appends = batch_specs.len().div_ceil(spec.batches_per_append);
                assert!(
                    matches!(&layout, SegmentLayout::Chunks { lens } if lens.len() == appends),
                    "one chunk per append: {layout:?}"
                );
            }
        }
        segments.push(SegmentMeta {
            name,
            base_offset,
            end_offset: offset,
            epoch: EPOCH,
            volume: volume.url().to_owned(),
            layout,
            max_timestamp: index.max_timestamp(),
            created_at_ms: 0,
            sealed,
            index: if sealed {
                Vec::new()
            } else {
                index.entries().to_vec()
            },
        });
    }
    let checkpoint = Checkpoint {
        sequence: 9,
        epoch: EPOCH,
        topic_id: TOPIC_ID.into(),
        log_start_offset: segments.first().map_or(0, |s| s.base_offset),
        high_watermark: offset,
        segments,
        takeovers: Vec::new(),
        requests: Vec::new(),
        producers: Default::default(),
        written_at_ms: 0,
    };
    let view = PartitionView::from_checkpoint(key.clone(), &checkpoint, None);
    Log {
        backend,
        key,
        volumes: VolumeSet::new(vec![Arc::clone(&home), Arc::clone(&volume)]),
        home,
        volume,
        checkpoint,
        view,
        batches,
        _dir: dir,
    }
}

impl Log {
    async fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes, LogError> {
        read_batches(&self.view, &self.volumes, offset, max_bytes).await
    }

    async fn at_time(&self, timestamp: i64) -> Option<(i64, i64)> {
        offset_for_timestamp(&self.view, &self.volumes, timestamp)
            .await
            .unwrap_or_else(|e| panic!("{:?}: lookup of {timestamp}: {e}", self.backend))
    }

    /// What a read must return: the batch holding `offset`, then the
    /// following batches of its segment while the total fits in `max_bytes`.
    fn expected(&self, offset: i64, max_bytes: usize) -> Bytes {
        let mut out = BytesMut::new();
        let Some(first) = self.batches.iter().position(|b| b.last_offset() >= offset) else {
            return out.freeze();
        };
        let segment = self.batches[first].segment;
        for batch in self.batches[first..]
            .iter()
            .take_while(|b| b.segment == segment)
        {
            if !out.is_empty() && out.len() + batch.bytes.len() > max_bytes {
                break;
            }
            out.extend_from_slice(&batch.bytes);
        }
        out.freeze()
    }

    /// What a timestamp lookup must return: the first record, in offset
    /// order, at or after `timestamp`.
    fn expected_at_time(&self, timestamp: i64) -> Option<(i64, i64)> {
        self.batches.iter().find_map(|b| {
            b.timestamps
                .iter()
                .enumerate()
                .find(|(_, t)| **t >= timestamp)
                .map(|(i, t)| (b.base_offset + i as i64, *t))
        })
    }

    fn high_watermark(&self) -> i64 {
        self.checkpoint.high_watermark
    }
}

/// Base offsets of the batches in `bytes`.
fn base_offsets(bytes: &Bytes) -> Vec<i64> {
    let mut iter = BatchIter::new(bytes.clone());
    let offsets = iter
        .by_ref()
        .map(|b| b.expect("whole batch").header.base_offset)
        .collect();
    assert_eq!(iter.remaining(), 0, "only whole batches");
    offsets
}

#[tokio::test]
async fn a_read_from_offset_zero_starts_with_the_first_batch() {
    for backend in BACKENDS {
        let log = write_log(backend, &three_segments()).await;
        let all = log.read(0, usize::MAX).await.expect("read");
        assert_eq!(all, log.expected(0, usize::MAX), "{backend:?}");
        // A read stays in one segment: all of the first one.
        let first_segment: Vec<i64> = log
            .batches
            .iter()
            .filter(|b| b.segment == 0)
            .map(|b| b.base_offset)
            .collect();
        assert_eq!(base_offsets(&all), first_segment, "{backend:?}");
        assert_eq!(all.len() as u64, log.checkpoint.segments[0].len());
        let one = log.read(0, 1).await.expect("read");
        assert_eq!(one, log.batches[0].bytes, "{backend:?}");
        // Data on the data volume, sealed indexes only on the home volume.
        let first = &log.checkpoint.segments[0];
        assert_eq!(first.volume, log.volume.url());
        let index = paths::segment_index(&log.key, &first.name);
        assert!(log.volume.get(&index).await.is_err());
        assert!(log.home.get(&index).await.is_ok());
    }
}

#[tokio::test]
async fn every_offset_and_byte_limit_reads_whole_batches_from_the_one_holding_it() {
    let limits = [0, 1, 100, 250, 400, 700, 1_000, 2_500, usize::MAX];
    for backend in BACKENDS {
        let log = write_log(backend, &three_segments()).await;
        for offset in 0..log.high_watermark() {
            for max_bytes in limits {
                let got = log.read(offset, max_bytes).await.unwrap_or_else(|e| {
                    panic!("{backend:?}: read at {offset} of {max_bytes}: {e}")
                });
                let expected = log.expected(offset, max_bytes);
                assert_eq!(
                    base_offsets(&got),
                    base_offsets(&expected),
                    "{backend:?}: read at {offset} of {max_bytes} bytes"
                );
                assert_eq!(got, expected, "{backend:?}: same bytes");
                // The batch holding the offset comes first.
                let first = sluice_record::BatchHeader::parse(&got).expect("a batch");
                assert!(first.base_offset <= offset && offset <= first.last_offset());
                assert!(got.len() <= max_bytes || base_offsets(&got).len() == 1);
            }
        }
    }
}

#[tokio::test]
async fn reads_cross_into_the_next_segment_at_its_base_offset() {
    for backend in BACKENDS {
        let log = write_log(backend, &three_segments()).await;
        for (i, segment) in log.checkpoint.segments.iter().enumerate() {
            let got = log
                .read(segment.base_offset, usize::MAX)
                .await
                .expect("read");
            assert_eq!(got.len() as u64, segment.len(), "{backend:?}: segment {i}");
            let last = log.read(segment.end_offset - 1, 1).await.expect("read");
            let header = sluice_record::BatchHeader::parse(&last).expect("batch");
            assert_eq!(header.next_offset(), segment.end_offset);
        }
    }
}

#[tokio::test]
async fn a_read_at_the_high_watermark_is_empty() {
    for backend in BACKENDS {
        let log = write_log(backend, &three_segments()).await;
        let hw = log.high_watermark();
        assert!(log.read(hw, usize::MAX).await.expect("read").is_empty());
        assert!(log.read(hw, 0).await.expect("read").is_empty());
    }
    // An empty log too.
    let key = PartitionKey::new("reads", 0);
    let empty = PartitionView::empty(key, TOPIC_ID.into(), 0);
    let (volume, _dir) = volume(Backend::Chunks).await;
    let volumes = VolumeSet::new(vec![volume]);
    let got = read_batches(&empty, &volumes, 0, 100).await.expect("read");
    assert!(got.is_empty());
    assert_eq!(
        offset_for_timestamp(&empty, &volumes, 0)
            .await
            .expect("lookup"),
        None
    );
}

#[tokio::test]
async fn offsets_outside_the_log_are_out_of_range_naming_the_earliest() {
    let mut spec = three_segments();
    spec.segments.remove(0);
    let log = write_log(Backend::Chunks, &spec).await;
    // Rebuild the view as if retention dropped the first segment's offsets.
    let mut checkpoint = log.checkpoint.clone();
    let start = checkpoint.segments[0].end_offset;
    checkpoint.segments.remove(0);
    checkpoint.log_start_offset = start;
    let view = PartitionView::from_checkpoint(log.key.clone(), &checkpoint, None);
    let hw = checkpoint.high_watermark;
    for offset in [-1, 0, start - 1, hw + 1, i64::MAX] {
        let error = read_batches(&view, &log.volumes, offset, 100)
            .await
            .expect_err("out of range");
        match &error {
            LogError::OffsetOutOfRange {
                offset: o,
                start: s,
                end,
                partition,
            } => {
                assert_eq!((*o, *s, *end), (offset, start, hw));
                assert_eq!(partition, "reads/2");
            }
            other => panic!("expected OffsetOutOfRange, got {other:?}"),
        }
        let message = error.to_string();
        assert!(
            message.contains(&format!("the earliest offset is {start}")),
            "{message}"
        );
        assert!(!error.is_retriable());
        assert!(check_range(&view, offset).is_err());
    }
    // The first offset that is there reads.
    let got = read_batches(&view, &log.volumes, start, 1)
        .await
        .expect("read");
    assert_eq!(base_offsets(&got), [start]);
    assert!(check_range(&view, hw).is_ok());
}

#[tokio::test]
async fn a_first_batch_larger_than_max_bytes_comes_whole() {
    let big = 2 << 20;
    let spec = LogSpec {
        segments: vec![vec![
            spec(&[1], 10),
            spec(&[2, 3], 10),
            spec(&[4, 5, 6], big / 3),
            spec(&[7], 10),
            spec(&[8], big),
            spec(&[9], 10),
        ]],
        batches_per_append: 1,
        // One index entry for the whole segment: the reads start at 0.
        index_interval: 64 << 20,
        last_open: false,
        uncheckpointed_tail: false,
    };
    for backend in BACKENDS {
        let log = write_log(backend, &spec).await;
        for offset in 0..log.high_watermark() {
            for max_bytes in [0, 1, 100, 1 << 20] {
                let got = log.read(offset, max_bytes).await.expect("read");
                assert_eq!(
                    got,
                    log.expected(offset, max_bytes),
                    "{backend:?}: {offset} {max_bytes}"
                );
            }
        }
        let huge = log.read(7, 1).await.expect("read");
        assert_eq!(huge.len(), log.batches[4].bytes.len());
        assert!(huge.len() > big);
    }
}

#[tokio::test]
async fn bytes_past_the_checkpointed_length_are_never_read() {
    let mut spec = three_segments();
    spec.uncheckpointed_tail = true;
    for backend in BACKENDS {
        let log = write_log(backend, &spec).await;
        let hw = log.high_watermark();
        let last = log.checkpoint.segments.last().expect("segment");
        let from_last = log.read(last.base_offset, usize::MAX).await.expect("read");
        assert_eq!(from_last.len() as u64, last.len(), "{backend:?}");
        assert!(base_offsets(&from_last).iter().all(|o| *o < hw));
        assert!(log.read(hw, usize::MAX).await.expect("read").is_empty());
        assert!(log.read(hw + 1, usize::MAX).await.is_err());
        // Its timestamp (the newest of all) is not found either.
        assert_eq!(log.at_time(i64::MAX - 1).await, None, "{backend:?}");
    }
}

#[tokio::test]
async fn timestamp_lookups_find_the_first_record_at_or_after() {
    for backend in BACKENDS {
        let log = write_log(backend, &three_segments()).await;
        let newest = log
            .checkpoint
            .segments
            .last()
            .expect("segment")
            .max_timestamp;
        for timestamp in 990..=newest + 2 {
            assert_eq!(
                log.at_time(timestamp).await,
                log.expected_at_time(timestamp),
                "{backend:?}: at {timestamp}"
            );
        }
        // Before everything: the first offset; after everything: none.
        assert_eq!(log.at_time(i64::MIN).await, Some((0, 1_000)));
        assert_eq!(log.at_time(0).await, Some((0, 1_000)));
        assert_eq!(log.at_time(newest + 1).await, None);
        assert_eq!(log.at_time(i64::MAX).await, None);
    }
}

#[tokio::test]
async fn a_timestamp_inside_a_batch_names_that_record() {
    let spec = LogSpec {
        segments: vec![
            vec![spec(&[100, 110, 120], 10), spec(&[200, 250, 230, 260], 10)],
            vec![spec(&[300, 301], 10)],
        ],
        batches_per_append: 1,
        index_interval: 1,
        last_open: true,
        uncheckpointed_tail: false,
    };
    for backend in BACKENDS {
        let log = write_log(backend, &spec).await;
        assert_eq!(log.at_time(110).await, Some((1, 110)));
        assert_eq!(log.at_time(111).await, Some((2, 120)));
        // 240: the first record at or after it is 250 at offset 4, not 260.
        assert_eq!(log.at_time(240).await, Some((4, 250)));
        assert_eq!(log.at_time(251).await, Some((6, 260)));
        assert_eq!(log.at_time(261).await, Some((7, 300)));
        assert_eq!(log.at_time(301).await, Some((8, 301)));
    }
}

#[tokio::test]
async fn timestamp_scans_cross_read_chunks_and_large_batches() {
    // One index entry per segment, so the scan reads from the start in
    // 1 MiB pieces: batches cut by a piece's end, and a batch larger than a piece.
    let mut batches = Vec::new();
    for i in 0..30 {
        batches.push(spec(&[10_000 + i * 10, 10_000 + i * 10 + 5], 50_000));
    }
    batches.push(spec(&[20_000, 20_001, 20_002], 600_000));
    batches.push(spec(&[30_000], 10));
    let spec = LogSpec {
        segments: vec![batches],
        batches_per_append: 4,
        index_interval: 64 << 20,
        last_open: false,
        uncheckpointed_tail: false,
    };
    for backend in BACKENDS {
        let log = write_log(backend, &spec).await;
        assert!(log.checkpoint.segments[0].len() > 3 << 20);
        for timestamp in [
            0, 10_000, 10_005, 10_006, 10_150, 10_295, 10_296, 20_001, 20_003, 30_000, 30_001,
        ] {
            assert_eq!(
                log.at_time(timestamp).await,
                log.expected_at_time(timestamp),
                "{backend:?}: at {timestamp}"
            );
        }
    }
}

#[tokio::test]
async fn sealed_indexes_are_loaded_once_and_reused_by_the_next_view() {
    let log = write_log(Backend::Chunks, &three_segments()).await;
    let first = &log.checkpoint.segments[0];
    // Loads the first segment's index from its .idx object.
    let got = log.read(first.base_offset + 1, 1).await.expect("read");
    assert_eq!(got, log.expected(first.base_offset + 1, 1));
    log.home
        .delete(&paths::segment_index(&log.key, &first.name))
        .await
        .expect("delete index");
    // The same view, and a next view built from it, keep the loaded index.
    assert!(log.read(first.base_offset + 2, 1).await.is_ok());
    let next = PartitionView::from_checkpoint(log.key.clone(), &log.checkpoint, Some(&log.view));
    assert!(
        read_batches(&next, &log.volumes, first.base_offset + 2, 1)
            .await
            .is_ok()
    );
    // A view built from scratch must read the .idx, which is gone.
    let fresh = PartitionView::from_checkpoint(log.key.clone(), &log.checkpoint, None);
    let error = read_batches(&fresh, &log.volumes, first.base_offset, 1)
        .await
        .expect_err("no index");
    assert!(matches!(error, LogError::Storage(_)), "{error:?}");
}

#[tokio::test]
async fn a_damaged_index_or_segment_is_an_error_not_a_panic() {
    let log = write_log(Backend::Chunks, &three_segments()).await;
    let first = log.checkpoint.segments[0].clone();
    // A damaged .idx object.
    let index_path = paths::segment_index(&log.key, &first.name);
    log.home.delete(&index_path).await.expect("delete");
    log.home
        .put_if_absent(&index_path, Bytes::from_static(b"not an index at all"))
        .await
        .expect("put");
    let fresh = PartitionView::from_checkpoint(log.key.clone(), &log.checkpoint, None);
    let error = read_batches(&fresh, &log.volumes, 0, 100)
        .await
        .expect_err("bad index");
    assert!(matches!(error, LogError::CorruptIndex { .. }), "{error:?}");

    // A checkpoint naming a volume this node does not have.
    let mut checkpoint = log.checkpoint.clone();
    for segment in &mut checkpoint.segments {
        segment.volume = "memory://not-configured".into();
    }
    let view = PartitionView::from_checkpoint(log.key.clone(), &checkpoint, None);
    let last = checkpoint.segments.last().expect("segment").base_offset;
    let error = read_batches(&view, &log.volumes, last, 100)
        .await
        .expect_err("unknown volume");
    assert!(matches!(error, LogError::UnknownVolume { .. }), "{error:?}");

    // An open segment whose bytes are not record batches.
    let (volume, _dir) = volume(Backend::LocalFile).await;
    let key = PartitionKey::new("garbage", 0);
    let name = paths::segment_name(0, EPOCH, 0);
    let mut writer = volume
        .create_segment(&paths::segment(&key, &name))
        .await
        .expect("create");
    let layout = writer
        .append(vec![Bytes::from(vec![0xAB; 200])])
        .await
        .expect("append");
    let checkpoint = Checkpoint {
        sequence: 1,
        epoch: EPOCH,
        topic_id: TOPIC_ID.into(),
        log_start_offset: 0,
        high_watermark: 5,
        segments: vec![SegmentMeta {
            name,
            base_offset: 0,
            end_offset: 5,
            epoch: EPOCH,
            volume: volume.url().to_owned(),
            layout,
            max_timestamp: 10,
            created_at_ms: 0,
            sealed: false,
            index: vec![],
        }],
        takeovers: Vec::new(),
        requests: Vec::new(),
        producers: Default::default(),
        written_at_ms: 0,
    };
    let view = PartitionView::from_checkpoint(key, &checkpoint, None);
    let volumes = VolumeSet::new(vec![volume]);
    let error = read_batches(&view, &volumes, 0, 100)
        .await
        .expect_err("garbage");
    assert!(
        matches!(error, LogError::CorruptSegment { .. }),
        "{error:?}"
    );
    let error = offset_for_timestamp(&view, &volumes, 0)
        .await
        .expect_err("garbage");
    assert!(
        matches!(error, LogError::CorruptSegment { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn empty_segments_are_skipped() {
    let log = write_log(Backend::Chunks, &three_segments()).await;
    let mut checkpoint = log.checkpoint.clone();
    // An empty segment between the first two.
    let boundary = checkpoint.segments[0].end_offset;
    let mut empty = checkpoint.segments[0].clone();
    empty.name = paths::segment_name(boundary, EPOCH, 1);
    empty.base_offset = boundary;
    empty.end_offset = boundary;
    empty.layout = SegmentLayout::Chunks { lens: vec![] };
    empty.max_timestamp = -1;
    checkpoint.segments.insert(1, empty);
    let view = PartitionView::from_checkpoint(log.key.clone(), &checkpoint, None);
    assert_eq!(
        view.segment_for(boundary).map(|s| s.meta.base_offset),
        Some(boundary)
    );
    assert!(
        view.segment_for(boundary)
            .is_some_and(|s| !s.meta.is_empty())
    );
    let got = read_batches(&view, &log.volumes, boundary, 1)
        .await
        .expect("read");
    assert_eq!(base_offsets(&got), [boundary]);
    assert_eq!(view.size_bytes(), log.view.size_bytes());
}

#[tokio::test]
async fn a_segment_whose_max_timestamp_overstates_its_records_does_not_end_the_search() {
    // Recovery cuts an open segment back to its verified prefix and keeps its
    // old max timestamp; the lookup must still find later segments' records.
    let log = write_log(Backend::Chunks, &three_segments()).await;
    let mut checkpoint = log.checkpoint.clone();
    let true_max = checkpoint.segments[0].max_timestamp;
    checkpoint.segments[0].max_timestamp = checkpoint.segments[2].max_timestamp;
    let view = PartitionView::from_checkpoint(log.key.clone(), &checkpoint, None);
    for timestamp in [true_max - 1, true_max, true_max + 1, true_max + 40] {
        let found = offset_for_timestamp(&view, &log.volumes, timestamp)
            .await
            .expect("lookup");
        assert_eq!(found, log.expected_at_time(timestamp), "at {timestamp}");
    }
}

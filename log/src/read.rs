//! Reading a partition's visible log: whole record batches from an offset,
//! and the first offset at or after a timestamp.
//!
//! Both are a binary search over the segments, a binary search over the
//! segment's sparse index, then one ranged read (a second one only when the
//! first batch is larger than the first read). Nothing past the checkpointed
//! length of a segment is ever read.

use bytes::Bytes;
use sluice_record::{BatchHeader, BatchIter, HEADER_LEN, TimestampType};
use sluice_storage::VolumeKind;

use crate::view::{PartitionView, SegmentView};
use crate::{LogError, VolumeSet};

/// How much is read at a time when scanning for a timestamp.
const SCAN_CHUNK: u64 = 1 << 20;

/// Whole batches from `offset`: the batch holding `offset` first (it may
/// start below it), then following batches while they fit in `max_bytes`.
/// At least one batch is returned even if larger than `max_bytes`, so a
/// consumer always progresses. Empty when `offset` is the high watermark.
pub async fn read_batches(
    view: &PartitionView,
    volumes: &VolumeSet,
    offset: i64,
    max_bytes: usize,
) -> Result<Bytes, LogError> {
    check_range(view, offset)?;
    if offset == view.high_watermark {
        return Ok(Bytes::new());
    }
    let Some(segment) = view.segment_for(offset) else {
        return Ok(Bytes::new());
    };
    let index = segment.index(&view.key, volumes).await?;
    let start = index.lookup_offset(offset).map_or(0, |e| e.position);
    // The batch holding `offset` starts before the next index entry.
    let next_entry = index
        .entries()
        .iter()
        .map(|e| e.position)
        .find(|p| *p > start);
    let len = segment.meta.len();
    let end = next_entry
        .unwrap_or(len)
        .saturating_add(max_bytes as u64)
        .min(len);
    let buffer = read_range(volumes, segment, start, end).await?;
    let mut iter = BatchIter::new(buffer.clone());
    let mut first: Option<usize> = None;
    let mut stop = 0usize;
    for batch in iter.by_ref() {
        let batch = batch.map_err(|source| corrupt(segment, start, source))?;
        if batch.header.last_offset() < offset {
            continue;
        }
        let begin = *first.get_or_insert(batch.position);
        let batch_end = batch.position + batch.bytes.len();
        if batch_end - begin > max_bytes && stop > begin {
            break;
        }
        stop = batch_end;
    }
    match first {
        Some(begin) => Ok(buffer.slice(begin..stop)),
        None => {
            // The batch holding `offset` did not fit in the first read.
            let position = start + iter.position() as u64;
            if position >= len {
                return Ok(Bytes::new());
            }
            read_batch_at(volumes, segment, position).await
        }
    }
}

/// The first offset whose record timestamp is at or after `timestamp`, with
/// that record's timestamp; `None` if every record is older.
pub async fn offset_for_timestamp(
    view: &PartitionView,
    volumes: &VolumeSet,
    timestamp: i64,
) -> Result<Option<(i64, i64)>, LogError> {
    // A segment's max timestamp can overstate its records (recovery cuts a
    // segment back and keeps it): when one holds no match, try the next.
    let candidates = view
        .segments
        .iter()
        .filter(|s| s.meta.max_timestamp >= timestamp && !s.meta.is_empty());
    for segment in candidates {
        if let Some(found) = scan_for_timestamp(view, volumes, segment, timestamp).await? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// The first record of `segment` at or after `timestamp`, if any.
async fn scan_for_timestamp(
    view: &PartitionView,
    volumes: &VolumeSet,
    segment: &SegmentView,
    timestamp: i64,
) -> Result<Option<(i64, i64)>, LogError> {
    let index = segment.index(&view.key, volumes).await?;
    let mut position = index.lookup_timestamp(timestamp).map_or(0, |e| e.position);
    let len = segment.meta.len();
    while position < len {
        let end = (position + SCAN_CHUNK).min(len);
        let buffer = read_range(volumes, segment, position, end).await?;
        let mut iter = BatchIter::new(buffer);
        for batch in iter.by_ref() {
            let batch = batch.map_err(|source| corrupt(segment, position, source))?;
            if batch.header.max_timestamp < timestamp
                || batch.header.last_offset() < view.log_start_offset
            {
                continue;
            }
            return first_record_at_or_after(
                segment,
                position + batch.position as u64,
                &batch.bytes,
                &batch.header,
                timestamp,
            );
        }
        if iter.position() == 0 {
            // One batch larger than the chunk: read it whole.
            let bytes = read_batch_at(volumes, segment, position).await?;
            let header =
                BatchHeader::parse(&bytes).map_err(|source| corrupt(segment, position, source))?;
            if header.max_timestamp >= timestamp {
                return first_record_at_or_after(segment, position, &bytes, &header, timestamp);
            }
            position += bytes.len() as u64;
        } else {
            position += iter.position() as u64;
        }
    }
    Ok(None)
}

fn first_record_at_or_after(
    segment: &SegmentView,
    position: u64,
    bytes: &[u8],
    header: &BatchHeader,
    timestamp: i64,
) -> Result<Option<(i64, i64)>, LogError> {
    if header.timestamp_type() == TimestampType::LogAppendTime {
        return Ok(Some((header.base_offset, header.max_timestamp)));
    }
    let records = sluice_record::decode_records(bytes)
        .map_err(|source| corrupt(segment, position, source))?;
    Ok(records
        .iter()
        .find(|r| r.timestamp >= timestamp)
        .map(|r| (r.offset, r.timestamp))
        .or(Some((header.base_offset, header.max_timestamp))))
}

/// Checks `offset` against the visible range.
pub fn check_range(view: &PartitionView, offset: i64) -> Result<(), LogError> {
    if offset < view.log_start_offset || offset > view.high_watermark {
        return Err(LogError::OffsetOutOfRange {
            partition: view.key.to_string(),
            offset,
            start: view.log_start_offset,
            end: view.high_watermark,
        });
    }
    Ok(())
}

async fn read_range(
    volumes: &VolumeSet,
    segment: &SegmentView,
    start: u64,
    end: u64,
) -> Result<Bytes, LogError> {
    let volume = volumes.get(&segment.meta.volume)?;
    let read = |range: std::ops::Range<u64>| {
        volume.read_segment(&segment.path, &segment.meta.layout, range)
    };
    match volumes.block_cache() {
        Some(cache) if volume.kind() != VolumeKind::Local => Ok(cache
            .read(&segment.cache_id, segment.meta.len(), start..end, read)
            .await?),
        _ => Ok(read(start..end).await?),
    }
}

/// Reads the one whole batch that starts at `position`.
async fn read_batch_at(
    volumes: &VolumeSet,
    segment: &SegmentView,
    position: u64,
) -> Result<Bytes, LogError> {
    let len = segment.meta.len();
    let head_end = (position + HEADER_LEN as u64).min(len);
    let head = read_range(volumes, segment, position, head_end).await?;
    let header = BatchHeader::parse(&head).map_err(|source| corrupt(segment, position, source))?;
    let end = position + header.total_len() as u64;
    if end > len {
        return Err(LogError::CorruptSegment {
            path: segment.path.clone(),
            position,
            source: sluice_record::BatchError::Truncated {
                offset: 0,
                needed: header.total_len(),
                available: (len - position) as usize,
            },
        });
    }
    read_range(volumes, segment, position, end).await
}

fn corrupt(segment: &SegmentView, position: u64, source: sluice_record::BatchError) -> LogError {
    LogError::CorruptSegment {
        path: segment.path.clone(),
        position,
        source,
    }
}

//! The end-to-end check every scenario ends with: read the last published
//! checkpoint back from the fake storage as a reader would, and check that
//! it describes exactly the data there.

use std::collections::HashMap;

use sluice_record::BatchIter;

use super::*;

impl Driver {
    /// Every offset from the first segment to the high watermark exactly once,
    /// in order, in batches whose CRC holds; every sealed segment's `.idx`
    /// on the home volume; index entries on batch boundaries; chunks and
    /// merged objects where the layout says.
    pub(super) fn check_log(&self) {
        let Some(checkpoint) = self.published.last() else {
            return;
        };
        // The log starts in its first segment, or past it (a DeleteRecords
        // beyond segments not yet dropped); never before it.
        let mut expected_offset = checkpoint
            .segments
            .first()
            .map_or(checkpoint.log_start_offset, |s| s.base_offset);
        assert!(
            expected_offset <= checkpoint.log_start_offset
                && checkpoint.log_start_offset <= checkpoint.high_watermark,
            "log start {} outside [{expected_offset}, {}]",
            checkpoint.log_start_offset,
            checkpoint.high_watermark
        );
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
            self.check_layout(segment);
            let stored = self.store.get(&segment.name).expect("segment data");
            let len = segment.len() as usize;
            assert!(
                len <= stored.len(),
                "{} is longer than its data",
                segment.name
            );
            let data = Bytes::copy_from_slice(&stored[..len]);
            let mut iter = BatchIter::new(data);
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
            if self.previous.contains(&segment.name) {
                // Recovery cuts a segment back and keeps its max timestamp
                // (readers allow for that).
                assert!(segment.max_timestamp >= max_timestamp);
            } else {
                assert_eq!(
                    segment.max_timestamp, max_timestamp,
                    "max timestamp of {}",
                    segment.name
                );
            }
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

    /// Chunks that are read were never deleted; a merged object exists.
    fn check_layout(&self, segment: &SegmentMeta) {
        match &segment.layout {
            SegmentLayout::Chunks { .. } => assert!(
                self.deleted_chunks.iter().all(|d| d.name != segment.name),
                "the chunks of {} were deleted",
                segment.name
            ),
            SegmentLayout::Object { len } => assert_eq!(
                self.merged_objects.get(&segment.name),
                Some(len),
                "the merged object of {}",
                segment.name
            ),
            SegmentLayout::File { .. } => {}
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        self.check_log();
        assert!(
            self.index_conflicts.is_empty(),
            "segments sealed twice with different indexes: {:?}",
            self.index_conflicts
        );
    }
}

//! [`SegmentLayout`], what a checkpoint records about where a segment's bytes are,
//! and how a byte range of a segment maps onto the files or objects that hold it.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::keys::chunk_key;

/// How a checkpoint describes where a segment's bytes are on its volume.
///
/// Serialized into checkpoints as JSON (`{"kind":"file","len":10}`), so the
/// tag and field names are part of the on-disk format: do not rename them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SegmentLayout {
    /// One file appended in place (local directory; later HDFS): the first
    /// `len` bytes of `<path>` are valid. Bytes after `len` may exist (a flush
    /// that was never checkpointed) and are garbage, never read.
    File {
        /// Number of valid bytes at the start of the file.
        len: u64,
    },
    /// Object stores while a segment is open: immutable chunk objects
    /// `<path>.<index:06>` (index from 0), one per append, with these lengths,
    /// in order.
    Chunks {
        /// Length of each chunk, chunk 0 first.
        lens: Vec<u64>,
    },
    /// Object stores after merge: one object `<path>` of `len` bytes.
    Object {
        /// Length of the object.
        len: u64,
    },
}

impl SegmentLayout {
    /// Number of segment bytes the layout covers.
    ///
    /// Saturates at `u64::MAX` for a nonsensical chunk list (layouts are read
    /// from checkpoints on disk, so this must not panic); reads of such a
    /// layout fail with [`StorageError::Corrupt`].
    pub fn len(&self) -> u64 {
        match self {
            Self::File { len } | Self::Object { len } => *len,
            Self::Chunks { lens } => lens.iter().fold(0u64, |sum, len| sum.saturating_add(*len)),
        }
    }

    /// Whether the layout covers no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The exact length, or `None` if the chunk lengths overflow `u64`.
    fn checked_len(&self) -> Option<u64> {
        match self {
            Self::File { len } | Self::Object { len } => Some(*len),
            Self::Chunks { lens } => lens.iter().try_fold(0u64, |sum, len| sum.checked_add(*len)),
        }
    }
}

/// One read that serves part of a segment range: `range` of the file or object `key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReadPiece {
    /// Key of the file, object or chunk to read.
    pub key: String,
    /// Byte range within that file, object or chunk.
    pub range: Range<u64>,
}

/// Maps `range` of the segment `path` onto the reads that serve it, in order.
///
/// Checks the range first: an inverted range or one ending past the layout's
/// length is [`StorageError::OutOfBounds`]. An empty range needs no reads. For
/// chunked segments only the chunks the range overlaps are read.
pub(crate) fn plan_read(
    volume: &str,
    path: &str,
    layout: &SegmentLayout,
    range: Range<u64>,
) -> Result<Vec<ReadPiece>> {
    let Some(len) = layout.checked_len() else {
        return Err(StorageError::Corrupt {
            volume: volume.to_owned(),
            path: path.to_owned(),
            reason: "the chunk lengths in the layout add up to more than 2^64 bytes".to_owned(),
        });
    };
    if range.start > range.end || range.end > len {
        return Err(StorageError::OutOfBounds {
            volume: volume.to_owned(),
            path: path.to_owned(),
            range_end: range.end,
            len,
        });
    }
    if range.start == range.end {
        return Ok(Vec::new());
    }
    match layout {
        SegmentLayout::File { .. } | SegmentLayout::Object { .. } => Ok(vec![ReadPiece {
            key: path.to_owned(),
            range,
        }]),
        SegmentLayout::Chunks { lens } => {
            let mut pieces = Vec::new();
            // `chunk_start` cannot overflow: the lengths were summed with checks above.
            let mut chunk_start = 0u64;
            for (index, chunk_len) in lens.iter().enumerate() {
                let chunk_end = chunk_start + chunk_len;
                let start = range.start.max(chunk_start);
                let end = range.end.min(chunk_end);
                if start < end {
                    pieces.push(ReadPiece {
                        key: chunk_key(path, index),
                        range: (start - chunk_start)..(end - chunk_start),
                    });
                }
                if chunk_end >= range.end {
                    break;
                }
                chunk_start = chunk_end;
            }
            Ok(pieces)
        }
    }
}

/// Joins the pieces of a read, without copying when there is only one.
pub(crate) fn concat(parts: Vec<bytes::Bytes>) -> bytes::Bytes {
    match <[bytes::Bytes; 1]>::try_from(parts) {
        Ok([only]) => only,
        Err(parts) => {
            let total = parts.iter().map(bytes::Bytes::len).sum();
            let mut joined = bytes::BytesMut::with_capacity(total);
            for part in parts {
                joined.extend_from_slice(&part);
            }
            joined.freeze()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(lens: &[u64]) -> SegmentLayout {
        SegmentLayout::Chunks {
            lens: lens.to_vec(),
        }
    }

    fn plan(layout: &SegmentLayout, range: Range<u64>) -> Vec<(String, Range<u64>)> {
        plan_read("v", "s", layout, range)
            .expect("plan")
            .into_iter()
            .map(|piece| (piece.key, piece.range))
            .collect()
    }

    #[test]
    fn serialized_form_is_stable() {
        let cases = [
            (SegmentLayout::File { len: 7 }, r#"{"kind":"file","len":7}"#),
            (chunks(&[1, 2]), r#"{"kind":"chunks","lens":[1,2]}"#),
            (
                SegmentLayout::Object { len: 3 },
                r#"{"kind":"object","len":3}"#,
            ),
        ];
        for (layout, json) in cases {
            assert_eq!(serde_json::to_string(&layout).expect("serialize"), json);
            let back: SegmentLayout = serde_json::from_str(json).expect("deserialize");
            assert_eq!(back, layout);
        }
    }

    #[test]
    fn lengths() {
        assert_eq!(chunks(&[3, 0, 4]).len(), 7);
        assert!(chunks(&[]).is_empty());
        assert!(SegmentLayout::File { len: 0 }.is_empty());
        assert_eq!(chunks(&[u64::MAX, 1]).len(), u64::MAX);
    }

    #[test]
    fn whole_file_ranges_are_one_piece() {
        let layout = SegmentLayout::File { len: 10 };
        assert_eq!(plan(&layout, 2..5), vec![("s".to_owned(), 2..5)]);
        assert!(plan(&layout, 4..4).is_empty());
    }

    #[test]
    fn chunked_ranges_touch_only_the_chunks_needed() {
        let layout = chunks(&[4, 0, 3, 5]);
        assert_eq!(plan(&layout, 0..4), vec![("s.000000".to_owned(), 0..4)]);
        assert_eq!(plan(&layout, 4..7), vec![("s.000002".to_owned(), 0..3)]);
        assert_eq!(
            plan(&layout, 2..9),
            vec![
                ("s.000000".to_owned(), 2..4),
                ("s.000002".to_owned(), 0..3),
                ("s.000003".to_owned(), 0..2),
            ]
        );
        assert_eq!(plan(&layout, 11..12), vec![("s.000003".to_owned(), 4..5)]);
    }

    #[test]
    fn out_of_bounds_and_inverted_ranges_fail() {
        let layout = chunks(&[4, 3]);
        let inverted = Range { start: 5, end: 3 };
        for range in [0..8, 7..8, inverted] {
            let error = plan_read("v", "s", &layout, range).expect_err("out of bounds");
            assert!(matches!(error, StorageError::OutOfBounds { len: 7, .. }));
        }
    }

    #[test]
    fn overflowing_chunk_lists_are_corrupt_not_a_panic() {
        let error = plan_read("v", "s", &chunks(&[u64::MAX, 2]), 0..1).expect_err("corrupt");
        assert!(matches!(error, StorageError::Corrupt { .. }));
    }

    #[test]
    fn concat_joins_in_order() {
        let parts = vec![
            bytes::Bytes::from_static(b"ab"),
            bytes::Bytes::from_static(b"c"),
        ];
        assert_eq!(concat(parts), bytes::Bytes::from_static(b"abc"));
        assert!(concat(Vec::new()).is_empty());
    }
}

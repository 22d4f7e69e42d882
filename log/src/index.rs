//! The sparse segment index: every `interval` bytes, one entry maps the
//! offset of a batch to its byte position, and records the newest timestamp
//! seen before it, so both "where is offset o" and "where do timestamps reach
//! t" are a binary search followed by one ranged read.
//!
//! An open segment's entries travel in the checkpoint; a sealed segment's are
//! written once to its `.idx` object (a short header, 24 bytes per entry, and
//! a CRC-32C).

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::LogError;

const MAGIC: &[u8; 8] = b"SLIDX\x00\x00\x01";
const ENTRY_LEN: usize = 24;

/// One index entry: a batch boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Base offset of the batch that starts at `position`.
    #[serde(rename = "o")]
    pub offset: i64,
    /// Byte position of that batch in the segment.
    #[serde(rename = "p")]
    pub position: u64,
    /// Newest record timestamp of the batches before `position` (-1: none).
    #[serde(rename = "t")]
    pub max_timestamp_before: i64,
}

/// A segment's sparse index, in offset order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SparseIndex {
    entries: Vec<IndexEntry>,
}

impl SparseIndex {
    pub fn new(entries: Vec<IndexEntry>) -> Self {
        Self { entries }
    }

    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// The last entry at or before `offset`: reading from its position finds
    /// the batch holding `offset`.
    pub fn lookup_offset(&self, offset: i64) -> Option<IndexEntry> {
        let after = self.entries.partition_point(|e| e.offset <= offset);
        after.checked_sub(1).map(|i| self.entries[i])
    }

    /// The last entry before which every timestamp is older than `timestamp`:
    /// the first record at or after `timestamp` lies at or after its position.
    pub fn lookup_timestamp(&self, timestamp: i64) -> Option<IndexEntry> {
        let after = self
            .entries
            .partition_point(|e| e.max_timestamp_before < timestamp);
        after.checked_sub(1).map(|i| self.entries[i])
    }

    /// The `.idx` object form.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(MAGIC.len() + 4 + self.entries.len() * ENTRY_LEN + 4);
        out.put_slice(MAGIC);
        out.put_u32(self.entries.len() as u32);
        for entry in &self.entries {
            out.put_i64(entry.offset);
            out.put_u64(entry.position);
            out.put_i64(entry.max_timestamp_before);
        }
        let crc = crc32c::crc32c(&out);
        out.put_u32(crc);
        out.freeze()
    }

    /// Parses a `.idx` object, verifying its CRC.
    pub fn decode(path: &str, bytes: &[u8]) -> Result<Self, LogError> {
        let corrupt = |reason: &str| LogError::CorruptIndex {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let head = MAGIC.len() + 4;
        if bytes.len() < head + 4 || &bytes[..MAGIC.len()] != MAGIC {
            return Err(corrupt("not a Sluice index"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32c::crc32c(body) != stored {
            return Err(corrupt("crc32c mismatch"));
        }
        let count = u32::from_be_bytes([body[8], body[9], body[10], body[11]]) as usize;
        let entries_bytes = &body[head..];
        if entries_bytes.len() != count * ENTRY_LEN {
            return Err(corrupt("entry count does not match the length"));
        }
        let entries = entries_bytes
            .chunks_exact(ENTRY_LEN)
            .map(|c| IndexEntry {
                offset: be_i64(&c[0..8]),
                position: be_i64(&c[8..16]) as u64,
                max_timestamp_before: be_i64(&c[16..24]),
            })
            .collect();
        Ok(Self { entries })
    }
}

fn be_i64(bytes: &[u8]) -> i64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(bytes);
    i64::from_be_bytes(buf)
}

/// Adds entries as batches are appended to an open segment.
#[derive(Clone, Debug)]
pub struct IndexBuilder {
    interval: u64,
    entries: Vec<IndexEntry>,
    max_timestamp: i64,
}

impl IndexBuilder {
    /// `interval`: bytes between entries (at least one batch apart).
    pub fn new(interval: u64) -> Self {
        Self::resume(interval, Vec::new(), -1)
    }

    /// Continues an index recovered from a checkpoint.
    pub fn resume(interval: u64, entries: Vec<IndexEntry>, max_timestamp: i64) -> Self {
        Self {
            interval: interval.max(1),
            entries,
            max_timestamp,
        }
    }

    /// Records a batch of `max_timestamp` appended at `position`.
    pub fn add_batch(&mut self, offset: i64, position: u64, max_timestamp: i64) {
        let due = match self.entries.last() {
            None => true,
            Some(last) => position >= last.position + self.interval,
        };
        if due {
            self.entries.push(IndexEntry {
                offset,
                position,
                max_timestamp_before: self.max_timestamp,
            });
        }
        self.max_timestamp = self.max_timestamp.max(max_timestamp);
    }

    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// Newest timestamp of every batch added.
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// Forgets entries at or past `position` (after a failed flush).
    pub fn truncate(&mut self, position: u64, max_timestamp: i64) {
        self.entries.retain(|e| e.position < position);
        self.max_timestamp = max_timestamp;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build() -> SparseIndex {
        let mut builder = IndexBuilder::new(100);
        // Batches of 60 bytes, 10 records each, timestamps 1000, 1010, ...
        for i in 0..10i64 {
            builder.add_batch(i * 10, (i * 60) as u64, 1000 + i * 10);
        }
        SparseIndex::new(builder.entries().to_vec())
    }

    #[test]
    fn entries_are_sparse() {
        let index = build();
        let positions: Vec<u64> = index.entries().iter().map(|e| e.position).collect();
        assert_eq!(positions, vec![0, 120, 240, 360, 480]);
    }

    #[test]
    fn offset_lookup_finds_the_entry_at_or_before() {
        let index = build();
        assert_eq!(index.lookup_offset(0).map(|e| e.position), Some(0));
        assert_eq!(index.lookup_offset(19).map(|e| e.position), Some(0));
        assert_eq!(index.lookup_offset(20).map(|e| e.position), Some(120));
        assert_eq!(index.lookup_offset(35).map(|e| e.position), Some(120));
        assert_eq!(index.lookup_offset(1_000).map(|e| e.position), Some(480));
        assert_eq!(index.lookup_offset(-1), None);
        assert_eq!(SparseIndex::default().lookup_offset(5), None);
    }

    #[test]
    fn timestamp_lookup_never_skips_a_match() {
        let index = build();
        // The batch with timestamp 1030 is at offset 30, position 180.
        let entry = index.lookup_timestamp(1030).expect("entry");
        assert!(entry.position <= 180);
        assert_eq!(entry.position, 120);
        assert_eq!(index.lookup_timestamp(0).map(|e| e.position), Some(0));
        assert_eq!(
            index.lookup_timestamp(i64::MAX).map(|e| e.position),
            Some(480)
        );
    }

    #[test]
    fn idx_round_trips_and_detects_damage() {
        let index = build();
        let bytes = index.encode();
        assert_eq!(SparseIndex::decode("x.idx", &bytes).expect("decode"), index);
        let mut damaged = bytes.to_vec();
        damaged[20] ^= 0x40;
        assert!(SparseIndex::decode("x.idx", &damaged).is_err());
        assert!(SparseIndex::decode("x.idx", &bytes[..10]).is_err());
    }

    #[test]
    fn truncate_forgets_entries_past_a_position() {
        let mut builder = IndexBuilder::new(100);
        for i in 0..10i64 {
            builder.add_batch(i * 10, (i * 60) as u64, 1000 + i * 10);
        }
        builder.truncate(240, 1030);
        assert_eq!(builder.entries().len(), 2);
        assert_eq!(builder.max_timestamp(), 1030);
    }
}

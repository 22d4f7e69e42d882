//! Whole-batch operations on raw bytes: validation (the produce hot path), splitting a
//! buffer of concatenated batches, lenient iteration over stored bytes, in-place header edits.

use bytes::Bytes;

use crate::error::BatchError;
use crate::header::{
    BASE_OFFSET_AT, BatchHeader, CRC_COVERED_FROM, HEADER_LEN, PARTITION_LEADER_EPOCH_AT,
    batch_total_len,
};

/// One batch found in a larger buffer: where it starts, its header and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSlice {
    /// Position of the batch's first byte in the buffer it was found in.
    pub position: usize,
    /// The parsed header.
    pub header: BatchHeader,
    /// The whole batch, header included; a zero-copy slice of the buffer.
    pub bytes: Bytes,
}

/// Check that `batch` is exactly one whole, intact v2 record batch and return its header.
///
/// Checks: at least [`HEADER_LEN`] bytes, magic 2, `batchLength + 12 == batch.len()`,
/// at least one record, `lastOffsetDelta + 1 == recordsCount`, and the CRC-32C
/// over bytes 21.. . Records are neither decompressed nor decoded.
pub fn validate_batch(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.total_len() != batch.len() {
        return Err(BatchError::LengthMismatch {
            declared: header.total_len(),
            actual: batch.len(),
        });
    }
    if header.records_count <= 0 {
        return Err(BatchError::NoRecords);
    }
    if i64::from(header.last_offset_delta) + 1 != i64::from(header.records_count) {
        return Err(BatchError::RecordCountMismatch {
            records_count: header.records_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    let actual = crc32c::crc32c(&batch[CRC_COVERED_FROM..]);
    if actual != header.crc {
        return Err(BatchError::BadCrc {
            expected: header.crc,
            actual,
        });
    }
    Ok(header)
}

/// Split `buf`, a concatenation of batches (a produce request's records), into
/// validated zero-copy slices.
///
/// Every batch must pass [`validate_batch`]. A batch cut short at the end of the
/// buffer gives [`BatchError::Truncated`]; any other invalid batch gives
/// [`BatchError::InvalidBatchAt`] naming the byte where it starts. An empty
/// buffer gives an empty list.
pub fn split_batches(buf: Bytes) -> Result<Vec<BatchSlice>, BatchError> {
    let mut batches = Vec::new();
    let mut position = 0;
    while position < buf.len() {
        let rest = &buf[position..];
        let total = match batch_total_len(rest) {
            Ok(total) => total,
            Err(BatchError::Incomplete { .. }) => {
                return Err(BatchError::Truncated {
                    offset: position,
                    needed: HEADER_LEN,
                    available: rest.len(),
                });
            }
            Err(other) => return Err(other.at(position)),
        };
        if total > rest.len() {
            return Err(BatchError::Truncated {
                offset: position,
                needed: total,
                available: rest.len(),
            });
        }
        let bytes = buf.slice(position..position + total);
        let header = validate_batch(&bytes).map_err(|e| e.at(position))?;
        batches.push(BatchSlice {
            position,
            header,
            bytes,
        });
        position += total;
    }
    Ok(batches)
}

/// Lenient iterator over batches read back from storage.
///
/// Yields each complete batch with its header, parsed but not CRC-checked (the
/// bytes were validated when written). Stops without error at an incomplete
/// tail, as left by a read of a byte range that ends inside a batch; then
/// [`BatchIter::position`] tells where that tail starts. A header that cannot be
/// a batch (bad magic, bad length) yields one error, after which iteration ends.
///
/// Typical read path: skip batches whose `header.last_offset()` is below the
/// fetch offset, and stop once `position + bytes.len()` passes the byte limit.
#[derive(Debug, Clone)]
pub struct BatchIter {
    buf: Bytes,
    position: usize,
    failed: bool,
}

impl BatchIter {
    /// Iterate over the batches in `buf`, starting at its first byte.
    pub fn new(buf: Bytes) -> Self {
        BatchIter {
            buf,
            position: 0,
            failed: false,
        }
    }

    /// Position of the first byte not yet yielded: after the last complete batch
    /// once iteration has ended.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Bytes after [`BatchIter::position`]: an incomplete tail once iteration has ended.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.position
    }
}

impl Iterator for BatchIter {
    type Item = Result<BatchSlice, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = &self.buf[self.position..];
        let header = match BatchHeader::parse(rest) {
            Ok(header) => header,
            Err(BatchError::Incomplete { .. }) => return None,
            Err(other) => {
                self.failed = true;
                return Some(Err(other.at(self.position)));
            }
        };
        let total = header.total_len();
        if total > rest.len() {
            return None;
        }
        let position = self.position;
        self.position += total;
        Some(Ok(BatchSlice {
            position,
            header,
            bytes: self.buf.slice(position..position + total),
        }))
    }
}

impl std::iter::FusedIterator for BatchIter {}

/// Overwrite the baseOffset field of `batch` in place.
///
/// The field lies before the CRC-covered bytes, so the CRC stays valid.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) -> Result<(), BatchError> {
    write_field(batch, BASE_OFFSET_AT, &base_offset.to_be_bytes())
}

/// Overwrite the partitionLeaderEpoch field of `batch` in place.
///
/// The field lies before the CRC-covered bytes, so the CRC stays valid.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) -> Result<(), BatchError> {
    write_field(batch, PARTITION_LEADER_EPOCH_AT, &epoch.to_be_bytes())
}

fn write_field(batch: &mut [u8], at: usize, value: &[u8]) -> Result<(), BatchError> {
    let available = batch.len();
    let needed = at + value.len();
    let field = batch
        .get_mut(at..needed)
        .ok_or(BatchError::Incomplete { needed, available })?;
    field.copy_from_slice(value);
    Ok(())
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;

//! `BatchError`: every way a record batch can fail to parse, validate, build or decode.

use crate::compression::Compression;

/// Everything that can go wrong while reading, checking, building or decoding a
/// Kafka record batch (v2, magic 2).
///
/// Variants carry the numbers that explain the failure so a caller can map them
/// to a wire error (`CORRUPT_MESSAGE`, `INVALID_RECORD`, `UNSUPPORTED_COMPRESSION_TYPE`,
/// ...) without parsing the message. Errors found inside a buffer of several
/// batches are wrapped in [`BatchError::InvalidBatchAt`]; use
/// [`BatchError::root`] to reach the underlying cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// The buffer ends before the bytes that are needed to read the next field.
    #[error(
        "record batch is incomplete: {needed} bytes are needed but only {available} are present; \
         read more bytes before parsing"
    )]
    Incomplete {
        /// Bytes needed from the start of the buffer.
        needed: usize,
        /// Bytes actually present.
        available: usize,
    },

    /// A batch inside a buffer of concatenated batches is cut short.
    #[error(
        "record batch starting at byte {offset} is truncated: it needs {needed} bytes but only \
         {available} remain in the buffer; the sender cut the batch or the read stopped early"
    )]
    Truncated {
        /// Position of the first byte of the cut batch in the buffer.
        offset: usize,
        /// Bytes the batch needs (its declared size, or the header size if the
        /// size itself could not be read).
        needed: usize,
        /// Bytes left in the buffer from `offset` on.
        available: usize,
    },

    /// The magic byte is not 2: the batch is an older message set format or not a batch at all.
    #[error(
        "record batch magic byte is {magic}, expected 2; only the v2 record batch format \
         (Kafka 0.11+) is supported, so upgrade the client or check the framing"
    )]
    BadMagic {
        /// The magic byte found at position 16.
        magic: i8,
    },

    /// The batchLength field is too small to hold even the v2 header.
    #[error(
        "record batch length field is {batch_length}, but a v2 batch needs at least 49 bytes \
         after that field; the bytes are not a record batch or the framing is off"
    )]
    BadLength {
        /// The batchLength field (bytes after the field itself).
        batch_length: i32,
    },

    /// The batchLength field does not match the size of the buffer that should hold exactly one batch.
    #[error(
        "record batch declares {declared} bytes in total (batchLength + 12) but the buffer holds \
         {actual}; exactly one whole batch was expected"
    )]
    LengthMismatch {
        /// Total size the header declares.
        declared: usize,
        /// Size of the buffer.
        actual: usize,
    },

    /// The CRC-32C stored in the header does not match the bytes after it.
    #[error(
        "record batch CRC mismatch: header says {expected:#010x}, bytes give {actual:#010x}; \
         the batch was corrupted in transit or on disk"
    )]
    BadCrc {
        /// CRC stored in the header.
        expected: u32,
        /// CRC-32C computed over bytes 21.. of the batch.
        actual: u32,
    },

    /// A batch with zero records (recordsCount = 0), which Kafka never sends.
    #[error("record batch holds no records; a v2 batch must carry at least one record")]
    NoRecords,

    /// recordsCount and lastOffsetDelta disagree (lastOffsetDelta + 1 must equal recordsCount).
    #[error(
        "record batch says it holds {records_count} records but its last offset delta is \
         {last_offset_delta} (expected {records_count} - 1); the producer built an inconsistent batch"
    )]
    RecordCountMismatch {
        /// The recordsCount field.
        records_count: i32,
        /// The lastOffsetDelta field.
        last_offset_delta: i32,
    },

    /// The compression bits name a codec that does not exist (5, 6 or 7).
    #[error(
        "record batch uses compression codec id {codec}, which is unknown; \
         known ids are 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd"
    )]
    UnknownCompression {
        /// The value of attribute bits 0-2.
        codec: u8,
    },

    /// A compression name that is not one of "none", "gzip", "snappy", "lz4", "zstd".
    #[error("unknown compression name {name:?}; use one of none, gzip, snappy, lz4, zstd")]
    UnknownCompressionName {
        /// The name that was given.
        name: String,
    },

    /// The compressed records could not be decompressed.
    #[error("cannot decompress {codec} records of the batch: {reason}")]
    Decompress {
        /// The codec named by the batch attributes.
        codec: Compression,
        /// What the decompressor reported.
        reason: String,
    },

    /// Decompression would produce more bytes than the configured limit.
    #[error(
        "{codec} records of the batch decompress to more than {limit} bytes, the limit; \
         the batch is a compression bomb or must be split by the producer"
    )]
    DecompressedTooLarge {
        /// The codec named by the batch attributes.
        codec: Compression,
        /// The limit in bytes.
        limit: usize,
    },

    /// The records could not be compressed while building a batch.
    #[error("cannot compress records with {codec}: {reason}")]
    Compress {
        /// The codec asked for.
        codec: Compression,
        /// What the compressor reported.
        reason: String,
    },

    /// A record inside the batch is malformed (bad varint, negative or overlong length, ...).
    #[error("record {index} of the batch is corrupt: {reason}")]
    CorruptRecord {
        /// Zero-based position of the record within the batch.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// Bytes remain after the last record the header announces.
    #[error(
        "record batch has {count} bytes after its last record; recordsCount or the record \
         lengths are wrong"
    )]
    TrailingBytes {
        /// Number of unread bytes.
        count: usize,
    },

    /// A record, or the whole batch, is larger than the v2 format can express.
    #[error("{what} is {size} bytes, larger than the record batch format allows ({max} bytes)")]
    TooLarge {
        /// What is too large ("record key", "batch", ...).
        what: &'static str,
        /// Its size in bytes.
        size: usize,
        /// The largest size allowed.
        max: usize,
    },

    /// A record timestamp is so far from the first record's that the delta overflows.
    #[error(
        "record timestamp {timestamp} cannot be stored relative to the batch base timestamp \
         {base_timestamp}: the difference overflows 64 bits"
    )]
    TimestampOutOfRange {
        /// The record timestamp.
        timestamp: i64,
        /// The base timestamp of the batch.
        base_timestamp: i64,
    },

    /// One batch of a buffer holding several batches is invalid.
    #[error("record batch starting at byte {position} is invalid: {source}")]
    InvalidBatchAt {
        /// Position of the first byte of the bad batch in the buffer.
        position: usize,
        /// Why it is invalid.
        source: Box<BatchError>,
    },
}

impl BatchError {
    /// The underlying cause, with any [`BatchError::InvalidBatchAt`] wrapping removed.
    ///
    /// Map this to a wire error code.
    pub fn root(&self) -> &BatchError {
        match self {
            BatchError::InvalidBatchAt { source, .. } => source.root(),
            other => other,
        }
    }

    /// Wrap `self` with the position of the batch it was found in.
    pub fn at(self, position: usize) -> BatchError {
        BatchError::InvalidBatchAt {
            position,
            source: Box::new(self),
        }
    }

    /// A [`BatchError::CorruptRecord`] for the record at `index`.
    pub(crate) fn corrupt(index: usize, reason: impl Into<String>) -> BatchError {
        BatchError::CorruptRecord {
            index,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_message_names_both_values() {
        let err = BatchError::BadCrc {
            expected: 0x1234_abcd,
            actual: 0x0000_0001,
        };
        let text = err.to_string();
        assert!(text.contains("0x1234abcd"), "{text}");
        assert!(text.contains("0x00000001"), "{text}");
    }

    #[test]
    fn root_unwraps_positions() {
        let err = BatchError::NoRecords.at(10).at(20);
        assert_eq!(err.root(), &BatchError::NoRecords);
        assert!(err.to_string().contains("byte 20"));
    }
}

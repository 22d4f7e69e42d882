//! `BatchHeader`: the fixed 61-byte header of a v2 record batch, its field positions and parser.

use crate::compression::Compression;
use crate::error::BatchError;

/// Size of the v2 record batch header; the records start right after it.
pub const HEADER_LEN: usize = 61;
/// Bytes before and including the batchLength field (baseOffset + batchLength):
/// a batch's total size is `batchLength + LENGTH_PREFIX_LEN`.
pub const LENGTH_PREFIX_LEN: usize = 12;
/// The only supported magic byte (record batch format v2).
pub const MAGIC: i8 = 2;

// Field positions within the header (big-endian).
pub(crate) const BASE_OFFSET_AT: usize = 0;
pub(crate) const BATCH_LENGTH_AT: usize = 8;
pub(crate) const PARTITION_LEADER_EPOCH_AT: usize = 12;
pub(crate) const MAGIC_AT: usize = 16;
pub(crate) const CRC_AT: usize = 17;
/// First byte covered by the CRC (the attributes field).
pub(crate) const CRC_COVERED_FROM: usize = 21;
pub(crate) const ATTRIBUTES_AT: usize = 21;
pub(crate) const LAST_OFFSET_DELTA_AT: usize = 23;
pub(crate) const BASE_TIMESTAMP_AT: usize = 27;
pub(crate) const MAX_TIMESTAMP_AT: usize = 35;
pub(crate) const PRODUCER_ID_AT: usize = 43;
pub(crate) const PRODUCER_EPOCH_AT: usize = 51;
pub(crate) const BASE_SEQUENCE_AT: usize = 53;
pub(crate) const RECORDS_COUNT_AT: usize = 57;

/// Attribute bit 3: timestamps are LogAppendTime (set by the broker).
pub(crate) const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
/// Attribute bit 4: the batch belongs to a transaction.
pub(crate) const TRANSACTIONAL_BIT: i16 = 1 << 4;
/// Attribute bit 5: the batch holds control records (commit / abort markers).
pub(crate) const CONTROL_BIT: i16 = 1 << 5;

/// Smallest legal batchLength: the header bytes after the batchLength field.
const MIN_BATCH_LENGTH: i32 = (HEADER_LEN - LENGTH_PREFIX_LEN) as i32;

/// Meaning of the timestamps in a batch (attribute bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// Timestamps were set by the producer.
    CreateTime,
    /// Timestamps were set by the broker when it appended the batch; every
    /// record's timestamp is the batch's `max_timestamp`.
    LogAppendTime,
}

/// The parsed fixed header of a v2 record batch.
///
/// Parsing checks only the magic byte and that batchLength can hold a header;
/// [`validate_batch`](crate::validate_batch) checks the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the batchLength field (total size minus 12).
    pub batch_length: i32,
    /// Leader epoch of the partition when the batch was appended.
    pub partition_leader_epoch: i32,
    /// Format version; always 2 once parsed.
    pub magic: i8,
    /// CRC-32C of bytes 21.. as stored in the header.
    pub crc: u32,
    /// Attribute bits: compression, timestamp type, transactional, control.
    pub attributes: i16,
    /// Offset delta of the last record (records count - 1 in a valid batch).
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest record timestamp.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Idempotent producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub records_count: i32,
}

impl BatchHeader {
    /// Parse the header at the start of `buf`, which needs at least [`HEADER_LEN`] bytes.
    ///
    /// Does not look at the CRC or the records and does not require the whole
    /// batch to be present.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        let header: &[u8; HEADER_LEN] = buf.first_chunk().ok_or(BatchError::Incomplete {
            needed: HEADER_LEN,
            available: buf.len(),
        })?;
        let magic = header[MAGIC_AT] as i8;
        if magic != MAGIC {
            return Err(BatchError::BadMagic { magic });
        }
        let batch_length = read_i32(header, BATCH_LENGTH_AT);
        if batch_length < MIN_BATCH_LENGTH {
            return Err(BatchError::BadLength { batch_length });
        }
        Ok(BatchHeader {
            base_offset: read_i64(header, BASE_OFFSET_AT),
            batch_length,
            partition_leader_epoch: read_i32(header, PARTITION_LEADER_EPOCH_AT),
            magic,
            crc: read_i32(header, CRC_AT) as u32,
            attributes: read_i16(header, ATTRIBUTES_AT),
            last_offset_delta: read_i32(header, LAST_OFFSET_DELTA_AT),
            base_timestamp: read_i64(header, BASE_TIMESTAMP_AT),
            max_timestamp: read_i64(header, MAX_TIMESTAMP_AT),
            producer_id: read_i64(header, PRODUCER_ID_AT),
            producer_epoch: read_i16(header, PRODUCER_EPOCH_AT),
            base_sequence: read_i32(header, BASE_SEQUENCE_AT),
            records_count: read_i32(header, RECORDS_COUNT_AT),
        })
    }

    /// Total size of the batch in bytes, header included (`batch_length + 12`).
    pub fn total_len(&self) -> usize {
        // batch_length is >= 49 once parsed, so the conversion cannot fail.
        usize::try_from(self.batch_length).unwrap_or(0) + LENGTH_PREFIX_LEN
    }

    /// Number of records the header announces.
    pub fn record_count(&self) -> i32 {
        self.records_count
    }

    /// Offset of the last record: `base_offset + last_offset_delta`.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .wrapping_add(i64::from(self.last_offset_delta))
    }

    /// Offset just after the batch: `last_offset() + 1`.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().wrapping_add(1)
    }

    /// The codec of the records.
    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_attributes(self.attributes)
    }

    /// Whether timestamps are producer (create) or broker (log append) time.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Whether the batch is part of a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// Whether the batch holds control records (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// Whether the batch was written by an idempotent producer (`producer_id >= 0`).
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
}

/// Total size of the batch whose first 12 bytes are in `prefix` (`batchLength + 12`).
///
/// Lets a stream reader learn how many bytes to read before the whole header
/// is present. Checks only that batchLength can hold a v2 header.
pub fn batch_total_len(prefix: &[u8]) -> Result<usize, BatchError> {
    let prefix: &[u8; LENGTH_PREFIX_LEN] = prefix.first_chunk().ok_or(BatchError::Incomplete {
        needed: LENGTH_PREFIX_LEN,
        available: prefix.len(),
    })?;
    let batch_length = read_i32(prefix, BATCH_LENGTH_AT);
    match usize::try_from(batch_length) {
        Ok(len) if batch_length >= MIN_BATCH_LENGTH => Ok(len + LENGTH_PREFIX_LEN),
        _ => Err(BatchError::BadLength { batch_length }),
    }
}

fn read_i16<const N: usize>(buf: &[u8; N], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}

fn read_i32<const N: usize>(buf: &[u8; N], at: usize) -> i32 {
    i32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn read_i64<const N: usize>(buf: &[u8; N], at: usize) -> i64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&buf[at..at + 8]);
    i64::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header with distinct values in every field.
    fn sample_header() -> Vec<u8> {
        let mut buf = Vec::with_capacity(HEADER_LEN);
        buf.extend_from_slice(&1000i64.to_be_bytes()); // base offset
        buf.extend_from_slice(&49i32.to_be_bytes()); // batch length
        buf.extend_from_slice(&7i32.to_be_bytes()); // leader epoch
        buf.push(2); // magic
        buf.extend_from_slice(&0xdead_beefu32.to_be_bytes()); // crc
        buf.extend_from_slice(&(0x0003i16 | 0x0018).to_be_bytes()); // lz4, log append, txn
        buf.extend_from_slice(&4i32.to_be_bytes()); // last offset delta
        buf.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
        buf.extend_from_slice(&1_700_000_000_500i64.to_be_bytes());
        buf.extend_from_slice(&42i64.to_be_bytes()); // producer id
        buf.extend_from_slice(&3i16.to_be_bytes()); // producer epoch
        buf.extend_from_slice(&100i32.to_be_bytes()); // base sequence
        buf.extend_from_slice(&5i32.to_be_bytes()); // records count
        buf
    }

    #[test]
    fn parses_every_field() -> Result<(), BatchError> {
        let header = BatchHeader::parse(&sample_header())?;
        assert_eq!(header.base_offset, 1000);
        assert_eq!(header.batch_length, 49);
        assert_eq!(header.total_len(), HEADER_LEN);
        assert_eq!(header.partition_leader_epoch, 7);
        assert_eq!(header.crc, 0xdead_beef);
        assert_eq!(header.compression()?, Compression::Lz4);
        assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
        assert!(header.is_transactional());
        assert!(!header.is_control());
        assert_eq!(header.last_offset(), 1004);
        assert_eq!(header.next_offset(), 1005);
        assert_eq!(header.base_timestamp, 1_700_000_000_000);
        assert_eq!(header.max_timestamp, 1_700_000_000_500);
        assert!(header.has_producer_id());
        assert_eq!(header.producer_id, 42);
        assert_eq!(header.producer_epoch, 3);
        assert_eq!(header.base_sequence, 100);
        assert_eq!(header.record_count(), 5);
        assert_eq!(batch_total_len(&sample_header()[..12])?, HEADER_LEN);
        Ok(())
    }

    #[test]
    fn short_buffer_is_incomplete() {
        let buf = sample_header();
        assert_eq!(
            BatchHeader::parse(&buf[..60]),
            Err(BatchError::Incomplete {
                needed: 61,
                available: 60
            })
        );
        assert!(matches!(
            batch_total_len(&buf[..11]),
            Err(BatchError::Incomplete { needed: 12, .. })
        ));
    }

    #[test]
    fn wrong_magic_is_rejected() {
        let mut buf = sample_header();
        buf[MAGIC_AT] = 1;
        assert_eq!(
            BatchHeader::parse(&buf),
            Err(BatchError::BadMagic { magic: 1 })
        );
    }

    #[test]
    fn tiny_or_negative_length_is_rejected() {
        for batch_length in [48i32, 0, -1, i32::MIN] {
            let mut buf = sample_header();
            buf[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&batch_length.to_be_bytes());
            assert_eq!(
                BatchHeader::parse(&buf),
                Err(BatchError::BadLength { batch_length })
            );
            assert_eq!(
                batch_total_len(&buf),
                Err(BatchError::BadLength { batch_length })
            );
        }
    }
}

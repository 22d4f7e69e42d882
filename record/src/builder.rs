//! `BatchBuilder`: assembles records into one valid v2 record batch, compressed as asked.

use bytes::Bytes;

use crate::compression::{Compression, compress};
use crate::error::BatchError;
use crate::header::{
    ATTRIBUTES_AT, BASE_OFFSET_AT, BASE_SEQUENCE_AT, BASE_TIMESTAMP_AT, BATCH_LENGTH_AT, CRC_AT,
    CRC_COVERED_FROM, HEADER_LEN, LAST_OFFSET_DELTA_AT, LENGTH_PREFIX_LEN, MAGIC, MAGIC_AT,
    MAX_TIMESTAMP_AT, PARTITION_LEADER_EPOCH_AT, PRODUCER_EPOCH_AT, PRODUCER_ID_AT,
    RECORDS_COUNT_AT, TRANSACTIONAL_BIT,
};
use crate::record::{Record, encode_record};

/// Builds one v2 record batch with base offset 0 and offset deltas `0..n`.
///
/// Records are encoded as they are pushed; [`BatchBuilder::build`] compresses
/// them and writes the header and CRC. The base timestamp is the first
/// record's timestamp and the max timestamp the largest one.
///
/// ```
/// use sluice_record::{BatchBuilder, Compression, decode_records};
///
/// let mut builder = BatchBuilder::new(Compression::Lz4);
/// builder.push(1_700_000_000_000, Some(b"key"), Some(b"value"), &[("trace", None)])?;
/// let batch = builder.build()?;
/// let records = decode_records(&batch)?;
/// assert_eq!(records[0].value.as_deref(), Some(&b"value"[..]));
/// # Ok::<(), sluice_record::BatchError>(())
/// ```
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    compression: Compression,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
    /// Header space (zeroed) followed by the encoded, uncompressed records.
    buf: Vec<u8>,
    count: i32,
    /// Base and max timestamps, set by the first push.
    timestamps: Option<(i64, i64)>,
}

impl BatchBuilder {
    /// An empty builder whose batch will be compressed with `compression`.
    pub fn new(compression: Compression) -> Self {
        BatchBuilder {
            compression,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
            buf: vec![0; HEADER_LEN],
            count: 0,
            timestamps: None,
        }
    }

    /// Set the idempotent producer id, epoch and the sequence of the first record
    /// (all -1 by default: no idempotence).
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Mark the batch as part of a transaction (attribute bit 4).
    pub fn transactional(mut self, transactional: bool) -> Self {
        self.transactional = transactional;
        self
    }

    /// Append a record. `None` key or value is encoded as null (length -1);
    /// a header with a `None` value has a null value.
    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) -> Result<(), BatchError> {
        self.push_with(timestamp, key, value, headers.iter().copied())
    }

    /// Append `record`, using its timestamp, key, value and headers (its offset is ignored).
    pub fn push_record(&mut self, record: &Record) -> Result<(), BatchError> {
        self.push_with(
            record.timestamp,
            record.key.as_deref(),
            record.value.as_deref(),
            record
                .headers
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_deref())),
        )
    }

    fn push_with<'h>(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl Iterator<Item = (&'h str, Option<&'h [u8]>)> + Clone,
    ) -> Result<(), BatchError> {
        if self.count == i32::MAX {
            return Err(BatchError::TooLarge {
                what: "record count of the batch",
                size: self.count as usize + 1,
                max: i32::MAX as usize,
            });
        }
        let (base_timestamp, max_timestamp) = self.timestamps.unwrap_or((timestamp, timestamp));
        let timestamp_delta =
            timestamp
                .checked_sub(base_timestamp)
                .ok_or(BatchError::TimestampOutOfRange {
                    timestamp,
                    base_timestamp,
                })?;
        encode_record(
            &mut self.buf,
            timestamp_delta,
            self.count,
            key,
            value,
            headers,
        )?;
        self.timestamps = Some((base_timestamp, max_timestamp.max(timestamp)));
        self.count += 1;
        Ok(())
    }

    /// Number of records pushed so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether no record has been pushed yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Size of the batch if built without compression: header plus encoded records.
    /// A compressed batch is usually smaller.
    pub fn estimated_size(&self) -> usize {
        self.buf.len()
    }

    /// Compress the records, write the header and CRC, and return the batch.
    ///
    /// Fails with [`BatchError::NoRecords`] if nothing was pushed, since a
    /// batch must hold at least one record.
    pub fn build(self) -> Result<Bytes, BatchError> {
        let Some((base_timestamp, max_timestamp)) = self.timestamps else {
            return Err(BatchError::NoRecords);
        };
        let mut batch = match self.compression {
            Compression::None => self.buf,
            codec => {
                let compressed = compress(codec, &self.buf[HEADER_LEN..])?;
                let mut batch = Vec::with_capacity(HEADER_LEN + compressed.len());
                batch.extend_from_slice(&self.buf[..HEADER_LEN]);
                batch.extend_from_slice(&compressed);
                batch
            }
        };
        let batch_length =
            i32::try_from(batch.len() - LENGTH_PREFIX_LEN).map_err(|_| BatchError::TooLarge {
                what: "record batch",
                size: batch.len(),
                max: i32::MAX as usize + LENGTH_PREFIX_LEN,
            })?;
        let mut attributes = i16::from(self.compression.id());
        if self.transactional {
            attributes |= TRANSACTIONAL_BIT;
        }
        let header = &mut batch[..HEADER_LEN];
        header[BASE_OFFSET_AT..BATCH_LENGTH_AT].copy_from_slice(&0i64.to_be_bytes());
        put(header, BATCH_LENGTH_AT, &batch_length.to_be_bytes());
        put(header, PARTITION_LEADER_EPOCH_AT, &(-1i32).to_be_bytes());
        header[MAGIC_AT] = MAGIC as u8;
        put(header, ATTRIBUTES_AT, &attributes.to_be_bytes());
        put(
            header,
            LAST_OFFSET_DELTA_AT,
            &(self.count - 1).to_be_bytes(),
        );
        put(header, BASE_TIMESTAMP_AT, &base_timestamp.to_be_bytes());
        put(header, MAX_TIMESTAMP_AT, &max_timestamp.to_be_bytes());
        put(header, PRODUCER_ID_AT, &self.producer_id.to_be_bytes());
        put(
            header,
            PRODUCER_EPOCH_AT,
            &self.producer_epoch.to_be_bytes(),
        );
        put(header, BASE_SEQUENCE_AT, &self.base_sequence.to_be_bytes());
        put(header, RECORDS_COUNT_AT, &self.count.to_be_bytes());
        let crc = crc32c::crc32c(&batch[CRC_COVERED_FROM..]);
        put(&mut batch, CRC_AT, &crc.to_be_bytes());
        Ok(Bytes::from(batch))
    }
}

/// Copy `value` into `header` at `at`; positions are the constants of the fixed header.
fn put(header: &mut [u8], at: usize, value: &[u8]) {
    header[at..at + value.len()].copy_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::validate_batch;
    use crate::header::TimestampType;

    #[test]
    fn empty_builder_is_an_error() {
        assert_eq!(
            BatchBuilder::new(Compression::None).build(),
            Err(BatchError::NoRecords)
        );
    }

    #[test]
    fn header_fields_are_filled() -> Result<(), BatchError> {
        let mut builder = BatchBuilder::new(Compression::Gzip)
            .producer(9, 2, 50)
            .transactional(true);
        assert!(builder.is_empty());
        builder.push(1000, None, Some(b"a"), &[])?;
        builder.push(3000, None, Some(b"b"), &[])?;
        builder.push(500, None, None, &[])?;
        assert_eq!(builder.len(), 3);
        assert!(builder.estimated_size() > HEADER_LEN);
        let batch = builder.build()?;
        let header = validate_batch(&batch)?;
        assert_eq!(header.base_offset, 0);
        assert_eq!(header.partition_leader_epoch, -1);
        assert_eq!(header.records_count, 3);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(header.base_timestamp, 1000);
        assert_eq!(header.max_timestamp, 3000);
        assert_eq!(header.compression()?, Compression::Gzip);
        assert_eq!(header.timestamp_type(), TimestampType::CreateTime);
        assert!(header.is_transactional());
        assert!(!header.is_control());
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (9, 2, 50)
        );
        Ok(())
    }

    #[test]
    fn default_producer_fields_are_minus_one() -> Result<(), BatchError> {
        let mut builder = BatchBuilder::new(Compression::None);
        builder.push(0, Some(b"k"), None, &[])?;
        let header = validate_batch(&builder.build()?)?;
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (-1, -1, -1)
        );
        assert!(!header.has_producer_id());
        Ok(())
    }

    #[test]
    fn overflowing_timestamp_delta_is_an_error() -> Result<(), BatchError> {
        let mut builder = BatchBuilder::new(Compression::None);
        builder.push(i64::MIN, None, None, &[])?;
        assert!(matches!(
            builder.push(i64::MAX, None, None, &[]),
            Err(BatchError::TimestampOutOfRange { .. })
        ));
        // The failed push left the builder usable.
        assert_eq!(builder.len(), 1);
        validate_batch(&builder.build()?)?;
        Ok(())
    }
}

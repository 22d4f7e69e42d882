//! `decode_records`: validate a batch, decompress it and decode every record, bounded
//! by the input size and [`MAX_DECOMPRESSED_SIZE`], never panicking on bad bytes.

use bytes::Bytes;

use crate::batch::validate_batch;
use crate::compression::{Compression, MAX_DECOMPRESSED_SIZE, decompress};
use crate::error::BatchError;
use crate::header::{BatchHeader, HEADER_LEN, TimestampType};
use crate::record::{MIN_RECORD_LEN, Record, RecordBase, decode_record};
use crate::varint::Reader;

/// Validate `batch` (see [`validate_batch`]), decompress its records and decode them all.
///
/// Keys and values of the returned records share one buffer: one copy of the
/// records, or the decompressed bytes. Use [`decode_records_shared`] when the
/// batch is already in a [`Bytes`] to avoid even that copy for uncompressed
/// batches.
pub fn decode_records(batch: &[u8]) -> Result<Vec<Record>, BatchError> {
    let header = validate_batch(batch)?;
    let payload = match header.compression()? {
        Compression::None => Bytes::copy_from_slice(&batch[HEADER_LEN..]),
        codec => Bytes::from(decompress(
            codec,
            &batch[HEADER_LEN..],
            MAX_DECOMPRESSED_SIZE,
        )?),
    };
    decode_payload(&header, &payload)
}

/// Like [`decode_records`], but keys and values of an uncompressed batch are
/// zero-copy slices of `batch`.
pub fn decode_records_shared(batch: &Bytes) -> Result<Vec<Record>, BatchError> {
    let header = validate_batch(batch)?;
    let payload = match header.compression()? {
        Compression::None => batch.slice(HEADER_LEN..),
        codec => Bytes::from(decompress(
            codec,
            &batch[HEADER_LEN..],
            MAX_DECOMPRESSED_SIZE,
        )?),
    };
    decode_payload(&header, &payload)
}

/// Decode exactly `header.records_count` records from the uncompressed `payload`.
fn decode_payload(header: &BatchHeader, payload: &Bytes) -> Result<Vec<Record>, BatchError> {
    let base = RecordBase {
        offset: header.base_offset,
        timestamp: header.base_timestamp,
        log_append_time: match header.timestamp_type() {
            TimestampType::LogAppendTime => Some(header.max_timestamp),
            TimestampType::CreateTime => None,
        },
    };
    let count = usize::try_from(header.records_count).unwrap_or(0);
    // The count comes from the wire: trust it only as far as the bytes can back it.
    let mut records = Vec::with_capacity(count.min(payload.len() / MIN_RECORD_LEN));
    let mut reader = Reader::new(payload);
    for index in 0..count {
        if reader.remaining() == 0 {
            return Err(BatchError::corrupt(
                index,
                format!("the batch announces {count} records but its bytes end after {index}"),
            ));
        }
        records.push(decode_record(&mut reader, payload, base, index)?);
    }
    match reader.remaining() {
        0 => Ok(records),
        count => Err(BatchError::TrailingBytes { count }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::BatchBuilder;
    use crate::header::{ATTRIBUTES_AT, CRC_AT, CRC_COVERED_FROM, TIMESTAMP_TYPE_BIT};

    /// Rewrite the CRC after editing a batch by hand.
    fn fix_crc(batch: &mut [u8]) {
        let crc = crc32c::crc32c(&batch[CRC_COVERED_FROM..]);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    }

    fn two_records(codec: Compression) -> Result<Bytes, BatchError> {
        let mut builder = BatchBuilder::new(codec);
        builder.push(100, Some(b"k1".as_slice()), Some(b"v1".as_slice()), &[])?;
        builder.push(
            90,
            None,
            None,
            &[
                ("h1", Some(b"x".as_slice())),
                ("h2", None),
                ("", Some(b"".as_slice())),
            ],
        )?;
        builder.build()
    }

    #[test]
    fn decodes_keys_values_nulls_and_headers() -> Result<(), BatchError> {
        for codec in Compression::ALL {
            let batch = two_records(codec)?;
            let records = decode_records(&batch)?;
            assert_eq!(records, decode_records_shared(&batch)?);
            assert_eq!(records.len(), 2, "{codec}");
            assert_eq!(records[0].offset, 0);
            assert_eq!(records[0].timestamp, 100);
            assert_eq!(records[0].key.as_deref(), Some(b"k1".as_slice()));
            assert_eq!(records[0].value.as_deref(), Some(b"v1".as_slice()));
            assert!(records[0].headers.is_empty());
            assert_eq!(records[1].offset, 1);
            assert_eq!(records[1].timestamp, 90);
            assert_eq!(records[1].key, None);
            assert_eq!(records[1].value, None);
            assert_eq!(
                records[1].headers,
                vec![
                    ("h1".to_owned(), Some(Bytes::from_static(b"x"))),
                    ("h2".to_owned(), None),
                    (String::new(), Some(Bytes::new())),
                ]
            );
        }
        Ok(())
    }

    #[test]
    fn offsets_follow_the_base_offset() -> Result<(), BatchError> {
        let mut batch = two_records(Compression::None)?.to_vec();
        crate::batch::set_base_offset(&mut batch, 5000)?;
        let offsets: Vec<i64> = decode_records(&batch)?.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [5000, 5001]);
        Ok(())
    }

    #[test]
    fn log_append_time_overrides_record_timestamps() -> Result<(), BatchError> {
        let mut batch = two_records(Compression::Snappy)?.to_vec();
        batch[ATTRIBUTES_AT + 1] |= TIMESTAMP_TYPE_BIT as u8;
        fix_crc(&mut batch);
        let timestamps: Vec<i64> = decode_records(&batch)?
            .iter()
            .map(|r| r.timestamp)
            .collect();
        assert_eq!(timestamps, [100, 100]);
        Ok(())
    }

    #[test]
    fn unknown_codec_is_reported() -> Result<(), BatchError> {
        let mut batch = two_records(Compression::None)?.to_vec();
        batch[ATTRIBUTES_AT + 1] |= 0x07;
        fix_crc(&mut batch);
        assert_eq!(
            decode_records(&batch),
            Err(BatchError::UnknownCompression { codec: 7 })
        );
        Ok(())
    }

    #[test]
    fn cut_or_padded_records_are_errors() -> Result<(), BatchError> {
        let original = two_records(Compression::None)?.to_vec();

        // Drop the last byte and shrink batchLength to match.
        let mut short = original[..original.len() - 1].to_vec();
        let len = (short.len() - 12) as i32;
        short[8..12].copy_from_slice(&len.to_be_bytes());
        fix_crc(&mut short);
        assert!(matches!(
            decode_records(&short),
            Err(BatchError::CorruptRecord { index: 1, .. })
        ));

        // Append a stray byte.
        let mut long = original.clone();
        long.push(0);
        let len = (long.len() - 12) as i32;
        long[8..12].copy_from_slice(&len.to_be_bytes());
        fix_crc(&mut long);
        assert_eq!(
            decode_records(&long),
            Err(BatchError::TrailingBytes { count: 1 })
        );
        Ok(())
    }

    #[test]
    fn huge_record_count_does_not_allocate() -> Result<(), BatchError> {
        let mut batch = two_records(Compression::None)?.to_vec();
        batch[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        batch[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
        fix_crc(&mut batch);
        assert!(matches!(
            decode_records(&batch),
            Err(BatchError::CorruptRecord { index: 2, .. })
        ));
        Ok(())
    }
}

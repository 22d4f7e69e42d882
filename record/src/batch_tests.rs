//! Unit tests of `batch.rs`: validation failures, splitting, lenient iteration, header edits.

use super::*;
use crate::builder::BatchBuilder;
use crate::compression::Compression;
use crate::header::{BATCH_LENGTH_AT, CRC_AT, LAST_OFFSET_DELTA_AT, MAGIC_AT, RECORDS_COUNT_AT};

fn batch_of(records: usize, codec: Compression) -> Result<Bytes, BatchError> {
    let mut builder = BatchBuilder::new(codec);
    for i in 0..records {
        let value = format!("value-{i}");
        builder.push(1_000 + i as i64, None, Some(value.as_bytes()), &[])?;
    }
    builder.build()
}

fn fix_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[CRC_COVERED_FROM..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

fn concat(parts: &[&Bytes]) -> Bytes {
    Bytes::from(
        parts
            .iter()
            .flat_map(|part| part.iter().copied())
            .collect::<Vec<u8>>(),
    )
}

#[test]
fn built_batch_validates() -> Result<(), BatchError> {
    for codec in Compression::ALL {
        let batch = batch_of(3, codec)?;
        let header = validate_batch(&batch)?;
        assert_eq!(header.total_len(), batch.len());
        assert_eq!(header.records_count, 3);
    }
    Ok(())
}

#[test]
fn bad_magic_is_rejected() -> Result<(), BatchError> {
    let mut batch = batch_of(1, Compression::None)?.to_vec();
    batch[MAGIC_AT] = 1;
    assert_eq!(
        validate_batch(&batch),
        Err(BatchError::BadMagic { magic: 1 })
    );
    Ok(())
}

#[test]
fn any_flipped_byte_after_the_crc_is_caught() -> Result<(), BatchError> {
    let batch = batch_of(2, Compression::None)?.to_vec();
    for position in CRC_COVERED_FROM..batch.len() {
        let mut corrupted = batch.clone();
        corrupted[position] ^= 0x01;
        let result = validate_batch(&corrupted);
        let caught = matches!(
            result,
            Err(BatchError::BadCrc { .. })
                | Err(BatchError::RecordCountMismatch { .. })
                | Err(BatchError::NoRecords)
        );
        assert!(caught, "flip at {position} gave {result:?}");
    }
    // A flip in the CRC field itself is a mismatch too.
    let mut corrupted = batch.clone();
    corrupted[CRC_AT] ^= 0x80;
    assert!(matches!(
        validate_batch(&corrupted),
        Err(BatchError::BadCrc { .. })
    ));
    Ok(())
}

#[test]
fn crc_error_reports_both_values() -> Result<(), BatchError> {
    let mut batch = batch_of(1, Compression::None)?.to_vec();
    let good = crc32c::crc32c(&batch[CRC_COVERED_FROM..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&0x1234_abcdu32.to_be_bytes());
    assert_eq!(
        validate_batch(&batch),
        Err(BatchError::BadCrc {
            expected: 0x1234_abcd,
            actual: good
        })
    );
    Ok(())
}

#[test]
fn truncated_and_padded_batches_are_rejected() -> Result<(), BatchError> {
    let batch = batch_of(2, Compression::None)?;
    let total = batch.len();
    assert_eq!(
        validate_batch(&batch[..total - 1]),
        Err(BatchError::LengthMismatch {
            declared: total,
            actual: total - 1
        })
    );
    assert!(matches!(
        validate_batch(&batch[..30]),
        Err(BatchError::Incomplete {
            needed: 61,
            available: 30
        })
    ));
    let mut padded = batch.to_vec();
    padded.push(0);
    assert_eq!(
        validate_batch(&padded),
        Err(BatchError::LengthMismatch {
            declared: total,
            actual: total + 1
        })
    );
    let mut wrong_length = batch.to_vec();
    wrong_length[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&10i32.to_be_bytes());
    assert_eq!(
        validate_batch(&wrong_length),
        Err(BatchError::BadLength { batch_length: 10 })
    );
    Ok(())
}

#[test]
fn zero_records_are_rejected() -> Result<(), BatchError> {
    let mut batch = batch_of(1, Compression::None)?.to_vec();
    batch[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&0i32.to_be_bytes());
    batch[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4].copy_from_slice(&(-1i32).to_be_bytes());
    fix_crc(&mut batch);
    assert_eq!(validate_batch(&batch), Err(BatchError::NoRecords));
    Ok(())
}

#[test]
fn last_offset_delta_must_match_count() -> Result<(), BatchError> {
    let mut batch = batch_of(3, Compression::None)?.to_vec();
    batch[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4].copy_from_slice(&5i32.to_be_bytes());
    fix_crc(&mut batch);
    assert_eq!(
        validate_batch(&batch),
        Err(BatchError::RecordCountMismatch {
            records_count: 3,
            last_offset_delta: 5
        })
    );
    Ok(())
}

#[test]
fn split_yields_zero_copy_slices() -> Result<(), BatchError> {
    let first = batch_of(1, Compression::None)?;
    let second = batch_of(4, Compression::Zstd)?;
    let third = batch_of(2, Compression::Gzip)?;
    let buf = concat(&[&first, &second, &third]);
    let batches = split_batches(buf.clone())?;
    assert_eq!(batches.len(), 3);
    assert_eq!(batches[0].bytes, first);
    assert_eq!(batches[1].bytes, second);
    assert_eq!(batches[2].bytes, third);
    assert_eq!(batches[1].position, first.len());
    assert_eq!(batches[2].position, first.len() + second.len());
    assert_eq!(batches[1].header.records_count, 4);
    // Zero-copy: the slice points into the original buffer.
    assert_eq!(batches[1].bytes.as_ptr(), buf[first.len()..].as_ptr());
    assert!(split_batches(Bytes::new())?.is_empty());
    Ok(())
}

#[test]
fn split_reports_a_truncated_tail() -> Result<(), BatchError> {
    let first = batch_of(1, Compression::None)?;
    let second = batch_of(2, Compression::None)?;
    let buf = concat(&[&first, &second]);
    let cut = buf.slice(..buf.len() - 3);
    assert_eq!(
        split_batches(cut),
        Err(BatchError::Truncated {
            offset: first.len(),
            needed: second.len(),
            available: second.len() - 3
        })
    );
    let cut_in_header = buf.slice(..first.len() + 5);
    assert_eq!(
        split_batches(cut_in_header),
        Err(BatchError::Truncated {
            offset: first.len(),
            needed: HEADER_LEN,
            available: 5
        })
    );
    Ok(())
}

#[test]
fn split_names_the_position_of_a_corrupt_batch() -> Result<(), BatchError> {
    let first = batch_of(1, Compression::None)?;
    let mut second = batch_of(2, Compression::None)?.to_vec();
    let last = second.len() - 1;
    second[last] ^= 0xff;
    let buf = concat(&[&first, &Bytes::from(second)]);
    let err = split_batches(buf).err();
    match err {
        Some(BatchError::InvalidBatchAt { position, source }) => {
            assert_eq!(position, first.len());
            assert!(matches!(*source, BatchError::BadCrc { .. }));
        }
        other => panic!("expected InvalidBatchAt, got {other:?}"),
    }
    Ok(())
}

#[test]
fn iter_stops_quietly_at_an_incomplete_tail() -> Result<(), BatchError> {
    let first = batch_of(1, Compression::None)?;
    let second = batch_of(2, Compression::Lz4)?;
    let buf = concat(&[&first, &second]);
    for cut in [0, 10, HEADER_LEN + 1, second.len() - 1] {
        let mut iter = BatchIter::new(buf.slice(..first.len() + cut));
        let found: Vec<BatchSlice> = iter.by_ref().collect::<Result<_, _>>()?;
        assert_eq!(found.len(), 1, "cut {cut}");
        assert_eq!(found[0].bytes, first);
        assert_eq!(iter.position(), first.len());
        assert_eq!(iter.remaining(), cut);
    }
    let all: Vec<BatchSlice> = BatchIter::new(buf).collect::<Result<_, _>>()?;
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].position, first.len());
    assert_eq!(all[1].header.records_count, 2);
    Ok(())
}

#[test]
fn iter_reports_garbage_once() -> Result<(), BatchError> {
    let first = batch_of(1, Compression::None)?;
    let garbage = Bytes::from(vec![0xffu8; 100]);
    let mut iter = BatchIter::new(concat(&[&first, &garbage]));
    assert!(matches!(iter.next(), Some(Ok(_))));
    assert!(matches!(
        iter.next(),
        Some(Err(BatchError::InvalidBatchAt { .. }))
    ));
    assert!(iter.next().is_none());
    Ok(())
}

#[test]
fn header_edits_keep_the_crc_valid() -> Result<(), BatchError> {
    let mut batch = batch_of(3, Compression::Snappy)?.to_vec();
    set_base_offset(&mut batch, 123_456_789)?;
    set_partition_leader_epoch(&mut batch, 17)?;
    let header = validate_batch(&batch)?;
    assert_eq!(header.base_offset, 123_456_789);
    assert_eq!(header.last_offset(), 123_456_791);
    assert_eq!(header.partition_leader_epoch, 17);
    let mut short = [0u8; 10];
    assert_eq!(
        set_partition_leader_epoch(&mut short, 1),
        Err(BatchError::Incomplete {
            needed: 16,
            available: 10
        })
    );
    Ok(())
}

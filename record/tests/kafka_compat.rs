//! Known-answer tests against bytes a real Kafka broker wrote, so the layout and CRC
//! are checked against Kafka itself rather than against this crate's own encoder.

use bytes::Bytes;
use sluice_record::{
    BatchBuilder, Compression, decode_records, set_partition_leader_epoch, split_batches,
    validate_batch,
};

/// One uncompressed batch from a Kafka 3.x log segment: base offset 0, leader
/// epoch 0, producer id/epoch/sequence 0, one record with a null key, value
/// "Hello Kafka!" and no headers.
fn kafka_written_batch() -> Vec<u8> {
    let mut batch = Vec::new();
    batch.extend_from_slice(&0i64.to_be_bytes()); // baseOffset
    batch.extend_from_slice(&0x44i32.to_be_bytes()); // batchLength = 68
    batch.extend_from_slice(&0i32.to_be_bytes()); // partitionLeaderEpoch
    batch.push(2); // magic
    batch.extend_from_slice(&0xabfd_0491u32.to_be_bytes()); // crc, as Kafka computed it
    batch.extend_from_slice(&0i16.to_be_bytes()); // attributes
    batch.extend_from_slice(&0i32.to_be_bytes()); // lastOffsetDelta
    batch.extend_from_slice(&1_726_045_973_899i64.to_be_bytes()); // baseTimestamp
    batch.extend_from_slice(&1_726_045_973_899i64.to_be_bytes()); // maxTimestamp
    batch.extend_from_slice(&0i64.to_be_bytes()); // producerId
    batch.extend_from_slice(&0i16.to_be_bytes()); // producerEpoch
    batch.extend_from_slice(&0i32.to_be_bytes()); // baseSequence
    batch.extend_from_slice(&1i32.to_be_bytes()); // recordsCount
    // Record: length 18, attributes, timestamp delta 0, offset delta 0,
    // key length -1, value length 12, value, header count 0.
    batch.extend_from_slice(&[0x24, 0x00, 0x00, 0x00, 0x01, 0x18]);
    batch.extend_from_slice(b"Hello Kafka!");
    batch.push(0x00);
    batch
}

#[test]
fn crc32c_is_castagnoli() {
    // The standard check value of CRC-32C.
    assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
}

#[test]
fn kafka_batch_validates_and_decodes() -> Result<(), sluice_record::BatchError> {
    let batch = kafka_written_batch();
    let header = validate_batch(&batch)?;
    assert_eq!(header.total_len(), 80);
    let records = decode_records(&batch)?;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].offset, 0);
    assert_eq!(records[0].timestamp, 1_726_045_973_899);
    assert_eq!(records[0].key, None);
    assert_eq!(
        records[0].value.as_deref(),
        Some(b"Hello Kafka!".as_slice())
    );
    assert!(records[0].headers.is_empty());
    assert_eq!(split_batches(Bytes::from(batch))?.len(), 1);
    Ok(())
}

#[test]
fn builder_reproduces_the_kafka_batch_byte_for_byte() -> Result<(), sluice_record::BatchError> {
    let mut builder = BatchBuilder::new(Compression::None).producer(0, 0, 0);
    builder.push(1_726_045_973_899, None, Some(b"Hello Kafka!"), &[])?;
    let mut built = builder.build()?.to_vec();
    set_partition_leader_epoch(&mut built, 0)?;
    assert_eq!(built, kafka_written_batch());
    Ok(())
}

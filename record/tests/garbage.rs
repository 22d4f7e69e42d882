//! Property tests: decoding, validating and splitting arbitrary or corrupted bytes
//! returns errors and never panics.

use bytes::Bytes;
use proptest::prelude::*;
use sluice_record::{
    BatchBuilder, BatchHeader, BatchIter, Compression, HEADER_LEN, decode_records, split_batches,
    validate_batch,
};

/// Run every entry point over `bytes`; any panic fails the test.
fn exercise(bytes: &[u8]) {
    let _ = BatchHeader::parse(bytes);
    let _ = validate_batch(bytes);
    let _ = decode_records(bytes);
    let _ = split_batches(Bytes::copy_from_slice(bytes));
    for item in BatchIter::new(Bytes::copy_from_slice(bytes)) {
        let _ = item;
    }
}

/// Rewrite the CRC so corruption reaches the record decoder instead of stopping at the CRC.
fn fix_crc(batch: &mut [u8]) {
    if batch.len() > 21 {
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
    }
}

fn valid_batch(codec: Compression) -> Vec<u8> {
    let mut builder = BatchBuilder::new(codec);
    for i in 0..5u8 {
        let key = [i; 3];
        let value = vec![i; 20 * usize::from(i)];
        builder
            .push(
                i64::from(i),
                Some(key.as_slice()),
                Some(value.as_slice()),
                &[("header", Some(key.as_slice()))],
            )
            .expect("push");
    }
    builder.build().expect("build").to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        exercise(&bytes);
    }

    #[test]
    fn random_bytes_behind_a_valid_header_never_panic(
        codec_id in 0u8..8,
        count in any::<i32>(),
        payload in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut batch = valid_batch(Compression::None);
        batch.truncate(HEADER_LEN);
        batch.extend_from_slice(&payload);
        let len = (batch.len() - 12) as i32;
        batch[8..12].copy_from_slice(&len.to_be_bytes());
        batch[22] = codec_id;
        batch[23..27].copy_from_slice(&count.wrapping_sub(1).to_be_bytes());
        batch[57..61].copy_from_slice(&count.to_be_bytes());
        fix_crc(&mut batch);
        exercise(&batch);
    }

    #[test]
    fn flipped_bytes_of_a_valid_batch_never_panic(
        codec in proptest::sample::select(Compression::ALL.to_vec()),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        recompute_crc in any::<bool>(),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let mut batch = valid_batch(codec);
        for (index, value) in flips {
            let position = index.index(batch.len());
            batch[position] ^= value;
        }
        if recompute_crc {
            fix_crc(&mut batch);
        }
        if let Some(cut) = cut {
            batch.truncate(cut.index(batch.len()));
        }
        exercise(&batch);
    }
}

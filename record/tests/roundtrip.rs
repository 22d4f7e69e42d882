//! Property tests: any records built into a batch with any codec decode back unchanged.

use bytes::Bytes;
use proptest::prelude::*;
use sluice_record::{
    BatchBuilder, Compression, Record, decode_records, decode_records_shared, set_base_offset,
    split_batches, validate_batch,
};

fn nullable_bytes(max: usize) -> impl Strategy<Value = Option<Bytes>> {
    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from))
}

fn record() -> impl Strategy<Value = Record> {
    (
        any::<i64>(),
        nullable_bytes(40),
        nullable_bytes(300),
        proptest::collection::vec((".{0,12}", nullable_bytes(20)), 0..4),
    )
        .prop_map(|(timestamp, key, value, headers)| Record {
            offset: 0,
            timestamp,
            key,
            value,
            headers,
        })
}

fn codec() -> impl Strategy<Value = Compression> {
    proptest::sample::select(Compression::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn build_then_decode_round_trips(
        records in proptest::collection::vec(record(), 1..20),
        codec in codec(),
        base_offset in 0i64..(1 << 50),
    ) {
        // Timestamps far apart overflow the delta; keep them near the first.
        let first = records[0].timestamp;
        let records: Vec<Record> = records
            .into_iter()
            .enumerate()
            .map(|(i, mut r)| {
                r.timestamp = first.saturating_add(r.timestamp % 1_000_000);
                r.offset = base_offset + i as i64;
                r
            })
            .collect();

        let mut builder = BatchBuilder::new(codec).producer(7, 1, 0);
        for record in &records {
            builder.push_record(record).expect("push");
        }
        prop_assert_eq!(builder.len(), records.len());
        let mut batch = builder.build().expect("build").to_vec();
        set_base_offset(&mut batch, base_offset).expect("set base offset");

        let header = validate_batch(&batch).expect("valid batch");
        prop_assert_eq!(header.compression().expect("codec"), codec);
        prop_assert_eq!(header.last_offset(), base_offset + records.len() as i64 - 1);
        prop_assert_eq!(header.base_timestamp, records[0].timestamp);
        let max = records.iter().map(|r| r.timestamp).max();
        prop_assert_eq!(Some(header.max_timestamp), max);

        let decoded = decode_records(&batch).expect("decode");
        prop_assert_eq!(&decoded, &records);
        let shared = decode_records_shared(&Bytes::from(batch)).expect("decode shared");
        prop_assert_eq!(&shared, &records);
    }

    #[test]
    fn split_finds_every_built_batch(
        sizes in proptest::collection::vec(1usize..5, 0..6),
        codec in codec(),
    ) {
        let mut buf = Vec::new();
        let mut expected = Vec::new();
        for (n, size) in sizes.iter().enumerate() {
            let mut builder = BatchBuilder::new(codec);
            for i in 0..*size {
                builder
                    .push(i as i64, Some(format!("{n}").as_bytes()), None, &[])
                    .expect("push");
            }
            let batch = builder.build().expect("build");
            expected.push((buf.len(), batch.clone()));
            buf.extend_from_slice(&batch);
        }
        let found = split_batches(Bytes::from(buf)).expect("split");
        prop_assert_eq!(found.len(), expected.len());
        for (slice, (position, bytes)) in found.iter().zip(&expected) {
            prop_assert_eq!(slice.position, *position);
            prop_assert_eq!(&slice.bytes, bytes);
        }
    }
}

//! Produce and fetch over gRPC: every compression, keys, null values and
//! headers come back byte for byte, offsets are contiguous, batches are
//! stored without re-encoding, and keys choose partitions as Kafka does.

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use bytes::Bytes;
use sluice_proto::v1;
use sluice_record::{BatchBuilder, Compression, Record};
use sluice_tests::{Standalone, assert_contiguous, read_batches, read_records};

/// A topic config that keeps data forever (the tests use old timestamps).
fn keep_forever() -> Option<v1::TopicConfig> {
    Some(v1::TopicConfig {
        retention_ms: Some(-1),
        ..Default::default()
    })
}

/// Records of every shape: keyed and keyless, null and empty values, binary
/// bytes, headers with null values, a large compressible value, timestamps
/// that go backwards inside the batch.
fn sample_records(partition: u32, batch: usize, codec: Compression) -> Vec<Record> {
    let base_ts = 1_700_000_000_000 + (batch as i64) * 1_000;
    let tag = format!("p{partition}-b{batch}-{codec}");
    let bytes = |s: &str| Some(Bytes::from(s.as_bytes().to_vec()));
    vec![
        Record {
            offset: 0,
            timestamp: base_ts,
            key: bytes(&format!("key-{tag}")),
            value: bytes(&format!("value-{tag}")),
            headers: vec![],
        },
        Record {
            offset: 0,
            timestamp: base_ts + 7,
            key: None,
            value: None,
            headers: vec![("null-header".into(), None)],
        },
        Record {
            offset: 0,
            timestamp: base_ts - 3,
            key: Some(Bytes::new()),
            value: Some(Bytes::new()),
            headers: vec![
                ("lane".into(), bytes("blue")),
                ("empty".into(), Some(Bytes::new())),
                ("lane".into(), bytes("repeated header key")),
            ],
        },
        Record {
            offset: 0,
            timestamp: base_ts + 1,
            key: Some(Bytes::from_static(&[0, 255, 1, 254])),
            value: Some(Bytes::from(
                (0..=255u8).cycle().take(3000).collect::<Vec<_>>(),
            )),
            headers: vec![("bin".into(), Some(Bytes::from_static(&[0, 0, 0])))],
        },
        Record {
            offset: 0,
            timestamp: base_ts + 2,
            key: bytes("k"),
            value: Some(Bytes::from(format!("{tag} ").repeat(500))),
            headers: vec![],
        },
    ]
}

fn build(codec: Compression, records: &[Record]) -> Bytes {
    let mut builder = BatchBuilder::new(codec);
    for record in records {
        builder.push_record(record).expect("push record");
    }
    builder.build().expect("build batch")
}

/// A produced batch: its bytes as sent, the offset it should get and its records.
struct Sent {
    bytes: Bytes,
    base_offset: i64,
    records: Vec<Record>,
}

#[tokio::test]
async fn every_compression_round_trips_byte_for_byte() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    let topic = "round-trip";
    let partitions = 3;
    server
        .create_topic(topic, partitions, keep_forever())
        .await?;
    let mut client = server.data().await?;
    let mut sent: BTreeMap<u32, Vec<Sent>> = BTreeMap::new();
    for partition in 0..partitions {
        let mut next_offset = 0i64;
        let mut batch_number = 0;
        for codec in Compression::ALL {
            // One batch per request, then two batches in one request.
            for batches_in_request in [1, 2] {
                let mut request = Vec::new();
                let mut in_request = Vec::new();
                let mut offset = next_offset;
                for _ in 0..batches_in_request {
                    let records = sample_records(partition, batch_number, codec);
                    batch_number += 1;
                    let bytes = build(codec, &records);
                    request.extend_from_slice(&bytes);
                    let count = records.len() as i64;
                    in_request.push(Sent {
                        bytes,
                        base_offset: offset,
                        records,
                    });
                    offset += count;
                }
                let response =
                    sluice_tests::produce(&mut client, topic, partition, Bytes::from(request))
                        .await?;
                assert_eq!(response.partition, partition);
                assert_eq!(
                    (response.base_offset, response.last_offset),
                    (next_offset, offset - 1),
                    "offsets given to a {codec} request of {batches_in_request} batches on partition {partition}"
                );
                next_offset = offset;
                sent.entry(partition).or_default().extend(in_request);
            }
        }
    }

    for (partition, sent) in &sent {
        let fetched = read_batches(&mut client, topic, *partition, 0).await?;
        assert_eq!(
            fetched.len(),
            sent.len(),
            "batch count of partition {partition}"
        );
        for (index, (got, want)) in fetched.iter().zip(sent).enumerate() {
            let what = format!("partition {partition} batch {index}");
            assert_eq!(got.len(), want.bytes.len(), "{what}: length");
            assert_eq!(
                got[0..8],
                want.base_offset.to_be_bytes(),
                "{what}: base offset"
            );
            // Bytes 8..12 (length) and 16.. (magic, CRC, attributes, records)
            // are the producer's own; only 0..8 and 12..16 may change.
            assert_eq!(got[8..12], want.bytes[8..12], "{what}: batch length");
            assert!(
                got[16..] == want.bytes[16..],
                "{what}: the stored batch differs from the produced one past the header fields the broker owns (re-encoded?)"
            );
            let decoded = sluice_record::decode_records(got)?;
            let expected: Vec<Record> = want
                .records
                .iter()
                .enumerate()
                .map(|(i, r)| Record {
                    offset: want.base_offset + i as i64,
                    ..r.clone()
                })
                .collect();
            assert_eq!(decoded, expected, "{what}: records");
        }
        let records = read_records(&mut client, topic, *partition, 0).await?;
        let expected_count: usize = sent.iter().map(|s| s.records.len()).sum();
        assert_eq!(records.len(), expected_count);
        assert_contiguous(
            &format!("partition {partition}"),
            0,
            records.iter().map(|r| r.offset),
        );
    }
    Ok(())
}

#[tokio::test]
async fn fetch_from_the_middle_of_a_batch_returns_that_whole_batch() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    let topic = "middle";
    server.create_topic(topic, 1, keep_forever()).await?;
    let mut client = server.data().await?;
    let first = build(Compression::Zstd, &sample_records(0, 0, Compression::Zstd));
    let second = build(Compression::None, &sample_records(0, 1, Compression::None));
    sluice_tests::produce(&mut client, topic, 0, first.clone()).await?;
    sluice_tests::produce(&mut client, topic, 0, second.clone()).await?;
    // Offset 2 lies inside the first batch (offsets 0..5): it comes whole.
    let response = client
        .fetch(sluice_tests::fetch_request(topic, 0, 2))
        .await?
        .into_inner();
    assert_eq!(response.high_watermark, 10);
    assert_eq!(response.log_start_offset, 0);
    let batches: Vec<_> =
        sluice_record::BatchIter::new(response.records).collect::<Result<_, _>>()?;
    assert_eq!(batches.len(), 2, "both batches fit in max_bytes");
    assert_eq!(batches[0].header.base_offset, 0);
    assert_eq!(batches[0].bytes[16..], first[16..]);
    assert_eq!(batches[1].header.base_offset, 5);
    // Records from offset 2 on, as a consumer would skip them.
    let records = read_records(&mut client, topic, 0, 2).await?;
    assert_contiguous("from offset 2", 2, records.iter().map(|r| r.offset));
    assert_eq!(records.len(), 8);
    Ok(())
}

#[tokio::test]
async fn max_bytes_limits_a_fetch_but_one_batch_always_comes() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    let topic = "limits";
    server.create_topic(topic, 1, keep_forever()).await?;
    let mut client = server.data().await?;
    let mut sizes = Vec::new();
    for batch in 0..4 {
        let bytes = build(
            Compression::None,
            &sample_records(0, batch, Compression::None),
        );
        sizes.push(bytes.len());
        sluice_tests::produce(&mut client, topic, 0, bytes).await?;
    }
    let mut request = sluice_tests::fetch_request(topic, 0, 0);
    request.max_bytes = 1;
    let response = client.fetch(request.clone()).await?.into_inner();
    assert_eq!(
        response.records.len(),
        sizes[0],
        "max_bytes 1 returns exactly the first whole batch"
    );
    request.max_bytes = (sizes[0] + sizes[1] + 10) as u32;
    let response = client.fetch(request).await?.into_inner();
    assert_eq!(
        response.records.len(),
        sizes[0] + sizes[1],
        "max_bytes of two batches and a bit returns two whole batches"
    );
    Ok(())
}

#[tokio::test]
async fn a_key_chooses_the_partition_as_kafka_does() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    let topic = "keyed";
    let partitions = 5;
    server
        .create_topic(topic, partitions, keep_forever())
        .await?;
    let mut client = server.data().await?;
    let count = NonZeroU32::new(partitions).expect("non-zero");
    // key → the partition it must land on.
    let mut expected: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for n in 0..60 {
        let key = format!("customer-{n}");
        let mut builder = BatchBuilder::new(Compression::None);
        builder.push(1_700_000_000_000, Some(key.as_bytes()), Some(b"v"), &[])?;
        let request = v1::ProduceRequest {
            topic: topic.into(),
            target: Some(v1::produce_request::Target::Key(Bytes::from(
                key.clone().into_bytes(),
            ))),
            records: builder.build()?,
            acks: v1::AckMode::Durable as i32,
        };
        let response = client.produce(request).await?.into_inner();
        let want = sluice_record::partition_for_key(key.as_bytes(), count);
        assert_eq!(response.partition, want, "partition of key {key:?}");
        expected.entry(want).or_default().push(key);
    }
    assert!(
        expected.len() > 1,
        "60 keys should hash to more than one of 5 partitions"
    );
    for partition in 0..partitions {
        let keys: Vec<String> = read_records(&mut client, topic, partition, 0)
            .await?
            .into_iter()
            .map(|r| String::from_utf8_lossy(&r.key.unwrap_or_default()).into_owned())
            .collect();
        assert_eq!(
            keys,
            expected.remove(&partition).unwrap_or_default(),
            "keys stored in partition {partition}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn keyless_produce_spreads_over_partitions() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    let topic = "keyless";
    let partitions = 4;
    server
        .create_topic(topic, partitions, keep_forever())
        .await?;
    let mut client = server.data().await?;
    let mut placed: BTreeMap<u32, Vec<(i64, String)>> = BTreeMap::new();
    for n in 0..24 {
        let value = format!("message-{n}");
        let mut builder = BatchBuilder::new(Compression::None);
        builder.push(1_700_000_000_000, None, Some(value.as_bytes()), &[])?;
        let request = v1::ProduceRequest {
            topic: topic.into(),
            target: None,
            records: builder.build()?,
            acks: v1::AckMode::Durable as i32,
        };
        let response = client.produce(request).await?.into_inner();
        assert!(response.partition < partitions);
        assert_eq!(response.base_offset, response.last_offset);
        placed
            .entry(response.partition)
            .or_default()
            .push((response.base_offset, value));
    }
    assert_eq!(
        placed.len(),
        partitions as usize,
        "24 keyless requests should reach all 4 partitions; got {placed:?}"
    );
    for partition in 0..partitions {
        let stored: Vec<(i64, String)> = sluice_tests::read_all(&mut client, topic, partition, 0)
            .await?
            .into_iter()
            .map(|(offset, value)| (offset, String::from_utf8_lossy(&value).into_owned()))
            .collect();
        assert_eq!(
            stored,
            placed.remove(&partition).unwrap_or_default(),
            "partition {partition} holds exactly what the responses said, at those offsets"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_large_batch_round_trips_and_comes_whole_even_past_max_bytes() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    let topic = "large";
    server.create_topic(topic, 1, keep_forever()).await?;
    let mut client = server.data().await?;
    // 4 MiB of incompressible bytes (xorshift), under the 8 MiB default limit.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let value: Vec<u8> = (0..4 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    for codec in [Compression::None, Compression::Zstd] {
        let mut builder = BatchBuilder::new(codec);
        builder.push(1_700_000_000_000, Some(b"big"), Some(&value), &[])?;
        let batch = builder.build()?;
        let response = sluice_tests::produce(&mut client, topic, 0, batch.clone()).await?;
        let mut request = sluice_tests::fetch_request(topic, 0, response.base_offset);
        request.max_bytes = 1024;
        let fetched = client.fetch(request).await?.into_inner().records;
        assert_eq!(
            fetched.len(),
            batch.len(),
            "{codec}: one whole batch despite max_bytes 1024"
        );
        assert!(fetched[16..] == batch[16..], "{codec}: same bytes");
        let records = sluice_record::decode_records(&fetched)?;
        assert_eq!(records.len(), 1);
        assert!(
            records[0].value.as_deref() == Some(&value[..]),
            "{codec}: same value"
        );
    }
    Ok(())
}

//! Bad input: corrupt and malformed batches are refused with a stable code
//! and store nothing of their request; unknown topics and partitions, offsets
//! out of range and bad admin requests get the documented errors; good data
//! around the refusals stays whole and contiguous.

use bytes::Bytes;
use sluice_proto::v1;
use sluice_record::{BatchBuilder, Compression};
use sluice_tests::{Standalone, expect_error, fetch_request, latest, produce, read_all};
use tonic::Code;

// Positions of header fields (Kafka RecordBatch v2).
const BATCH_LENGTH_AT: usize = 8;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const CRC_FROM: usize = 21;
const ATTRIBUTES_LOW_BYTE_AT: usize = 22;
const LAST_OFFSET_DELTA_AT: usize = 23;
const RECORDS_COUNT_AT: usize = 57;

fn batch(codec: Compression, values: &[&str]) -> Bytes {
    let mut builder = BatchBuilder::new(codec);
    for value in values {
        builder
            .push(1_700_000_000_000, Some(b"key"), Some(value.as_bytes()), &[])
            .expect("push");
    }
    builder.build().expect("build")
}

/// Rewrites the CRC after an edit, so only the edit itself is wrong.
fn with_fixed_crc(mut bytes: Vec<u8>) -> Bytes {
    let crc = crc32c::crc32c(&bytes[CRC_FROM..]);
    bytes[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(bytes)
}

fn concat(parts: &[&Bytes]) -> Bytes {
    Bytes::from(
        parts
            .iter()
            .flat_map(|p| p.iter().copied())
            .collect::<Vec<u8>>(),
    )
}

async fn values(
    client: &mut v1::sluice_client::SluiceClient<tonic::transport::Channel>,
    topic: &str,
) -> anyhow::Result<Vec<(i64, String)>> {
    Ok(read_all(client, topic, 0, 0)
        .await?
        .into_iter()
        .map(|(offset, value)| (offset, String::from_utf8_lossy(&value).into_owned()))
        .collect())
}

#[tokio::test]
async fn a_flipped_byte_is_refused_and_nothing_of_its_request_is_stored() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    let topic = "crc";
    server.create_topic(topic, 1, None).await?;
    let mut client = server.data().await?;
    produce(&mut client, topic, 0, batch(Compression::None, &["before"])).await?;

    let good = batch(Compression::Gzip, &["good-1", "good-2"]);
    for codec in Compression::ALL {
        let mut corrupt = batch(codec, &["corrupt-1", "corrupt-2"]).to_vec();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0x01;
        let corrupt = Bytes::from(corrupt);
        expect_error(
            &format!("{codec} batch with a flipped byte"),
            produce(&mut client, topic, 0, corrupt.clone()).await,
            Code::InvalidArgument,
            "CORRUPT_BATCH_CRC",
        );
        expect_error(
            &format!("good batch, then a corrupt {codec} batch"),
            produce(&mut client, topic, 0, concat(&[&good, &corrupt])).await,
            Code::InvalidArgument,
            "CORRUPT_BATCH_CRC",
        );
        expect_error(
            &format!("corrupt {codec} batch, then a good batch"),
            produce(&mut client, topic, 0, concat(&[&corrupt, &good])).await,
            Code::InvalidArgument,
            "CORRUPT_BATCH_CRC",
        );
        assert_eq!(
            latest(&mut client, topic, 0).await?,
            1,
            "the high watermark moved after refused {codec} requests"
        );
    }
    let response = produce(&mut client, topic, 0, batch(Compression::None, &["after"])).await?;
    assert_eq!(response.base_offset, 1, "offsets continue after refusals");
    assert_eq!(
        values(&mut client, topic).await?,
        vec![(0, "before".to_owned()), (1, "after".to_owned())]
    );
    Ok(())
}

#[tokio::test]
async fn malformed_batches_are_refused_as_invalid() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    let topic = "malformed";
    server.create_topic(topic, 1, None).await?;
    let mut client = server.data().await?;
    produce(&mut client, topic, 0, batch(Compression::None, &["before"])).await?;

    let good = batch(Compression::None, &["one", "two", "three"]);
    let length = good.len();
    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = good.to_vec();
        f(&mut bytes);
        bytes
    };
    let cases: Vec<(&str, Bytes)> = vec![
        ("an empty request", Bytes::new()),
        ("a batch cut short", good.slice(..length - 5)),
        ("only part of a header", good.slice(..30)),
        ("eleven bytes", good.slice(..11)),
        (
            "a length field larger than the batch",
            with_fixed_crc(edit(&|b| {
                let declared = (length - 12 + 100) as i32;
                b[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&declared.to_be_bytes());
            })),
        ),
        (
            "a length field too small for a header",
            with_fixed_crc(edit(&|b| {
                b[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&10i32.to_be_bytes());
            })),
        ),
        (
            "a negative length field",
            with_fixed_crc(edit(&|b| {
                b[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&(-1i32).to_be_bytes());
            })),
        ),
        (
            "magic 1 (an old message set)",
            with_fixed_crc(edit(&|b| b[MAGIC_AT] = 1)),
        ),
        (
            "zero records",
            with_fixed_crc(edit(&|b| {
                b[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&0i32.to_be_bytes());
                b[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
                    .copy_from_slice(&(-1i32).to_be_bytes());
            })),
        ),
        (
            "a last offset delta that disagrees with the record count",
            with_fixed_crc(edit(&|b| {
                b[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
                    .copy_from_slice(&7i32.to_be_bytes());
            })),
        ),
        (
            "a good batch, then a cut one",
            concat(&[&good, &good.slice(..length - 1)]),
        ),
        (
            "a good batch, then garbage",
            concat(&[&good, &Bytes::from_static(&[0xAB; 80])]),
        ),
    ];
    for (what, records) in cases {
        expect_error(
            what,
            produce(&mut client, topic, 0, records).await,
            Code::InvalidArgument,
            "INVALID_BATCH",
        );
        assert_eq!(
            latest(&mut client, topic, 0).await?,
            1,
            "the high watermark moved after refusing {what}"
        );
    }
    let response = produce(&mut client, topic, 0, batch(Compression::None, &["after"])).await?;
    assert_eq!(response.base_offset, 1);
    assert_eq!(
        values(&mut client, topic).await?,
        vec![(0, "before".to_owned()), (1, "after".to_owned())]
    );
    Ok(())
}

#[tokio::test]
async fn a_batch_with_an_unknown_compression_codec_is_refused() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    let topic = "codec";
    server.create_topic(topic, 1, None).await?;
    let mut client = server.data().await?;
    for codec_id in [5u8, 6, 7] {
        let mut bytes = batch(Compression::None, &["x"]).to_vec();
        bytes[ATTRIBUTES_LOW_BYTE_AT] = (bytes[ATTRIBUTES_LOW_BYTE_AT] & !0x07) | codec_id;
        expect_error(
            &format!("a batch with compression codec id {codec_id} and a valid CRC"),
            produce(&mut client, topic, 0, with_fixed_crc(bytes)).await,
            Code::InvalidArgument,
            "INVALID_BATCH",
        );
    }
    assert_eq!(latest(&mut client, topic, 0).await?, 0, "nothing stored");
    Ok(())
}

/// A batch whose CRC is right but whose records cannot be read would stop
/// every consumer of the partition at its offset: refuse it at produce, as
/// Kafka does (CORRUPT_MESSAGE).
#[tokio::test]
async fn a_batch_whose_records_do_not_decode_is_refused() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    let topic = "undecodable";
    server.create_topic(topic, 1, None).await?;
    let mut client = server.data().await?;
    let good = batch(Compression::None, &["x"]);
    let cases = [
        (
            "uncompressed records marked as gzip",
            with_fixed_crc({
                let mut b = good.to_vec();
                b[ATTRIBUTES_LOW_BYTE_AT] = (b[ATTRIBUTES_LOW_BYTE_AT] & !0x07) | 1;
                b
            }),
        ),
        (
            "a header announcing 3 records over 1",
            with_fixed_crc({
                let mut b = good.to_vec();
                b[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&3i32.to_be_bytes());
                b[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
                    .copy_from_slice(&2i32.to_be_bytes());
                b
            }),
        ),
    ];
    for (what, records) in cases {
        expect_error(
            what,
            produce(&mut client, topic, 0, records).await,
            Code::InvalidArgument,
            "INVALID_BATCH",
        );
    }
    assert_eq!(latest(&mut client, topic, 0).await?, 0, "nothing stored");
    Ok(())
}

#[tokio::test]
async fn a_batch_over_the_size_limit_is_refused() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&["--max-batch-bytes", "2048"])?;
    let topic = "limited";
    let roomy = "roomy";
    server.create_topic(topic, 1, None).await?;
    let config = v1::TopicConfig {
        max_batch_bytes: Some(8192),
        ..Default::default()
    };
    server.create_topic(roomy, 1, Some(config)).await?;
    let mut client = server.data().await?;
    let small_value = "s".repeat(1500);
    let large_value = "L".repeat(3000);
    let small = batch(Compression::None, &[&small_value]);
    let large = batch(Compression::None, &[&large_value]);
    assert!(small.len() <= 2048 && large.len() > 2048);
    produce(&mut client, topic, 0, small.clone()).await?;
    let status = expect_error(
        "a 3 KB batch over a 2 KiB limit",
        produce(&mut client, topic, 0, large.clone()).await,
        Code::InvalidArgument,
        "BATCH_TOO_LARGE",
    );
    assert!(
        status.message().contains("2048"),
        "the message names the limit: {}",
        status.message()
    );
    expect_error(
        "a small batch then one over the limit, in one request",
        produce(&mut client, topic, 0, concat(&[&small, &large])).await,
        Code::InvalidArgument,
        "BATCH_TOO_LARGE",
    );
    // The limit is per batch: two small batches in one request are fine.
    produce(&mut client, topic, 0, concat(&[&small, &small])).await?;
    assert_eq!(
        values(&mut client, topic).await?,
        vec![
            (0, small_value.clone()),
            (1, small_value.clone()),
            (2, small_value.clone())
        ]
    );
    // A topic's own limit wins over the server default.
    produce(&mut client, roomy, 0, large).await?;
    assert_eq!(values(&mut client, roomy).await?, vec![(0, large_value)]);
    Ok(())
}

#[tokio::test]
async fn an_unknown_topic_is_not_found_everywhere() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    server.create_topic("exists", 1, None).await?;
    let mut client = server.data().await?;
    let mut admin = server.admin().await?;
    let records = batch(Compression::None, &["x"]);
    let missing = "missing";
    for target in [
        Some(v1::produce_request::Target::Partition(0)),
        Some(v1::produce_request::Target::Key(Bytes::from_static(b"k"))),
        None,
    ] {
        let request = v1::ProduceRequest {
            topic: missing.into(),
            target: target.clone(),
            records: records.clone(),
            acks: v1::AckMode::Durable as i32,
        };
        expect_error(
            &format!("produce to an unknown topic with target {target:?}"),
            client.produce(request).await,
            Code::NotFound,
            "UNKNOWN_TOPIC",
        );
    }
    expect_error(
        "fetch from an unknown topic",
        client.fetch(fetch_request(missing, 0, 0)).await,
        Code::NotFound,
        "UNKNOWN_TOPIC",
    );
    let mut long_poll = fetch_request(missing, 0, 0);
    long_poll.max_wait_ms = 5_000;
    let started = std::time::Instant::now();
    expect_error(
        "long-poll fetch from an unknown topic",
        client.fetch(long_poll).await,
        Code::NotFound,
        "UNKNOWN_TOPIC",
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "an unknown topic is an error at once, not a wait"
    );
    for spec in [
        v1::list_offsets_request::Spec::Earliest(v1::Empty {}),
        v1::list_offsets_request::Spec::Latest(v1::Empty {}),
        v1::list_offsets_request::Spec::Timestamp(0),
    ] {
        expect_error(
            &format!("list offsets {spec:?} of an unknown topic"),
            sluice_tests::list_offset(&mut client, missing, 0, spec).await,
            Code::NotFound,
            "UNKNOWN_TOPIC",
        );
    }
    expect_error(
        "describe an unknown topic",
        admin
            .describe_topic(v1::DescribeTopicRequest {
                name: missing.into(),
            })
            .await,
        Code::NotFound,
        "UNKNOWN_TOPIC",
    );
    expect_error(
        "delete an unknown topic",
        admin
            .delete_topic(v1::DeleteTopicRequest {
                name: missing.into(),
            })
            .await,
        Code::NotFound,
        "UNKNOWN_TOPIC",
    );
    Ok(())
}

#[tokio::test]
async fn a_partition_out_of_range_is_refused() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    let topic = "two";
    server.create_topic(topic, 2, None).await?;
    let mut client = server.data().await?;
    for partition in [2, 3, u32::MAX] {
        let status = expect_error(
            &format!("produce to partition {partition}"),
            produce(
                &mut client,
                topic,
                partition,
                batch(Compression::None, &["x"]),
            )
            .await,
            Code::InvalidArgument,
            "PARTITION_OUT_OF_RANGE",
        );
        assert!(
            status.message().contains("2 partitions"),
            "the message says how many partitions there are: {}",
            status.message()
        );
        expect_error(
            &format!("fetch from partition {partition}"),
            client.fetch(fetch_request(topic, partition, 0)).await,
            Code::InvalidArgument,
            "PARTITION_OUT_OF_RANGE",
        );
        expect_error(
            &format!("list offsets of partition {partition}"),
            sluice_tests::list_offset(
                &mut client,
                topic,
                partition,
                v1::list_offsets_request::Spec::Latest(v1::Empty {}),
            )
            .await,
            Code::InvalidArgument,
            "PARTITION_OUT_OF_RANGE",
        );
    }
    for partition in 0..2 {
        assert_eq!(latest(&mut client, topic, partition).await?, 0);
    }
    Ok(())
}

#[tokio::test]
async fn fetch_outside_the_log_is_out_of_range() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    let topic = "range";
    server.create_topic(topic, 1, None).await?;
    let mut client = server.data().await?;
    produce(
        &mut client,
        topic,
        0,
        batch(Compression::None, &["a", "b", "c"]),
    )
    .await?;
    let at_end = client.fetch(fetch_request(topic, 0, 3)).await?.into_inner();
    assert!(
        at_end.records.is_empty(),
        "a fetch at the high watermark is empty"
    );
    assert_eq!(at_end.high_watermark, 3);
    for offset in [4, 1000, i64::MAX] {
        let status = expect_error(
            &format!("fetch at offset {offset}, past the high watermark 3"),
            client.fetch(fetch_request(topic, 0, offset)).await,
            Code::OutOfRange,
            "OFFSET_OUT_OF_RANGE",
        );
        assert!(
            status.message().contains(&offset.to_string()),
            "{}",
            status.message()
        );
    }
    expect_error(
        "fetch at a negative offset",
        client.fetch(fetch_request(topic, 0, -1)).await,
        Code::InvalidArgument,
        "BAD_REQUEST",
    );
    let request = v1::ProduceRequest {
        topic: topic.into(),
        target: Some(v1::produce_request::Target::Partition(0)),
        records: batch(Compression::None, &["x"]),
        acks: 7,
    };
    expect_error(
        "produce with an unknown ack mode",
        client.produce(request).await,
        Code::InvalidArgument,
        "BAD_REQUEST",
    );
    let request = v1::ListOffsetsRequest {
        topic: topic.into(),
        partition: 0,
        spec: None,
    };
    expect_error(
        "list offsets without a spec",
        client.list_offsets(request).await,
        Code::InvalidArgument,
        "BAD_REQUEST",
    );
    assert_eq!(latest(&mut client, topic, 0).await?, 3);
    Ok(())
}

#[tokio::test]
async fn bad_admin_requests_are_refused() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    let mut admin = server.admin().await?;
    let create =
        |name: &str, partitions: u32, config: Option<v1::TopicConfig>| v1::CreateTopicRequest {
            name: name.to_owned(),
            partitions,
            config,
        };
    admin.create_topic(create("orders", 2, None)).await?;
    expect_error(
        "creating a topic twice",
        admin.create_topic(create("orders", 2, None)).await,
        Code::AlreadyExists,
        "TOPIC_EXISTS",
    );
    expect_error(
        "creating a topic twice with another partition count",
        admin.create_topic(create("orders", 5, None)).await,
        Code::AlreadyExists,
        "TOPIC_EXISTS",
    );
    let too_long = "t".repeat(250);
    for name in [
        "",
        ".",
        "..",
        "a/b",
        "../escape",
        "with space",
        "tab\there",
        "ünïcode",
        "semi;colon",
        too_long.as_str(),
    ] {
        expect_error(
            &format!("topic name {name:?}"),
            admin.create_topic(create(name, 1, None)).await,
            Code::InvalidArgument,
            "INVALID_TOPIC_NAME",
        );
    }
    // The longest legal name works.
    admin
        .create_topic(create(&"t".repeat(249), 1, None))
        .await?;
    for partitions in [0, 10_001] {
        expect_error(
            &format!("{partitions} partitions"),
            admin.create_topic(create("fresh", partitions, None)).await,
            Code::InvalidArgument,
            "INVALID_PARTITIONS",
        );
    }
    let bad_configs = [
        v1::TopicConfig {
            segment_bytes: Some(1023),
            ..Default::default()
        },
        v1::TopicConfig {
            max_batch_bytes: Some(100),
            ..Default::default()
        },
        v1::TopicConfig {
            segment_ms: Some(0),
            ..Default::default()
        },
    ];
    for config in bad_configs {
        expect_error(
            &format!("config {config:?}"),
            admin.create_topic(create("fresh", 1, Some(config))).await,
            Code::InvalidArgument,
            "INVALID_CONFIG",
        );
    }
    let names: Vec<String> = admin
        .list_topics(v1::ListTopicsRequest {})
        .await?
        .into_inner()
        .topics
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, vec!["orders".to_owned(), "t".repeat(249)]);
    let described = admin
        .describe_topic(v1::DescribeTopicRequest {
            name: "orders".into(),
        })
        .await?
        .into_inner();
    assert_eq!(
        described.partitions.len(),
        2,
        "the failed re-create changed nothing"
    );
    Ok(())
}

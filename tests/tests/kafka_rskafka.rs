//! The Kafka wire protocol of a standalone server, with rskafka, a
//! pure-Rust Kafka client, so that a plain `cargo test` covers it (the
//! kcat tests in kafka.rs need kcat installed). Topics created through
//! CreateTopics appear in Metadata with their partitions and go away with
//! DeleteTopics; records of every compression codec come back from Fetch
//! exactly as produced — keys, values, headers and timestamps, at
//! contiguous offsets, none lost and none twice; ListOffsets answers the
//! earliest, the latest and the first offset at a timestamp; and an unknown
//! topic or partition, or an offset past the end, is an error, not a hang.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use rskafka::BackoffConfig;
use rskafka::chrono::{DateTime, TimeZone, Utc};
use rskafka::client::controller::ControllerClient;
use rskafka::client::error::{Error, ProtocolError};
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::{Record, RecordAndOffset};
use sluice_tests::{DEADLINE, Standalone};

/// Every codec rskafka can write.
const CODECS: [(&str, Compression); 5] = [
    ("none", Compression::NoCompression),
    ("gzip", Compression::Gzip),
    ("lz4", Compression::Lz4),
    ("snappy", Compression::Snappy),
    ("zstd", Compression::Zstd),
];

/// The timestamp of the first record the tests write (2023-11-14), in ms.
const BASE_TIMESTAMP_MS: i64 = 1_700_000_000_000;

/// A standalone server with a Kafka listener, and that listener's address.
fn kafka_server(extra_args: &[&str]) -> anyhow::Result<(Standalone, SocketAddr)> {
    let mut args = vec!["--kafka-addr", "127.0.0.1:0"];
    args.extend_from_slice(extra_args);
    let server = Standalone::start_temp(&args)?;
    let kafka = server
        .kafka_addr
        .ok_or_else(|| anyhow::anyhow!("the server did not announce its Kafka address"))?;
    Ok((server, kafka))
}

/// `future`, or an error naming `what` if it takes longer than [`DEADLINE`].
async fn within<F: Future>(what: &str, future: F) -> anyhow::Result<F::Output> {
    tokio::time::timeout(DEADLINE, future)
        .await
        .map_err(|_| anyhow::anyhow!("{what} did not finish within {DEADLINE:?}"))
}

/// An rskafka client of `kafka`. Its own retries (of connection errors,
/// "not leader" and the like) give up well within [`DEADLINE`].
async fn client(kafka: SocketAddr) -> anyhow::Result<Client> {
    let backoff = BackoffConfig {
        init_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(500),
        base: 2.,
        deadline: Some(DEADLINE / 2),
    };
    let builder = ClientBuilder::new(vec![kafka.to_string()])
        .client_id("sluice-rskafka-test")
        .backoff_config(backoff);
    Ok(within("connecting", builder.build()).await??)
}

/// A client of one partition; an unknown topic or partition is an error.
async fn partition(
    client: &Client,
    topic: &str,
    partition: i32,
) -> anyhow::Result<PartitionClient> {
    let what = format!("a partition client of {topic}/{partition}");
    Ok(within(
        &what,
        client.partition_client(topic, partition, UnknownTopicHandling::Error),
    )
    .await??)
}

/// CreateTopics, with one replica (which Sluice ignores).
async fn create_topic(
    controller: &ControllerClient,
    name: &str,
    partitions: i32,
) -> anyhow::Result<Result<(), Error>> {
    let what = format!("CreateTopics {name}");
    within(&what, controller.create_topic(name, partitions, 1, 5_000)).await
}

async fn delete_topic(
    controller: &ControllerClient,
    name: &str,
) -> anyhow::Result<Result<(), Error>> {
    within(
        &format!("DeleteTopics {name}"),
        controller.delete_topic(name, 5_000),
    )
    .await
}

/// Asserts that `result` is the server's refusal with `expected`.
fn assert_refused<T: std::fmt::Debug>(
    result: Result<T, Error>,
    expected: ProtocolError,
    what: &str,
) {
    match result {
        Ok(answer) => panic!("{what} succeeded: {answer:?}"),
        Err(Error::ServerError { protocol_error, .. }) if protocol_error == expected => {}
        Err(error) => panic!("{what}: expected {expected:?}, got {error}"),
    }
}

fn timestamp(ms: i64) -> anyhow::Result<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| anyhow::anyhow!("{ms} ms is not a timestamp"))
}

/// Record `index` of a batch: keys, values and headers vary (null and
/// empty keys, null values, no headers, binary header values) so that a
/// codec or the server mixing them up shows.
fn record(label: &str, index: usize, timestamp: DateTime<Utc>) -> Record {
    let key = match index % 5 {
        0 => None,
        1 => Some(Vec::new()),
        _ => Some(format!("{label}-key-{index}").into_bytes()),
    };
    let value = (index % 7 != 6).then(|| {
        // Repetitive, so the codecs have something to compress.
        format!("{label} value {index}; ")
            .repeat(1 + index % 40)
            .into_bytes()
    });
    let mut headers = BTreeMap::new();
    if !index.is_multiple_of(3) {
        headers.insert("label".to_owned(), label.as_bytes().to_vec());
        headers.insert("index".to_owned(), index.to_string().into_bytes());
    }
    if index % 4 == 1 {
        headers.insert("binary".to_owned(), (0..=255u8).collect());
        headers.insert("empty".to_owned(), Vec::new());
    }
    Record {
        key,
        value,
        headers,
        timestamp,
    }
}

/// Fetches `[0, end)` in pieces of at most `max_bytes` (a batch larger
/// than that still comes whole), checking that every fetch starts where the
/// last one ended and reports `end` as the high watermark.
async fn fetch_all(
    client: &PartitionClient,
    end: i64,
    max_bytes: i32,
) -> anyhow::Result<Vec<RecordAndOffset>> {
    let mut fetched = Vec::new();
    let mut next = 0;
    while next < end {
        let what = format!("fetching {client:?} at {next}");
        let (records, high_watermark) =
            within(&what, client.fetch_records(next, 1..max_bytes, 1_000)).await??;
        anyhow::ensure!(
            high_watermark == end,
            "{what}: high watermark {high_watermark}, expected {end}"
        );
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            anyhow::bail!("{what}: nothing, below the high watermark {high_watermark}");
        };
        anyhow::ensure!(
            first.offset == next,
            "{what}: the first record is at {}",
            first.offset
        );
        next = last.offset + 1;
        fetched.extend(records);
    }
    Ok(fetched)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_created_through_kafka_are_listed_and_deleted() -> anyhow::Result<()> {
    let (_server, kafka) = kafka_server(&[])?;
    let client = client(kafka).await?;
    let controller = client.controller_client()?;

    create_topic(&controller, "orders", 4).await??;
    create_topic(&controller, "audit", 1).await??;
    let topics = within("Metadata", client.list_topics()).await??;
    let listed: BTreeMap<&str, Vec<i32>> = topics
        .iter()
        .map(|t| (t.name.as_str(), t.partitions.iter().copied().collect()))
        .collect();
    let expected = BTreeMap::from([("audit", vec![0]), ("orders", vec![0, 1, 2, 3])]);
    assert_eq!(listed, expected);

    let again = create_topic(&controller, "orders", 2).await?;
    assert_refused(
        again,
        ProtocolError::TopicAlreadyExists,
        "creating orders again",
    );
    let hollow = create_topic(&controller, "hollow", 0).await?;
    assert_refused(
        hollow,
        ProtocolError::InvalidPartitions,
        "a topic of 0 partitions",
    );

    delete_topic(&controller, "orders").await??;
    let topics = within("Metadata", client.list_topics()).await??;
    let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["audit"], "orders or hollow is still listed");
    let again = delete_topic(&controller, "orders").await?;
    assert_refused(
        again,
        ProtocolError::UnknownTopicOrPartition,
        "deleting orders again",
    );
    Ok(())
}

/// Produces the codecs' batches to one partition in turn; returns what was
/// written, in offset order.
async fn produce_every_codec(client: &PartitionClient) -> anyhow::Result<Vec<Record>> {
    let label = |codec: &str| format!("p{}-{codec}", client.partition());
    let mut written: Vec<Record> = Vec::new();
    for (codec, compression) in CODECS {
        // A large batch, a single record, and a batch whose timestamps go
        // back in time (a negative delta from the first record's).
        let mut batches = Vec::new();
        for size in [300, 1] {
            let first = written.len() + batches.iter().map(Vec::len).sum::<usize>();
            let batch = (0..size)
                .map(|i| {
                    let ms = BASE_TIMESTAMP_MS + 10 * (first + i) as i64;
                    Ok(record(&label(codec), first + i, timestamp(ms)?))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            batches.push(batch);
        }
        batches.push(
            [5_000, -3_000, 0]
                .iter()
                .enumerate()
                .map(|(i, delta)| {
                    let ms = BASE_TIMESTAMP_MS + delta;
                    Ok(record(&format!("{}-late", label(codec)), i, timestamp(ms)?))
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
        );
        for batch in batches {
            let what = format!("producing {} {codec} records to {client:?}", batch.len());
            let offsets = within(&what, client.produce(batch.clone(), compression)).await??;
            let next = written.len() as i64;
            let expected: Vec<i64> = (next..next + batch.len() as i64).collect();
            assert_eq!(offsets, expected, "{what}: offsets not contiguous");
            written.extend(batch);
        }
    }
    Ok(written)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_codec_round_trips_records_exactly_once() -> anyhow::Result<()> {
    let (_server, kafka) = kafka_server(&[])?;
    let client = client(kafka).await?;
    let controller = client.controller_client()?;
    create_topic(&controller, "codecs", 3).await??;

    // The three partitions at once, each on its own connection.
    let mut writers = tokio::task::JoinSet::new();
    for p in 0..3 {
        let partition = partition(&client, "codecs", p).await?;
        writers.spawn(async move {
            let written = produce_every_codec(&partition).await;
            (partition, written)
        });
    }
    let mut produced = Vec::new();
    while let Some(joined) = writers.join_next().await {
        let (partition, written) = joined?;
        produced.push((partition, written?));
    }

    for (partition, written) in &produced {
        let end = written.len() as i64;
        for max_bytes in [1 << 20, 4 << 10] {
            let fetched = fetch_all(partition, end, max_bytes).await?;
            let offsets: Vec<i64> = fetched.iter().map(|r| r.offset).collect();
            assert_eq!(
                offsets,
                (0..end).collect::<Vec<_>>(),
                "{partition:?}: offsets lost or repeated (max_bytes {max_bytes})"
            );
            for (got, want) in fetched.iter().zip(written) {
                assert_eq!(
                    &got.record, want,
                    "{partition:?} at {}: not what was produced",
                    got.offset
                );
            }
        }
        // From inside a batch of any codec, the first record is the one
        // asked for (the server sends the whole batch; rskafka drops the
        // records before the offset asked for).
        for start in (1..end).step_by(37) {
            let what = format!("fetching {partition:?} at {start}");
            let (records, _) =
                within(&what, partition.fetch_records(start, 1..1 << 20, 1_000)).await??;
            let first = records.first().map(|r| (r.offset, &r.record));
            assert_eq!(first, Some((start, &written[start as usize])), "{what}");
        }
    }
    Ok(())
}

async fn offset_at(client: &PartitionClient, at: OffsetAt) -> anyhow::Result<i64> {
    Ok(within(&format!("ListOffsets {at:?}"), client.get_offset(at)).await??)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_answers_earliest_latest_and_by_timestamp() -> anyhow::Result<()> {
    let (_server, kafka) = kafka_server(&[])?;
    let client = client(kafka).await?;
    let controller = client.controller_client()?;
    create_topic(&controller, "clock", 1).await??;
    let clock = partition(&client, "clock", 0).await?;
    let offset_at = |at: OffsetAt| offset_at(&clock, at);
    let at_ms = |ms: i64| -> anyhow::Result<OffsetAt> { Ok(OffsetAt::Timestamp(timestamp(ms)?)) };

    assert_eq!(offset_at(OffsetAt::Earliest).await?, 0, "empty: earliest");
    assert_eq!(offset_at(OffsetAt::Latest).await?, 0, "empty: latest");
    assert_eq!(
        offset_at(at_ms(BASE_TIMESTAMP_MS)?).await?,
        -1,
        "empty: by time"
    );

    // Record n at BASE + 100 n ms, in three batches of ten, compressed
    // differently (the lookup reads records inside the batch).
    let codecs = [
        Compression::Zstd,
        Compression::NoCompression,
        Compression::Lz4,
    ];
    for (b, compression) in codecs.into_iter().enumerate() {
        let batch = (b * 10..b * 10 + 10)
            .map(|n| {
                let ms = BASE_TIMESTAMP_MS + 100 * n as i64;
                Ok(record("clock", n, timestamp(ms)?))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let offsets = within("Produce", clock.produce(batch, compression)).await??;
        assert_eq!(offsets.first(), Some(&(b as i64 * 10)));
    }

    assert_eq!(offset_at(OffsetAt::Earliest).await?, 0);
    assert_eq!(offset_at(OffsetAt::Latest).await?, 30);
    for (ms, expected) in [
        (0, 0),
        (BASE_TIMESTAMP_MS - 1, 0),
        (BASE_TIMESTAMP_MS, 0),
        (BASE_TIMESTAMP_MS + 1, 1),
        (BASE_TIMESTAMP_MS + 999, 10),
        (BASE_TIMESTAMP_MS + 1_000, 10),
        (BASE_TIMESTAMP_MS + 1_550, 16),
        (BASE_TIMESTAMP_MS + 2_900, 29),
        // Later than every record: Kafka answers -1.
        (BASE_TIMESTAMP_MS + 2_901, -1),
    ] {
        let got = offset_at(at_ms(ms)?).await?;
        assert_eq!(
            got,
            expected,
            "the first offset at or after {} ms",
            ms - BASE_TIMESTAMP_MS
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_topics_partitions_and_offsets_are_errors() -> anyhow::Result<()> {
    let (_server, kafka) = kafka_server(&["--kafka-auto-create-topics", "false"])?;
    let client = client(kafka).await?;
    let controller = client.controller_client()?;

    // Metadata names the topic unknown.
    let unknown = within(
        "a partition client of an unknown topic",
        client.partition_client("nowhere", 0, UnknownTopicHandling::Error),
    )
    .await?;
    assert_refused(
        unknown,
        ProtocolError::UnknownTopicOrPartition,
        "a partition client of an unknown topic",
    );

    // Metadata lists partitions 0 and 1 only (rskafka refuses partition 2
    // itself, seeing that).
    create_topic(&controller, "pair", 2).await??;
    let outside = within(
        "a partition client of pair/2",
        client.partition_client("pair", 2, UnknownTopicHandling::Error),
    )
    .await?;
    outside.expect_err("a partition client of a partition past the last");

    // Past the end of a partition: OFFSET_OUT_OF_RANGE.
    let pair = partition(&client, "pair", 1).await?;
    let one = record("pair", 2, timestamp(BASE_TIMESTAMP_MS)?);
    within(
        "Produce",
        pair.produce(vec![one.clone()], Compression::Gzip),
    )
    .await??;
    for offset in [2, 1_000] {
        let fetched = within("Fetch", pair.fetch_records(offset, 1..1 << 20, 100)).await?;
        let what = format!("a fetch at {offset}, past the end");
        assert_refused(fetched, ProtocolError::OffsetOutOfRange, &what);
    }

    // A partition whose topic is deleted under a connected client: every
    // request is refused with UNKNOWN_TOPIC_OR_PARTITION.
    delete_topic(&controller, "pair").await??;
    let produced = within(
        "Produce",
        pair.produce(vec![one], Compression::NoCompression),
    )
    .await?;
    let unknown = ProtocolError::UnknownTopicOrPartition;
    assert_refused(produced, unknown, "a produce to a deleted topic");
    let fetched = within("Fetch", pair.fetch_records(0, 1..1 << 20, 100)).await?;
    assert_refused(fetched, unknown, "a fetch of a deleted topic");
    let listed = within("ListOffsets", pair.get_offset(OffsetAt::Latest)).await?;
    assert_refused(listed, unknown, "ListOffsets of a deleted topic");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_is_created_on_first_use_when_auto_creation_is_on() -> anyhow::Result<()> {
    // Standalone creates topics on first use by default, as Kafka does.
    let (_server, kafka) = kafka_server(&["--kafka-auto-create-partitions", "2"])?;
    let client = client(kafka).await?;
    let fresh = partition(&client, "fresh", 1).await?;
    let one = record("fresh", 2, timestamp(BASE_TIMESTAMP_MS)?);
    let offsets = within(
        "Produce",
        fresh.produce(vec![one.clone()], Compression::Snappy),
    )
    .await??;
    assert_eq!(offsets, [0]);
    let fetched = fetch_all(&fresh, 1, 1 << 20).await?;
    assert_eq!(fetched.first().map(|r| &r.record), Some(&one));
    let topics = within("Metadata", client.list_topics()).await??;
    let listed: Vec<(&str, Vec<i32>)> = topics
        .iter()
        .map(|t| (t.name.as_str(), t.partitions.iter().copied().collect()))
        .collect();
    assert_eq!(listed, [("fresh", vec![0, 1])]);
    Ok(())
}

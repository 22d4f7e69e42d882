//! The Rust SDK (`sluice_sdk`) against a real `sluice standalone`: where
//! the producer puts records (Kafka's key partitioner, sticky and
//! round-robin spreading), every codec, headers and timestamps, flush, the
//! errors it reports, a server restart under load; the consumer assigned by
//! hand (seeks, pause, commits) and in a group (listener, close, auto-commit,
//! a rebalance); and the admin client (topics, cluster, group offsets).

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sluice_proto::v1;
use sluice_record::BatchHeader;
use sluice_sdk::{
    Admin, Compression, Consumer, ConsumerRecord, Error, OffsetReset, OffsetSpec, Partitioner,
    Producer, RebalanceListener, Record, ResetTo, TopicConfig, TopicPartition, async_trait,
};
use sluice_tests::group::{numbered, produce_numbered};
use sluice_tests::{Standalone, read_all, read_batches, wait_for};

/// Time for what the system must do: generous, not a performance figure.
const PATIENCE: Duration = Duration::from_secs(30);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn partitions_of(topic: &str, count: u32) -> Vec<TopicPartition> {
    (0..count).map(|p| TopicPartition::new(topic, p)).collect()
}

fn text(bytes: Option<&[u8]>) -> String {
    String::from_utf8_lossy(bytes.unwrap_or_default()).into_owned()
}

/// Every record of every partition of `topic`, read with raw fetches:
/// (partition, offset) → value.
async fn stored(
    server: &Standalone,
    topic: &str,
    partitions: u32,
) -> anyhow::Result<BTreeMap<(u32, i64), String>> {
    let mut client = server.data().await?;
    let mut found = BTreeMap::new();
    for partition in 0..partitions {
        for (offset, value) in read_all(&mut client, topic, partition, 0).await? {
            found.insert((partition, offset), text(Some(&value)));
        }
    }
    Ok(found)
}

/// Polls until at least `count` records came; fails after [`PATIENCE`].
async fn poll_n(consumer: &mut Consumer, count: usize) -> anyhow::Result<Vec<ConsumerRecord>> {
    let deadline = Instant::now() + PATIENCE;
    let mut records = Vec::new();
    while records.len() < count {
        if Instant::now() >= deadline {
            bail!(
                "timed out with {} of {count} records: {:?}",
                records.len(),
                records
                    .iter()
                    .map(|r: &ConsumerRecord| (r.partition, r.offset))
                    .collect::<Vec<_>>()
            );
        }
        records.extend(consumer.poll(Duration::from_millis(500)).await?);
    }
    Ok(records)
}

/// Polls for `window` and checks that nothing came.
async fn poll_nothing(consumer: &mut Consumer, window: Duration, what: &str) -> anyhow::Result<()> {
    let until = Instant::now() + window;
    while Instant::now() < until {
        let records = consumer.poll(Duration::from_millis(100)).await?;
        let got: Vec<(u32, i64)> = records.iter().map(|r| (r.partition, r.offset)).collect();
        assert!(got.is_empty(), "{what}: got {got:?}");
    }
    Ok(())
}

/// (partition, offset) of records, in the order returned.
fn places(records: &[ConsumerRecord]) -> Vec<(u32, i64)> {
    records.iter().map(|r| (r.partition, r.offset)).collect()
}

/// Records of one partition, in the order returned.
fn offsets_in(records: &[ConsumerRecord], partition: u32) -> Vec<i64> {
    records
        .iter()
        .filter(|r| r.partition == partition)
        .map(|r| r.offset)
        .collect()
}

/// Sends `n` records to each partition of `topic`, with explicit
/// partitions; record `i` of a partition has value `p<p>-<i>` and
/// timestamp `base + 1000 * i`. Returns when all are acknowledged.
async fn fill(
    server: &Standalone,
    topic: &str,
    partitions: u32,
    range: std::ops::Range<i64>,
    base: i64,
) -> anyhow::Result<()> {
    let producer = Producer::builder([server.server()]).build().await?;
    let mut deliveries = Vec::new();
    for partition in 0..partitions {
        for i in range.clone() {
            let record = Record::new(topic, format!("p{partition}-{i}"))
                .with_partition(partition)
                .with_timestamp(base + 1000 * i);
            deliveries.push((partition, i, producer.send(record).await?));
        }
    }
    for (partition, i, delivery) in deliveries {
        let delivery = delivery.await?;
        assert_eq!(
            (delivery.partition, delivery.offset),
            (partition, i),
            "fill: a fresh partition gets offsets from 0"
        );
    }
    producer.close().await?;
    Ok(())
}

/// The error of an operation that must fail, within [`PATIENCE`] (it must
/// not hang).
async fn must_fail<T: std::fmt::Debug>(
    what: &str,
    operation: impl std::future::Future<Output = Result<T, Error>>,
) -> anyhow::Result<Error> {
    match tokio::time::timeout(PATIENCE, operation).await {
        Err(_) => bail!("{what}: still waiting after {PATIENCE:?}"),
        Ok(Ok(value)) => bail!("{what}: succeeded with {value:?}"),
        Ok(Err(error)) => Ok(error),
    }
}

// ---------------------------------------------------------------- producer

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_records_land_on_kafkas_partition_at_the_offset_their_delivery_reports()
-> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    server.create_topic("keyed", 6, None).await?;
    let count = NonZeroU32::new(6).context("six")?;
    let producer = Producer::builder([server.server()]).build().await?;
    let mut deliveries = Vec::new();
    for i in 0..300 {
        let key = format!("customer-{}", i % 50);
        let record = Record::new("keyed", format!("m-{i}")).with_key(key.clone());
        deliveries.push((i, key, producer.send(record).await?));
    }
    let mut expected = BTreeMap::new();
    for (i, key, delivery) in deliveries {
        let delivery = delivery.await?;
        assert_eq!(&*delivery.topic, "keyed");
        assert_eq!(
            delivery.partition,
            sluice_record::partition_for_key(key.as_bytes(), count),
            "message {i} with key {key}: not on Kafka's partition for the key"
        );
        let place = (delivery.partition, delivery.offset);
        if let Some(other) = expected.insert(place, format!("m-{i}")) {
            panic!("m-{i} and {other} were both delivered at {place:?}");
        }
    }
    producer.close().await?;
    assert_eq!(
        stored(&server, "keyed", 6).await?,
        expected,
        "each message once, where its delivery said"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_records_spread_over_partitions_sticky_and_round_robin() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    server.create_topic("sticky", 4, None).await?;
    server.create_topic("turns", 4, None).await?;

    // Sticky (the default): a batch's worth of keyless records goes to one
    // partition; once that batch is sent, the next ones go to another.
    // The linger is long: only flush sends a batch.
    let sticky = Producer::builder([server.server()])
        .linger(Duration::from_secs(60))
        .build()
        .await?;
    let mut rounds = Vec::new();
    let mut expected = BTreeMap::new();
    for round in 0..40 {
        let mut deliveries = Vec::new();
        for i in 0..10 {
            let value = format!("r{round}-{i}");
            let delivery = sticky.send(Record::new("sticky", value.clone())).await?;
            deliveries.push((value, delivery));
        }
        sticky.flush().await?;
        let mut used = BTreeSet::new();
        for (value, delivery) in deliveries {
            let delivery = delivery.await?;
            used.insert(delivery.partition);
            expected.insert((delivery.partition, delivery.offset), value);
        }
        assert_eq!(
            used.len(),
            1,
            "round {round}: one batch of keyless records, one partition: {used:?}"
        );
        rounds.extend(used);
    }
    sticky.close().await?;
    for (round, pair) in rounds.windows(2).enumerate() {
        assert_ne!(
            pair[0],
            pair[1],
            "round {}: the sticky partitioner stayed after its batch was sent ({rounds:?})",
            round + 1
        );
    }
    let used: BTreeSet<u32> = rounds.iter().copied().collect();
    assert_eq!(
        used.len(),
        4,
        "40 rounds spread over 4 partitions: {rounds:?}"
    );
    assert_eq!(stored(&server, "sticky", 4).await?, expected);

    // Round-robin: each partition in turn.
    let round_robin = Producer::builder([server.server()])
        .partitioner(Partitioner::RoundRobin)
        .build()
        .await?;
    let mut deliveries = Vec::new();
    for i in 0..400 {
        deliveries.push(
            round_robin
                .send(Record::new("turns", format!("t-{i}")))
                .await?,
        );
    }
    let mut turns = Vec::new();
    let mut expected = BTreeMap::new();
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let delivery = delivery.await?;
        turns.push(delivery.partition);
        expected.insert((delivery.partition, delivery.offset), format!("t-{i}"));
    }
    round_robin.close().await?;
    for (i, partition) in turns.iter().enumerate() {
        assert_eq!(
            *partition,
            (turns[0] + i as u32) % 4,
            "record {i} is not on the next partition in turn"
        );
    }
    let found = stored(&server, "turns", 4).await?;
    for partition in 0..4 {
        let count = found.keys().filter(|(p, _)| *p == partition).count();
        assert_eq!(
            count, 100,
            "partition {partition}: a quarter of the records"
        );
    }
    assert_eq!(found, expected);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_codec_round_trips_through_a_consumer() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    let mut client = server.data().await?;
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let topic = format!("codec-{codec:?}").to_lowercase();
        server.create_topic(&topic, 2, None).await?;
        let producer = Producer::builder([server.server()])
            .compression(codec)
            .build()
            .await?;
        let mut deliveries = Vec::new();
        for i in 0..200 {
            let key = format!("k-{}", i % 7);
            let value = format!("{codec:?} record {i} ").repeat(10);
            let record = Record::new(topic.as_str(), value.clone()).with_key(key.clone());
            deliveries.push((key, value, producer.send(record).await?));
        }
        let mut sent = BTreeMap::new();
        for (key, value, delivery) in deliveries {
            let delivery = delivery.await?;
            sent.insert((delivery.partition, delivery.offset), (key, value));
        }
        producer.close().await?;

        // Stored compressed with the codec asked for.
        for partition in 0..2 {
            let batches = read_batches(&mut client, &topic, partition, 0).await?;
            assert!(!batches.is_empty(), "{topic}/{partition} is empty");
            for batch in batches {
                let header = BatchHeader::parse(&batch)?;
                assert_eq!(header.compression()?, codec, "{topic}/{partition}");
            }
        }

        let mut consumer = Consumer::builder([server.server()])
            .auto_offset_reset(OffsetReset::Earliest)
            .build()
            .await?;
        consumer.assign(partitions_of(&topic, 2))?;
        let records = poll_n(&mut consumer, 200).await?;
        let read: BTreeMap<(u32, i64), (String, String)> = records
            .iter()
            .map(|r| {
                let pair = (text(r.key.as_deref()), text(r.value.as_deref()));
                ((r.partition, r.offset), pair)
            })
            .collect();
        assert_eq!(records.len(), 200, "{codec:?}: each record once");
        assert_eq!(
            read, sent,
            "{codec:?}: what was sent, where it was delivered"
        );
        consumer.close().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_null_values_and_timestamps_round_trip() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    server.create_topic("meta", 1, None).await?;
    let producer = Producer::builder([server.server()]).build().await?;
    let base = now_ms() - 3_600_000;
    let mut sent = Vec::new();
    for i in 0..20i64 {
        let record = Record {
            topic: "meta".into(),
            partition: None,
            key: (i % 2 == 0).then(|| format!("key-{i}").into()),
            // Record 5 is a tombstone.
            value: (i != 5).then(|| format!("value-{i}").into()),
            headers: vec![
                ("trace".into(), Some(format!("trace-{i}").into())),
                ("empty".into(), Some(bytes::Bytes::new())),
                ("null".into(), None),
                ("trace".into(), Some("repeated".into())),
            ],
            timestamp: Some(base + 1000 * i),
        };
        let delivery = producer.send(record.clone()).await?;
        sent.push((record, delivery));
    }
    // No explicit timestamp: the time of send.
    let before = now_ms();
    let now = producer.send(Record::new("meta", "now")).await?;
    let after = now_ms();
    let mut expected = Vec::new();
    for (i, (record, delivery)) in sent.into_iter().enumerate() {
        let delivery = delivery.await?;
        assert_eq!(
            (delivery.offset, delivery.timestamp),
            (i as i64, base + 1000 * i as i64)
        );
        expected.push(record);
    }
    let now = now.await?;
    assert!(
        (before..=after).contains(&now.timestamp),
        "{} not within the send ({before}..={after})",
        now.timestamp
    );
    producer.close().await?;

    let mut consumer = Consumer::builder([server.server()])
        .auto_offset_reset(OffsetReset::Earliest)
        .build()
        .await?;
    consumer.assign([TopicPartition::new("meta", 0)])?;
    let records = poll_n(&mut consumer, 21).await?;
    assert_eq!(records.len(), 21);
    for (record, sent) in records.iter().zip(&expected) {
        let i = record.offset;
        assert_eq!(record.key, sent.key, "record {i}: key");
        assert_eq!(record.value, sent.value, "record {i}: value");
        assert_eq!(record.headers, sent.headers, "record {i}: headers");
        assert_eq!(
            Some(record.timestamp),
            sent.timestamp,
            "record {i}: timestamp"
        );
    }
    let last = &records[20];
    assert_eq!(
        (last.offset, last.timestamp, last.value.as_deref()),
        (20, now.timestamp, Some(&b"now"[..]))
    );
    consumer.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_returns_only_when_every_delivery_is_resolved() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    server.create_topic("flushed", 3, None).await?;
    let small = v1::TopicConfig {
        max_batch_bytes: Some(1024),
        ..Default::default()
    };
    server.create_topic("small", 1, Some(small)).await?;
    // Nothing is sent before the linger ends, except by flush.
    let producer = Producer::builder([server.server()])
        .linger(Duration::from_secs(60))
        .build()
        .await?;
    let mut pending = Vec::new();
    for i in 0..200 {
        let record = Record::new("flushed", format!("f-{i}")).with_key(format!("k-{i}"));
        pending.push(producer.send(record).await?);
    }
    // A batch the server refuses: its delivery resolves with an error.
    let mut refused = producer
        .send(Record::new("small", vec![b'x'; 3000]).with_partition(0))
        .await?;
    for delivery in pending.iter_mut().chain([&mut refused]) {
        assert!(
            tokio::time::timeout(Duration::ZERO, delivery)
                .await
                .is_err(),
            "a delivery resolved before its batch could be sent"
        );
    }
    let started = Instant::now();
    tokio::time::timeout(PATIENCE, producer.flush())
        .await
        .context("flush hangs")??;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "flush waited for the linger"
    );
    let mut expected = BTreeMap::new();
    for (i, delivery) in pending.into_iter().enumerate() {
        let delivery = tokio::time::timeout(Duration::ZERO, delivery)
            .await
            .with_context(|| format!("record {i} unresolved after flush returned"))??;
        expected.insert((delivery.partition, delivery.offset), format!("f-{i}"));
    }
    let refused = tokio::time::timeout(Duration::ZERO, refused)
        .await
        .context("the refused record is unresolved after flush returned")?;
    assert_eq!(
        refused.err().as_ref().and_then(Error::code),
        Some("BATCH_TOO_LARGE")
    );
    producer.close().await?;
    assert_eq!(stored(&server, "flushed", 3).await?, expected);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_errors_name_the_problem_and_never_hang() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    server.create_topic("three", 3, None).await?;
    let small = v1::TopicConfig {
        max_batch_bytes: Some(1024),
        ..Default::default()
    };
    server.create_topic("small", 1, Some(small)).await?;
    let producer = Producer::builder([server.server()])
        .delivery_timeout(Duration::from_secs(3))
        .request_timeout(Duration::from_secs(1))
        .build()
        .await?;
    let send = |record: Record| {
        let producer = producer.clone();
        async move { producer.send(record).await?.await }
    };

    let error = must_fail("unknown topic", send(Record::new("nope", "x"))).await?;
    assert_eq!(error.code(), Some("UNKNOWN_TOPIC"), "{error}");
    assert!(error.to_string().contains("nope"), "{error}");

    let error = must_fail(
        "partition 9 of 3",
        send(Record::new("three", "x").with_partition(9)),
    )
    .await?;
    assert_eq!(error.code(), Some("PARTITION_OUT_OF_RANGE"), "{error}");

    // Larger than the topic's largest batch: the broker refuses it.
    let error = must_fail(
        "3000 bytes for a topic of 1024-byte batches",
        send(Record::new("small", vec![b'x'; 3000]).with_partition(0)),
    )
    .await?;
    assert_eq!(error.code(), Some("BATCH_TOO_LARGE"), "{error}");
    assert!(
        error.to_string().contains("1024"),
        "the error names the limit: {error}"
    );
    // The partition's next records are written (a new producer id after
    // the refused batch), and the refused one is not.
    let after = send(Record::new("small", "fits").with_partition(0)).await?;
    assert_eq!(after.offset, 0);
    assert_eq!(
        stored(&server, "small", 1).await?,
        BTreeMap::from([((0, 0), "fits".to_owned())])
    );

    // Larger than the producer's buffer: refused by send itself.
    let tiny = Producer::builder([server.server()])
        .buffer_bytes(4096)
        .build()
        .await?;
    let error = must_fail(
        "a record larger than the buffer",
        tiny.send(Record::new("three", vec![b'x'; 10_000])),
    )
    .await?;
    assert!(
        matches!(error, Error::RecordTooLarge { max: 4096, .. }),
        "{error:?}"
    );

    // The failures left nothing stuck: the topic once unknown works once created.
    server.create_topic("nope", 1, None).await?;
    let delivery = send(Record::new("nope", "now it exists")).await?;
    assert_eq!((delivery.partition, delivery.offset), (0, 0));

    // No server at all: the delivery times out instead of waiting forever.
    let mut server = server;
    server.kill9();
    let started = Instant::now();
    let error = must_fail(
        "a send with the server gone",
        send(Record::new("three", "x")),
    )
    .await?;
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the 3 s delivery timeout took {:?}",
        started.elapsed()
    );
    tokio::time::timeout(PATIENCE, producer.close())
        .await
        .context("close hangs")??;
    let error = must_fail(
        "a send after close",
        producer.send(Record::new("three", "x")),
    )
    .await?;
    assert!(matches!(error, Error::Closed { .. }), "{error:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consuming_an_unknown_topic_is_an_error_not_a_hang() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    let mut assigned = Consumer::builder([server.server()])
        .auto_offset_reset(OffsetReset::Earliest)
        .build()
        .await?;
    assigned.assign([TopicPartition::new("ghost", 0)])?;
    let error = must_fail(
        "polling an unknown topic",
        assigned.poll(Duration::from_secs(1)),
    )
    .await?;
    assert_eq!(error.code(), Some("UNKNOWN_TOPIC"), "{error}");

    let mut member = Consumer::builder([server.server()])
        .group("ghosts")
        .build()
        .await?;
    member.subscribe(["ghost"])?;
    let error = must_fail(
        "joining for an unknown topic",
        member.poll(Duration::from_secs(1)),
    )
    .await?;
    assert_eq!(error.code(), Some("UNKNOWN_TOPIC"), "{error}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_writes_every_message_once_through_a_server_restart() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    server.create_topic("durable", 3, None).await?;
    let producer = Producer::builder([server.server()])
        .linger(Duration::from_millis(2))
        .batch_bytes(2048)
        .build()
        .await?;
    let mut deliveries = Vec::new();
    for i in 0..300u32 {
        let record = Record::new("durable", format!("{i}")).with_key(format!("k-{}", i % 16));
        deliveries.push(producer.send(record).await?);
    }
    let mut delivered = Vec::new();
    for delivery in deliveries {
        delivered.push(delivery.await?);
    }

    // Keep sending while the server stops and starts again.
    let restarted = Arc::new(AtomicBool::new(false));
    let sending = tokio::spawn({
        let producer = producer.clone();
        let restarted = Arc::clone(&restarted);
        async move {
            let mut deliveries = Vec::new();
            let mut after_restart = 0;
            let mut i = 300u32;
            while after_restart < 200 {
                if restarted.load(Ordering::Acquire) {
                    after_restart += 1;
                }
                let record =
                    Record::new("durable", format!("{i}")).with_key(format!("k-{}", i % 16));
                deliveries.push(producer.send(record).await?);
                i += 1;
                // Pace the load so that it spans the restart.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            anyhow::Ok(deliveries)
        }
    });
    // Some records reach the server before it stops.
    wait_for("records written before the restart", PATIENCE, || async {
        let written = stored(&server, "durable", 3).await?.len();
        Ok((written > 330).then_some(()))
    })
    .await?;
    let server = server.restart().await?;
    restarted.store(true, Ordering::Release);
    for delivery in sending.await?? {
        delivered.push(delivery.await?);
    }
    producer.flush().await?;
    let stats = producer.stats();
    println!(
        "{} messages; {} retried requests, {} answered as already written",
        delivered.len(),
        stats.retries,
        stats.duplicates
    );
    producer.close().await?;

    let found = stored(&server, "durable", 3).await?;
    let mut place_of: BTreeMap<u32, (u32, i64)> = BTreeMap::new();
    for ((partition, offset), value) in &found {
        let i: u32 = value.parse()?;
        if let Some(first) = place_of.insert(i, (*partition, *offset)) {
            panic!("message {i} written twice: at {first:?} and {partition}/{offset}");
        }
    }
    assert_eq!(place_of.len(), delivered.len(), "messages lost or unknown");
    for (i, delivery) in delivered.iter().enumerate() {
        assert_eq!(
            place_of.get(&(i as u32)),
            Some(&(delivery.partition, delivery.offset)),
            "message {i} is not where its delivery said"
        );
    }
    // Within a partition, in the order sent.
    for partition in 0..3 {
        let order: Vec<u32> = found
            .iter()
            .filter(|((p, _), _)| *p == partition)
            .map(|(_, v)| v.parse())
            .collect::<Result<_, _>>()?;
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "partition {partition} out of send order: {order:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_skip_endpoints_where_nothing_listens() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    server.create_topic("t", 2, None).await?;
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.local_addr()?.to_string()
    };
    let endpoints = [dead.clone(), server.server(), dead];
    let admin = Admin::connect(endpoints.clone()).await?;
    for _ in 0..5 {
        let topics = admin.list_topics().await?;
        assert_eq!(topics.len(), 1);
    }
    for _ in 0..5 {
        let producer = Producer::builder(endpoints.clone()).build().await?;
        for i in 0..4 {
            producer
                .send(Record::new("t", format!("v{i}")).with_partition(i % 2))
                .await?
                .await?;
        }
        producer.close().await?;
    }
    let mut consumer = Consumer::builder(endpoints)
        .auto_offset_reset(OffsetReset::Earliest)
        .build()
        .await?;
    consumer.assign(partitions_of("t", 2))?;
    assert_eq!(poll_n(&mut consumer, 20).await?.len(), 20);
    Ok(())
}

// ------------------------------------------------- consumer, hand-assigned

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_assigned_consumer_reads_everything_and_seeks() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    server.create_topic("log", 3, None).await?;
    let base = now_ms() - 3_600_000;
    fill(&server, "log", 3, 0..30, base).await?;
    let all = partitions_of("log", 3);
    let [p0, p1, p2] = [all[0].clone(), all[1].clone(), all[2].clone()];
    let mut consumer = Consumer::builder([server.server()])
        .auto_offset_reset(OffsetReset::Earliest)
        .max_poll_records(20)
        .build()
        .await?;
    assert!(consumer.commit().await.is_err(), "no group to commit to");
    consumer.assign(all.clone())?;
    assert_eq!(consumer.assignment(), all);

    // Everything, each once, in order within each partition, 20 at most a poll.
    let mut records = Vec::new();
    while records.len() < 90 {
        let batch = tokio::time::timeout(PATIENCE, consumer.poll(Duration::from_secs(5)))
            .await
            .context("poll hangs")??;
        assert!(!batch.is_empty(), "nothing more after {}", records.len());
        assert!(batch.len() <= 20, "{} records in one poll", batch.len());
        records.extend(batch);
    }
    assert_eq!(records.len(), 90);
    for partition in 0..3 {
        assert_eq!(offsets_in(&records, partition), (0..30).collect::<Vec<_>>());
    }
    for record in &records {
        assert_eq!(
            text(record.value.as_deref()),
            format!("p{}-{}", record.partition, record.offset)
        );
    }
    for tp in &all {
        assert_eq!(consumer.position(tp).await?, 30, "{tp}");
    }

    // seek: from an offset on, only that partition.
    consumer.seek(&p0, 7)?;
    assert_eq!(consumer.position(&p0).await?, 7);
    let records = poll_n(&mut consumer, 23).await?;
    assert_eq!(
        places(&records),
        (7..30).map(|o| (0, o)).collect::<Vec<_>>()
    );

    // seek_to_beginning.
    consumer
        .seek_to_beginning(std::slice::from_ref(&p1))
        .await?;
    let records = poll_n(&mut consumer, 30).await?;
    assert_eq!(
        places(&records),
        (0..30).map(|o| (1, o)).collect::<Vec<_>>()
    );

    // seek_to_end: nothing until new records come, then only those.
    consumer.seek(&p2, 0)?;
    consumer.seek_to_end(&all).await?;
    for tp in &all {
        assert_eq!(consumer.position(tp).await?, 30, "{tp} at the end");
    }
    poll_nothing(&mut consumer, Duration::from_millis(500), "at the end").await?;
    fill(&server, "log", 3, 30..35, base).await?;
    let records = poll_n(&mut consumer, 15).await?;
    let mut got = places(&records);
    got.sort();
    let new: Vec<(u32, i64)> = (0..3).flat_map(|p| (30..35).map(move |o| (p, o))).collect();
    assert_eq!(got, new, "only the records written after seek_to_end");

    // seek_to_timestamp: record i has timestamp base + 1000 i.
    consumer
        .seek_to_timestamp(std::slice::from_ref(&p2), base + 10_000)
        .await?;
    assert_eq!(consumer.position(&p2).await?, 10);
    consumer
        .seek_to_timestamp(std::slice::from_ref(&p1), base + 20_500)
        .await?;
    assert_eq!(consumer.position(&p1).await?, 21, "the first at or after");
    let records = poll_n(&mut consumer, 25 + 14).await?;
    assert_eq!(offsets_in(&records, 2), (10..35).collect::<Vec<_>>());
    assert_eq!(offsets_in(&records, 1), (21..35).collect::<Vec<_>>());
    assert_eq!(records.len(), 39);
    consumer
        .seek_to_timestamp(std::slice::from_ref(&p0), now_ms())
        .await?;
    assert_eq!(
        consumer.position(&p0).await?,
        35,
        "after every record: the end"
    );
    // Not assigned: refused.
    let other = TopicPartition::new("log", 9);
    assert!(consumer.seek(&other, 0).is_err());
    assert!(consumer.position(&other).await.is_err());
    consumer.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_partition_returns_nothing_while_the_others_flow_until_resumed()
-> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    server.create_topic("flow", 2, None).await?;
    let base = now_ms() - 3_600_000;
    fill(&server, "flow", 2, 0..10, base).await?;
    let all = partitions_of("flow", 2);
    let (p0, p1) = (all[0].clone(), all[1].clone());
    let mut consumer = Consumer::builder([server.server()])
        .auto_offset_reset(OffsetReset::Earliest)
        .max_poll_records(5)
        .build()
        .await?;
    consumer.assign(all.clone())?;
    let mut records = poll_n(&mut consumer, 5).await?;

    consumer.pause(std::slice::from_ref(&p0))?;
    let paused_at = consumer.position(&p0).await?;
    // Both partitions keep growing; only p1 is returned.
    for round in 1..=3 {
        fill(&server, "flow", 2, round * 10..round * 10 + 10, base).await?;
        let p1_wanted = (round * 10 + 10) as usize;
        let deadline = Instant::now() + PATIENCE;
        while offsets_in(&records, 1).len() < p1_wanted {
            assert!(Instant::now() < deadline, "p1 stopped flowing");
            let batch = consumer.poll(Duration::from_millis(500)).await?;
            let from_paused = offsets_in(&batch, 0);
            let before = offsets_in(&records, 0);
            assert!(
                from_paused.is_empty(),
                "records {from_paused:?} of the paused partition (had {before:?})"
            );
            records.extend(batch);
        }
    }
    assert_eq!(
        consumer.position(&p0).await?,
        paused_at,
        "p0 kept its position"
    );
    poll_nothing(
        &mut consumer,
        Duration::from_millis(300),
        "all of p1 read, p0 paused",
    )
    .await?;

    consumer.resume(std::slice::from_ref(&p0))?;
    let rest = 40 - offsets_in(&records, 0).len();
    records.extend(poll_n(&mut consumer, rest).await?);
    assert_eq!(
        offsets_in(&records, 0),
        (0..40).collect::<Vec<_>>(),
        "p0: each record once, from where it was paused"
    );
    assert_eq!(offsets_in(&records, 1), (0..40).collect::<Vec<_>>());
    assert_eq!(consumer.position(&p1).await?, 40);
    consumer.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_assigned_commits_are_read_back_and_described_with_lag() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    server.create_topic("ledger", 3, None).await?;
    fill(&server, "ledger", 3, 0..30, now_ms()).await?;
    let all = partitions_of("ledger", 3);
    let mut consumer = Consumer::builder([server.server()])
        .group("auditors")
        .auto_commit(None)
        .auto_offset_reset(OffsetReset::Earliest)
        .build()
        .await?;
    consumer.assign(all.clone())?;
    assert!(
        consumer.committed(&all).await?.is_empty(),
        "nothing committed yet"
    );
    assert_eq!(poll_n(&mut consumer, 90).await?.len(), 90);

    // commit: the positions, while the group has no member.
    consumer.commit().await?;
    let committed = consumer.committed(&all).await?;
    assert_eq!(
        committed,
        all.iter().map(|tp| (tp.clone(), 30)).collect(),
        "positions committed"
    );
    // commit_offsets: chosen offsets.
    consumer
        .commit_offsets([(all[0].clone(), 10), (all[2].clone(), 25)])
        .await?;
    let committed = consumer.committed(&all).await?;
    assert_eq!(
        (committed[&all[0]], committed[&all[1]], committed[&all[2]]),
        (10, 30, 25)
    );

    let admin = Admin::connect([server.server()]).await?;
    let group = admin.describe_group("auditors").await?;
    assert!(group.members.is_empty(), "{:?}", group.members);
    let lags: BTreeMap<u32, (i64, Option<i64>, Option<i64>)> = group
        .offsets
        .iter()
        .map(|o| (o.partition, (o.committed, o.end_offset, o.lag)))
        .collect();
    assert_eq!(
        lags,
        BTreeMap::from([
            (0, (10, Some(30), Some(20))),
            (1, (30, Some(30), Some(0))),
            (2, (25, Some(30), Some(5))),
        ])
    );
    assert!(group.offsets.iter().all(|o| o.topic == "ledger"));
    consumer.close().await?;

    // Another consumer of the group starts from the committed offsets.
    let mut next = Consumer::builder([server.server()])
        .group("auditors")
        .auto_commit(None)
        .auto_offset_reset(OffsetReset::Earliest)
        .build()
        .await?;
    next.assign(all.clone())?;
    assert_eq!(next.position(&all[0]).await?, 10);
    let records = poll_n(&mut next, 25).await?;
    let mut got = places(&records);
    got.sort();
    let expected: Vec<(u32, i64)> = (10..30)
        .map(|o| (0, o))
        .chain((25..30).map(|o| (2, o)))
        .collect();
    assert_eq!(got, expected);
    next.close().await?;
    Ok(())
}

// ------------------------------------------------------ consumer, in a group

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Assigned(Vec<TopicPartition>),
    Revoked(Vec<TopicPartition>),
}

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Event>>,
}

impl Recorder {
    fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn push(&self, event: Event) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
    }
}

fn sorted(partitions: &[TopicPartition]) -> Vec<TopicPartition> {
    let mut partitions = partitions.to_vec();
    partitions.sort();
    partitions
}

#[async_trait]
impl RebalanceListener for Recorder {
    async fn on_revoked(&self, partitions: &[TopicPartition]) {
        self.push(Event::Revoked(sorted(partitions)));
    }

    async fn on_assigned(&self, partitions: &[TopicPartition]) {
        self.push(Event::Assigned(sorted(partitions)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_member_gets_every_partition_and_close_leaves_at_once() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    server.create_topic("orders", 4, None).await?;
    produce_numbered(&server.server(), "orders", 0..100).await?;
    let recorder = Arc::new(Recorder::default());
    let session = Duration::from_secs(60);
    let mut consumer = Consumer::builder([server.server()])
        .group("solo")
        .client_id("solo-client")
        .session_timeout(session)
        .auto_commit(None)
        .auto_offset_reset(OffsetReset::Earliest)
        .rebalance_listener(recorder.clone())
        .build()
        .await?;
    consumer.subscribe(["orders"])?;
    let error = must_fail("a commit before joining", consumer.commit()).await?;
    assert!(matches!(error, Error::InvalidState { .. }), "{error:?}");
    let records = poll_n(&mut consumer, 100).await?;
    let values: Vec<String> = records.iter().map(|r| text(r.value.as_deref())).collect();
    assert_eq!(values.len(), 100, "each message once");
    assert_eq!(
        values.into_iter().collect::<BTreeSet<_>>(),
        numbered(0..100)
    );

    let all = partitions_of("orders", 4);
    assert_eq!(recorder.events(), [Event::Assigned(all.clone())]);
    assert_eq!(consumer.assignment(), all);
    let (member_id, generation) = consumer.member().context("a member after polling")?;
    let member_id = member_id.to_owned();
    assert!(generation >= 1);

    let admin = Admin::connect([server.server()]).await?;
    let group = admin.describe_group("solo").await?;
    assert_eq!(group.state, "Stable");
    assert_eq!(group.members.len(), 1, "{:?}", group.members);
    let member = &group.members[0];
    assert_eq!(member.member_id, member_id);
    assert_eq!(member.client_id, "solo-client");
    assert_eq!(member.session_timeout, session);
    assert_eq!(sorted(&member.assignment), all);
    let listed = admin.list_groups().await?;
    assert!(
        listed.iter().any(|g| g.group == "solo" && g.members == 1),
        "{listed:?}"
    );

    consumer.commit().await?;
    let closing = Instant::now();
    consumer.close().await?;
    // Gone at once, not after the 60 s session timeout.
    let group = admin.describe_group("solo").await?;
    assert!(
        group.members.is_empty(),
        "still a member: {:?}",
        group.members
    );
    assert_eq!(group.state, "Empty");
    assert!(closing.elapsed() < Duration::from_secs(10));
    assert!(
        group.offsets.iter().all(|o| o.lag == Some(0)) && group.offsets.len() == 4,
        "{:?}",
        group.offsets
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_commit_commits_positions_every_interval_and_on_close() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    server.create_topic("auto", 3, None).await?;
    produce_numbered(&server.server(), "auto", 0..90).await?;
    let admin = Admin::connect([server.server()]).await?;
    let lags = |group: &sluice_sdk::GroupDescription| -> Vec<Option<i64>> {
        group.offsets.iter().map(|o| o.lag).collect()
    };

    let mut consumer = Consumer::builder([server.server()])
        .group("auto")
        .auto_commit(Some(Duration::from_millis(200)))
        .auto_offset_reset(OffsetReset::Earliest)
        .build()
        .await?;
    consumer.subscribe(["auto"])?;
    let mut values = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    // Poll (auto-commit runs from poll) until the coordinator has it all.
    loop {
        let records = consumer.poll(Duration::from_millis(100)).await?;
        values.extend(records.iter().map(|r| text(r.value.as_deref())));
        let group = admin.describe_group("auto").await?;
        if values.len() >= 90 && lags(&group) == [Some(0); 3] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not committed: {:?} after {} records",
            group.offsets,
            values.len()
        );
    }
    assert_eq!(values.len(), 90);
    assert_eq!(values.into_iter().collect::<BTreeSet<_>>(), numbered(0..90));
    consumer.close().await?;

    // An interval that never comes: close commits.
    produce_numbered(&server.server(), "auto", 90..120).await?;
    let mut consumer = Consumer::builder([server.server()])
        .group("auto")
        .auto_commit(Some(Duration::from_secs(3600)))
        .build()
        .await?;
    consumer.subscribe(["auto"])?;
    let records = poll_n(&mut consumer, 30).await?;
    let values: BTreeSet<String> = records.iter().map(|r| text(r.value.as_deref())).collect();
    assert_eq!(values, numbered(90..120), "from the committed offsets on");
    let group = admin.describe_group("auto").await?;
    assert_eq!(
        group.offsets.iter().filter_map(|o| o.lag).sum::<i64>(),
        30,
        "nothing committed before the interval or close: {:?}",
        group.offsets
    );
    consumer.close().await?;
    let group = admin.describe_group("auto").await?;
    assert_eq!(lags(&group), [Some(0); 3], "{:?}", group.offsets);
    Ok(())
}

/// A group member polling (and committing what it got) in a background task
/// until stopped; then it closes.
struct Member {
    values: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Member {
    fn start(mut consumer: Consumer) -> Member {
        let values = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let values = Arc::clone(&values);
            let stop = Arc::clone(&stop);
            async move {
                while !stop.load(Ordering::Acquire) {
                    let records = consumer.poll(Duration::from_millis(100)).await?;
                    if records.is_empty() {
                        continue;
                    }
                    values
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend(records.iter().map(|r| text(r.value.as_deref())));
                    if let Err(error) = consumer.commit().await {
                        // A rebalance: the partitions' next owner reads them again.
                        eprintln!("commit refused: {error}");
                    }
                }
                consumer.close().await?;
                Ok(())
            }
        });
        Member { values, stop, task }
    }

    fn values(&self) -> BTreeSet<String> {
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        values.iter().cloned().collect()
    }

    async fn close(self) -> anyhow::Result<BTreeSet<String>> {
        self.stop.store(true, Ordering::Release);
        let Member { values, task, .. } = self;
        task.await??;
        let values = values.lock().unwrap_or_else(|e| e.into_inner());
        Ok(values.iter().cloned().collect())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_partitions_and_the_listener_sees_each_rebalance() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    server.create_topic("shared", 4, None).await?;
    let admin = Admin::connect([server.server()]).await?;
    let all = partitions_of("shared", 4);
    produce_numbered(&server.server(), "shared", 0..200).await?;
    let member = |listener: Option<Arc<Recorder>>| {
        let mut builder = Consumer::builder([server.server()])
            .group("pair")
            .session_timeout(Duration::from_secs(10))
            .auto_commit(None)
            .auto_offset_reset(OffsetReset::Earliest);
        if let Some(listener) = listener {
            builder = builder.rebalance_listener(listener);
        }
        async move {
            let mut consumer = builder.build().await?;
            consumer.subscribe(["shared"])?;
            anyhow::Ok(Member::start(consumer))
        }
    };
    let owned = |count: usize| {
        let admin = admin.clone();
        move || {
            let admin = admin.clone();
            async move {
                let group = admin.describe_group("pair").await?;
                let sizes: Vec<usize> = group.members.iter().map(|m| m.assignment.len()).collect();
                Ok((group.state == "Stable"
                    && sizes.len() == count
                    && sizes.iter().sum::<usize>() == 4)
                    .then_some(group))
            }
        }
    };

    let recorder = Arc::new(Recorder::default());
    let first = member(Some(recorder.clone())).await?;
    wait_for("the first member to own everything", PATIENCE, owned(1)).await?;
    wait_for("the first 200 messages", PATIENCE, || async {
        Ok(first.values().is_superset(&numbered(0..200)).then_some(()))
    })
    .await?;

    let second = member(None).await?;
    let group = wait_for("two members with 2 partitions each", PATIENCE, || {
        let admin = admin.clone();
        async move {
            let group = admin.describe_group("pair").await?;
            let even =
                group.members.len() == 2 && group.members.iter().all(|m| m.assignment.len() == 2);
            Ok((group.state == "Stable" && even).then_some(group))
        }
    })
    .await?;
    let events = wait_for(
        "the first member to see the rebalance",
        PATIENCE,
        || async {
            let events = recorder.events();
            Ok((events.len() >= 2).then_some(events))
        },
    )
    .await?;
    let given_up = match &events[..] {
        [Event::Assigned(first), Event::Revoked(given_up)] if *first == all => given_up.clone(),
        other => panic!("expected assigned all then revoked some, got {other:?}"),
    };
    let second_owns: Vec<Vec<TopicPartition>> = group
        .members
        .iter()
        .map(|m| sorted(&m.assignment))
        .filter(|owned| *owned == given_up)
        .collect();
    assert_eq!(
        second_owns.len(),
        1,
        "the newcomer owns what the first gave up ({given_up:?}): {:?}",
        group.members
    );
    produce_numbered(&server.server(), "shared", 200..400).await?;
    wait_for("messages 200..400 read by the two", PATIENCE, || async {
        let mut union = first.values();
        union.extend(second.values());
        Ok(union.is_superset(&numbered(0..400)).then_some(()))
    })
    .await?;

    // The second leaves: the first gets its partitions back at once.
    let leaving = Instant::now();
    let second_values = second.close().await?;
    wait_for(
        "the first member to own everything again",
        PATIENCE,
        owned(1),
    )
    .await?;
    assert!(
        leaving.elapsed() < Duration::from_secs(10),
        "the partitions came back only after the session timeout"
    );
    let events = wait_for("the first member to get them back", PATIENCE, || async {
        let events = recorder.events();
        Ok((events.len() >= 3).then_some(events))
    })
    .await?;
    assert_eq!(
        events,
        [
            Event::Assigned(all.clone()),
            Event::Revoked(given_up.clone()),
            Event::Assigned(given_up)
        ]
    );
    produce_numbered(&server.server(), "shared", 400..500).await?;
    wait_for("messages 400..500 read by the first", PATIENCE, || async {
        Ok(first
            .values()
            .is_superset(&numbered(400..500))
            .then_some(()))
    })
    .await?;
    let mut union = first.close().await?;
    union.extend(second_values);
    assert_eq!(union, numbered(0..500), "every message, nothing else");
    Ok(())
}

// ------------------------------------------------------------------- admin

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_creates_lists_describes_grows_and_deletes_topics() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    let admin = Admin::connect([server.server()]).await?;
    let config = TopicConfig {
        retention_ms: Some(86_400_000),
        max_batch_bytes: Some(65_536),
        ..TopicConfig::default()
    };
    let created = admin.create_topic("events", 2, config).await?;
    assert_eq!(created.name, "events");
    assert!(!created.id.is_empty());
    assert_eq!(created.partitions.len(), 2);
    assert_eq!(created.config.retention_ms, Some(86_400_000));
    assert_eq!(created.config.max_batch_bytes, Some(65_536));
    let error = must_fail(
        "creating it again",
        admin.create_topic("events", 2, TopicConfig::default()),
    )
    .await?;
    assert_eq!(error.code(), Some("TOPIC_EXISTS"), "{error}");
    admin
        .create_topic("other", 1, TopicConfig::default())
        .await?;
    let topics: BTreeMap<String, u32> = admin
        .list_topics()
        .await?
        .into_iter()
        .map(|t| (t.name, t.partitions))
        .collect();
    assert_eq!(
        topics,
        BTreeMap::from([("events".into(), 2), ("other".into(), 1)])
    );

    fill(&server, "events", 2, 0..10, now_ms()).await?;
    let described = admin.describe_topic("events").await?;
    assert_eq!(described.id, created.id);
    let ends: Vec<(u32, i64, i64)> = described
        .partitions
        .iter()
        .map(|p| (p.partition, p.start_offset, p.end_offset))
        .collect();
    assert_eq!(ends, [(0, 0, 10), (1, 0, 10)]);

    // Records before an offset go for good; readers start there.
    assert_eq!(admin.delete_records("events", 0, Some(4)).await?, 4);
    assert_eq!(
        admin.list_offset("events", 0, OffsetSpec::Earliest).await?,
        Some(4)
    );
    assert_eq!(
        admin.delete_records("events", 0, Some(2)).await?,
        4,
        "never lowered"
    );
    let error = must_fail(
        "deleting past the end",
        admin.delete_records("events", 0, Some(11)),
    )
    .await?;
    assert_eq!(error.code(), Some("OFFSET_OUT_OF_RANGE"), "{error}");
    assert_eq!(admin.delete_records("events", 1, None).await?, 10);
    let described = admin.describe_topic("events").await?;
    let starts: Vec<i64> = described
        .partitions
        .iter()
        .map(|p| p.start_offset)
        .collect();
    assert_eq!(starts, [4, 10]);

    // A producer that knows the topic with 2 partitions...
    let producer = Producer::builder([server.server()]).build().await?;
    let delivery = producer
        .send(Record::new("events", "before").with_partition(1))
        .await?
        .await?;
    assert_eq!((delivery.partition, delivery.offset), (1, 10));
    let grown = admin.add_partitions("events", 5).await?;
    assert_eq!(grown.partitions.len(), 5);
    assert_eq!(admin.describe_topic("events").await?.partitions.len(), 5);
    // ...writes to a new one.
    let delivery = producer
        .send(Record::new("events", "in a new partition").with_partition(4))
        .await?
        .await?;
    assert_eq!((delivery.partition, delivery.offset), (4, 0));
    producer.close().await?;

    // A standalone is broker 0, holding every partition, and its own
    // proxy and controller.
    let status = admin.cluster_status().await?;
    let me = server.server();
    let brokers: Vec<(u64, Option<String>, bool, u32)> = status
        .brokers
        .iter()
        .map(|b| (b.id, b.address.clone(), b.live, b.partitions))
        .collect();
    assert_eq!(
        brokers,
        [(0, Some(me.clone()), true, 6)],
        "5 + 1 partitions on broker 0: {status:?}"
    );
    assert_eq!(status.proxies, std::slice::from_ref(&me));
    assert_eq!(status.controller, Some(me));
    assert_eq!(status.unowned_partitions, 0);

    admin.delete_topic("events").await?;
    let names: Vec<String> = admin
        .list_topics()
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["other"]);
    let error = must_fail("describing a deleted topic", admin.describe_topic("events")).await?;
    assert_eq!(error.code(), Some("UNKNOWN_TOPIC"), "{error}");
    let error = must_fail("deleting it again", admin.delete_topic("events")).await?;
    assert_eq!(error.code(), Some("UNKNOWN_TOPIC"), "{error}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_lists_resets_and_deletes_group_offsets() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    server.create_topic("ticks", 2, None).await?;
    let base = now_ms() - 3_600_000;
    // Record i of each partition has timestamp base + 1000 i.
    fill(&server, "ticks", 2, 0..20, base).await?;
    let admin = Admin::connect([server.server()]).await?;
    let error = must_fail("describing an unknown group", admin.describe_group("g")).await?;
    assert_eq!(error.code(), Some("UNKNOWN_GROUP"), "{error}");

    let committed = |admin: Admin| async move {
        let group = admin.describe_group("g").await?;
        anyhow::Ok(
            group
                .offsets
                .iter()
                .map(|o| (o.partition, o.committed, o.lag))
                .collect::<Vec<_>>(),
        )
    };
    let tp = |p| TopicPartition::new("ticks", p);
    for (to, offset) in [
        (ResetTo::Earliest, 0),
        (ResetTo::Latest, 20),
        (ResetTo::Offset(5), 5),
        (ResetTo::Offset(999), 20),
        (ResetTo::Timestamp(base + 7000), 7),
        (ResetTo::Timestamp(base + 7500), 8),
        (ResetTo::Timestamp(now_ms()), 20),
    ] {
        let reset = admin.reset_offsets("g", "ticks", to).await?;
        assert_eq!(reset, [(tp(0), offset), (tp(1), offset)], "{to:?}");
        assert_eq!(
            committed(admin.clone()).await?,
            [
                (0, offset, Some(20 - offset)),
                (1, offset, Some(20 - offset))
            ],
            "{to:?}"
        );
    }
    let groups = admin.list_groups().await?;
    let g = groups
        .iter()
        .find(|g| g.group == "g")
        .context("g is listed")?;
    assert_eq!(g.members, 0, "{g:?}");

    admin
        .reset_offsets("g", "ticks", ResetTo::Offset(14))
        .await?;

    // Not while the group has a member.
    let mut consumer = Consumer::builder([server.server()])
        .group("g")
        .auto_commit(None)
        .build()
        .await?;
    consumer.subscribe(["ticks"])?;
    let records = poll_n(&mut consumer, 12).await?;
    assert_eq!(
        (offsets_in(&records, 0), offsets_in(&records, 1)),
        ((14..20).collect(), (14..20).collect()),
        "a member starts from the reset offsets"
    );
    let error = must_fail(
        "a reset while a member is in",
        admin.reset_offsets("g", "ticks", ResetTo::Earliest),
    )
    .await?;
    assert_eq!(error.code(), Some("GROUP_NOT_EMPTY"), "{error}");
    let error = must_fail("deleting a group with a member", admin.delete_group("g")).await?;
    assert_eq!(error.code(), Some("GROUP_NOT_EMPTY"), "{error}");
    consumer.close().await?;

    admin.delete_group("g").await?;
    let groups = admin.list_groups().await?;
    assert!(groups.iter().all(|g| g.group != "g"), "{groups:?}");
    let error = must_fail("describing a deleted group", admin.describe_group("g")).await?;
    assert_eq!(error.code(), Some("UNKNOWN_GROUP"), "{error}");
    Ok(())
}

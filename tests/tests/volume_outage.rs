//! A storage server stops mid-load: segments spread over two S3 servers
//! (two private moto processes); one is stopped (SIGSTOP: it accepts
//! connections and never answers, the hardest failure to notice). Writes
//! time out there, the partition abandons that segment at its last
//! checkpoint and goes on on the other server; reads of segments on the
//! stopped server fail with a retriable error; once it is back, every
//! acknowledged message is there, once, in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use sluice_proto::v1;
use sluice_record::{BatchBuilder, Compression};
use sluice_tests::servers::Moto;
use sluice_tests::{Standalone, error_code, fetch_request, read_all, wait_for};
use tokio::sync::Mutex;

const TOPIC: &str = "outage";

/// Acknowledged messages, in offset order: (offset, value).
type Acked = Arc<Mutex<Vec<(i64, Vec<u8>)>>>;

fn value(id: u64) -> Vec<u8> {
    format!("message-{id:08}-").repeat(64).into_bytes()
}

/// Produces 8-message batches with durable acks until `stop`, recording acks.
async fn produce_until(
    mut client: sluice_proto::v1::sluice_client::SluiceClient<tonic::transport::Channel>,
    acked: Acked,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let mut id = 0u64;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    while !stop.load(Ordering::Relaxed) {
        let mut builder = BatchBuilder::new(Compression::None);
        let values: Vec<Vec<u8>> = (id..id + 8).map(value).collect();
        for v in &values {
            builder.push(now_ms, None, Some(v), &[])?;
        }
        id += 8;
        let request = v1::ProduceRequest {
            topic: TOPIC.into(),
            target: Some(v1::produce_request::Target::Partition(0)),
            records: builder.build()?,
            acks: v1::AckMode::Durable as i32,
        };
        // A produce may fail while the partition moves to a new segment;
        // an unacknowledged batch is simply not counted.
        if let Ok(response) = client.produce(request).await {
            let response = response.into_inner();
            let mut acked = acked.lock().await;
            for (i, v) in values.into_iter().enumerate() {
                acked.push((response.base_offset + i as i64, v));
            }
        }
    }
    Ok(())
}

async fn segments(server: &Standalone) -> anyhow::Result<Vec<v1::SegmentDescription>> {
    let description = server
        .admin()
        .await?
        .describe_topic(v1::DescribeTopicRequest { name: TOPIC.into() })
        .await?
        .into_inner();
    Ok(description.partitions[0].segments.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_volume_server_loses_nothing_and_reads_resume() -> anyhow::Result<()> {
    if sluice_tests::servers::server("SLUICE_TEST_MOTO_ENDPOINT").is_none() {
        return Ok(()); // moto is not installed here
    }
    let home = Moto::start(&["home"]).await?;
    let other = Moto::start(&["other"]).await?;
    let home_storage = home.storage("home", "outage");
    let other_storage = other.storage("other", "outage");
    let other_url = other_storage.volumes[0].clone();
    // Short timeouts: a stalled server is given up on within seconds.
    let storage = home_storage
        .and(other_storage)
        .with_option(&other_url, "timeout", "2s")
        .with_option(&other_url, "connect_timeout", "1s");
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, storage.config_toml())?;
    let server = Standalone::start(
        &dir.path().join("data"),
        &[
            "--config",
            &config.to_string_lossy(),
            "--segment-bytes",
            "65536",
            "--min-flush-interval-ms",
            "0",
        ],
    )?;
    server.create_topic(TOPIC, 1, None).await?;

    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = tokio::spawn(produce_until(
        server.data().await?,
        Arc::clone(&acked),
        Arc::clone(&stop),
    ));

    // Segments land on both servers at random.
    let on_other = wait_for(
        "segments on the second server",
        Duration::from_secs(60),
        || async {
            let segments = segments(&server).await?;
            let on_other: Vec<_> = segments
                .into_iter()
                .filter(|s| s.volume == other_url)
                .collect();
            Ok((on_other.len() >= 2).then_some(on_other))
        },
    )
    .await?;

    other.signal("STOP")?;
    let stopped_at = acked.lock().await.len();
    wait_for(
        "writes to fail on the stopped server",
        Duration::from_secs(90),
        || async { Ok(server.log().contains("segment write failed").then_some(())) },
    )
    .await
    .with_context(|| format!("log:\n{}", server.log()))?;
    // Writes go on, on the home server.
    wait_for("writes to continue", Duration::from_secs(60), || async {
        Ok((acked.lock().await.len() >= stopped_at + 400).then_some(()))
    })
    .await
    .with_context(|| format!("log:\n{}", server.log()))?;

    // A segment on the stopped server cannot be read: a retriable error.
    let mut client = server.data().await?;
    let base = on_other[0].base_offset;
    let status = client
        .fetch(fetch_request(TOPIC, 0, base))
        .await
        .expect_err("a segment on a stopped server cannot be read");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(
        error_code(&status),
        Some("STORAGE_UNAVAILABLE"),
        "{status:?}"
    );
    assert!(status.message().contains(&other_url), "{status:?}");

    stop.store(true, Ordering::Relaxed);
    producer.await??;
    other.signal("CONT")?;

    // Back: everything acknowledged is there, once, at its offset.
    let acked = acked.lock().await.clone();
    let records = read_all(&mut client, TOPIC, 0, 0).await?;
    let stored: Vec<(i64, Vec<u8>)> = records
        .into_iter()
        .map(|(offset, value)| (offset, value.to_vec()))
        .collect();
    assert_eq!(stored.len(), acked.len(), "message count");
    for ((offset, value), (stored_offset, stored_value)) in acked.iter().zip(&stored) {
        assert_eq!(offset, stored_offset);
        assert!(value == stored_value, "message at {offset} differs");
    }
    drop(home);
    Ok(())
}

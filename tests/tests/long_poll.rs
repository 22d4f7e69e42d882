//! Long-poll fetch: a waiting fetch is woken by new data, an idle one
//! returns empty when its wait is over, and min_bytes holds the answer back
//! until enough has been written.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_proto::v1;
use sluice_record::{BatchBuilder, Compression};
use sluice_tests::{Standalone, produce};

fn batch(values: &[&str]) -> Bytes {
    let mut builder = BatchBuilder::new(Compression::None);
    for value in values {
        builder
            .push(1_700_000_000_000, None, Some(value.as_bytes()), &[])
            .expect("push");
    }
    builder.build().expect("build")
}

fn long_poll(topic: &str, offset: i64, min_bytes: u32, max_wait_ms: u32) -> v1::FetchRequest {
    v1::FetchRequest {
        topic: topic.to_owned(),
        partition: 0,
        offset,
        max_bytes: 1 << 20,
        min_bytes,
        max_wait_ms,
    }
}

fn values(records: Bytes) -> Vec<(i64, String)> {
    let mut values = Vec::new();
    for batch in sluice_record::BatchIter::new(records) {
        let batch = batch.expect("whole batch");
        for record in sluice_record::decode_records(&batch.bytes).expect("decodes") {
            let value = record.value.unwrap_or_default();
            values.push((record.offset, String::from_utf8_lossy(&value).into_owned()));
        }
    }
    values
}

#[tokio::test]
async fn a_waiting_fetch_returns_as_soon_as_data_arrives() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    let topic = "wake";
    server.create_topic(topic, 1, None).await?;
    let mut client = server.data().await?;
    produce(&mut client, topic, 0, batch(&["before"])).await?;

    for round in 0..3i64 {
        let offset = 1 + round;
        let mut fetcher = server.data().await?;
        let mut fetch = Box::pin(fetcher.fetch(long_poll(topic, offset, 1, 10_000)));
        // Nothing to read yet: the fetch must still be waiting a while later.
        let early = tokio::time::timeout(Duration::from_millis(300), &mut fetch).await;
        assert!(
            early.is_err(),
            "a fetch at the high watermark returned before any data: {early:?}"
        );
        let value = format!("wake-{round}");
        let produced_at = Instant::now();
        produce(&mut client, topic, 0, batch(&[&value])).await?;
        let response = tokio::time::timeout(Duration::from_secs(5), fetch)
            .await
            .expect("the waiting fetch was not woken by the produce")?
            .into_inner();
        let woken_after = produced_at.elapsed();
        assert!(
            woken_after < Duration::from_secs(2),
            "the fetch took {woken_after:?} after the produce; its max wait was 10s"
        );
        assert_eq!(values(response.records), vec![(offset, value)]);
        assert_eq!(response.high_watermark, offset + 1);
    }
    Ok(())
}

#[tokio::test]
async fn an_idle_fetch_returns_empty_after_its_max_wait() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    let topic = "idle";
    server.create_topic(topic, 1, None).await?;
    let mut client = server.data().await?;
    produce(&mut client, topic, 0, batch(&["only"])).await?;
    for max_wait_ms in [200u32, 500] {
        let started = Instant::now();
        let response = client
            .fetch(long_poll(topic, 1, 1, max_wait_ms))
            .await?
            .into_inner();
        let waited = started.elapsed();
        assert!(response.records.is_empty());
        assert_eq!(response.high_watermark, 1);
        let max_wait = Duration::from_millis(u64::from(max_wait_ms));
        assert!(
            waited >= max_wait - Duration::from_millis(10),
            "returned after {waited:?}, before its max wait of {max_wait:?}"
        );
        assert!(
            waited < max_wait + Duration::from_secs(2),
            "returned {waited:?} after a max wait of {max_wait:?}"
        );
    }
    // max_wait 0 answers at once.
    let started = Instant::now();
    let response = client.fetch(long_poll(topic, 1, 1, 0)).await?.into_inner();
    assert!(response.records.is_empty());
    assert!(started.elapsed() < Duration::from_secs(1));
    Ok(())
}

#[tokio::test]
async fn min_bytes_holds_the_answer_until_enough_is_written() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    let topic = "min-bytes";
    server.create_topic(topic, 1, None).await?;
    let mut client = server.data().await?;
    let piece = "m".repeat(300);
    let one = batch(&[&piece]);
    produce(&mut client, topic, 0, one.clone()).await?;
    // About four batches' worth: three more must be written first.
    let min_bytes = (one.len() * 4 - 10) as u32;
    let mut fetcher = server.data().await?;
    let fetch = tokio::spawn(async move {
        let started = Instant::now();
        let response = fetcher.fetch(long_poll(topic, 0, min_bytes, 20_000)).await;
        (response, started.elapsed())
    });
    for _ in 0..3 {
        produce(&mut client, topic, 0, one.clone()).await?;
    }
    let (response, waited) = tokio::time::timeout(Duration::from_secs(10), fetch).await??;
    let response = response?.into_inner();
    assert!(
        response.records.len() >= min_bytes as usize,
        "the fetch returned {} bytes, fewer than min_bytes {min_bytes}",
        response.records.len()
    );
    assert!(
        waited < Duration::from_secs(10),
        "waited {waited:?}, max wait 20s"
    );
    let got = values(response.records);
    assert_eq!(
        got.iter().map(|v| v.0).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    // When min_bytes never comes, max_wait answers with what there is.
    let started = Instant::now();
    let response = client
        .fetch(long_poll(topic, 0, 1 << 20, 300))
        .await?
        .into_inner();
    assert!(started.elapsed() >= Duration::from_millis(290));
    assert_eq!(values(response.records).len(), 4);
    Ok(())
}

#[tokio::test]
async fn waiting_fetches_on_other_partitions_are_not_woken_with_foreign_data() -> anyhow::Result<()>
{
    let server = Standalone::start_temp(&[])?;
    let topic = "two";
    server.create_topic(topic, 2, None).await?;
    let mut client = server.data().await?;
    let mut fetcher = server.data().await?;
    let mut request = long_poll(topic, 0, 1, 10_000);
    request.partition = 1;
    let fetch = tokio::spawn(async move { fetcher.fetch(request).await });
    // Data for partition 0 must not answer a fetch of partition 1.
    produce(&mut client, topic, 0, batch(&["zero"])).await?;
    produce(&mut client, topic, 1, batch(&["one"])).await?;
    let response = tokio::time::timeout(Duration::from_secs(5), fetch)
        .await???
        .into_inner();
    assert_eq!(values(response.records), vec![(0, "one".to_owned())]);
    Ok(())
}

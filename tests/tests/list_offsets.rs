//! ListOffsets: earliest, latest, and the first record at or after a
//! timestamp, exactly, also inside a batch and across segments.

use bytes::Bytes;
use sluice_proto::v1;
use sluice_proto::v1::list_offsets_request::Spec;
use sluice_record::{BatchBuilder, Compression};
use sluice_tests::{Standalone, earliest, latest, list_offset, produce};

const BATCHES: i64 = 30;
const PER_BATCH: i64 = 5;

/// Record `n` (its offset) has timestamp `1000 * (n + 1)`.
fn timestamp_of(offset: i64) -> i64 {
    1000 * (offset + 1)
}

fn batch(first_offset: i64, codec: Compression) -> Bytes {
    let mut builder = BatchBuilder::new(codec);
    for offset in first_offset..first_offset + PER_BATCH {
        let value = format!("record-{offset}-{}", "t".repeat(60));
        builder
            .push(timestamp_of(offset), None, Some(value.as_bytes()), &[])
            .expect("push");
    }
    builder.build().expect("build")
}

/// The offset a timestamp query must answer: the first record whose
/// timestamp is at or after `timestamp`.
fn expected_offset(timestamp: i64) -> Option<i64> {
    (0..BATCHES * PER_BATCH).find(|offset| timestamp_of(*offset) >= timestamp)
}

#[tokio::test]
async fn timestamp_finds_the_first_record_at_or_after_it() -> anyhow::Result<()> {
    // A small index interval and small segments: the lookup goes through
    // several segments and several index entries per segment.
    let server = Standalone::start_temp(&["--index-interval-bytes", "200"])?;
    let topic = "times";
    let config = v1::TopicConfig {
        // The timestamps are from 1970: keep them.
        retention_ms: Some(-1),
        segment_bytes: Some(1024),
        ..Default::default()
    };
    server.create_topic(topic, 1, Some(config)).await?;
    let mut client = server.data().await?;
    assert_eq!(
        list_offset(&mut client, topic, 0, Spec::Timestamp(0)).await?,
        None,
        "an empty partition has no offset for any timestamp"
    );
    for n in 0..BATCHES {
        let codec = Compression::ALL[(n as usize) % Compression::ALL.len()];
        produce(&mut client, topic, 0, batch(n * PER_BATCH, codec)).await?;
    }
    let segments = server
        .admin()
        .await?
        .describe_topic(v1::DescribeTopicRequest { name: topic.into() })
        .await?
        .into_inner()
        .partitions[0]
        .segments
        .len();
    assert!(
        segments >= 3,
        "the records span several segments ({segments})"
    );

    check_every_timestamp(&mut client, topic).await?;
    // After a restart the sealed segments' indexes are read back from storage.
    let server = server.restart().await?;
    let mut client = server.data().await?;
    check_every_timestamp(&mut client, topic).await?;
    assert_eq!(earliest(&mut client, topic, 0).await?, 0);
    assert_eq!(latest(&mut client, topic, 0).await?, BATCHES * PER_BATCH);
    Ok(())
}

async fn check_every_timestamp(
    client: &mut v1::sluice_client::SluiceClient<tonic::transport::Channel>,
    topic: &str,
) -> anyhow::Result<()> {
    let last = BATCHES * PER_BATCH - 1;
    let mut queries: Vec<i64> = vec![i64::MIN, -1, 0, 1, 999];
    for offset in 0..=last {
        let t = timestamp_of(offset);
        queries.extend([t - 1, t, t + 1]);
    }
    queries.extend([
        timestamp_of(last) + 1,
        timestamp_of(last) + 1_000_000,
        i64::MAX,
    ]);
    for timestamp in queries {
        let request = v1::ListOffsetsRequest {
            topic: topic.into(),
            partition: 0,
            spec: Some(Spec::Timestamp(timestamp)),
        };
        let response = client.list_offsets(request).await?.into_inner();
        let want = expected_offset(timestamp);
        assert_eq!(response.offset, want, "offset for timestamp {timestamp}");
        match want {
            Some(offset) => assert_eq!(
                response.timestamp,
                timestamp_of(offset),
                "timestamp of the record found for {timestamp}"
            ),
            None => assert_eq!(response.timestamp, -1),
        }
    }
    Ok(())
}

#[tokio::test]
async fn earliest_and_latest_follow_the_log() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    let topic = "ends";
    server.create_topic(topic, 2, None).await?;
    let mut client = server.data().await?;
    for partition in 0..2 {
        assert_eq!(earliest(&mut client, topic, partition).await?, 0);
        assert_eq!(latest(&mut client, topic, partition).await?, 0);
    }
    produce(&mut client, topic, 1, batch(0, Compression::Snappy)).await?;
    produce(&mut client, topic, 1, batch(0, Compression::None)).await?;
    assert_eq!(earliest(&mut client, topic, 1).await?, 0);
    assert_eq!(latest(&mut client, topic, 1).await?, 2 * PER_BATCH);
    assert_eq!(
        latest(&mut client, topic, 0).await?,
        0,
        "partition 0 untouched"
    );
    Ok(())
}

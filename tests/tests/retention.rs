//! Retention: whole old segments go by size and by age; the earliest offset
//! moves up, reads below it are out of range (naming the earliest offset),
//! the files leave the disk, and everything from the earliest offset on
//! still reads contiguously.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sluice_proto::v1;
use sluice_record::{BatchBuilder, Compression};
use sluice_tests::{
    DEADLINE, Standalone, earliest, error_code, fetch_request, files_ending, produce, read_all,
    wait_for,
};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn value(offset: i64) -> String {
    format!("record-{offset}-{}", "p".repeat(200))
}

fn one_record(timestamp: i64, offset: i64) -> Bytes {
    let mut builder = BatchBuilder::new(Compression::None);
    builder
        .push(timestamp, None, Some(value(offset).as_bytes()), &[])
        .expect("push");
    builder.build().expect("build")
}

async fn describe_partition(
    server: &Standalone,
    topic: &str,
) -> anyhow::Result<v1::PartitionDescription> {
    let description = server
        .admin()
        .await?
        .describe_topic(v1::DescribeTopicRequest { name: topic.into() })
        .await?
        .into_inner();
    Ok(description
        .partitions
        .into_iter()
        .next()
        .expect("partition 0"))
}

/// Base offsets of the segment files of partition 0 on disk.
fn segment_files(server: &Standalone, topic: &str) -> Vec<i64> {
    files_ending(&server.partition_dir(topic, 0), ".log")
        .iter()
        .map(|name| {
            name[..20]
                .parse()
                .expect("segment file name starts with its base offset")
        })
        .collect()
}

/// Waits until retention is done (`done` holds for the partition, and
/// every segment the log lists, and no other, is on disk), then checks
/// that reads below the earliest offset are out of range and name it, and
/// that everything from it to `end` reads contiguously with the right values.
async fn check_after_retention(
    server: &Standalone,
    topic: &str,
    done: impl Fn(&v1::PartitionDescription) -> bool,
    end: i64,
) -> anyhow::Result<v1::PartitionDescription> {
    let mut client = server.data().await?;
    let settled = wait_for("retention to delete old segments", DEADLINE, || async {
        let mut client = server.data().await?;
        let start = earliest(&mut client, topic, 0).await?;
        let partition = describe_partition(server, topic).await?;
        let listed: Vec<i64> = partition.segments.iter().map(|s| s.base_offset).collect();
        let settled = done(&partition)
            && listed.first() == Some(&start)
            && segment_files(server, topic) == listed;
        Ok(settled.then_some(partition))
    })
    .await?;
    let start = settled.start_offset;
    assert!(start > 0);
    assert_eq!(earliest(&mut client, topic, 0).await?, start);
    let index_files = files_ending(&server.partition_dir(topic, 0), ".idx");
    assert!(
        index_files
            .iter()
            .all(|name| name[..20].parse::<i64>().unwrap_or(-1) >= start),
        "index files of deleted segments are gone too: {index_files:?}"
    );

    for below in [0, start - 1] {
        let status = client
            .fetch(fetch_request(topic, 0, below))
            .await
            .expect_err("a fetch below the earliest offset must fail");
        assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
        assert_eq!(error_code(&status), Some("OFFSET_OUT_OF_RANGE"));
        assert!(
            status
                .message()
                .contains(&format!("earliest offset is {start}")),
            "the error names the earliest offset {start}: {}",
            status.message()
        );
    }

    let records = read_all(&mut client, topic, 0, start).await?;
    sluice_tests::assert_contiguous("after retention", start, records.iter().map(|r| r.0));
    assert_eq!(
        records.last().map(|r| r.0),
        Some(end - 1),
        "the log still ends at {end}"
    );
    for (offset, stored) in &records {
        assert_eq!(
            String::from_utf8_lossy(stored),
            value(*offset),
            "offset {offset}"
        );
    }
    Ok(settled)
}

#[tokio::test]
async fn retention_by_size_drops_the_oldest_segments() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&["--retention-check-ms", "50"])?;
    let topic = "by-size";
    let limit = 4096u64;
    let config = v1::TopicConfig {
        retention_ms: Some(-1),
        retention_bytes: Some(limit as i64),
        segment_bytes: Some(1024),
        ..Default::default()
    };
    server.create_topic(topic, 1, Some(config)).await?;
    let mut client = server.data().await?;
    let produced = 120;
    for offset in 0..produced {
        produce(&mut client, topic, 0, one_record(now_ms(), offset)).await?;
    }
    // The size rule's fixed point: dropping the oldest remaining sealed
    // segment would leave less than `limit` bytes.
    let size_rule_done = |partition: &v1::PartitionDescription| {
        let total: u64 = partition.segments.iter().map(|s| s.bytes).sum();
        partition
            .segments
            .first()
            .is_none_or(|first| !first.sealed || total - first.bytes < limit)
    };
    let partition = check_after_retention(&server, topic, size_rule_done, produced).await?;
    let sizes: Vec<u64> = partition.segments.iter().map(|s| s.bytes).collect();
    let total: u64 = sizes.iter().sum();
    assert!(
        total >= limit,
        "{total} bytes kept, below the {limit} limit: {sizes:?}"
    );
    assert!(
        partition.segments.len() < 30,
        "far fewer segments than ~30 KB of 1 KiB segments: {sizes:?}"
    );

    // Writing goes on at the next offset.
    let response = produce(&mut client, topic, 0, one_record(now_ms(), produced)).await?;
    assert_eq!(response.base_offset, produced);
    Ok(())
}

#[tokio::test]
async fn retention_by_age_drops_segments_of_old_records() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&["--retention-check-ms", "50"])?;
    let topic = "by-age";
    let config = v1::TopicConfig {
        retention_ms: Some(60_000),
        retention_bytes: Some(-1),
        segment_bytes: Some(1024),
        ..Default::default()
    };
    server.create_topic(topic, 1, Some(config)).await?;
    let mut client = server.data().await?;
    let hour_ago = now_ms() - 3_600_000;
    let old = 40;
    for offset in 0..old {
        produce(&mut client, topic, 0, one_record(hour_ago + offset, offset)).await?;
    }
    let new_since = now_ms();
    let produced = 80;
    for offset in old..produced {
        produce(&mut client, topic, 0, one_record(now_ms(), offset)).await?;
    }
    // Done when no segment holds only hour-old records.
    let age_rule_done = |partition: &v1::PartitionDescription| {
        partition
            .segments
            .iter()
            .all(|s| s.max_timestamp >= new_since)
    };
    let partition = check_after_retention(&server, topic, age_rule_done, produced).await?;
    assert!(
        partition.start_offset <= old,
        "records younger than the retention were deleted: the earliest offset is {}",
        partition.start_offset
    );
    // Everything recent is still there.
    let recent = read_all(&mut client, topic, 0, old).await?;
    assert_eq!(recent.len() as i64, produced - old);
    Ok(())
}

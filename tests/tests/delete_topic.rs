//! Deleting a topic: its data leaves the disk, readers waiting on it are
//! told, and a new topic of the same name starts empty at offset 0, also
//! after a restart.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_proto::v1;
use sluice_record::{BatchBuilder, Compression};
use sluice_tests::{
    DEADLINE, Standalone, earliest, error_code, fetch_request, latest, produce, read_all, wait_for,
};

fn batch(values: &[&str]) -> Bytes {
    let mut builder = BatchBuilder::new(Compression::None);
    for value in values {
        builder
            .push(1_700_000_000_000, None, Some(value.as_bytes()), &[])
            .expect("push");
    }
    builder.build().expect("build")
}

fn no_retention() -> Option<v1::TopicConfig> {
    Some(v1::TopicConfig {
        retention_ms: Some(-1),
        ..Default::default()
    })
}

async fn delete(server: &Standalone, topic: &str) -> anyhow::Result<()> {
    server
        .admin()
        .await?
        .delete_topic(v1::DeleteTopicRequest { name: topic.into() })
        .await?;
    Ok(())
}

async fn topic_id(server: &Standalone, topic: &str) -> anyhow::Result<String> {
    Ok(server
        .admin()
        .await?
        .describe_topic(v1::DescribeTopicRequest { name: topic.into() })
        .await?
        .into_inner()
        .id)
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn deleting_a_topic_removes_its_data_and_a_new_one_starts_at_zero() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&["--segment-bytes", "1024"])?;
    let topic = "doomed";
    let neighbour = "neighbour";
    server.create_topic(topic, 2, no_retention()).await?;
    server.create_topic(neighbour, 1, no_retention()).await?;
    let mut client = server.data().await?;
    let padding = "d".repeat(300);
    for n in 0..20 {
        let value = format!("old-{n}-{padding}");
        produce(&mut client, topic, n % 2, batch(&[&value])).await?;
    }
    produce(&mut client, neighbour, 0, batch(&["stays"])).await?;
    let old_id = topic_id(&server, topic).await?;
    let topic_dir = server.topic_dir(topic);
    assert!(
        files_under(&topic_dir).len() > 4,
        "the topic has segments and checkpoints on disk"
    );

    delete(&server, topic).await?;
    wait_for("the deleted topic's files to go", DEADLINE, || {
        let files = files_under(&topic_dir);
        async move { Ok(files.is_empty().then_some(())) }
    })
    .await?;
    let status = client
        .fetch(fetch_request(topic, 0, 0))
        .await
        .expect_err("a deleted topic cannot be read");
    assert_eq!(error_code(&status), Some("UNKNOWN_TOPIC"));

    server.create_topic(topic, 2, no_retention()).await?;
    assert_ne!(topic_id(&server, topic).await?, old_id, "a new incarnation");
    for partition in 0..2 {
        assert_eq!(earliest(&mut client, topic, partition).await?, 0);
        assert_eq!(latest(&mut client, topic, partition).await?, 0);
        let response = produce(&mut client, topic, partition, batch(&["new"])).await?;
        assert_eq!(response.base_offset, 0, "the new topic starts at offset 0");
        assert_eq!(
            read_all(&mut client, topic, partition, 0).await?,
            vec![(0, b"new".to_vec())],
            "partition {partition} holds only the new topic's data"
        );
    }
    assert_eq!(
        read_all(&mut client, neighbour, 0, 0).await?,
        vec![(0, b"stays".to_vec())],
        "other topics are untouched"
    );

    // The old incarnation does not come back after a restart either.
    let server = server.restart().await?;
    let mut client = server.data().await?;
    for partition in 0..2 {
        assert_eq!(
            read_all(&mut client, topic, partition, 0).await?,
            vec![(0, b"new".to_vec())],
            "partition {partition} after a restart"
        );
    }
    Ok(())
}

#[tokio::test]
async fn deleting_a_topic_leaves_no_directory_behind() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    let topic = "tidy";
    server.create_topic(topic, 3, None).await?;
    let mut client = server.data().await?;
    for partition in 0..3 {
        produce(&mut client, topic, partition, batch(&["x"])).await?;
    }
    let topic_dir = server.topic_dir(topic);
    assert!(topic_dir.is_dir());
    delete(&server, topic).await?;
    wait_for("the deleted topic's files to go", DEADLINE, || {
        let files = files_under(&topic_dir);
        async move { Ok(files.is_empty().then_some(())) }
    })
    .await?;
    // The directory goes with the files, not later.
    wait_for(
        "the deleted topic's directory to go",
        Duration::from_secs(5),
        || {
            let exists = topic_dir.exists();
            async move { Ok((!exists).then_some(())) }
        },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_deleted_topic_stays_deleted_after_a_restart() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    server.create_topic("gone", 1, None).await?;
    server.create_topic("kept", 1, None).await?;
    let mut client = server.data().await?;
    produce(&mut client, "gone", 0, batch(&["x"])).await?;
    delete(&server, "gone").await?;
    let server = server.restart().await?;
    let topics: Vec<String> = server
        .admin()
        .await?
        .list_topics(v1::ListTopicsRequest {})
        .await?
        .into_inner()
        .topics
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(topics, vec!["kept".to_owned()]);
    let mut client = server.data().await?;
    let status = produce(&mut client, "gone", 0, batch(&["x"]))
        .await
        .expect_err("the deleted topic is gone");
    assert_eq!(error_code(&status), Some("UNKNOWN_TOPIC"));
    Ok(())
}

#[tokio::test]
async fn a_fetch_waiting_on_a_deleted_topic_is_told_at_once() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    let topic = "vanishing";
    server.create_topic(topic, 1, None).await?;
    let mut fetcher = server.data().await?;
    let mut request = fetch_request(topic, 0, 0);
    request.max_wait_ms = 30_000;
    let mut fetch = Box::pin(fetcher.fetch(request));
    let early = tokio::time::timeout(Duration::from_millis(200), &mut fetch).await;
    assert!(early.is_err(), "the fetch should be waiting: {early:?}");
    let deleted_at = Instant::now();
    delete(&server, topic).await?;
    let result = tokio::time::timeout(Duration::from_secs(10), fetch)
        .await
        .expect("the waiting fetch was not answered after the topic was deleted");
    let status = result.expect_err("a deleted topic has no data to return");
    assert_eq!(error_code(&status), Some("UNKNOWN_TOPIC"), "{status:?}");
    assert!(deleted_at.elapsed() < Duration::from_secs(5));
    Ok(())
}

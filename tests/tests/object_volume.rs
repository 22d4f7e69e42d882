//! Standalone on an object-store volume (`file://`, object_store's local
//! file system: no append, one immutable chunk object per flush): produce
//! across many segment rolls, see sealed segments merged into one object each
//! (their chunks deleted), restart, and read every message back.

use std::path::Path;
use std::time::Duration;

use sluice_proto::v1;
use sluice_record::{BatchBuilder, Compression};
use sluice_tests::{Standalone, read_all, wait_for};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(name) = path.file_name() {
                found.push(name.to_string_lossy().into_owned());
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_segments_are_merged_after_sealing_and_survive_restart() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let objects = root.path().join("objects");
    std::fs::create_dir_all(&objects)?;
    let url = format!("file://{}", objects.display());
    let server = Standalone::start(
        &root.path().join("standalone"),
        &["--volume", &url, "--segment-bytes", "16384"],
    )?;
    server.create_topic("chunks", 1, None).await?;
    let mut client = server.data().await?;

    let mut expected = Vec::new();
    for request in 0..64u32 {
        let mut builder = BatchBuilder::new(Compression::None);
        for i in 0..4u32 {
            let value = format!("{request}-{i}-").repeat(60).into_bytes();
            builder.push(now_ms(), None, Some(&value), &[])?;
            expected.push(value);
        }
        let produce = v1::ProduceRequest {
            topic: "chunks".into(),
            target: Some(v1::produce_request::Target::Partition(0)),
            records: builder.build()?,
            acks: v1::AckMode::Durable as i32,
        };
        client.produce(produce).await?;
    }

    // Sealed segments are merged in the background: eventually at most the
    // open segment still has chunk objects (`.log.NNNNNN`).
    let partition_dir = objects.join("chunks").join("0");
    let merged = wait_for(
        "sealed segments to be merged",
        Duration::from_secs(30),
        || {
            let files = files_under(&partition_dir);
            async move {
                let chunked: std::collections::BTreeSet<&str> = files
                    .iter()
                    .filter_map(|f| f.split_once(".log.").map(|(stem, _)| stem))
                    .collect();
                let whole = files.iter().filter(|f| f.ends_with(".log")).count();
                Ok((chunked.len() <= 1 && whole >= 3).then_some(whole))
            }
        },
    )
    .await?;
    assert!(
        merged >= 3,
        "expected several merged segments, found {merged}"
    );

    let server = server.restart().await?;
    let mut client = server.data().await?;
    let records = read_all(&mut client, "chunks", 0, 0).await?;
    assert_eq!(records.len(), expected.len());
    for (i, ((offset, value), expected)) in records.iter().zip(&expected).enumerate() {
        assert_eq!(*offset, i as i64);
        assert_eq!(value, expected, "message at offset {offset} differs");
    }
    Ok(())
}

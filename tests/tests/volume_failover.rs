//! Failover between storage volumes: one of two volumes is a 2 MiB tmpfs
//! that fills up mid-load, so segment writes there fail with ENOSPC. The
//! partition abandons the failing segment at its last checkpoint, continues
//! on the other volume, and every acknowledged message is still there, once.
//!
//! Mounting a tmpfs needs root (CI runs as root); elsewhere the test says so
//! and passes without running.

use std::path::Path;
use std::process::Command;

use sluice_proto::v1;
use sluice_record::{BatchBuilder, Compression};
use sluice_tests::{Standalone, read_all};

/// A tmpfs mount that is unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .ok()?;
        status.success().then_some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_volume_fails_over_without_losing_acknowledged_messages() -> anyhow::Result<()> {
    let Some(small) = Tmpfs::mount("2m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root); this test runs in CI");
        return Ok(());
    };
    let root = tempfile::tempdir()?;
    let healthy = root.path().join("healthy");
    let healthy_url = healthy.to_string_lossy().into_owned();
    let small_url = small.path().to_string_lossy().into_owned();
    // The first volume holds checkpoints and must stay healthy; segments go
    // to either at random.
    let server = Standalone::start(
        &root.path().join("standalone"),
        &[
            "--volume",
            &healthy_url,
            "--volume",
            &small_url,
            "--segment-bytes",
            "65536",
        ],
    )?;
    server.create_topic("spread", 1, None).await?;
    let mut client = server.data().await?;

    // 12 MiB in 4 KiB messages: far more than the tmpfs holds.
    let mut acknowledged = Vec::new();
    let value = |i: u32| format!("message-{i:06}-").repeat(240).into_bytes();
    // Current timestamps: age-based retention would delete segments of old ones.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    for request in 0..384u32 {
        let mut builder = BatchBuilder::new(Compression::None);
        let ids: Vec<u32> = (request * 8..request * 8 + 8).collect();
        for id in &ids {
            builder.push(now_ms, None, Some(&value(*id)), &[])?;
        }
        let produce = v1::ProduceRequest {
            topic: "spread".into(),
            target: Some(v1::produce_request::Target::Partition(0)),
            records: builder.build()?,
            acks: v1::AckMode::Durable as i32,
        };
        let response = client.produce(produce).await?.into_inner();
        assert_eq!(response.last_offset - response.base_offset, 7);
        acknowledged.extend(ids);
    }

    let log = server.log();
    assert!(
        log.contains("segment write failed"),
        "the small volume never failed a write, so nothing was tested; log:\n{log}"
    );
    let records = read_all(&mut client, "spread", 0, 0).await?;
    let offsets: Vec<i64> = records.iter().map(|(offset, _)| *offset).collect();
    assert_eq!(
        offsets,
        (0..acknowledged.len() as i64).collect::<Vec<_>>(),
        "offsets must be contiguous from 0"
    );
    for (id, (_, stored)) in acknowledged.iter().zip(&records) {
        assert_eq!(stored, &value(*id), "message {id} differs");
    }

    // Segments landed on both volumes.
    let description = server
        .admin()
        .await?
        .describe_topic(v1::DescribeTopicRequest {
            name: "spread".into(),
        })
        .await?
        .into_inner();
    let volumes: std::collections::BTreeSet<String> = description.partitions[0]
        .segments
        .iter()
        .map(|s| s.volume.clone())
        .collect();
    assert!(
        volumes.contains(&small_url) && volumes.contains(&healthy_url),
        "segments on {volumes:?}"
    );
    Ok(())
}

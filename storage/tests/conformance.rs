//! One conformance test body, run against every kind of volume: local
//! directory, `file://`, `memory://`, S3 on Ceph RGW, S3 on moto, and HDFS.
//!
//! The remote servers are started by `scripts/testenv/servers.sh up DIR`
//! (the test command does it and exports `DIR/env`). Without them these
//! tests say so and pass, unless `SLUICE_TEST_SERVERS_REQUIRED` is set, as
//! it is in CI, where a missing server fails them.

use std::sync::Arc;

use bytes::Bytes;
use sluice_storage::{SegmentLayout, StorageError, Volume, VolumeOptions, open_volume_with};

const SEGMENT: &str = "orders/0/00000000000000000000-1.log";
const CHECKPOINTS: &str = "orders/0/checkpoint";

fn bufs(parts: &[&'static [u8]]) -> Vec<Bytes> {
    parts.iter().map(|part| Bytes::from_static(part)).collect()
}

/// The contract every volume must keep. Each section leaves the volume as it found it.
async fn conformance(url: &str, options: &VolumeOptions) {
    let volume = open_volume_with(url, options).await.expect("open");
    segments(&volume).await;
    empty_segment(&volume).await;
    checkpoints(&volume).await;
    // Sixteen writers, each with its own client, as if in sixteen processes.
    let mut writers = Vec::new();
    for _ in 0..16 {
        writers.push(open_volume_with(url, options).await.expect("open"));
    }
    concurrent_checkpoints(&volume, writers).await;
    listing_and_deletes(&volume).await;
    request_counts(&volume).await;
}

/// Every kind counts one PUT per create-if-absent, one GET per whole read and
/// one LIST per listing: the numbers a cloud bill is made of.
async fn request_counts(volume: &Arc<dyn Volume>) {
    let path = format!("{CHECKPOINTS}/00000000000000000042");
    let before = volume.stats();
    volume
        .put_if_absent(&path, Bytes::from_static(b"counted"))
        .await
        .expect("put");
    volume.get(&path).await.expect("get");
    volume.list(CHECKPOINTS).await.expect("list");
    let after = volume.stats();
    assert_eq!(after.puts - before.puts, 1, "{before:?} -> {after:?}");
    assert_eq!(after.bytes_written - before.bytes_written, 7);
    assert_eq!(after.gets - before.gets, 1, "{before:?} -> {after:?}");
    assert_eq!(after.bytes_read - before.bytes_read, 7);
    assert_eq!(after.lists - before.lists, 1, "{before:?} -> {after:?}");
    volume.delete(&path).await.expect("delete");
    assert_eq!(volume.stats().deletes - after.deletes, 1);
}

/// Reads every sub-range of the segment and compares it with `expected`.
async fn check_all_ranges(volume: &Arc<dyn Volume>, layout: &SegmentLayout, expected: &[u8]) {
    let len = expected.len() as u64;
    assert_eq!(layout.len(), len);
    for start in 0..=len {
        for end in start..=len {
            let got = volume
                .read_segment(SEGMENT, layout, start..end)
                .await
                .unwrap_or_else(|error| panic!("read {start}..{end} of {layout:?}: {error}"));
            assert_eq!(
                &got[..],
                &expected[start as usize..end as usize],
                "{start}..{end}"
            );
        }
    }
    let inverted = std::ops::Range { start: 3, end: 2 };
    for range in [0..len + 1, len..len + 1, len + 5..len + 9, inverted] {
        let error = volume
            .read_segment(SEGMENT, layout, range.clone())
            .await
            .expect_err("out of bounds");
        assert!(
            matches!(error, StorageError::OutOfBounds { len: l, .. } if l == len),
            "{range:?}: {error}"
        );
    }
}

async fn segments(volume: &Arc<dyn Volume>) {
    let mut writer = volume
        .create_segment(SEGMENT)
        .await
        .expect("create segment");
    assert!(writer.layout().is_empty());
    let mut expected = Vec::new();
    let appends: [&[&'static [u8]]; 4] = [
        &[b"hello ", b"world"],
        &[b"!", b"", b"abc"],
        &[],
        &[b"x", b"yz", b"0123"],
    ];
    let mut layout = writer.layout();
    for append in appends {
        layout = writer.append(bufs(append)).await.expect("append");
        for part in append {
            expected.extend_from_slice(part);
        }
        assert_eq!(layout.len(), expected.len() as u64);
        assert_eq!(writer.layout(), layout);
        // What an append returned is readable at once, by anyone holding the layout.
        let got = volume
            .read_segment(SEGMENT, &layout, 0..layout.len())
            .await
            .expect("read");
        assert_eq!(&got[..], &expected[..]);
    }
    check_all_ranges(volume, &layout, &expected).await;

    let again = volume
        .create_segment(SEGMENT)
        .await
        .expect_err("second create");
    assert!(
        matches!(again, StorageError::AlreadyExists { .. }),
        "{again}"
    );

    let sealed = writer.seal().await.expect("seal");
    assert_eq!(sealed, layout);

    let merged = volume.merge_segment(SEGMENT, &sealed).await.expect("merge");
    assert_eq!(merged.len(), sealed.len());
    match &sealed {
        SegmentLayout::Chunks { lens } => {
            assert_eq!(lens, &vec![11, 4, 7]);
            assert_eq!(merged, SegmentLayout::Object { len: 22 });
        }
        other => assert_eq!(&merged, other),
    }
    check_all_ranges(volume, &merged, &expected).await;
    // Merging again (as after a crash before the checkpoint) is accepted.
    assert_eq!(
        volume
            .merge_segment(SEGMENT, &sealed)
            .await
            .expect("merge again"),
        merged
    );

    volume
        .delete_chunks(SEGMENT, &sealed)
        .await
        .expect("delete chunks");
    volume
        .delete_chunks(SEGMENT, &sealed)
        .await
        .expect("delete chunks twice");
    check_all_ranges(volume, &merged, &expected).await;
    assert_eq!(
        volume.list("orders/0").await.expect("list"),
        vec![SEGMENT.to_owned()]
    );
    if let SegmentLayout::Chunks { .. } = sealed {
        let gone = volume
            .read_segment(SEGMENT, &sealed, 0..1)
            .await
            .expect_err("chunks gone");
        assert!(matches!(gone, StorageError::NotFound { .. }), "{gone}");
    }
    let taken = volume
        .create_segment(SEGMENT)
        .await
        .expect_err("create over merged");
    assert!(
        matches!(taken, StorageError::AlreadyExists { .. }),
        "{taken}"
    );

    volume.delete(SEGMENT).await.expect("delete segment");
    assert!(volume.list("orders").await.expect("list").is_empty());
}

async fn empty_segment(volume: &Arc<dyn Volume>) {
    let path = "orders/0/00000000000000000100-2.log";
    let writer = volume.create_segment(path).await.expect("create");
    let sealed = writer.seal().await.expect("seal");
    assert!(sealed.is_empty());
    let got = volume
        .read_segment(path, &sealed, 0..0)
        .await
        .expect("empty read");
    assert!(got.is_empty());
    let merged = volume.merge_segment(path, &sealed).await.expect("merge");
    assert!(merged.is_empty());
    volume
        .delete_chunks(path, &sealed)
        .await
        .expect("delete chunks");
    volume.delete(path).await.expect("delete");
}

async fn checkpoints(volume: &Arc<dyn Volume>) {
    let path = format!("{CHECKPOINTS}/00000000000000000001");
    volume
        .put_if_absent(&path, Bytes::from_static(b"one"))
        .await
        .expect("first put");
    let fenced = volume
        .put_if_absent(&path, Bytes::from_static(b"two"))
        .await
        .expect_err("second put");
    assert!(
        matches!(fenced, StorageError::AlreadyExists { .. }),
        "{fenced}"
    );
    assert!(!fenced.is_retriable());
    assert_eq!(
        volume.get(&path).await.expect("get"),
        Bytes::from_static(b"one")
    );

    let missing = volume
        .get(&format!("{CHECKPOINTS}/00000000000000000002"))
        .await;
    assert!(
        matches!(missing, Err(StorageError::NotFound { .. })),
        "{missing:?}"
    );

    volume.delete(&path).await.expect("delete");
    let deleted = volume.get(&path).await;
    assert!(
        matches!(deleted, Err(StorageError::NotFound { .. })),
        "{deleted:?}"
    );
    volume.delete(&path).await.expect("delete absent");
}

async fn concurrent_checkpoints(volume: &Arc<dyn Volume>, writers: Vec<Arc<dyn Volume>>) {
    let path = format!("{CHECKPOINTS}/00000000000000000007");
    let tasks: Vec<_> = writers
        .into_iter()
        .enumerate()
        .map(|(writer, volume)| {
            let path = path.clone();
            tokio::spawn(async move {
                let content = Bytes::from(format!("checkpoint from writer {writer}"));
                (content.clone(), volume.put_if_absent(&path, content).await)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (content, result) = task.await.expect("task");
        match result {
            Ok(()) => winners.push(content),
            Err(StorageError::AlreadyExists { .. }) => {}
            Err(error) => panic!("unexpected error: {error}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer must win the fence");
    assert_eq!(volume.get(&path).await.expect("get"), winners[0]);
    assert_eq!(
        volume.list(CHECKPOINTS).await.expect("list"),
        vec![path.clone()]
    );
    volume.delete(&path).await.expect("delete");
}

async fn listing_and_deletes(volume: &Arc<dyn Volume>) {
    let keys = [
        "orders/0/checkpoint/00000000000000000003",
        "orders/0/checkpoint/00000000000000000001",
        "orders/0/00000000000000000000-1.idx",
        "orders/0/checkpoint/00000000000000000002",
        "orders/01/checkpoint/00000000000000000001",
        "payments/0/checkpoint/00000000000000000001",
    ];
    for key in keys {
        volume
            .put_if_absent(key, Bytes::from(key))
            .await
            .expect("put");
    }
    assert_eq!(
        volume.list(CHECKPOINTS).await.expect("list"),
        vec![
            "orders/0/checkpoint/00000000000000000001",
            "orders/0/checkpoint/00000000000000000002",
            "orders/0/checkpoint/00000000000000000003",
        ]
    );
    assert_eq!(
        volume.list("orders/0").await.expect("list"),
        vec![
            "orders/0/00000000000000000000-1.idx",
            "orders/0/checkpoint/00000000000000000001",
            "orders/0/checkpoint/00000000000000000002",
            "orders/0/checkpoint/00000000000000000003",
        ]
    );
    let mut all: Vec<String> = keys.iter().map(|key| (*key).to_owned()).collect();
    all.sort();
    assert_eq!(volume.list("").await.expect("list all"), all);
    assert!(
        volume
            .list("orders/0/check")
            .await
            .expect("list")
            .is_empty()
    );
    assert!(volume.list("nothing/here").await.expect("list").is_empty());
    assert!(volume.list(keys[0]).await.expect("list a file").is_empty());

    volume.delete(keys[0]).await.expect("delete");
    assert_eq!(volume.list(CHECKPOINTS).await.expect("list").len(), 2);

    volume
        .delete_prefix("orders/0")
        .await
        .expect("delete prefix");
    assert!(volume.list("orders/0").await.expect("list").is_empty());
    assert_eq!(
        volume.list("").await.expect("list"),
        vec![
            "orders/01/checkpoint/00000000000000000001",
            "payments/0/checkpoint/00000000000000000001",
        ]
    );
    volume
        .delete_prefix("orders/0")
        .await
        .expect("delete missing prefix");
    assert!(
        volume.delete_prefix("").await.is_err(),
        "the whole volume is never deleted"
    );
    volume.delete_prefix("orders").await.expect("delete prefix");
    volume
        .delete_prefix("payments")
        .await
        .expect("delete prefix");
    assert!(volume.list("").await.expect("list").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_directory_volume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = dir.path().join("volume").display().to_string();
    conformance(&url, &VolumeOptions::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn object_store_local_filesystem_volume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}", dir.path().join("volume").display());
    conformance(&url, &VolumeOptions::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn object_store_in_memory_volume() {
    conformance("memory://conformance", &VolumeOptions::new()).await;
}

/// The address of a test server from the environment, or `None` (the test
/// is skipped) when the servers were not started, unless they are required.
fn server(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) => Some(value),
        Err(_) if std::env::var_os("SLUICE_TEST_SERVERS_REQUIRED").is_some() => {
            panic!("{var} is not set: start the servers with scripts/testenv/servers.sh up DIR")
        }
        Err(_) => {
            eprintln!("skipped: {var} is not set (scripts/testenv/servers.sh starts the servers)");
            None
        }
    }
}

/// A volume path no other test run uses.
fn unique(name: &str) -> String {
    format!("{name}-{}-{:08x}", std::process::id(), rand_u32())
}

fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos ^ std::process::id().rotate_left(16)
}

fn s3_options(endpoint: &str, key: &str, secret: &str) -> VolumeOptions {
    [
        ("endpoint", endpoint),
        ("access_key_id", key),
        ("secret_access_key", secret),
        ("region", "us-east-1"),
        ("allow_http", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_volume_on_ceph_rgw() {
    let Some(endpoint) = server("SLUICE_TEST_RGW_ENDPOINT") else {
        return;
    };
    let key = std::env::var("SLUICE_TEST_RGW_KEY").unwrap_or_else(|_| "RGWTESTKEY".into());
    let secret = std::env::var("SLUICE_TEST_RGW_SECRET").unwrap_or_else(|_| "RGWTESTSECRET".into());
    let url = format!("s3://sluice-test/{}", unique("conformance"));
    conformance(&url, &s3_options(&endpoint, &key, &secret)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_volume_on_moto() {
    let Some(endpoint) = server("SLUICE_TEST_MOTO_ENDPOINT") else {
        return;
    };
    let url = format!("s3://sluice-test/{}", unique("conformance"));
    conformance(&url, &s3_options(&endpoint, "testing", "testing")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hdfs_volume() {
    let Some(namenode) = server("SLUICE_TEST_HDFS") else {
        return;
    };
    let url = format!("{namenode}/{}", unique("conformance"));
    conformance(&url, &VolumeOptions::new()).await;
}

/// Bytes `start..start + len` of a segment whose byte at position p is p mod 251.
fn pattern(start: u64, len: u64) -> Bytes {
    (start..start + len)
        .map(|p| (p % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// HDFS closes a full block without syncing it, so appends sync each block
/// as it fills: appends that end inside, across and exactly on 128 MiB
/// block boundaries all read back, around every boundary.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hdfs_segment_appends_across_block_boundaries() {
    let Some(namenode) = server("SLUICE_TEST_HDFS") else {
        return;
    };
    let url = format!("{namenode}/{}", unique("blocks"));
    let volume = open_volume_with(&url, &VolumeOptions::new())
        .await
        .expect("open");
    const MIB: u64 = 1 << 20;
    let block = 128 * MIB;
    let mut writer = volume.create_segment(SEGMENT).await.expect("create");
    // 100 MiB; then 20 + 80 MiB (the first block ends inside the second
    // buffer); then exactly up to the end of the second block; then 10 bytes.
    let appends: [&[u64]; 4] = [
        &[100 * MIB],
        &[20 * MIB, 80 * MIB],
        &[2 * block - 200 * MIB],
        &[10],
    ];
    let mut end = 0;
    for lens in appends {
        let mut data = Vec::new();
        for len in lens {
            data.push(pattern(end, *len));
            end += len;
        }
        let layout = writer.append(data).await.expect("append");
        assert_eq!(layout.len(), end);
    }
    let check = |layout: SegmentLayout| {
        let volume = Arc::clone(&volume);
        async move {
            for range in [
                0..16,
                100 * MIB - 5..100 * MIB + 5,
                block - 10..block + 10,
                2 * block - 16..2 * block + 10,
            ] {
                let got = volume
                    .read_segment(SEGMENT, &layout, range.clone())
                    .await
                    .unwrap_or_else(|error| panic!("read {range:?}: {error}"));
                assert!(
                    got == pattern(range.start, range.end - range.start),
                    "bytes {range:?} differ"
                );
            }
        }
    };
    check(writer.layout()).await;
    let sealed = writer.seal().await.expect("seal");
    assert_eq!(sealed.len(), 2 * block + 10);
    check(sealed).await;
    volume.delete_prefix("orders").await.expect("delete");
}

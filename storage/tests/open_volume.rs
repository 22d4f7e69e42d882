//! `open_volume`: each URL scheme opens the right kind of volume, and bad URLs say what is supported.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use sluice_storage::{
    SegmentLayout, StorageError, Volume, VolumeOptions, open_volume, open_volume_with,
};

/// Appends one byte to a fresh segment and returns the layout, which tells the volume's kind.
async fn kind_of(volume: &Arc<dyn Volume>) -> SegmentLayout {
    let mut writer = volume
        .create_segment("t/0/segment.log")
        .await
        .expect("create");
    writer
        .append(vec![Bytes::from_static(b"x")])
        .await
        .expect("append")
}

#[tokio::test]
async fn plain_absolute_path_is_a_local_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = dir.path().join("new/volume").display().to_string();
    let volume = open_volume(&url).await.expect("open");
    assert_eq!(volume.url(), url);
    assert!(Path::new(&url).is_dir(), "the directory is created");
    assert_eq!(kind_of(&volume).await, SegmentLayout::File { len: 1 });
}

#[tokio::test]
async fn plain_relative_path_is_a_local_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A relative path from the test's working directory to the temp dir.
    let cwd = std::env::current_dir().expect("cwd");
    let mut relative: PathBuf = cwd
        .components()
        .skip(1)
        .map(|_| Component::ParentDir)
        .collect();
    relative.push(dir.path().strip_prefix("/").expect("absolute temp dir"));
    relative.push("volume");
    let url = relative.display().to_string();
    let volume = open_volume(&url).await.expect("open");
    assert_eq!(volume.url(), url);
    assert_eq!(kind_of(&volume).await, SegmentLayout::File { len: 1 });
    assert!(dir.path().join("volume/t/0/segment.log").is_file());
}

#[tokio::test]
async fn dir_url_is_a_local_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("dir://{}", dir.path().display());
    let volume = open_volume(&url).await.expect("open");
    assert_eq!(volume.url(), url);
    assert_eq!(kind_of(&volume).await, SegmentLayout::File { len: 1 });
}

#[tokio::test]
async fn file_url_is_an_object_store_with_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}", dir.path().join("missing/yet").display());
    let volume = open_volume(&url).await.expect("open");
    assert_eq!(volume.url(), url);
    assert_eq!(
        kind_of(&volume).await,
        SegmentLayout::Chunks { lens: vec![1] }
    );
    assert!(
        dir.path()
            .join("missing/yet/t/0/segment.log.000000")
            .is_file()
    );
}

#[tokio::test]
async fn memory_urls_share_one_store_per_name() {
    let first = open_volume("memory://open-volume-shared")
        .await
        .expect("open");
    let second = open_volume("memory://open-volume-shared")
        .await
        .expect("open");
    let other = open_volume("memory://open-volume-other")
        .await
        .expect("open");
    first
        .put_if_absent("k", Bytes::from_static(b"v"))
        .await
        .expect("put");
    assert_eq!(
        second.get("k").await.expect("shared"),
        Bytes::from_static(b"v")
    );
    assert!(matches!(
        other.get("k").await,
        Err(StorageError::NotFound { .. })
    ));
    assert_eq!(
        kind_of(&other).await,
        SegmentLayout::Chunks { lens: vec![1] }
    );
}

async fn bad_url_message(url: &str) -> String {
    bad_url_message_with(url, &VolumeOptions::new()).await
}

async fn bad_url_message_with(url: &str, options: &VolumeOptions) -> String {
    match open_volume_with(url, options).await {
        Err(error @ StorageError::BadUrl { .. }) => {
            assert!(!error.is_retriable());
            error.to_string()
        }
        Err(other) => panic!("{url}: expected BadUrl, got {other}"),
        Ok(volume) => panic!("{url}: expected BadUrl, opened {volume:?}"),
    }
}

#[tokio::test]
async fn bad_urls_say_what_is_supported() {
    let message = bad_url_message("ftp://host/x").await;
    assert!(message.contains("unknown scheme `ftp`"), "{message}");
    assert!(message.contains("file:///absolute/path"), "{message}");
    assert!(message.contains("s3://bucket/prefix"), "{message}");
    assert!(message.contains("hdfs://namenode:port/path"), "{message}");
    let message = bad_url_message("file://relative/path").await;
    assert!(message.contains("absolute path"), "{message}");
    let message = bad_url_message("dir://relative").await;
    assert!(message.contains("absolute path"), "{message}");
    let message = bad_url_message("").await;
    assert!(message.contains("empty"), "{message}");
}

/// A port nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test]
async fn unreachable_stores_fail_at_open_naming_the_volume() {
    let port = closed_port();
    let options: VolumeOptions = [
        ("endpoint", format!("http://127.0.0.1:{port}")),
        ("allow_http", "true".to_owned()),
        ("access_key_id", "key".to_owned()),
        ("secret_access_key", "secret".to_owned()),
        ("region", "us-east-1".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let message = bad_url_message_with("s3://bucket/prefix", &options).await;
    assert!(message.contains("s3://bucket/prefix"), "{message}");
    assert!(message.contains("did not answer a listing"), "{message}");

    let url = format!("hdfs://127.0.0.1:{port}/sluice");
    let message = bad_url_message(&url).await;
    assert!(message.contains(&url), "{message}");
    assert!(message.contains("cannot reach the NameNode"), "{message}");
}

#[tokio::test]
async fn options_are_checked() {
    let mut options = VolumeOptions::new();
    options.insert("no_such_setting".into(), "1".into());
    let message = bad_url_message_with("s3://bucket/prefix", &options).await;
    assert!(
        message.contains("unknown option `no_such_setting`"),
        "{message}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let url = dir.path().display().to_string();
    let message = bad_url_message_with(&url, &options).await;
    assert!(message.contains("only s3://"), "{message}");
    let message = bad_url_message("s3:///prefix-without-bucket").await;
    assert!(message.contains("BUCKET/PREFIX"), "{message}");
}

//! Properties of the native local directory volume that the conformance body cannot see:
//! keys cannot escape the root, interrupted writes leave nothing visible, bad layouts do not panic.

use std::io;
use std::path::Path;

use bytes::Bytes;
use sluice_storage::{LocalVolume, SegmentLayout, StorageError, Volume};

async fn volume(dir: &Path) -> LocalVolume {
    LocalVolume::open(dir.display().to_string(), dir)
        .await
        .expect("open")
}

fn assert_refused_key<T: std::fmt::Debug>(result: sluice_storage::Result<T>, key: &str) {
    match result {
        Err(error @ StorageError::Io { .. }) => {
            assert!(!error.is_retriable(), "{key}: {error}");
            let StorageError::Io { source, .. } = &error else {
                unreachable!()
            };
            assert_eq!(source.kind(), io::ErrorKind::InvalidInput, "{key}: {error}");
        }
        other => panic!("{key}: expected a refused key, got {other:?}"),
    }
}

#[tokio::test]
async fn keys_cannot_escape_the_root() {
    let outer = tempfile::tempdir().expect("tempdir");
    let root = outer.path().join("volume");
    let volume = volume(&root).await;
    let data = Bytes::from_static(b"x");
    for key in [
        "../escape",
        "/escape",
        "a/../../escape",
        "a//b",
        "./a",
        "a/",
        "",
        "a/.tmp-1",
    ] {
        assert_refused_key(volume.put_if_absent(key, data.clone()).await, key);
        assert_refused_key(volume.get(key).await, key);
        assert_refused_key(volume.create_segment(key).await, key);
        assert_refused_key(volume.delete(key).await, key);
        let layout = SegmentLayout::File { len: 0 };
        assert_refused_key(volume.read_segment(key, &layout, 0..0).await, key);
    }
    for prefix in ["..", "../volume", "/", "a/../.."] {
        assert_refused_key(volume.list(prefix).await, prefix);
        assert_refused_key(volume.delete_prefix(prefix).await, prefix);
    }
    assert!(!outer.path().join("escape").exists());
    assert!(!Path::new("/escape").exists());
    assert!(
        root.exists(),
        "delete_prefix must not have removed the root"
    );
}

#[tokio::test]
async fn interrupted_checkpoint_writes_are_invisible() {
    let dir = tempfile::tempdir().expect("tempdir");
    let volume = volume(dir.path()).await;
    let checkpoint = "orders/0/checkpoint/00000000000000000001";
    volume
        .put_if_absent(checkpoint, Bytes::from_static(b"one"))
        .await
        .expect("put");

    // A crash between writing the temp file and linking it leaves this behind.
    let staging = dir.path().join("orders/0/checkpoint/.tmp-00000000deadbeef");
    std::fs::write(&staging, b"torn checkp").expect("write staging file");

    assert_eq!(
        volume.list("orders").await.expect("list"),
        vec![checkpoint.to_owned()]
    );
    let next = "orders/0/checkpoint/00000000000000000002";
    volume
        .put_if_absent(next, Bytes::from_static(b"two"))
        .await
        .expect("put next");
    assert_eq!(
        volume.get(next).await.expect("get"),
        Bytes::from_static(b"two")
    );
    assert_eq!(
        volume
            .list("orders/0/checkpoint")
            .await
            .expect("list")
            .len(),
        2
    );
    // put_if_absent removes its own temp file: only the planted one remains.
    let names: Vec<_> = std::fs::read_dir(dir.path().join("orders/0/checkpoint"))
        .expect("read dir")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

#[tokio::test]
async fn segment_files_hold_exactly_the_appended_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let volume = volume(dir.path()).await;
    let path = "t/0/00000000000000000000-1.log";
    let mut writer = volume.create_segment(path).await.expect("create");
    assert!(
        dir.path().join(path).exists(),
        "the file exists once create returns"
    );
    let data = vec![Bytes::from_static(b"abc"), Bytes::from_static(b"defg")];
    assert_eq!(
        writer.append(data).await.expect("append"),
        SegmentLayout::File { len: 7 }
    );
    assert_eq!(
        std::fs::read(dir.path().join(path)).expect("read"),
        b"abcdefg"
    );
    assert_eq!(
        writer.seal().await.expect("seal"),
        SegmentLayout::File { len: 7 }
    );
}

#[tokio::test]
async fn bytes_past_the_layout_are_never_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let volume = volume(dir.path()).await;
    let path = "t/0/00000000000000000000-1.log";
    let mut writer = volume.create_segment(path).await.expect("create");
    let layout = writer
        .append(vec![Bytes::from_static(b"good")])
        .await
        .expect("append");
    // A flush that was never checkpointed: the file is longer than the layout.
    writer
        .append(vec![Bytes::from_static(b"unreferenced")])
        .await
        .expect("append");
    let got = volume
        .read_segment(path, &layout, 0..4)
        .await
        .expect("read");
    assert_eq!(got, Bytes::from_static(b"good"));
    let past = volume
        .read_segment(path, &layout, 0..5)
        .await
        .expect_err("past the layout");
    assert!(
        matches!(
            past,
            StorageError::OutOfBounds {
                range_end: 5,
                len: 4,
                ..
            }
        ),
        "{past}"
    );
}

#[tokio::test]
async fn layouts_that_disagree_with_the_disk_are_corrupt_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let volume = volume(dir.path()).await;
    let path = "t/0/00000000000000000000-1.log";
    let mut writer = volume.create_segment(path).await.expect("create");
    writer
        .append(vec![Bytes::from_static(b"short")])
        .await
        .expect("append");

    let too_long = SegmentLayout::File { len: 1 << 40 };
    let error = volume
        .read_segment(path, &too_long, 0..(1 << 40))
        .await
        .expect_err("corrupt");
    assert!(matches!(error, StorageError::Corrupt { .. }), "{error}");

    let overflowing = SegmentLayout::Chunks {
        lens: vec![u64::MAX, 1],
    };
    let error = volume
        .read_segment(path, &overflowing, 0..1)
        .await
        .expect_err("corrupt");
    assert!(matches!(error, StorageError::Corrupt { .. }), "{error}");

    let missing = volume
        .read_segment("t/0/none.log", &SegmentLayout::File { len: 1 }, 0..1)
        .await
        .expect_err("missing");
    assert!(
        matches!(missing, StorageError::NotFound { .. }),
        "{missing}"
    );
}

#[tokio::test]
async fn chunked_layouts_are_read_and_merged_too() {
    // Not written by this volume, but a chunked segment copied in from an object store works.
    let dir = tempfile::tempdir().expect("tempdir");
    let volume = volume(dir.path()).await;
    let path = "t/0/00000000000000000000-1.log";
    std::fs::create_dir_all(dir.path().join("t/0")).expect("mkdir");
    std::fs::write(dir.path().join(format!("{path}.000000")), b"abc").expect("chunk 0");
    std::fs::write(dir.path().join(format!("{path}.000001")), b"defg").expect("chunk 1");
    let chunks = SegmentLayout::Chunks { lens: vec![3, 4] };
    let got = volume
        .read_segment(path, &chunks, 2..5)
        .await
        .expect("read");
    assert_eq!(got, Bytes::from_static(b"cde"));
    let merged = volume.merge_segment(path, &chunks).await.expect("merge");
    assert_eq!(merged, SegmentLayout::Object { len: 7 });
    volume
        .delete_chunks(path, &chunks)
        .await
        .expect("delete chunks");
    assert_eq!(volume.list("t").await.expect("list"), vec![path.to_owned()]);
    let all = volume
        .read_segment(path, &merged, 0..7)
        .await
        .expect("read merged");
    assert_eq!(all, Bytes::from_static(b"abcdefg"));
}

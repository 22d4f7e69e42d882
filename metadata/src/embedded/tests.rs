//! Tests of what only the embedded store does: its file, and keeping
//! lease-bound keys out of it. The shared behaviour is tested for every store
//! by `tests/conformance.rs`.

use super::*;

#[tokio::test]
async fn survives_reopen_and_versions_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path()).expect("open");
    let v1 = store
        .put("/sluice/topics/a", b"{\"x\":1}".to_vec())
        .await
        .expect("put");
    let v2 = store
        .put("/sluice/topics/a", b"{\"x\":2}".to_vec())
        .await
        .expect("put");
    assert!(v2 > v1);
    store
        .put("/sluice/bin", vec![0xff, 0x00])
        .await
        .expect("put binary");
    drop(store);
    let store = EmbeddedStore::open(dir.path()).expect("reopen");
    let got = store
        .get("/sluice/topics/a")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(got.value, b"{\"x\":2}");
    assert_eq!(got.version, v2);
    let bin = store
        .get("/sluice/bin")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(bin.value, vec![0xff, 0x00]);
}

#[tokio::test]
async fn txn_applies_only_when_compares_hold() {
    let store = EmbeddedStore::in_memory();
    let create = |v: &[u8]| Op::Put {
        key: "k".into(),
        value: v.to_vec(),
        lease: None,
    };
    assert!(
        store
            .txn(vec![Compare::Absent("k".into())], vec![create(b"1")])
            .await
            .expect("txn")
    );
    assert!(
        !store
            .txn(vec![Compare::Absent("k".into())], vec![create(b"2")])
            .await
            .expect("txn")
    );
    let version = store.get("k").await.expect("get").expect("present").version;
    assert!(
        !store
            .txn(
                vec![Compare::Version("k".into(), version + 1)],
                vec![create(b"3")]
            )
            .await
            .expect("txn")
    );
    assert!(
        store
            .txn(
                vec![Compare::Version("k".into(), version)],
                vec![create(b"4")]
            )
            .await
            .expect("txn")
    );
    assert_eq!(
        store.get("k").await.expect("get").expect("present").value,
        b"4"
    );
}

#[tokio::test]
async fn watch_sees_initial_state_then_changes_under_its_prefix() {
    let store = EmbeddedStore::in_memory();
    store.put("/a/1", b"x".to_vec()).await.expect("put");
    let mut watch = store.watch("/a/").await.expect("watch");
    assert_eq!(watch.initial.len(), 1);
    store.put("/b/1", b"y".to_vec()).await.expect("put");
    store.put("/a/2", b"z".to_vec()).await.expect("put");
    store
        .txn(
            vec![],
            vec![Op::DeletePrefix {
                prefix: "/a/".into(),
            }],
        )
        .await
        .expect("txn");
    let first = watch.events.recv().await.expect("event");
    assert!(matches!(first, WatchEvent::Put { ref key, .. } if key == "/a/2"));
    let mut deleted = vec![];
    for _ in 0..2 {
        match watch.events.recv().await.expect("event") {
            WatchEvent::Delete { key } => deleted.push(key),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(deleted, vec!["/a/1".to_string(), "/a/2".to_string()]);
}

#[tokio::test]
async fn keys_bound_to_a_lease_stay_out_of_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path()).expect("open");
    store.put("/durable", b"d".to_vec()).await.expect("put");
    store
        .put("/becomes-leased", b"x".to_vec())
        .await
        .expect("put");
    let lease = store
        .grant_lease(Duration::from_secs(60))
        .await
        .expect("grant");
    let leased = |key: &str| Op::Put {
        key: key.into(),
        value: b"l".to_vec(),
        lease: Some(lease),
    };
    let applied = store
        .txn(vec![], vec![leased("/leased"), leased("/becomes-leased")])
        .await
        .expect("txn");
    assert!(applied);
    assert!(store.get("/leased").await.expect("get").is_some());
    drop(store);

    let store = EmbeddedStore::open(dir.path()).expect("reopen");
    let keys: Vec<String> = store
        .list("/")
        .await
        .expect("list")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec!["/durable".to_string()]);
}

#[tokio::test]
async fn a_put_with_a_lease_that_is_gone_fails_the_whole_transaction() {
    let store = EmbeddedStore::in_memory();
    let lease = store
        .grant_lease(Duration::from_secs(60))
        .await
        .expect("grant");
    store.revoke_lease(lease).await.expect("revoke");
    let ops = vec![
        Op::Put {
            key: "/plain".into(),
            value: b"p".to_vec(),
            lease: None,
        },
        Op::Put {
            key: "/leased".into(),
            value: b"l".to_vec(),
            lease: Some(lease),
        },
    ];
    let error = store.txn(vec![], ops).await.expect_err("lease is gone");
    assert!(matches!(error, MetadataError::LeaseExpired { lease: l } if l == lease));
    assert!(store.get("/plain").await.expect("get").is_none());
}

#[tokio::test]
async fn the_lease_timer_expires_leases_without_any_other_call() {
    let store = EmbeddedStore::in_memory();
    let lease = store
        .grant_lease(Duration::from_millis(200))
        .await
        .expect("grant");
    let bind = Op::Put {
        key: "/t/leased".into(),
        value: b"v".to_vec(),
        lease: Some(lease),
    };
    assert!(store.txn(vec![], vec![bind]).await.expect("txn"));
    let mut watch = store.watch("/t/").await.expect("watch");
    // Nothing touches the store from here: only the timer can expire it.
    let event = tokio::time::timeout(Duration::from_secs(10), watch.events.recv())
        .await
        .expect("expired in time")
        .expect("watch open");
    assert_eq!(
        event,
        WatchEvent::Delete {
            key: "/t/leased".into()
        }
    );
}

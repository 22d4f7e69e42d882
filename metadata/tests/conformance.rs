//! One test body for every metadata store: each check below runs against
//! the embedded store and against a real etcd, so both keep one contract.

mod support;

use std::sync::Arc;
use std::time::Duration;

use sluice_metadata::{
    Compare, EmbeddedStore, EtcdStore, LeaseKeeper, MetadataError, MetadataStore, Op, WatchEvent,
};
use support::{EtcdServer, eventually};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::timeout;

/// Upper bound for anything that should happen "soon": an event, an expiry
/// after its TTL, a takeover.
const SOON: Duration = Duration::from_secs(15);

/// A store under test, and what keeps its server alive.
struct Backend {
    store: Arc<dyn MetadataStore>,
    /// A lease TTL short enough for tests; etcd's minimum is about 2 s.
    short_ttl: Duration,
    _server: Option<EtcdServer>,
}

fn embedded() -> Backend {
    Backend {
        store: Arc::new(EmbeddedStore::in_memory()),
        short_ttl: Duration::from_millis(600),
        _server: None,
    }
}

async fn etcd() -> Backend {
    let server = EtcdServer::start();
    let store = EtcdStore::connect(&[server.endpoint()])
        .await
        .expect("connect to the test etcd");
    Backend {
        store: Arc::new(store),
        short_ttl: Duration::from_secs(2),
        _server: Some(server),
    }
}

/// Runs each check against both stores, as `<check>::embedded` and
/// `<check>::etcd`.
macro_rules! conformance {
    ($($check:ident),* $(,)?) => {$(
        mod $check {
            #[tokio::test]
            async fn embedded() {
                super::$check(super::embedded()).await;
            }

            #[tokio::test]
            async fn etcd() {
                super::$check(super::etcd().await).await;
            }
        }
    )*};
}

conformance!(
    get_put_list_and_txn,
    watch_sees_initial_state_then_ordered_changes,
    lease_keys_vanish_on_revoke,
    lease_keys_vanish_on_expiry_unless_kept_alive,
    lease_keeper_keeps_and_releases,
    election_hands_over_when_the_leader_lease_goes,
);

fn put(key: &str, value: &[u8]) -> Op {
    Op::Put {
        key: key.into(),
        value: value.to_vec(),
        lease: None,
    }
}

async fn next_event(events: &mut UnboundedReceiver<WatchEvent>) -> WatchEvent {
    timeout(SOON, events.recv())
        .await
        .expect("a watch event in time")
        .expect("the watch is open")
}

fn put_of(key: &str, value: &[u8]) -> impl Fn(&WatchEvent) -> bool {
    let (key, value) = (key.to_owned(), value.to_vec());
    move |event| matches!(event, WatchEvent::Put { key: k, value: v } if *k == key && v.value == value)
}

async fn get_put_list_and_txn(backend: Backend) {
    let store = backend.store;
    assert_eq!(store.get("/t/a").await.expect("get"), None);

    let v1 = store.put("/t/a", b"1".to_vec()).await.expect("put");
    let got = store.get("/t/a").await.expect("get").expect("present");
    assert_eq!((got.value.as_slice(), got.version), (&b"1"[..], v1));
    let v2 = store.put("/t/a", b"2".to_vec()).await.expect("put");
    assert!(v2 > v1, "versions grow: {v1} then {v2}");

    store.put("/t/c", b"c".to_vec()).await.expect("put");
    store.put("/t/b", b"b".to_vec()).await.expect("put");
    store.put("/u/x", b"x".to_vec()).await.expect("put");
    let listed: Vec<(String, Vec<u8>)> = store
        .list("/t/")
        .await
        .expect("list")
        .into_iter()
        .map(|(k, v)| (k, v.value))
        .collect();
    let expected: Vec<(String, Vec<u8>)> = [("/t/a", "2"), ("/t/b", "b"), ("/t/c", "c")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
        .collect();
    assert_eq!(listed, expected, "list is sorted and limited to its prefix");

    // Create only if absent.
    let create = |value: &[u8]| {
        (
            vec![Compare::Absent("/t/new".into())],
            vec![put("/t/new", value)],
        )
    };
    let (compares, ops) = create(b"first");
    assert!(store.txn(compares, ops).await.expect("txn"));
    let (compares, ops) = create(b"second");
    assert!(!store.txn(compares, ops).await.expect("txn"));
    let current = store.get("/t/new").await.expect("get").expect("present");
    assert_eq!(current.value, b"first");

    // Compare-and-swap on the version; a failed compare applies nothing.
    let stale = vec![Compare::Version("/t/new".into(), current.version + 1)];
    let ops = vec![put("/t/new", b"stale"), Op::Delete { key: "/t/b".into() }];
    assert!(!store.txn(stale, ops).await.expect("txn"));
    assert!(store.get("/t/b").await.expect("get").is_some());
    let fresh = vec![
        Compare::Version("/t/new".into(), current.version),
        Compare::Absent("/t/missing".into()),
    ];
    let ops = vec![put("/t/new", b"swapped"), Op::Delete { key: "/t/b".into() }];
    assert!(store.txn(fresh, ops).await.expect("txn"));
    let swapped = store.get("/t/new").await.expect("get").expect("present");
    assert_eq!(swapped.value, b"swapped");
    assert!(swapped.version > current.version);
    assert_eq!(store.get("/t/b").await.expect("get"), None);
    // A compare on an absent key's version fails.
    let absent = vec![Compare::Version("/t/b".into(), swapped.version)];
    assert!(
        !store
            .txn(absent, vec![put("/t/b", b"x")])
            .await
            .expect("txn")
    );

    // Delete a whole prefix.
    let ops = vec![Op::DeletePrefix {
        prefix: "/t/".into(),
    }];
    assert!(store.txn(vec![], ops).await.expect("txn"));
    assert!(store.list("/t/").await.expect("list").is_empty());
    assert_eq!(store.list("/u/").await.expect("list").len(), 1);
}

async fn watch_sees_initial_state_then_ordered_changes(backend: Backend) {
    let store = backend.store;
    store.put("/w/a", b"a0".to_vec()).await.expect("put");
    store.put("/w/b", b"b0".to_vec()).await.expect("put");
    store.put("/other", b"o".to_vec()).await.expect("put");

    let mut watch = store.watch("/w/").await.expect("watch");
    let initial: Vec<&str> = watch.initial.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(initial, vec!["/w/a", "/w/b"]);

    let v = store.put("/w/a", b"a1".to_vec()).await.expect("put");
    store.put("/other", b"o2".to_vec()).await.expect("put");
    store.put("/w/c", b"c0".to_vec()).await.expect("put");
    let ops = vec![Op::Delete { key: "/w/b".into() }];
    assert!(store.txn(vec![], ops).await.expect("txn"));
    let ops = vec![Op::DeletePrefix {
        prefix: "/w/".into(),
    }];
    assert!(store.txn(vec![], ops).await.expect("txn"));

    match next_event(&mut watch.events).await {
        WatchEvent::Put { key, value } => {
            assert_eq!((key.as_str(), value.value.as_slice()), ("/w/a", &b"a1"[..]));
            assert_eq!(
                value.version, v,
                "the event carries the version put returned"
            );
        }
        other => panic!("expected the put of /w/a, got {other:?}"),
    }
    assert!(put_of("/w/c", b"c0")(&next_event(&mut watch.events).await));
    assert_eq!(
        next_event(&mut watch.events).await,
        WatchEvent::Delete { key: "/w/b".into() }
    );
    let mut deleted = vec![
        next_event(&mut watch.events).await,
        next_event(&mut watch.events).await,
    ];
    deleted.sort_by(|a, b| a.key().cmp(b.key()));
    assert_eq!(
        deleted,
        vec![
            WatchEvent::Delete { key: "/w/a".into() },
            WatchEvent::Delete { key: "/w/c".into() },
        ]
    );
    assert!(
        watch.events.try_recv().is_err(),
        "nothing from outside the prefix"
    );
}

async fn lease_keys_vanish_on_revoke(backend: Backend) {
    let store = backend.store;
    let lease = store
        .grant_lease(Duration::from_secs(60))
        .await
        .expect("grant");
    let leased = Op::Put {
        key: "/l/leased".into(),
        value: b"v".to_vec(),
        lease: Some(lease),
    };
    assert!(
        store
            .txn(vec![], vec![leased, put("/l/plain", b"p")])
            .await
            .expect("txn")
    );
    let mut watch = store.watch("/l/").await.expect("watch");
    assert_eq!(watch.initial.len(), 2);

    store.revoke_lease(lease).await.expect("revoke");
    assert_eq!(
        next_event(&mut watch.events).await,
        WatchEvent::Delete {
            key: "/l/leased".into()
        }
    );
    assert_eq!(store.get("/l/leased").await.expect("get"), None);
    assert!(store.get("/l/plain").await.expect("get").is_some());

    // The lease is gone: refreshing or using it fails, revoking again is fine.
    let error = store.keep_alive(lease).await.expect_err("lease is gone");
    assert!(
        matches!(error, MetadataError::LeaseExpired { lease: l } if l == lease),
        "{error}"
    );
    let reuse = Op::Put {
        key: "/l/again".into(),
        value: b"v".to_vec(),
        lease: Some(lease),
    };
    let error = store
        .txn(vec![], vec![reuse])
        .await
        .expect_err("lease is gone");
    assert!(
        matches!(error, MetadataError::LeaseExpired { lease: l } if l == lease),
        "{error}"
    );
    store.revoke_lease(lease).await.expect("revoking twice");
}

async fn lease_keys_vanish_on_expiry_unless_kept_alive(backend: Backend) {
    let (store, ttl) = (backend.store, backend.short_ttl);
    let expiring = store.grant_lease(ttl).await.expect("grant");
    let kept = store.grant_lease(ttl).await.expect("grant");
    let bind = |key: &str, lease| Op::Put {
        key: key.into(),
        value: b"v".to_vec(),
        lease: Some(lease),
    };
    let ops = vec![bind("/e/expiring", expiring), bind("/e/kept", kept)];
    assert!(store.txn(vec![], ops).await.expect("txn"));
    let mut watch = store.watch("/e/").await.expect("watch");

    // Keep one lease alive by hand, every third of its TTL, until the other
    // has expired and the watch has seen its key go.
    let started = tokio::time::Instant::now();
    let deleted = loop {
        store.keep_alive(kept).await.expect("keep alive");
        match timeout(ttl / 3, watch.events.recv()).await {
            Ok(event) => break event.expect("the watch is open"),
            Err(_) => assert!(started.elapsed() < SOON, "the lease did not expire"),
        }
    };
    assert_eq!(
        deleted,
        WatchEvent::Delete {
            key: "/e/expiring".into()
        }
    );
    assert!(started.elapsed() >= ttl, "expired before its TTL");
    assert_eq!(store.get("/e/expiring").await.expect("get"), None);
    assert!(store.get("/e/kept").await.expect("get").is_some());
    assert!(matches!(
        store.keep_alive(expiring).await,
        Err(MetadataError::LeaseExpired { .. })
    ));
}

async fn lease_keeper_keeps_and_releases(backend: Backend) {
    let (store, ttl) = (backend.store, backend.short_ttl);
    let keeper = LeaseKeeper::grant(store.clone(), ttl).await.expect("grant");
    let bind = Op::Put {
        key: "/k/held".into(),
        value: b"v".to_vec(),
        lease: Some(keeper.id()),
    };
    assert!(store.txn(vec![], vec![bind]).await.expect("txn"));

    // A time-based property: across three TTLs the keeper must keep the key.
    tokio::time::sleep(ttl * 3).await;
    assert!(!keeper.is_lost());
    assert!(store.get("/k/held").await.expect("get").is_some());

    let lost = keeper.lost();
    keeper.release().await.expect("release");
    timeout(SOON, lost)
        .await
        .expect("a released lease counts as lost");
    assert_eq!(store.get("/k/held").await.expect("get"), None);

    // A keeper whose lease is revoked behind its back notices.
    let keeper = LeaseKeeper::grant(store.clone(), ttl).await.expect("grant");
    store.revoke_lease(keeper.id()).await.expect("revoke");
    timeout(SOON, keeper.lost())
        .await
        .expect("the keeper sees its lease go");

    // Dropping a keeper revokes its lease.
    let keeper = LeaseKeeper::grant(store.clone(), ttl).await.expect("grant");
    let id = keeper.id();
    drop(keeper);
    eventually("the dropped keeper's lease to be revoked", SOON, || {
        let store = store.clone();
        async move {
            match store.keep_alive(id).await {
                Err(MetadataError::LeaseExpired { .. }) => Some(()),
                _ => None,
            }
        }
    })
    .await;
}

async fn election_hands_over_when_the_leader_lease_goes(backend: Backend) {
    let (store, ttl) = (backend.store, backend.short_ttl);
    let election = "/sluice/test/leader";
    assert_eq!(store.leader(election).await.expect("leader"), None);

    let first = store
        .grant_lease(Duration::from_secs(60))
        .await
        .expect("grant");
    timeout(SOON, store.campaign(election, b"first".to_vec(), first))
        .await
        .expect("the only candidate leads at once")
        .expect("campaign");
    assert_eq!(
        store.leader(election).await.expect("leader"),
        Some(b"first".to_vec())
    );

    // A second candidate waits while the first leads.
    let second = store.grant_lease(ttl).await.expect("grant");
    let campaigning = {
        let store = store.clone();
        tokio::spawn(async move { store.campaign(election, b"second".to_vec(), second).await })
    };
    // Its candidate key is there, but it does not lead.
    eventually("the second candidate to register", SOON, || {
        let store = store.clone();
        async move { (store.list(election).await.expect("list").len() == 2).then_some(()) }
    })
    .await;
    store.keep_alive(second).await.expect("keep alive");
    assert!(!campaigning.is_finished());
    assert_eq!(
        store.leader(election).await.expect("leader"),
        Some(b"first".to_vec())
    );

    // Revoking the leader's lease hands over.
    store.revoke_lease(first).await.expect("revoke");
    timeout(SOON, campaigning)
        .await
        .expect("the second candidate takes over in time")
        .expect("campaign task")
        .expect("campaign");
    assert_eq!(
        store.leader(election).await.expect("leader"),
        Some(b"second".to_vec())
    );

    // A third waits; the second's lease expires (no keep-alive): it hands over.
    let third = store
        .grant_lease(Duration::from_secs(60))
        .await
        .expect("grant");
    timeout(SOON * 2, store.campaign(election, b"third".to_vec(), third))
        .await
        .expect("the third candidate takes over once the second's lease expires")
        .expect("campaign");
    assert_eq!(
        store.leader(election).await.expect("leader"),
        Some(b"third".to_vec())
    );

    // Campaigning with a lease that is gone fails.
    store.revoke_lease(third).await.expect("revoke");
    let result = timeout(SOON, store.campaign(election, b"late".to_vec(), third))
        .await
        .expect("campaign answers");
    assert!(
        matches!(result, Err(MetadataError::LeaseExpired { .. })),
        "{result:?}"
    );
    assert_eq!(store.leader(election).await.expect("leader"), None);
}

//! The etcd store when etcd is not there: a clear, quick error at connect,
//! and recovery (operations and watches) after etcd restarts.

mod support;

use std::time::Duration;

use sluice_metadata::{EtcdOptions, EtcdStore, MetadataError, MetadataStore, WatchEvent};
use support::{EtcdServer, eventually, free_port};
use tokio::time::{Instant, timeout};

#[tokio::test]
async fn connecting_to_a_closed_port_fails_fast_naming_the_endpoint() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let options = EtcdOptions {
        connect_timeout: Duration::from_secs(2),
        ..EtcdOptions::default()
    };
    let started = Instant::now();
    let error = timeout(
        Duration::from_secs(10),
        EtcdStore::connect_with(std::slice::from_ref(&endpoint), options),
    )
    .await
    .expect("connect gives up by itself")
    .expect_err("nothing listens there");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(error, MetadataError::Unreachable { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&endpoint), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_and_watches_resume_after_etcd_restarts() {
    let mut server = EtcdServer::start();
    let options = EtcdOptions {
        request_timeout: Duration::from_secs(2),
        ..EtcdOptions::default()
    };
    let store = EtcdStore::connect_with(&[server.endpoint()], options)
        .await
        .expect("connect");
    store.put("/r/before", b"0".to_vec()).await.expect("put");
    let mut watch = store.watch("/r/").await.expect("watch");
    assert_eq!(watch.initial.len(), 1);

    server.kill();
    // While etcd is down, calls fail within the request timeout: no hang.
    let started = Instant::now();
    let error = store
        .put("/r/during", b"x".to_vec())
        .await
        .expect_err("etcd is down");
    assert!(
        matches!(error, MetadataError::Unavailable { .. }),
        "{error:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );

    server.restart();
    // The client reconnects by itself.
    eventually(
        "a put to succeed after the restart",
        Duration::from_secs(20),
        || {
            let store = store.clone();
            async move { store.put("/r/after", b"1".to_vec()).await.ok() }
        },
    )
    .await;
    for i in 2..5u8 {
        store.put("/r/after", vec![b'0' + i]).await.expect("put");
    }
    store.put("/other", b"o".to_vec()).await.expect("put");
    store.put("/r/last", b"L".to_vec()).await.expect("put");

    // The watch resumed: every change made after the restart arrives, in
    // order, and nothing from before is repeated.
    let mut seen = Vec::new();
    while seen
        .last()
        .is_none_or(|e: &WatchEvent| e.key() != "/r/last")
    {
        let event = timeout(Duration::from_secs(20), watch.events.recv())
            .await
            .expect("watch events after the restart")
            .expect("the watch is open");
        seen.push(event);
    }
    let values: Vec<(String, Vec<u8>)> = seen
        .into_iter()
        .map(|event| match event {
            WatchEvent::Put { key, value } => (key, value.value),
            WatchEvent::Delete { key } => panic!("unexpected delete of {key}"),
        })
        .collect();
    // The put that failed while etcd was down may or may not have been
    // applied (etcd was killed, so it was not).
    // A retried put that was applied but timed out shows up twice.
    let mut values: Vec<(String, Vec<u8>)> = values
        .into_iter()
        .filter(|(key, _)| key != "/r/during")
        .collect();
    values.dedup();
    let expected: Vec<(String, Vec<u8>)> = ["1", "2", "3", "4"]
        .iter()
        .map(|v| ("/r/after".to_owned(), v.as_bytes().to_vec()))
        .chain([("/r/last".to_owned(), b"L".to_vec())])
        .collect();
    assert_eq!(values, expected);

    // Reads agree with what the watch reported.
    let listed = store.list("/r/").await.expect("list");
    let keys: Vec<&str> = listed.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, vec!["/r/after", "/r/before", "/r/last"]);
}

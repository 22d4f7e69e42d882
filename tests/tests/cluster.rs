//! Cluster mode against real processes: etcd, a controller, three brokers
//! and two proxies on one shared volume.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context;
use sluice_proto::v1;
use sluice_proto::v1::admin_client::AdminClient;
use sluice_tests::cluster::Cluster;
use sluice_tests::load::{Load, LoadOptions, produce_request};
use sluice_tests::servers::Storage;
use sluice_tests::{read_all, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_through_one_proxy_and_consume_through_another() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, 3, 2, &[])?;
    let description = cluster.create_topic("orders", 6).await?;
    let owners: BTreeSet<u64> = description.partitions.iter().map(|p| p.broker).collect();
    assert_eq!(
        owners.len(),
        3,
        "6 partitions spread over 3 brokers: {description:?}"
    );

    let mut producer = cluster.client(0).await?;
    let mut expected: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for round in 0..10 {
        for partition in 0..6u32 {
            let values: Vec<String> = (0..10)
                .map(|i| format!("p{partition}-r{round}-m{i}"))
                .collect();
            producer
                .produce(produce_request("orders", partition, &values)?)
                .await?;
            expected.entry(partition).or_default().extend(values);
        }
    }
    let consumer = cluster.client(1).await?;
    for (partition, values) in &expected {
        // The other proxy learns the checkpoint from the broker's stream.
        let expected_len = values.len();
        let records = wait_for(
            "the second proxy to see every message",
            Duration::from_secs(10),
            || {
                let mut consumer = consumer.clone();
                async move {
                    let records = read_all(&mut consumer, "orders", *partition, 0).await?;
                    Ok((records.len() >= expected_len).then_some(records))
                }
            },
        )
        .await?;
        let offsets: Vec<i64> = records.iter().map(|(o, _)| *o).collect();
        assert_eq!(
            offsets,
            (0..expected_len as i64).collect::<Vec<_>>(),
            "partition {partition}"
        );
        let got: Vec<String> = records
            .into_iter()
            .map(|(_, v)| String::from_utf8_lossy(&v).into_owned())
            .collect();
        assert_eq!(&got, values, "partition {partition} in order");
    }
    Ok(())
}

/// Producers keep writing with durable acks while a broker is killed: its
/// partitions move to the survivors, the producers see at most a delay, and
/// every acknowledged message is in the log at the offset it was given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_a_broker_loses_no_acknowledged_message() -> anyhow::Result<()> {
    kill9_under_load(None).await
}

/// The same on S3 (Ceph RGW): chunk objects, create-if-absent checkpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_a_broker_on_s3_loses_no_acknowledged_message() -> anyhow::Result<()> {
    let Some(storage) = Storage::rgw("kill9") else {
        return Ok(());
    };
    kill9_under_load(Some(storage)).await
}

/// The same on HDFS: the killed broker's open segment keeps its HDFS lease;
/// the new owner reads it up to its checkpoint and writes a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_a_broker_on_hdfs_loses_no_acknowledged_message() -> anyhow::Result<()> {
    let Some(storage) = Storage::hdfs("kill9") else {
        return Ok(());
    };
    kill9_under_load(Some(storage)).await
}

async fn kill9_under_load(storage: Option<Storage>) -> anyhow::Result<()> {
    let mut cluster = Cluster::start_on(storage, 1, 3, 2, &[])?;
    let partitions = 6u32;
    cluster.create_topic("events", partitions).await?;
    let options = LoadOptions {
        requests: Some(60),
        ..LoadOptions::default()
    };
    let load = Load::start(&cluster.proxy_addrs(), "events", partitions, options).await?;
    // Kill a broker once the load is under way.
    load.acknowledged
        .wait_for(100, Duration::from_secs(20))
        .await?;
    cluster.brokers[0].kill9();
    let report = load.finish().await?;
    assert_eq!(
        report.acknowledged.len(),
        4 * 60 * 5,
        "every produce was acknowledged"
    );
    cluster
        .check_exactly_once("events", partitions, &report.acknowledged)
        .await?;
    check_volume_stats(&cluster).await
}

/// The storage request counts: the proxy that served the reads counted its
/// GETs, the brokers their PUTs, and `cluster volumes` shows them.
async fn check_volume_stats(cluster: &Cluster) -> anyhow::Result<()> {
    let url = &cluster.storage.volumes[0];
    // Proxy 1 served the reads of the exactly-once check.
    let channel = sluice_tests::cluster::connect(&cluster.proxies[1].addr).await?;
    let stats = AdminClient::new(channel)
        .volume_stats(v1::VolumeStatsRequest {})
        .await?
        .into_inner();
    let proxy = stats
        .nodes
        .iter()
        .find(|n| n.node == "proxy")
        .with_context(|| format!("no proxy entry in {stats:?}"))?;
    assert_eq!(&proxy.volumes[0].url, url, "{stats:?}");
    assert!(proxy.volumes[0].gets > 0, "the proxy read: {stats:?}");
    assert_eq!(proxy.volumes[0].puts, 0, "proxies never write: {stats:?}");
    let broker_puts: u64 = stats
        .nodes
        .iter()
        .filter(|n| n.node.starts_with("broker"))
        .flat_map(|n| &n.volumes)
        .map(|v| v.puts)
        .sum();
    assert!(broker_puts > 0, "the live brokers wrote: {stats:?}");
    let shown = cluster.cli(&["cluster", "volumes"]).await?;
    assert!(shown.contains(url.as_str()), "{shown}");
    Ok(())
}

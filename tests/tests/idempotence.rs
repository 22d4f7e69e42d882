//! The SDK's idempotent producer against a real cluster while responses
//! are lost: forwarders in front of both proxies cut every connection over
//! and over (requests that reached a proxy lose their answers), and one
//! proxy is killed with SIGKILL mid-load. The producer retries —
//! through the other proxy once the first is gone — and the log must hold
//! every message exactly once, each partition in send order.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_sdk::{Producer, Record};
use sluice_tests::chaos::CuttingForwarder;
use sluice_tests::cluster::Cluster;
use sluice_tests::read_all;

const MESSAGES: u32 = 10_000;
const PARTITIONS: u32 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_responses_and_a_killed_proxy_never_duplicate_a_message() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(1, 2, 2, &[])?;
    cluster.create_topic("orders", PARTITIONS).await?;
    let addrs = cluster.proxy_addrs();
    let forwarders = [
        CuttingForwarder::start(addrs[0].parse()?).await?,
        CuttingForwarder::start(addrs[1].parse()?).await?,
    ];
    let producer = Producer::builder(forwarders.iter().map(|f| f.addr.to_string()))
        .linger(Duration::from_millis(2))
        .batch_bytes(4096)
        .build()
        .await?;

    let cutter = async {
        loop {
            tokio::time::sleep(Duration::from_millis(30)).await;
            forwarders.iter().for_each(CuttingForwarder::cut);
        }
    };
    let send = async {
        let mut deliveries = Vec::new();
        for i in 0..MESSAGES {
            if i == MESSAGES * 3 / 4 {
                // A proxy dies with requests in flight.
                cluster.proxies[0].kill9();
            }
            let record = Record::new("orders", format!("{i}")).with_key(format!("k-{}", i % 64));
            deliveries.push(producer.send(record).await?);
            if i % 500 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let mut offsets = Vec::new();
        for delivery in deliveries {
            offsets.push(delivery.await?);
        }
        anyhow::Ok(offsets)
    };
    let delivered = tokio::select! {
        delivered = send => delivered?,
        _ = cutter => unreachable!("the cutter never ends"),
    };
    producer.flush().await?;
    let stats = producer.stats();
    println!(
        "{} connection cuts; {} retried requests, {} answered as already written",
        forwarders[0].cuts(),
        stats.retries,
        stats.duplicates
    );
    assert!(
        stats.retries > 0,
        "the faults never hit a request in flight"
    );
    assert!(
        stats.duplicates > 0,
        "no retry was of a batch already written: the dedupe path did not run"
    );

    check_exactly_once(&cluster, 1, &delivered).await?;
    producer.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_mid_load_never_duplicates_a_message() -> anyhow::Result<()> {
    // Producer state travels in the checkpoint: the new owner of a killed
    // broker's partitions recognises retries of batches the old one wrote.
    let mut cluster = Cluster::start(1, 2, 1, &[])?;
    cluster.create_topic("orders", PARTITIONS).await?;
    let server = cluster.proxy_addrs()[0].clone();
    let producer = Producer::builder([server])
        .linger(Duration::from_millis(2))
        .batch_bytes(4096)
        .build()
        .await?;
    let mut deliveries = Vec::new();
    for i in 0..MESSAGES {
        if i == MESSAGES / 2 {
            cluster.brokers[0].kill9();
        }
        let record = Record::new("orders", format!("{i}")).with_key(format!("k-{}", i % 64));
        deliveries.push(producer.send(record).await?);
    }
    let mut delivered = Vec::new();
    for delivery in deliveries {
        delivered.push(delivery.await?);
    }
    check_exactly_once(&cluster, 0, &delivered).await?;
    println!("retries: {:?}", producer.stats());
    producer.close().await?;
    Ok(())
}

/// Every message once, in the order sent within its partition, at the
/// offset its delivery reported (read through proxy `proxy`).
async fn check_exactly_once(
    cluster: &Cluster,
    proxy: usize,
    delivered: &[sluice_sdk::Delivery],
) -> anyhow::Result<()> {
    let mut client = cluster.client(proxy).await?;
    let mut found: BTreeMap<u32, (u32, i64)> = BTreeMap::new();
    for partition in 0..PARTITIONS {
        let mut last = None;
        for (offset, value) in read_all(&mut client, "orders", partition, 0).await? {
            let i: u32 = String::from_utf8(value)?.parse()?;
            if let Some(previous) = found.insert(i, (partition, offset)) {
                panic!("message {i} written twice: at {previous:?} and {partition}/{offset}");
            }
            assert!(last < Some(i), "partition {partition}: {i} after {last:?}");
            last = Some(i);
        }
    }
    assert_eq!(found.len(), MESSAGES as usize, "messages lost");
    for (i, delivery) in delivered.iter().enumerate() {
        assert_eq!(
            found[&(i as u32)],
            (delivery.partition, delivery.offset),
            "message {i} is not where its delivery said"
        );
    }
    Ok(())
}

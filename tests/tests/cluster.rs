//! Cluster mode against real processes: etcd, a controller, three brokers
//! and two proxies on one shared volume.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sluice_proto::v1;
use sluice_proto::v1::admin_client::AdminClient;
use sluice_proto::v1::sluice_client::SluiceClient;
use sluice_record::{BatchBuilder, Compression};
use sluice_tests::cluster::Cluster;
use sluice_tests::{read_all, wait_for};
use tonic::transport::Channel;

async fn connect(addr: &str) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn batch(values: &[String]) -> anyhow::Result<Bytes> {
    let mut builder = BatchBuilder::new(Compression::None);
    for value in values {
        builder.push(now_ms(), None, Some(value.as_bytes()), &[])?;
    }
    Ok(builder.build()?)
}

async fn create_topic(
    proxy: &str,
    name: &str,
    partitions: u32,
) -> anyhow::Result<v1::TopicDescription> {
    let mut admin = AdminClient::new(connect(proxy).await?);
    let request = v1::CreateTopicRequest {
        name: name.into(),
        partitions,
        config: None,
    };
    Ok(admin.create_topic(request).await?.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_through_one_proxy_and_consume_through_another() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, 3, 2, &[])?;
    let description = create_topic(&cluster.proxies[0].addr, "orders", 6).await?;
    let owners: BTreeSet<u64> = description.partitions.iter().map(|p| p.broker).collect();
    assert_eq!(
        owners.len(),
        3,
        "6 partitions spread over 3 brokers: {description:?}"
    );

    let mut producer = SluiceClient::new(connect(&cluster.proxies[0].addr).await?);
    let mut expected: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for round in 0..10 {
        for partition in 0..6u32 {
            let values: Vec<String> = (0..10)
                .map(|i| format!("p{partition}-r{round}-m{i}"))
                .collect();
            let request = v1::ProduceRequest {
                topic: "orders".into(),
                target: Some(v1::produce_request::Target::Partition(partition)),
                records: batch(&values)?,
                acks: v1::AckMode::Durable as i32,
            };
            producer.produce(request).await?;
            expected.entry(partition).or_default().extend(values);
        }
    }
    let mut consumer = SluiceClient::new(connect(&cluster.proxies[1].addr).await?);
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
    drop(consumer.clone());
    Ok(())
}

/// Producers keep writing with durable acks while a broker is killed: its
/// partitions move to the survivors, the producers see at most a delay, and
/// every acknowledged message is in the log at the offset it was given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_a_broker_loses_no_acknowledged_message() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(1, 3, 2, &[])?;
    let partitions = 6u32;
    create_topic(&cluster.proxies[0].addr, "events", partitions).await?;
    // (partition, offset) → message, for every acknowledged message.
    let acknowledged: Arc<Mutex<BTreeMap<(u32, i64), String>>> = Arc::default();
    let mut producers = tokio::task::JoinSet::new();
    for producer in 0..4u32 {
        let proxy = cluster.proxies[(producer % 2) as usize].addr.clone();
        let acknowledged = Arc::clone(&acknowledged);
        producers.spawn(async move {
            let mut client = SluiceClient::new(connect(&proxy).await?);
            for request in 0..60u32 {
                let partition = (producer + request) % partitions;
                let values: Vec<String> = (0..5)
                    .map(|i| format!("w{producer}-r{request}-m{i}"))
                    .collect();
                let produce = v1::ProduceRequest {
                    topic: "events".into(),
                    target: Some(v1::produce_request::Target::Partition(partition)),
                    records: batch(&values)?,
                    acks: v1::AckMode::Durable as i32,
                };
                let response = client.produce(produce).await?.into_inner();
                let mut acked = acknowledged.lock().unwrap_or_else(|e| e.into_inner());
                for (i, value) in values.into_iter().enumerate() {
                    acked.insert((partition, response.base_offset + i as i64), value);
                }
            }
            anyhow::Ok(())
        });
    }
    // Kill a broker once the load is under way.
    let seen = Arc::clone(&acknowledged);
    wait_for(
        "the first acknowledgements",
        Duration::from_secs(20),
        || {
            let count = seen.lock().map(|a| a.len()).unwrap_or(0);
            async move { Ok((count >= 100).then_some(())) }
        },
    )
    .await?;
    cluster.brokers[0].kill9();
    while let Some(result) = producers.join_next().await {
        result??;
    }
    let acknowledged = acknowledged
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    assert_eq!(
        acknowledged.len(),
        4 * 60 * 5,
        "every produce was acknowledged"
    );
    let mut consumer = SluiceClient::new(connect(&cluster.proxies[1].addr).await?);
    let mut duplicates = 0;
    for partition in 0..partitions {
        let records = read_all(&mut consumer, "events", partition, 0).await?;
        let stored: BTreeMap<i64, String> = records
            .into_iter()
            .map(|(offset, value)| (offset, String::from_utf8_lossy(&value).into_owned()))
            .collect();
        let offsets: Vec<i64> = stored.keys().copied().collect();
        assert_eq!(
            offsets,
            (0..offsets.len() as i64).collect::<Vec<_>>(),
            "partition {partition} is contiguous"
        );
        for ((p, offset), value) in acknowledged.iter().filter(|((p, _), _)| *p == partition) {
            assert_eq!(
                stored.get(offset),
                Some(value),
                "acknowledged {value} at {p}/{offset}; logs:\n{}",
                cluster.logs()
            );
        }
        let mut seen = BTreeSet::new();
        duplicates += stored.values().filter(|v| !seen.insert(v.as_str())).count();
    }
    // Without idempotent producers (a later issue), a produce whose answer
    // was lost in the kill is written again when the proxy retries it.
    eprintln!("messages written twice by retried produces: {duplicates}");
    Ok(())
}

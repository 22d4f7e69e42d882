//! Operator actions under load, through the CLI against a proxy: `sluice
//! partition move`, `sluice broker drain`/`undrain` and `sluice cluster
//! rebalance`. A partition changes hands by moving its write lease; the
//! producers see at most a delay and every acknowledged message survives.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context;
use sluice_proto::v1;
use sluice_tests::cluster::Cluster;
use sluice_tests::load::{Load, LoadOptions, produce_request, produce_within};

/// A move takes about a lease acquisition and a recovery.
const MOVE_DEADLINE: Duration = Duration::from_secs(15);

/// Acknowledgements to wait for between operations, so each one happens
/// under load.
const PROGRESS: usize = 60;

async fn progress(load: &Load) -> anyhow::Result<()> {
    let count = load.acknowledged.len();
    load.acknowledged
        .wait_for(count + PROGRESS, Duration::from_secs(20))
        .await
}

async fn status(cluster: &Cluster) -> anyhow::Result<v1::ClusterStatusResponse> {
    let request = v1::ClusterStatusRequest {};
    Ok(cluster
        .admin()
        .await?
        .cluster_status(request)
        .await?
        .into_inner())
}

/// Broker `id`'s partition count in `sluice cluster status` output
/// ("  ID  ADDR  STATE  N partitions").
fn partitions_in_status(output: &str, id: u64) -> Option<u32> {
    output.lines().find_map(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            [first, .., count, "partitions"] if first == id.to_string() => count.parse().ok(),
            _ => None,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_partitions_under_load_loses_no_acknowledged_message() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, 3, 2, &[])?;
    let topic = "moves";
    let partitions = 6;
    cluster.create_topic(topic, partitions).await?;
    let load = Load::start(
        &cluster.proxy_addrs(),
        topic,
        partitions,
        LoadOptions::default(),
    )
    .await?;
    load.acknowledged
        .wait_for(PROGRESS, Duration::from_secs(20))
        .await?;

    // Every partition moves once, to the next broker, one after the other.
    for partition in 0..partitions {
        let before = cluster.describe(topic).await?.partitions[partition as usize].clone();
        let to = before.broker % 3 + 1;
        let target = format!("{topic}/{partition}");
        let output = cluster
            .cli(&["partition", "move", &target, "--to", &to.to_string()])
            .await?;
        eprintln!("{}", output.trim());
        cluster
            .wait_description(
                topic,
                &format!("{target} to move to broker {to}"),
                MOVE_DEADLINE,
                |d| {
                    let p = &d.partitions[partition as usize];
                    p.broker == to && p.epoch > before.epoch
                },
            )
            .await?;
        // The new owner takes writes.
        let mut client = cluster.client((partition % 2) as usize).await?;
        let values = vec![format!("moved-{partition}")];
        let response = produce_within(
            &mut client,
            produce_request(topic, partition, &values)?,
            MOVE_DEADLINE,
        )
        .await?
        .with_context(|| format!("produce to {target} after its move"))?;
        load.acknowledged
            .record(partition, response.base_offset, &values);
        progress(&load).await?;
    }
    let report = load.stop().await?;

    cluster
        .check_exactly_once(topic, partitions, &report.acknowledged)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_a_broker_under_load_moves_every_partition_off_it() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, 3, 2, &[])?;
    let topic = "drain";
    let partitions = 6;
    cluster.create_topic(topic, partitions).await?;
    let load = Load::start(
        &cluster.proxy_addrs(),
        topic,
        partitions,
        LoadOptions::default(),
    )
    .await?;
    load.acknowledged
        .wait_for(PROGRESS, Duration::from_secs(20))
        .await?;

    let drained = 1;
    // `broker drain` waits until the broker holds nothing.
    let output = cluster
        .cli(&["broker", "drain", &drained.to_string()])
        .await?;
    eprintln!("{}", output.trim());
    let shown = cluster.cli(&["cluster", "status"]).await?;
    assert_eq!(
        partitions_in_status(&shown, drained),
        Some(0),
        "`cluster status` shows broker {drained} with no partition:\n{shown}"
    );
    let response = status(&cluster).await?;
    let broker = response
        .brokers
        .iter()
        .find(|b| b.id == drained)
        .with_context(|| format!("broker {drained} in {response:?}"))?;
    assert!(
        broker.live && broker.draining && broker.partitions == 0,
        "broker {drained} is live, draining and empty: {response:?}"
    );
    let description = cluster.describe(topic).await?;
    assert!(
        description.partitions.iter().all(|p| p.broker != drained),
        "no partition is assigned to broker {drained}: {description:?}"
    );
    progress(&load).await?;

    // A topic created now avoids the drained broker too.
    let later = cluster.create_topic("drain-later", 4).await?;
    assert!(
        later.partitions.iter().all(|p| p.broker != drained),
        "a new topic avoids the drained broker: {later:?}"
    );

    // Undrained and rebalanced, it takes partitions again, still under load.
    cluster
        .cli(&["broker", "undrain", &drained.to_string()])
        .await?;
    let moves = cluster.cli(&["cluster", "rebalance"]).await?;
    eprintln!("{}", moves.trim());
    let rebalanced = cluster
        .wait_description(
            topic,
            &format!("broker {drained} to hold partitions again"),
            MOVE_DEADLINE,
            |d| d.partitions.iter().any(|p| p.broker == drained),
        )
        .await?;
    let owners: BTreeSet<u64> = rebalanced.partitions.iter().map(|p| p.broker).collect();
    eprintln!("owners after rebalance: {owners:?}");
    progress(&load).await?;
    let report = load.stop().await?;

    cluster
        .check_exactly_once(topic, partitions, &report.acknowledged)
        .await?;
    Ok(())
}

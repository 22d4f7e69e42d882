//! Losing the cluster's control plane: the controller leader, killed or
//! paused (a standby takes over and still reassigns a dead broker's
//! partitions), and etcd itself (killed and started again on its data, at
//! once or after the leases ran out). No acknowledged message is lost, and
//! the cluster works afterwards.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context;
use sluice_proto::v1;
use sluice_tests::cluster::{Cluster, LEADING};
use sluice_tests::load::{
    Acknowledged, Load, LoadOptions, check_acknowledged, produce_request, produce_within,
};
use sluice_tests::{read_all, wait_for};

/// The lease TTL of the harness is 2 s: leadership and a dead broker's
/// partitions move within a few of them.
const MOVE_DEADLINE: Duration = Duration::from_secs(15);

/// Two controllers; the leader is killed, then a broker. The standby
/// becomes leader and moves the dead broker's partitions; producers only
/// see a delay, and no acknowledged message is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_controller_takes_over_and_reassigns_a_dead_brokers_partitions()
-> anyhow::Result<()> {
    let mut cluster = Cluster::start(2, 3, 2, &[])?;
    let topic = "failover";
    let partitions = 6;
    let before = cluster.create_topic(topic, partitions).await?;
    let load = Load::start(
        &cluster.proxy_addrs(),
        topic,
        partitions,
        LoadOptions::default(),
    )
    .await?;
    load.acknowledged
        .wait_for(100, Duration::from_secs(20))
        .await?;

    let leader = cluster.leader().await?;
    let standby = 1 - leader;
    cluster.controllers[leader].kill9();
    // With no controller leading yet, a broker dies too.
    let dead = 1;
    let orphans: BTreeSet<u32> = before
        .partitions
        .iter()
        .filter(|p| p.broker == dead)
        .map(|p| p.partition)
        .collect();
    assert!(
        !orphans.is_empty(),
        "broker {dead} owns partitions: {before:?}"
    );
    cluster.broker(dead).kill9();

    cluster.controllers[standby]
        .wait_log(LEADING, MOVE_DEADLINE)
        .await
        .with_context(|| cluster.logs())?;
    let after = cluster
        .wait_description(
            topic,
            "the dead broker's partitions to move to live brokers",
            MOVE_DEADLINE,
            |d| {
                d.partitions
                    .iter()
                    .all(|p| p.broker != dead && p.broker != 0)
            },
        )
        .await?;
    for partition in &orphans {
        let (old, new) = (
            &before.partitions[*partition as usize],
            &after.partitions[*partition as usize],
        );
        assert!(
            new.epoch > old.epoch,
            "partition {partition} moved under a higher epoch: {old:?} → {new:?}"
        );
    }
    // Every orphaned partition takes writes again, through either proxy.
    for partition in &orphans {
        for proxy in 0..2 {
            let mut client = cluster.client(proxy).await?;
            let values = vec![format!("after-failover-p{partition}-proxy{proxy}")];
            let request = produce_request(topic, *partition, &values)?;
            let response = produce_within(&mut client, request, MOVE_DEADLINE)
                .await?
                .with_context(|| format!("produce to orphaned partition {partition}"))?;
            load.acknowledged
                .record(*partition, response.base_offset, &values);
        }
    }
    // The load goes on after the failover.
    let count = load.acknowledged.len();
    load.acknowledged
        .wait_for(count + 100, Duration::from_secs(20))
        .await?;
    let report = load.stop().await?;

    cluster
        .check_exactly_once(topic, partitions, &report.acknowledged)
        .await?;
    Ok(())
}

/// etcd is killed (-9) under a light durable load and started again on the
/// same data and ports. Producers may see errors and delays meanwhile (they
/// retry), but every acknowledged message is in the log, offsets stay
/// contiguous, and the cluster keeps working: every process is still up
/// (the standby controller too, and it still takes over), new topics are
/// assigned, and a broker killed afterwards has its partitions moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_restart_loses_no_acknowledged_message() -> anyhow::Result<()> {
    // A leader and a standby, waiting in its campaign.
    let mut cluster = Cluster::start(2, 3, 2, &[])?;
    let topic = "etcd-restart";
    let partitions = 3;
    cluster.create_topic(topic, partitions).await?;
    let options = LoadOptions {
        producers: 2,
        messages: 3,
        requests: None,
        retry_for: Some(Duration::from_secs(20)),
    };
    let load = Load::start(&cluster.proxy_addrs(), topic, partitions, options).await?;
    load.acknowledged
        .wait_for(50, Duration::from_secs(20))
        .await?;

    cluster.etcd.restart()?;
    // The load makes progress again once etcd is back.
    let count = load.acknowledged.len();
    let progress = load
        .acknowledged
        .wait_for(count + 50, Duration::from_secs(20))
        .await;
    let errors = load.errors();
    let report = load.stop().await;
    let exited = cluster.exited();
    eprintln!(
        "produce errors retried while etcd restarted: {errors}; processes that exited: {exited:?}"
    );
    let report = report.with_context(|| format!("logs:\n{}", cluster.logs()))?;
    progress.with_context(|| {
        format!(
            "no progress after etcd restarted; logs:\n{}",
            cluster.logs()
        )
    })?;

    cluster
        .check_exactly_once(topic, partitions, &report.acknowledged)
        .await?;

    // The cluster still works, which needs every process to follow etcd
    // again: a new topic is assigned, and serves through both proxies.
    let fresh = "after-etcd-restart";
    cluster.create_topic(fresh, partitions).await?;
    produce_and_read_back(&cluster, fresh, partitions, "new topic").await?;

    // Every process rode it out, the standby controller too...
    assert!(
        exited.is_empty(),
        "{exited:?} exited when etcd restarted; logs:\n{}",
        cluster.logs()
    );
    // ...which takes over when the leader dies, and moves the partitions of
    // a broker killed then (leases, election and watches all work again).
    let leader = cluster.leader().await?;
    cluster.controllers[leader].kill9();
    cluster.controllers[1 - leader]
        .wait_log(LEADING, MOVE_DEADLINE)
        .await
        .with_context(|| cluster.logs())?;
    let before = cluster.describe(topic).await?;
    cluster.broker(2).kill9();
    cluster
        .wait_description(
            topic,
            "broker 2's partitions to move after etcd restarted",
            MOVE_DEADLINE,
            |d| d.partitions.iter().all(|p| p.broker != 2 && p.broker != 0),
        )
        .await?;
    assert!(
        before.partitions.iter().any(|p| p.broker == 2),
        "broker 2 owned a partition: {before:?}"
    );
    produce_and_read_back(&cluster, topic, partitions, "after failovers").await?;
    Ok(())
}

/// etcd stays away for longer than the lease TTL, so every process's lease
/// runs out, and then comes back on its data. Nothing acknowledged is lost
/// and, with no operator restarting anything, the cluster serves again:
/// every partition takes writes through both proxies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_away_longer_than_the_lease_ttl_the_cluster_serves_again() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(2, 3, 2, &[])?;
    let topic = "etcd-outage";
    let partitions = 3;
    cluster.create_topic(topic, partitions).await?;
    let acknowledged = Acknowledged::default();
    let mut client = cluster.client(0).await?;
    for partition in 0..partitions {
        let values = vec![format!("before-outage-p{partition}")];
        let response = client
            .produce(produce_request(topic, partition, &values)?)
            .await?;
        acknowledged.record(partition, response.into_inner().base_offset, &values);
    }

    cluster.etcd.kill9();
    // Away until every broker has given its lease up.
    for broker in &cluster.brokers {
        broker.wait_log("lease lost", MOVE_DEADLINE).await?;
    }
    cluster.etcd.restart()?;
    // What was acknowledged is there, whatever became of the processes.
    let consumer = cluster.client(1).await?;
    check_acknowledged(&consumer, topic, partitions, &acknowledged.snapshot()).await?;

    for proxy in 0..2 {
        let client = cluster.client(proxy).await?;
        for partition in 0..partitions {
            let values = vec![format!("after-outage-p{partition}-proxy{proxy}")];
            let what = format!("{topic}/{partition} to take writes through proxy {proxy}");
            let response = wait_for(&what, Duration::from_secs(20), || {
                let mut client = client.clone();
                let request = produce_request(topic, partition, &values);
                async move {
                    // Each attempt is short: the proxy's own retries last longer.
                    let attempt = client.produce(request?);
                    let response = tokio::time::timeout(Duration::from_secs(3), attempt).await??;
                    Ok(Some(response.into_inner()))
                }
            })
            .await
            .with_context(|| {
                let exited = cluster.exited();
                format!(
                    "processes that exited: {exited:?}; logs:\n{}",
                    cluster.logs()
                )
            })?;
            acknowledged.record(partition, response.base_offset, &values);
        }
    }
    check_acknowledged(&consumer, topic, partitions, &acknowledged.snapshot()).await?;
    Ok(())
}

/// Produces one message to every partition through the first proxy and
/// reads it back through the second.
async fn produce_and_read_back(
    cluster: &Cluster,
    topic: &str,
    partitions: u32,
    what: &str,
) -> anyhow::Result<()> {
    let mut producer = cluster.client(0).await?;
    let consumer = cluster.client(1).await?;
    for partition in 0..partitions {
        let values = vec![format!("{what}-p{partition}")];
        let request = produce_request(topic, partition, &values)?;
        let response = produce_within(&mut producer, request, MOVE_DEADLINE)
            .await?
            .with_context(|| format!("{what}: produce to {topic}/{partition}"))?;
        let records = wait_for(
            &format!("{what}: the other proxy to serve {topic}/{partition}"),
            MOVE_DEADLINE,
            || {
                let mut consumer = consumer.clone();
                async move {
                    let records =
                        read_all(&mut consumer, topic, partition, response.base_offset).await?;
                    Ok((!records.is_empty()).then_some(records))
                }
            },
        )
        .await
        .with_context(|| format!("logs:\n{}", cluster.logs()))?;
        assert_eq!(
            records[0],
            (response.base_offset, values[0].clone().into_bytes()),
            "{what}: {topic}/{partition}"
        );
    }
    Ok(())
}

/// A controller leader is paused (SIGSTOP) long enough to lose its etcd
/// lease; the standby leads and moves a dead broker's partitions. Resumed,
/// the old leader steps down and stands by: it takes over again when the
/// new leader dies, and moves the partitions of a broker killed then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_controller_leader_resumes_as_a_standby() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(2, 3, 2, &[])?;
    let topic = "paused-controller";
    let partitions = 6;
    cluster.create_topic(topic, partitions).await?;
    let leader = cluster.leader().await?;
    let standby = 1 - leader;

    cluster.controllers[leader].signal("STOP")?;
    cluster.controllers[standby]
        .wait_log(LEADING, MOVE_DEADLINE)
        .await
        .with_context(|| cluster.logs())?;
    cluster.broker(1).kill9();
    let moved = cluster
        .wait_description(topic, "broker 1's partitions to move", MOVE_DEADLINE, |d| {
            d.partitions.iter().all(|p| p.broker != 1 && p.broker != 0)
        })
        .await?;

    cluster.controllers[leader].signal("CONT")?;
    cluster.controllers[leader]
        .wait_log("lost leadership", MOVE_DEADLINE)
        .await
        .with_context(|| cluster.logs())?;
    // Nothing changes hands when it resumes: the assignments stay as the
    // new leader made them, and every partition takes writes.
    produce_and_read_back(&cluster, topic, partitions, "resumed").await?;
    let owners = |d: &v1::TopicDescription| -> Vec<(u64, u64)> {
        d.partitions.iter().map(|p| (p.broker, p.epoch)).collect()
    };
    assert_eq!(
        owners(&cluster.describe(topic).await?),
        owners(&moved),
        "the resumed old leader changed assignments (broker, epoch)"
    );

    // It stands by: when the new leader dies, it leads again.
    cluster.controllers[standby].kill9();
    wait_for("the old leader to lead again", MOVE_DEADLINE, || {
        let times = cluster.controllers[leader].log().matches(LEADING).count();
        async move { Ok((times >= 2).then_some(())) }
    })
    .await
    .with_context(|| cluster.logs())?;
    cluster.broker(2).kill9();
    cluster
        .wait_description(topic, "broker 2's partitions to move", MOVE_DEADLINE, |d| {
            d.partitions.iter().all(|p| p.broker == 3)
        })
        .await?;
    produce_and_read_back(&cluster, topic, partitions, "after second failover").await?;
    Ok(())
}

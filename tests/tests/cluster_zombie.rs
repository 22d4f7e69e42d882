//! Zombie brokers: a broker paused (SIGSTOP) while its partitions move to
//! another broker, and resumed, must not make a single byte visible. The
//! etcd lease decides who writes; the create-if-absent checkpoint sequence
//! on the volume guarantees only one can.

use std::time::Duration;

use anyhow::Context;
use sluice_proto::v1;
use sluice_proto::v1::broker_client::BrokerClient;
use sluice_tests::cluster::{Cluster, connect};
use sluice_tests::load::{
    Acknowledged, batch, check_acknowledged, produce_request, produce_within,
};
use sluice_tests::servers::Storage;

/// The lease TTL of the harness is 2 s: a paused broker's partitions move
/// within a few of them.
const MOVE_DEADLINE: Duration = Duration::from_secs(15);

/// The partition's owner and epoch per DescribeTopic.
async fn owner(cluster: &Cluster, topic: &str, partition: u32) -> anyhow::Result<(u64, u64)> {
    let description = cluster.describe(topic).await?;
    let p = &description.partitions[partition as usize];
    Ok((p.broker, p.epoch))
}

/// Waits until `partition` is assigned away from `from` under a higher epoch.
async fn wait_moved(
    cluster: &Cluster,
    topic: &str,
    partition: u32,
    (from, epoch): (u64, u64),
) -> anyhow::Result<(u64, u64)> {
    let description = cluster
        .wait_description(
            topic,
            &format!("{topic}/{partition} to move off broker {from}"),
            MOVE_DEADLINE,
            |d| {
                let p = &d.partitions[partition as usize];
                p.broker != from && p.broker != 0 && p.epoch > epoch
            },
        )
        .await?;
    let p = &description.partitions[partition as usize];
    Ok((p.broker, p.epoch))
}

/// Produces `count` batches of one message each through proxy 0 and
/// records their acknowledgements.
async fn produce_through_proxy(
    cluster: &Cluster,
    topic: &str,
    prefix: &str,
    count: usize,
    acknowledged: &Acknowledged,
) -> anyhow::Result<()> {
    let mut client = cluster.client(0).await?;
    for i in 0..count {
        let values = vec![format!("{prefix}-{i}")];
        let request = produce_request(topic, 0, &values)?;
        let response = produce_within(&mut client, request, MOVE_DEADLINE)
            .await?
            .with_context(|| format!("produce {prefix}-{i}; logs:\n{}", cluster.logs()))?;
        acknowledged.record(0, response.base_offset, &values);
    }
    Ok(())
}

/// A produce sent straight to a broker, as a proxy would.
fn broker_produce(
    topic: &str,
    values: &[String],
    acks: v1::AckMode,
) -> anyhow::Result<v1::BrokerProduceRequest> {
    Ok(v1::BrokerProduceRequest {
        topic: topic.into(),
        partition: 0,
        records: batch(values)?,
        acks: acks as i32,
        request_id: String::new(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_broker_that_resumes_makes_nothing_visible() -> anyhow::Result<()> {
    zombie(None).await
}

/// The same on S3 (Ceph RGW), where the fence is `If-None-Match: *`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_broker_on_s3_makes_nothing_visible() -> anyhow::Result<()> {
    let Some(storage) = Storage::rgw("zombie") else {
        return Ok(());
    };
    zombie(Some(storage)).await
}

/// The same on HDFS, where the fence is a rename without overwrite and the
/// zombie still holds the HDFS lease of its open segment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_broker_on_hdfs_makes_nothing_visible() -> anyhow::Result<()> {
    let Some(storage) = Storage::hdfs("zombie") else {
        return Ok(());
    };
    zombie(Some(storage)).await
}

async fn zombie(storage: Option<Storage>) -> anyhow::Result<()> {
    // Buffer-acknowledged data waits for a long flush interval: the zombie
    // is paused holding data it has taken but not written.
    let flags = ["--flush-interval-ms", "60000"];
    // On shared storage, the three brokers of a small deployment.
    let brokers = if storage.is_some() { 3 } else { 2 };
    let mut cluster = Cluster::start_on(storage, 1, brokers, 1, &flags)?;
    let topic = "zombie";
    cluster.create_topic(topic, 1).await?;
    let acknowledged = Acknowledged::default();
    produce_through_proxy(&cluster, topic, "before", 20, &acknowledged).await?;
    let (zombie, old_epoch) = owner(&cluster, topic, 0).await?;
    assert!(zombie >= 1, "partition 0 has an owner");

    // Data the zombie acknowledges into its write buffer only (acks=buffer
    // is lost if the broker dies before a flush: it must not surface later).
    let mut direct = BrokerClient::new(connect(&cluster.broker(zombie).addr).await?);
    for i in 0..5 {
        let values = vec![format!("zombie-buffered-{i}")];
        direct
            .produce(broker_produce(topic, &values, v1::AckMode::Buffer)?)
            .await
            .context("the owner takes buffer-acknowledged data")?;
    }

    cluster.broker(zombie).signal("STOP")?;
    // A durable produce the zombie will only read once it resumes.
    let request = broker_produce(topic, &["zombie-late".to_owned()], v1::AckMode::Durable)?;
    let late = tokio::spawn(async move { direct.produce(request).await });

    let (new_owner, new_epoch) = wait_moved(&cluster, topic, 0, (zombie, old_epoch)).await?;
    cluster
        .broker(new_owner)
        .wait_log("took the write lease", MOVE_DEADLINE)
        .await?;
    produce_through_proxy(&cluster, topic, "after", 20, &acknowledged).await?;

    cluster.broker(zombie).signal("CONT")?;
    // The zombie finds out: its etcd lease expired while it was paused, so
    // it stops every partition (and later rejoins under a new lease, with
    // none of its old partitions).
    cluster
        .broker(zombie)
        .wait_log("lost the etcd lease", MOVE_DEADLINE)
        .await
        .with_context(|| format!("the zombie should notice; logs:\n{}", cluster.logs()))?;
    eprintln!(
        "the zombie stopped; it tried to write after resuming and was fenced by the \
         checkpoint sequence: {}",
        cluster
            .broker(zombie)
            .log()
            .contains("fenced by a newer owner")
    );
    let late = tokio::time::timeout(MOVE_DEADLINE, late)
        .await
        .context("the zombie's pending produce was never answered")??;
    assert!(
        late.is_err(),
        "the zombie acknowledged a durable produce after losing the partition: {late:?}"
    );

    // The new owner still writes; then the log is exactly what was acknowledged.
    produce_through_proxy(&cluster, topic, "last", 5, &acknowledged).await?;
    // Read through the proxy that saw it all, and through a new one that
    // has nothing cached and reads the volume.
    cluster.add_proxy(1)?;
    let acknowledged = acknowledged.snapshot();
    let expected: Vec<&String> = acknowledged.values().collect();
    for proxy in 0..2 {
        let consumer = cluster.client(proxy).await?;
        let stored = check_acknowledged(&consumer, topic, 1, &acknowledged)
            .await
            .with_context(|| format!("proxy {proxy}; logs:\n{}", cluster.logs()))?;
        assert_eq!(
            stored[&0].iter().collect::<Vec<_>>(),
            expected,
            "proxy {proxy}: partition 0 holds exactly the acknowledged messages, in order; logs:\n{}",
            cluster.logs()
        );
    }

    // The zombie's bytes may be on the volume (past the checkpointed end of
    // its segment), never in the log.
    if cluster.storage.volumes[0] == cluster.volume.to_string_lossy() {
        let written = zombie_bytes_on_volume(&cluster.volume.join(topic).join("0"))?;
        eprintln!("segment files holding zombie-only messages: {written:?}");
    }

    // On the volume, the newest checkpoint is the new owner's, and the
    // sequence never goes back to an older epoch.
    let checkpoints = cluster.checkpoints(topic, 0).await?;
    let newest = checkpoints.last().context("no checkpoint")?;
    assert_eq!(
        newest.1, new_epoch,
        "the newest checkpoint {newest:?} is under the new owner's epoch; all: {checkpoints:?}"
    );
    assert!(
        checkpoints.windows(2).all(|w| w[0].1 <= w[1].1),
        "checkpoint epochs never decrease: {checkpoints:?}"
    );
    Ok(())
}

/// Segment files (`*.log`) under `dir` that hold messages only the zombie took.
fn zombie_bytes_on_volume(dir: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    for name in sluice_tests::files_ending(dir, ".log") {
        let bytes = std::fs::read(dir.join(&name))?;
        if bytes.windows(b"zombie-".len()).any(|w| w == b"zombie-") {
            found.push(name);
        }
    }
    Ok(found)
}

/// A produce the proxy forwarded to an owner that is then paused moves to
/// the new owner once the partition does: the producer sees a delay, not a
/// hang for as long as the old owner stays paused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_produce_stuck_on_a_paused_owner_completes_on_the_new_owner() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(1, 2, 1, &[])?;
    let topic = "stuck";
    cluster.create_topic(topic, 1).await?;
    let acknowledged = Acknowledged::default();
    produce_through_proxy(&cluster, topic, "before", 3, &acknowledged).await?;
    let (paused, epoch) = owner(&cluster, topic, 0).await?;

    cluster.broker(paused).signal("STOP")?;
    let mut client = cluster.client(0).await?;
    let values = vec!["sent-while-paused".to_owned()];
    let request = produce_request(topic, 0, &values)?;
    let pending = tokio::spawn(async move { client.produce(request).await });
    wait_moved(&cluster, topic, 0, (paused, epoch)).await?;

    // The old owner stays paused: the produce must not wait for it.
    let answered = tokio::time::timeout(MOVE_DEADLINE, pending).await;
    cluster.broker(paused).signal("CONT")?;
    let response = answered
        .map_err(|_| {
            anyhow::anyhow!(
                "a produce forwarded to broker {paused} while it was paused still hangs \
                 {MOVE_DEADLINE:?} after its partition moved to another broker"
            )
        })??
        .context("the produce fails instead of moving to the new owner")?
        .into_inner();
    acknowledged.record(0, response.base_offset, &values);
    let consumer = cluster.client(0).await?;
    check_acknowledged(&consumer, topic, 1, &acknowledged.snapshot()).await?;
    Ok(())
}

//! `sluice bench failover`: how long partitions are unwritable when their
//! broker dies or when they are moved, measured as producers see it.
//!
//! - `--kill-pid PID --kill-broker ID`: producers write every partition
//!   continuously (durable acks); the benchmark sends SIGKILL to PID (the
//!   broker ID) and reports, per partition it owned, the time from the kill
//!   to the first acknowledged write sent after it.
//! - `--move`: fills one partition with `--small-mb` and another with
//!   `--large-mb`, moves each to another broker, and reports the time from
//!   the move request to the first acknowledged write sent after it. A move
//!   shifts a write lease, not data: the two should be the same.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use sluice_proto::v1;
use sluice_proto::v1::sluice_client::SluiceClient;
use sluice_record::{BatchBuilder, Compression};
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::client::{ServerArgs, data_client};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long, default_value = "failover")]
    topic: String,
    #[arg(long, default_value_t = 6)]
    partitions: u32,
    /// Process id of the broker to kill.
    #[arg(long, requires = "kill_broker")]
    kill_pid: Option<u32>,
    /// Id of that broker (to know which partitions it owns).
    #[arg(long)]
    kill_broker: Option<u64>,
    /// Measure moves of a small and a large partition instead of a kill.
    #[arg(long = "move", conflicts_with = "kill_pid")]
    move_partitions: bool,
    #[arg(long, default_value_t = 10)]
    small_mb: u64,
    #[arg(long, default_value_t = 2048)]
    large_mb: u64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let channel = args.server.channel().await?;
    let mut admin = args.server.admin().await?;
    let create = v1::CreateTopicRequest {
        name: args.topic.clone(),
        partitions: args.partitions,
        config: None,
    };
    if let Err(status) = admin.create_topic(create).await
        && status.code() != tonic::Code::AlreadyExists
    {
        return Err(status.into());
    }
    if args.move_partitions {
        return moves(&args, channel).await;
    }
    let (Some(pid), Some(victim)) = (args.kill_pid, args.kill_broker) else {
        bail!("give --kill-pid and --kill-broker, or --move");
    };
    let topic = admin
        .describe_topic(v1::DescribeTopicRequest {
            name: args.topic.clone(),
        })
        .await?
        .into_inner();
    let owned: Vec<u32> = topic
        .partitions
        .iter()
        .filter(|p| p.broker == victim)
        .map(|p| p.partition)
        .collect();
    if owned.is_empty() {
        bail!("broker {victim} owns no partition of {}", args.topic);
    }
    // Producers on every partition the victim owns; each reports the first
    // acknowledged write it sent after the kill.
    let (kill_sender, kill) = watch::channel::<Option<Instant>>(None);
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for partition in owned.clone() {
        let (client, topic, kill, stop) = (
            data_client(channel.clone()),
            args.topic.clone(),
            kill.clone(),
            stop.clone(),
        );
        tasks.spawn(async move {
            first_ack_after(client, topic, partition, kill, stop)
                .await
                .map(|t| (partition, t))
        });
    }
    // Let the producers run, then kill.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()?;
    let killed_at = Instant::now();
    anyhow::ensure!(status.success(), "kill -9 {pid} failed");
    kill_sender.send_replace(Some(killed_at));
    let mut results = BTreeMap::new();
    while let Some(result) = tasks.join_next().await {
        let (partition, elapsed) = result??;
        results.insert(partition, elapsed);
    }
    stop.store(true, Ordering::Relaxed);
    for (partition, elapsed) in &results {
        println!(
            "partition {partition}: first acknowledged write {:.0} ms after kill -9",
            elapsed.as_secs_f64() * 1000.0
        );
    }
    let worst = results.values().max().copied().unwrap_or_default();
    println!(
        "failover: {} partitions of broker {victim} writable again within {:.0} ms of kill -9",
        results.len(),
        worst.as_secs_f64() * 1000.0
    );
    Ok(())
}

/// Writes `partition` continuously; returns the time from the kill to the
/// first acknowledged write that was sent after it.
async fn first_ack_after(
    mut client: SluiceClient<Channel>,
    topic: String,
    partition: u32,
    kill: watch::Receiver<Option<Instant>>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Duration> {
    let records = small_batch()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let sent = Instant::now();
        let request = v1::ProduceRequest {
            topic: topic.clone(),
            target: Some(v1::produce_request::Target::Partition(partition)),
            records: records.clone(),
            acks: v1::AckMode::Durable as i32,
        };
        let acked = client.produce(request).await.is_ok();
        if let Some(killed_at) = *kill.borrow()
            && acked
            && sent > killed_at
        {
            return Ok(sent.duration_since(killed_at) + sent.elapsed());
        }
    }
    bail!("partition {partition} was not writable within 60 s")
}

/// Fills two partitions, moves each, and reports how long each was unwritable.
async fn moves(args: &Args, channel: Channel) -> anyhow::Result<()> {
    let mut admin = args.server.admin().await?;
    let mut client = data_client(channel.clone());
    let sizes = [(0u32, args.small_mb), (1u32, args.large_mb)];
    for (partition, mb) in sizes {
        fill(&mut client, &args.topic, partition, mb).await?;
    }
    let status = admin
        .cluster_status(v1::ClusterStatusRequest {})
        .await?
        .into_inner();
    let live: Vec<u64> = status
        .brokers
        .iter()
        .filter(|b| b.live && !b.draining)
        .map(|b| b.id)
        .collect();
    for (partition, mb) in sizes {
        let topic = admin
            .describe_topic(v1::DescribeTopicRequest {
                name: args.topic.clone(),
            })
            .await?
            .into_inner();
        let description = topic
            .partitions
            .get(partition as usize)
            .context("partition missing")?;
        let to = *live
            .iter()
            .find(|b| **b != description.broker)
            .context("need a second live broker")?;
        let started = Instant::now();
        admin
            .move_partition(v1::MovePartitionRequest {
                topic: args.topic.clone(),
                partition,
                to_broker: to,
            })
            .await?;
        // The first write sent after the move and acknowledged (by the new owner).
        let records = small_batch()?;
        loop {
            let request = v1::ProduceRequest {
                topic: args.topic.clone(),
                target: Some(v1::produce_request::Target::Partition(partition)),
                records: records.clone(),
                acks: v1::AckMode::Durable as i32,
            };
            if client.produce(request).await.is_ok() {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "partition {partition} unwritable for 60 s after the move"
            );
        }
        let size = description.segments.iter().map(|s| s.bytes).sum::<u64>();
        println!(
            "move of partition {partition} ({:.0} MB, {} segments) to broker {to}: writable again after {:.0} ms",
            size as f64 / 1e6,
            description.segments.len(),
            started.elapsed().as_secs_f64() * 1000.0
        );
        let _ = mb;
    }
    Ok(())
}

/// Writes about `mb` megabytes to a partition in 1 MiB batches.
async fn fill(
    client: &mut SluiceClient<Channel>,
    topic: &str,
    partition: u32,
    mb: u64,
) -> anyhow::Result<()> {
    let mut builder = BatchBuilder::new(Compression::None);
    let value = vec![b'x'; 1024];
    for _ in 0..1024 {
        builder.push(sluice_log::now_ms(), None, Some(&value), &[])?;
    }
    let batch: Bytes = builder.build()?;
    let batches = (mb * 1_000_000).div_ceil(batch.len() as u64);
    let mut pending = tokio::task::JoinSet::new();
    for _ in 0..batches {
        if pending.len() >= 8
            && let Some(done) = pending.join_next().await
        {
            done??;
        }
        let mut client = client.clone();
        let (topic, batch) = (topic.to_owned(), batch.clone());
        pending.spawn(async move {
            let request = v1::ProduceRequest {
                topic,
                target: Some(v1::produce_request::Target::Partition(partition)),
                records: batch,
                acks: v1::AckMode::Buffer as i32,
            };
            client
                .produce(request)
                .await
                .map(|_| ())
                .map_err(anyhow::Error::from)
        });
    }
    while let Some(done) = pending.join_next().await {
        done??;
    }
    Ok(())
}

fn small_batch() -> anyhow::Result<Bytes> {
    let mut builder = BatchBuilder::new(Compression::None);
    builder.push(sluice_log::now_ms(), None, Some(b"failover-probe"), &[])?;
    Ok(builder.build()?)
}

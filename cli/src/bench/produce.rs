//! `sluice bench produce`: by default through the SDK's [`Producer`] (what
//! applications get: batching, linger, idempotence, per-message delivery
//! futures); with `--raw`, many concurrent produce requests, each one
//! pre-built record batch (the server writes offsets into its own copy), so
//! the client does no per-message work and the server's capacity is measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use rand::RngCore;
use sluice_proto::v1;
use sluice_record::{BatchBuilder, Compression};

use sluice_sdk::{Acks, Producer, Record};

use crate::client::{ServerArgs, data_client};
use crate::cluster_admin::{VolumeTotals, volume_stats};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long, default_value = "bench")]
    topic: String,
    /// Partitions of the topic (created if it does not exist).
    #[arg(long, default_value_t = 8)]
    partitions: u32,
    #[arg(long, default_value_t = 1024)]
    message_size: usize,
    /// Messages to send in all.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// durable or buffer.
    #[arg(long, default_value = "durable", value_parser = ["durable", "buffer"])]
    acks: String,
    /// --raw: messages per record batch (one batch per request).
    #[arg(long, default_value_t = 128)]
    batch_messages: usize,
    /// SDK: largest batch the producer builds (bytes; default the SDK's, 1 MiB).
    #[arg(long)]
    batch_bytes: Option<usize>,
    /// Requests in flight per partition.
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// gRPC connections to spread requests over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Limit the send rate to this many MB/s (default: as fast as possible).
    #[arg(long)]
    rate_mb: Option<f64>,
    #[arg(long, default_value = "none")]
    compression: Compression,
    /// Segment size of the topic when the bench creates it (bytes); small
    /// segments make the run include segment rolls and object-store merges.
    #[arg(long)]
    segment_bytes: Option<u64>,
    /// Send pre-built batches with raw gRPC calls instead of the SDK.
    #[arg(long)]
    raw: bool,
    /// SDK: how long a batch waits for more messages (ms).
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// SDK: turn idempotence off (on by default, as in the SDK).
    #[arg(long)]
    no_idempotence: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    ensure_topic(&args).await?;
    if !args.raw {
        return run_sdk(&args).await;
    }
    let batch = build_batch(&args)?;
    let batch_bytes = (args.batch_messages * args.message_size) as u64;
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(args.server.channel().await?);
    }
    let remaining = Arc::new(AtomicU64::new(
        args.messages.div_ceil(args.batch_messages as u64),
    ));
    let workers = (args.partitions as usize * args.in_flight).max(1);
    // Each worker paces itself to its share of the rate.
    let interval = args
        .rate_mb
        .map(|rate| Duration::from_secs_f64(batch_bytes as f64 / (rate * 1e6 / workers as f64)));
    let storage_before = storage_totals(&args.server).await;
    let acks = if args.acks == "buffer" {
        v1::AckMode::Buffer
    } else {
        v1::AckMode::Durable
    };
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let mut client = data_client(channels[worker % channels.len()].clone());
        let (remaining, batch, topic) = (Arc::clone(&remaining), batch.clone(), args.topic.clone());
        let partition = (worker % args.partitions as usize) as u32;
        tasks.spawn(async move {
            let mut latencies = Histogram::<u64>::new(3)?;
            let mut sent = 0u64;
            while remaining
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                if let Some(interval) = interval {
                    // Workers are staggered over the interval: a steady load, not bursts.
                    let slot = sent as f64 + worker as f64 / workers as f64;
                    tokio::time::sleep_until((started + interval.mul_f64(slot)).into()).await;
                }
                let request = v1::ProduceRequest {
                    topic: topic.clone(),
                    target: Some(v1::produce_request::Target::Partition(partition)),
                    records: batch.clone(),
                    acks: acks as i32,
                };
                let begin = Instant::now();
                client.produce(request).await.context("produce failed")?;
                latencies.record(begin.elapsed().as_micros() as u64)?;
                sent += 1;
            }
            anyhow::Ok((sent, latencies))
        });
    }
    let mut latencies = Histogram::<u64>::new(3)?;
    let mut batches = 0u64;
    while let Some(result) = tasks.join_next().await {
        let (sent, histogram) = result??;
        batches += sent;
        latencies.add(histogram)?;
    }
    let messages = batches * args.batch_messages as u64;
    report(
        &args,
        "raw",
        messages,
        started.elapsed(),
        &latencies,
        storage_before,
    )
    .await
}

/// Prints the run's figures and the storage requests it caused.
async fn report(
    args: &Args,
    client: &str,
    messages: u64,
    elapsed: Duration,
    latencies: &Histogram<u64>,
    storage_before: Option<VolumeTotals>,
) -> anyhow::Result<()> {
    let bytes = messages * args.message_size as u64;
    println!(
        "produce ({client}): {messages} messages of {} bytes in {:.2} s, acks={}: {:.0} messages/s, {:.1} MB/s; latency ms p50 {:.2} p99 {:.2} p999 {:.2} max {:.2}",
        args.message_size,
        elapsed.as_secs_f64(),
        args.acks,
        messages as f64 / elapsed.as_secs_f64(),
        super::mb_per_s(bytes, elapsed),
        latencies.value_at_quantile(0.5) as f64 / 1000.0,
        latencies.value_at_quantile(0.99) as f64 / 1000.0,
        latencies.value_at_quantile(0.999) as f64 / 1000.0,
        latencies.max() as f64 / 1000.0,
    );
    if let Some(before) = storage_before {
        report_storage(&args.server, before, bytes).await?;
    }
    Ok(())
}

/// The SDK path: one [`Producer`] sends every message; each message's
/// latency is from `send` to its delivery (awaited in send order, so a
/// message delivered early counts when the ones before it are).
async fn run_sdk(args: &Args) -> anyhow::Result<()> {
    let mut builder = Producer::builder(args.server.endpoints());
    if let Some(bytes) = args.batch_bytes {
        builder = builder.batch_bytes(bytes);
    }
    let producer = builder
        .acks(if args.acks == "buffer" {
            Acks::Buffer
        } else {
            Acks::Durable
        })
        .compression(args.compression)
        .linger(Duration::from_millis(args.linger_ms))
        .max_in_flight(args.in_flight.max(1))
        .idempotence(!args.no_idempotence)
        .build()
        .await?;
    // A few distinct payloads, shared (the SDK copies each into its batch).
    let payloads: Vec<Bytes> = (0..16)
        .map(|_| {
            let mut value = vec![0u8; args.message_size];
            rand::rng().fill_bytes(&mut value);
            Bytes::from(value)
        })
        .collect();
    let storage_before = storage_totals(&args.server).await;
    let (pending, mut deliveries) = tokio::sync::mpsc::channel(1 << 16);
    let collector = tokio::spawn(async move {
        let mut latencies = Histogram::<u64>::new(3)?;
        let mut delivered = 0u64;
        while let Some((sent_at, delivery)) = deliveries.recv().await {
            let delivery: sluice_sdk::DeliveryFuture = delivery;
            delivery.await.context("a message was not delivered")?;
            let sent_at: Instant = sent_at;
            latencies.record(sent_at.elapsed().as_micros() as u64)?;
            delivered += 1;
        }
        anyhow::Ok((delivered, latencies))
    });
    let started = Instant::now();
    let pace = args
        .rate_mb
        .map(|rate| Duration::from_secs_f64(args.message_size as f64 / (rate * 1e6)));
    for i in 0..args.messages {
        if let Some(pace) = pace {
            tokio::time::sleep_until((started + pace.mul_f64(i as f64)).into()).await;
        }
        let value = payloads[i as usize % payloads.len()].clone();
        let delivery = producer
            .send(Record::new(args.topic.clone(), value))
            .await?;
        if pending.send((Instant::now(), delivery)).await.is_err() {
            break;
        }
    }
    drop(pending);
    producer.flush().await?;
    let (delivered, latencies) = collector.await??;
    let elapsed = started.elapsed();
    producer.close().await?;
    report(args, "sdk", delivered, elapsed, &latencies, storage_before).await
}

/// The storage request totals, or `None` (with a note) if the server does not report them.
async fn storage_totals(server: &ServerArgs) -> Option<VolumeTotals> {
    match volume_stats(server).await {
        Ok(stats) => Some(VolumeTotals::of(&stats)),
        Err(e) => {
            eprintln!("note: no storage request counts from the server: {e}");
            None
        }
    }
}

/// Prints the storage requests the run caused, per GB produced, once the
/// counts settle (seals, merges and checkpoints finish after the last ack).
async fn report_storage(
    server: &ServerArgs,
    before: VolumeTotals,
    produced: u64,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = storage_totals(server).await.unwrap_or(before);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = storage_totals(server).await.unwrap_or(last);
        if now == last || Instant::now() > deadline {
            last = now;
            break;
        }
        last = now;
    }
    let run = last.since(before);
    let gb = produced as f64 / 1e9;
    println!(
        "storage: {} PUTs ({:.0} per GB produced), {} GETs/HEADs, {} LISTs, {} DELETEs; {:.1} MB written",
        run.puts,
        run.puts as f64 / gb.max(1e-9),
        run.gets,
        run.lists,
        run.deletes,
        run.bytes_written as f64 / 1e6,
    );
    Ok(())
}

async fn ensure_topic(args: &Args) -> anyhow::Result<()> {
    let mut admin = args.server.admin().await?;
    let request = v1::CreateTopicRequest {
        name: args.topic.clone(),
        partitions: args.partitions,
        config: args.segment_bytes.map(|bytes| v1::TopicConfig {
            segment_bytes: Some(bytes),
            ..Default::default()
        }),
    };
    match admin.create_topic(request).await {
        Ok(_) => Ok(()),
        Err(status) if status.code() == tonic::Code::AlreadyExists => {
            let topic = admin
                .describe_topic(v1::DescribeTopicRequest {
                    name: args.topic.clone(),
                })
                .await?
                .into_inner();
            anyhow::ensure!(
                topic.partitions.len() as u32 >= args.partitions,
                "topic {} has {} partitions, fewer than --partitions {}",
                args.topic,
                topic.partitions.len(),
                args.partitions
            );
            Ok(())
        }
        Err(status) => Err(status.into()),
    }
}

fn build_batch(args: &Args) -> anyhow::Result<Bytes> {
    let mut builder = BatchBuilder::new(args.compression);
    let mut value = vec![0u8; args.message_size];
    let now = sluice_log::now_ms();
    for _ in 0..args.batch_messages.max(1) {
        rand::rng().fill_bytes(&mut value);
        builder.push(now, None, Some(&value), &[])?;
    }
    Ok(builder.build()?)
}

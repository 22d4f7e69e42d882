//! `sluice produce TOPIC`: one message per line of standard input, batched
//! into Kafka record batches (optionally compressed) per partition.

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use anyhow::{Context, bail};
use sluice_proto::v1;
use sluice_record::{BatchBuilder, Compression};
use tokio::io::AsyncBufReadExt;

use crate::client::ServerArgs;

/// A batch is sent once it holds this many bytes...
const BATCH_BYTES: usize = 1 << 20;

#[derive(clap::Args, Debug)]
pub struct Args {
    topic: String,
    #[command(flatten)]
    server: ServerArgs,
    /// Send every message to this partition (default: by key, else round-robin per batch).
    #[arg(long)]
    partition: Option<u32>,
    /// Split each line at the first occurrence of this string into key and value.
    #[arg(long)]
    key_separator: Option<String>,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: Compression,
    /// durable (flushed and checkpointed) or buffer (in the broker's buffer).
    #[arg(long, default_value = "durable", value_parser = ["durable", "buffer"])]
    acks: String,
    /// ... or this many messages.
    #[arg(long, default_value_t = 1000)]
    batch_messages: usize,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut client = args.server.data().await?;
    let mut admin = args.server.admin().await?;
    let description = admin
        .describe_topic(v1::DescribeTopicRequest {
            name: args.topic.clone(),
        })
        .await?
        .into_inner();
    let partitions = NonZeroU32::new(description.partitions.len() as u32)
        .context("the topic has no partitions")?;
    if let Some(partition) = args.partition
        && partition >= partitions.get()
    {
        bail!(
            "partition {partition} is out of range for topic {:?}, which has {partitions} partitions",
            args.topic
        );
    }
    let acks = match args.acks.as_str() {
        "buffer" => v1::AckMode::Buffer,
        _ => v1::AckMode::Durable,
    };
    let mut pending: BTreeMap<u32, BatchBuilder> = BTreeMap::new();
    let mut next_keyless = 0u32;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut sent = 0u64;
    while let Some(line) = lines
        .next_line()
        .await
        .context("cannot read standard input")?
    {
        let (key, value): (Option<Vec<u8>>, String) = match &args.key_separator {
            Some(separator) => match line.split_once(separator.as_str()) {
                Some((key, value)) => (Some(key.as_bytes().to_vec()), value.to_owned()),
                None => (None, line),
            },
            None => (None, line),
        };
        let partition = match (args.partition, &key) {
            (Some(partition), _) => partition,
            (None, Some(key)) => sluice_record::partition_for_key(key, partitions),
            (None, None) => next_keyless % partitions.get(),
        };
        let builder = pending
            .entry(partition)
            .or_insert_with(|| BatchBuilder::new(args.compression));
        builder.push(
            sluice_log::now_ms(),
            key.as_deref(),
            Some(value.as_bytes()),
            &[],
        )?;
        if (builder.len() >= args.batch_messages || builder.estimated_size() >= BATCH_BYTES)
            && let Some(builder) = pending.remove(&partition)
        {
            sent += send(&mut client, &args.topic, partition, builder, acks).await?;
            next_keyless = next_keyless.wrapping_add(1);
        }
    }
    for (partition, builder) in std::mem::take(&mut pending) {
        sent += send(&mut client, &args.topic, partition, builder, acks).await?;
    }
    eprintln!("produced {sent} messages to {}", args.topic);
    Ok(())
}

async fn send(
    client: &mut sluice_proto::v1::sluice_client::SluiceClient<tonic::transport::Channel>,
    topic: &str,
    partition: u32,
    builder: BatchBuilder,
    acks: v1::AckMode,
) -> anyhow::Result<u64> {
    let count = builder.len() as u64;
    let records = builder.build()?;
    let request = v1::ProduceRequest {
        topic: topic.to_owned(),
        target: Some(v1::produce_request::Target::Partition(partition)),
        records,
        acks: acks as i32,
    };
    client.produce(request).await?;
    Ok(count)
}

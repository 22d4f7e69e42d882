//! `sluice bench consume`: read every partition of a topic from its earliest
//! offset to the end it had when the benchmark started; counts bytes and
//! records from batch headers (no decoding, as a pass-through consumer).

use std::time::Instant;

use anyhow::Context;
use sluice_proto::v1;
use sluice_record::BatchIter;

use crate::client::{ServerArgs, data_client};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long, default_value = "bench")]
    topic: String,
    /// Bytes asked for per fetch.
    #[arg(long, default_value_t = 8 << 20)]
    max_bytes: u32,
    /// Consume as this consumer group through the SDK (use a new group
    /// name: members start at the earliest offset where nothing is committed).
    #[arg(long)]
    group: Option<String>,
    /// Group members, each its own SDK consumer (with --group).
    #[arg(long, default_value_t = 3, requires = "group")]
    members: usize,
    /// Measure a rebalance instead of throughput: this long after the start,
    /// one member stops without leaving (as if killed), and the time until
    /// the others own and consume its partitions is reported.
    #[arg(long, requires = "group")]
    kill_after_ms: Option<u64>,
    /// Session timeout of each member (ms).
    #[arg(long, default_value_t = 10_000, requires = "group")]
    session_timeout_ms: u64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.group.is_some() {
        let (server, topic) = (args.server.clone(), args.topic.clone());
        return super::group::run(&server, &topic, &args.into_group()).await;
    }
    let channel = args.server.channel().await?;
    let topic = args
        .server
        .admin()
        .await?
        .describe_topic(v1::DescribeTopicRequest {
            name: args.topic.clone(),
        })
        .await?
        .into_inner();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for partition in topic.partitions {
        let mut client = data_client(channel.clone());
        let (topic, max_bytes) = (args.topic.clone(), args.max_bytes);
        let (mut offset, end) = (partition.start_offset, partition.end_offset);
        tasks.spawn(async move {
            let (mut bytes, mut records) = (0u64, 0u64);
            while offset < end {
                let request = v1::FetchRequest {
                    topic: topic.clone(),
                    partition: partition.partition,
                    offset,
                    max_bytes,
                    min_bytes: 1,
                    max_wait_ms: 0,
                };
                let fetched = client
                    .fetch(request)
                    .await
                    .context("fetch failed")?
                    .into_inner();
                anyhow::ensure!(
                    !fetched.records.is_empty(),
                    "no data at offset {offset} of partition {}",
                    partition.partition
                );
                bytes += fetched.records.len() as u64;
                for batch in BatchIter::new(fetched.records) {
                    let header = batch?.header;
                    records += header.next_offset().min(end) as u64
                        - header.base_offset.max(offset) as u64;
                    offset = header.next_offset();
                }
            }
            anyhow::Ok((bytes, records))
        });
    }
    let (mut bytes, mut records) = (0u64, 0u64);
    while let Some(result) = tasks.join_next().await {
        let (b, r) = result??;
        bytes += b;
        records += r;
    }
    let elapsed = started.elapsed();
    println!(
        "consume: {records} messages, {bytes} bytes in {:.2} s: {:.0} messages/s, {:.1} MB/s",
        elapsed.as_secs_f64(),
        records as f64 / elapsed.as_secs_f64(),
        super::mb_per_s(bytes, elapsed)
    );
    Ok(())
}

impl Args {
    fn into_group(self) -> super::group::GroupArgs {
        super::group::GroupArgs {
            group: self.group.unwrap_or_default(),
            members: self.members.max(1),
            kill_after: self.kill_after_ms.map(std::time::Duration::from_millis),
            session_timeout: std::time::Duration::from_millis(self.session_timeout_ms),
            max_bytes: self.max_bytes,
        }
    }
}

//! `sluice consume TOPIC`: prints message values, one per line, reading each
//! partition in order with long-poll fetches.

use std::io::Write;

use anyhow::Context;
use bytes::Bytes;
use sluice_proto::v1;
use sluice_proto::v1::sluice_client::SluiceClient;
use sluice_record::BatchIter;
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::client::{ServerArgs, data_client};

#[derive(clap::Args, Debug)]
pub struct Args {
    topic: String,
    #[command(flatten)]
    server: ServerArgs,
    /// Read only this partition (default: all).
    #[arg(long)]
    partition: Option<u32>,
    /// Start at the earliest offset (default: at the end, for new messages).
    #[arg(long, conflicts_with = "offset")]
    from_beginning: bool,
    /// Start at this offset.
    #[arg(long)]
    offset: Option<i64>,
    /// Stop after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Keep waiting for new messages; without it, stop at the end of each
    /// partition as it was when consuming started.
    #[arg(long)]
    follow: bool,
    /// Print "partition:offset:key:" before each value.
    #[arg(long)]
    print_offsets: bool,
    /// Consume as a member of this consumer group: partitions are shared
    /// with the group's other members, and what is printed is committed.
    /// Starts at the group's committed offsets (else at the end, or the
    /// beginning with --from-beginning) and runs until stopped or --count.
    #[arg(long, conflicts_with_all = ["partition", "offset", "follow"])]
    group: Option<String>,
    /// The group member's session timeout (ms): how long after this
    /// process dies its partitions go to other members.
    #[arg(long, default_value_t = 10_000, requires = "group")]
    session_timeout_ms: u64,
    /// A static member id that survives restarts (with --group): a restart
    /// within the session timeout keeps the partitions, without a rebalance.
    #[arg(long, requires = "group")]
    instance_id: Option<String>,
}

/// One record, as printed.
struct Line {
    partition: u32,
    offset: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(group) = &args.group {
        return crate::group::GroupConsume {
            server: &args.server,
            topic: &args.topic,
            group,
            from_beginning: args.from_beginning,
            count: args.count,
            print_offsets: args.print_offsets,
            session_timeout: std::time::Duration::from_millis(args.session_timeout_ms),
            instance_id: args.instance_id.as_deref(),
        }
        .run()
        .await;
    }
    let channel = args.server.channel().await?;
    let description = args
        .server
        .admin()
        .await?
        .describe_topic(v1::DescribeTopicRequest {
            name: args.topic.clone(),
        })
        .await?
        .into_inner();
    let partitions: Vec<u32> = match args.partition {
        Some(p) if p as usize >= description.partitions.len() => {
            anyhow::bail!(
                "partition {p} is out of range for topic {:?}, which has {} partitions",
                args.topic,
                description.partitions.len()
            )
        }
        Some(p) => vec![p],
        None => (0..description.partitions.len() as u32).collect(),
    };
    let (lines, mut received) = mpsc::channel::<anyhow::Result<Vec<Line>>>(64);
    let mut tasks = tokio::task::JoinSet::new();
    for partition in partitions {
        let reader = PartitionReader {
            client: data_client(channel.clone()),
            topic: args.topic.clone(),
            partition,
        };
        let start = Start::from(&args);
        let (follow, lines) = (args.follow, lines.clone());
        tasks.spawn(async move {
            if let Err(e) = reader.run(start, follow, &lines).await {
                let _ = lines.send(Err(e)).await;
            }
        });
    }
    drop(lines);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    'receive: while let Some(batch) = received.recv().await {
        for line in batch? {
            if args.print_offsets {
                let key = line
                    .key
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                write!(out, "{}:{}:{}:", line.partition, line.offset, key)?;
            }
            out.write_all(line.value.as_deref().unwrap_or_default())?;
            out.write_all(b"\n")?;
            printed += 1;
            if args.count.is_some_and(|count| printed >= count) {
                break 'receive;
            }
        }
        if args.follow {
            out.flush()?;
        }
    }
    out.flush()?;
    tasks.abort_all();
    Ok(())
}

#[derive(Clone, Copy)]
enum Start {
    Earliest,
    Latest,
    Offset(i64),
}

impl From<&Args> for Start {
    fn from(args: &Args) -> Self {
        match (args.offset, args.from_beginning) {
            (Some(offset), _) => Start::Offset(offset),
            (None, true) => Start::Earliest,
            (None, false) => Start::Latest,
        }
    }
}

struct PartitionReader {
    client: SluiceClient<Channel>,
    topic: String,
    partition: u32,
}

impl PartitionReader {
    async fn list_offset(&mut self, spec: v1::list_offsets_request::Spec) -> anyhow::Result<i64> {
        let request = v1::ListOffsetsRequest {
            topic: self.topic.clone(),
            partition: self.partition,
            spec: Some(spec),
        };
        let response = self.client.list_offsets(request).await?.into_inner();
        response.offset.context("the server returned no offset")
    }

    async fn run(
        mut self,
        start: Start,
        follow: bool,
        lines: &mpsc::Sender<anyhow::Result<Vec<Line>>>,
    ) -> anyhow::Result<()> {
        let empty = v1::Empty {};
        let mut offset = match start {
            Start::Offset(offset) => offset,
            Start::Earliest => {
                self.list_offset(v1::list_offsets_request::Spec::Earliest(empty))
                    .await?
            }
            Start::Latest => {
                self.list_offset(v1::list_offsets_request::Spec::Latest(empty))
                    .await?
            }
        };
        let end = if follow {
            i64::MAX
        } else {
            self.list_offset(v1::list_offsets_request::Spec::Latest(v1::Empty {}))
                .await?
        };
        while offset < end {
            let request = v1::FetchRequest {
                topic: self.topic.clone(),
                partition: self.partition,
                offset,
                max_bytes: 4 << 20,
                min_bytes: 1,
                max_wait_ms: if follow { 5_000 } else { 0 },
            };
            let fetched = self
                .client
                .fetch(request)
                .await
                .with_context(|| {
                    format!(
                        "fetch from {}/{} at offset {offset}",
                        self.topic, self.partition
                    )
                })?
                .into_inner();
            let mut batch_lines = Vec::new();
            for batch in BatchIter::new(fetched.records) {
                let batch = batch?;
                for record in sluice_record::decode_records_shared(&batch.bytes)? {
                    if record.offset >= offset && record.offset < end {
                        batch_lines.push(Line {
                            partition: self.partition,
                            offset: record.offset,
                            key: record.key,
                            value: record.value,
                        });
                    }
                }
                offset = offset.max(batch.header.next_offset());
            }
            if !batch_lines.is_empty() && lines.send(Ok(batch_lines)).await.is_err() {
                break;
            }
        }
        Ok(())
    }
}

//! `sluice topic create|list|describe|add-partitions|delete-records|delete`.

use sluice_proto::v1;

use crate::client::ServerArgs;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// Delete whole segments older than this (ms); -1 keeps data forever.
        #[arg(long = "retention-ms", allow_negative_numbers = true)]
        retention_ms: Option<i64>,
        /// Delete oldest segments while a partition holds more than this (bytes); -1: no limit.
        #[arg(long = "retention-bytes", allow_negative_numbers = true)]
        retention_bytes: Option<i64>,
        /// Roll segments at this size (bytes).
        #[arg(long = "segment-bytes")]
        segment_bytes: Option<u64>,
        /// Roll segments at this age (ms).
        #[arg(long = "segment-ms")]
        segment_ms: Option<u64>,
        /// Largest record batch accepted (bytes).
        #[arg(long = "max-batch-bytes")]
        max_batch_bytes: Option<u32>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List topics.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show a topic's config, partitions, offsets and segments.
    Describe {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Raise a topic's partition count to --partitions.
    AddPartitions {
        name: String,
        /// The new total number of partitions.
        #[arg(long)]
        partitions: u32,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete a partition's records before --offset: its log start offset
    /// rises there (Kafka's DeleteRecords), and whole segments below go.
    DeleteRecords {
        name: String,
        #[arg(long)]
        partition: u32,
        /// The new log start offset; -1 deletes everything up to the high watermark.
        #[arg(long, allow_negative_numbers = true)]
        offset: i64,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete a topic and all its data.
    Delete {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Create {
            name,
            partitions,
            retention_ms,
            retention_bytes,
            segment_bytes,
            segment_ms,
            max_batch_bytes,
            server,
        } => {
            let config = v1::TopicConfig {
                retention_ms,
                retention_bytes,
                segment_bytes,
                segment_ms,
                max_batch_bytes,
            };
            let request = v1::CreateTopicRequest {
                name,
                partitions,
                config: Some(config),
            };
            let created = server
                .admin()
                .await?
                .create_topic(request)
                .await?
                .into_inner();
            println!(
                "created topic {} with {} partitions",
                created.name,
                created.partitions.len()
            );
        }
        Command::List { server } => {
            let topics = server
                .admin()
                .await?
                .list_topics(v1::ListTopicsRequest {})
                .await?
                .into_inner();
            for topic in topics.topics {
                println!("{}\t{} partitions", topic.name, topic.partitions);
            }
        }
        Command::Describe { name, server } => {
            let topic = server
                .admin()
                .await?
                .describe_topic(v1::DescribeTopicRequest { name })
                .await?
                .into_inner();
            print_description(&topic);
        }
        Command::AddPartitions {
            name,
            partitions,
            server,
        } => {
            let request = v1::AddPartitionsRequest { name, partitions };
            let topic = server
                .admin()
                .await?
                .add_partitions(request)
                .await?
                .into_inner();
            println!(
                "topic {} has {} partitions",
                topic.name,
                topic.partitions.len()
            );
        }
        Command::DeleteRecords {
            name,
            partition,
            offset,
            server,
        } => {
            let request = v1::DeleteRecordsRequest {
                topic: name.clone(),
                partition,
                offset,
            };
            let deleted = server
                .admin()
                .await?
                .delete_records(request)
                .await?
                .into_inner();
            println!(
                "{name}/{partition} now starts at offset {}",
                deleted.log_start_offset
            );
        }
        Command::Delete { name, server } => {
            server
                .admin()
                .await?
                .delete_topic(v1::DeleteTopicRequest { name: name.clone() })
                .await?;
            println!("deleted topic {name}");
        }
    }
    Ok(())
}

fn print_description(topic: &v1::TopicDescription) {
    println!("topic {} (id {})", topic.name, topic.id);
    if let Some(config) = &topic.config {
        let show = |v: Option<i64>| v.map_or("default".to_owned(), |v| v.to_string());
        println!(
            "  retention_ms={} retention_bytes={} segment_bytes={} segment_ms={} max_batch_bytes={}",
            show(config.retention_ms),
            show(config.retention_bytes),
            show(config.segment_bytes.map(|v| v as i64)),
            show(config.segment_ms.map(|v| v as i64)),
            show(config.max_batch_bytes.map(i64::from)),
        );
    }
    for partition in &topic.partitions {
        println!(
            "  partition {}: broker {} epoch {} offsets {}..{} ({} segments)",
            partition.partition,
            partition.broker,
            partition.epoch,
            partition.start_offset,
            partition.end_offset,
            partition.segments.len()
        );
        for segment in &partition.segments {
            println!(
                "    segment {}..{} {} bytes {} on {}",
                segment.base_offset,
                segment.end_offset,
                segment.bytes,
                if segment.sealed { "sealed" } else { "open" },
                segment.volume
            );
        }
    }
}

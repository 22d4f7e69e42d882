//! Joins consumer group GROUP for TOPIC, prints each message, and commits
//! by hand once the messages of a poll are processed (at-least-once).
//! Stops on Ctrl-C, leaving the group.
//!
//! ```text
//! cargo run -p sluice-sdk --example consume_group -- [SERVER [TOPIC [GROUP]]]
//! ```
//!
//! SERVER defaults to `$SLUICE_SERVER`, else 127.0.0.1:7070.

use std::sync::Arc;
use std::time::Duration;

use sluice_sdk::{Consumer, OffsetReset, RebalanceListener, TopicPartition, async_trait};

/// Prints the partitions each rebalance moves.
struct PrintRebalance;

#[async_trait]
impl RebalanceListener for PrintRebalance {
    async fn on_revoked(&self, partitions: &[TopicPartition]) {
        println!("revoked: {partitions:?}");
    }

    async fn on_assigned(&self, partitions: &[TopicPartition]) {
        println!("assigned: {partitions:?}");
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let server = args
        .next()
        .or_else(|| std::env::var("SLUICE_SERVER").ok())
        .unwrap_or_else(|| "127.0.0.1:7070".to_owned());
    let topic = args.next().unwrap_or_else(|| "example".to_owned());
    let group = args.next().unwrap_or_else(|| "example-group".to_owned());

    let mut consumer = Consumer::builder([server])
        .group(group)
        .auto_commit(None)
        .auto_offset_reset(OffsetReset::Earliest)
        .rebalance_listener(Arc::new(PrintRebalance))
        .build()
        .await?;
    consumer.subscribe([topic])?;
    loop {
        let records = tokio::select! {
            records = consumer.poll(Duration::from_secs(1)) => records?,
            _ = tokio::signal::ctrl_c() => break,
        };
        for record in &records {
            let value = record.value.as_deref().unwrap_or_default();
            println!(
                "{}/{} at {}: {}",
                record.topic,
                record.partition,
                record.offset,
                String::from_utf8_lossy(value)
            );
        }
        if !records.is_empty() {
            // Processed: commit, so a restart or a rebalance resumes after them.
            consumer.commit().await?;
        }
    }
    consumer.close().await?;
    Ok(())
}

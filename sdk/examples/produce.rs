//! Sends COUNT keyed messages to TOPIC, waits for every delivery and
//! prints where each message was written.
//!
//! ```text
//! cargo run -p sluice-sdk --example produce -- [SERVER [TOPIC [COUNT]]]
//! ```
//!
//! SERVER defaults to `$SLUICE_SERVER`, else 127.0.0.1:7070.

use sluice_sdk::{Compression, Producer, Record};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let server = args
        .next()
        .or_else(|| std::env::var("SLUICE_SERVER").ok())
        .unwrap_or_else(|| "127.0.0.1:7070".to_owned());
    let topic = args.next().unwrap_or_else(|| "example".to_owned());
    let count: u32 = args.next().map_or(Ok(10), |count| count.parse())?;

    let producer = Producer::builder([server])
        .compression(Compression::Lz4)
        .build()
        .await?;
    // Queue every message first: they travel in a few batches.
    let mut deliveries = Vec::new();
    for i in 0..count {
        let record = Record::new(topic.clone(), format!("message {i}"))
            .with_key(format!("key-{}", i % 4))
            .with_header("example", "produce");
        deliveries.push(producer.send(record).await?);
    }
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let delivery = delivery.await?;
        println!(
            "message {i}: {}/{} at offset {}",
            delivery.topic, delivery.partition, delivery.offset
        );
    }
    producer.close().await?;
    Ok(())
}

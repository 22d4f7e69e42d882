//! Latency of small requests against a volume: `put_if_absent` of 200-byte
//! objects, then whole GETs and 100-byte ranged reads of them, one at a
//! time, as a broker's checkpoints and a proxy's tail reads are.
//!
//! ```sh
//! AWS_ENDPOINT_URL=http://127.0.0.1:7480 AWS_ALLOW_HTTP=true ... \
//!   cargo run --release -p sluice-storage --example request_latency -- s3://bucket/prefix [COUNT]
//! ```

use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_storage::{SegmentLayout, open_volume};

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    println!(
        "{what:<12} n={} p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms",
        samples.len(),
        at(0.5),
        at(0.9),
        at(0.99)
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().ok_or("usage: request_latency URL [COUNT]")?;
    let count: usize = args.next().map_or(Ok(200), |n| n.parse())?;
    let volume = open_volume(&url).await?;
    let run = format!("latency-{}", std::process::id());
    let data = Bytes::from(vec![7u8; 200]);
    let (mut puts, mut gets, mut ranged) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..count {
        let key = format!("{run}/{i:06}");
        let start = Instant::now();
        volume.put_if_absent(&key, data.clone()).await?;
        puts.push(start.elapsed());
    }
    for i in 0..count {
        let key = format!("{run}/{i:06}");
        let start = Instant::now();
        volume.get(&key).await?;
        gets.push(start.elapsed());
        let start = Instant::now();
        volume
            .read_segment(&key, &SegmentLayout::Object { len: 200 }, 50..150)
            .await?;
        ranged.push(start.elapsed());
    }
    volume.delete_prefix(&run).await?;
    report("put", puts);
    report("get", gets);
    report("ranged get", ranged);
    Ok(())
}

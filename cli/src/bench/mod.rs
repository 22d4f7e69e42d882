//! `sluice bench produce|consume`: throughput and latency, measured from a
//! client as users see them. Figures use MB = 10^6 bytes, like `dd`.

mod consume;
mod failover;
mod group;
mod produce;

use std::time::Duration;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Produce messages as fast as possible (or at --rate-mb) and report throughput and latency.
    Produce(produce::Args),
    /// Read a topic from the beginning to its current end and report throughput.
    Consume(consume::Args),
    /// Time for partitions to be writable again after kill -9 of their broker, or after a move.
    Failover(failover::Args),
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Produce(args) => produce::run(args).await,
        Command::Consume(args) => consume::run(args).await,
        Command::Failover(args) => failover::run(args).await,
    }
}

/// Megabytes (10^6 bytes) per second.
fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9)
}

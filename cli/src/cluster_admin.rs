//! Cluster operations from the command line, through any proxy:
//! `sluice cluster status|rebalance`, `sluice broker drain|undrain ID`,
//! `sluice partition move TOPIC/P --to BROKER`. None copies data.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sluice_proto::v1;

use crate::client::ServerArgs;

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// The leading controller, brokers (live, draining, partition counts) and proxies.
    Status {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Spread partitions evenly over the live brokers (after adding brokers).
    Rebalance {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Requests every node has sent to each storage volume since it started
    /// (PUTs, GETs, LISTs: the bill on a public cloud).
    Volumes {
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum BrokerAction {
    /// Move every partition off broker ID and keep new ones away; waits
    /// until it holds none (unless --no-wait).
    Drain {
        id: u64,
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Let a drained broker take partitions again.
    Undrain {
        id: u64,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum PartitionCommand {
    /// Move TOPIC/PARTITION to broker --to (moves the write lease, not data).
    Move {
        /// TOPIC/PARTITION, e.g. orders/3.
        partition: String,
        #[arg(long)]
        to: u64,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub async fn cluster(command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Status { server } => {
            let status = server
                .admin()
                .await?
                .cluster_status(v1::ClusterStatusRequest {})
                .await?
                .into_inner();
            print_status(&status);
        }
        ClusterCommand::Rebalance { server } => {
            let moves = server
                .admin()
                .await?
                .rebalance(v1::RebalanceRequest {})
                .await?
                .into_inner()
                .moves;
            if moves.is_empty() {
                println!("already balanced");
            }
            for line in moves {
                println!("moved {line}");
            }
        }
        ClusterCommand::Volumes { server } => {
            let stats = volume_stats(&server).await?;
            println!(
                "{:<28} {:<40} {:>10} {:>10} {:>8} {:>8} {:>8} {:>14} {:>14}",
                "NODE",
                "VOLUME",
                "PUTS",
                "GETS",
                "HEADS",
                "LISTS",
                "DELETES",
                "BYTES WRITTEN",
                "BYTES READ"
            );
            for node in stats.nodes {
                if !node.error.is_empty() {
                    println!("{:<28} (not answering: {})", node.node, node.error);
                }
                for v in node.volumes {
                    println!(
                        "{:<28} {:<40} {:>10} {:>10} {:>8} {:>8} {:>8} {:>14} {:>14}",
                        node.node,
                        v.url,
                        v.puts,
                        v.gets,
                        v.heads,
                        v.lists,
                        v.deletes,
                        v.bytes_written,
                        v.bytes_read
                    );
                }
            }
        }
    }
    Ok(())
}

/// Every node's storage request counts, from the server's Admin API.
pub async fn volume_stats(server: &ServerArgs) -> anyhow::Result<v1::VolumeStatsResponse> {
    Ok(server
        .admin()
        .await?
        .volume_stats(v1::VolumeStatsRequest {})
        .await?
        .into_inner())
}

/// Storage requests summed over every node and volume.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VolumeTotals {
    pub puts: u64,
    pub gets: u64,
    pub lists: u64,
    pub deletes: u64,
    pub bytes_written: u64,
}

impl VolumeTotals {
    pub fn of(stats: &v1::VolumeStatsResponse) -> Self {
        let mut totals = Self::default();
        for v in stats.nodes.iter().flat_map(|node| &node.volumes) {
            totals.puts += v.puts;
            totals.gets += v.gets + v.heads;
            totals.lists += v.lists;
            totals.deletes += v.deletes;
            totals.bytes_written += v.bytes_written;
        }
        totals
    }

    /// What happened between `earlier` and `self`.
    pub fn since(self, earlier: Self) -> Self {
        Self {
            puts: self.puts.saturating_sub(earlier.puts),
            gets: self.gets.saturating_sub(earlier.gets),
            lists: self.lists.saturating_sub(earlier.lists),
            deletes: self.deletes.saturating_sub(earlier.deletes),
            bytes_written: self.bytes_written.saturating_sub(earlier.bytes_written),
        }
    }
}

pub async fn broker(action: BrokerAction) -> anyhow::Result<()> {
    match action {
        BrokerAction::Drain {
            id,
            no_wait,
            server,
        } => {
            let mut admin = server.admin().await?;
            admin
                .drain_broker(v1::DrainBrokerRequest {
                    broker: id,
                    undrain: false,
                })
                .await?;
            if no_wait {
                println!("draining broker {id}");
                return Ok(());
            }
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let status = admin
                    .cluster_status(v1::ClusterStatusRequest {})
                    .await?
                    .into_inner();
                let left = status
                    .brokers
                    .iter()
                    .find(|b| b.id == id)
                    .map_or(0, |b| b.partitions);
                if left == 0 {
                    println!("broker {id} is drained");
                    return Ok(());
                }
                if Instant::now() > deadline {
                    bail!(
                        "broker {id} still holds {left} partitions after 120 s; is a controller running and another broker live?"
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        BrokerAction::Undrain { id, server } => {
            server
                .admin()
                .await?
                .drain_broker(v1::DrainBrokerRequest {
                    broker: id,
                    undrain: true,
                })
                .await?;
            println!(
                "broker {id} takes partitions again (run sluice cluster rebalance to give it some)"
            );
        }
    }
    Ok(())
}

pub async fn partition(command: PartitionCommand) -> anyhow::Result<()> {
    match command {
        PartitionCommand::Move {
            partition,
            to,
            server,
        } => {
            let (topic, number) = partition
                .rsplit_once('/')
                .with_context(|| format!("{partition:?} is not TOPIC/PARTITION, e.g. orders/3"))?;
            let number: u32 = number
                .parse()
                .with_context(|| format!("{number:?} is not a partition number"))?;
            let request = v1::MovePartitionRequest {
                topic: topic.to_owned(),
                partition: number,
                to_broker: to,
            };
            let moved = server
                .admin()
                .await?
                .move_partition(request)
                .await?
                .into_inner();
            println!(
                "moved {topic}/{number} from broker {} to broker {to} (epoch {})",
                moved.from_broker, moved.epoch
            );
        }
    }
    Ok(())
}

fn print_status(status: &v1::ClusterStatusResponse) {
    let controller = if status.controller.is_empty() {
        "none leading"
    } else {
        &status.controller
    };
    println!("controller: {controller}");
    println!("brokers:");
    for broker in &status.brokers {
        let state = match (broker.live, broker.draining) {
            (true, false) => "live",
            (true, true) => "live, draining",
            (false, true) => "down, draining",
            (false, false) => "down",
        };
        let addr = if broker.addr.is_empty() {
            "-"
        } else {
            &broker.addr
        };
        println!(
            "  {:>4}  {:<21}  {:<15}  {} partitions",
            broker.id, addr, state, broker.partitions
        );
    }
    println!(
        "proxies: {}",
        if status.proxies.is_empty() {
            "-".to_owned()
        } else {
            status.proxies.join(", ")
        }
    );
    if status.unowned_partitions > 0 {
        println!(
            "partitions waiting for a live broker: {}",
            status.unowned_partitions
        );
    }
}

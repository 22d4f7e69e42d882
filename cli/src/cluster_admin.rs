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
    }
    Ok(())
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

//! `sluice controller`: campaigns for leadership through etcd and, while it
//! leads, assigns partitions to live brokers (reconcile loop). Any number
//! may run; a standby takes over within about a lease TTL when the leader
//! dies.

use std::net::SocketAddr;

use sluice_controller::leader;
use sluice_metadata::LeaseKeeper;
use tokio_util::sync::CancellationToken;

use super::ClusterArgs;
use crate::node::FileConfig;
use crate::serve::{self, init_logging, shutdown_signal};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Address this controller announces (its admin API comes with the dashboard).
    #[arg(long, env = "SLUICE_GRPC_ADDR", default_value = "127.0.0.1:7071")]
    grpc_addr: SocketAddr,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    init_logging();
    let file = FileConfig::read(args.cluster.config.as_deref())?;
    let metadata = args.cluster.connect(&file).await?;
    let ttl = args.cluster.lease_ttl(&file);
    let signal = shutdown_signal()?;
    let cancel = CancellationToken::new();
    serve::cancel_on_signal(signal, cancel.clone());
    println!("sluice controller: grpc={} campaigning", args.grpc_addr);
    while !cancel.is_cancelled() {
        let keeper = LeaseKeeper::grant(metadata.clone(), ttl).await?;
        let value = args.grpc_addr.to_string().into_bytes();
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = keeper.lost() => {
                tracing::warn!("lost the etcd lease while campaigning; campaigning again");
                continue;
            }
            won = metadata.campaign(leader::ELECTION, value, keeper.id()) => won?,
        }
        tracing::info!("leading the cluster");
        leader::lead(metadata.clone(), keeper.lost(), cancel.clone()).await?;
        if keeper.is_lost() {
            tracing::warn!("lost leadership (etcd lease expired); campaigning again");
        }
        let _ = keeper.release().await;
    }
    tracing::info!("stopped");
    Ok(())
}

//! `sluice controller`: campaigns for leadership through etcd and, while it
//! leads, assigns partitions to live brokers (reconcile loop). Any number
//! may run; a standby takes over within about a lease TTL when the leader
//! dies. An unreachable etcd is waited out, never a reason to exit.

use std::net::SocketAddr;
use std::time::Duration;

use sluice_controller::leader;
use sluice_metadata::{LeaseKeeper, MetadataStore};
use tokio_util::sync::CancellationToken;

use super::ClusterArgs;
use crate::node::FileConfig;
use crate::serve::{self, init_logging, shutdown_signal};

/// Longest pause between attempts while etcd is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Address this controller announces as its identity in the election
    /// (its admin API comes with the dashboard).
    #[arg(long, env = "SLUICE_GRPC_ADDR", default_value = "127.0.0.1:7091")]
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
    let identity = args.grpc_addr.to_string().into_bytes();
    let mut backoff = Duration::from_millis(100);
    while !cancel.is_cancelled() {
        match campaign_and_lead(metadata.clone(), ttl, identity.clone(), &cancel).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "etcd trouble; campaigning again");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// One term: take a lease, win the election, lead until the lease is lost.
async fn campaign_and_lead(
    metadata: std::sync::Arc<dyn MetadataStore>,
    ttl: Duration,
    identity: Vec<u8>,
    cancel: &CancellationToken,
) -> Result<(), sluice_metadata::MetadataError> {
    let keeper = LeaseKeeper::grant(metadata.clone(), ttl).await?;
    tokio::select! {
        _ = cancel.cancelled() => return Ok(()),
        _ = keeper.lost() => {
            tracing::warn!("lost the etcd lease while campaigning");
            return Ok(());
        }
        won = metadata.campaign(leader::ELECTION, identity, keeper.id()) => won?,
    }
    tracing::info!("leading the cluster");
    let led = leader::lead(metadata.clone(), keeper.lost(), cancel.clone()).await;
    if keeper.is_lost() {
        tracing::warn!("lost leadership (etcd lease expired); campaigning again");
    }
    let _ = keeper.release().await;
    led
}

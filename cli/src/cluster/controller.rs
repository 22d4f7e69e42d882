//! `sluice controller` and `sluice coordinator`. A controller campaigns for
//! leadership through etcd and, while it leads, assigns partitions to live
//! brokers (reconcile loop). By default it also runs the group coordinator,
//! which has an election of its own (`sluice coordinator` runs only that,
//! to scale it apart). Any number of each may run; a standby takes over
//! within about a lease TTL when the leader dies. An unreachable etcd is
//! waited out, never a reason to exit.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sluice_controller::coordinator::{self, Coordinator, CoordinatorSlot, GroupsService};
use sluice_controller::leader;
use sluice_metadata::{LeaseKeeper, MetadataError, MetadataStore};
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
    /// Address of this process's gRPC server (the group coordinator's
    /// API, which proxies forward to); also its identity in the elections.
    #[arg(long, env = "SLUICE_GRPC_ADDR", default_value = "127.0.0.1:7091")]
    grpc_addr: SocketAddr,
    /// Also run the group coordinator (false when `sluice coordinator`
    /// processes run it apart).
    #[arg(long, env = "SLUICE_COORDINATOR", default_value_t = true, action = clap::ArgAction::Set)]
    coordinator: bool,
}

/// `sluice coordinator`: only the group coordinator.
#[derive(clap::Args, Debug)]
pub struct CoordinatorArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Address of the coordinator's gRPC API (proxies forward to it).
    #[arg(long, env = "SLUICE_GRPC_ADDR", default_value = "127.0.0.1:7092")]
    grpc_addr: SocketAddr,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    run_roles(
        args.cluster,
        args.grpc_addr,
        true,
        args.coordinator,
        "controller",
    )
    .await
}

pub async fn run_coordinator(args: CoordinatorArgs) -> anyhow::Result<()> {
    run_roles(args.cluster, args.grpc_addr, false, true, "coordinator").await
}

async fn run_roles(
    cluster: ClusterArgs,
    grpc_addr: SocketAddr,
    controller: bool,
    coordinator: bool,
    name: &str,
) -> anyhow::Result<()> {
    init_logging();
    let file = FileConfig::read(cluster.config.as_deref())?;
    let metadata = cluster.connect(&file).await?;
    let ttl = cluster.lease_ttl(&file);
    let listener = serve::bind(grpc_addr).await?;
    let addr = listener.local_addr()?;
    let signal = shutdown_signal()?;
    let cancel = CancellationToken::new();
    serve::cancel_on_signal(signal, cancel.clone());
    println!("sluice {name}: grpc={addr} campaigning");
    let identity = addr.to_string().into_bytes();
    let slot = CoordinatorSlot::default();
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(GroupsService::new(slot.clone()).into_server());
    let server = tokio::spawn(serve::serve(router, listener, cancel.clone()));
    let mut roles = tokio::task::JoinSet::new();
    if controller {
        let (metadata, identity, cancel) = (metadata.clone(), identity.clone(), cancel.clone());
        roles.spawn(elect(
            metadata.clone(),
            ttl,
            leader::ELECTION,
            identity,
            cancel.clone(),
            move |keeper| {
                let (metadata, cancel) = (metadata.clone(), cancel.clone());
                async move {
                    tracing::info!("leading the cluster");
                    leader::lead(metadata, keeper.lost(), cancel).await
                }
            },
        ));
    }
    if coordinator {
        let (metadata, identity, cancel) = (metadata.clone(), identity.clone(), cancel.clone());
        roles.spawn(elect(
            metadata.clone(),
            ttl,
            coordinator::ELECTION,
            identity,
            cancel.clone(),
            move |keeper| {
                let (metadata, cancel, slot) = (metadata.clone(), cancel.clone(), slot.clone());
                async move { coordinate(metadata, keeper, slot, cancel).await }
            },
        ));
    }
    while roles.join_next().await.is_some() {}
    let served = server.await;
    tracing::info!("stopped");
    served?
}

/// Campaigns in `election` again and again until `cancel`, running `lead`
/// while elected.
async fn elect<F, Fut>(
    metadata: Arc<dyn MetadataStore>,
    ttl: Duration,
    election: &'static str,
    identity: Vec<u8>,
    cancel: CancellationToken,
    lead: F,
) where
    F: Fn(Arc<LeaseKeeper>) -> Fut,
    Fut: Future<Output = Result<(), MetadataError>>,
{
    let mut backoff = Duration::from_millis(100);
    while !cancel.is_cancelled() {
        match term(&metadata, ttl, election, identity.clone(), &cancel, &lead).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(%election, error = %e, retry_in = ?backoff, "etcd trouble; campaigning again");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One term: take a lease, win the election, lead until the lease is lost.
async fn term<F, Fut>(
    metadata: &Arc<dyn MetadataStore>,
    ttl: Duration,
    election: &str,
    identity: Vec<u8>,
    cancel: &CancellationToken,
    lead: &F,
) -> Result<(), MetadataError>
where
    F: Fn(Arc<LeaseKeeper>) -> Fut,
    Fut: Future<Output = Result<(), MetadataError>>,
{
    let keeper = Arc::new(LeaseKeeper::grant(metadata.clone(), ttl).await?);
    tokio::select! {
        _ = cancel.cancelled() => return Ok(()),
        _ = keeper.lost() => {
            tracing::warn!(%election, "lost the etcd lease while campaigning");
            return Ok(());
        }
        won = metadata.campaign(election, identity, keeper.id()) => won?,
    }
    let led = lead(Arc::clone(&keeper)).await;
    if keeper.is_lost() {
        tracing::warn!(%election, "lost leadership (etcd lease expired); campaigning again");
    }
    if let Ok(keeper) = Arc::try_unwrap(keeper) {
        let _ = keeper.release().await;
    }
    led
}

/// Coordinates groups while elected: every write is conditional on this
/// term's election key, so a coordinator that lost its lease writes nothing.
async fn coordinate(
    metadata: Arc<dyn MetadataStore>,
    keeper: Arc<LeaseKeeper>,
    slot: CoordinatorSlot,
    cancel: CancellationToken,
) -> Result<(), MetadataError> {
    let key = format!("{}/{}", coordinator::ELECTION, keeper.id());
    let Some(version) = metadata.get(&key).await?.map(|v| v.version) else {
        return Err(MetadataError::LeaseExpired { lease: keeper.id() });
    };
    let term = cancel.child_token();
    let coordinator = Coordinator::start(metadata, Some((key, version)), term.clone())
        .await
        .map_err(|e| MetadataError::Unavailable {
            reason: e.to_string(),
        })?;
    slot.set(Some(coordinator));
    tracing::info!("coordinating consumer groups");
    tokio::select! {
        _ = keeper.lost() => {}
        _ = term.cancelled() => {}
    }
    slot.set(None);
    term.cancel();
    tracing::info!("stopped coordinating consumer groups");
    Ok(())
}

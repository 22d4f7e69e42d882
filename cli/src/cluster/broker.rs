//! `sluice broker`: registers in etcd under its lease, takes the write lease
//! of every partition the controller assigns to it, and serves
//! `sluice.v1.Broker` to proxies. It keeps no data of its own: segments and
//! checkpoints go to the shared volumes.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use sluice_broker::{Broker, BrokerService};
use sluice_metadata::records::{self, BrokerRecord};
use sluice_metadata::{Compare, LeaseKeeper, MetadataStore, Op, keys};
use tokio_util::sync::CancellationToken;

use super::ClusterArgs;
use crate::node::{FileConfig, WriteArgs};
use crate::serve::{self, init_logging, shutdown_signal};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// This broker's id, unique in the cluster.
    #[arg(long, env = "SLUICE_BROKER_ID")]
    id: Option<u64>,
    /// Address of the broker's gRPC service (proxies connect to it).
    #[arg(long, env = "SLUICE_GRPC_ADDR")]
    grpc_addr: Option<SocketAddr>,
    /// A shared storage volume URL (repeatable); the first holds checkpoints.
    /// Every broker and proxy of a cluster uses the same volumes.
    #[arg(long = "volume", env = "SLUICE_VOLUMES", value_delimiter = ',')]
    volumes: Vec<String>,
    #[command(flatten)]
    write: WriteArgs,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    init_logging();
    let file = FileConfig::read(args.cluster.config.as_deref())?;
    let id = args
        .id
        .or(file.id)
        .context("--id is required: every broker needs a unique id")?;
    let volumes = if args.volumes.is_empty() {
        file.volumes.clone().unwrap_or_default()
    } else {
        args.volumes.clone()
    };
    if volumes.is_empty() {
        bail!("--volume is required: brokers keep no data; give them the cluster's shared volumes");
    }
    let config = args.write.broker_config(&file)?;
    let grpc_addr = args
        .grpc_addr
        .or(file.grpc_addr)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7072)));
    let metadata = args.cluster.connect(&file).await?;
    let volumes = file.open_volumes(&volumes).await?;
    let mut listener = Some(serve::bind(grpc_addr).await?);
    let addr = listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?
        .context("no listener")?;
    let ttl = args.cluster.lease_ttl(&file);
    let signal = shutdown_signal()?;
    let cancel = CancellationToken::new();
    serve::cancel_on_signal(signal, cancel.clone());
    let mut announced = false;
    let mut backoff = Duration::from_millis(100);
    // One pass per etcd lease: a broker that loses its lease (etcd away
    // longer than the TTL, or this process paused) stops writing at once,
    // then rejoins under a new lease when etcd answers again.
    while !cancel.is_cancelled() {
        let keeper = match LeaseKeeper::grant(metadata.clone(), ttl).await {
            Ok(keeper) => keeper,
            Err(e) => {
                tracing::warn!(broker = id, error = %e, retry_in = ?backoff, "cannot take an etcd lease; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        let joined = async {
            register(metadata.as_ref(), id, addr, &keeper, ttl).await?;
            let broker = Broker::start(
                id,
                config.clone(),
                volumes.clone(),
                metadata.clone(),
                Some(keeper.id()),
            )
            .await?;
            anyhow::Ok(broker)
        };
        let broker = match joined.await {
            Ok(broker) => broker,
            Err(e) => {
                tracing::warn!(broker = id, error = %e, "cannot join the cluster; retrying");
                let _ = keeper.release().await;
                continue;
            }
        };
        if !announced {
            println!("sluice broker: id={id} grpc={addr}");
            announced = true;
        }
        let listener = match listener.take() {
            Some(listener) => listener,
            None => serve::bind(addr).await?,
        };
        let router = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(BrokerService::new(broker.clone()).into_server());
        let lost = keeper.lost();
        tokio::select! {
            served = serve::serve(router, listener, cancel.clone()) => {
                broker.shutdown().await;
                let _ = keeper.release().await;
                tracing::info!("stopped");
                return served;
            }
            _ = lost => {
                // Another broker may own our partitions already: stop writing now.
                tracing::error!(broker = id, "lost the etcd lease; stopped every partition (the controller moves them); rejoining when etcd answers");
                broker.shutdown().await;
            }
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Registers `/sluice/brokers/<id>` under the lease. A previous process of
/// the same id (killed) holds the key until its lease expires: wait for it.
async fn register(
    metadata: &dyn MetadataStore,
    id: u64,
    addr: SocketAddr,
    keeper: &LeaseKeeper,
    ttl: Duration,
) -> anyhow::Result<()> {
    let key = keys::broker(id);
    let record = BrokerRecord {
        addr: addr.to_string(),
        zone: None,
    };
    let deadline = tokio::time::Instant::now() + ttl * 3 + Duration::from_secs(1);
    loop {
        let op = Op::Put {
            key: key.clone(),
            value: records::encode(&record),
            lease: Some(keeper.id()),
        };
        if metadata
            .txn(vec![Compare::Absent(key.clone())], vec![op])
            .await?
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "broker id {id} is registered by another live process; give this one another --id"
            );
        }
        tracing::info!(
            broker = id,
            "waiting for the previous registration of this id to expire"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

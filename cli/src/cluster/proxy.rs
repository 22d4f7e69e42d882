//! `sluice proxy`: the endpoint clients use in a cluster. Stateless: it
//! follows the cluster in etcd, routes produce to the owning broker (with
//! retries while partitions move), and serves fetch itself from the shared
//! volumes, woken by the brokers' checkpoint streams.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::bail;
use sluice_broker::BrokerConfig;
use sluice_controller::TopicAdmin;
use sluice_metadata::{LeaseKeeper, Op, ProducerIds, keys};
use sluice_proxy::{AdminService, ClusterBackend, GroupsForwarder, SluiceService};
use tokio_util::sync::CancellationToken;

use super::ClusterArgs;
use crate::node::{FileConfig, KafkaArgs};
use crate::serve::{self, init_logging, shutdown_signal};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Address clients connect to.
    #[arg(long, env = "SLUICE_GRPC_ADDR")]
    grpc_addr: Option<SocketAddr>,
    /// The cluster's shared storage volume URLs (repeatable), as the brokers have them.
    #[arg(long = "volume", env = "SLUICE_VOLUMES", value_delimiter = ',')]
    volumes: Vec<String>,
    /// Bytes of segment blocks read from S3 or HDFS kept in memory for
    /// consumers that read them again (0 disables; default 256 MiB).
    #[arg(long, env = "SLUICE_BLOCK_CACHE_BYTES")]
    block_cache_bytes: Option<u64>,
    #[command(flatten)]
    kafka: KafkaArgs,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    init_logging();
    let file = FileConfig::read(args.cluster.config.as_deref())?;
    let volumes = if args.volumes.is_empty() {
        file.volumes.clone().unwrap_or_default()
    } else {
        args.volumes.clone()
    };
    if volumes.is_empty() {
        bail!("--volume is required: proxies read the cluster's shared volumes");
    }
    let grpc_addr = args
        .grpc_addr
        .or(file.grpc_addr)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7070)));
    let metadata = args.cluster.connect(&file).await?;
    let volumes = file
        .open_volumes_for_reads(&volumes, args.block_cache_bytes)
        .await?;
    let listener = serve::bind(grpc_addr).await?;
    let addr = listener.local_addr()?;
    let cancel = CancellationToken::new();
    let backend = ClusterBackend::start(metadata.clone(), volumes, cancel.child_token()).await?;
    // Registered for `cluster status`, under a lease: gone when this process is.
    let keeper = LeaseKeeper::grant(metadata.clone(), args.cluster.lease_ttl(&file)).await?;
    let registration = Op::Put {
        key: format!("{}/proxies/{addr}", keys::ROOT),
        value: addr.to_string().into_bytes(),
        lease: Some(keeper.id()),
    };
    metadata.txn(vec![], vec![registration]).await?;
    let signal = shutdown_signal()?;
    let defaults = crate::standalone::topic_defaults(&BrokerConfig::default());
    // Partitions of new topics are assigned by the controller.
    let admin = AdminService::new(
        TopicAdmin::new(metadata.clone()),
        backend.clone(),
        None,
        defaults,
    );
    let producer_ids = Arc::new(ProducerIds::new(metadata.clone()));
    let kafka = args
        .kafka
        .start(
            sluice_proxy::kafka::Services {
                backend: backend.clone(),
                producer_ids: producer_ids.clone(),
                admin: admin.clone(),
                groups: Arc::new(GroupsForwarder::new(metadata.clone())),
            },
            false,
            Some((metadata.clone(), keeper.id())),
            cancel.clone(),
        )
        .await?;
    let kafka = kafka.map_or_else(String::new, |addr| format!(" kafka={addr}"));
    println!("sluice proxy: grpc={addr}{kafka}");
    serve::cancel_on_signal(signal, cancel.clone());
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(SluiceService::new(backend, producer_ids, cancel.clone()).into_server())
        .add_service(admin.into_server())
        .add_service(GroupsForwarder::new(metadata).into_server());
    let served = serve::serve(router, listener, cancel).await;
    let _ = keeper.release().await;
    tracing::info!("stopped");
    served
}

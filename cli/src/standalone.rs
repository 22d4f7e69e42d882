//! `sluice standalone`: every role in one process, on an embedded metadata
//! store under the data directory and, by default, a local-directory volume
//! there too. Restarting it on the same directory keeps topics and data.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use sluice_broker::{Broker, BrokerConfig};
use sluice_controller::coordinator::{Coordinator, CoordinatorSlot, GroupsService};
use sluice_controller::{TopicAdmin, leader};
use sluice_metadata::records::{self, BrokerRecord, TopicConfig};
use sluice_metadata::{EmbeddedStore, LeaseKeeper, MetadataStore, Op, ProducerIds, keys};
use sluice_proxy::{AdminService, LocalBackend, SluiceService};
use tokio_util::sync::CancellationToken;

use crate::node::{FileConfig, KafkaArgs, WriteArgs};
use crate::serve::{self, init_logging, shutdown_signal};

/// The only broker of a standalone process.
const BROKER_ID: u64 = 0;

/// Flags of `sluice standalone`. Each can also come from a `SLUICE_…`
/// environment variable or the `--config` file; flags win, then the
/// environment, then the file, then the defaults.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory for metadata and, unless --volume is given, data.
    #[arg(long, env = "SLUICE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the gRPC API.
    #[arg(long, env = "SLUICE_GRPC_ADDR")]
    grpc_addr: Option<SocketAddr>,
    /// A storage volume URL (repeatable): a directory path, s3://bucket/prefix, hdfs://namenode:port/path, gs://…, az://…, file:///abs/path or memory://name. The first holds checkpoints. Default: DATA_DIR/data.
    #[arg(long = "volume", env = "SLUICE_VOLUMES", value_delimiter = ',')]
    volumes: Vec<String>,
    /// Bytes of segment blocks read from S3 or HDFS kept in memory for
    /// consumers that read them again (0 disables; default 256 MiB).
    #[arg(long, env = "SLUICE_BLOCK_CACHE_BYTES")]
    block_cache_bytes: Option<u64>,
    /// TOML file with any of these settings (names as the flags, with underscores).
    #[arg(long, env = "SLUICE_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    write: WriteArgs,
    #[command(flatten)]
    kafka: KafkaArgs,
}

/// The settings after flags, environment, file and defaults are merged.
#[derive(Debug)]
struct Settings {
    data_dir: PathBuf,
    grpc_addr: SocketAddr,
    volumes: Vec<String>,
    broker: BrokerConfig,
    block_cache_bytes: Option<u64>,
    file: FileConfig,
    kafka: KafkaArgs,
}

impl Args {
    fn resolve(self) -> anyhow::Result<Settings> {
        let file = FileConfig::read(self.config.as_deref())?;
        let data_dir = self
            .data_dir
            .or(file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("./sluice-data"));
        let grpc_addr = self
            .grpc_addr
            .or(file.grpc_addr)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7070)));
        let mut volumes = if self.volumes.is_empty() {
            file.volumes.clone().unwrap_or_default()
        } else {
            self.volumes
        };
        if volumes.is_empty() {
            volumes.push(data_dir.join("data").to_string_lossy().into_owned());
        }
        let broker = self.write.broker_config(&file)?;
        let settings = Settings {
            data_dir,
            grpc_addr,
            volumes,
            broker,
            block_cache_bytes: self.block_cache_bytes,
            file,
            kafka: self.kafka,
        };
        Ok(settings)
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    init_logging();
    let settings = args.resolve()?;
    std::fs::create_dir_all(&settings.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            settings.data_dir.display()
        )
    })?;
    let _lock = lock_data_dir(&settings.data_dir)?;
    let metadata = Arc::new(EmbeddedStore::open(&settings.data_dir.join("metadata"))?);
    let volumes = settings
        .file
        .open_volumes_for_reads(&settings.volumes, settings.block_cache_bytes)
        .await?;
    let admin = TopicAdmin::new(metadata.clone());
    // This process is a new owner of every partition: a higher epoch than
    // any earlier run, so its segments and checkpoints never collide.
    admin.claim_all(BROKER_ID).await?;
    let broker = Broker::start(
        BROKER_ID,
        settings.broker.clone(),
        volumes,
        metadata.clone(),
        None,
    )
    .await?;
    let backend = Arc::new(LocalBackend::new(Arc::clone(&broker)));
    let defaults = topic_defaults(&settings.broker);
    let listener = serve::bind(settings.grpc_addr).await?;
    let grpc_addr = listener.local_addr()?;
    let signal = shutdown_signal()?;
    let cancel = CancellationToken::new();
    let producer_ids = Arc::new(ProducerIds::new(metadata.clone()));
    let admin = AdminService::new(admin, backend.clone(), Some(vec![BROKER_ID]), defaults);
    // The only coordinator there is: no election, no fence.
    let groups = CoordinatorSlot::default();
    groups.set(Some(
        Coordinator::start(metadata.clone(), None, cancel.child_token()).await?,
    ));
    let kafka = settings
        .kafka
        .start(
            sluice_proxy::kafka::Services {
                backend: backend.clone(),
                producer_ids: producer_ids.clone(),
                admin: admin.clone(),
                groups: Arc::new(GroupsService::new(groups.clone())),
            },
            true,
            None,
            cancel.clone(),
        )
        .await?;
    let kafka = kafka.map_or_else(String::new, |addr| format!(" kafka={addr}"));
    println!(
        "sluice standalone: grpc={grpc_addr}{kafka} data-dir={} volumes={}",
        settings.data_dir.display(),
        settings.volumes.join(",")
    );
    serve::cancel_on_signal(signal, cancel.clone());
    let keeper = register(metadata.clone(), grpc_addr).await?;
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(
            SluiceService::new(backend.clone(), producer_ids, cancel.clone()).into_server(),
        )
        .add_service(admin.into_server())
        .add_service(GroupsService::new(groups).into_server());
    let served = serve::serve(router, listener, cancel).await;
    let _ = keeper.release().await;
    // Partitions flush what they buffered and save a last checkpoint.
    broker.shutdown().await;
    tracing::info!("stopped");
    served
}

/// Shows this process in `sluice cluster status` as what it is: the
/// broker, the proxy and the controller. Bound to a lease, so the records
/// go with the process.
async fn register(
    metadata: Arc<EmbeddedStore>,
    addr: std::net::SocketAddr,
) -> anyhow::Result<LeaseKeeper> {
    let keeper = LeaseKeeper::grant(metadata.clone(), Duration::from_secs(10)).await?;
    let broker = BrokerRecord {
        addr: addr.to_string(),
        zone: None,
    };
    let ops = vec![
        Op::Put {
            key: keys::broker(BROKER_ID),
            value: records::encode(&broker),
            lease: Some(keeper.id()),
        },
        Op::Put {
            key: format!("{}/proxies/{addr}", keys::ROOT),
            value: addr.to_string().into_bytes(),
            lease: Some(keeper.id()),
        },
    ];
    metadata.txn(vec![], ops).await?;
    metadata
        .campaign(leader::ELECTION, addr.to_string().into_bytes(), keeper.id())
        .await?;
    Ok(keeper)
}

pub fn topic_defaults(broker: &BrokerConfig) -> TopicConfig {
    TopicConfig {
        retention_ms: Some(broker.retention.map_or(-1, |d| d.as_millis() as i64)),
        retention_bytes: Some(broker.retention_bytes.map_or(-1, |b| b as i64)),
        segment_bytes: Some(broker.segment_bytes),
        segment_ms: Some(broker.segment_age.as_millis() as u64),
        max_batch_bytes: Some(broker.max_batch_bytes),
    }
}

/// Only one process may use a data directory at a time.
fn lock_data_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "the data directory {} is in use by another sluice process",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

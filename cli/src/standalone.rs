//! `sluice standalone`: every role in one process, on an embedded metadata
//! store under the data directory and, by default, a local-directory volume
//! there too. Restarting it on the same directory keeps topics and data.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use sluice_broker::{Broker, BrokerConfig};
use sluice_controller::TopicAdmin;
use sluice_log::VolumeSet;
use sluice_metadata::EmbeddedStore;
use sluice_metadata::records::TopicConfig;
use sluice_proxy::{AdminService, LocalBackend, SluiceService};
use tokio_util::sync::CancellationToken;

/// How long requests in progress may take once shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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
    /// A storage volume URL (repeatable): a directory path, file:///abs/path or memory://name. Default: DATA_DIR/data.
    #[arg(long = "volume", env = "SLUICE_VOLUMES", value_delimiter = ',')]
    volumes: Vec<String>,
    /// TOML file with any of these settings (names as the flags, with underscores).
    #[arg(long, env = "SLUICE_CONFIG")]
    config: Option<PathBuf>,
    /// Longest time `buffer`-acknowledged data waits before a flush (ms).
    #[arg(long, env = "SLUICE_FLUSH_INTERVAL_MS")]
    flush_interval_ms: Option<u64>,
    /// Flush once this many bytes are buffered.
    #[arg(long, env = "SLUICE_FLUSH_BYTES")]
    flush_bytes: Option<u64>,
    /// Default segment size before rolling.
    #[arg(long, env = "SLUICE_SEGMENT_BYTES")]
    segment_bytes: Option<u64>,
    /// Default segment age before rolling (ms).
    #[arg(long, env = "SLUICE_SEGMENT_MS")]
    segment_ms: Option<u64>,
    /// Default retention by age (ms); -1 keeps data forever.
    #[arg(long, env = "SLUICE_RETENTION_MS", allow_negative_numbers = true)]
    retention_ms: Option<i64>,
    /// Default retention by size per partition (bytes); -1 is unlimited.
    #[arg(long, env = "SLUICE_RETENTION_BYTES", allow_negative_numbers = true)]
    retention_bytes: Option<i64>,
    /// How often retention runs (ms).
    #[arg(long, env = "SLUICE_RETENTION_CHECK_MS")]
    retention_check_ms: Option<u64>,
    /// Bytes between sparse index entries.
    #[arg(long, env = "SLUICE_INDEX_INTERVAL_BYTES")]
    index_interval_bytes: Option<u64>,
    /// Largest record batch accepted by default.
    #[arg(long, env = "SLUICE_MAX_BATCH_BYTES")]
    max_batch_bytes: Option<u32>,
    /// Decode (and decompress) every produced record before accepting it, as
    /// Kafka does (default true); false keeps only the CRC and header checks.
    #[arg(long, env = "SLUICE_VALIDATE_RECORDS")]
    validate_records: Option<bool>,
}

/// The `--config` file. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    /// See `--data-dir`.
    data_dir: Option<PathBuf>,
    /// See `--grpc-addr`.
    grpc_addr: Option<SocketAddr>,
    /// See `--volume`.
    volumes: Option<Vec<String>>,
    /// See `--flush-interval-ms`.
    flush_interval_ms: Option<u64>,
    /// See `--flush-bytes`.
    flush_bytes: Option<u64>,
    /// See `--segment-bytes`.
    segment_bytes: Option<u64>,
    /// See `--segment-ms`.
    segment_ms: Option<u64>,
    /// See `--retention-ms`.
    retention_ms: Option<i64>,
    /// See `--retention-bytes`.
    retention_bytes: Option<i64>,
    /// See `--retention-check-ms`.
    retention_check_ms: Option<u64>,
    /// See `--index-interval-bytes`.
    index_interval_bytes: Option<u64>,
    /// See `--max-batch-bytes`.
    max_batch_bytes: Option<u32>,
    /// See `--validate-records`.
    validate_records: Option<bool>,
}

/// The settings after flags, environment, file and defaults are merged.
#[derive(Debug)]
struct Settings {
    data_dir: PathBuf,
    grpc_addr: SocketAddr,
    volumes: Vec<String>,
    broker: BrokerConfig,
}

impl Args {
    fn resolve(self) -> anyhow::Result<Settings> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the config file {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("bad config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let data_dir = self
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./sluice-data"));
        let grpc_addr = self
            .grpc_addr
            .or(file.grpc_addr)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7070)));
        let mut volumes = if self.volumes.is_empty() {
            file.volumes.unwrap_or_default()
        } else {
            self.volumes
        };
        if volumes.is_empty() {
            volumes.push(data_dir.join("data").to_string_lossy().into_owned());
        }
        let mut broker = BrokerConfig::default();
        if let Some(ms) = self.flush_interval_ms.or(file.flush_interval_ms) {
            broker.flush_interval = Duration::from_millis(ms);
        }
        if let Some(bytes) = self.flush_bytes.or(file.flush_bytes) {
            broker.flush_bytes = bytes;
        }
        if let Some(bytes) = self.segment_bytes.or(file.segment_bytes) {
            broker.segment_bytes = bytes;
        }
        if let Some(ms) = self.segment_ms.or(file.segment_ms) {
            broker.segment_age = Duration::from_millis(ms);
        }
        if let Some(ms) = self.retention_ms.or(file.retention_ms) {
            broker.retention = u64::try_from(ms).ok().map(Duration::from_millis);
        }
        if let Some(bytes) = self.retention_bytes.or(file.retention_bytes) {
            broker.retention_bytes = u64::try_from(bytes).ok();
        }
        if let Some(ms) = self.retention_check_ms.or(file.retention_check_ms) {
            broker.retention_check_interval = Duration::from_millis(ms.max(1));
        }
        if let Some(bytes) = self.index_interval_bytes.or(file.index_interval_bytes) {
            broker.index_interval_bytes = bytes;
        }
        if let Some(bytes) = self.max_batch_bytes.or(file.max_batch_bytes) {
            broker.max_batch_bytes = bytes;
        }
        if let Some(validate) = self.validate_records.or(file.validate_records) {
            broker.validate_records = validate;
        }
        let settings = Settings {
            data_dir,
            grpc_addr,
            volumes,
            broker,
        };
        settings.validate()?;
        Ok(settings)
    }
}

impl Settings {
    /// Rules that involve more than one setting.
    fn validate(&self) -> anyhow::Result<()> {
        let broker = &self.broker;
        if broker.segment_bytes < 1024 {
            bail!(
                "segment_bytes {} is below the minimum of 1024",
                broker.segment_bytes
            );
        }
        if broker.flush_bytes == 0 || broker.index_interval_bytes == 0 {
            bail!("flush_bytes and index_interval_bytes must be positive");
        }
        if !(1024..=(64 << 20)).contains(&broker.max_batch_bytes) {
            bail!(
                "max_batch_bytes {} must be between 1024 and 67108864",
                broker.max_batch_bytes
            );
        }
        if broker.flush_bytes > broker.max_buffer_bytes {
            bail!(
                "flush_bytes {} exceeds the partition buffer of {} bytes",
                broker.flush_bytes,
                broker.max_buffer_bytes
            );
        }
        Ok(())
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
    let volumes = VolumeSet::open(&settings.volumes)
        .await
        .context("cannot open a storage volume")?;
    let admin = TopicAdmin::new(metadata.clone());
    // This process is a new owner of every partition: a higher epoch than
    // any earlier run, so its segments and checkpoints never collide.
    admin.claim_all(BROKER_ID).await?;
    let broker = Broker::start(
        BROKER_ID,
        settings.broker.clone(),
        volumes,
        metadata.clone(),
    )
    .await?;
    let backend = Arc::new(LocalBackend::new(Arc::clone(&broker)));
    let defaults = topic_defaults(&settings.broker);
    let listener = tokio::net::TcpListener::bind(settings.grpc_addr)
        .await
        .with_context(|| format!("cannot listen on {} (set --grpc-addr)", settings.grpc_addr))?;
    let grpc_addr = listener.local_addr()?;
    let signal = shutdown_signal()?;
    println!(
        "sluice standalone: grpc={grpc_addr} data-dir={} volumes={}",
        settings.data_dir.display(),
        settings.volumes.join(",")
    );
    let cancel = CancellationToken::new();
    let shutdown = cancel.clone();
    tokio::spawn(async move {
        signal.await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    let server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(SluiceService::new(backend.clone(), cancel.clone()).into_server())
        .add_service(AdminService::new(admin, backend, vec![BROKER_ID], defaults).into_server())
        .serve_with_incoming_shutdown(
            tokio_stream_listener(listener),
            cancel.clone().cancelled_owned(),
        );
    // Requests in progress get a grace period; connections left open after
    // it (idle clients) do not keep the process alive.
    let served = tokio::select! {
        served = server => served.context("the gRPC server failed"),
        _ = async { cancel.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::warn!("connections still open {SHUTDOWN_GRACE:?} after the shutdown signal; closing them");
            Ok(())
        }
    };
    // Partitions flush what they buffered and save a last checkpoint.
    broker.shutdown().await;
    tracing::info!("stopped");
    served
}

fn topic_defaults(broker: &BrokerConfig) -> TopicConfig {
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

fn tokio_stream_listener(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| {
            let _ = stream.set_nodelay(true);
            stream
        });
        Some((accepted, listener))
    })
}

/// Listens for SIGINT and SIGTERM from the moment it is called (before the
/// process announces itself, so an early signal is a clean shutdown too);
/// the returned future resolves on the first of them.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

/// Logs to stderr; `RUST_LOG` (or `SLUICE_LOG`) sets the level, info by default.
pub fn init_logging() {
    let filter = std::env::var("SLUICE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

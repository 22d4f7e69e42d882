//! Settings every node role shares: the `--config` TOML file (one file can
//! hold the settings of every role; each reads its own) and the write-path
//! flags of the roles that write partitions (`standalone`, `broker`).
//! Flags win, then `SLUICE_…` environment variables, then the file, then
//! the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde::Deserialize;
use sluice_broker::BrokerConfig;
use sluice_log::VolumeSet;
use sluice_storage::VolumeOptions;

/// Write-path flags (`standalone`, `broker`).
#[derive(clap::Args, Debug, Default)]
pub struct WriteArgs {
    /// Longest time `buffer`-acknowledged data waits before a flush (ms).
    #[arg(long, env = "SLUICE_FLUSH_INTERVAL_MS")]
    pub flush_interval_ms: Option<u64>,
    /// Flush once this many bytes are buffered.
    #[arg(long, env = "SLUICE_FLUSH_BYTES")]
    pub flush_bytes: Option<u64>,
    /// No flush starts sooner than this after the previous one (ms), unless
    /// --flush-bytes are buffered; durable produces wait for it. Default: 250
    /// when a volume is an object store (fewer, larger PUTs), else 0.
    #[arg(long, env = "SLUICE_MIN_FLUSH_INTERVAL_MS")]
    pub min_flush_interval_ms: Option<u64>,
    /// Default segment size before rolling.
    #[arg(long, env = "SLUICE_SEGMENT_BYTES")]
    pub segment_bytes: Option<u64>,
    /// Default segment age before rolling (ms).
    #[arg(long, env = "SLUICE_SEGMENT_MS")]
    pub segment_ms: Option<u64>,
    /// Default retention by age (ms); -1 keeps data forever.
    #[arg(long, env = "SLUICE_RETENTION_MS", allow_negative_numbers = true)]
    pub retention_ms: Option<i64>,
    /// Default retention by size per partition (bytes); -1 is unlimited.
    #[arg(long, env = "SLUICE_RETENTION_BYTES", allow_negative_numbers = true)]
    pub retention_bytes: Option<i64>,
    /// How often retention runs (ms).
    #[arg(long, env = "SLUICE_RETENTION_CHECK_MS")]
    pub retention_check_ms: Option<u64>,
    /// Bytes between sparse index entries.
    #[arg(long, env = "SLUICE_INDEX_INTERVAL_BYTES")]
    pub index_interval_bytes: Option<u64>,
    /// Largest record batch accepted by default.
    #[arg(long, env = "SLUICE_MAX_BATCH_BYTES")]
    pub max_batch_bytes: Option<u32>,
    /// Decode (and decompress) every produced record before accepting it, as
    /// Kafka does (default true); false keeps only the CRC and header checks.
    #[arg(long, env = "SLUICE_VALIDATE_RECORDS")]
    pub validate_records: Option<bool>,
}

/// The `--config` file. Every field is optional; names are the flags' with
/// underscores.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See `--data-dir` (standalone).
    pub data_dir: Option<PathBuf>,
    /// See `--grpc-addr`.
    pub grpc_addr: Option<SocketAddr>,
    /// See `--volume`.
    pub volumes: Option<Vec<String>>,
    /// Per-volume settings by volume URL, overriding the environment:
    /// `[volume_options."s3://bucket/prefix"]` with `endpoint = "…"`,
    /// `access_key_id = "…"`, `region = "…"`, `allow_http = "true"`, …
    /// (object_store's keys), or `dfs.*` keys and `user` for HDFS.
    pub volume_options: Option<BTreeMap<String, VolumeOptions>>,
    /// See `--etcd` (cluster roles): comma-separated endpoints.
    pub etcd: Option<String>,
    /// See `--id` (broker).
    pub id: Option<u64>,
    /// See `--lease-ttl-ms` (cluster roles).
    pub lease_ttl_ms: Option<u64>,
    /// See `--flush-interval-ms`.
    pub flush_interval_ms: Option<u64>,
    /// See `--flush-bytes`.
    pub flush_bytes: Option<u64>,
    /// See `--block-cache-bytes` (proxy, standalone).
    pub block_cache_bytes: Option<u64>,
    /// See `--min-flush-interval-ms`.
    pub min_flush_interval_ms: Option<u64>,
    /// See `--segment-bytes`.
    pub segment_bytes: Option<u64>,
    /// See `--segment-ms`.
    pub segment_ms: Option<u64>,
    /// See `--retention-ms`.
    pub retention_ms: Option<i64>,
    /// See `--retention-bytes`.
    pub retention_bytes: Option<i64>,
    /// See `--retention-check-ms`.
    pub retention_check_ms: Option<u64>,
    /// See `--index-interval-bytes`.
    pub index_interval_bytes: Option<u64>,
    /// See `--max-batch-bytes`.
    pub max_batch_bytes: Option<u32>,
    /// See `--validate-records`.
    pub validate_records: Option<bool>,
}

/// Default size of a reader's block cache (proxy, standalone).
pub const DEFAULT_BLOCK_CACHE_BYTES: u64 = 256 << 20;

impl FileConfig {
    /// Reads the file, or the empty configuration without one.
    pub fn read(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("bad config file {}", path.display()))
    }
}

impl FileConfig {
    /// Opens the volumes `urls` with their `volume_options`. Options for a
    /// URL that is not among them are refused: a typo would otherwise be
    /// silently ignored and the volume opened with the wrong settings.
    pub async fn open_volumes(&self, urls: &[String]) -> anyhow::Result<VolumeSet> {
        self.open_volumes_cached(urls, None).await
    }

    /// [`open_volumes`](Self::open_volumes) for a role that serves reads:
    /// with a block cache of `cache_bytes` (the flag), else the file's
    /// `block_cache_bytes`, else the default.
    pub async fn open_volumes_for_reads(
        &self,
        urls: &[String],
        cache_bytes: Option<u64>,
    ) -> anyhow::Result<VolumeSet> {
        let bytes = cache_bytes
            .or(self.block_cache_bytes)
            .unwrap_or(DEFAULT_BLOCK_CACHE_BYTES);
        self.open_volumes_cached(urls, Some(bytes)).await
    }

    async fn open_volumes_cached(
        &self,
        urls: &[String],
        cache_bytes: Option<u64>,
    ) -> anyhow::Result<VolumeSet> {
        let options = self.volume_options.clone().unwrap_or_default();
        if let Some(unknown) = options.keys().find(|url| !urls.contains(url)) {
            bail!(
                "volume_options names `{unknown}`, which is not a configured volume ({})",
                urls.join(", ")
            );
        }
        let volumes = VolumeSet::open(urls, &options)
            .await
            .context("cannot open a storage volume")?;
        Ok(match cache_bytes {
            Some(bytes) => volumes.with_block_cache(bytes),
            None => volumes,
        })
    }
}

impl WriteArgs {
    /// The broker settings: these flags, then the file, then the defaults.
    pub fn broker_config(&self, file: &FileConfig) -> anyhow::Result<BrokerConfig> {
        let mut broker = BrokerConfig::default();
        if let Some(ms) = self.flush_interval_ms.or(file.flush_interval_ms) {
            broker.flush_interval = Duration::from_millis(ms);
        }
        if let Some(bytes) = self.flush_bytes.or(file.flush_bytes) {
            broker.flush_bytes = bytes;
        }
        if let Some(ms) = self.min_flush_interval_ms.or(file.min_flush_interval_ms) {
            broker.min_flush_interval = Some(Duration::from_millis(ms));
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
        validate(&broker)?;
        Ok(broker)
    }
}

/// Rules that involve more than one setting, and sane bounds.
fn validate(broker: &BrokerConfig) -> anyhow::Result<()> {
    let hour = Duration::from_secs(3600);
    if broker.flush_interval > hour || broker.min_flush_interval.is_some_and(|d| d > hour) {
        bail!("flush_interval_ms and min_flush_interval_ms must be at most 3600000 (an hour)");
    }
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

/// The Kafka listener of a proxy or standalone.
#[derive(clap::Args, Debug, Default)]
pub struct KafkaArgs {
    /// Serve the Kafka wire protocol on this address (off unless given;
    /// port 0 picks a free one).
    #[arg(long, env = "SLUICE_KAFKA_ADDR")]
    pub kafka_addr: Option<SocketAddr>,
    /// HOST:PORT Kafka clients are told to connect to (default: the
    /// address --kafka-addr bound).
    #[arg(long, env = "SLUICE_KAFKA_ADVERTISED_ADDR", requires = "kafka_addr")]
    pub kafka_advertised_addr: Option<String>,
    /// Create a topic a Kafka client asks about that does not exist, as
    /// Kafka's auto.create.topics.enable does (default: true in standalone,
    /// false on cluster proxies).
    #[arg(long, env = "SLUICE_KAFKA_AUTO_CREATE_TOPICS", action = clap::ArgAction::Set)]
    pub kafka_auto_create_topics: Option<bool>,
    /// Partitions of topics created on first use.
    #[arg(long, env = "SLUICE_KAFKA_AUTO_CREATE_PARTITIONS", default_value_t = 1)]
    pub kafka_auto_create_partitions: u32,
}

impl KafkaArgs {
    /// Binds and serves the Kafka listener, if asked for; returns its address.
    pub async fn start(
        &self,
        services: sluice_proxy::kafka::Services,
        auto_create_by_default: bool,
        cluster: Option<(
            std::sync::Arc<dyn sluice_metadata::MetadataStore>,
            sluice_metadata::LeaseId,
        )>,
        cancel: tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<Option<SocketAddr>> {
        let Some(addr) = self.kafka_addr else {
            return Ok(None);
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (set --kafka-addr)"))?;
        let bound = listener.local_addr()?;
        let advertised = match &self.kafka_advertised_addr {
            Some(text) => {
                let (host, port) = text.rsplit_once(':').with_context(|| {
                    format!("--kafka-advertised-addr {text:?} is not HOST:PORT")
                })?;
                let port = port
                    .parse()
                    .with_context(|| format!("--kafka-advertised-addr {text:?}: bad port"))?;
                (host.to_owned(), port)
            }
            None => (bound.ip().to_string(), bound.port()),
        };
        let auto_create = self
            .kafka_auto_create_topics
            .unwrap_or(auto_create_by_default)
            .then_some(self.kafka_auto_create_partitions.max(1));
        let service = sluice_proxy::kafka::KafkaService::new(services, advertised, cancel)
            .with_auto_create(auto_create);
        let service = match cluster {
            Some((metadata, lease)) => service
                .join_cluster(metadata, lease)
                .await
                .context("cannot register the Kafka listener in the metadata store")?,
            None => service,
        };
        tokio::spawn(service.serve(listener));
        Ok(Some(bound))
    }
}

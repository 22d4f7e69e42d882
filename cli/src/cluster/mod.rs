//! The cluster roles, each its own process: `sluice controller`, `sluice
//! broker`, `sluice proxy`. They share nothing but the metadata store
//! (etcd) and the storage volumes.

pub mod broker;
pub mod controller;
pub mod proxy;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sluice_metadata::{EtcdStore, MetadataStore};

use crate::node::FileConfig;

/// The default TTL of a process's etcd lease: how long a dead process keeps
/// its registration (and its partitions) before others take over.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(2);

/// Flags every cluster role has.
#[derive(clap::Args, Debug)]
pub struct ClusterArgs {
    /// etcd endpoints, comma-separated (e.g. http://127.0.0.1:2379).
    #[arg(long, env = "SLUICE_ETCD")]
    etcd: Option<String>,
    /// TTL of this process's etcd lease (ms).
    #[arg(long, env = "SLUICE_LEASE_TTL_MS")]
    lease_ttl_ms: Option<u64>,
    /// TOML file with any of these settings (names as the flags, with underscores).
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<std::path::PathBuf>,
}

impl ClusterArgs {
    /// Connects to etcd, failing with one clear line when it cannot.
    pub async fn connect(&self, file: &FileConfig) -> anyhow::Result<Arc<dyn MetadataStore>> {
        let endpoints: Vec<String> = self
            .etcd
            .clone()
            .or_else(|| file.etcd.clone())
            .context("no etcd endpoints: set --etcd (or SLUICE_ETCD, or etcd in the config file)")?
            .split(',')
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty())
            .collect();
        let store = EtcdStore::connect(&endpoints)
            .await
            .with_context(|| format!("cannot reach etcd at {}", endpoints.join(",")))?;
        Ok(Arc::new(store))
    }

    pub fn lease_ttl(&self, file: &FileConfig) -> Duration {
        self.lease_ttl_ms
            .or(file.lease_ttl_ms)
            .map_or(DEFAULT_LEASE_TTL, Duration::from_millis)
    }
}

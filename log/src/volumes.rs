//! The storage volumes a node is configured with, and the random choice of a
//! healthy one for every new segment, so one hot partition spreads over the
//! whole storage pool.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use sluice_storage::{StorageError, Volume, VolumeKind, VolumeOptions};

use crate::{BlockCache, LogError};

/// The volumes of a node. The first is the home volume: checkpoints live there.
#[derive(Debug, Clone)]
pub struct VolumeSet {
    volumes: Vec<Arc<dyn Volume>>,
    /// Volume URL → until when it is considered unhealthy.
    unhealthy: Arc<Mutex<HashMap<String, Instant>>>,
    /// Readers' cache of segment blocks on remote volumes, if any.
    cache: Option<Arc<BlockCache>>,
}

impl VolumeSet {
    /// Opens every URL, with its settings from `options` (by URL); the first
    /// becomes the home volume.
    pub async fn open(
        urls: &[String],
        options: &BTreeMap<String, VolumeOptions>,
    ) -> Result<Self, StorageError> {
        let none = VolumeOptions::new();
        let mut volumes = Vec::with_capacity(urls.len());
        for url in urls {
            let settings = options.get(url).unwrap_or(&none);
            volumes.push(sluice_storage::open_volume_with(url, settings).await?);
        }
        Ok(Self::new(volumes))
    }

    /// Caches up to `bytes` of segment blocks read from object stores and
    /// HDFS (local directories have the page cache); 0 disables it.
    pub fn with_block_cache(mut self, bytes: u64) -> Self {
        self.cache = (bytes > 0).then(|| Arc::new(BlockCache::new(bytes)));
        self
    }

    /// The block cache, if reads are cached.
    pub fn block_cache(&self) -> Option<&Arc<BlockCache>> {
        self.cache.as_ref()
    }

    /// Whether any volume is an object store, where every write is a billed
    /// request and fewer, larger flushes pay.
    pub fn has_object_store(&self) -> bool {
        self.volumes
            .iter()
            .any(|volume| volume.kind() == VolumeKind::ObjectStore)
    }

    /// # Panics
    /// Never: an empty list is a configuration error caught by callers; it
    /// yields a set whose `home()` reports it.
    pub fn new(volumes: Vec<Arc<dyn Volume>>) -> Self {
        Self {
            volumes,
            unhealthy: Arc::default(),
            cache: None,
        }
    }

    /// Where checkpoints are written.
    pub fn home(&self) -> Result<&Arc<dyn Volume>, LogError> {
        self.volumes.first().ok_or_else(|| LogError::UnknownVolume {
            url: "(no volume configured)".into(),
        })
    }

    pub fn all(&self) -> &[Arc<dyn Volume>] {
        &self.volumes
    }

    /// The volume a checkpoint names by URL.
    pub fn get(&self, url: &str) -> Result<&Arc<dyn Volume>, LogError> {
        self.volumes
            .iter()
            .find(|v| v.url() == url)
            .ok_or_else(|| LogError::UnknownVolume {
                url: url.to_owned(),
            })
    }

    /// A random healthy volume for a new segment, avoiding `avoid` (the one
    /// that just failed) when another is available.
    pub fn pick_for_new_segment(&self, avoid: Option<&str>) -> Result<Arc<dyn Volume>, LogError> {
        let now = Instant::now();
        let unhealthy = self
            .unhealthy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let healthy =
            |v: &&Arc<dyn Volume>| unhealthy.get(v.url()).is_none_or(|until| *until <= now);
        let preferred: Vec<&Arc<dyn Volume>> = self
            .volumes
            .iter()
            .filter(healthy)
            .filter(|v| Some(v.url()) != avoid)
            .collect();
        let candidates = if preferred.is_empty() {
            // Every volume is marked bad: try them all rather than stop writing.
            self.volumes.iter().collect()
        } else {
            preferred
        };
        if candidates.is_empty() {
            return Err(LogError::UnknownVolume {
                url: "(no volume configured)".into(),
            });
        }
        let choice = rand::rng().random_range(0..candidates.len());
        Ok(Arc::clone(candidates[choice]))
    }

    /// Keeps new segments off `url` for `period` after a write failed there.
    pub fn mark_unhealthy(&self, url: &str, period: Duration) {
        let until = Instant::now() + period;
        self.unhealthy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(url.to_owned(), until);
    }
}

//! [`ObjectStoreVolume`], a volume over any `object_store` backend: an open segment is a
//! series of immutable chunk objects, one per append, merged into one object once sealed.
//!
//! The same code serves `memory://`, `file://` and, later, S3, GCS and Azure:
//! it only uses whole-object PUTs (`PutMode::Create` wherever a name must not
//! be reused), GETs with ranges, LIST and DELETE.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};

use crate::error::{Result, StorageError};
use crate::keys::{check_key, check_prefix, chunk_key, is_under};
use crate::layout::{SegmentLayout, concat, plan_read};
use crate::stats::{Counters, VolumeKind, VolumeStats};
use crate::volume::{SegmentWriter, Volume};

/// A volume stored in an object store.
#[derive(Debug)]
pub struct ObjectStoreVolume {
    url: String,
    store: Arc<dyn ObjectStore>,
    counters: Arc<Counters>,
    /// A merge holds its whole segment in memory: at most
    /// [`CONCURRENT_MERGES`] of them run at once per volume, however many
    /// partitions roll together.
    merges: Arc<tokio::sync::Semaphore>,
    /// The client merges use (one with a long per-request timeout), if
    /// different from `store`.
    bulk: Option<Arc<dyn ObjectStore>>,
}

/// Merges one volume runs at once (each holds one segment in memory).
pub const CONCURRENT_MERGES: usize = 2;

impl ObjectStoreVolume {
    /// Wraps `store` as the volume named `url`.
    ///
    /// Durability is the store's: `put` must be durable when it returns (true
    /// of S3, GCS, Azure; `LocalFileSystem` only with `with_fsync(true)`).
    pub fn new(url: impl Into<String>, store: Arc<dyn ObjectStore>) -> Self {
        Self {
            url: url.into(),
            store,
            counters: Arc::default(),
            merges: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_MERGES)),
            bulk: None,
        }
    }

    /// Uses `store` — the same bucket and prefix through another client, such
    /// as one with a longer timeout — for merges, which move whole segments.
    pub fn with_bulk_store(mut self, store: Arc<dyn ObjectStore>) -> Self {
        self.bulk = Some(store);
        self
    }

    /// The client for merges.
    fn bulk(&self) -> &Arc<dyn ObjectStore> {
        self.bulk.as_ref().unwrap_or(&self.store)
    }

    /// The object location of `key`, after checking it against the key rules.
    fn location(&self, key: &str) -> Result<Path> {
        check_key(&self.url, key)?;
        parse(&self.url, key)
    }

    /// Every location strictly under `prefix`, sorted by key.
    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>> {
        check_prefix(&self.url, prefix)?;
        let location = if prefix.is_empty() {
            None
        } else {
            Some(parse(&self.url, prefix)?)
        };
        self.counters.list();
        let mut keys: Vec<String> = self
            .store
            .list(location.as_ref())
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .map_err(|error| StorageError::from_object_store(&self.url, prefix, "list", error))?;
        keys.retain(|key| is_under(prefix, key));
        keys.sort();
        Ok(keys)
    }

    /// Deletes `keys` with the store's bulk delete; objects already gone are fine.
    /// Errors name `context`: the segment or prefix being deleted.
    async fn delete_keys(&self, context: &str, keys: Vec<String>) -> Result<()> {
        self.counters.delete(keys.len() as u64);
        let mut locations = Vec::with_capacity(keys.len());
        for key in &keys {
            locations.push(Ok(self.location(key)?));
        }
        let mut results = self
            .store
            .delete_stream(futures::stream::iter(locations).boxed());
        while let Some(result) = results.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => {
                    return Err(StorageError::from_object_store(
                        &self.url, context, "delete", error,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether an object exists at `key`.
    async fn exists(&self, key: &str) -> Result<bool> {
        self.counters.head();
        match self.store.head(&self.location(key)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(StorageError::from_object_store(
                &self.url, key, "head", error,
            )),
        }
    }

    /// Reads one whole chunk and checks it has the length the layout records.
    async fn read_chunk(&self, key: String, expected: u64) -> Result<Bytes> {
        let location = self.location(&key)?;
        let map = |error| StorageError::from_object_store(&self.url, &key, "read chunk", error);
        let data = self
            .store
            .get(&location)
            .await
            .map_err(map)?
            .bytes()
            .await
            .map_err(map)?;
        self.counters.get(data.len() as u64);
        check_length(&self.url, &key, data, expected)
    }
}

/// Parses a checked key into an object location.
fn parse(volume: &str, key: &str) -> Result<Path> {
    Path::parse(key)
        .map_err(|error| StorageError::from_object_store(volume, key, "parse key", error.into()))
}

/// Returns `data` if it is `expected` bytes long, else `Corrupt`.
fn check_length(volume: &str, key: &str, data: Bytes, expected: u64) -> Result<Bytes> {
    if data.len() as u64 == expected {
        Ok(data)
    } else {
        Err(StorageError::Corrupt {
            volume: volume.to_owned(),
            path: key.to_owned(),
            reason: format!("read {} bytes where the layout says {expected}", data.len()),
        })
    }
}

#[async_trait]
impl Volume for ObjectStoreVolume {
    fn url(&self) -> &str {
        &self.url
    }

    fn kind(&self) -> VolumeKind {
        VolumeKind::ObjectStore
    }

    fn stats(&self) -> VolumeStats {
        self.counters.snapshot()
    }

    async fn create_segment(&self, path: &str) -> Result<Box<dyn SegmentWriter>> {
        self.location(path)?;
        let first_chunk = chunk_key(path, 0);
        let (merged, chunked) = futures::try_join!(self.exists(path), self.exists(&first_chunk))?;
        if merged || chunked {
            return Err(StorageError::AlreadyExists {
                volume: self.url.clone(),
                path: if merged { path.to_owned() } else { first_chunk },
            });
        }
        Ok(Box::new(ObjectSegmentWriter {
            volume: self.url.clone(),
            path: path.to_owned(),
            store: Arc::clone(&self.store),
            counters: Arc::clone(&self.counters),
            lens: Vec::new(),
            failed: false,
        }))
    }

    async fn read_segment(
        &self,
        path: &str,
        layout: &SegmentLayout,
        range: Range<u64>,
    ) -> Result<Bytes> {
        self.location(path)?;
        let pieces = plan_read(&self.url, path, layout, range)?;
        let reads = pieces.into_iter().map(|piece| async move {
            let location = self.location(&piece.key)?;
            let expected = piece.range.end - piece.range.start;
            self.counters.get(expected);
            let data = self
                .store
                .get_range(&location, piece.range)
                .await
                .map_err(|error| {
                    StorageError::from_object_store(&self.url, &piece.key, "read range", error)
                })?;
            check_length(&self.url, &piece.key, data, expected)
        });
        Ok(concat(futures::future::try_join_all(reads).await?))
    }

    async fn merge_segment(&self, path: &str, layout: &SegmentLayout) -> Result<SegmentLayout> {
        let SegmentLayout::Chunks { lens } = layout else {
            return Ok(layout.clone());
        };
        let location = self.location(path)?;
        let len = layout.len();
        // The whole segment is held in memory while it is uploaded: segments are
        // bounded by the roll size, merges per volume by the semaphore, and a
        // single PUT keeps the merge atomic.
        let _slot = self.merges.acquire().await.map_err(|_| StorageError::Io {
            volume: self.url.clone(),
            path: path.to_owned(),
            op: "merge",
            source: std::io::Error::other("the volume is closing"),
        })?;
        let reads = lens
            .iter()
            .enumerate()
            .map(|(index, expected)| self.read_chunk(chunk_key(path, index), *expected));
        let chunks = futures::future::try_join_all(reads).await?;
        self.counters.put(len);
        let put = self
            .bulk()
            .put_opts(
                &location,
                PutPayload::from_iter(chunks),
                PutMode::Create.into(),
            )
            .await;
        match put {
            Ok(_) => Ok(SegmentLayout::Object { len }),
            // An earlier merge got this far before a crash: accept it if it is whole.
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => {
                self.counters.head();
                let meta = self.store.head(&location).await.map_err(|error| {
                    StorageError::from_object_store(&self.url, path, "head merged", error)
                })?;
                if meta.size == len {
                    Ok(SegmentLayout::Object { len })
                } else {
                    Err(StorageError::Corrupt {
                        volume: self.url.clone(),
                        path: path.to_owned(),
                        reason: format!("merged object has {} bytes, its chunks {len}", meta.size),
                    })
                }
            }
            Err(error) => Err(StorageError::from_object_store(
                &self.url,
                path,
                "put merged",
                error,
            )),
        }
    }

    async fn delete_chunks(&self, path: &str, layout: &SegmentLayout) -> Result<()> {
        let SegmentLayout::Chunks { lens } = layout else {
            return Ok(());
        };
        self.location(path)?;
        let keys = (0..lens.len())
            .map(|index| chunk_key(path, index))
            .collect();
        self.delete_keys(path, keys).await
    }

    async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<()> {
        let location = self.location(path)?;
        self.counters.put(data.len() as u64);
        self.store
            .put_opts(&location, PutPayload::from(data), PutMode::Create.into())
            .await
            .map(|_| ())
            .map_err(|error| {
                StorageError::from_object_store(&self.url, path, "put if absent", error)
            })
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        let location = self.location(path)?;
        let map = |error| StorageError::from_object_store(&self.url, path, "get", error);
        let data = self
            .store
            .get(&location)
            .await
            .map_err(map)?
            .bytes()
            .await
            .map_err(map)?;
        self.counters.get(data.len() as u64);
        Ok(data)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.list_keys(prefix).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let location = self.location(path)?;
        self.counters.delete(1);
        match self.store.delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(StorageError::from_object_store(
                &self.url, path, "delete", error,
            )),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        if prefix.is_empty() {
            return Err(StorageError::bad_key(
                &self.url,
                prefix,
                "refusing to delete the whole volume (empty prefix)",
            ));
        }
        let keys = self.list_keys(prefix).await?;
        self.delete_keys(prefix, keys).await
    }
}

/// Writes one immutable chunk object per append.
#[derive(Debug)]
struct ObjectSegmentWriter {
    volume: String,
    path: String,
    store: Arc<dyn ObjectStore>,
    counters: Arc<Counters>,
    /// Lengths of the chunks written so far.
    lens: Vec<u64>,
    /// Set while an append is in flight and left set if it fails or is cancelled.
    failed: bool,
}

#[async_trait]
impl SegmentWriter for ObjectSegmentWriter {
    async fn append(&mut self, data: Vec<Bytes>) -> Result<SegmentLayout> {
        if self.failed {
            return Err(StorageError::abandoned(&self.volume, &self.path));
        }
        let added: u64 = data.iter().map(|buf| buf.len() as u64).sum();
        if added == 0 {
            return Ok(self.layout());
        }
        let key = chunk_key(&self.path, self.lens.len());
        let location = parse(&self.volume, &key)?;
        self.failed = true;
        self.counters.put(added);
        // Create, not overwrite: if the chunk exists, another writer owns this segment.
        self.store
            .put_opts(
                &location,
                PutPayload::from_iter(data),
                PutMode::Create.into(),
            )
            .await
            .map_err(|error| {
                StorageError::from_object_store(&self.volume, &key, "put chunk", error)
            })?;
        self.failed = false;
        self.lens.push(added);
        Ok(self.layout())
    }

    fn layout(&self) -> SegmentLayout {
        SegmentLayout::Chunks {
            lens: self.lens.clone(),
        }
    }

    async fn seal(self: Box<Self>) -> Result<SegmentLayout> {
        // Every chunk was a complete, durable PUT; there is nothing left to flush.
        Ok(self.layout())
    }
}

//! [`LocalVolume`], the native local directory volume: segments are files appended in
//! place and made durable with `fdatasync`; checkpoints are created with a hard link.
//!
//! Every filesystem call runs in `tokio::task::spawn_blocking`, one task per
//! volume call, so a slow disk never stalls the runtime's worker threads.

mod files;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use self::files::{
    at, blocking, create_parent_dirs, put_file_if_absent, read_piece, sync_dir, walk,
};
use crate::error::{Result, StorageError};
use crate::keys::{check_key, check_prefix};
use crate::layout::{SegmentLayout, concat, plan_read};
use crate::rewrite::{delete_chunks_one_by_one, merge_by_rewrite};
use crate::stats::{Counters, VolumeKind, VolumeStats};
use crate::volume::{SegmentWriter, Volume};

/// A volume that is a directory on a local (or locally mounted) filesystem.
#[derive(Debug)]
pub struct LocalVolume {
    url: String,
    root: PathBuf,
    counters: Arc<Counters>,
}

impl LocalVolume {
    /// Opens the directory `root` as the volume named `url`, creating it if missing.
    pub async fn open(url: impl Into<String>, root: impl Into<PathBuf>) -> Result<Self> {
        let url = url.into();
        let root = root.into();
        let bad_url = |reason: String| StorageError::BadUrl {
            url: url.clone(),
            reason,
        };
        let root = std::path::absolute(&root).map_err(|error| {
            bad_url(format!("cannot make {} absolute: {error}", root.display()))
        })?;
        let dir = root.clone();
        tokio::task::spawn_blocking(move || fs::create_dir_all(&dir))
            .await
            .map_err(|error| bad_url(format!("directory creation did not finish: {error}")))?
            .map_err(|error| {
                bad_url(format!(
                    "cannot create directory {}: {error}",
                    root.display()
                ))
            })?;
        Ok(Self {
            url,
            root,
            counters: Arc::default(),
        })
    }

    /// The absolute directory this volume stores its files in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file behind `key`, after checking the key cannot leave the root.
    fn file_path(&self, key: &str) -> Result<PathBuf> {
        check_key(&self.url, key)?;
        Ok(self.root.join(key))
    }

    /// The directory behind `prefix` (the root itself for the empty prefix).
    fn dir_path(&self, prefix: &str) -> Result<PathBuf> {
        check_prefix(&self.url, prefix)?;
        Ok(if prefix.is_empty() {
            self.root.clone()
        } else {
            self.root.join(prefix)
        })
    }
}

#[async_trait]
impl Volume for LocalVolume {
    fn url(&self) -> &str {
        &self.url
    }

    fn kind(&self) -> VolumeKind {
        VolumeKind::Local
    }

    fn stats(&self) -> VolumeStats {
        self.counters.snapshot()
    }

    async fn create_segment(&self, path: &str) -> Result<Box<dyn SegmentWriter>> {
        let file_path = self.file_path(path)?;
        let root = self.root.clone();
        let file = blocking(&self.url, path, move || {
            let parent = create_parent_dirs(&root, &file_path)?;
            // O_CREAT|O_EXCL: fails if anything is already at the path.
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&file_path)
                .map_err(at("create segment"))?;
            sync_dir(&parent)?;
            Ok(file)
        })
        .await?;
        Ok(Box::new(LocalSegmentWriter {
            volume: self.url.clone(),
            path: path.to_owned(),
            file: Arc::new(file),
            counters: Arc::clone(&self.counters),
            len: 0,
            failed: false,
        }))
    }

    async fn read_segment(
        &self,
        path: &str,
        layout: &SegmentLayout,
        range: Range<u64>,
    ) -> Result<Bytes> {
        self.file_path(path)?;
        let pieces = plan_read(&self.url, path, layout, range)?;
        if pieces.is_empty() {
            return Ok(Bytes::new());
        }
        let root = self.root.clone();
        self.counters
            .get(pieces.iter().map(|p| p.range.end - p.range.start).sum());
        let parts = blocking(&self.url, path, move || {
            let mut parts = Vec::with_capacity(pieces.len());
            for piece in pieces {
                parts.push(read_piece(&root.join(&piece.key), piece.range)?);
            }
            Ok(parts)
        })
        .await;
        match parts {
            Ok(parts) => Ok(concat(parts)),
            // A file shorter than its layout: the checkpoint and the data disagree.
            Err(StorageError::Io {
                volume,
                path,
                source,
                ..
            }) if source.kind() == io::ErrorKind::UnexpectedEof => Err(StorageError::Corrupt {
                volume,
                path,
                reason: source.to_string(),
            }),
            Err(error) => Err(error),
        }
    }

    async fn merge_segment(&self, path: &str, layout: &SegmentLayout) -> Result<SegmentLayout> {
        // This volume never writes chunks, but one handed a chunked layout
        // (copied in from an object store) rewrites it as one file.
        let merged_len = async {
            let file_path = self.file_path(path)?;
            blocking(&self.url, path, move || {
                fs::metadata(&file_path)
                    .map(|meta| meta.len())
                    .map_err(at("stat merged segment"))
            })
            .await
        };
        merge_by_rewrite(self, path, layout, merged_len).await
    }

    async fn delete_chunks(&self, path: &str, layout: &SegmentLayout) -> Result<()> {
        delete_chunks_one_by_one(self, path, layout).await
    }

    async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<()> {
        let file_path = self.file_path(path)?;
        let root = self.root.clone();
        self.counters.put(data.len() as u64);
        blocking(&self.url, path, move || {
            put_file_if_absent(&root, &file_path, &data)
        })
        .await
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        let file_path = self.file_path(path)?;
        let data = blocking(&self.url, path, move || {
            fs::read(&file_path).map_err(at("read"))
        })
        .await?;
        self.counters.get(data.len() as u64);
        Ok(Bytes::from(data))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let dir = self.dir_path(prefix)?;
        let prefix_owned = prefix.to_owned();
        self.counters.list();
        blocking(&self.url, prefix, move || {
            let mut keys = Vec::new();
            walk(&dir, &prefix_owned, &mut keys)?;
            keys.sort();
            Ok(keys)
        })
        .await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let file_path = self.file_path(path)?;
        self.counters.delete(1);
        blocking(&self.url, path, move || match fs::remove_file(&file_path) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other.map_err(at("delete")),
        })
        .await
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        if prefix.is_empty() {
            return Err(StorageError::bad_key(
                &self.url,
                prefix,
                "refusing to delete the whole volume (empty prefix)",
            ));
        }
        let dir = self.dir_path(prefix)?;
        blocking(&self.url, prefix, move || {
            match fs::symlink_metadata(&dir) {
                Ok(meta) if meta.is_dir() => {}
                // Nothing is under a missing prefix or under a plain file.
                Ok(_) => return Ok(()),
                Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(error) => return Err(("stat prefix", error)),
            }
            match fs::remove_dir_all(&dir) {
                Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other.map_err(at("delete prefix")),
            }
        })
        .await
    }
}

/// Appends to one segment file at known offsets; every append ends with `fdatasync`.
#[derive(Debug)]
struct LocalSegmentWriter {
    volume: String,
    path: String,
    /// Shared with the blocking task of the append in progress.
    file: Arc<File>,
    counters: Arc<Counters>,
    /// Bytes durably appended so far.
    len: u64,
    /// Set while an append is in flight and left set if it fails or is cancelled.
    failed: bool,
}

#[async_trait]
impl SegmentWriter for LocalSegmentWriter {
    async fn append(&mut self, data: Vec<Bytes>) -> Result<SegmentLayout> {
        if self.failed {
            return Err(StorageError::abandoned(&self.volume, &self.path));
        }
        let added: u64 = data.iter().map(|buf| buf.len() as u64).sum();
        if added == 0 {
            return Ok(self.layout());
        }
        let file = Arc::clone(&self.file);
        let start = self.len;
        // Poisoned until the append completes, so a dropped (cancelled) append also poisons.
        self.failed = true;
        self.counters.put(added);
        blocking(&self.volume, &self.path, move || {
            // Positional writes: the offset never depends on a file cursor.
            let mut offset = start;
            for buf in &data {
                file.write_all_at(buf, offset).map_err(at("append"))?;
                offset += buf.len() as u64;
            }
            // fdatasync also persists the new file size, which reading the data needs.
            file.sync_data().map_err(at("fdatasync segment"))
        })
        .await?;
        self.failed = false;
        self.len = start + added;
        Ok(self.layout())
    }

    fn layout(&self) -> SegmentLayout {
        SegmentLayout::File { len: self.len }
    }

    async fn seal(self: Box<Self>) -> Result<SegmentLayout> {
        // Every append was synced before it returned; closing adds nothing to make durable.
        Ok(self.layout())
    }
}

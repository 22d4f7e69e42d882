//! [`HdfsVolume`], a volume on HDFS through `hdfs-native`: a segment is one
//! HDFS file appended by its writer and made durable and visible to readers
//! with `hsync` on every append; a sealed segment is closed.
//!
//! - **Fencing.** Checkpoints are written to a staging file and renamed into
//!   place without overwrite (`rename2`, atomic at the NameNode): of any
//!   number of writers, exactly one rename succeeds, and no reader ever sees
//!   a partial checkpoint. Segments are created without overwrite.
//! - **Takeover.** A new owner never needs the HDFS lease of the previous
//!   owner's open segment: it reads that file up to the length its checkpoint
//!   records (readers see every `hsync`ed byte, even while the old writer still
//!   holds the file open) and writes a new segment.
//! - **No hangs.** Every NameNode and DataNode call runs under a deadline, so a
//!   stopped cluster fails writes (and the partition moves to another volume)
//!   instead of stalling them.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use hdfs_native::file::FileWriter;
use hdfs_native::{Client, ClientBuilder, HdfsError, WriteOptions};

use crate::error::{Result, StorageError};
use crate::keys::{TEMP_PREFIX, check_key, check_prefix, is_under};
use crate::layout::{SegmentLayout, concat, plan_read};
use crate::rewrite::{delete_chunks_one_by_one, merge_by_rewrite};
use crate::stats::{Counters, VolumeKind, VolumeStats};
use crate::volume::{SegmentWriter, Volume};

/// Deadline of one HDFS call (a NameNode RPC, or one append with its `hsync`).
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// HDFS block size of segment files. Appends `hsync` each block as it
/// fills, since HDFS closes a full block without syncing it.
const SEGMENT_BLOCK: u64 = 128 << 20;

/// Deadline for the first contact with the NameNode when the volume is opened.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// A volume that is a directory in HDFS.
pub struct HdfsVolume {
    url: String,
    /// Absolute directory in HDFS, without a trailing `/`.
    root: String,
    client: Arc<Client>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for HdfsVolume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HdfsVolume")
            .field("url", &self.url)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl HdfsVolume {
    /// Connects to the NameNode of `url` (`hdfs://host:port/path`) and
    /// creates the volume's directory. `options` are HDFS client settings
    /// (`dfs.*` keys as in hdfs-site.xml), plus `user` for the effective user.
    pub async fn open(url: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        let bad_url = |reason: String| StorageError::BadUrl {
            url: url.to_owned(),
            reason,
        };
        let rest = url
            .strip_prefix("hdfs://")
            .ok_or_else(|| bad_url("expected hdfs://NAMENODE:PORT/PATH".into()))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() || path.contains(['?', '#']) {
            return Err(bad_url(
                "expected hdfs://NAMENODE:PORT/PATH (a NameNode address and a directory)".into(),
            ));
        }
        let root = format!("/{}", path.trim_end_matches('/'));
        let root = if root == "/" { String::new() } else { root };
        // A closed port can make the client wait a long time: check that
        // something listens before handing the address to it. Without a
        // port the authority may be a logical name service (HA NameNodes
        // from HADOOP_CONF_DIR): then only the bounded `mkdirs` below checks.
        let address = authority.to_owned();
        if authority.contains(':') {
            match tokio::time::timeout(OPEN_TIMEOUT, tokio::net::TcpStream::connect(&address)).await
            {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    return Err(bad_url(format!(
                        "cannot reach the NameNode at {address}: {error}"
                    )));
                }
                Err(_) => {
                    return Err(bad_url(format!(
                        "the NameNode at {address} did not accept a connection within {OPEN_TIMEOUT:?}"
                    )));
                }
            }
        }
        let mut builder = ClientBuilder::new().with_url(format!("hdfs://{authority}"));
        let mut config = options.clone();
        if let Some(user) = config.remove("user") {
            builder = builder.with_user(user);
        }
        let client = builder
            .with_config(config)
            .build()
            .map_err(|error| bad_url(format!("bad HDFS client settings: {error}")))?;
        let volume = Self {
            url: url.to_owned(),
            root,
            client: Arc::new(client),
            counters: Arc::default(),
        };
        // Proves the NameNode answers RPCs and the directory is usable.
        let dir = volume.root_dir();
        match tokio::time::timeout(OPEN_TIMEOUT, volume.client.mkdirs(&dir, 0o755, true)).await {
            Ok(Ok(())) => Ok(volume),
            Ok(Err(error)) => Err(bad_url(format!(
                "cannot create the directory {dir}: {error}"
            ))),
            Err(_) => Err(bad_url(format!(
                "the NameNode at {address} did not answer within {OPEN_TIMEOUT:?}"
            ))),
        }
    }

    fn root_dir(&self) -> String {
        if self.root.is_empty() {
            "/".to_owned()
        } else {
            self.root.clone()
        }
    }

    /// The HDFS path of a checked key.
    fn file_path(&self, key: &str) -> Result<String> {
        check_key(&self.url, key)?;
        Ok(format!("{}/{key}", self.root))
    }

    /// The HDFS directory of a checked prefix (the root for the empty prefix).
    fn dir_path(&self, prefix: &str) -> Result<String> {
        check_prefix(&self.url, prefix)?;
        Ok(if prefix.is_empty() {
            self.root_dir()
        } else {
            format!("{}/{prefix}", self.root)
        })
    }

    /// Runs one HDFS call under [`CALL_TIMEOUT`], mapping its error.
    async fn call<T>(
        &self,
        key: &str,
        op: &'static str,
        future: impl Future<Output = hdfs_native::Result<T>>,
    ) -> Result<T> {
        deadline(&self.url, key, op, future).await
    }

    /// Reads `range` of the file `key` (every byte of it must be visible).
    async fn read_file(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let path = self.file_path(key)?;
        let reader = self.call(key, "open", self.client.read(&path)).await?;
        let visible = reader.file_length() as u64;
        if range.end > visible {
            // Fewer bytes than a checkpoint promises: the file was damaged, or
            // the NameNode does not (yet) report an open file's synced length.
            return Err(StorageError::Corrupt {
                volume: self.url.clone(),
                path: key.to_owned(),
                reason: format!("HDFS shows {visible} bytes, the read needs {}", range.end),
            });
        }
        let len = (range.end - range.start) as usize;
        self.counters.get(len as u64);
        let data = self
            .call(key, "read", reader.read_range(range.start as usize, len))
            .await?;
        if data.len() == len {
            Ok(data)
        } else {
            Err(StorageError::Corrupt {
                volume: self.url.clone(),
                path: key.to_owned(),
                reason: format!("read {} bytes of {len} at {}", data.len(), range.start),
            })
        }
    }
}

/// Runs `future` with a deadline; its error, or the timeout, becomes a
/// [`StorageError`] naming the volume, key and operation.
async fn deadline<T>(
    volume: &str,
    key: &str,
    op: &'static str,
    future: impl Future<Output = hdfs_native::Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, future).await {
        Ok(result) => result.map_err(|error| StorageError::from_hdfs(volume, key, op, error)),
        Err(_) => Err(StorageError::from_hdfs(
            volume,
            key,
            op,
            HdfsError::IOError(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer from HDFS within {CALL_TIMEOUT:?}"),
            )),
        )),
    }
}

#[async_trait]
impl Volume for HdfsVolume {
    fn url(&self) -> &str {
        &self.url
    }

    fn kind(&self) -> VolumeKind {
        VolumeKind::Hdfs
    }

    fn stats(&self) -> VolumeStats {
        self.counters.snapshot()
    }

    async fn create_segment(&self, path: &str) -> Result<Box<dyn SegmentWriter>> {
        let file = self.file_path(path)?;
        self.counters.put(0);
        // Without overwrite: the NameNode refuses the name if anything is there.
        let options = WriteOptions::default().block_size(SEGMENT_BLOCK);
        let writer = self
            .call(path, "create segment", self.client.create(&file, options))
            .await?;
        Ok(Box::new(HdfsSegmentWriter {
            volume: self.url.clone(),
            path: path.to_owned(),
            writer,
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
        let reads = pieces
            .into_iter()
            .map(|piece| async move { self.read_file(&piece.key, piece.range).await });
        Ok(concat(futures::future::try_join_all(reads).await?))
    }

    async fn merge_segment(&self, path: &str, layout: &SegmentLayout) -> Result<SegmentLayout> {
        // This volume never writes chunks; a chunked layout handed to it is
        // rewritten as one file.
        let merged_len = async {
            let file = self.file_path(path)?;
            self.counters.head();
            let status = self
                .call(path, "stat merged", self.client.get_file_info(&file))
                .await?;
            Ok(status.length as u64)
        };
        merge_by_rewrite(self, path, layout, merged_len).await
    }

    async fn delete_chunks(&self, path: &str, layout: &SegmentLayout) -> Result<()> {
        delete_chunks_one_by_one(self, path, layout).await
    }

    async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<()> {
        let file = self.file_path(path)?;
        let (parent, name) = file.rsplit_once('/').unwrap_or(("", &file));
        let staging = format!(
            "{parent}/{TEMP_PREFIX}{name}-{:016x}",
            rand::random::<u64>()
        );
        self.counters.put(data.len() as u64);
        let write = async {
            let mut writer = self
                .client
                .create(&staging, WriteOptions::default())
                .await?;
            writer.write_bytes(data).await?;
            // Durable on the DataNodes' disks: close alone does not sync
            // unless the cluster sets dfs.datanode.synconclose.
            writer.hsync().await?;
            writer.close().await?;
            // rename2 without overwrite: atomic, and refused if `path` exists.
            self.client.rename(&staging, &file, false).await
        };
        let result = self.call(path, "put if absent", write).await;
        if result.is_err() {
            // Best effort: a staging file is never listed or read anyway.
            let _ = deadline(&self.url, path, "delete staging", async {
                self.client.delete(&staging, false).await
            })
            .await;
        }
        result
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        let file = self.file_path(path)?;
        let reader = self.call(path, "open", self.client.read(&file)).await?;
        let len = reader.file_length();
        self.counters.get(len as u64);
        self.call(path, "read", reader.read_range(0, len)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let dir = self.dir_path(prefix)?;
        self.counters.list();
        let statuses = match self
            .call(prefix, "list", self.client.list_status(&dir, true))
            .await
        {
            Ok(statuses) => statuses,
            Err(StorageError::NotFound { .. }) => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let base = format!("{}/", self.root);
        let mut keys: Vec<String> = statuses
            .into_iter()
            .filter(|status| !status.isdir)
            .filter_map(|status| status.path.strip_prefix(&base).map(str::to_owned))
            .filter(|key| is_under(prefix, key))
            .filter(|key| !key.split('/').any(|c| c.starts_with(TEMP_PREFIX)))
            .collect();
        keys.sort();
        Ok(keys)
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let file = self.file_path(path)?;
        self.counters.delete(1);
        match self
            .call(path, "delete", self.client.delete(&file, false))
            .await
        {
            Ok(_) | Err(StorageError::NotFound { .. }) => Ok(()),
            Err(error) => Err(error),
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
        let dir = self.dir_path(prefix)?;
        self.counters.delete(1);
        match self
            .call(prefix, "delete prefix", self.client.delete(&dir, true))
            .await
        {
            Ok(_) | Err(StorageError::NotFound { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// Appends to one HDFS file; every append ends with `hsync`.
struct HdfsSegmentWriter {
    volume: String,
    path: String,
    writer: FileWriter,
    counters: Arc<Counters>,
    /// Bytes durably appended so far.
    len: u64,
    /// Set while an append is in flight and left set if it fails or is cancelled.
    failed: bool,
}

impl std::fmt::Debug for HdfsSegmentWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HdfsSegmentWriter")
            .field("volume", &self.volume)
            .field("path", &self.path)
            .field("len", &self.len)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl SegmentWriter for HdfsSegmentWriter {
    async fn append(&mut self, data: Vec<Bytes>) -> Result<SegmentLayout> {
        if self.failed {
            return Err(StorageError::abandoned(&self.volume, &self.path));
        }
        let added: u64 = data.iter().map(|buf| buf.len() as u64).sum();
        if added == 0 {
            return Ok(self.layout());
        }
        self.failed = true;
        self.counters.put(added);
        let writer = &mut self.writer;
        let mut end = self.len;
        let write = async move {
            for mut buf in data {
                while !buf.is_empty() {
                    // A block that fills up is closed when the next one
                    // starts, and closing does not sync: sync it while full.
                    let room = SEGMENT_BLOCK - end % SEGMENT_BLOCK;
                    let piece = buf.split_to(room.min(buf.len() as u64) as usize);
                    end += piece.len() as u64;
                    writer.write_bytes(piece).await?;
                    if end % SEGMENT_BLOCK == 0 {
                        writer.hsync().await?;
                    }
                }
            }
            // Durable on the DataNodes and visible to new readers.
            if end % SEGMENT_BLOCK == 0 {
                Ok(())
            } else {
                writer.hsync().await
            }
        };
        deadline(&self.volume, &self.path, "append", write).await?;
        self.failed = false;
        self.len += added;
        Ok(self.layout())
    }

    fn layout(&self) -> SegmentLayout {
        SegmentLayout::File { len: self.len }
    }

    async fn seal(mut self: Box<Self>) -> Result<SegmentLayout> {
        let layout = self.layout();
        deadline(&self.volume, &self.path, "close", self.writer.close()).await?;
        Ok(layout)
    }
}

//! [`open_volume`]: turns a volume URL from configuration into a [`Volume`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;

use crate::cloud::{self, VolumeOptions};
use crate::error::{Result, StorageError};
use crate::hdfs::HdfsVolume;
use crate::local::LocalVolume;
use crate::object::ObjectStoreVolume;
use crate::volume::Volume;

/// What the error for an unusable URL lists as the alternatives.
const SUPPORTED: &str = "supported volumes are a directory path, dir:///absolute/path, \
                         file:///absolute/path, memory://name, s3://bucket/prefix, \
                         gs://bucket/prefix, az://container/prefix and \
                         hdfs://namenode:port/path";

/// `memory://` stores by name, so every volume opened with one URL in this
/// process shares its objects (a broker and a reader in one test process).
/// A std mutex is enough: it is held only to look up or insert, never across `.await`.
static MEMORY_STORES: LazyLock<Mutex<HashMap<String, Arc<InMemory>>>> =
    LazyLock::new(Default::default);

/// Opens a volume by URL.
///
/// - a plain filesystem path (absolute or relative, no scheme) or
///   `dir:///abs/path`: the native local directory volume ([`LocalVolume`]),
///   which appends segment files in place. The directory is created if missing.
/// - `file:///abs/path`: `object_store`'s `LocalFileSystem` (with fsync), used
///   exactly like a remote object store: chunked segments, merged after seal.
///   The directory is created if missing.
/// - `memory://NAME`: `object_store`'s `InMemory`; the same NAME within one
///   process returns the same store.
///
/// - `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`:
///   cloud object stores, configured from the environment the way each
///   cloud's tools are (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, …).
/// - `hdfs://namenode:port/path`: a directory in HDFS.
///
/// Anything else is `Err(BadUrl)`. Paths in URLs are taken literally (no
/// percent-decoding). Remote volumes are contacted once before this
/// returns, so a wrong endpoint, credentials or bucket fail here.
pub async fn open_volume(url: &str) -> Result<Arc<dyn Volume>> {
    open_volume_with(url, &VolumeOptions::new()).await
}

/// [`open_volume`] with per-volume settings that override the environment:
/// `object_store` configuration keys for cloud volumes (`endpoint`,
/// `access_key_id`, `secret_access_key`, `region`, `allow_http`, `timeout`…),
/// HDFS client settings (`dfs.*`, and `user`) for `hdfs://`. Local volumes
/// take none.
pub async fn open_volume_with(url: &str, options: &VolumeOptions) -> Result<Arc<dyn Volume>> {
    let bad_url = |reason: String| StorageError::BadUrl {
        url: url.to_owned(),
        reason,
    };
    if url.is_empty() {
        return Err(bad_url(format!("the URL is empty; {SUPPORTED}")));
    }
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    let remote = scheme.is_some_and(|s| s == "hdfs" || cloud::SCHEMES.contains(&s));
    if !options.is_empty() && !remote {
        return Err(bad_url(
            "only s3://, gs://, az:// and hdfs:// volumes take options".into(),
        ));
    }
    match url.split_once("://") {
        None => Ok(Arc::new(LocalVolume::open(url, url).await?)),
        Some(("dir", path)) => {
            let path = absolute_path("dir", path).map_err(bad_url)?;
            Ok(Arc::new(LocalVolume::open(url, path).await?))
        }
        Some(("file", path)) => {
            let path = absolute_path("file", path).map_err(bad_url)?;
            let dir = path.to_owned();
            tokio::task::spawn_blocking(move || std::fs::create_dir_all(&dir))
                .await
                .map_err(|error| bad_url(format!("directory creation did not finish: {error}")))?
                .map_err(|error| bad_url(format!("cannot create directory {path}: {error}")))?;
            let store = LocalFileSystem::new_with_prefix(path)
                .map_err(|error| bad_url(format!("cannot open directory {path}: {error}")))?
                .with_fsync(true);
            Ok(Arc::new(ObjectStoreVolume::new(url, Arc::new(store))))
        }
        Some(("memory", name)) => {
            let store = {
                let mut stores = MEMORY_STORES
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                Arc::clone(stores.entry(name.to_owned()).or_default())
            };
            Ok(Arc::new(ObjectStoreVolume::new(url, store)))
        }
        Some(("hdfs", _)) => Ok(Arc::new(HdfsVolume::open(url, options).await?)),
        Some((scheme, rest)) if cloud::SCHEMES.contains(&scheme) => {
            Ok(Arc::new(cloud::open(url, scheme, rest, options).await?))
        }
        Some((scheme, _)) => Err(bad_url(format!("unknown scheme `{scheme}`; {SUPPORTED}"))),
    }
}

/// The path of a `dir://` or `file://` URL, which must be absolute (`scheme:///abs/path`).
fn absolute_path<'a>(scheme: &str, path: &'a str) -> std::result::Result<&'a str, String> {
    if !Path::new(path).is_absolute() {
        return Err(format!(
            "{scheme}:// URLs need an absolute path and no host, as in {scheme}:///var/lib/sluice"
        ));
    }
    if path.contains(['?', '#']) {
        return Err(format!("{scheme}:// URLs take no query or fragment"));
    }
    Ok(path)
}

//! [`open_volume`]: turns a volume URL from configuration into a [`Volume`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;

use crate::error::{Result, StorageError};
use crate::local::LocalVolume;
use crate::object::ObjectStoreVolume;
use crate::volume::Volume;

/// What the error for an unusable URL lists as the alternatives.
const SUPPORTED: &str = "supported volumes are a directory path, dir:///absolute/path, \
                         file:///absolute/path and memory://name";

/// Schemes that name real backends Sluice will support but does not yet.
const LATER: &[&str] = &[
    "s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "hdfs", "viewfs",
];

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
/// Anything else is `Err(BadUrl)`; `s3://`, `gs://`, `az://` and `hdfs://`
/// are reported as not supported yet. Paths in URLs are taken literally (no
/// percent-decoding).
pub async fn open_volume(url: &str) -> Result<Arc<dyn Volume>> {
    let bad_url = |reason: String| StorageError::BadUrl {
        url: url.to_owned(),
        reason,
    };
    if url.is_empty() {
        return Err(bad_url(format!("the URL is empty; {SUPPORTED}")));
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
        Some((scheme, _)) if LATER.contains(&scheme) => Err(bad_url(format!(
            "{scheme}:// volumes are not supported yet; {SUPPORTED}"
        ))),
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

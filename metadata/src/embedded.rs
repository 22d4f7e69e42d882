//! The embedded metadata store of standalone mode: a map in memory, written
//! through to one JSON file on every change (temp file, fsync, rename), so a
//! restart on the same data directory finds every topic it had.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{Compare, MetadataError, MetadataStore, Op, Result, Versioned, Watch, WatchEvent};

/// A single-process [`MetadataStore`] persisted to `<dir>/metadata.json`.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    /// `None` keeps everything in memory (tests).
    path: Option<PathBuf>,
    revision: u64,
    keys: BTreeMap<String, Versioned>,
    watchers: Vec<(String, mpsc::UnboundedSender<WatchEvent>)>,
}

/// The on-disk form. Values are stored as text when they are UTF-8 (all of
/// Sluice's are JSON), else as hex, so the file stays readable.
#[derive(Serialize, Deserialize, Default)]
struct FileImage {
    revision: u64,
    keys: BTreeMap<String, StoredValue>,
}

#[derive(Serialize, Deserialize)]
struct StoredValue {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    hex: Option<String>,
    version: u64,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join("metadata.json");
        std::fs::create_dir_all(dir).map_err(|source| MetadataError::Io {
            op: "create the directory of",
            path: path.clone(),
            source,
        })?;
        let (revision, keys) = match std::fs::read(&path) {
            Ok(bytes) => decode_image(&path, &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, BTreeMap::new()),
            Err(source) => {
                return Err(MetadataError::Io {
                    op: "read",
                    path,
                    source,
                });
            }
        };
        Ok(Self::with(Some(path), revision, keys))
    }

    /// A store that lives only in memory.
    pub fn in_memory() -> Self {
        Self::with(None, 0, BTreeMap::new())
    }

    fn with(path: Option<PathBuf>, revision: u64, keys: BTreeMap<String, Versioned>) -> Self {
        let inner = Inner {
            path,
            revision,
            keys,
            watchers: Vec::new(),
        };
        Self {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-updated
        // (updates are applied to a copy first), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn decode_image(path: &Path, bytes: &[u8]) -> Result<(u64, BTreeMap<String, Versioned>)> {
    let corrupt = |reason: String| MetadataError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let image: FileImage = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    let mut keys = BTreeMap::new();
    for (key, stored) in image.keys {
        let value = match (stored.text, stored.hex) {
            (Some(text), None) => text.into_bytes(),
            (None, Some(hex)) => {
                decode_hex(&hex).ok_or_else(|| corrupt(format!("bad hex under {key}")))?
            }
            _ => return Err(corrupt(format!("key {key} needs exactly one of text/hex"))),
        };
        keys.insert(
            key,
            Versioned {
                value,
                version: stored.version,
            },
        );
    }
    Ok((image.revision, keys))
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Inner {
    /// Writes the whole image: temp file, fsync, rename, fsync directory.
    fn persist(&self, revision: u64, keys: &BTreeMap<String, Versioned>) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut image = FileImage {
            revision,
            keys: BTreeMap::new(),
        };
        for (key, value) in keys {
            let (text, hex) = match std::str::from_utf8(&value.value) {
                Ok(text) => (Some(text.to_owned()), None),
                Err(_) => (
                    None,
                    Some(value.value.iter().map(|b| format!("{b:02x}")).collect()),
                ),
            };
            let stored = StoredValue {
                text,
                hex,
                version: value.version,
            };
            image.keys.insert(key.clone(), stored);
        }
        let io = |op: &'static str| {
            let path = path.clone();
            move |source| MetadataError::Io { op, path, source }
        };
        let bytes = serde_json::to_vec_pretty(&image).map_err(|e| MetadataError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let tmp = path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&tmp).map_err(io("create"))?;
        file.write_all(&bytes).map_err(io("write"))?;
        file.sync_data().map_err(io("fsync"))?;
        std::fs::rename(&tmp, path).map_err(io("rename"))?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io("fsync the directory of"))?;
        }
        Ok(())
    }

    fn holds(&self, compare: &Compare) -> bool {
        match compare {
            Compare::Absent(key) => !self.keys.contains_key(key),
            Compare::Version(key, version) => {
                self.keys.get(key).is_some_and(|v| v.version == *version)
            }
        }
    }

    /// Applies ops to a copy, persists it, then swaps it in and tells watchers.
    fn apply(&mut self, ops: Vec<Op>) -> Result<u64> {
        let revision = self.revision + 1;
        let mut keys = self.keys.clone();
        let mut events = Vec::new();
        for op in ops {
            match op {
                Op::Put { key, value } => {
                    let value = Versioned {
                        value,
                        version: revision,
                    };
                    keys.insert(key.clone(), value.clone());
                    events.push(WatchEvent::Put { key, value });
                }
                Op::Delete { key } => {
                    if keys.remove(&key).is_some() {
                        events.push(WatchEvent::Delete { key });
                    }
                }
                Op::DeletePrefix { prefix } => {
                    let doomed: Vec<String> = keys
                        .range(prefix.clone()..)
                        .map(|(k, _)| k.clone())
                        .take_while(|k| k.starts_with(&prefix))
                        .collect();
                    for key in doomed {
                        keys.remove(&key);
                        events.push(WatchEvent::Delete { key });
                    }
                }
            }
        }
        self.persist(revision, &keys)?;
        self.revision = revision;
        self.keys = keys;
        self.watchers.retain(|(prefix, sender)| {
            events
                .iter()
                .filter(|event| event_key(event).starts_with(prefix.as_str()))
                .all(|event| sender.send(event.clone()).is_ok())
        });
        Ok(revision)
    }

    fn list(&self, prefix: &str) -> Vec<(String, Versioned)> {
        self.keys
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

fn event_key(event: &WatchEvent) -> &str {
    match event {
        WatchEvent::Put { key, .. } | WatchEvent::Delete { key } => key,
    }
}

#[async_trait]
impl MetadataStore for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>> {
        Ok(self.lock().keys.get(key).cloned())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>> {
        Ok(self.lock().list(prefix))
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64> {
        let op = Op::Put {
            key: key.to_owned(),
            value,
        };
        self.lock().apply(vec![op])
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<bool> {
        let mut inner = self.lock();
        if !compares.iter().all(|c| inner.holds(c)) {
            return Ok(false);
        }
        inner.apply(ops)?;
        Ok(true)
    }

    async fn watch(&self, prefix: &str) -> Result<Watch> {
        let mut inner = self.lock();
        let (sender, events) = mpsc::unbounded_channel();
        inner.watchers.push((prefix.to_owned(), sender));
        Ok(Watch {
            initial: inner.list(prefix),
            events,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn survives_reopen_and_versions_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let v1 = store
            .put("/sluice/topics/a", b"{\"x\":1}".to_vec())
            .await
            .expect("put");
        let v2 = store
            .put("/sluice/topics/a", b"{\"x\":2}".to_vec())
            .await
            .expect("put");
        assert!(v2 > v1);
        store
            .put("/sluice/bin", vec![0xff, 0x00])
            .await
            .expect("put binary");
        drop(store);
        let store = EmbeddedStore::open(dir.path()).expect("reopen");
        let got = store
            .get("/sluice/topics/a")
            .await
            .expect("get")
            .expect("present");
        assert_eq!(got.value, b"{\"x\":2}");
        assert_eq!(got.version, v2);
        let bin = store
            .get("/sluice/bin")
            .await
            .expect("get")
            .expect("present");
        assert_eq!(bin.value, vec![0xff, 0x00]);
    }

    #[tokio::test]
    async fn txn_applies_only_when_compares_hold() {
        let store = EmbeddedStore::in_memory();
        let create = |v: &[u8]| Op::Put {
            key: "k".into(),
            value: v.to_vec(),
        };
        assert!(
            store
                .txn(vec![Compare::Absent("k".into())], vec![create(b"1")])
                .await
                .expect("txn")
        );
        assert!(
            !store
                .txn(vec![Compare::Absent("k".into())], vec![create(b"2")])
                .await
                .expect("txn")
        );
        let version = store.get("k").await.expect("get").expect("present").version;
        assert!(
            !store
                .txn(
                    vec![Compare::Version("k".into(), version + 1)],
                    vec![create(b"3")]
                )
                .await
                .expect("txn")
        );
        assert!(
            store
                .txn(
                    vec![Compare::Version("k".into(), version)],
                    vec![create(b"4")]
                )
                .await
                .expect("txn")
        );
        assert_eq!(
            store.get("k").await.expect("get").expect("present").value,
            b"4"
        );
    }

    #[tokio::test]
    async fn watch_sees_initial_state_then_changes_under_its_prefix() {
        let store = EmbeddedStore::in_memory();
        store.put("/a/1", b"x".to_vec()).await.expect("put");
        let mut watch = store.watch("/a/").await.expect("watch");
        assert_eq!(watch.initial.len(), 1);
        store.put("/b/1", b"y".to_vec()).await.expect("put");
        store.put("/a/2", b"z".to_vec()).await.expect("put");
        store
            .txn(
                vec![],
                vec![Op::DeletePrefix {
                    prefix: "/a/".into(),
                }],
            )
            .await
            .expect("txn");
        let first = watch.events.recv().await.expect("event");
        assert!(matches!(first, WatchEvent::Put { ref key, .. } if key == "/a/2"));
        let mut deleted = vec![];
        for _ in 0..2 {
            match watch.events.recv().await.expect("event") {
                WatchEvent::Delete { key } => deleted.push(key),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(deleted, vec!["/a/1".to_string(), "/a/2".to_string()]);
    }
}

//! The embedded metadata store of standalone mode: a map in memory, written
//! through to one JSON file on every change, so a restart on the same data
//! directory finds every topic it had. Leases live in memory only, with a
//! timer task that expires them; keys bound to a lease are never written to
//! the file, since they die with the process anyway.

mod file;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::{
    Compare, LeaseId, MetadataError, MetadataStore, Op, Result, Versioned, Watch, WatchEvent,
    election_prefix,
};

/// A single-process [`MetadataStore`] persisted to `<dir>/metadata.json`.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    inner: Arc<Mutex<Inner>>,
    /// Wakes the lease timer when a lease may expire sooner than it planned.
    lease_timer_wake: Arc<Notify>,
}

#[derive(Debug)]
struct Inner {
    /// `None` keeps everything in memory (tests).
    path: Option<PathBuf>,
    revision: u64,
    keys: BTreeMap<String, Entry>,
    leases: HashMap<LeaseId, LeaseState>,
    next_lease: i64,
    watchers: Vec<(String, mpsc::UnboundedSender<WatchEvent>)>,
    /// The revision after every change: campaigners wait on it.
    changes: watch::Sender<u64>,
    /// The lease timer task, started with the first lease.
    lease_timer: Option<AbortHandle>,
}

#[derive(Clone, Debug)]
struct Entry {
    value: Versioned,
    /// Revision at which the key was created; kept across updates (as in
    /// etcd). Orders the candidates of an election.
    created: u64,
    lease: Option<LeaseId>,
}

#[derive(Debug)]
struct LeaseState {
    ttl: Duration,
    expires: Instant,
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
        let (revision, keys) = file::read(&path)?;
        Ok(Self::with(Some(path), revision, keys))
    }

    /// A store that lives only in memory.
    pub fn in_memory() -> Self {
        Self::with(None, 0, BTreeMap::new())
    }

    fn with(path: Option<PathBuf>, revision: u64, keys: BTreeMap<String, Versioned>) -> Self {
        let keys = keys
            .into_iter()
            .map(|(key, value)| {
                let created = value.version;
                let entry = Entry {
                    value,
                    created,
                    lease: None,
                };
                (key, entry)
            })
            .collect();
        let inner = Inner {
            path,
            revision,
            keys,
            leases: HashMap::new(),
            next_lease: 1,
            watchers: Vec::new(),
            changes: watch::Sender::new(revision),
            lease_timer: None,
        };
        Self {
            inner: Arc::new(Mutex::new(inner)),
            lease_timer_wake: Arc::new(Notify::new()),
        }
    }

    /// Locks the state, first expiring every lease that is due, so no
    /// operation ever sees a key whose lease has run out.
    ///
    /// A std mutex, never held across an `.await`: every critical section is
    /// a short in-memory update (plus the file write of a change, which must
    /// be ordered with the update anyway).
    fn state(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-updated
        // (updates are applied to a copy first), so poisoning is ignored.
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.expire_due(Instant::now());
        inner
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(timer) = &self.lease_timer {
            timer.abort();
        }
    }
}

impl Inner {
    fn holds(&self, compare: &Compare) -> bool {
        match compare {
            Compare::Absent(key) => !self.keys.contains_key(key),
            Compare::Version(key, version) => self
                .keys
                .get(key)
                .is_some_and(|e| e.value.version == *version),
        }
    }

    /// Applies ops to a copy, persists it if a key of the file changed, then
    /// swaps it in and tells watchers.
    fn apply(&mut self, ops: Vec<Op>) -> Result<u64> {
        let revision = self.revision + 1;
        let mut keys = self.keys.clone();
        let mut events = Vec::new();
        let mut durable_change = false;
        for op in ops {
            match op {
                Op::Put { key, value, lease } => {
                    if let Some(lease) = lease
                        && !self.leases.contains_key(&lease)
                    {
                        return Err(MetadataError::LeaseExpired { lease });
                    }
                    let value = Versioned {
                        value,
                        version: revision,
                    };
                    let created = keys.get(&key).map_or(revision, |old| old.created);
                    let entry = Entry {
                        value: value.clone(),
                        created,
                        lease,
                    };
                    let old = keys.insert(key.clone(), entry);
                    durable_change |= lease.is_none() || old.is_some_and(|o| o.lease.is_none());
                    events.push(WatchEvent::Put { key, value });
                }
                Op::Delete { key } => {
                    if let Some(old) = keys.remove(&key) {
                        durable_change |= old.lease.is_none();
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
                        if let Some(old) = keys.remove(&key) {
                            durable_change |= old.lease.is_none();
                        }
                        events.push(WatchEvent::Delete { key });
                    }
                }
            }
        }
        if events.is_empty() {
            return Ok(self.revision);
        }
        if durable_change && let Some(path) = &self.path {
            let durable = keys
                .iter()
                .filter(|(_, e)| e.lease.is_none())
                .map(|(k, e)| (k, &e.value));
            file::write(path, revision, durable)?;
        }
        self.revision = revision;
        self.keys = keys;
        self.watchers.retain(|(prefix, sender)| {
            events
                .iter()
                .filter(|event| event.key().starts_with(prefix.as_str()))
                .all(|event| sender.send(event.clone()).is_ok())
        });
        self.changes.send_replace(revision);
        Ok(revision)
    }

    fn list(&self, prefix: &str) -> Vec<(String, Versioned)> {
        self.keys
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, e)| (k.clone(), e.value.clone()))
            .collect()
    }

    /// Ends the lease and deletes its keys.
    fn end_lease(&mut self, lease: LeaseId) {
        if self.leases.remove(&lease).is_none() {
            return;
        }
        let doomed: Vec<Op> = self
            .keys
            .iter()
            .filter(|(_, e)| e.lease == Some(lease))
            .map(|(key, _)| Op::Delete { key: key.clone() })
            .collect();
        // Keys of a lease are not in the file, so this cannot fail on I/O.
        if let Err(error) = self.apply(doomed) {
            tracing::error!(%lease, %error, "cannot delete the keys of an ended lease");
        }
    }

    fn expire_due(&mut self, now: Instant) {
        let due: Vec<LeaseId> = self
            .leases
            .iter()
            .filter(|(_, state)| state.expires <= now)
            .map(|(id, _)| *id)
            .collect();
        for lease in due {
            tracing::debug!(%lease, "lease expired");
            self.end_lease(lease);
        }
    }

    fn next_expiry(&self) -> Option<Instant> {
        self.leases.values().map(|state| state.expires).min()
    }

    /// The candidate key of `election` that leads: the oldest one.
    fn leader(&self, election: &str) -> Option<(&String, &Entry)> {
        let prefix = election_prefix(election);
        self.keys
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .min_by_key(|(_, e)| e.created)
    }
}

/// The lease timer: sleeps until the next lease is due, expires it (through
/// [`EmbeddedStore::state`]), and repeats. Ends when the store is dropped
/// (which also aborts it).
async fn expire_leases(inner: Weak<Mutex<Inner>>, wake: Arc<Notify>) {
    loop {
        let next = {
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.expire_due(Instant::now());
            inner.next_expiry()
        };
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

#[async_trait]
impl MetadataStore for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>> {
        Ok(self.state().keys.get(key).map(|e| e.value.clone()))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>> {
        Ok(self.state().list(prefix))
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64> {
        let op = Op::Put {
            key: key.to_owned(),
            value,
            lease: None,
        };
        self.state().apply(vec![op])
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<bool> {
        let mut inner = self.state();
        if !compares.iter().all(|c| inner.holds(c)) {
            return Ok(false);
        }
        inner.apply(ops)?;
        Ok(true)
    }

    async fn watch(&self, prefix: &str) -> Result<Watch> {
        let mut inner = self.state();
        let (sender, events) = mpsc::unbounded_channel();
        inner.watchers.push((prefix.to_owned(), sender));
        Ok(Watch {
            initial: inner.list(prefix),
            events,
        })
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        let mut inner = self.state();
        let lease = LeaseId(inner.next_lease);
        inner.next_lease += 1;
        let expires = Instant::now() + ttl;
        inner.leases.insert(lease, LeaseState { ttl, expires });
        if inner.lease_timer.is_none() {
            let timer = tokio::spawn(expire_leases(
                Arc::downgrade(&self.inner),
                self.lease_timer_wake.clone(),
            ));
            inner.lease_timer = Some(timer.abort_handle());
        }
        drop(inner);
        self.lease_timer_wake.notify_one();
        Ok(lease)
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<()> {
        let mut inner = self.state();
        let state = inner
            .leases
            .get_mut(&lease)
            .ok_or(MetadataError::LeaseExpired { lease })?;
        state.expires = Instant::now() + state.ttl;
        Ok(())
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        self.state().end_lease(lease);
        Ok(())
    }

    async fn campaign(&self, election: &str, value: Vec<u8>, lease: LeaseId) -> Result<()> {
        let key = format!("{}{lease}", election_prefix(election));
        let mut changes = {
            let mut inner = self.state();
            let put = Op::Put {
                key: key.clone(),
                value,
                lease: Some(lease),
            };
            inner.apply(vec![put])?;
            inner.changes.subscribe()
        };
        loop {
            {
                let inner = self.state();
                if !inner.keys.contains_key(&key) {
                    return Err(MetadataError::LeaseExpired { lease });
                }
                if inner.leader(election).is_some_and(|(k, _)| *k == key) {
                    return Ok(());
                }
            }
            // The sender lives in the store, which `self` keeps alive.
            if changes.changed().await.is_err() {
                return Err(MetadataError::Unavailable {
                    reason: "the embedded store was closed".into(),
                });
            }
        }
    }

    async fn leader(&self, election: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .state()
            .leader(election)
            .map(|(_, e)| e.value.value.clone()))
    }
}

#[cfg(test)]
mod tests;

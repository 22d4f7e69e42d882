//! The metadata store: a small, strongly consistent key-value store with
//! versioned keys, compare-and-swap transactions, prefix watches, leases and
//! leader election.
//!
//! Every role keeps its shared state here, under the keys of DESIGN.md
//! (`/sluice/topics/<name>`, `/sluice/assignments/<topic>/<p>`, ...). A cluster
//! uses etcd through [`EtcdStore`]; standalone uses [`EmbeddedStore`], a
//! single-process store persisted to one file. Both implement
//! [`MetadataStore`], and one conformance test body runs against both.

mod embedded;
mod error;
mod etcd;
pub mod keys;
mod lease;
mod producer_ids;
pub mod records;

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

pub use embedded::EmbeddedStore;
pub use error::MetadataError;
pub use etcd::{EtcdOptions, EtcdStore};
pub use lease::{LeaseId, LeaseKeeper};
pub use producer_ids::ProducerIds;

/// Result of metadata operations.
pub type Result<T> = std::result::Result<T, MetadataError>;

/// A stored value and the store revision at which it was last modified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    pub value: Vec<u8>,
    /// Revision of the last modification: changes on every write of the key.
    pub version: u64,
}

/// A condition of a transaction.
#[derive(Clone, Debug)]
pub enum Compare {
    /// The key is absent.
    Absent(String),
    /// The key exists with exactly this version.
    Version(String, u64),
}

/// A write in a transaction.
///
/// etcd refuses a transaction that writes the same key twice (including a
/// `Put` under a `DeletePrefix` of the same transaction), so callers must not
/// rely on the embedded store accepting it.
#[derive(Clone, Debug)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        /// Binds the key to a lease: it is deleted when the lease expires or
        /// is revoked. A lease that is already gone fails the whole
        /// transaction with [`MetadataError::LeaseExpired`].
        lease: Option<LeaseId>,
    },
    Delete {
        key: String,
    },
    /// Deletes every key under the prefix.
    DeletePrefix {
        prefix: String,
    },
}

/// A change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    Put { key: String, value: Versioned },
    Delete { key: String },
}

impl WatchEvent {
    /// The key the event is about.
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put { key, .. } | WatchEvent::Delete { key } => key,
        }
    }
}

/// A prefix watch: the keys present when it started, then every later change.
#[derive(Debug)]
pub struct Watch {
    /// The keys under the prefix when the watch started, sorted.
    pub initial: Vec<(String, Versioned)>,
    /// Every change after `initial`, in order. Ends when the store goes away.
    ///
    /// When the store cannot replay the exact history (an etcd watch that
    /// fell behind a compaction or was cut off), the watch re-reads the prefix
    /// and sends the differences from what it had sent, so the state a
    /// consumer rebuilds from `initial` and the events is always the store's;
    /// only intermediate values may be skipped.
    pub events: mpsc::UnboundedReceiver<WatchEvent>,
}

/// The interface every role uses for shared state.
///
/// All operations are linearizable: a read after a successful write sees it.
/// A write returns once it is durable in the store (keys bound to a lease
/// excepted in the embedded store: they die with the process anyway).
///
/// Leases: a lease lives for its TTL after it was granted or last kept alive,
/// then expires; keys put with it are then deleted, and watchers see the
/// deletes. [`LeaseKeeper`] keeps one alive in the background.
#[async_trait]
pub trait MetadataStore: Send + Sync + std::fmt::Debug {
    async fn get(&self, key: &str) -> Result<Option<Versioned>>;
    /// Keys under `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>>;
    /// Unconditional put; returns the new version.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64>;
    /// Applies `ops` atomically if every compare holds. Returns whether it did.
    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<bool>;
    /// Watches every key under `prefix`.
    async fn watch(&self, prefix: &str) -> Result<Watch>;

    /// Grants a lease that expires `ttl` after its last keep-alive. etcd
    /// counts in whole seconds and may raise a short TTL to its minimum
    /// (about 2 s by default); the lease never lives shorter than asked.
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId>;
    /// Refreshes the lease once, restarting its TTL. Fails with
    /// [`MetadataError::LeaseExpired`] if the lease is gone.
    async fn keep_alive(&self, lease: LeaseId) -> Result<()>;
    /// Revokes the lease now, deleting its keys. Revoking a lease that is
    /// already gone succeeds.
    async fn revoke_lease(&self, lease: LeaseId) -> Result<()>;

    /// Campaigns in `election` (a key prefix such as
    /// `/sluice/controller/leader`) with `value`, and returns once this
    /// campaigner leads. The candidate is the key `<election>/<lease hex>`,
    /// bound to `lease`; candidates lead in the order they campaigned.
    /// Leadership ends when the lease is lost (expired or revoked): pair the
    /// lease with a [`LeaseKeeper`] and stop leading when
    /// [`LeaseKeeper::lost`] resolves. Fails with
    /// [`MetadataError::LeaseExpired`] if the lease is gone before this
    /// campaigner leads.
    async fn campaign(&self, election: &str, value: Vec<u8>, lease: LeaseId) -> Result<()>;
    /// The current leader's value, if anyone leads `election`.
    async fn leader(&self, election: &str) -> Result<Option<Vec<u8>>>;
}

/// The key prefix of the candidates of `election`.
fn election_prefix(election: &str) -> String {
    format!("{election}/")
}

//! The metadata store: a small, strongly consistent key-value store with
//! versioned keys, compare-and-swap transactions and prefix watches.
//!
//! Every role keeps its shared state here, under the keys of DESIGN.md
//! (`/sluice/topics/<name>`, `/sluice/assignments/<topic>/<p>`, ...). A cluster
//! uses etcd; standalone uses [`EmbeddedStore`], a single-process store
//! persisted to one file. Both implement [`MetadataStore`].

mod embedded;
mod error;
pub mod keys;
pub mod records;

use async_trait::async_trait;
use tokio::sync::mpsc;

pub use embedded::EmbeddedStore;
pub use error::MetadataError;

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
#[derive(Clone, Debug)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
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

/// A prefix watch: the keys present when it started, then every later change.
#[derive(Debug)]
pub struct Watch {
    /// The keys under the prefix when the watch started, sorted.
    pub initial: Vec<(String, Versioned)>,
    /// Every change after `initial`, in order. Ends when the store goes away.
    pub events: mpsc::UnboundedReceiver<WatchEvent>,
}

/// The interface every role uses for shared state.
///
/// All operations are linearizable: a read after a successful write sees it.
/// A write returns once it is durable in the store.
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
}

//! The partition log as it lies in storage, shared by the broker that writes
//! it and the proxies that read it.
//!
//! - [`paths`]: where segments, indexes and checkpoints live on a volume.
//! - [`checkpoint`]: the immutable, create-if-absent checkpoint sequence that
//!   says what is visible (and fences old writers).
//! - [`index`]: the sparse offset → position and timestamp → offset index.
//! - [`view`] and [`read`]: a snapshot of a partition and reading whole record
//!   batches from it by offset or by time.
//! - [`volumes`]: the configured storage volumes and the random choice of one
//!   for each new segment.

pub mod cache;
pub mod checkpoint;
mod error;
pub mod index;
pub mod paths;
pub mod read;
pub mod view;
pub mod volumes;

pub use cache::BlockCache;
pub use checkpoint::{Checkpoint, SegmentMeta};
pub use error::LogError;
pub use index::{IndexEntry, SparseIndex};
pub use view::{PartitionView, SegmentView};
pub use volumes::VolumeSet;

/// A partition of a topic, as addressed in storage paths and logs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub topic: String,
    pub partition: u32,
}

impl PartitionKey {
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

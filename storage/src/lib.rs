//! Storage volumes for Sluice: where partitions' segments and checkpoints live.
//!
//! Brokers keep no data. Every partition is written as segments into
//! *volumes*, opened by URL with [`open_volume`]:
//!
//! - a local directory ([`LocalVolume`]) appends each segment to one file in
//!   place and makes every append durable with `fdatasync`;
//! - an object store ([`ObjectStoreVolume`]: S3, GCS, Azure, `file://`,
//!   `memory://`) cannot append, so an open segment is a series of immutable
//!   chunk objects, one per append, merged into one object after the segment
//!   is sealed;
//! - HDFS ([`HdfsVolume`]) appends each segment to one file and makes every
//!   append durable and visible with `hsync`.
//!
//! Every volume counts the requests it sends ([`Volume::stats`]): on a public
//! cloud they are the bill.
//!
//! Either way a [`SegmentLayout`] says where a segment's bytes are, and a
//! checkpoint records it. Checkpoints themselves are created with
//! [`Volume::put_if_absent`], the one fencing mechanism on every backend: of
//! two writers creating the same checkpoint, exactly one succeeds.
//!
//! The contract — what is durable when a call returns — is on the traits in
//! [`Volume`] and [`SegmentWriter`].

#![warn(missing_docs)]

mod cloud;
mod error;
mod hdfs;
mod keys;
mod layout;
mod local;
mod object;
mod open;
mod rewrite;
mod stats;
mod volume;

pub use cloud::VolumeOptions;
pub use error::{Result, StorageError};
pub use hdfs::HdfsVolume;
pub use layout::SegmentLayout;
pub use local::LocalVolume;
pub use object::ObjectStoreVolume;
pub use open::{open_volume, open_volume_with};
pub use stats::{VolumeKind, VolumeStats};
pub use volume::{SegmentWriter, Volume};

/// Re-exported so callers can build an [`ObjectStoreVolume`] over a store of
/// their own (and match on the `source` of [`StorageError::ObjectStore`]).
pub use object_store;

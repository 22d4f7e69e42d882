//! The [`Volume`] and [`SegmentWriter`] traits: the whole contract between Sluice and its storage.
//!
//! Keys are relative paths with `/` separators (`orders/0/checkpoint/…`),
//! checked by the same rules on every backend: no `.` or `..` components, no
//! empty components, no leading `/`, and nothing that collides with a
//! backend's own staging files (`.tmp-*` components, `#`). A refused key is an
//! [`StorageError::Io`](crate::StorageError::Io) of kind `InvalidInput`.
//!
//! Durability, stated once: a call that *creates or appends* data
//! ([`SegmentWriter::append`], [`Volume::put_if_absent`],
//! [`Volume::merge_segment`], and [`Volume::create_segment`] for backends that
//! create a file) has made it durable when it returns `Ok` — it survives a
//! crash of the process or the machine. Deletes are cleanup and are not
//! promised durable: after a crash a deleted object may still be there, so
//! delete only what no checkpoint references.

use std::fmt::Debug;
use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;
use crate::layout::SegmentLayout;
use crate::stats::{VolumeKind, VolumeStats};

/// One storage location: a local directory or an object-store bucket/prefix.
///
/// Cheap to share (`Arc<dyn Volume>`); every method may be called concurrently.
#[async_trait]
pub trait Volume: Send + Sync + Debug {
    /// The URL this volume was opened from (used as its name in checkpoints and errors).
    fn url(&self) -> &str;

    /// What kind of storage this is.
    fn kind(&self) -> VolumeKind;

    /// The requests this volume has sent since it was opened.
    fn stats(&self) -> VolumeStats;

    /// Creates the new, empty segment `path` for appending.
    ///
    /// `Err(AlreadyExists)` if anything is there. On a local directory the
    /// empty file exists (durably) when this returns. On an object store
    /// nothing is created until the first append; `<path>` and its first chunk
    /// are checked to be absent, and a racing creator loses at its first
    /// append, which then fails with `AlreadyExists`.
    async fn create_segment(&self, path: &str) -> Result<Box<dyn SegmentWriter>>;

    /// Reads `range` of the segment `path` whose bytes are where `layout` says.
    ///
    /// The range must be ascending and within `layout.len()`, else
    /// `Err(OutOfBounds)`. For a chunked segment only the chunks the range
    /// overlaps are read, with ranged reads. Returns exactly `range.end -
    /// range.start` bytes or an error (`Corrupt` if the storage holds fewer
    /// bytes than the layout says).
    async fn read_segment(
        &self,
        path: &str,
        layout: &SegmentLayout,
        range: Range<u64>,
    ) -> Result<Bytes>;

    /// After a segment is sealed, rewrites a `Chunks` segment as one object
    /// `<path>` and returns `Object { len }`; the merged object is durable when
    /// this returns.
    ///
    /// The chunks are not deleted: the caller deletes them with
    /// [`delete_chunks`](Self::delete_chunks) once its checkpoint points at the
    /// merged object. Safe to repeat after a crash: an existing `<path>` of
    /// the right length is accepted. `File` and `Object` layouts are returned
    /// unchanged.
    async fn merge_segment(&self, path: &str, layout: &SegmentLayout) -> Result<SegmentLayout>;

    /// Deletes the chunk objects of a `Chunks` layout (a no-op for other
    /// layouts). Chunks already missing are fine.
    async fn delete_chunks(&self, path: &str, layout: &SegmentLayout) -> Result<()>;

    /// Creates the small object `path` with content `data`, only if nothing is
    /// there.
    ///
    /// Atomic: a reader sees either no object or all of `data`, never part of
    /// it. Durable when this returns `Ok`. `Err(AlreadyExists)` if the object
    /// exists, and then the existing content is untouched. **This is the
    /// fence**: of any number of concurrent callers on one path, from any
    /// number of processes, exactly one gets `Ok`.
    async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<()>;

    /// Reads a whole object or file. `Err(NotFound)` if absent.
    async fn get(&self, path: &str) -> Result<Bytes>;

    /// Every object or file key strictly under the "directory" `prefix`
    /// (written without a trailing slash, such as `orders/0/checkpoint`; the
    /// empty prefix means the whole volume), as full keys, sorted ascending.
    ///
    /// `orders/0` does not match `orders/01/…`. A missing prefix gives an empty
    /// list. Staging files of interrupted writes are never listed.
    async fn list(&self, prefix: &str) -> Result<Vec<String>>;

    /// Deletes one object or file; absent is fine.
    async fn delete(&self, path: &str) -> Result<()>;

    /// Deletes everything strictly under the non-empty "directory" `prefix`
    /// (such as a deleted topic's partition). A missing prefix is fine. Not
    /// atomic: a failure or crash can leave part of it behind, so repeat it.
    async fn delete_prefix(&self, prefix: &str) -> Result<()>;
}

/// Appends to one open segment. Owned by one task; not shared.
#[async_trait]
pub trait SegmentWriter: Send + Debug {
    /// Appends `data` (several buffers, written in order as if concatenated)
    /// after everything appended before, and makes it durable.
    ///
    /// When this returns `Ok`, the returned layout covers the new bytes and
    /// they survive a crash of the process or the machine. On `Err`, nothing is
    /// promised about the new bytes and the writer refuses further appends: the
    /// caller abandons the segment at its last checkpointed layout. Appending
    /// no bytes returns the current layout without touching storage.
    async fn append(&mut self, data: Vec<Bytes>) -> Result<SegmentLayout>;

    /// Current layout: what has been durably appended.
    fn layout(&self) -> SegmentLayout;

    /// Closes the segment and returns its final layout. Everything appended is
    /// already durable; sealing writes nothing more.
    async fn seal(self: Box<Self>) -> Result<SegmentLayout>;
}

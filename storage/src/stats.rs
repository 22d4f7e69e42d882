//! Request counters per volume: on a public cloud every PUT, GET, LIST and
//! DELETE is billed, so each volume counts what it sends and
//! [`Volume::stats`](crate::Volume::stats) reports it.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// What kind of storage a volume is; decides the write policy that suits it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeKind {
    /// A local directory: cheap small appends.
    Local,
    /// An object store (S3, GCS, Azure, `file://`, `memory://`): every append
    /// is a billed PUT of a new object, so fewer, larger appends are better.
    ObjectStore,
    /// HDFS: appends to one file, made visible with `hsync`.
    Hdfs,
}

impl VolumeKind {
    /// Its name in logs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::ObjectStore => "object_store",
            Self::Hdfs => "hdfs",
        }
    }
}

/// A snapshot of one volume's request counters since it was opened.
///
/// Object stores count HTTP requests (a bulk delete counts once per key);
/// HDFS counts data writes (`hsync`ed appends) as PUTs and NameNode
/// listings as LISTs; a local directory counts its file operations the same way.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VolumeStats {
    /// Writes that create or extend data: object PUTs, file appends.
    pub puts: u64,
    /// Reads of data: whole or ranged GETs, file reads.
    pub gets: u64,
    /// Existence and size checks (HEAD, file status).
    pub heads: u64,
    /// Listings.
    pub lists: u64,
    /// Deleted objects or files.
    pub deletes: u64,
    /// Bytes sent by PUTs and appends.
    pub bytes_written: u64,
    /// Bytes received by reads.
    pub bytes_read: u64,
}

/// The live counters behind [`VolumeStats`]; cheap to bump from any task.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    puts: AtomicU64,
    gets: AtomicU64,
    heads: AtomicU64,
    lists: AtomicU64,
    deletes: AtomicU64,
    bytes_written: AtomicU64,
    bytes_read: AtomicU64,
}

impl Counters {
    pub(crate) fn put(&self, bytes: u64) {
        self.puts.fetch_add(1, Ordering::Relaxed);
        self.bytes_written.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn get(&self, bytes: u64) {
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.bytes_read.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn head(&self) {
        self.heads.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn list(&self) {
        self.lists.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn delete(&self, count: u64) {
        self.deletes.fetch_add(count, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> VolumeStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        VolumeStats {
            puts: load(&self.puts),
            gets: load(&self.gets),
            heads: load(&self.heads),
            lists: load(&self.lists),
            deletes: load(&self.deletes),
            bytes_written: load(&self.bytes_written),
            bytes_read: load(&self.bytes_read),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up() {
        let counters = Counters::default();
        counters.put(10);
        counters.put(5);
        counters.get(7);
        counters.head();
        counters.list();
        counters.delete(3);
        assert_eq!(
            counters.snapshot(),
            VolumeStats {
                puts: 2,
                gets: 1,
                heads: 1,
                lists: 1,
                deletes: 3,
                bytes_written: 15,
                bytes_read: 7,
            }
        );
    }
}

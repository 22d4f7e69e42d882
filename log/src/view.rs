//! A snapshot of a partition's visible log, built from one checkpoint: what
//! readers search. Broker and proxy publish these through a
//! `tokio::sync::watch`, so a long-polling fetch wakes when one appears.

use std::sync::Arc;

use tokio::sync::OnceCell;

use crate::checkpoint::{Checkpoint, SegmentMeta};
use crate::index::SparseIndex;
use crate::{LogError, PartitionKey, VolumeSet, paths};

/// What readers may see of a partition.
#[derive(Debug, Clone)]
pub struct PartitionView {
    pub key: PartitionKey,
    pub topic_id: String,
    pub log_start_offset: i64,
    /// The offset after the last visible record.
    pub high_watermark: i64,
    /// Checkpoint sequence this view comes from (0: nothing written yet).
    pub sequence: u64,
    pub segments: Vec<SegmentView>,
    /// The checkpoint itself, to pass on (brokers stream it to proxies).
    pub checkpoint: Option<Arc<Checkpoint>>,
}

/// One segment as readers see it.
#[derive(Debug, Clone)]
pub struct SegmentView {
    pub meta: SegmentMeta,
    /// Path of the segment's data on its volume.
    pub path: String,
    /// Identity of the segment's bytes for the readers' block cache: the
    /// topic id and the path (a re-created topic reuses paths, not ids).
    pub cache_id: Arc<str>,
    index: Arc<OnceCell<Arc<SparseIndex>>>,
}

impl PartitionView {
    /// An empty log starting at `start`.
    pub fn empty(key: PartitionKey, topic_id: String, start: i64) -> Self {
        Self {
            key,
            topic_id,
            log_start_offset: start,
            high_watermark: start,
            sequence: 0,
            segments: Vec::new(),
            checkpoint: None,
        }
    }

    /// The view of `checkpoint`, reusing the already loaded indexes of sealed
    /// segments from `previous`.
    pub fn from_checkpoint(
        key: PartitionKey,
        checkpoint: &Checkpoint,
        previous: Option<&PartitionView>,
    ) -> Self {
        let segments = checkpoint
            .segments
            .iter()
            .map(|meta| {
                // Same topic only: a re-created topic reuses segment names.
                let reused = previous
                    .filter(|p| p.topic_id == checkpoint.topic_id)
                    .and_then(|p| {
                        p.segments
                            .iter()
                            .find(|s| s.meta.sealed && meta.sealed && s.meta.name == meta.name)
                    });
                match reused {
                    Some(old) => SegmentView {
                        meta: meta.clone(),
                        path: old.path.clone(),
                        cache_id: Arc::clone(&old.cache_id),
                        index: Arc::clone(&old.index),
                    },
                    None => SegmentView::new(&key, &checkpoint.topic_id, meta.clone()),
                }
            })
            .collect();
        Self {
            key,
            topic_id: checkpoint.topic_id.clone(),
            log_start_offset: checkpoint.log_start_offset,
            high_watermark: checkpoint.high_watermark,
            sequence: checkpoint.sequence,
            segments,
            checkpoint: Some(Arc::new(checkpoint.clone())),
        }
    }

    /// The segment holding `offset`, skipping empty ones.
    pub fn segment_for(&self, offset: i64) -> Option<&SegmentView> {
        let after = self
            .segments
            .partition_point(|s| s.meta.base_offset <= offset);
        let first = after.saturating_sub(1);
        self.segments[first..]
            .iter()
            .find(|s| s.meta.end_offset > offset)
    }

    /// Total visible bytes.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.meta.len()).sum()
    }
}

impl SegmentView {
    pub fn new(key: &PartitionKey, topic_id: &str, meta: SegmentMeta) -> Self {
        let index = if meta.sealed {
            OnceCell::new()
        } else {
            OnceCell::new_with(Some(Arc::new(SparseIndex::new(meta.index.clone()))))
        };
        let path = paths::segment(key, &meta.name);
        Self {
            cache_id: Arc::from(format!("{topic_id}:{path}")),
            path,
            meta,
            index: Arc::new(index),
        }
    }

    /// A sealed segment whose index the caller already has in memory.
    pub fn with_index(mut self, index: Arc<SparseIndex>) -> Self {
        self.index = Arc::new(OnceCell::new_with(Some(index)));
        self
    }

    /// The segment's index, read from its `.idx` object the first time.
    pub async fn index(
        &self,
        key: &PartitionKey,
        volumes: &VolumeSet,
    ) -> Result<Arc<SparseIndex>, LogError> {
        let loaded = self
            .index
            .get_or_try_init(|| async {
                let path = paths::segment_index(key, &self.meta.name);
                // Indexes live on the home volume (docs/design-notes.md).
                let bytes = volumes.home()?.get(&path).await?;
                SparseIndex::decode(&path, &bytes).map(Arc::new)
            })
            .await?;
        Ok(Arc::clone(loaded))
    }
}

//! Merging and deleting chunked layouts on volumes that never write chunks
//! themselves (a local directory, HDFS): a chunked layout handed to them
//! (copied in from an object store) is read whole and written as one file.

use std::future::Future;

use crate::error::{Result, StorageError};
use crate::keys::chunk_key;
use crate::layout::SegmentLayout;
use crate::volume::Volume;

/// [`Volume::merge_segment`] by rewriting: reads the chunks, creates `path`
/// if absent and returns `Object { len }`. If `path` exists (an earlier
/// merge got that far), `merged_len` tells its length, which must match.
pub(crate) async fn merge_by_rewrite<V: Volume + ?Sized>(
    volume: &V,
    path: &str,
    layout: &SegmentLayout,
    merged_len: impl Future<Output = Result<u64>>,
) -> Result<SegmentLayout> {
    let SegmentLayout::Chunks { .. } = layout else {
        return Ok(layout.clone());
    };
    let len = layout.len();
    let data = volume.read_segment(path, layout, 0..len).await?;
    match volume.put_if_absent(path, data).await {
        Ok(()) => Ok(SegmentLayout::Object { len }),
        Err(StorageError::AlreadyExists { .. }) => {
            let existing = merged_len.await?;
            if existing == len {
                Ok(SegmentLayout::Object { len })
            } else {
                Err(StorageError::Corrupt {
                    volume: volume.url().to_owned(),
                    path: path.to_owned(),
                    reason: format!("merged segment has {existing} bytes, its chunks {len}"),
                })
            }
        }
        Err(error) => Err(error),
    }
}

/// [`Volume::delete_chunks`] one chunk at a time; chunks already gone are fine.
pub(crate) async fn delete_chunks_one_by_one<V: Volume + ?Sized>(
    volume: &V,
    path: &str,
    layout: &SegmentLayout,
) -> Result<()> {
    let SegmentLayout::Chunks { lens } = layout else {
        return Ok(());
    };
    for index in 0..lens.len() {
        volume.delete(&chunk_key(path, index)).await?;
    }
    Ok(())
}

//! Step 2 of the state machine: read the partition's newest checkpoint and
//! re-verify the tail of the segment the previous writer left open.
//!
//! Only the checkpoint and the last index interval of that segment are read,
//! never the whole log. Bytes past the checkpointed length are never looked
//! at: the previous writer may still be alive (paused, partitioned) and
//! writing there, and nothing it did not checkpoint may become visible.

use sluice_log::checkpoint::{self, Checkpoint};
use sluice_log::{LogError, PartitionKey, VolumeSet, paths};
use sluice_record::BatchIter;

/// What recovery found.
#[derive(Debug)]
pub struct Recovered {
    pub checkpoint: Option<Checkpoint>,
    /// For an open last segment: (end offset, length) of its verified prefix.
    pub verified_end: Option<(i64, u64)>,
}

/// Loads the newest checkpoint. Data of an older incarnation of the topic
/// (deleted, then created again under the same name) is removed first.
pub async fn recover(
    key: &PartitionKey,
    topic_id: &str,
    volumes: &VolumeSet,
) -> Result<Recovered, LogError> {
    let home = volumes.home()?;
    let mut found = checkpoint::load_latest(home.as_ref(), key).await?;
    if let Some(stale) = found.as_ref().filter(|c| c.topic_id != topic_id) {
        tracing::warn!(partition = %key, old_id = %stale.topic_id, new_id = %topic_id, "removing data left by a deleted topic of the same name");
        for volume in volumes.all() {
            volume.delete_prefix(&paths::partition_dir(key)).await?;
        }
        found = None;
    }
    let verified_end = match found
        .as_ref()
        .and_then(|c| c.segments.last())
        .filter(|s| !s.sealed)
    {
        Some(open) => Some(verify_tail(key, open, volumes).await?),
        None => None,
    };
    Ok(Recovered {
        checkpoint: found,
        verified_end,
    })
}

/// Re-reads the last index interval of the open segment up to its
/// checkpointed length and checks every batch's CRC. Returns the end offset
/// and length of the longest intact prefix.
async fn verify_tail(
    key: &PartitionKey,
    open: &sluice_log::SegmentMeta,
    volumes: &VolumeSet,
) -> Result<(i64, u64), LogError> {
    let len = open.len();
    let start = open.index.last().map_or(0, |e| e.position);
    if start >= len {
        return Ok((open.end_offset, len));
    }
    let volume = volumes.get(&open.volume)?;
    let path = paths::segment(key, &open.name);
    let bytes = volume.read_segment(&path, &open.layout, start..len).await?;
    let mut good_len = start;
    let mut good_end = open.index.last().map_or(open.base_offset, |e| e.offset);
    for batch in BatchIter::new(bytes) {
        let Ok(batch) = batch else { break };
        if sluice_record::validate_batch(&batch.bytes).is_err() {
            break;
        }
        good_len = start + (batch.position + batch.bytes.len()) as u64;
        good_end = batch.header.next_offset();
    }
    if good_len != len || good_end != open.end_offset {
        tracing::error!(
            partition = %key,
            segment = %path,
            checkpointed_len = len,
            intact_len = good_len,
            checkpointed_end_offset = open.end_offset,
            intact_end_offset = good_end,
            "the checkpointed tail of the open segment does not verify; serving only its intact prefix"
        );
        return Ok((good_end, good_len));
    }
    Ok((open.end_offset, len))
}

//! Where a partition's objects live on a volume (DESIGN.md, "Storage layout"):
//!
//! ```text
//! <home volume>/<topic>/<partition>/checkpoint/<sequence:020>
//! <any volume>/<topic>/<partition>/<base offset:020>-<epoch>.log
//! <same volume>/<topic>/<partition>/<base offset:020>-<epoch>.idx
//! ```

use crate::PartitionKey;

/// The directory of one partition on every volume.
pub fn partition_dir(key: &PartitionKey) -> String {
    format!("{}/{}", key.topic, key.partition)
}

/// The directory holding the checkpoint sequence.
pub fn checkpoint_dir(key: &PartitionKey) -> String {
    format!("{}/checkpoint", partition_dir(key))
}

/// Checkpoint number `sequence`.
pub fn checkpoint(key: &PartitionKey, sequence: u64) -> String {
    format!("{}/{sequence:020}", checkpoint_dir(key))
}

/// Parses the sequence out of a checkpoint path listed under [`checkpoint_dir`].
pub fn parse_checkpoint(path: &str) -> Option<u64> {
    let name = path.rsplit('/').next()?;
    if name.len() != 20 {
        return None;
    }
    name.parse().ok()
}

/// The name stem of a segment starting at `base_offset`, written under
/// `epoch`; `attempt` > 0 when the writer starts over at the same offset.
pub fn segment_name(base_offset: i64, epoch: u64, attempt: u32) -> String {
    if attempt == 0 {
        format!("{base_offset:020}-{epoch}")
    } else {
        format!("{base_offset:020}-{epoch}-{attempt}")
    }
}

/// A segment's data.
pub fn segment(key: &PartitionKey, name: &str) -> String {
    format!("{}/{name}.log", partition_dir(key))
}

/// The index written when a segment is sealed.
pub fn segment_index(key: &PartitionKey, name: &str) -> String {
    format!("{}/{name}.idx", partition_dir(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_number() {
        let key = PartitionKey::new("t", 3);
        assert_eq!(checkpoint(&key, 7), "t/3/checkpoint/00000000000000000007");
        assert_eq!(parse_checkpoint(&checkpoint(&key, 123)), Some(123));
        assert_eq!(parse_checkpoint("t/3/checkpoint/.tmp-x"), None);
        assert!(segment(&key, &segment_name(9, 1, 0)) < segment(&key, &segment_name(10, 1, 0)));
        assert_eq!(
            segment_index(&key, &segment_name(5, 2, 0)),
            "t/3/00000000000000000005-2.idx"
        );
        assert_eq!(segment_name(5, 2, 1), "00000000000000000005-2-1");
    }
}

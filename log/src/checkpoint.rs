//! The checkpoint: what a partition's log holds, saved as a sequence of
//! immutable objects, each created only if absent.
//!
//! Checkpoint `n + 1` is written after `n`. Creating it is the fence: a new
//! owner of the partition creates `n + 1` under its own epoch, after which the
//! old owner's attempt to create `n + 1` fails with `AlreadyExists` and it
//! stops. Only data a checkpoint covers is ever read.
//!
//! The object is one header line with a CRC-32C of the JSON body that follows,
//! so a checkpoint stays readable by people and any damage is detected.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sluice_storage::{SegmentLayout, StorageError, Volume};

use crate::index::IndexEntry;
use crate::{LogError, PartitionKey, paths};

const HEADER_PREFIX: &str = "sluice-checkpoint v1 crc32c=";

/// How many checkpoints are kept behind the newest one.
pub const CHECKPOINTS_KEPT: u64 = 4;

/// A partition's visible log, as of one checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Position in the checkpoint sequence.
    pub sequence: u64,
    /// Epoch of the writer that saved it.
    pub epoch: u64,
    /// Identity of the topic incarnation; data of a deleted topic of the same
    /// name is never mistaken for this one's.
    pub topic_id: String,
    /// Offsets below this were deleted by retention.
    pub log_start_offset: i64,
    /// The offset after the last record covered (the high watermark).
    pub high_watermark: i64,
    /// Segments in offset order; only the last may be open.
    pub segments: Vec<SegmentMeta>,
    /// Sequences of the latest takeover checkpoints (the first one each
    /// owner saved). Pruning keeps them: a paused old owner's next attempt
    /// is exactly the takeover sequence of the owner after it, and must keep
    /// failing however far the log has moved on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub takeovers: Vec<u64>,
    /// Recently appended requests that carried an id (a proxy's retry
    /// token), all under `high_watermark`: a retry of one of them is
    /// answered with its offsets instead of being written again, also by a
    /// new owner after a move.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<RequestRecord>,
    /// Idempotent producers' state, by producer id, covering only batches
    /// under `high_watermark`: a retry of one of a producer's last batches
    /// is answered with its offsets instead of being written again, also by
    /// a new owner after a move; one lost in a crash is written anew.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub producers: Vec<ProducerRecord>,
    /// When it was written, ms since the Unix epoch.
    pub written_at_ms: i64,
}

/// An appended request, by the id its sender gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub id: String,
    pub base_offset: i64,
    pub last_offset: i64,
    /// When it was appended, ms since the Unix epoch.
    pub at_ms: i64,
}

/// How many of a producer's last batches a checkpoint remembers (Kafka's
/// window: a producer has at most five requests in flight per partition).
pub const PRODUCER_BATCHES_KEPT: usize = 5;

/// An idempotent producer's state in one partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerRecord {
    pub producer_id: i64,
    /// The producer's epoch; batches of an older one are fenced.
    pub epoch: i16,
    /// Its last appended batches under this epoch, oldest first (at most
    /// [`PRODUCER_BATCHES_KEPT`]).
    pub batches: Vec<ProducerBatch>,
    /// When it last appended, ms since the Unix epoch (idle producers expire).
    pub last_append_ms: i64,
}

/// One appended batch of an idempotent producer: its sequence numbers and
/// the offsets it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerBatch {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

/// One segment as a checkpoint records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// File name stem: `<base offset:020>-<epoch>`, with `-<n>` added when a
    /// writer had to start over at the same offset (after a failed write).
    pub name: String,
    pub base_offset: i64,
    /// The offset after the segment's last covered record.
    pub end_offset: i64,
    /// Epoch of the writer that created it (part of its name).
    pub epoch: u64,
    /// URL of the volume holding it.
    pub volume: String,
    /// Where its bytes are; its length is the covered length.
    pub layout: SegmentLayout,
    /// Newest record timestamp in the segment, -1 if empty.
    pub max_timestamp: i64,
    /// When the segment was opened, ms since the Unix epoch.
    pub created_at_ms: i64,
    /// A sealed segment gets no more data and has its index in a `.idx` object.
    pub sealed: bool,
    /// The sparse index of an open segment (sealed ones keep it in `.idx`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub index: Vec<IndexEntry>,
}

impl SegmentMeta {
    /// Covered bytes.
    pub fn len(&self) -> u64 {
        self.layout.len()
    }

    pub fn is_empty(&self) -> bool {
        self.base_offset == self.end_offset
    }
}

impl Checkpoint {
    /// Serializes to the stored form.
    pub fn encode(&self) -> Bytes {
        // Serializing plain data structures to JSON cannot fail.
        let body = serde_json::to_vec(self).unwrap_or_default();
        let crc = crc32c::crc32c(&body);
        let mut out = format!("{HEADER_PREFIX}{crc:08x}\n").into_bytes();
        out.extend_from_slice(&body);
        Bytes::from(out)
    }

    /// Parses the stored form, verifying its CRC.
    pub fn decode(path: &str, bytes: &[u8]) -> Result<Self, LogError> {
        Self::decode_body(path, bytes, |body| serde_json::from_slice(body))
    }

    /// [`decode`](Self::decode) for readers (proxies): without the writer's
    /// retry state (`requests`, `producers`), which can be most of a
    /// checkpoint and is skipped over instead of built.
    pub fn decode_for_reading(path: &str, bytes: &[u8]) -> Result<Self, LogError> {
        Self::decode_body(path, bytes, |body| {
            serde_json::from_slice::<ReadersPart>(body).map(|c| Checkpoint {
                sequence: c.sequence,
                epoch: c.epoch,
                topic_id: c.topic_id,
                log_start_offset: c.log_start_offset,
                high_watermark: c.high_watermark,
                segments: c.segments,
                takeovers: c.takeovers,
                requests: Vec::new(),
                producers: Vec::new(),
                written_at_ms: c.written_at_ms,
            })
        })
    }

    fn decode_body(
        path: &str,
        bytes: &[u8],
        parse: impl FnOnce(&[u8]) -> serde_json::Result<Self>,
    ) -> Result<Self, LogError> {
        let corrupt = |reason: String| LogError::CorruptCheckpoint {
            path: path.to_owned(),
            reason,
        };
        let newline = bytes
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| corrupt("no header line".into()))?;
        let header = std::str::from_utf8(&bytes[..newline])
            .map_err(|_| corrupt("header is not text".into()))?;
        let crc_hex = header
            .strip_prefix(HEADER_PREFIX)
            .ok_or_else(|| corrupt(format!("unknown header {header:?}")))?;
        let expected = u32::from_str_radix(crc_hex, 16)
            .map_err(|_| corrupt(format!("bad crc {crc_hex:?}")))?;
        let body = &bytes[newline + 1..];
        let actual = crc32c::crc32c(body);
        if actual != expected {
            return Err(corrupt(format!(
                "crc32c is {actual:08x}, header says {expected:08x}"
            )));
        }
        parse(body).map_err(|e| corrupt(e.to_string()))
    }
}

/// What readers need of a checkpoint (unknown fields are skipped).
#[derive(Deserialize)]
struct ReadersPart {
    sequence: u64,
    epoch: u64,
    topic_id: String,
    log_start_offset: i64,
    high_watermark: i64,
    segments: Vec<SegmentMeta>,
    #[serde(default)]
    takeovers: Vec<u64>,
    written_at_ms: i64,
}

/// Reads the newest checkpoint of a partition, if any.
pub async fn load_latest(
    home: &dyn Volume,
    key: &PartitionKey,
) -> Result<Option<Checkpoint>, LogError> {
    let listed = home.list(&paths::checkpoint_dir(key)).await?;
    let Some(sequence) = listed
        .iter()
        .filter_map(|p| paths::parse_checkpoint(p))
        .max()
    else {
        return Ok(None);
    };
    let path = paths::checkpoint(key, sequence);
    let bytes = home.get(&path).await?;
    let checkpoint = Checkpoint::decode(&path, &bytes)?;
    if checkpoint.sequence != sequence {
        return Err(LogError::CorruptCheckpoint {
            path,
            reason: format!("it says sequence {}", checkpoint.sequence),
        });
    }
    Ok(Some(checkpoint))
}

/// What became of an attempt to save a checkpoint.
#[derive(Debug, PartialEq, Eq)]
pub enum SaveOutcome {
    Saved,
    /// Another writer created this sequence first: this writer is fenced.
    Fenced {
        by_epoch: u64,
    },
}

/// Creates checkpoint `checkpoint.sequence` if absent.
///
/// When the object already exists, it is read back: if it is this very
/// checkpoint (an earlier attempt succeeded but its answer was lost) that is a
/// success; anything else means another writer got there first.
pub async fn save(
    home: &dyn Volume,
    key: &PartitionKey,
    checkpoint: &Checkpoint,
) -> Result<SaveOutcome, LogError> {
    let path = paths::checkpoint(key, checkpoint.sequence);
    let encoded = checkpoint.encode();
    match home.put_if_absent(&path, encoded.clone()).await {
        Ok(()) => Ok(SaveOutcome::Saved),
        Err(StorageError::AlreadyExists { .. }) => {
            let existing = home.get(&path).await?;
            if existing == encoded {
                return Ok(SaveOutcome::Saved);
            }
            let by_epoch = Checkpoint::decode(&path, &existing)
                .map(|c| c.epoch)
                .unwrap_or(0);
            Ok(SaveOutcome::Fenced { by_epoch })
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes checkpoints more than [`CHECKPOINTS_KEPT`] behind `newest`.
/// Checkpoints in `keep` (the takeover checkpoints) stay whatever their age.
pub async fn prune(
    home: &dyn Volume,
    key: &PartitionKey,
    newest: u64,
    keep: &[u64],
) -> Result<(), LogError> {
    let Some(cutoff) = newest.checked_sub(CHECKPOINTS_KEPT) else {
        return Ok(());
    };
    for path in home.list(&paths::checkpoint_dir(key)).await? {
        if paths::parse_checkpoint(&path).is_some_and(|seq| seq < cutoff && !keep.contains(&seq)) {
            home.delete(&path).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Checkpoint {
        Checkpoint {
            sequence: 3,
            epoch: 2,
            topic_id: "id-1".into(),
            log_start_offset: 0,
            high_watermark: 10,
            segments: vec![SegmentMeta {
                name: "00000000000000000000-2".into(),
                base_offset: 0,
                end_offset: 10,
                epoch: 2,
                volume: "memory://x".into(),
                layout: SegmentLayout::File { len: 700 },
                max_timestamp: 99,
                created_at_ms: 1,
                sealed: false,
                index: vec![IndexEntry {
                    offset: 0,
                    position: 0,
                    max_timestamp_before: -1,
                }],
            }],
            takeovers: vec![1],
            requests: Vec::new(),
            producers: Vec::new(),
            written_at_ms: 5,
        }
    }

    #[test]
    fn round_trips_and_detects_damage() {
        let checkpoint = sample();
        let bytes = checkpoint.encode();
        assert_eq!(Checkpoint::decode("p", &bytes).expect("decode"), checkpoint);
        let mut damaged = bytes.to_vec();
        let last = damaged.len() - 3;
        damaged[last] ^= 0x01;
        assert!(matches!(
            Checkpoint::decode("p", &damaged),
            Err(LogError::CorruptCheckpoint { .. })
        ));
        assert!(Checkpoint::decode("p", b"garbage").is_err());
        assert!(Checkpoint::decode("p", b"").is_err());
    }

    #[test]
    fn readers_get_everything_but_the_writers_retry_state() {
        let mut checkpoint = sample();
        checkpoint.requests = vec![RequestRecord {
            id: "r1".into(),
            base_offset: 0,
            last_offset: 0,
            at_ms: 5,
        }];
        checkpoint.producers = vec![ProducerRecord {
            producer_id: 1000,
            epoch: 0,
            batches: vec![ProducerBatch {
                first_seq: 0,
                last_seq: 0,
                base_offset: 0,
                last_offset: 0,
            }],
            last_append_ms: 5,
        }];
        let bytes = checkpoint.encode();
        let read = Checkpoint::decode_for_reading("p", &bytes).expect("decode");
        checkpoint.requests.clear();
        checkpoint.producers.clear();
        assert_eq!(read, checkpoint);
        let mut damaged = bytes.to_vec();
        let last = damaged.len() - 3;
        damaged[last] ^= 0x01;
        assert!(Checkpoint::decode_for_reading("p", &damaged).is_err());
    }

    #[test]
    fn producer_state_round_trips_and_older_checkpoints_decode_without_it() {
        let mut checkpoint = sample();
        checkpoint.producers = vec![ProducerRecord {
            producer_id: 1000,
            epoch: 2,
            batches: vec![
                ProducerBatch {
                    first_seq: 0,
                    last_seq: 4,
                    base_offset: 0,
                    last_offset: 4,
                },
                ProducerBatch {
                    first_seq: 5,
                    last_seq: 9,
                    base_offset: 5,
                    last_offset: 9,
                },
            ],
            last_append_ms: 42,
        }];
        let bytes = checkpoint.encode();
        assert_eq!(Checkpoint::decode("p", &bytes).expect("decode"), checkpoint);
        let body = std::str::from_utf8(&bytes).expect("text");
        assert!(body.contains(r#""producers":[{"producer_id":1000,"epoch":2,"#));

        // No producers: the field is left out, as versions before it wrote.
        assert!(
            !std::str::from_utf8(&sample().encode())
                .expect("text")
                .contains("producers")
        );
        // A checkpoint written by such a version.
        let body = br#"{"sequence":3,"epoch":2,"topic_id":"id-1","log_start_offset":0,"high_watermark":0,"segments":[],"written_at_ms":5}"#;
        let mut bytes = format!("{HEADER_PREFIX}{:08x}\n", crc32c::crc32c(body)).into_bytes();
        bytes.extend_from_slice(body);
        let decoded = Checkpoint::decode("p", &bytes).expect("decode");
        assert!(decoded.producers.is_empty());
        assert_eq!(decoded.high_watermark, 0);
    }
}

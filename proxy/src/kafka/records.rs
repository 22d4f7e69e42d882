//! Kafka's DeleteRecords and OffsetForLeaderEpoch: where a partition's log
//! starts and where each leader epoch's records end.
//!
//! DeleteRecords goes to the partition's owner, which raises the log start
//! offset and answers once a saved checkpoint records it (durable across a
//! crash or a move); records below it are never served again.
//!
//! Leader epochs: Sluice's are the partition epochs, bumped whenever a
//! partition changes owner (a move, a broker loss, a standalone restart),
//! and the broker writes its epoch into every batch's partitionLeaderEpoch.
//! Metadata reports leader epoch -1 (unknown), so clients never ask to
//! validate their positions; a client that asks anyway (with an epoch taken
//! from fetched batches) is answered from the epochs of the partition's
//! segments, with the high watermark as the end of the current epoch, as a
//! Kafka leader answers from its epoch cache. Sluice never truncates what
//! readers could see, so no position a consumer reached is ever reported
//! as past the end of its epoch.

use std::time::Duration;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
};
use sluice_log::{PartitionKey, PartitionView};

use super::handlers::error_code;
use super::{KafkaService, code};
use crate::fetch::check_partition;
use crate::grpc::list_offsets::current_view;

/// How long a DeleteRecords waits when the client sets no timeout.
const DEFAULT_DELETE_TIMEOUT: Duration = Duration::from_secs(30);

/// Raises the log start offset of every partition asked for, all at once.
pub(super) async fn delete_records(
    service: &KafkaService,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let timeout = u64::try_from(request.timeout_ms)
        .ok()
        .filter(|ms| *ms > 0)
        .map_or(DEFAULT_DELETE_TIMEOUT, Duration::from_millis);
    let topics = request.topics.into_iter().map(|topic| async move {
        let name = topic.name.0.to_string();
        let partitions = topic.partitions.iter().map(|asked| {
            let name = name.as_str();
            async move {
                let mut result = DeleteRecordsPartitionResult::default();
                result.partition_index = asked.partition_index;
                result.low_watermark = -1;
                let deleted = tokio::time::timeout(
                    timeout,
                    delete_one(service, name, asked.partition_index, asked.offset),
                )
                .await;
                match deleted {
                    Ok(Ok(log_start_offset)) => result.low_watermark = log_start_offset,
                    Ok(Err(code)) => result.error_code = code,
                    Err(_) => {
                        tracing::warn!(
                            topic = name,
                            partition = asked.partition_index,
                            "DeleteRecords not done within {timeout:?}"
                        );
                        result.error_code = code::REQUEST_TIMED_OUT;
                    }
                }
                result
            }
        });
        let mut result = DeleteRecordsTopicResult::default();
        result.partitions = futures::future::join_all(partitions).await;
        result.name = topic.name;
        result
    });
    let mut response = DeleteRecordsResponse::default();
    response.topics = futures::future::join_all(topics).await;
    response
}

async fn delete_one(
    service: &KafkaService,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<i64, i16> {
    let partition = u32::try_from(partition).map_err(|_| code::UNKNOWN_TOPIC_OR_PARTITION)?;
    service
        .admin
        .delete_records(topic, partition, offset)
        .await
        .map_err(error_code)
}

/// Each partition's end offset for the leader epoch asked about.
pub(super) fn offset_for_leader_epoch(
    service: &KafkaService,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.topic.0.to_string();
            let partitions = topic
                .partitions
                .iter()
                .map(|asked| {
                    let mut result = EpochEndOffset::default();
                    result.partition = asked.partition;
                    match view_of(service, &name, asked.partition) {
                        Ok(view) => {
                            (result.leader_epoch, result.end_offset) =
                                epoch_end_offset(&view, asked.leader_epoch);
                        }
                        Err(code) => result.error_code = code,
                    }
                    result
                })
                .collect();
            let mut result = OffsetForLeaderTopicResult::default();
            result.topic = topic.topic;
            result.partitions = partitions;
            result
        })
        .collect();
    let mut response = OffsetForLeaderEpochResponse::default();
    response.topics = topics;
    response
}

/// The partition's visible log, or the Kafka error code why not (a
/// negative partition names none).
fn view_of(
    service: &KafkaService,
    topic: &str,
    partition: i32,
) -> Result<std::sync::Arc<PartitionView>, i16> {
    let partition = u32::try_from(partition).map_err(|_| code::UNKNOWN_TOPIC_OR_PARTITION)?;
    let key = PartitionKey::new(topic, partition);
    check_partition(service.backend.as_ref(), &key)
        .and_then(|_| current_view(service.backend.as_ref(), &key))
        .map_err(error_code)
}

/// A Sluice epoch as a Kafka leader epoch.
fn kafka_epoch(epoch: u64) -> i32 {
    i32::try_from(epoch).unwrap_or(i32::MAX)
}

/// Kafka's answer to "where does epoch `requested` end" (its leader's
/// epoch cache lookup) over the partition's segments, each written under
/// one epoch: the largest epoch at or below `requested` and the offset the
/// next epoch starts at, or the high watermark for the current epoch. An
/// epoch older than every segment left is answered with itself and the
/// start of the oldest newer epoch; -1 (no epoch) with -1, -1.
pub(crate) fn epoch_end_offset(view: &PartitionView, requested: i32) -> (i32, i64) {
    if requested < 0 {
        return (-1, -1);
    }
    // (epoch, first offset), oldest first.
    let mut epochs: Vec<(i32, i64)> = Vec::new();
    for segment in &view.segments {
        let epoch = kafka_epoch(segment.meta.epoch);
        if epochs.last().is_none_or(|(last, _)| *last < epoch) {
            epochs.push((epoch, segment.meta.base_offset));
        }
    }
    // The current owner's epoch, even before it wrote a segment.
    let current = view
        .checkpoint
        .as_ref()
        .map(|c| kafka_epoch(c.epoch))
        .into_iter()
        .chain(epochs.last().map(|(epoch, _)| *epoch))
        .max();
    let Some(current) = current else {
        // Nothing written yet under any epoch.
        return (requested, view.high_watermark);
    };
    if requested >= current {
        return (current, view.high_watermark);
    }
    if epochs.last().is_none_or(|(last, _)| *last < current) {
        epochs.push((current, view.high_watermark));
    }
    let next = epochs.partition_point(|(epoch, _)| *epoch <= requested);
    // `current` > `requested`, so a next epoch exists.
    let next_start = epochs
        .get(next)
        .map_or(view.high_watermark, |(_, start)| *start);
    match next.checked_sub(1).and_then(|floor| epochs.get(floor)) {
        Some((floor, _)) => (*floor, next_start),
        None => (requested, next_start),
    }
}

#[cfg(test)]
mod tests {
    use sluice_log::checkpoint::{Checkpoint, SegmentMeta};
    use sluice_storage::SegmentLayout;

    use super::*;

    fn segment(base_offset: i64, end_offset: i64, epoch: u64) -> SegmentMeta {
        SegmentMeta {
            name: format!("{base_offset:020}-{epoch}"),
            base_offset,
            end_offset,
            epoch,
            volume: "memory://epochs".into(),
            layout: SegmentLayout::File {
                len: (end_offset - base_offset) as u64,
            },
            max_timestamp: -1,
            created_at_ms: 0,
            sealed: true,
            index: Vec::new(),
        }
    }

    /// A log whose checkpoint was saved under `epoch`, of `segments`.
    fn view(epoch: u64, segments: Vec<SegmentMeta>) -> PartitionView {
        let high_watermark = segments.last().map_or(0, |s| s.end_offset);
        let checkpoint = Checkpoint {
            sequence: 9,
            epoch,
            topic_id: "id".into(),
            log_start_offset: segments.first().map_or(0, |s| s.base_offset),
            high_watermark,
            segments,
            takeovers: Vec::new(),
            requests: Vec::new(),
            producers: Vec::new(),
            written_at_ms: 0,
        };
        PartitionView::from_checkpoint(PartitionKey::new("t", 0), &checkpoint, None)
    }

    #[test]
    fn the_current_epoch_ends_at_the_high_watermark() {
        let v = view(5, vec![segment(0, 10, 2), segment(10, 30, 5)]);
        assert_eq!(epoch_end_offset(&v, 5), (5, 30));
        // A newer epoch than this proxy knows: the current one's end.
        assert_eq!(epoch_end_offset(&v, 9), (5, 30));
    }

    #[test]
    fn an_older_epoch_ends_where_the_next_one_starts() {
        let v = view(
            7,
            vec![
                segment(0, 10, 2),
                segment(10, 20, 2),
                segment(20, 25, 4),
                segment(25, 40, 7),
            ],
        );
        assert_eq!(epoch_end_offset(&v, 2), (2, 20));
        // Epoch 3 wrote nothing: the largest epoch at or below it is 2.
        assert_eq!(epoch_end_offset(&v, 3), (2, 20));
        assert_eq!(epoch_end_offset(&v, 4), (4, 25));
        assert_eq!(epoch_end_offset(&v, 6), (4, 25));
        // Older than every segment left (retention): the oldest's start.
        assert_eq!(epoch_end_offset(&v, 1), (1, 0));
    }

    #[test]
    fn an_owner_that_wrote_nothing_yet_starts_its_epoch_at_the_high_watermark() {
        let v = view(8, vec![segment(0, 10, 3)]);
        assert_eq!(epoch_end_offset(&v, 3), (3, 10));
        assert_eq!(epoch_end_offset(&v, 8), (8, 10));
        let empty = view(8, Vec::new());
        assert_eq!(epoch_end_offset(&empty, 2), (2, 0));
    }

    #[test]
    fn no_epoch_is_undefined() {
        let v = view(5, vec![segment(0, 10, 5)]);
        assert_eq!(epoch_end_offset(&v, -1), (-1, -1));
    }
}

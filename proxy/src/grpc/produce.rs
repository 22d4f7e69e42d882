//! `Sluice.Produce`: choose the partition (explicit, by key as Kafka's
//! default partitioner does, or round-robin) and hand the batches, as bytes,
//! to the owning broker.

use std::num::NonZeroU32;
use std::sync::atomic::Ordering;

use sluice_broker::AckMode;
use sluice_log::PartitionKey;
use sluice_proto::v1;

use super::SluiceService;
use crate::error::ProxyError;
use crate::fetch::check_partition;

pub(super) async fn handle(
    service: &SluiceService,
    request: v1::ProduceRequest,
) -> Result<v1::ProduceResponse, ProxyError> {
    let backend = service.backend.as_ref();
    let partitions = backend
        .partition_count(&request.topic)
        .and_then(NonZeroU32::new)
        .ok_or_else(|| ProxyError::UnknownTopic {
            topic: request.topic.clone(),
        })?;
    let partition = match request.target {
        Some(v1::produce_request::Target::Partition(partition)) => partition,
        Some(v1::produce_request::Target::Key(key)) => {
            sluice_record::partition_for_key(&key, partitions)
        }
        None => service.round_robin.fetch_add(1, Ordering::Relaxed) % partitions.get(),
    };
    check_partition(
        backend,
        &PartitionKey::new(request.topic.as_str(), partition),
    )?;
    let ack = match v1::AckMode::try_from(request.acks) {
        Ok(v1::AckMode::Buffer) => AckMode::Buffer,
        Ok(v1::AckMode::Durable | v1::AckMode::Unspecified) => AckMode::Durable,
        Err(_) => {
            return Err(ProxyError::BadRequest {
                reason: format!(
                    "unknown ack mode {}; use ACK_MODE_BUFFER or ACK_MODE_DURABLE",
                    request.acks
                ),
            });
        }
    };
    let appended = backend
        .produce(&request.topic, partition, request.records, ack)
        .await?;
    Ok(v1::ProduceResponse {
        partition,
        base_offset: appended.base_offset,
        last_offset: appended.last_offset,
        duplicate: appended.duplicate,
    })
}

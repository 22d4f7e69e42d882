//! `Sluice.ListOffsets`: the earliest offset, the latest, or the first at or
//! after a timestamp (through the timestamp index).

use std::sync::Arc;

use sluice_log::{PartitionKey, PartitionView, read};
use sluice_proto::v1;

use crate::Backend;
use crate::error::ProxyError;
use crate::fetch::check_partition;

pub(super) async fn handle(
    backend: &dyn Backend,
    request: v1::ListOffsetsRequest,
) -> Result<v1::ListOffsetsResponse, ProxyError> {
    let key = PartitionKey::new(request.topic, request.partition);
    check_partition(backend, &key)?;
    let view = current_view(backend, &key)?;
    let response = match request.spec {
        Some(v1::list_offsets_request::Spec::Earliest(_)) => v1::ListOffsetsResponse {
            offset: Some(view.log_start_offset),
            timestamp: -1,
        },
        Some(v1::list_offsets_request::Spec::Latest(_)) => v1::ListOffsetsResponse {
            offset: Some(view.high_watermark),
            timestamp: -1,
        },
        Some(v1::list_offsets_request::Spec::Timestamp(timestamp)) => {
            match read::offset_for_timestamp(&view, backend.volumes(), timestamp).await? {
                Some((offset, timestamp)) => v1::ListOffsetsResponse {
                    offset: Some(offset),
                    timestamp,
                },
                None => v1::ListOffsetsResponse {
                    offset: None,
                    timestamp: -1,
                },
            }
        }
        None => {
            return Err(ProxyError::BadRequest {
                reason: "ListOffsets needs one of earliest, latest or timestamp".into(),
            });
        }
    };
    Ok(response)
}

/// The partition's current view, or a retriable error while it recovers.
pub(crate) fn current_view(
    backend: &dyn Backend,
    key: &PartitionKey,
) -> Result<Arc<PartitionView>, ProxyError> {
    backend
        .view(key)
        .and_then(|v| v.borrow().clone())
        .ok_or_else(|| ProxyError::NotAvailable {
            partition: key.to_string(),
            reason: "recovering or moving",
        })
}

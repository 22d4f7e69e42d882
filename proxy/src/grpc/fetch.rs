//! `Sluice.Fetch`: whole record batches from an offset, with long-poll.

use std::time::Duration;

use sluice_log::PartitionKey;
use sluice_proto::v1;

use tokio_util::sync::CancellationToken;

use crate::Backend;
use crate::error::ProxyError;
use crate::fetch::{FetchRequest, fetch};

/// Used when a request leaves `max_bytes` at 0.
const DEFAULT_MAX_BYTES: usize = 1 << 20;
/// The longest a fetch may wait.
const MAX_WAIT: Duration = Duration::from_secs(60);

pub(super) async fn handle(
    backend: &dyn Backend,
    shutdown: &CancellationToken,
    request: v1::FetchRequest,
) -> Result<v1::FetchResponse, ProxyError> {
    if request.offset < 0 {
        return Err(ProxyError::BadRequest {
            reason: format!(
                "offset {} is negative; use ListOffsets to find the earliest or latest offset",
                request.offset
            ),
        });
    }
    let max_bytes = match request.max_bytes {
        0 => DEFAULT_MAX_BYTES,
        n => (n as usize).min(super::MAX_MESSAGE_BYTES / 2),
    };
    let fetch_request = FetchRequest {
        key: PartitionKey::new(request.topic, request.partition),
        offset: request.offset,
        max_bytes,
        min_bytes: request.min_bytes as usize,
        max_wait: Duration::from_millis(u64::from(request.max_wait_ms)).min(MAX_WAIT),
    };
    let fetched = fetch(backend, &fetch_request, shutdown).await?;
    Ok(v1::FetchResponse {
        records: fetched.records,
        high_watermark: fetched.high_watermark,
        log_start_offset: fetched.log_start_offset,
    })
}

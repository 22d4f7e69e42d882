//! Fetch with long-poll: answer at once when `min_bytes` are visible,
//! otherwise wait on the partition's view (a `watch` that changes with every
//! checkpoint) until they are or `max_wait` expires. Never polls storage.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluice_log::{PartitionKey, PartitionView, read};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Backend;
use crate::error::ProxyError;

/// A fetch answer.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// A fetch request, after defaults.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub key: PartitionKey,
    pub offset: i64,
    pub max_bytes: usize,
    pub min_bytes: usize,
    pub max_wait: Duration,
}

/// Serves one fetch, waiting as the request allows.
/// A cancelled `shutdown` ends the wait at once (the server is stopping).
pub async fn fetch(
    backend: &dyn Backend,
    request: &FetchRequest,
    shutdown: &CancellationToken,
) -> Result<Fetched, ProxyError> {
    let key = &request.key;
    check_partition(backend, key)?;
    let mut deadline = Instant::now() + request.max_wait;
    if shutdown.is_cancelled() {
        deadline = Instant::now();
    }
    let mut views = backend.view(key);
    loop {
        let current: Option<Arc<PartitionView>> =
            views.as_mut().and_then(|v| v.borrow_and_update().clone());
        if let Some(view) = current {
            read::check_range(&view, request.offset)?;
            let records = if request.offset < view.high_watermark {
                read::read_batches(&view, backend.volumes(), request.offset, request.max_bytes)
                    .await?
            } else {
                Bytes::new()
            };
            if records.len() >= request.min_bytes.max(1) || Instant::now() >= deadline {
                return Ok(Fetched {
                    records,
                    high_watermark: view.high_watermark,
                    log_start_offset: view.log_start_offset,
                });
            }
        } else if Instant::now() >= deadline {
            return Err(ProxyError::NotAvailable {
                partition: key.to_string(),
                reason: "recovering or moving",
            });
        }
        // Wait for the next checkpoint or the deadline.
        let changed = async {
            match views.as_mut() {
                Some(receiver) => receiver.changed().await.is_ok(),
                None => false,
            }
        };
        tokio::select! {
            still_there = changed => {
                if !still_there {
                    // The partition task was replaced (restart, new epoch):
                    // follow the new one, or wait a moment for it to appear.
                    tokio::time::sleep_until(deadline.min(Instant::now() + Duration::from_millis(50))).await;
                    views = backend.view(key);
                    check_partition(backend, key)?;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.cancelled() => deadline = Instant::now(),
        }
    }
}

/// Unknown topics and partitions are errors, not waits.
pub fn check_partition(backend: &dyn Backend, key: &PartitionKey) -> Result<u32, ProxyError> {
    let partitions =
        backend
            .partition_count(&key.topic)
            .ok_or_else(|| ProxyError::UnknownTopic {
                topic: key.topic.clone(),
            })?;
    if key.partition >= partitions {
        return Err(ProxyError::PartitionOutOfRange {
            topic: key.topic.clone(),
            partition: key.partition,
            partitions,
        });
    }
    Ok(partitions)
}

//! The gRPC services of a proxy: `sluice.v1.Sluice` (one handler file per
//! call) and `sluice.v1.Admin`.

mod admin;
mod fetch;
mod groups;
pub(crate) mod list_offsets;
mod produce;

use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use sluice_metadata::ProducerIds;
use sluice_proto::v1;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

pub use admin::AdminService;
pub use groups::GroupsForwarder;

use crate::Backend;

/// Largest gRPC message a proxy accepts or sends (a produce of many batches,
/// a large fetch).
pub const MAX_MESSAGE_BYTES: usize = 128 << 20;

/// The data plane: produce, fetch, list offsets.
#[derive(Debug, Clone)]
pub struct SluiceService {
    backend: Arc<dyn Backend>,
    /// Spreads keyless produce requests over partitions.
    round_robin: Arc<AtomicU32>,
    /// Cancelled when the server stops: waiting fetches answer at once.
    shutdown: CancellationToken,
    /// Hands out idempotent producers' ids.
    producer_ids: Arc<ProducerIds>,
}

impl SluiceService {
    pub fn new(
        backend: Arc<dyn Backend>,
        producer_ids: Arc<ProducerIds>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            backend,
            round_robin: Arc::default(),
            shutdown,
            producer_ids,
        }
    }

    /// The tonic server for this service, with Sluice's message limits.
    pub fn into_server(self) -> v1::sluice_server::SluiceServer<Self> {
        v1::sluice_server::SluiceServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

#[tonic::async_trait]
impl v1::sluice_server::Sluice for SluiceService {
    async fn produce(
        &self,
        request: Request<v1::ProduceRequest>,
    ) -> Result<Response<v1::ProduceResponse>, Status> {
        produce::handle(self, request.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }

    async fn fetch(
        &self,
        request: Request<v1::FetchRequest>,
    ) -> Result<Response<v1::FetchResponse>, Status> {
        fetch::handle(self.backend.as_ref(), &self.shutdown, request.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }

    async fn list_offsets(
        &self,
        request: Request<v1::ListOffsetsRequest>,
    ) -> Result<Response<v1::ListOffsetsResponse>, Status> {
        list_offsets::handle(self.backend.as_ref(), request.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }

    async fn init_producer(
        &self,
        _request: Request<v1::InitProducerRequest>,
    ) -> Result<Response<v1::InitProducerResponse>, Status> {
        let (producer_id, epoch) = self.producer_ids.next().await.map_err(|e| {
            tracing::warn!(error = %e, "cannot allocate a producer id");
            sluice_proto::status(
                tonic::Code::Unavailable,
                "METADATA_UNAVAILABLE",
                format!("cannot allocate a producer id: {e}; retry"),
            )
        })?;
        Ok(Response::new(v1::InitProducerResponse {
            producer_id,
            producer_epoch: i32::from(epoch),
        }))
    }
}

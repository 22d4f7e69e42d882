//! The gRPC services of a proxy: `sluice.v1.Sluice` (one handler file per
//! call) and `sluice.v1.Admin`.

mod admin;
mod fetch;
mod list_offsets;
mod produce;

use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use sluice_proto::v1;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

pub use admin::AdminService;

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
}

impl SluiceService {
    pub fn new(backend: Arc<dyn Backend>, shutdown: CancellationToken) -> Self {
        Self {
            backend,
            round_robin: Arc::default(),
            shutdown,
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
}

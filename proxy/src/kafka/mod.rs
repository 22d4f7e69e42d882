//! The Kafka wire protocol on a proxy (DESIGN.md, "Interfaces"): existing
//! Kafka clients connect here. The proxy presents itself as every
//! partition's leader; produce goes to the owning broker with each batch's
//! bytes unchanged, fetch is served from storage with long-poll, as the
//! gRPC API does (the same [`Backend`] underneath).
//!
//! One task per connection reads a request, answers it, then reads the
//! next: Kafka clients expect answers in request order. A frame larger than
//! [`MAX_FRAME_BYTES`] is refused before it is read, and a frame that does
//! not decode closes the connection with a log line.
//!
//! APIs so far: ApiVersions, Metadata, Produce, Fetch, ListOffsets,
//! InitProducerId, CreateTopics, DeleteTopics, CreatePartitions (issue 6
//! adds the group APIs and the rest).

mod admin;
mod handlers;

use std::sync::Arc;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use sluice_metadata::ProducerIds;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::{AdminService, Backend};

/// Kafka's error codes, as the protocol numbers them.
mod code {
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_CONFIG: i16 = 40;
    pub const INVALID_REQUEST: i16 = 42;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const UNKNOWN_PRODUCER_ID: i16 = 59;
    pub const INVALID_RECORD: i16 = 87;
}

/// Largest request frame accepted (Kafka's `socket.request.max.bytes`).
pub const MAX_FRAME_BYTES: usize = 100 << 20;

/// What the Kafka frontend serves from, and how it presents itself.
#[derive(Debug, Clone)]
pub struct KafkaService {
    backend: Arc<dyn Backend>,
    producer_ids: Arc<ProducerIds>,
    admin: AdminService,
    /// The host and port clients are told to connect to (this proxy).
    advertised: (String, u16),
    /// This proxy's broker id in Kafka metadata.
    node_id: i32,
    /// Partitions of a topic created on first use (a Metadata request
    /// naming it); `None`: unknown topics stay unknown.
    auto_create_partitions: Option<u32>,
    shutdown: CancellationToken,
}

impl KafkaService {
    pub fn new(
        backend: Arc<dyn Backend>,
        producer_ids: Arc<ProducerIds>,
        admin: AdminService,
        advertised: (String, u16),
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            backend,
            producer_ids,
            admin,
            advertised,
            node_id: 0,
            auto_create_partitions: None,
            shutdown,
        }
    }

    /// Creates unknown topics a client asks about, with `partitions`
    /// partitions (Kafka's `auto.create.topics.enable`).
    pub fn with_auto_create(mut self, partitions: Option<u32>) -> Self {
        self.auto_create_partitions = partitions;
        self
    }

    /// Accepts connections until shutdown.
    pub async fn serve(self, listener: TcpListener) {
        let service = Arc::new(self);
        loop {
            let accepted = tokio::select! {
                _ = service.shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let service = Arc::clone(&service);
                    tokio::spawn(async move {
                        if let Err(e) = service.connection(stream).await {
                            tracing::info!(%peer, error = %e, "Kafka connection closed");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a Kafka connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Serves one connection, a request at a time.
    async fn connection(&self, mut stream: TcpStream) -> anyhow::Result<()> {
        loop {
            let size = tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(()),
                size = stream.read_i32() => match size {
                    Ok(size) => size,
                    // The client hung up between requests.
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e.into()),
                },
            };
            let size =
                usize::try_from(size).map_err(|_| anyhow::anyhow!("negative frame size {size}"))?;
            if size > MAX_FRAME_BYTES {
                anyhow::bail!("a frame of {size} bytes is over the limit of {MAX_FRAME_BYTES}");
            }
            let mut frame = BytesMut::zeroed(size);
            stream.read_exact(&mut frame).await?;
            let mut frame = frame.freeze();
            if frame.len() < 4 {
                anyhow::bail!("a frame of {size} bytes holds no request header");
            }
            let api_key = frame.clone().get_i16();
            let version = frame.clone().slice(2..).get_i16();
            let Ok(key) = ApiKey::try_from(api_key) else {
                anyhow::bail!("unknown API key {api_key}");
            };
            // An ApiVersions of a version this server does not know is read
            // with the oldest header (its fields are all that is needed to
            // answer UNSUPPORTED_VERSION), as Kafka does.
            let header_version =
                if key == ApiKey::ApiVersions && version > handlers::MAX_API_VERSIONS {
                    1
                } else {
                    key.request_header_version(version)
                };
            let header = RequestHeader::decode(&mut frame, header_version)
                .map_err(|e| anyhow::anyhow!("bad {key:?} request header: {e}"))?;
            let answer = handlers::handle(self, key, &header, frame).await?;
            if let Some(body) = answer {
                let mut out = BytesMut::new();
                out.put_i32(0);
                let response_header =
                    ResponseHeader::default().with_correlation_id(header.correlation_id);
                response_header
                    .encode(&mut out, key.response_header_version(version))
                    .map_err(|e| anyhow::anyhow!("cannot encode a response header: {e}"))?;
                out.extend_from_slice(&body);
                let len = i32::try_from(out.len() - 4)?;
                out[..4].copy_from_slice(&len.to_be_bytes());
                stream.write_all(&out).await?;
            }
        }
    }
}

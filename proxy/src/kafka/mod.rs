//! The Kafka wire protocol on a proxy (DESIGN.md, "Interfaces"): existing
//! Kafka clients connect here. The proxies present themselves as the
//! brokers and partition leaders ([`KafkaService::join_cluster`]); produce
//! goes to the owning broker with each batch's bytes unchanged, fetch is
//! served from storage with long-poll, as the gRPC API does (the same
//! [`Backend`] underneath).
//!
//! One task per connection reads a request, answers it, then reads the
//! next: Kafka clients expect answers in request order. A frame larger than
//! [`MAX_FRAME_BYTES`] is refused before it is read, and a frame that does
//! not decode closes the connection with a log line.
//!
//! The APIs and their versions are in `handlers::SUPPORTED` (and
//! docs/kafka.md): produce and fetch, offsets, idempotent producers, topic
//! admin ([`admin`], [`configs`], [`records`]) and consumer groups
//! ([`groups`], answered by the shared coordinator). Anything else gets an
//! answer with a Kafka error code ([`unsupported`]).

mod admin;
mod configs;
mod groups;
mod handlers;
mod records;
mod unsupported;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use sluice_metadata::{LeaseId, MetadataStore, Op, ProducerIds, WatchEvent};
use sluice_proto::v1::groups_server::Groups;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{AdminService, Backend};

/// Kafka's error codes, as the protocol numbers them.
mod code {
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
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
    pub const NON_EMPTY_GROUP: i16 = 68;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const FENCED_INSTANCE_ID: i16 = 82;
    pub const INVALID_RECORD: i16 = 87;
    pub const MISMATCHED_ENDPOINT_TYPE: i16 = 114;
}

/// Responses up to this size are written in one piece with their header.
const SMALL_BODY: usize = 64 << 10;

/// Largest request frame accepted (Kafka's `socket.request.max.bytes`).
pub const MAX_FRAME_BYTES: usize = 100 << 20;

/// Where cluster proxies register their Kafka listeners: the key ends with
/// the advertised `host:port`, the value is the same.
pub const LISTENERS_PREFIX: &str = "/sluice/kafka-listeners/";

/// A proxy as a Kafka broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct KafkaBroker {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
}

impl KafkaBroker {
    fn parse(addr: &str) -> Option<Self> {
        let (host, port) = addr.rsplit_once(':')?;
        Some(Self {
            node_id: node_id(addr),
            host: host.to_owned(),
            port: port.parse().ok()?,
        })
    }
}

/// A cluster proxy's Kafka broker id, from its advertised address: the
/// same on every proxy without any coordination, stable across restarts.
fn node_id(addr: &str) -> i32 {
    (crc32c::crc32c(addr.as_bytes()) & 0x7fff_ffff) as i32
}

/// What the Kafka frontend serves from, and how it presents itself.
#[derive(Clone)]
pub struct KafkaService {
    backend: Arc<dyn Backend>,
    producer_ids: Arc<ProducerIds>,
    admin: AdminService,
    /// Consumer groups: the coordinator (in process, or forwarded to).
    groups: Arc<dyn Groups>,
    /// The host and port clients are told to connect to (this proxy).
    advertised: (String, u16),
    /// This proxy's broker id in Kafka metadata.
    node_id: i32,
    /// Every proxy's Kafka listener (cluster mode, see
    /// [`KafkaService::join_cluster`]); empty: this one alone.
    listeners: Arc<RwLock<BTreeMap<String, KafkaBroker>>>,
    /// Partitions of a topic created on first use (a Metadata request
    /// naming it); `None`: unknown topics stay unknown.
    auto_create_partitions: Option<u32>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for KafkaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaService")
            .field("advertised", &self.advertised)
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// The services a Kafka listener answers from: the same the gRPC API uses.
#[derive(Clone)]
pub struct Services {
    pub backend: Arc<dyn Backend>,
    pub producer_ids: Arc<ProducerIds>,
    pub admin: AdminService,
    /// Consumer groups: the coordinator (in process, or forwarded to).
    pub groups: Arc<dyn Groups>,
}

impl KafkaService {
    pub fn new(services: Services, advertised: (String, u16), shutdown: CancellationToken) -> Self {
        let Services {
            backend,
            producer_ids,
            admin,
            groups,
        } = services;
        Self {
            backend,
            producer_ids,
            admin,
            groups,
            advertised,
            node_id: 0,
            listeners: Arc::default(),
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

    /// In a cluster: registers this listener under the proxy's lease (so
    /// it goes with the process) and follows the other proxies', so that
    /// Metadata lists every proxy as a broker and spreads partition leaders
    /// over them, as BMQ does. Any proxy serves any partition; the spread
    /// only shares the clients' connections out.
    pub async fn join_cluster(
        mut self,
        metadata: Arc<dyn MetadataStore>,
        lease: LeaseId,
    ) -> anyhow::Result<Self> {
        let (host, port) = &self.advertised;
        let addr = format!("{host}:{port}");
        self.node_id = node_id(&addr);
        let register = Op::Put {
            key: format!("{LISTENERS_PREFIX}{addr}"),
            value: addr.clone().into_bytes(),
            lease: Some(lease),
        };
        metadata.txn(vec![], vec![register]).await?;
        let mut watch = metadata.watch(LISTENERS_PREFIX).await?;
        let listeners = Arc::clone(&self.listeners);
        let update = move |event: WatchEvent| {
            let mut map = listeners.write().unwrap_or_else(|e| e.into_inner());
            match event {
                WatchEvent::Put { key, value } => {
                    match KafkaBroker::parse(&String::from_utf8_lossy(&value.value)) {
                        Some(broker) => {
                            map.insert(key, broker);
                        }
                        None => tracing::warn!(%key, "ignoring a bad Kafka listener record"),
                    }
                }
                WatchEvent::Delete { key } => {
                    map.remove(&key);
                }
            }
        };
        for (key, value) in std::mem::take(&mut watch.initial) {
            update(WatchEvent::Put { key, value });
        }
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    event = watch.events.recv() => match event {
                        Some(event) => update(event),
                        None => return,
                    },
                }
            }
        });
        Ok(self)
    }

    /// The Kafka brokers clients see: every proxy's listener (this one
    /// always among them), by node id.
    pub(super) fn brokers(&self) -> Vec<KafkaBroker> {
        let me = KafkaBroker {
            node_id: self.node_id,
            host: self.advertised.0.clone(),
            port: self.advertised.1,
        };
        let mut brokers: Vec<KafkaBroker> = self
            .listeners
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|b| b.node_id != me.node_id)
            .cloned()
            .collect();
        brokers.push(me);
        brokers.sort_by_key(|b| b.node_id);
        brokers
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
                        if let Err(e) = service.connection(stream, peer).await {
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

    /// Serves one connection. Answers go out in request order. Requests
    /// are handled one after another, except idempotent produce requests:
    /// up to [`PIPELINE`] of those are in flight at once (as a client's
    /// `max.in.flight` allows), since the broker orders their batches by
    /// sequence number whatever order they arrive in. Everything else waits
    /// for the answers before it, so plain producers keep Kafka's in-order
    /// guarantee.
    async fn connection(&self, stream: TcpStream, peer: SocketAddr) -> anyhow::Result<()> {
        let (reader, mut writer) = stream.into_split();
        let (frames_tx, mut frames) = mpsc::channel(1);
        let reading = tokio::spawn(read_frames(reader, frames_tx, self.shutdown.clone()));
        let _stop_reading = AbortOnDrop(reading);
        let mut pending = FuturesOrdered::new();
        loop {
            tokio::select! {
                Some(answer) = pending.next(), if !pending.is_empty() => {
                    write_answer(&mut writer, answer?).await?;
                }
                frame = frames.recv(), if pending.len() < PIPELINE => {
                    // The client hung up, or the server is stopping: the
                    // requests read so far are still answered.
                    let Some(frame) = frame else { break };
                    let request = match frame.and_then(parse_request) {
                        Ok(request) => request,
                        Err(e) => {
                            while let Some(answer) = pending.next().await {
                                write_answer(&mut writer, answer?).await?;
                            }
                            return Err(e);
                        }
                    };
                    match handlers::pipelined_produce(&request) {
                        Some(produce) => {
                            let version = request.header.request_api_version;
                            pending.push_back(Box::pin(async move {
                                let body = handlers::answer_produce(self, produce, version).await?;
                                Ok(Answer { request, body })
                            }) as AnswerFuture<'_>);
                        }
                        None => {
                            while let Some(answer) = pending.next().await {
                                write_answer(&mut writer, answer?).await?;
                            }
                            let answer = self.answer(request, peer).await?;
                            write_answer(&mut writer, answer).await?;
                        }
                    }
                }
            }
        }
        while let Some(answer) = pending.next().await {
            write_answer(&mut writer, answer?).await?;
        }
        Ok(())
    }

    async fn answer(&self, request: Request, peer: SocketAddr) -> anyhow::Result<Answer> {
        let body = handlers::handle(
            self,
            request.key,
            &request.header,
            request.body.clone(),
            peer,
        )
        .await?;
        Ok(Answer { request, body })
    }
}

/// Idempotent produce requests in flight on one connection (librdkafka
/// and the Java client send at most 5 with idempotence on).
const PIPELINE: usize = 5;

/// A request read off the wire: its header decoded, its body not yet.
pub(super) struct Request {
    pub key: ApiKey,
    pub header: RequestHeader,
    pub body: Bytes,
}

/// A request's answer body (`None`: a request Kafka does not answer).
pub(super) struct Answer {
    pub request: Request,
    pub body: Option<Bytes>,
}

type AnswerFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<Answer>> + Send + 'a>>;

/// Stops a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads frames into `frames` until the client hangs up (the channel
/// closes), a frame is bad (an error, then it closes) or shutdown. A frame
/// over [`MAX_FRAME_BYTES`] is refused before it is read.
async fn read_frames(
    mut reader: tokio::net::tcp::OwnedReadHalf,
    frames: mpsc::Sender<anyhow::Result<Bytes>>,
    shutdown: CancellationToken,
) {
    loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => return,
            frame = read_frame(&mut reader) => frame,
        };
        let failed = frame.is_err();
        match frame {
            // The client hung up between requests.
            Ok(None) => return,
            Ok(Some(frame)) => {
                if frames.send(Ok(frame)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = frames.send(Err(e)).await;
            }
        }
        if failed {
            return;
        }
    }
}

async fn read_frame(reader: &mut tokio::net::tcp::OwnedReadHalf) -> anyhow::Result<Option<Bytes>> {
    let size = match reader.read_i32().await {
        Ok(size) => size,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let size = usize::try_from(size).map_err(|_| anyhow::anyhow!("negative frame size {size}"))?;
    if size > MAX_FRAME_BYTES {
        anyhow::bail!("a frame of {size} bytes is over the limit of {MAX_FRAME_BYTES}");
    }
    let mut frame = BytesMut::zeroed(size);
    reader.read_exact(&mut frame).await?;
    Ok(Some(frame.freeze()))
}

/// A frame's API key and header.
fn parse_request(mut frame: Bytes) -> anyhow::Result<Request> {
    if frame.len() < 4 {
        anyhow::bail!("a frame of {} bytes holds no request header", frame.len());
    }
    let api_key = frame.clone().get_i16();
    let version = frame.clone().slice(2..).get_i16();
    let Ok(key) = ApiKey::try_from(api_key) else {
        anyhow::bail!("unknown API key {api_key}");
    };
    // An ApiVersions of a version this server does not know is read with
    // the oldest header (its fields are all that is needed to answer
    // UNSUPPORTED_VERSION), as Kafka does.
    let header_version = if key == ApiKey::ApiVersions && version > handlers::MAX_API_VERSIONS {
        1
    } else {
        key.request_header_version(version)
    };
    let header = RequestHeader::decode(&mut frame, header_version)
        .map_err(|e| anyhow::anyhow!("bad {key:?} request header: {e}"))?;
    Ok(Request {
        key,
        header,
        body: frame,
    })
}

/// Writes an answer with its response header.
async fn write_answer(
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
    answer: Answer,
) -> anyhow::Result<()> {
    let Some(body) = answer.body else {
        return Ok(());
    };
    let Request { key, header, .. } = answer.request;
    let mut out = BytesMut::new();
    out.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(header.correlation_id)
        .encode(
            &mut out,
            key.response_header_version(header.request_api_version),
        )
        .map_err(|e| anyhow::anyhow!("cannot encode a response header: {e}"))?;
    let len = i32::try_from(out.len() - 4 + body.len())?;
    out[..4].copy_from_slice(&len.to_be_bytes());
    // A large body (fetched records) goes out as it is, not copied behind
    // the header.
    if body.len() <= SMALL_BODY {
        out.extend_from_slice(&body);
        writer.write_all(&out).await?;
    } else {
        writer.write_all(&out).await?;
        writer.write_all(&body).await?;
    }
    Ok(())
}

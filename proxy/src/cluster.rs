//! The proxy's view of a cluster: topics, partition owners and brokers from
//! a metadata-store watch, and each partition's visible log from its owner's
//! checkpoint stream (`Broker.WatchPartitions`). Produce and DeleteRecords
//! go to the owner and are retried, with backoff, while a partition moves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sluice_broker::partition::ViewReceiver;
use sluice_broker::{AckMode, Appended, BrokerError, node_volume_stats};
use sluice_log::checkpoint::Checkpoint;
use sluice_log::{PartitionKey, PartitionView, VolumeSet};
use sluice_metadata::records::{self, Assignment, BrokerRecord, TopicRecord};
use sluice_metadata::{MetadataStore, WatchEvent, keys};
use sluice_proto::v1;
use sluice_proto::v1::broker_client::BrokerClient;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::Backend;

/// How long a produce (or DeleteRecords) keeps retrying while its
/// partition has no reachable owner.
const PRODUCE_RETRY_FOR: Duration = Duration::from_secs(15);

/// How long a DeleteRecords waits for this proxy's view to show the new
/// log start (the owner's checkpoint stream is usually milliseconds behind).
const VIEW_CATCH_UP: Duration = Duration::from_secs(5);

/// Publishes a partition's newest visible log to waiting fetches.
type ViewSender = watch::Sender<Option<Arc<PartitionView>>>;

/// What the metadata watch tells the proxy.
#[derive(Debug, Default)]
struct State {
    topics: HashMap<String, TopicRecord>,
    owners: HashMap<PartitionKey, Assignment>,
    brokers: HashMap<u64, BrokerRecord>,
    /// Per partition: the newest view and the epoch it came from.
    views: HashMap<PartitionKey, (u64, ViewSender)>,
    /// Checkpoint streams being followed, by broker id and address.
    streams: HashMap<u64, (String, CancellationToken)>,
    /// One HTTP/2 channel per broker address, shared by all requests.
    channels: HashMap<String, Channel>,
}

/// A [`Backend`] over a cluster of broker processes.
#[derive(Debug)]
pub struct ClusterBackend {
    volumes: VolumeSet,
    state: Mutex<State>,
    /// Bumped on every metadata change: produce retries wait on it.
    changed: watch::Sender<u64>,
    cancel: CancellationToken,
}

impl ClusterBackend {
    /// Follows the metadata store until `cancel`.
    pub async fn start(
        metadata: Arc<dyn MetadataStore>,
        volumes: VolumeSet,
        cancel: CancellationToken,
    ) -> Result<Arc<Self>, sluice_metadata::MetadataError> {
        let backend = Arc::new(Self {
            volumes,
            state: Mutex::default(),
            changed: watch::Sender::new(0),
            cancel,
        });
        let watch = metadata.watch(&format!("{}/", keys::ROOT)).await?;
        for (key, value) in watch.initial {
            backend.apply(WatchEvent::Put { key, value });
        }
        let follower = Arc::clone(&backend);
        let mut events = watch.events;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = follower.cancel.cancelled() => break,
                    event = events.recv() => match event {
                        Some(event) => follower.apply(event),
                        None => {
                            tracing::error!("the metadata watch ended; this proxy no longer follows the cluster");
                            break;
                        }
                    },
                }
            }
        });
        Ok(backend)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Never held across an await.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn apply(self: &Arc<Self>, event: WatchEvent) {
        let mut state = self.lock();
        match event {
            WatchEvent::Put { key, value } => {
                if let Some(topic) = keys::parse_topic(&key) {
                    if let Ok(record) = records::decode(&key, "a topic", &value.value) {
                        state.topics.insert(topic.to_owned(), record);
                    }
                } else if let Some((topic, partition)) = keys::parse_assignment(&key) {
                    if let Ok(assignment) = records::decode(&key, "an assignment", &value.value) {
                        state
                            .owners
                            .insert(PartitionKey::new(topic, partition), assignment);
                    }
                } else if let Some(id) = keys::parse_broker(&key)
                    && let Ok(record) =
                        records::decode::<BrokerRecord>(&key, "a broker", &value.value)
                {
                    let same = state
                        .streams
                        .get(&id)
                        .is_some_and(|(addr, _)| *addr == record.addr);
                    if !same {
                        let old = state.streams.remove(&id);
                        if let Some((_, old)) = old {
                            old.cancel();
                        }
                        let stop = self.cancel.child_token();
                        state
                            .streams
                            .insert(id, (record.addr.clone(), stop.clone()));
                        tokio::spawn(Arc::clone(self).follow_broker(id, record.addr.clone(), stop));
                    }
                    state.brokers.insert(id, record);
                }
            }
            WatchEvent::Delete { key } => {
                if let Some(topic) = keys::parse_topic(&key) {
                    state.topics.remove(topic);
                    state.views.retain(|k, _| k.topic != topic);
                } else if let Some((topic, partition)) = keys::parse_assignment(&key) {
                    state.owners.remove(&PartitionKey::new(topic, partition));
                } else if let Some(id) = keys::parse_broker(&key) {
                    state.brokers.remove(&id);
                    if let Some((_, stop)) = state.streams.remove(&id) {
                        stop.cancel();
                    }
                }
            }
        }
        drop(state);
        self.changed.send_modify(|n| *n += 1);
    }

    /// Follows one broker's checkpoint stream, reconnecting while it is registered.
    async fn follow_broker(self: Arc<Self>, id: u64, addr: String, stop: CancellationToken) {
        let mut delay = Duration::from_millis(50);
        while !stop.is_cancelled() {
            match self.stream_once(&addr, &stop).await {
                Ok(()) => delay = Duration::from_millis(50),
                Err(e) => {
                    tracing::debug!(broker = id, %addr, error = %e, "checkpoint stream broke; reconnecting")
                }
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    async fn stream_once(&self, addr: &str, stop: &CancellationToken) -> anyhow_like::Result<()> {
        let mut client = BrokerClient::new(self.channel(addr)?);
        let mut stream = client
            .watch_partitions(v1::WatchPartitionsRequest {})
            .await?
            .into_inner();
        loop {
            let update = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                update = stream.message() => update?,
            };
            let Some(update) = update else { return Ok(()) };
            if update.stopped {
                continue;
            }
            let key = PartitionKey::new(update.topic.as_str(), update.partition);
            let path = format!("{key} (from broker {addr})");
            let checkpoint = match Checkpoint::decode_for_reading(&path, &update.checkpoint) {
                Ok(checkpoint) => checkpoint,
                Err(e) => {
                    tracing::error!(partition = %key, error = %e, "ignoring a bad checkpoint update");
                    continue;
                }
            };
            self.publish(key, update.epoch, &checkpoint);
        }
    }

    /// Replaces a partition's view, unless it comes from an older owner.
    fn publish(&self, key: PartitionKey, epoch: u64, checkpoint: &Checkpoint) {
        let mut state = self.lock();
        let (current_epoch, sender) = state
            .views
            .entry(key.clone())
            .or_insert_with(|| (0, watch::Sender::new(None)));
        if epoch < *current_epoch {
            return;
        }
        *current_epoch = epoch;
        let previous = sender.borrow().clone();
        let view = PartitionView::from_checkpoint(key, checkpoint, previous.as_deref());
        sender.send_replace(Some(Arc::new(view)));
    }

    /// The owner's assignment epoch and address, when it is live.
    fn owner(&self, key: &PartitionKey) -> Option<(u64, String)> {
        let state = self.lock();
        let owner = state.owners.get(key)?;
        let broker = state.brokers.get(&owner.broker)?;
        Some((owner.epoch, broker.addr.clone()))
    }

    /// Resolves once the partition is assigned under another epoch.
    async fn moved_from(&self, key: &PartitionKey, epoch: u64) {
        let mut changes = self.changed.subscribe();
        loop {
            let current = self.lock().owners.get(key).map(|a| a.epoch);
            if current != Some(epoch) {
                return;
            }
            if changes.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Calls the partition's owner, retrying (with backoff, and at once
    /// when the partition moves) while it has no reachable owner or the
    /// owner is moving, for up to [`PRODUCE_RETRY_FOR`]. A request to an
    /// owner that loses the partition meanwhile (paused, cut off) is
    /// abandoned for the new owner: the old one is fenced and can make none
    /// of it visible.
    async fn call_owner<T, F, Fut>(&self, key: &PartitionKey, call: F) -> Result<T, BrokerError>
    where
        F: Fn(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<T, RemoteError>>,
    {
        let deadline = Instant::now() + PRODUCE_RETRY_FOR;
        let mut changes = self.changed.subscribe();
        let mut delay = Duration::from_millis(20);
        loop {
            let owner = self.owner(key);
            let channel = owner.as_ref().map(|(_, addr)| self.channel(addr));
            let result = match (owner, channel) {
                (Some((epoch, _)), Some(Ok(channel))) => {
                    tokio::select! {
                        result = call(channel) => result,
                        _ = self.moved_from(key, epoch) => Err(RemoteError::Retriable(
                            tonic::Status::unavailable("the partition moved during the request"),
                        )),
                    }
                }
                (_, Some(Err(e))) => Err(RemoteError::Retriable(tonic::Status::unavailable(
                    e.to_string(),
                ))),
                _ => Err(RemoteError::NoOwner),
            };
            match result {
                Ok(answer) => return Ok(answer),
                Err(RemoteError::Refused(e)) => return Err(e),
                Err(retriable) if Instant::now() >= deadline => {
                    let last = match &retriable {
                        RemoteError::Retriable(status) => status.message().to_owned(),
                        _ => "no live owner".to_owned(),
                    };
                    tracing::warn!(partition = %key, last_error = %last, "giving up after {PRODUCE_RETRY_FOR:?}");
                    return Err(BrokerError::NotOwner {
                        topic: key.topic.clone(),
                        partition: key.partition,
                    });
                }
                Err(_) => {
                    // Wait for the partition to move (a metadata change) or the backoff.
                    tokio::select! {
                        _ = changes.changed() => {}
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
            }
        }
    }

    fn channel(&self, addr: &str) -> Result<Channel, tonic::codegen::http::uri::InvalidUri> {
        let mut state = self.lock();
        if let Some(channel) = state.channels.get(addr) {
            return Ok(channel.clone());
        }
        let channel = lazy_channel(addr)?;
        state.channels.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }
}

#[async_trait]
impl Backend for ClusterBackend {
    async fn produce(
        &self,
        topic: &str,
        partition: u32,
        records: Bytes,
        ack: AckMode,
    ) -> Result<Appended, BrokerError> {
        let key = PartitionKey::new(topic, partition);
        // The same id on every attempt: a retry of an attempt that was
        // written after all is answered, not written twice. Idempotent
        // producers' batches need none: their sequences do that, and the
        // ids would only swell every checkpoint.
        let idempotent = sluice_record::BatchHeader::parse(&records)
            .is_ok_and(|header| header.has_producer_id());
        let request_id = if idempotent {
            String::new()
        } else {
            format!("{:032x}", rand::random::<u128>())
        };
        let (key_ref, request_id) = (&key, request_id.as_str());
        self.call_owner(&key, move |channel| {
            send(channel, key_ref, records.clone(), ack, request_id)
        })
        .await
    }

    async fn delete_records(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
    ) -> Result<i64, BrokerError> {
        let key = PartitionKey::new(topic, partition);
        let key_ref = &key;
        let start = self
            .call_owner(&key, move |channel| {
                send_delete_records(channel, key_ref, offset)
            })
            .await?;
        // A ListOffsets or fetch through this proxy right after sees it.
        let caught_up = async {
            if let Some(mut view) = self.view(&key) {
                let _ = view
                    .wait_for(|v| v.as_ref().is_some_and(|v| v.log_start_offset >= start))
                    .await;
            }
        };
        if tokio::time::timeout(VIEW_CATCH_UP, caught_up)
            .await
            .is_err()
        {
            tracing::warn!(partition = %key, log_start_offset = start, "the owner's checkpoint stream has not shown the new log start within {VIEW_CATCH_UP:?}");
        }
        Ok(start)
    }

    fn partition_count(&self, topic: &str) -> Option<u32> {
        self.lock().topics.get(topic).map(|t| t.partitions)
    }

    fn topics(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lock().topics.keys().cloned().collect();
        names.sort();
        names
    }

    fn view(&self, key: &PartitionKey) -> Option<ViewReceiver> {
        let mut state = self.lock();
        if !state.topics.contains_key(&key.topic) {
            return None;
        }
        let (_, sender) = state
            .views
            .entry(key.clone())
            .or_insert_with(|| (0, watch::Sender::new(None)));
        Some(sender.subscribe())
    }

    fn volumes(&self) -> &VolumeSet {
        &self.volumes
    }

    async fn wait_ready(&self, key: &PartitionKey, timeout: Duration) -> bool {
        let wait = async {
            // The metadata watch may not have shown this proxy the topic yet.
            let mut changes = self.changed.subscribe();
            let mut view = loop {
                if let Some(view) = self.view(key) {
                    break view;
                }
                if changes.changed().await.is_err() {
                    return false;
                }
            };
            view.wait_for(Option::is_some).await.is_ok()
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    async fn volume_stats(&self) -> Vec<v1::NodeVolumeStats> {
        let brokers: Vec<(u64, String)> = {
            let state = self.lock();
            let mut brokers: Vec<_> = state
                .brokers
                .iter()
                .map(|(id, record)| (*id, record.addr.clone()))
                .collect();
            brokers.sort();
            brokers
        };
        let asks = brokers.into_iter().map(|(id, addr)| async move {
            let node = format!("broker {id} {addr}");
            let ask = async {
                let mut client = BrokerClient::new(self.channel(&addr)?);
                let stats = client.volume_stats(v1::VolumeStatsRequest {}).await?;
                anyhow_like::Result::Ok(stats.into_inner())
            };
            match tokio::time::timeout(Duration::from_secs(5), ask).await {
                Ok(Ok(stats)) => v1::NodeVolumeStats { node, ..stats },
                Ok(Err(e)) => v1::NodeVolumeStats {
                    node,
                    volumes: Vec::new(),
                    error: e.to_string(),
                },
                Err(_) => v1::NodeVolumeStats {
                    node,
                    volumes: Vec::new(),
                    error: "no answer within 5 s".into(),
                },
            }
        });
        let mut nodes = vec![node_volume_stats("proxy", &self.volumes)];
        nodes.extend(futures::future::join_all(asks).await);
        nodes
    }
}

/// Why a forwarded produce did not succeed.
#[derive(Debug)]
enum RemoteError {
    /// No live owner is known yet.
    NoOwner,
    /// The owner could not be reached or does not own the partition (any more).
    Retriable(tonic::Status),
    /// The broker refused the request itself: the client's error.
    Refused(BrokerError),
}

async fn send(
    channel: Channel,
    key: &PartitionKey,
    records: Bytes,
    ack: AckMode,
    request_id: &str,
) -> Result<Appended, RemoteError> {
    let mut client = BrokerClient::new(channel)
        .max_decoding_message_size(128 << 20)
        .max_encoding_message_size(128 << 20);
    let acks = match ack {
        AckMode::Buffer => v1::AckMode::Buffer,
        AckMode::Durable => v1::AckMode::Durable,
    };
    let request = v1::BrokerProduceRequest {
        topic: key.topic.clone(),
        partition: key.partition,
        records,
        acks: acks as i32,
        request_id: request_id.to_owned(),
    };
    match client.produce(request).await {
        Ok(response) => {
            let response = response.into_inner();
            Ok(Appended {
                base_offset: response.base_offset,
                last_offset: response.last_offset,
                duplicate: response.duplicate,
            })
        }
        Err(status) => Err(classify(key, status)),
    }
}

async fn send_delete_records(
    channel: Channel,
    key: &PartitionKey,
    offset: i64,
) -> Result<i64, RemoteError> {
    let request = v1::DeleteRecordsRequest {
        topic: key.topic.clone(),
        partition: key.partition,
        offset,
    };
    match BrokerClient::new(channel).delete_records(request).await {
        Ok(response) => Ok(response.into_inner().log_start_offset),
        Err(status) => Err(classify(key, status)),
    }
}

/// Retriable statuses (owner moving, broker unreachable) versus the
/// client's own errors, which are passed on as they are.
fn classify(key: &PartitionKey, status: tonic::Status) -> RemoteError {
    let code = sluice_proto::error_code(&status)
        .unwrap_or_default()
        .to_owned();
    match (status.code(), code.as_str()) {
        (tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled, _) => {
            RemoteError::Retriable(status)
        }
        (_, "UNKNOWN_TOPIC") => RemoteError::Refused(BrokerError::UnknownTopic {
            topic: key.topic.clone(),
        }),
        _ => RemoteError::Refused(BrokerError::Remote {
            code: status.code(),
            name: code,
            message: status.message().to_owned(),
        }),
    }
}

/// A channel to a broker that connects (and reconnects) on first use.
fn lazy_channel(addr: &str) -> Result<Channel, tonic::codegen::http::uri::InvalidUri> {
    Ok(Channel::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy())
}

mod anyhow_like {
    /// Errors of a checkpoint stream: the transport or the stream itself.
    pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;
}

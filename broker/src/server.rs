//! `sluice.v1.Broker`: what proxies call on a broker in cluster mode.
//! Produce and DeleteRecords go to the partition task; WatchPartitions streams each
//! partition's checkpoint as it is saved, which is how proxies learn high
//! watermarks and segments without polling storage.

use std::collections::HashMap;
use std::sync::Arc;

use sluice_log::{PartitionKey, VolumeSet};
use sluice_proto::v1;
use sluice_proto::v1::broker_server::BrokerServer;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::partition::ViewReceiver;
use crate::{AckMode, Broker};

/// Updates buffered per watching proxy before the broker waits for it.
const UPDATES_BUFFERED: usize = 256;

/// The broker's gRPC service.
#[derive(Debug, Clone)]
pub struct BrokerService {
    broker: Arc<Broker>,
}

impl BrokerService {
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }

    /// The tonic server, with message limits for large produce requests.
    pub fn into_server(self) -> BrokerServer<Self> {
        BrokerServer::new(self)
            .max_decoding_message_size(128 << 20)
            .max_encoding_message_size(128 << 20)
    }
}

/// The request counts of every volume in `volumes`, as `node` reports them.
pub fn node_volume_stats(node: impl Into<String>, volumes: &VolumeSet) -> v1::NodeVolumeStats {
    let volumes = volumes
        .all()
        .iter()
        .map(|volume| {
            let stats = volume.stats();
            v1::VolumeCounters {
                url: volume.url().to_owned(),
                kind: volume.kind().as_str().to_owned(),
                puts: stats.puts,
                gets: stats.gets,
                heads: stats.heads,
                lists: stats.lists,
                deletes: stats.deletes,
                bytes_written: stats.bytes_written,
                bytes_read: stats.bytes_read,
            }
        })
        .collect();
    v1::NodeVolumeStats {
        node: node.into(),
        volumes,
        error: String::new(),
    }
}

#[tonic::async_trait]
impl v1::broker_server::Broker for BrokerService {
    async fn volume_stats(
        &self,
        _request: Request<v1::VolumeStatsRequest>,
    ) -> Result<Response<v1::NodeVolumeStats>, Status> {
        let node = format!("broker {}", self.broker.id());
        Ok(Response::new(node_volume_stats(
            node,
            self.broker.volumes(),
        )))
    }

    async fn produce(
        &self,
        request: Request<v1::BrokerProduceRequest>,
    ) -> Result<Response<v1::ProduceResponse>, Status> {
        let request = request.into_inner();
        let ack = match v1::AckMode::try_from(request.acks) {
            Ok(v1::AckMode::Buffer) => AckMode::Buffer,
            _ => AckMode::Durable,
        };
        let appended = self
            .broker
            .produce(
                &request.topic,
                request.partition,
                request.records,
                ack,
                Some(request.request_id).filter(|id| !id.is_empty()),
            )
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(v1::ProduceResponse {
            partition: request.partition,
            base_offset: appended.base_offset,
            last_offset: appended.last_offset,
            duplicate: appended.duplicate,
        }))
    }

    async fn delete_records(
        &self,
        request: Request<v1::DeleteRecordsRequest>,
    ) -> Result<Response<v1::DeleteRecordsResponse>, Status> {
        let request = request.into_inner();
        let log_start_offset = self
            .broker
            .delete_records(&request.topic, request.partition, request.offset)
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(v1::DeleteRecordsResponse {
            log_start_offset,
        }))
    }

    type WatchPartitionsStream = ReceiverStream<Result<v1::PartitionUpdate, Status>>;

    async fn watch_partitions(
        &self,
        _request: Request<v1::WatchPartitionsRequest>,
    ) -> Result<Response<Self::WatchPartitionsStream>, Status> {
        let (sender, receiver) = mpsc::channel(UPDATES_BUFFERED);
        tokio::spawn(stream_updates(Arc::clone(&self.broker), sender));
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}

/// Sends the current checkpoint of every partition, then each newer one,
/// until the proxy goes away.
async fn stream_updates(
    broker: Arc<Broker>,
    sender: mpsc::Sender<Result<v1::PartitionUpdate, Status>>,
) {
    let mut changes = broker.partition_changes();
    // Per partition: its epoch, its view, and the checkpoint sequence last sent.
    let mut watched: HashMap<PartitionKey, (u64, ViewReceiver, Option<u64>)> = HashMap::new();
    loop {
        changes.borrow_and_update();
        let current: HashMap<PartitionKey, (u64, ViewReceiver)> = broker
            .partitions()
            .into_iter()
            .map(|(key, epoch, view)| (key, (epoch, view)))
            .collect();
        // Partitions that stopped here.
        let stopped: Vec<PartitionKey> = watched
            .iter()
            .filter(|(key, (epoch, _, _))| current.get(*key).is_none_or(|(e, _)| e != epoch))
            .map(|(key, _)| key.clone())
            .collect();
        for key in stopped {
            if let Some((epoch, _, _)) = watched.remove(&key) {
                let update = v1::PartitionUpdate {
                    topic: key.topic.clone(),
                    partition: key.partition,
                    epoch,
                    checkpoint: Default::default(),
                    stopped: true,
                };
                if sender.send(Ok(update)).await.is_err() {
                    return;
                }
            }
        }
        for (key, (epoch, view)) in current {
            watched.entry(key).or_insert((epoch, view, None));
        }
        // Send every checkpoint not sent yet (marking each view seen, so the
        // wait below sleeps until the next one).
        for (key, (epoch, view, last_sent)) in watched.iter_mut() {
            let checkpoint = view
                .borrow_and_update()
                .as_ref()
                .and_then(|v| v.checkpoint.clone());
            let Some(checkpoint) = checkpoint else {
                continue;
            };
            if *last_sent == Some(checkpoint.sequence) {
                continue;
            }
            *last_sent = Some(checkpoint.sequence);
            let update = v1::PartitionUpdate {
                topic: key.topic.clone(),
                partition: key.partition,
                epoch: *epoch,
                checkpoint: checkpoint.encode(),
                stopped: false,
            };
            if sender.send(Ok(update)).await.is_err() {
                return;
            }
        }
        // Wait for a checkpoint, a partition starting or stopping, or the
        // proxy going away.
        // (A view whose partition task ended is closed: not waited on.)
        type Wait<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;
        let waits = watched
            .values_mut()
            .filter(|(_, view, _)| view.has_changed().is_ok())
            .map(|(_, view, _)| -> Wait<'_> {
                Box::pin(async move {
                    let _ = view.changed().await;
                })
            })
            .chain(std::iter::once(Box::pin(std::future::pending()) as Wait<'_>));
        let any_view = futures::future::select_all(waits);
        tokio::select! {
            _ = any_view => {}
            changed = changes.changed() => if changed.is_err() { return },
            _ = sender.closed() => return,
        }
    }
}

//! The broker: follows the metadata store's topics and assignments, runs a
//! partition task for every partition assigned to it (after taking its write
//! lease), and validates produce requests before handing them to the task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use sluice_log::{PartitionKey, VolumeSet};
use sluice_metadata::records::{self, Assignment, TopicRecord};
use sluice_metadata::{Compare, LeaseId, MetadataStore, Op, WatchEvent, keys};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{BrokerConfig, OBJECT_STORE_MIN_FLUSH_INTERVAL, PartitionConfig};
use crate::error::BrokerError;
use crate::partition::machine::{
    AckMode, Appended, DeleteRecordsRejected, ProduceBatches, ProducerRejection, WriteRejected,
};
use crate::partition::{
    DeleteRecordsFailure, PartitionHandle, PartitionWriter, ProduceFailure, ViewReceiver,
};

/// `/sluice/leases/<topic>/<p>`: the write lease a broker holds.
#[derive(Debug, Serialize, Deserialize)]
struct Lease {
    broker: u64,
    epoch: u64,
}

/// A broker process's write path.
#[derive(Debug)]
pub struct Broker {
    id: u64,
    /// The process's metadata lease, which write leases are bound to.
    lease: Option<LeaseId>,
    config: BrokerConfig,
    volumes: VolumeSet,
    metadata: Arc<dyn MetadataStore>,
    state: Mutex<State>,
    /// Bumped whenever a partition task starts or stops.
    partitions_changed: watch::Sender<u64>,
    cancel: CancellationToken,
}

#[derive(Debug, Default)]
struct State {
    topics: HashMap<String, TopicRecord>,
    partitions: HashMap<PartitionKey, PartitionHandle>,
}

impl Broker {
    /// Starts following the metadata store; partitions assigned to `id` start
    /// as their assignments are seen.
    ///
    /// `lease` is this process's metadata-store lease (cluster mode): the
    /// write leases it takes are bound to it, so they vanish with it.
    pub async fn start(
        id: u64,
        config: BrokerConfig,
        volumes: VolumeSet,
        metadata: Arc<dyn MetadataStore>,
        lease: Option<LeaseId>,
    ) -> Result<Arc<Self>, BrokerError> {
        let mut config = config;
        config.min_flush_interval.get_or_insert_with(|| {
            if volumes.has_object_store() {
                OBJECT_STORE_MIN_FLUSH_INTERVAL
            } else {
                Duration::ZERO
            }
        });
        let broker = Arc::new(Self {
            id,
            lease,
            config,
            volumes,
            metadata,
            state: Mutex::default(),
            partitions_changed: watch::Sender::new(0),
            cancel: CancellationToken::new(),
        });
        let watch = broker.metadata.watch(&format!("{}/", keys::ROOT)).await?;
        // Topics before assignments, whatever the key order.
        let (topics, others): (Vec<_>, Vec<_>) = watch
            .initial
            .into_iter()
            .partition(|(k, _)| keys::parse_topic(k).is_some());
        for (key, value) in topics.into_iter().chain(others) {
            broker.apply(WatchEvent::Put { key, value }).await;
        }
        let follower = Arc::clone(&broker);
        let mut events = watch.events;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = follower.cancel.cancelled() => break,
                    event = events.recv() => match event {
                        Some(event) => follower.apply(event).await,
                        None => break,
                    },
                }
            }
        });
        Ok(broker)
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn volumes(&self) -> &VolumeSet {
        &self.volumes
    }

    /// Validates `records` (one or more RecordBatch v2) and appends them.
    ///
    /// `request_id`, when given, makes retries safe: a request whose id was
    /// already appended (here or by an earlier owner) is answered with its
    /// offsets and not written again. Batches of idempotent producers
    /// (with a producer id) are checked against the producer's epoch and
    /// sequence: a retry of appended batches is answered with their offsets
    /// and `duplicate` set; an old epoch or a gap refuses the request.
    pub async fn produce(
        &self,
        topic: &str,
        partition: u32,
        records: Bytes,
        ack: AckMode,
        request_id: Option<String>,
    ) -> Result<Appended, BrokerError> {
        let (writer, max_batch_bytes) = self.writer(topic, partition)?;
        let mut batches = validate(
            topic,
            records,
            max_batch_bytes,
            self.config.validate_records,
        )?;
        batches.request_id = request_id;
        writer
            .produce(batches, ack)
            .await
            .map_err(|failure| match failure {
                ProduceFailure::Rejected(rejected) => write_error(topic, partition, rejected),
                ProduceFailure::Gone => BrokerError::ShuttingDown {
                    topic: topic.to_owned(),
                    partition,
                },
            })
    }

    /// Raises a partition's log start offset to `offset` (Kafka's
    /// DeleteRecords; -1: the high watermark) and returns the new log
    /// start, once a saved checkpoint records it. Records below it are no
    /// longer served; whole segments below it are deleted.
    pub async fn delete_records(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
    ) -> Result<i64, BrokerError> {
        let (writer, _) = self.writer(topic, partition)?;
        writer
            .delete_records(offset)
            .await
            .map_err(|failure| match failure {
                DeleteRecordsFailure::Rejected(DeleteRecordsRejected::OffsetOutOfRange {
                    offset,
                    high_watermark,
                }) => BrokerError::DeleteOffsetOutOfRange {
                    topic: topic.to_owned(),
                    partition,
                    offset,
                    high_watermark,
                },
                DeleteRecordsFailure::Rejected(DeleteRecordsRejected::Write(rejected)) => {
                    write_error(topic, partition, rejected)
                }
                DeleteRecordsFailure::Gone => BrokerError::ShuttingDown {
                    topic: topic.to_owned(),
                    partition,
                },
            })
    }

    /// The mailbox of a partition this broker writes, and the topic's
    /// largest batch.
    fn writer(&self, topic: &str, partition: u32) -> Result<(PartitionWriter, u32), BrokerError> {
        let state = self.lock();
        let record = state
            .topics
            .get(topic)
            .ok_or_else(|| BrokerError::UnknownTopic {
                topic: topic.to_owned(),
            })?;
        check_partition(topic, partition, record.partitions)?;
        let handle = state
            .partitions
            .get(&PartitionKey::new(topic, partition))
            .ok_or_else(|| BrokerError::NotOwner {
                topic: topic.to_owned(),
                partition,
            })?;
        let max = record
            .config
            .max_batch_bytes
            .unwrap_or(self.config.max_batch_bytes);
        Ok((handle.writer(), max))
    }

    /// The visible log of a partition this broker writes.
    pub fn view(&self, key: &PartitionKey) -> Option<ViewReceiver> {
        self.lock().partitions.get(key).map(PartitionHandle::view)
    }

    /// Waits until the partition runs here and has recovered, or `timeout`
    /// passes. Returns whether it is ready.
    pub async fn wait_ready(&self, key: &PartitionKey, timeout: std::time::Duration) -> bool {
        let wait = async {
            let mut changes = self.partitions_changed.subscribe();
            loop {
                if let Some(mut view) = self.view(key)
                    && view.wait_for(Option::is_some).await.is_ok()
                {
                    return;
                }
                if changes.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    /// Every partition this broker writes: key, epoch and visible log.
    pub fn partitions(&self) -> Vec<(PartitionKey, u64, ViewReceiver)> {
        self.lock()
            .partitions
            .iter()
            .map(|(key, handle)| (key.clone(), handle.epoch, handle.view()))
            .collect()
    }

    /// Changes whenever a partition starts or stops on this broker, and
    /// whenever a topic appears, changes or goes.
    pub fn partition_changes(&self) -> watch::Receiver<u64> {
        self.partitions_changed.subscribe()
    }

    /// The partition count of a topic, as this broker knows it.
    pub fn partition_count(&self, topic: &str) -> Option<u32> {
        self.lock().topics.get(topic).map(|t| t.partitions)
    }

    /// Every topic's name, sorted.
    pub fn topics(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lock().topics.keys().cloned().collect();
        names.sort();
        names
    }

    /// Stops every partition, answering waiting producers.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        let handles: Vec<PartitionHandle> =
            self.lock().partitions.drain().map(|(_, h)| h).collect();
        futures::future::join_all(handles.into_iter().map(PartitionHandle::stop)).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Never held across an await; a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn apply(&self, event: WatchEvent) {
        let result = match event {
            WatchEvent::Put { key, value } => {
                if let Some(topic) = keys::parse_topic(&key) {
                    records::decode::<TopicRecord>(&key, "a topic", &value.value)
                        .map(|record| self.topic_put(topic, record))
                } else if let Some((topic, partition)) = keys::parse_assignment(&key) {
                    match records::decode::<Assignment>(&key, "an assignment", &value.value) {
                        Ok(assignment) => {
                            self.assignment_put(
                                PartitionKey::new(topic, partition),
                                assignment,
                                &key,
                                value.version,
                            )
                            .await;
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                } else {
                    Ok(())
                }
            }
            WatchEvent::Delete { key } => {
                if let Some(topic) = keys::parse_topic(&key) {
                    self.topic_deleted(topic).await;
                } else if let Some((topic, partition)) = keys::parse_assignment(&key) {
                    self.stop_partition(&PartitionKey::new(topic, partition))
                        .await;
                }
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "ignoring a metadata value this broker cannot read");
        }
    }

    fn topic_put(&self, topic: &str, record: TopicRecord) {
        self.lock().topics.insert(topic.to_owned(), record);
        self.partitions_changed.send_modify(|n| *n += 1);
    }

    async fn assignment_put(
        &self,
        key: PartitionKey,
        assignment: Assignment,
        assignment_key: &str,
        version: u64,
    ) {
        let current = self.lock().partitions.get(&key).map(|h| h.epoch);
        if assignment.broker != self.id {
            self.stop_partition(&key).await;
            return;
        }
        if current == Some(assignment.epoch) {
            return;
        }
        self.stop_partition(&key).await;
        let topic = self.lock().topics.get(&key.topic).cloned();
        let Some(topic) = topic else {
            tracing::warn!(partition = %key, "assignment for a topic this broker has not seen; waiting for it");
            return;
        };
        // Step 1: take the write lease for this epoch, only if the assignment
        // is still the one seen.
        let lease = Lease {
            broker: self.id,
            epoch: assignment.epoch,
        };
        let taken = self
            .metadata
            .txn(
                vec![Compare::Version(assignment_key.to_owned(), version)],
                vec![Op::Put {
                    key: format!("{}/leases/{}/{}", keys::ROOT, key.topic, key.partition),
                    value: records::encode(&lease),
                    lease: self.lease,
                }],
            )
            .await;
        match taken {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(partition = %key, epoch = assignment.epoch, "assignment changed before the lease was taken");
                return;
            }
            Err(e) => {
                tracing::error!(partition = %key, error = %e, "could not take the write lease");
                return;
            }
        }
        let config = PartitionConfig::resolve(&self.config, &topic.config);
        tracing::info!(partition = %key, epoch = assignment.epoch, "took the write lease; recovering");
        let handle = PartitionHandle::spawn(
            key.clone(),
            topic.id.clone(),
            assignment.epoch,
            config,
            self.volumes.clone(),
        );
        self.lock().partitions.insert(key, handle);
        self.partitions_changed.send_modify(|n| *n += 1);
    }

    async fn stop_partition(&self, key: &PartitionKey) {
        let handle = self.lock().partitions.remove(key);
        if let Some(handle) = handle {
            handle.stop().await;
            self.partitions_changed.send_modify(|n| *n += 1);
        }
    }

    /// Stops the topic's partitions and deletes their data on every volume.
    async fn topic_deleted(&self, topic: &str) {
        let removed = self.lock().topics.remove(topic);
        self.partitions_changed.send_modify(|n| *n += 1);
        let doomed: Vec<PartitionKey> = self
            .lock()
            .partitions
            .keys()
            .filter(|k| k.topic == topic)
            .cloned()
            .collect();
        for key in &doomed {
            self.stop_partition(key).await;
        }
        if removed.is_none() {
            return;
        }
        // Topic names cannot hold '/', so the topic's directory is its own.
        for volume in self.volumes.all() {
            if let Err(e) = volume.delete_prefix(topic).await {
                tracing::warn!(topic, volume = %volume.url(), error = %e, "deleting a deleted topic's data failed");
            }
        }
        tracing::info!(topic, "deleted topic data");
    }
}

/// A write the partition refused, as the client sees it.
fn write_error(topic: &str, partition: u32, rejected: WriteRejected) -> BrokerError {
    match rejected {
        WriteRejected::Fenced { by_epoch } => BrokerError::Fenced {
            topic: topic.to_owned(),
            partition,
            by_epoch,
        },
        WriteRejected::Stopped => BrokerError::ShuttingDown {
            topic: topic.to_owned(),
            partition,
        },
        WriteRejected::Producer(rejection) => producer_error(topic, partition, rejection),
    }
}

/// An idempotent producer's rejected batch, as the client sees it.
fn producer_error(topic: &str, partition: u32, rejection: ProducerRejection) -> BrokerError {
    let topic = topic.to_owned();
    match rejection {
        ProducerRejection::Fenced {
            producer_id,
            epoch,
            current_epoch,
        } => BrokerError::ProducerFenced {
            topic,
            partition,
            producer_id,
            epoch,
            current_epoch,
        },
        ProducerRejection::UnknownProducer {
            producer_id,
            sequence,
        } => BrokerError::UnknownProducer {
            topic,
            partition,
            producer_id,
            sequence,
        },
        ProducerRejection::OutOfOrderSequence {
            producer_id,
            expected,
            got,
        } => BrokerError::OutOfOrderSequence {
            topic,
            partition,
            producer_id,
            expected,
            got,
        },
        ProducerRejection::DuplicateSequence {
            producer_id,
            first_seq,
            last_seq,
        } => BrokerError::DuplicateSequence {
            topic,
            partition,
            producer_id,
            first_seq,
            last_seq,
        },
    }
}

fn check_partition(topic: &str, partition: u32, partitions: u32) -> Result<(), BrokerError> {
    if partition >= partitions {
        return Err(BrokerError::PartitionOutOfRange {
            topic: topic.to_owned(),
            partition,
            partitions,
        });
    }
    Ok(())
}

/// Checks every batch (CRC, lengths, size limit) and copies the request into
/// one buffer the partition can write offsets into. Nothing is stored unless
/// every batch is valid.
fn validate(
    topic: &str,
    records: Bytes,
    max_batch_bytes: u32,
    validate_records: bool,
) -> Result<ProduceBatches, BrokerError> {
    let slices = sluice_record::split_batches(records.clone())?;
    if slices.is_empty() {
        return Err(BrokerError::EmptyRequest);
    }
    for slice in &slices {
        // Unknown codecs are refused here (a header check, no decompression):
        // no consumer could read the batch.
        slice
            .header
            .compression()
            .map_err(|e| BrokerError::InvalidBatch(e.at(slice.position)))?;
        if validate_records {
            // Every record decodes (after decompression): no consumer can be
            // handed a batch it cannot read.
            sluice_record::decode_records_shared(&slice.bytes)
                .map_err(|e| BrokerError::InvalidBatch(e.at(slice.position)))?;
        }
        if slice.bytes.len() > max_batch_bytes as usize {
            return Err(BrokerError::BatchTooLarge {
                topic: topic.to_owned(),
                position: slice.position,
                size: slice.bytes.len(),
                max: max_batch_bytes,
            });
        }
    }
    Ok(ProduceBatches {
        data: BytesMut::from(&records[..]),
        batches: slices.into_iter().map(|s| (s.position, s.header)).collect(),
        request_id: None,
    })
}

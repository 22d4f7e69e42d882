//! `sluice.v1.Admin`: topic administration. Topic records and assignments
//! come from the controller's [`TopicAdmin`]; partition states (offsets,
//! segments) from the partitions' current views.

use std::sync::Arc;

use sluice_controller::{ClusterOps, TopicAdmin, TopicInfo};
use sluice_log::PartitionKey;
use sluice_metadata::records::TopicConfig;
use sluice_proto::v1;
use tonic::{Request, Response, Status};

use crate::Backend;
use crate::error::ProxyError;
use crate::fetch::check_partition;

/// How long CreateTopic waits for the new partitions to be ready.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Topic administration over gRPC.
#[derive(Debug, Clone)]
pub struct AdminService {
    admin: TopicAdmin,
    ops: ClusterOps,
    backend: Arc<dyn Backend>,
    /// Brokers new partitions are assigned to at creation (standalone);
    /// `None` leaves assignment to the controller (cluster).
    brokers: Option<Vec<u64>>,
    /// Server defaults, shown where a topic sets nothing.
    defaults: TopicConfig,
}

impl AdminService {
    pub fn new(
        admin: TopicAdmin,
        backend: Arc<dyn Backend>,
        brokers: Option<Vec<u64>>,
        defaults: TopicConfig,
    ) -> Self {
        Self {
            ops: ClusterOps::new(admin.metadata()),
            admin,
            backend,
            brokers,
            defaults,
        }
    }

    pub fn into_server(self) -> v1::admin_server::AdminServer<Self> {
        v1::admin_server::AdminServer::new(self)
    }

    /// The topic's description once `partitions` are usable (or
    /// [`READY_TIMEOUT`] passed), so a produce right after works.
    async fn ready_description(
        &self,
        topic: &str,
        partitions: std::ops::Range<u32>,
    ) -> Result<Response<v1::TopicDescription>, Status> {
        for partition in partitions {
            let key = PartitionKey::new(topic, partition);
            if !self.backend.wait_ready(&key, READY_TIMEOUT).await {
                tracing::warn!(partition = %key, "not ready within {READY_TIMEOUT:?}");
                break;
            }
        }
        let info = self
            .admin
            .describe_topic(topic)
            .await
            .map_err(ProxyError::from)?;
        Ok(Response::new(self.describe(info)))
    }

    /// Deletes a partition's records before `offset` (-1: the high
    /// watermark) through its owner; returns the new log start offset.
    pub(crate) async fn delete_records(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
    ) -> Result<i64, ProxyError> {
        check_partition(self.backend.as_ref(), &PartitionKey::new(topic, partition))?;
        Ok(self
            .backend
            .delete_records(topic, partition, offset)
            .await?)
    }

    /// What a topic sets of its configuration (`None`: the server default).
    pub(crate) async fn topic_config(&self, topic: &str) -> Result<TopicConfig, ProxyError> {
        Ok(self.admin.describe_topic(topic).await?.record.config)
    }

    /// The server defaults of topic settings.
    pub(crate) fn defaults(&self) -> &TopicConfig {
        &self.defaults
    }

    fn describe(&self, info: TopicInfo) -> v1::TopicDescription {
        let partitions = info
            .assignments
            .iter()
            .enumerate()
            .map(|(partition, assignment)| {
                let partition = partition as u32;
                let view = self
                    .backend
                    .view(&PartitionKey::new(info.name.as_str(), partition))
                    .and_then(|v| v.borrow().clone());
                let mut description = v1::PartitionDescription {
                    partition,
                    broker: assignment.map_or(0, |a| a.broker),
                    epoch: assignment.map_or(0, |a| a.epoch),
                    ..Default::default()
                };
                if let Some(view) = view {
                    description.start_offset = view.log_start_offset;
                    description.end_offset = view.high_watermark;
                    description.segments = view
                        .segments
                        .iter()
                        .map(|s| v1::SegmentDescription {
                            base_offset: s.meta.base_offset,
                            end_offset: s.meta.end_offset,
                            bytes: s.meta.len(),
                            volume: s.meta.volume.clone(),
                            sealed: s.meta.sealed,
                            max_timestamp: s.meta.max_timestamp,
                        })
                        .collect();
                }
                description
            })
            .collect();
        v1::TopicDescription {
            name: info.name,
            id: info.record.id,
            config: Some(to_proto(&effective(&info.record.config, &self.defaults))),
            partitions,
        }
    }
}

#[tonic::async_trait]
impl v1::admin_server::Admin for AdminService {
    async fn create_topic(
        &self,
        request: Request<v1::CreateTopicRequest>,
    ) -> Result<Response<v1::TopicDescription>, Status> {
        let request = request.into_inner();
        let config = request.config.as_ref().map(from_proto).unwrap_or_default();
        self.admin
            .create_topic(
                &request.name,
                request.partitions,
                config,
                self.brokers.as_deref(),
                sluice_log::now_ms(),
            )
            .await
            .map_err(ProxyError::from)?;
        self.ready_description(&request.name, 0..request.partitions)
            .await
    }

    async fn list_topics(
        &self,
        _request: Request<v1::ListTopicsRequest>,
    ) -> Result<Response<v1::ListTopicsResponse>, Status> {
        let topics = self.admin.list_topics().await.map_err(ProxyError::from)?;
        let topics = topics
            .into_iter()
            .map(|(name, record)| v1::TopicSummary {
                name,
                partitions: record.partitions,
            })
            .collect();
        Ok(Response::new(v1::ListTopicsResponse { topics }))
    }

    async fn describe_topic(
        &self,
        request: Request<v1::DescribeTopicRequest>,
    ) -> Result<Response<v1::TopicDescription>, Status> {
        let info = self
            .admin
            .describe_topic(&request.into_inner().name)
            .await
            .map_err(ProxyError::from)?;
        Ok(Response::new(self.describe(info)))
    }

    async fn delete_topic(
        &self,
        request: Request<v1::DeleteTopicRequest>,
    ) -> Result<Response<v1::DeleteTopicResponse>, Status> {
        let name = request.into_inner().name;
        self.admin
            .delete_topic(&name)
            .await
            .map_err(ProxyError::from)?;
        // Answered once this proxy has stopped serving the topic too (as
        // Kafka answers DeleteTopics once the brokers' metadata has it), so
        // a Metadata request right after does not list it.
        let mut changes = self.backend.changes();
        let gone = async {
            while self.backend.partition_count(&name).is_some() {
                if changes.changed().await.is_err() {
                    break;
                }
            }
        };
        if tokio::time::timeout(READY_TIMEOUT, gone).await.is_err() {
            tracing::warn!(topic = %name, "still served {READY_TIMEOUT:?} after its deletion");
        }
        Ok(Response::new(v1::DeleteTopicResponse {}))
    }

    async fn add_partitions(
        &self,
        request: Request<v1::AddPartitionsRequest>,
    ) -> Result<Response<v1::TopicDescription>, Status> {
        let request = request.into_inner();
        let assign_to = self.brokers.as_ref().and_then(|b| b.first().copied());
        let old = self
            .admin
            .describe_topic(&request.name)
            .await
            .map_err(ProxyError::from)?;
        self.ops
            .add_partitions(&request.name, request.partitions, assign_to)
            .await
            .map_err(ProxyError::from)?;
        self.ready_description(&request.name, old.record.partitions..request.partitions)
            .await
    }

    async fn delete_records(
        &self,
        request: Request<v1::DeleteRecordsRequest>,
    ) -> Result<Response<v1::DeleteRecordsResponse>, Status> {
        let request = request.into_inner();
        let log_start_offset = self
            .delete_records(&request.topic, request.partition, request.offset)
            .await?;
        Ok(Response::new(v1::DeleteRecordsResponse {
            log_start_offset,
        }))
    }

    async fn cluster_status(
        &self,
        _request: Request<v1::ClusterStatusRequest>,
    ) -> Result<Response<v1::ClusterStatusResponse>, Status> {
        let status = self.ops.status().await.map_err(ProxyError::from)?;
        Ok(Response::new(v1::ClusterStatusResponse {
            controller: status.controller.unwrap_or_default(),
            brokers: status
                .brokers
                .into_iter()
                .map(|b| v1::BrokerStatus {
                    id: b.id,
                    live: b.addr.is_some(),
                    addr: b.addr.unwrap_or_default(),
                    draining: b.draining,
                    partitions: b.partitions as u32,
                })
                .collect(),
            proxies: status.proxies,
            unowned_partitions: status.unowned_partitions as u32,
        }))
    }

    async fn drain_broker(
        &self,
        request: Request<v1::DrainBrokerRequest>,
    ) -> Result<Response<v1::DrainBrokerResponse>, Status> {
        let request = request.into_inner();
        self.ops
            .drain(request.broker, request.undrain)
            .await
            .map_err(ProxyError::from)?;
        Ok(Response::new(v1::DrainBrokerResponse {}))
    }

    async fn move_partition(
        &self,
        request: Request<v1::MovePartitionRequest>,
    ) -> Result<Response<v1::MovePartitionResponse>, Status> {
        let request = request.into_inner();
        let change = self
            .ops
            .move_partition(&request.topic, request.partition, request.to_broker)
            .await
            .map_err(ProxyError::from)?;
        Ok(Response::new(v1::MovePartitionResponse {
            from_broker: change.from.map_or(0, |f| f.broker),
            epoch: change.to.epoch,
        }))
    }

    async fn rebalance(
        &self,
        _request: Request<v1::RebalanceRequest>,
    ) -> Result<Response<v1::RebalanceResponse>, Status> {
        let moves = self.ops.rebalance().await.map_err(ProxyError::from)?;
        Ok(Response::new(v1::RebalanceResponse {
            moves: moves.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn volume_stats(
        &self,
        _request: Request<v1::VolumeStatsRequest>,
    ) -> Result<Response<v1::VolumeStatsResponse>, Status> {
        Ok(Response::new(v1::VolumeStatsResponse {
            nodes: self.backend.volume_stats().await,
        }))
    }
}

fn from_proto(config: &v1::TopicConfig) -> TopicConfig {
    TopicConfig {
        retention_ms: config.retention_ms,
        retention_bytes: config.retention_bytes,
        segment_bytes: config.segment_bytes,
        segment_ms: config.segment_ms,
        max_batch_bytes: config.max_batch_bytes,
    }
}

fn to_proto(config: &TopicConfig) -> v1::TopicConfig {
    v1::TopicConfig {
        retention_ms: config.retention_ms,
        retention_bytes: config.retention_bytes,
        segment_bytes: config.segment_bytes,
        segment_ms: config.segment_ms,
        max_batch_bytes: config.max_batch_bytes,
    }
}

fn effective(topic: &TopicConfig, defaults: &TopicConfig) -> TopicConfig {
    TopicConfig {
        retention_ms: topic.retention_ms.or(defaults.retention_ms),
        retention_bytes: topic.retention_bytes.or(defaults.retention_bytes),
        segment_bytes: topic.segment_bytes.or(defaults.segment_bytes),
        segment_ms: topic.segment_ms.or(defaults.segment_ms),
        max_batch_bytes: topic.max_batch_bytes.or(defaults.max_batch_bytes),
    }
}

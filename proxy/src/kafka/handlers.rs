//! One function per Kafka API: decode the request at its version, answer
//! through the proxy's [`Backend`](crate::Backend), encode the answer.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, CreatePartitionsRequest, CreateTopicsRequest,
    DeleteTopicsRequest, FetchRequest, FetchResponse, InitProducerIdRequest,
    InitProducerIdResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest,
    MetadataResponse, ProduceRequest, ProduceResponse, ProducerId, RequestHeader, TopicName,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, HeartbeatRequest,
    JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest, OffsetCommitRequest,
    OffsetFetchRequest, SyncGroupRequest,
};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DescribeClusterRequest, DescribeConfigsRequest,
    OffsetForLeaderEpochRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use sluice_broker::AckMode;
use sluice_log::{PartitionKey, read};
use sluice_record::BatchHeader;

use super::{KafkaService, code, groups};
use crate::error::ProxyError;
use crate::fetch::{FetchRequest as ProxyFetch, check_partition, fetch};
use crate::grpc::list_offsets::current_view;

/// The newest ApiVersions version spoken.
pub(super) const MAX_API_VERSIONS: i16 = 3;

/// The versions this frontend speaks, by API.
const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 12),
    // Version 7 adds the max-timestamp query (-3), which Sluice has no
    // index for.
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, MAX_API_VERSIONS),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DeleteGroups, 0, 2),
];

/// Longest a fetch may wait.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Answers one request; `None` for a request Kafka answers with nothing
/// (a produce with acks=0).
pub(super) async fn handle(
    service: &KafkaService,
    key: ApiKey,
    header: &RequestHeader,
    mut body: Bytes,
    peer: std::net::SocketAddr,
) -> anyhow::Result<Option<Bytes>> {
    let version = header.request_api_version;
    let supported = SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .is_some_and(|(_, min, max)| (*min..=*max).contains(&version));
    if key == ApiKey::ApiVersions && !supported {
        // Kafka's rule: answer with version 0 and UNSUPPORTED_VERSION, and
        // the versions that are, so the client can pick one.
        let mut response = api_versions();
        response.error_code = code::UNSUPPORTED_VERSION;
        return encode(&response, 0).map(Some);
    }
    if !supported {
        tracing::info!(
            api = ?key,
            version,
            client = header.client_id.as_deref().unwrap_or_default(),
            "a Kafka request Sluice does not serve: answered UNSUPPORTED_VERSION"
        );
        return super::unsupported::answer(key, version).map(Some);
    }
    let answer = match key {
        ApiKey::ApiVersions => encode(&api_versions(), version)?,
        ApiKey::Metadata => {
            let request = MetadataRequest::decode(&mut body, version)?;
            if request.allow_auto_topic_creation {
                auto_create(service, &request).await;
            }
            encode(&metadata(service, request), version)?
        }
        ApiKey::Produce => {
            let request = ProduceRequest::decode(&mut body, version)?;
            return answer_produce(service, request, version).await;
        }
        ApiKey::Fetch => {
            let request = FetchRequest::decode(&mut body, version)?;
            encode(&fetch_all(service, request).await, version)?
        }
        ApiKey::ListOffsets => {
            let request = ListOffsetsRequest::decode(&mut body, version)?;
            encode(&list_offsets(service, request).await, version)?
        }
        ApiKey::InitProducerId => {
            let _request = InitProducerIdRequest::decode(&mut body, version)?;
            encode(&init_producer_id(service).await, version)?
        }
        ApiKey::CreateTopics => {
            let request = CreateTopicsRequest::decode(&mut body, version)?;
            encode(
                &super::admin::create_topics(&service.admin, request).await,
                version,
            )?
        }
        ApiKey::DeleteTopics => {
            let request = DeleteTopicsRequest::decode(&mut body, version)?;
            encode(
                &super::admin::delete_topics(&service.admin, request).await,
                version,
            )?
        }
        ApiKey::CreatePartitions => {
            let request = CreatePartitionsRequest::decode(&mut body, version)?;
            encode(
                &super::admin::create_partitions(&service.admin, request).await,
                version,
            )?
        }
        ApiKey::FindCoordinator => {
            let request = FindCoordinatorRequest::decode(&mut body, version)?;
            encode(
                &groups::find_coordinator(service, request, version),
                version,
            )?
        }
        ApiKey::JoinGroup => {
            let request = JoinGroupRequest::decode(&mut body, version)?;
            let client_id = header.client_id.as_deref().unwrap_or_default();
            encode(
                &groups::join_group(service, request, client_id, peer, version).await,
                version,
            )?
        }
        ApiKey::SyncGroup => {
            let request = SyncGroupRequest::decode(&mut body, version)?;
            encode(&groups::sync_group(service, request).await, version)?
        }
        ApiKey::Heartbeat => {
            let request = HeartbeatRequest::decode(&mut body, version)?;
            encode(&groups::heartbeat(service, request).await, version)?
        }
        ApiKey::LeaveGroup => {
            let request = LeaveGroupRequest::decode(&mut body, version)?;
            encode(
                &groups::leave_group(service, request, version).await,
                version,
            )?
        }
        ApiKey::OffsetCommit => {
            let request = OffsetCommitRequest::decode(&mut body, version)?;
            encode(&groups::offset_commit(service, request).await, version)?
        }
        ApiKey::OffsetFetch => {
            let request = OffsetFetchRequest::decode(&mut body, version)?;
            encode(
                &groups::offset_fetch(service, request, version).await,
                version,
            )?
        }
        ApiKey::DescribeGroups => {
            let request = DescribeGroupsRequest::decode(&mut body, version)?;
            encode(&groups::describe_groups(service, request).await, version)?
        }
        ApiKey::ListGroups => {
            let request = ListGroupsRequest::decode(&mut body, version)?;
            encode(&groups::list_groups(service, request).await, version)?
        }
        ApiKey::DeleteGroups => {
            let request = DeleteGroupsRequest::decode(&mut body, version)?;
            encode(&groups::delete_groups(service, request).await, version)?
        }
        ApiKey::DeleteRecords => {
            let request = DeleteRecordsRequest::decode(&mut body, version)?;
            encode(
                &super::records::delete_records(service, request).await,
                version,
            )?
        }
        ApiKey::DescribeConfigs => {
            let request = DescribeConfigsRequest::decode(&mut body, version)?;
            encode(
                &super::configs::describe_configs(service, request).await,
                version,
            )?
        }
        ApiKey::OffsetForLeaderEpoch => {
            let request = OffsetForLeaderEpochRequest::decode(&mut body, version)?;
            encode(
                &super::records::offset_for_leader_epoch(service, request),
                version,
            )?
        }
        ApiKey::DescribeCluster => {
            let request = DescribeClusterRequest::decode(&mut body, version)?;
            encode(&super::admin::describe_cluster(service, request), version)?
        }
        _ => anyhow::bail!("{key:?} is not supported"),
    };
    Ok(Some(answer))
}

/// `message` at `version`, in a buffer sized once (a fetch answer holds
/// megabytes of records).
pub(super) fn encode<M: Encodable>(message: &M, version: i16) -> anyhow::Result<Bytes> {
    let mut out = BytesMut::with_capacity(message.compute_size(version)?);
    message.encode(&mut out, version)?;
    Ok(out.freeze())
}

fn api_versions() -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    response.api_keys = SUPPORTED
        .iter()
        .map(|(key, min, max)| {
            let mut v = ApiVersion::default();
            v.api_key = *key as i16;
            v.min_version = *min;
            v.max_version = *max;
            v
        })
        .collect();
    response
}

/// Creates the unknown topics a Metadata request names, when this server
/// creates topics on first use (Kafka's `auto.create.topics.enable`).
async fn auto_create(service: &KafkaService, request: &MetadataRequest) {
    let Some(partitions) = service.auto_create_partitions else {
        return;
    };
    let names = request
        .topics
        .iter()
        .flatten()
        .filter_map(|t| t.name.as_ref());
    for name in names {
        let name = name.0.to_string();
        if service.backend.partition_count(&name).is_some() {
            continue;
        }
        let create = sluice_proto::v1::CreateTopicRequest {
            name: name.clone(),
            partitions,
            config: None,
        };
        use sluice_proto::v1::admin_server::Admin;
        match service
            .admin
            .create_topic(tonic::Request::new(create))
            .await
        {
            Ok(_) => tracing::info!(topic = %name, partitions, "created a topic on first use"),
            // Created meanwhile by another client: fine.
            Err(status) if sluice_proto::error_code(&status) == Some("TOPIC_EXISTS") => {}
            Err(status) => {
                tracing::warn!(topic = %name, error = %status.message(), "cannot create a topic on first use")
            }
        }
    }
}

/// The proxies are the brokers, and every partition's leader is one of
/// them: spread by topic and partition, the same on every proxy.
fn metadata(service: &KafkaService, request: MetadataRequest) -> MetadataResponse {
    let brokers = service.brokers();
    let leader = |topic: &str, partition: u32| {
        let spread = crc32c::crc32c(topic.as_bytes()) as usize + partition as usize;
        BrokerId(brokers[spread % brokers.len()].node_id)
    };
    let names: Vec<String> = match request.topics {
        Some(topics) => topics
            .into_iter()
            .filter_map(|t| t.name.map(|n| n.0.to_string()))
            .collect(),
        None => service.backend.topics(),
    };
    let topics = names
        .into_iter()
        .map(|name| {
            let mut topic = MetadataResponseTopic::default();
            match service.backend.partition_count(&name) {
                Some(count) => {
                    topic.partitions = (0..count)
                        .map(|p| {
                            let mut partition = MetadataResponsePartition::default();
                            let leader = leader(&name, p);
                            partition.partition_index = p as i32;
                            partition.leader_id = leader;
                            partition.replica_nodes = vec![leader];
                            partition.isr_nodes = vec![leader];
                            partition
                        })
                        .collect();
                }
                None => topic.error_code = code::UNKNOWN_TOPIC_OR_PARTITION,
            }
            topic.name = Some(TopicName(StrBytes::from_string(name)));
            topic
        })
        .collect();
    let mut response = MetadataResponse::default();
    response.brokers = brokers
        .iter()
        .map(|b| {
            let mut broker = MetadataResponseBroker::default();
            broker.node_id = BrokerId(b.node_id);
            broker.host = StrBytes::from_string(b.host.clone());
            broker.port = i32::from(b.port);
            broker
        })
        .collect();
    response.cluster_id = Some(StrBytes::from_static_str("sluice"));
    response.controller_id = BrokerId(service.node_id);
    response.topics = topics;
    response
}

/// A Sluice error as Kafka's error code.
pub(super) fn error_code(error: ProxyError) -> i16 {
    let status = tonic::Status::from(error);
    match sluice_proto::error_code(&status) {
        Some("UNKNOWN_TOPIC" | "PARTITION_OUT_OF_RANGE") => code::UNKNOWN_TOPIC_OR_PARTITION,
        Some("NOT_OWNER" | "NOT_AVAILABLE" | "METADATA_UNAVAILABLE") => {
            code::NOT_LEADER_OR_FOLLOWER
        }
        Some("OFFSET_OUT_OF_RANGE") => code::OFFSET_OUT_OF_RANGE,
        Some("CORRUPT_BATCH_CRC") => code::CORRUPT_MESSAGE,
        Some("INVALID_BATCH") => code::INVALID_RECORD,
        Some("BATCH_TOO_LARGE") => code::MESSAGE_TOO_LARGE,
        Some("OUT_OF_ORDER_SEQUENCE") => code::OUT_OF_ORDER_SEQUENCE_NUMBER,
        Some("DUPLICATE_SEQUENCE") => code::DUPLICATE_SEQUENCE_NUMBER,
        Some("PRODUCER_FENCED") => code::INVALID_PRODUCER_EPOCH,
        Some("UNKNOWN_PRODUCER_ID") => code::UNKNOWN_PRODUCER_ID,
        Some("STORAGE_UNAVAILABLE") => code::KAFKA_STORAGE_ERROR,
        Some("BAD_REQUEST") => code::INVALID_REQUEST,
        _ => {
            tracing::warn!(error = %status.message(), "Kafka request failed");
            code::UNKNOWN_SERVER_ERROR
        }
    }
}

/// The request, decoded, if it may be answered while other requests are
/// in flight on its connection: a produce (of a supported version,
/// answered) whose every batch is an idempotent producer's, so the broker
/// orders them by sequence number whatever order they arrive in.
pub(super) fn pipelined_produce(request: &super::Request) -> Option<ProduceRequest> {
    let version = request.header.request_api_version;
    let supported = SUPPORTED
        .iter()
        .any(|(k, min, max)| *k == ApiKey::Produce && (*min..=*max).contains(&version));
    if request.key != ApiKey::Produce || !supported {
        return None;
    }
    let produce = ProduceRequest::decode(&mut request.body.clone(), version).ok()?;
    let idempotent = |mut records: &[u8]| {
        while !records.is_empty() {
            match BatchHeader::parse(records) {
                Ok(header) if header.has_producer_id() && header.total_len() <= records.len() => {
                    records = &records[header.total_len()..];
                }
                _ => return false,
            }
        }
        true
    };
    let all_idempotent = produce.topic_data.iter().all(|t| {
        t.partition_data.iter().all(|p| {
            p.records
                .as_deref()
                .is_some_and(|r| !r.is_empty() && idempotent(r))
        })
    });
    (produce.acks != 0 && all_idempotent).then_some(produce)
}

/// A decoded produce's answer (`None` for acks=0: Kafka sends none).
pub(super) async fn answer_produce(
    service: &KafkaService,
    request: ProduceRequest,
    version: i16,
) -> anyhow::Result<Option<Bytes>> {
    let acks = request.acks;
    let response = produce(service, request).await;
    if acks == 0 {
        return Ok(None);
    }
    encode(&response, version).map(Some)
}

/// Writes every partition's batches at once (each partition's in order:
/// a request holds one entry per partition), and answers when all are in.
async fn produce(service: &KafkaService, request: ProduceRequest) -> ProduceResponse {
    let ack = if request.acks == -1 {
        AckMode::Durable
    } else {
        AckMode::Buffer
    };
    let writes = request.topic_data.into_iter().map(|topic| async move {
        let name = topic.name.0.to_string();
        let partitions = topic.partition_data.into_iter().map(|data| {
            let name = name.as_str();
            async move {
                let mut answer = PartitionProduceResponse::default();
                answer.index = data.index;
                answer.log_append_time_ms = -1;
                match produce_one(service, name, data.index, data.records, ack).await {
                    Ok(base_offset) => answer.base_offset = base_offset,
                    Err(e) => {
                        answer.error_code = error_code(e);
                        answer.base_offset = -1;
                    }
                }
                answer
            }
        });
        let mut answer = TopicProduceResponse::default();
        answer.partition_responses = futures::future::join_all(partitions).await;
        answer.name = topic.name;
        answer
    });
    let mut response = ProduceResponse::default();
    response.responses = futures::future::join_all(writes).await;
    response
}

async fn produce_one(
    service: &KafkaService,
    topic: &str,
    partition: i32,
    records: Option<Bytes>,
    ack: AckMode,
) -> Result<i64, ProxyError> {
    let partition = u32::try_from(partition).map_err(|_| ProxyError::BadRequest {
        reason: format!("partition {partition} is negative"),
    })?;
    check_partition(
        service.backend.as_ref(),
        &PartitionKey::new(topic, partition),
    )?;
    let records = records.unwrap_or_default();
    let appended = service
        .backend
        .produce(topic, partition, records, ack)
        .await?;
    Ok(appended.base_offset)
}

/// Fetches every partition asked for: at once, then (when nothing came and
/// the client is willing to wait) until the first partition has data.
async fn fetch_all(service: &KafkaService, request: FetchRequest) -> FetchResponse {
    let max_wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT);
    let mut budget = usize::try_from(request.max_bytes)
        .unwrap_or(usize::MAX)
        .max(1);
    let wanted: Vec<(String, i32, i64, usize)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.topic.0.to_string(),
                    p.partition,
                    p.fetch_offset,
                    usize::try_from(p.partition_max_bytes).unwrap_or(0).max(1),
                )
            })
        })
        .collect();
    let mut answers = fetch_pass(service, &wanted, &mut budget).await;
    let empty = answers
        .iter()
        .all(|(_, p)| p.records.as_ref().is_none_or(Bytes::is_empty) && p.error_code == 0);
    if empty && !max_wait.is_zero() && !wanted.is_empty() {
        // Wait on every partition at once; the first with data ends the wait.
        let waits = wanted.iter().map(|(topic, partition, offset, _)| {
            let request = ProxyFetch {
                key: PartitionKey::new(topic.as_str(), u32::try_from(*partition).unwrap_or(0)),
                offset: *offset,
                max_bytes: 1,
                min_bytes: 1,
                max_wait,
            };
            Box::pin(async move {
                let _ = fetch(service.backend.as_ref(), &request, &service.shutdown).await;
            })
        });
        futures::future::select_all(waits).await;
        let mut budget = usize::try_from(request.max_bytes)
            .unwrap_or(usize::MAX)
            .max(1);
        answers = fetch_pass(service, &wanted, &mut budget).await;
    }
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    for (topic, partition) in answers {
        match topics.last_mut().filter(|t| t.topic.0.as_str() == topic) {
            Some(last) => last.partitions.push(partition),
            None => {
                let mut t = FetchableTopicResponse::default();
                t.topic = TopicName(StrBytes::from_string(topic));
                t.partitions = vec![partition];
                topics.push(t);
            }
        }
    }
    let mut response = FetchResponse::default();
    response.responses = topics;
    response
}

/// One pass over the partitions, without waiting. Each gets an allowance
/// of the response's byte budget in request order (its partition max, or
/// what is left), and all are read at once; a partition left without an
/// allowance is then read alone if the others did not use theirs up, so a
/// long list of idle partitions cannot starve the ones after it.
async fn fetch_pass(
    service: &KafkaService,
    wanted: &[(String, i32, i64, usize)],
    budget: &mut usize,
) -> Vec<(String, PartitionData)> {
    let allowances: Vec<usize> = wanted
        .iter()
        .scan(*budget, |left, (_, _, _, partition_max)| {
            let allowance = (*partition_max).min(*left);
            *left -= allowance;
            Some(allowance)
        })
        .collect();
    let reads = wanted
        .iter()
        .zip(&allowances)
        .map(|(w, allowance)| fetch_one(service, w, *allowance));
    let mut out = futures::future::join_all(reads).await;
    let used: usize = out
        .iter()
        .filter_map(|(_, data)| data.records.as_ref().map(Bytes::len))
        .sum();
    *budget = budget.saturating_sub(used);
    for (i, w) in wanted.iter().enumerate() {
        if allowances[i] > 0 || *budget == 0 {
            continue;
        }
        let answer = fetch_one(service, w, w.3.min(*budget)).await;
        *budget = budget.saturating_sub(answer.1.records.as_ref().map_or(0, Bytes::len));
        out[i] = answer;
    }
    out
}

/// Reads one partition, up to `allowance` bytes (its offsets only for 0).
async fn fetch_one(
    service: &KafkaService,
    (topic, partition, offset, _): &(String, i32, i64, usize),
    allowance: usize,
) -> (String, PartitionData) {
    let mut data = PartitionData::default();
    data.partition_index = *partition;
    data.last_stable_offset = -1;
    data.log_start_offset = -1;
    data.high_watermark = -1;
    let result = match u32::try_from(*partition) {
        Err(_) => Err(ProxyError::BadRequest {
            reason: format!("partition {partition} is negative"),
        }),
        Ok(p) if allowance == 0 => current_view(
            service.backend.as_ref(),
            &PartitionKey::new(topic.as_str(), p),
        )
        .map(|view| (Bytes::new(), view.high_watermark, view.log_start_offset)),
        Ok(p) => {
            let request = ProxyFetch {
                key: PartitionKey::new(topic.as_str(), p),
                offset: *offset,
                max_bytes: allowance,
                min_bytes: 0,
                max_wait: Duration::ZERO,
            };
            fetch(service.backend.as_ref(), &request, &service.shutdown)
                .await
                .map(|f| (f.records, f.high_watermark, f.log_start_offset))
        }
    };
    match result {
        Ok((records, high_watermark, log_start_offset)) => {
            data.high_watermark = high_watermark;
            data.last_stable_offset = high_watermark;
            data.log_start_offset = log_start_offset;
            data.records = Some(records);
        }
        Err(e) => data.error_code = error_code(e),
    }
    (topic.clone(), data)
}

async fn list_offsets(service: &KafkaService, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut topics = Vec::new();
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::new();
        for asked in topic.partitions {
            let mut answer = ListOffsetsPartitionResponse::default();
            answer.partition_index = asked.partition_index;
            answer.timestamp = -1;
            match list_one(service, &name, asked.partition_index, asked.timestamp).await {
                Ok((offset, timestamp)) => {
                    answer.offset = offset;
                    answer.timestamp = timestamp;
                }
                Err(e) => {
                    answer.error_code = error_code(e);
                    answer.offset = -1;
                }
            }
            partitions.push(answer);
        }
        let mut answer = ListOffsetsTopicResponse::default();
        answer.name = topic.name;
        answer.partitions = partitions;
        topics.push(answer);
    }
    let mut response = ListOffsetsResponse::default();
    response.topics = topics;
    response
}

/// Kafka's special timestamps: -2 earliest, -1 latest.
async fn list_one(
    service: &KafkaService,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> Result<(i64, i64), ProxyError> {
    let partition = u32::try_from(partition).map_err(|_| ProxyError::BadRequest {
        reason: format!("partition {partition} is negative"),
    })?;
    let key = PartitionKey::new(topic, partition);
    check_partition(service.backend.as_ref(), &key)?;
    let view = current_view(service.backend.as_ref(), &key)?;
    match timestamp {
        -2 => Ok((view.log_start_offset, -1)),
        -1 => Ok((view.high_watermark, -1)),
        t if t < 0 => Err(ProxyError::BadRequest {
            reason: format!(
                "timestamp {t}: only -2 (earliest), -1 (latest) and times are supported"
            ),
        }),
        t => Ok(
            read::offset_for_timestamp(&view, service.backend.volumes(), t)
                .await?
                .unwrap_or((-1, -1)),
        ),
    }
}

async fn init_producer_id(service: &KafkaService) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    match service.producer_ids.next().await {
        Ok((id, epoch)) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = epoch;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot allocate a producer id");
            response.error_code = code::COORDINATOR_NOT_AVAILABLE;
            response.producer_id = ProducerId(-1);
            response.producer_epoch = -1;
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use sluice_record::{BatchBuilder, Compression};

    use super::*;
    use crate::kafka::Request;

    fn batch(producer_id: Option<i64>) -> Bytes {
        let mut builder = BatchBuilder::new(Compression::None);
        if let Some(id) = producer_id {
            builder = builder.producer(id, 0, 0);
        }
        builder
            .push(1, None, Some(b"v"), &[])
            .expect("a record fits");
        builder.build().expect("a batch")
    }

    fn produce(acks: i16, batches: &[Option<Bytes>]) -> Request {
        let mut request = ProduceRequest::default();
        request.acks = acks;
        let mut topic = TopicProduceData::default();
        topic.name = TopicName(StrBytes::from_static_str("t"));
        topic.partition_data = batches
            .iter()
            .enumerate()
            .map(|(i, records)| {
                let mut data = PartitionProduceData::default();
                data.index = i as i32;
                data.records = records.clone();
                data
            })
            .collect();
        request.topic_data = vec![topic];
        let version = 9;
        Request {
            key: ApiKey::Produce,
            header: RequestHeader::default().with_request_api_version(version),
            body: encode(&request, version).expect("encodes"),
        }
    }

    #[test]
    fn only_idempotent_answered_produces_are_pipelined() {
        let idempotent = Some(batch(Some(7)));
        let plain = Some(batch(None));
        assert!(
            pipelined_produce(&produce(-1, &[idempotent.clone(), idempotent.clone()])).is_some()
        );
        assert!(pipelined_produce(&produce(1, std::slice::from_ref(&idempotent))).is_some());
        // A plain batch anywhere, no records, or no answer: in turn.
        assert!(pipelined_produce(&produce(-1, &[idempotent.clone(), plain])).is_none());
        assert!(pipelined_produce(&produce(-1, &[idempotent.clone(), None])).is_none());
        assert!(pipelined_produce(&produce(0, std::slice::from_ref(&idempotent))).is_none());
        // Two idempotent batches back to back in one partition's records.
        let mut two = BytesMut::new();
        two.extend_from_slice(idempotent.as_deref().unwrap_or_default());
        two.extend_from_slice(idempotent.as_deref().unwrap_or_default());
        assert!(pipelined_produce(&produce(-1, &[Some(two.freeze())])).is_some());
        // Bytes that are not a batch.
        let garbage = Some(Bytes::from_static(&[1, 2, 3]));
        assert!(pipelined_produce(&produce(-1, &[garbage])).is_none());
    }
}

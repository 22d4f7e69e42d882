//! Kafka's topic administration (CreateTopics, DeleteTopics,
//! CreatePartitions), through the same [`AdminService`] as the gRPC API,
//! and DescribeCluster. Sluice keeps no replicas of its own (storage
//! does), so replication factors and replica assignments are accepted and
//! ignored.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, DescribeClusterRequest,
    DescribeClusterResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_proto::v1;
use sluice_proto::v1::admin_server::Admin;
use tonic::{Request, Status};

use super::{KafkaService, code};
use crate::AdminService;

/// DescribeCluster's endpoint types: brokers, or (KRaft) controllers.
const BROKERS_ENDPOINT: i8 = 1;

/// An admin refusal as Kafka's error code and message.
pub(super) fn refusal(status: &Status) -> (i16, Option<StrBytes>) {
    let code = match sluice_proto::error_code(status) {
        Some("TOPIC_EXISTS") => code::TOPIC_ALREADY_EXISTS,
        Some("UNKNOWN_TOPIC") => code::UNKNOWN_TOPIC_OR_PARTITION,
        Some("INVALID_TOPIC_NAME") => code::INVALID_TOPIC_EXCEPTION,
        Some("INVALID_PARTITIONS") => code::INVALID_PARTITIONS,
        Some("INVALID_CONFIG") => code::INVALID_CONFIG,
        _ => code::UNKNOWN_SERVER_ERROR,
    };
    (
        code,
        Some(StrBytes::from_string(status.message().to_owned())),
    )
}

/// Kafka topic configs as Sluice's; an unknown or malformed one is refused.
fn topic_config(configs: &[(String, Option<String>)]) -> Result<v1::TopicConfig, String> {
    let mut config = v1::TopicConfig::default();
    for (name, value) in configs {
        let Some(value) = value else { continue };
        let bad = || format!("config {name}={value:?} is not a number");
        match name.as_str() {
            "retention.ms" => config.retention_ms = Some(value.parse().map_err(|_| bad())?),
            "retention.bytes" => config.retention_bytes = Some(value.parse().map_err(|_| bad())?),
            "segment.bytes" => config.segment_bytes = Some(value.parse().map_err(|_| bad())?),
            "segment.ms" => config.segment_ms = Some(value.parse().map_err(|_| bad())?),
            "max.message.bytes" => config.max_batch_bytes = Some(value.parse().map_err(|_| bad())?),
            other => {
                return Err(format!(
                    "config {other} is not supported (Sluice topics take retention.ms, retention.bytes, segment.bytes, segment.ms and max.message.bytes)"
                ));
            }
        }
    }
    Ok(config)
}

pub(super) async fn create_topics(
    admin: &AdminService,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut results = Vec::new();
    for topic in request.topics {
        let mut result = CreatableTopicResult::default();
        result.name = topic.name.clone();
        result.num_partitions = -1;
        result.replication_factor = -1;
        let configs: Vec<(String, Option<String>)> = topic
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
            .collect();
        let partitions = if topic.num_partitions == -1 {
            1
        } else {
            topic.num_partitions
        };
        match (topic_config(&configs), u32::try_from(partitions)) {
            (Err(reason), _) => {
                result.error_code = code::INVALID_CONFIG;
                result.error_message = Some(StrBytes::from_string(reason));
            }
            (_, Err(_)) => {
                result.error_code = code::INVALID_PARTITIONS;
                result.error_message = Some(StrBytes::from_string(format!(
                    "{partitions} partitions: a topic needs at least 1"
                )));
            }
            (Ok(_), Ok(_)) if request.validate_only => {
                result.num_partitions = partitions;
                result.replication_factor = 1;
            }
            (Ok(config), Ok(partitions)) => {
                let create = v1::CreateTopicRequest {
                    name: topic.name.0.to_string(),
                    partitions,
                    config: Some(config),
                };
                match admin.create_topic(Request::new(create)).await {
                    Ok(created) => {
                        result.num_partitions = created.into_inner().partitions.len() as i32;
                        result.replication_factor = 1;
                    }
                    Err(status) => {
                        (result.error_code, result.error_message) = refusal(&status);
                    }
                }
            }
        }
        results.push(result);
    }
    let mut response = CreateTopicsResponse::default();
    response.topics = results;
    response
}

pub(super) async fn delete_topics(
    admin: &AdminService,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    // Versions up to 5 name topics in `topic_names`, 6 in `topics`.
    let mut names: Vec<TopicName> = request.topic_names;
    names.extend(request.topics.into_iter().filter_map(|t| t.name));
    let mut results = Vec::new();
    for name in names {
        let mut result = DeletableTopicResult::default();
        let delete = v1::DeleteTopicRequest {
            name: name.0.to_string(),
        };
        if let Err(status) = admin.delete_topic(Request::new(delete)).await {
            (result.error_code, result.error_message) = refusal(&status);
        }
        result.name = Some(name);
        results.push(result);
    }
    let mut response = DeleteTopicsResponse::default();
    response.responses = results;
    response
}

pub(super) async fn create_partitions(
    admin: &AdminService,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::new();
    for topic in request.topics {
        let mut result = CreatePartitionsTopicResult::default();
        result.name = topic.name.clone();
        match u32::try_from(topic.count) {
            Err(_) => {
                result.error_code = code::INVALID_PARTITIONS;
                result.error_message =
                    Some(StrBytes::from_string(format!("{} partitions", topic.count)));
            }
            Ok(_) if request.validate_only => {}
            Ok(count) => {
                let add = v1::AddPartitionsRequest {
                    name: topic.name.0.to_string(),
                    partitions: count,
                };
                if let Err(status) = admin.add_partitions(Request::new(add)).await {
                    (result.error_code, result.error_message) = refusal(&status);
                    if result.error_code == code::UNKNOWN_SERVER_ERROR
                        && status.code() == tonic::Code::InvalidArgument
                    {
                        result.error_code = code::INVALID_REQUEST;
                    }
                }
            }
        }
        results.push(result);
    }
    let mut response = CreatePartitionsResponse::default();
    response.results = results;
    response
}

/// The cluster as Metadata presents it: id "sluice", the proxies as its
/// brokers and this proxy as the controller. Controllers (KRaft's
/// endpoint type 2) are not served by a proxy, as a Kafka broker does not.
pub(super) fn describe_cluster(
    service: &KafkaService,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let mut response = DescribeClusterResponse::default();
    response.endpoint_type = request.endpoint_type;
    // As Metadata says.
    response.cluster_id = StrBytes::from_static_str("sluice");
    if request.endpoint_type != BROKERS_ENDPOINT {
        response.error_code = code::MISMATCHED_ENDPOINT_TYPE;
        response.error_message = Some(StrBytes::from_string(format!(
            "endpoint type {} is not served here: a Sluice proxy lists brokers (endpoint type {BROKERS_ENDPOINT})",
            request.endpoint_type
        )));
        return response;
    }
    response.controller_id = BrokerId(service.node_id);
    response.brokers = service
        .brokers()
        .into_iter()
        .map(|broker| {
            let mut described = DescribeClusterBroker::default();
            described.broker_id = BrokerId(broker.node_id);
            described.host = StrBytes::from_string(broker.host);
            described.port = i32::from(broker.port);
            described
        })
        .collect();
    response
}

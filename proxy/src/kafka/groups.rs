//! Kafka's consumer-group APIs, answered by Sluice's coordinator (the same
//! one gRPC clients use, reached through [`sluice.v1.Groups`]: in process in
//! standalone, forwarded on cluster proxies).
//!
//! Kafka clients assign partitions themselves (the classic protocol): the
//! coordinator picks a leader, hands it every member's subscription
//! metadata in the JoinGroup answer, and passes the leader's assignment to
//! each member in SyncGroup. Metadata and assignments are the clients'
//! bytes (the consumer protocol, with cooperative-sticky's owned
//! partitions inside); the coordinator never reads them. Static members
//! (`group.instance.id`) and their fencing are the coordinator's.
//!
//! [`sluice.v1.Groups`]: sluice_proto::v1::groups_server::Groups

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    BrokerId, ConsumerProtocolAssignment, DeleteGroupsRequest, DeleteGroupsResponse,
    DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use sluice_proto::v1;
use tonic::{Request, Status};

use super::{KafkaService, code};

/// Kafka's protocol type for consumers.
const CONSUMER: &str = "consumer";

/// A group error from the coordinator as Kafka's error code.
pub(super) fn group_error_code(status: &Status) -> i16 {
    match sluice_proto::error_code(status) {
        Some("UNKNOWN_MEMBER_ID") => code::UNKNOWN_MEMBER_ID,
        Some("ILLEGAL_GENERATION") => code::ILLEGAL_GENERATION,
        Some("REBALANCE_IN_PROGRESS") => code::REBALANCE_IN_PROGRESS,
        Some("INCONSISTENT_GROUP_PROTOCOL" | "UNKNOWN_ASSIGNOR") => {
            code::INCONSISTENT_GROUP_PROTOCOL
        }
        Some("INVALID_SESSION_TIMEOUT") => code::INVALID_SESSION_TIMEOUT,
        Some("INVALID_GROUP_ID") => code::INVALID_GROUP_ID,
        Some("GROUP_NOT_EMPTY") => code::NON_EMPTY_GROUP,
        Some("UNKNOWN_GROUP") => code::GROUP_ID_NOT_FOUND,
        Some("UNKNOWN_TOPIC") => code::UNKNOWN_TOPIC_OR_PARTITION,
        Some("FENCED_INSTANCE_ID") => code::FENCED_INSTANCE_ID,
        Some("NOT_COORDINATOR") => code::NOT_COORDINATOR,
        Some("PARTITION_NOT_OWNED") => code::ILLEGAL_GENERATION,
        Some("INVALID_REQUEST") => code::INVALID_REQUEST,
        Some("METADATA_UNAVAILABLE") => code::COORDINATOR_NOT_AVAILABLE,
        _ => {
            tracing::warn!(error = %status.message(), "group request failed");
            code::COORDINATOR_NOT_AVAILABLE
        }
    }
}

fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// This proxy is every group's coordinator: it forwards to the real one.
pub(super) fn find_coordinator(
    service: &KafkaService,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let (host, port) = &service.advertised;
    let transactions = request.key_type == 1;
    let (error_code, message) = if transactions {
        (
            code::INVALID_REQUEST,
            Some(text(
                "Sluice has no transaction coordinator: transactions are not supported",
            )),
        )
    } else {
        (0, None)
    };
    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        response.coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let mut c = Coordinator::default();
                c.key = key;
                c.node_id = BrokerId(service.node_id);
                c.host = text(host.clone());
                c.port = i32::from(*port);
                c.error_code = error_code;
                c.error_message = message.clone();
                c
            })
            .collect();
    } else {
        response.node_id = BrokerId(service.node_id);
        response.host = text(host.clone());
        response.port = i32::from(*port);
        response.error_code = error_code;
        response.error_message = message;
    }
    response
}

pub(super) async fn join_group(
    service: &KafkaService,
    request: JoinGroupRequest,
    client_id: &str,
    peer: SocketAddr,
    version: i16,
) -> JoinGroupResponse {
    let group = request.group_id.0.to_string();
    let member_id = request.member_id.to_string();
    let millis = |ms: i32| u32::try_from(ms).unwrap_or(0);
    let join = v1::JoinGroupRequest {
        group: group.clone(),
        member_id: member_id.clone(),
        instance_id: request
            .group_instance_id
            .map(|i| i.to_string())
            .unwrap_or_default(),
        client_id: client_id.to_owned(),
        session_timeout_ms: millis(request.session_timeout_ms),
        // Version 0 has none: the session timeout.
        rebalance_timeout_ms: millis(request.rebalance_timeout_ms),
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| v1::GroupProtocol {
                name: p.name.to_string(),
                metadata: p.metadata,
            })
            .collect(),
        client_host: format!("/{}", peer.ip()),
        ..Default::default()
    };
    let mut response = JoinGroupResponse::default();
    match service.groups.join_group(Request::new(join)).await {
        Ok(answer) => {
            let answer = answer.into_inner();
            response.generation_id = answer.generation;
            response.protocol_type = Some(text(answer.protocol_type));
            response.protocol_name = Some(text(answer.assignor));
            response.leader = text(answer.leader_id);
            response.member_id = text(answer.member_id);
            // Only version 9 has the field; older leaders assign again and
            // SyncGroup gives them the assignment in force.
            response.skip_assignment = answer.skip_assignment && version >= 9;
            response.members = answer
                .members
                .into_iter()
                .map(|m| {
                    let mut member = JoinGroupResponseMember::default();
                    member.member_id = text(m.member_id);
                    member.group_instance_id =
                        Some(m.instance_id).filter(|i| !i.is_empty()).map(text);
                    member.metadata = m.metadata;
                    member
                })
                .collect();
        }
        Err(status) => {
            response.error_code = group_error_code(&status);
            response.generation_id = -1;
            response.member_id = text(member_id);
            response.protocol_name = Some(StrBytes::default());
            tracing::debug!(%group, error = %status.message(), "Kafka JoinGroup refused");
        }
    }
    response
}

pub(super) async fn sync_group(
    service: &KafkaService,
    request: SyncGroupRequest,
) -> SyncGroupResponse {
    let sync = v1::SyncGroupRequest {
        group: request.group_id.0.to_string(),
        member_id: request.member_id.to_string(),
        generation: request.generation_id,
        assignments: request
            .assignments
            .into_iter()
            .map(|a| v1::MemberAssignment {
                member_id: a.member_id.to_string(),
                assignment: a.assignment,
            })
            .collect(),
    };
    let mut response = SyncGroupResponse::default();
    match service.groups.sync_group(Request::new(sync)).await {
        Ok(answer) => {
            let answer = answer.into_inner();
            response.assignment = answer.assignment;
            response.protocol_type = Some(text(answer.protocol_type));
            response.protocol_name = Some(text(answer.protocol));
        }
        Err(status) => response.error_code = group_error_code(&status),
    }
    response
}

pub(super) async fn heartbeat(
    service: &KafkaService,
    request: HeartbeatRequest,
) -> HeartbeatResponse {
    let heartbeat = v1::HeartbeatRequest {
        group: request.group_id.0.to_string(),
        member_id: request.member_id.to_string(),
        generation: request.generation_id,
        max_wait_ms: 0,
    };
    let mut response = HeartbeatResponse::default();
    match service.groups.heartbeat(Request::new(heartbeat)).await {
        Ok(answer) if answer.get_ref().rebalance => {
            response.error_code = code::REBALANCE_IN_PROGRESS;
        }
        Ok(_) => {}
        Err(status) => response.error_code = group_error_code(&status),
    }
    response
}

pub(super) async fn leave_group(
    service: &KafkaService,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let group = request.group_id.0.to_string();
    // Up to version 2, one member by id; from 3, a batch of identities.
    let leaving: Vec<(String, Option<String>)> = if version < 3 {
        vec![(request.member_id.to_string(), None)]
    } else {
        request
            .members
            .into_iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.map(|i| i.to_string()),
                )
            })
            .collect()
    };
    let mut response = LeaveGroupResponse::default();
    for (member_id, instance_id) in leaving {
        let leave = v1::LeaveGroupRequest {
            group: group.clone(),
            member_id: member_id.clone(),
            instance_id: instance_id.clone().unwrap_or_default(),
        };
        let error_code = match service.groups.leave_group(Request::new(leave)).await {
            Ok(_) => 0,
            Err(status) => group_error_code(&status),
        };
        if version < 3 {
            response.error_code = error_code;
        } else {
            let mut member = MemberResponse::default();
            member.member_id = text(member_id);
            member.group_instance_id = instance_id.map(text);
            member.error_code = error_code;
            response.members.push(member);
        }
    }
    response
}

pub(super) async fn offset_commit(
    service: &KafkaService,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    // Partitions of unknown topics fail alone; the rest commit together.
    let mut errors: BTreeMap<(String, i32), i16> = BTreeMap::new();
    let mut offsets = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let count = service.backend.partition_count(&name);
        for p in &topic.partitions {
            let known = u32::try_from(p.partition_index)
                .ok()
                .filter(|i| count.is_some_and(|c| *i < c));
            match known {
                Some(partition) => offsets.push(v1::OffsetCommit {
                    topic: name.clone(),
                    partition,
                    offset: p.committed_offset,
                    metadata: p
                        .committed_metadata
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                }),
                None => {
                    errors.insert(
                        (name.clone(), p.partition_index),
                        code::UNKNOWN_TOPIC_OR_PARTITION,
                    );
                }
            }
        }
    }
    let commit_error = if offsets.is_empty() {
        0
    } else {
        let commit = v1::CommitOffsetsRequest {
            group: request.group_id.0.to_string(),
            member_id: request.member_id.to_string(),
            generation: request.generation_id_or_member_epoch,
            offsets,
        };
        match service.groups.commit_offsets(Request::new(commit)).await {
            Ok(_) => 0,
            Err(status) => group_error_code(&status),
        }
    };
    let mut response = OffsetCommitResponse::default();
    response.topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let mut answer = OffsetCommitResponseTopic::default();
            answer.partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let mut partition = OffsetCommitResponsePartition::default();
                    partition.partition_index = p.partition_index;
                    partition.error_code = errors
                        .get(&(name.clone(), p.partition_index))
                        .copied()
                        .unwrap_or(commit_error);
                    partition
                })
                .collect();
            answer.name = topic.name;
            answer.topic_id = topic.topic_id;
            answer
        })
        .collect();
    response
}

/// One group's committed offsets: for the partitions asked for (those
/// without a commit answer -1), or every committed one (`None`).
async fn fetch_group_offsets(
    service: &KafkaService,
    group: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Vec<(String, Vec<(i32, i64, String)>)>, Status> {
    let partitions = wanted
        .iter()
        .flatten()
        .map(|(topic, partitions)| v1::TopicPartitions {
            topic: topic.clone(),
            partitions: partitions
                .iter()
                .filter_map(|p| u32::try_from(*p).ok())
                .collect(),
        })
        .collect();
    let fetch = v1::FetchOffsetsRequest {
        group: group.to_owned(),
        partitions,
    };
    let committed = service
        .groups
        .fetch_offsets(Request::new(fetch))
        .await?
        .into_inner()
        .offsets;
    let mut found: BTreeMap<(String, i32), (i64, String)> = committed
        .into_iter()
        .map(|c| ((c.topic, c.partition as i32), (c.offset, c.metadata)))
        .collect();
    Ok(match wanted {
        Some(wanted) => wanted
            .into_iter()
            .map(|(topic, partitions)| {
                let answers = partitions
                    .into_iter()
                    .map(|p| {
                        let (offset, metadata) = found
                            .remove(&(topic.clone(), p))
                            .unwrap_or((-1, String::new()));
                        (p, offset, metadata)
                    })
                    .collect();
                (topic, answers)
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<String, Vec<(i32, i64, String)>> = BTreeMap::new();
            for ((topic, p), (offset, metadata)) in found {
                by_topic
                    .entry(topic)
                    .or_default()
                    .push((p, offset, metadata));
            }
            by_topic.into_iter().collect()
        }
    })
}

/// Committed offsets as OffsetFetch answers them; the same fields in the
/// single-group form (before version 8) and the multi-group one, under two
/// type names each.
macro_rules! committed {
    ($topics:expr, $topic:ident, $partition:ident) => {
        $topics
            .into_iter()
            .map(|(topic, partitions)| {
                let mut t = $topic::default();
                t.name = TopicName(text(topic));
                t.partitions = partitions
                    .into_iter()
                    .map(|(index, offset, metadata)| {
                        let mut p = $partition::default();
                        p.partition_index = index;
                        p.committed_offset = offset;
                        p.committed_leader_epoch = -1;
                        p.metadata = Some(text(metadata));
                        p
                    })
                    .collect();
                t
            })
            .collect()
    };
}

/// The partitions an OffsetFetch asks for, by topic (either form).
macro_rules! wanted {
    ($topics:expr) => {
        $topics
            .into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    };
}

pub(super) async fn offset_fetch(
    service: &KafkaService,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let mut response = OffsetFetchResponse::default();
    if version < 8 {
        let wanted = request.topics.map(|topics| wanted!(topics));
        match fetch_group_offsets(service, &request.group_id.0, wanted).await {
            Ok(topics) => {
                response.topics = committed!(
                    topics,
                    OffsetFetchResponseTopic,
                    OffsetFetchResponsePartition
                );
            }
            Err(status) => response.error_code = group_error_code(&status),
        }
        return response;
    }
    for group in request.groups {
        let wanted = group.topics.map(|topics| wanted!(topics));
        let mut answer = OffsetFetchResponseGroup::default();
        match fetch_group_offsets(service, &group.group_id.0, wanted).await {
            Ok(topics) => {
                answer.topics = committed!(
                    topics,
                    OffsetFetchResponseTopics,
                    OffsetFetchResponsePartitions
                );
            }
            Err(status) => answer.error_code = group_error_code(&status),
        }
        answer.group_id = group.group_id;
        response.groups.push(answer);
    }
    response
}

/// A `sluice` member's partitions in the consumer protocol's encoding, so
/// Kafka tools show them like a Kafka consumer's.
fn consumer_assignment(assignment: &[v1::TopicPartitions]) -> Bytes {
    let mut message = ConsumerProtocolAssignment::default();
    message.assigned_partitions = assignment
        .iter()
        .map(|tp| {
            let mut t = TopicPartition::default();
            t.topic = TopicName(text(tp.topic.clone()));
            t.partitions = tp.partitions.iter().map(|p| *p as i32).collect();
            t
        })
        .collect();
    let mut out = BytesMut::new();
    // The consumer protocol's version, then the message.
    out.extend_from_slice(&0i16.to_be_bytes());
    match message.encode(&mut out, 0) {
        Ok(()) => out.freeze(),
        Err(_) => Bytes::new(),
    }
}

pub(super) async fn describe_groups(
    service: &KafkaService,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let mut response = DescribeGroupsResponse::default();
    for group_id in request.groups {
        let mut described = DescribedGroup::default();
        let describe = v1::DescribeGroupRequest {
            group: group_id.0.to_string(),
        };
        match service.groups.describe_group(Request::new(describe)).await {
            Ok(answer) => {
                let g = answer.into_inner();
                described.group_state = text(g.state);
                described.protocol_type = text(if g.protocol_type == "sluice" {
                    CONSUMER.to_owned()
                } else {
                    g.protocol_type.clone()
                });
                described.protocol_data = text(g.assignor);
                let sluice = g.protocol_type == "sluice";
                described.members = g
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut member = DescribedGroupMember::default();
                        member.member_assignment = if sluice {
                            consumer_assignment(&m.assignment)
                        } else {
                            m.assignment_bytes
                        };
                        member.member_id = text(m.member_id);
                        member.group_instance_id =
                            Some(m.instance_id).filter(|i| !i.is_empty()).map(text);
                        member.client_id = text(m.client_id);
                        member.client_host = text(m.client_host);
                        member.member_metadata = m.metadata;
                        member
                    })
                    .collect();
            }
            // Kafka describes a group it does not know as dead, without error.
            Err(status) if sluice_proto::error_code(&status) == Some("UNKNOWN_GROUP") => {
                described.group_state = text("Dead");
            }
            Err(status) => {
                described.error_code = group_error_code(&status);
                described.error_message = Some(text(status.message()));
            }
        }
        described.group_id = group_id;
        described.authorized_operations = i32::MIN;
        response.groups.push(described);
    }
    response
}

pub(super) async fn list_groups(
    service: &KafkaService,
    request: ListGroupsRequest,
) -> ListGroupsResponse {
    let mut response = ListGroupsResponse::default();
    match service
        .groups
        .list_groups(Request::new(v1::ListGroupsRequest {}))
        .await
    {
        Ok(answer) => {
            let states: Vec<String> = request
                .states_filter
                .iter()
                .map(|s| s.to_lowercase())
                .collect();
            response.groups = answer
                .into_inner()
                .groups
                .into_iter()
                .filter(|g| states.is_empty() || states.contains(&g.state.to_lowercase()))
                .map(|g| {
                    let mut listed = ListedGroup::default();
                    listed.group_id = GroupId(text(g.group));
                    listed.protocol_type = text(if g.protocol_type == "sluice" {
                        CONSUMER.to_owned()
                    } else {
                        g.protocol_type
                    });
                    listed.group_state = text(g.state);
                    listed.group_type = text("classic");
                    listed
                })
                .collect();
        }
        Err(status) => response.error_code = group_error_code(&status),
    }
    response
}

pub(super) async fn delete_groups(
    service: &KafkaService,
    request: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut response = DeleteGroupsResponse::default();
    for group_id in request.groups_names {
        let delete = v1::DeleteGroupRequest {
            group: group_id.0.to_string(),
        };
        let mut result = DeletableGroupResult::default();
        if let Err(status) = service.groups.delete_group(Request::new(delete)).await {
            result.error_code = group_error_code(&status);
        }
        result.group_id = group_id;
        response.results.push(result);
    }
    response
}

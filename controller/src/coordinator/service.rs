//! `sluice.v1.Groups` over the coordinator of this process, when it is the
//! elected one ([`CoordinatorSlot`]); otherwise every call answers
//! `NOT_COORDINATOR` and the proxy asks again where the coordinator is.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sluice_proto::v1;
use tonic::{Request, Response, Status};

use super::group::{ASSIGNORS, Partitions};
use super::{Coordinator, GroupError, JoinRequest, Protocol, SLUICE_PROTOCOL};

/// Longest a heartbeat is held.
const MAX_HEARTBEAT_WAIT: Duration = Duration::from_secs(30);

/// The coordinator this process runs, while it is elected.
#[derive(Debug, Clone, Default)]
pub struct CoordinatorSlot(Arc<RwLock<Option<Arc<Coordinator>>>>);

impl CoordinatorSlot {
    pub fn set(&self, coordinator: Option<Arc<Coordinator>>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = coordinator;
    }

    pub fn get(&self) -> Result<Arc<Coordinator>, GroupError> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(GroupError::NotCoordinator)
    }
}

/// The gRPC face of the coordinator.
#[derive(Debug, Clone)]
pub struct GroupsService {
    slot: CoordinatorSlot,
}

impl GroupsService {
    pub fn new(slot: CoordinatorSlot) -> Self {
        Self { slot }
    }

    pub fn into_server(self) -> v1::groups_server::GroupsServer<Self> {
        v1::groups_server::GroupsServer::new(self)
    }
}

fn to_proto(partitions: &Partitions) -> Vec<v1::TopicPartitions> {
    partitions
        .iter()
        .map(|(topic, partitions)| v1::TopicPartitions {
            topic: topic.clone(),
            partitions: partitions.clone(),
        })
        .collect()
}

fn committed(((topic, partition), c): ((String, u32), super::Committed)) -> v1::CommittedOffset {
    v1::CommittedOffset {
        topic,
        partition,
        offset: c.offset,
        metadata: c.metadata,
        commit_time_ms: c.commit_time_ms,
    }
}

/// Where a member connects from, as Kafka shows it ("/IP"): what the
/// caller said (a proxy forwarding a Kafka client's join), or the caller.
pub fn client_host(given: String, peer: Option<std::net::SocketAddr>) -> String {
    match peer {
        Some(peer) if given.is_empty() => format!("/{}", peer.ip()),
        _ => given,
    }
}

#[tonic::async_trait]
impl v1::groups_server::Groups for GroupsService {
    async fn join_group(
        &self,
        request: Request<v1::JoinGroupRequest>,
    ) -> Result<Response<v1::JoinGroupResponse>, Status> {
        let peer = request.remote_addr();
        let mut r = request.into_inner();
        r.client_host = client_host(r.client_host, peer);
        let coordinator = self.slot.get()?;
        let sluice = r.protocol_type.is_empty() || r.protocol_type == SLUICE_PROTOCOL;
        let protocols = if !sluice {
            r.protocols
                .into_iter()
                .map(|p| Protocol {
                    name: p.name,
                    metadata: p.metadata.to_vec(),
                })
                .collect()
        } else if r.assignors.is_empty() {
            ASSIGNORS.iter().map(|a| Protocol::named(a)).collect()
        } else {
            r.assignors.iter().map(|a| Protocol::named(a)).collect()
        };
        let join = JoinRequest {
            member_id: r.member_id,
            instance_id: Some(r.instance_id).filter(|i| !i.is_empty()),
            client_id: r.client_id,
            client_host: r.client_host,
            session_timeout: Duration::from_millis(r.session_timeout_ms.into()),
            rebalance_timeout: Duration::from_millis(r.rebalance_timeout_ms.into()),
            protocol_type: if sluice {
                SLUICE_PROTOCOL.to_owned()
            } else {
                r.protocol_type
            },
            protocols,
            topics: r.topics.into_iter().collect::<BTreeSet<_>>(),
        };
        let protocol_type = join.protocol_type.clone();
        let result = coordinator.join(&r.group, join).await.inspect_err(|e| {
            tracing::debug!(group = %r.group, error = %e, "join refused");
        })?;
        Ok(Response::new(v1::JoinGroupResponse {
            member_id: result.member_id,
            generation: result.generation,
            assignor: result.protocol,
            leader_id: result.leader_id,
            assignment: to_proto(&result.assignment),
            heartbeat_interval_ms: (result.session_timeout.as_millis() / 3) as u32,
            members: result
                .members
                .into_iter()
                .map(|(member_id, instance_id, metadata)| v1::JoinedMember {
                    member_id,
                    instance_id: instance_id.unwrap_or_default(),
                    metadata: metadata.into(),
                })
                .collect(),
            protocol_type,
            skip_assignment: result.skip_assignment,
        }))
    }

    async fn sync_group(
        &self,
        request: Request<v1::SyncGroupRequest>,
    ) -> Result<Response<v1::SyncGroupResponse>, Status> {
        let r = request.into_inner();
        let assignments = r
            .assignments
            .into_iter()
            .map(|a| (a.member_id, a.assignment.to_vec()))
            .collect();
        let (assignment, protocol_type, protocol) = self
            .slot
            .get()?
            .sync(&r.group, &r.member_id, r.generation, assignments)
            .await
            .inspect_err(|e| {
                tracing::debug!(group = %r.group, member = %r.member_id, error = %e, "sync refused");
            })?;
        Ok(Response::new(v1::SyncGroupResponse {
            assignment: assignment.into(),
            protocol_type,
            protocol,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        let r = request.into_inner();
        let wait = Duration::from_millis(r.max_wait_ms.into()).min(MAX_HEARTBEAT_WAIT);
        let rebalance = self
            .slot
            .get()?
            .heartbeat(&r.group, &r.member_id, r.generation, wait)
            .await?;
        Ok(Response::new(v1::HeartbeatResponse { rebalance }))
    }

    async fn leave_group(
        &self,
        request: Request<v1::LeaveGroupRequest>,
    ) -> Result<Response<v1::LeaveGroupResponse>, Status> {
        let r = request.into_inner();
        let instance = Some(r.instance_id.as_str()).filter(|i| !i.is_empty());
        self.slot
            .get()?
            .leave(&r.group, &r.member_id, instance)
            .await?;
        Ok(Response::new(v1::LeaveGroupResponse {}))
    }

    async fn commit_offsets(
        &self,
        request: Request<v1::CommitOffsetsRequest>,
    ) -> Result<Response<v1::CommitOffsetsResponse>, Status> {
        let r = request.into_inner();
        let offsets = r
            .offsets
            .into_iter()
            .map(|o| (o.topic, o.partition, o.offset, o.metadata))
            .collect();
        self.slot
            .get()?
            .commit(&r.group, &r.member_id, r.generation, offsets)
            .await
            .inspect_err(|e| {
                tracing::debug!(group = %r.group, member = %r.member_id, error = %e, "commit refused");
            })?;
        Ok(Response::new(v1::CommitOffsetsResponse {}))
    }

    async fn fetch_offsets(
        &self,
        request: Request<v1::FetchOffsetsRequest>,
    ) -> Result<Response<v1::FetchOffsetsResponse>, Status> {
        let r = request.into_inner();
        let wanted: Vec<(String, u32)> = r
            .partitions
            .iter()
            .flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.clone(), *p)))
            .collect();
        let wanted = (!r.partitions.is_empty()).then_some(wanted.as_slice());
        let offsets = self.slot.get()?.fetch_offsets(&r.group, wanted).await?;
        Ok(Response::new(v1::FetchOffsetsResponse {
            offsets: offsets.into_iter().map(committed).collect(),
        }))
    }

    async fn list_groups(
        &self,
        _request: Request<v1::ListGroupsRequest>,
    ) -> Result<Response<v1::ListGroupsResponse>, Status> {
        let groups = self.slot.get()?.list().await?;
        Ok(Response::new(v1::ListGroupsResponse {
            groups: groups
                .into_iter()
                .map(|g| v1::GroupSummary {
                    group: g.group,
                    state: g.state.name().to_owned(),
                    members: g.members as u32,
                    protocol_type: g.protocol_type,
                })
                .collect(),
        }))
    }

    async fn describe_group(
        &self,
        request: Request<v1::DescribeGroupRequest>,
    ) -> Result<Response<v1::GroupDescription>, Status> {
        let r = request.into_inner();
        let details = self.slot.get()?.describe(&r.group).await?;
        Ok(Response::new(v1::GroupDescription {
            group: details.summary.group,
            state: details.summary.state.name().to_owned(),
            protocol_type: details.summary.protocol_type,
            assignor: details.assignor,
            generation: details.generation,
            leader_id: details.leader,
            members: details
                .members
                .into_iter()
                .map(|m| v1::MemberDescription {
                    member_id: m.member_id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    assignment: to_proto(&m.assignment),
                    session_timeout_ms: m.session_timeout.as_millis() as u32,
                    client_host: m.client_host,
                    metadata: m.metadata.into(),
                    assignment_bytes: m.assignment_bytes.into(),
                })
                .collect(),
            offsets: details.offsets.into_iter().map(committed).collect(),
        }))
    }

    async fn delete_group(
        &self,
        request: Request<v1::DeleteGroupRequest>,
    ) -> Result<Response<v1::DeleteGroupResponse>, Status> {
        let r = request.into_inner();
        self.slot.get()?.delete(&r.group).await?;
        Ok(Response::new(v1::DeleteGroupResponse {}))
    }
}

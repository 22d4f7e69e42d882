//! Answers for requests this frontend does not serve: an API Sluice does
//! not implement (transactions, ACLs, SASL, quotas, …) or a version of one
//! outside the range ApiVersions advertised. Kafka clients get an answer
//! they can decode, with `UNSUPPORTED_VERSION` where the response has a
//! top-level error code at that version (an empty answer where it has
//! none), and the connection stays open.

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Encodable;

use super::code;
use super::handlers::encode;

/// The answer to `key` at `version`; an error if no Kafka version of this
/// API has `version` (the request cannot be answered in a form the client
/// reads: the connection is closed).
pub(super) fn answer(key: ApiKey, version: i16) -> anyhow::Result<Bytes> {
    let range = key.valid_versions();
    if version < range.min || version > range.max {
        anyhow::bail!(
            "{key:?} version {version} is outside every Kafka version ({}..={})",
            range.min,
            range.max
        );
    }
    match key {
        ApiKey::Fetch => {
            let mut r = FetchResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &FetchResponse::default(), version)
        }
        ApiKey::Metadata => {
            let mut r = MetadataResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &MetadataResponse::default(), version)
        }
        ApiKey::OffsetFetch => {
            let mut r = OffsetFetchResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &OffsetFetchResponse::default(), version)
        }
        ApiKey::FindCoordinator => {
            let mut r = FindCoordinatorResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &FindCoordinatorResponse::default(), version)
        }
        ApiKey::JoinGroup => {
            let mut r = JoinGroupResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &JoinGroupResponse::default(), version)
        }
        ApiKey::Heartbeat => {
            let mut r = HeartbeatResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &HeartbeatResponse::default(), version)
        }
        ApiKey::LeaveGroup => {
            let mut r = LeaveGroupResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &LeaveGroupResponse::default(), version)
        }
        ApiKey::SyncGroup => {
            let mut r = SyncGroupResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &SyncGroupResponse::default(), version)
        }
        ApiKey::ListGroups => {
            let mut r = ListGroupsResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &ListGroupsResponse::default(), version)
        }
        ApiKey::SaslHandshake => {
            let mut r = SaslHandshakeResponse::default();
            r.error_code = code::UNSUPPORTED_SASL_MECHANISM;
            answer_with(&r, &SaslHandshakeResponse::default(), version)
        }
        ApiKey::ApiVersions => {
            let mut r = ApiVersionsResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &ApiVersionsResponse::default(), version)
        }
        ApiKey::InitProducerId => {
            let mut r = InitProducerIdResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &InitProducerIdResponse::default(), version)
        }
        ApiKey::AddPartitionsToTxn => {
            let mut r = AddPartitionsToTxnResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &AddPartitionsToTxnResponse::default(), version)
        }
        ApiKey::AddOffsetsToTxn => {
            let mut r = AddOffsetsToTxnResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &AddOffsetsToTxnResponse::default(), version)
        }
        ApiKey::EndTxn => {
            let mut r = EndTxnResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &EndTxnResponse::default(), version)
        }
        ApiKey::DescribeAcls => {
            let mut r = DescribeAclsResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &DescribeAclsResponse::default(), version)
        }
        ApiKey::DescribeLogDirs => {
            let mut r = DescribeLogDirsResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &DescribeLogDirsResponse::default(), version)
        }
        ApiKey::SaslAuthenticate => {
            let mut r = SaslAuthenticateResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &SaslAuthenticateResponse::default(), version)
        }
        ApiKey::CreateDelegationToken => {
            let mut r = CreateDelegationTokenResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &CreateDelegationTokenResponse::default(), version)
        }
        ApiKey::RenewDelegationToken => {
            let mut r = RenewDelegationTokenResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &RenewDelegationTokenResponse::default(), version)
        }
        ApiKey::ExpireDelegationToken => {
            let mut r = ExpireDelegationTokenResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &ExpireDelegationTokenResponse::default(), version)
        }
        ApiKey::DescribeDelegationToken => {
            let mut r = DescribeDelegationTokenResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &DescribeDelegationTokenResponse::default(), version)
        }
        ApiKey::ElectLeaders => {
            let mut r = ElectLeadersResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &ElectLeadersResponse::default(), version)
        }
        ApiKey::AlterPartitionReassignments => {
            let mut r = AlterPartitionReassignmentsResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &AlterPartitionReassignmentsResponse::default(), version)
        }
        ApiKey::ListPartitionReassignments => {
            let mut r = ListPartitionReassignmentsResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &ListPartitionReassignmentsResponse::default(), version)
        }
        ApiKey::OffsetDelete => {
            let mut r = OffsetDeleteResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &OffsetDeleteResponse::default(), version)
        }
        ApiKey::DescribeClientQuotas => {
            let mut r = DescribeClientQuotasResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &DescribeClientQuotasResponse::default(), version)
        }
        ApiKey::DescribeUserScramCredentials => {
            let mut r = DescribeUserScramCredentialsResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(
                &r,
                &DescribeUserScramCredentialsResponse::default(),
                version,
            )
        }
        ApiKey::Vote => {
            let mut r = VoteResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &VoteResponse::default(), version)
        }
        ApiKey::BeginQuorumEpoch => {
            let mut r = BeginQuorumEpochResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &BeginQuorumEpochResponse::default(), version)
        }
        ApiKey::EndQuorumEpoch => {
            let mut r = EndQuorumEpochResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &EndQuorumEpochResponse::default(), version)
        }
        ApiKey::DescribeQuorum => {
            let mut r = DescribeQuorumResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &DescribeQuorumResponse::default(), version)
        }
        ApiKey::AlterPartition => {
            let mut r = AlterPartitionResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &AlterPartitionResponse::default(), version)
        }
        ApiKey::UpdateFeatures => {
            let mut r = UpdateFeaturesResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &UpdateFeaturesResponse::default(), version)
        }
        ApiKey::Envelope => {
            let mut r = EnvelopeResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &EnvelopeResponse::default(), version)
        }
        ApiKey::FetchSnapshot => {
            let mut r = FetchSnapshotResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &FetchSnapshotResponse::default(), version)
        }
        ApiKey::DescribeCluster => {
            let mut r = DescribeClusterResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &DescribeClusterResponse::default(), version)
        }
        ApiKey::BrokerRegistration => {
            let mut r = BrokerRegistrationResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &BrokerRegistrationResponse::default(), version)
        }
        ApiKey::BrokerHeartbeat => {
            let mut r = BrokerHeartbeatResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &BrokerHeartbeatResponse::default(), version)
        }
        ApiKey::UnregisterBroker => {
            let mut r = UnregisterBrokerResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &UnregisterBrokerResponse::default(), version)
        }
        ApiKey::ListTransactions => {
            let mut r = ListTransactionsResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &ListTransactionsResponse::default(), version)
        }
        ApiKey::AllocateProducerIds => {
            let mut r = AllocateProducerIdsResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &AllocateProducerIdsResponse::default(), version)
        }
        ApiKey::ConsumerGroupHeartbeat => {
            let mut r = ConsumerGroupHeartbeatResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &ConsumerGroupHeartbeatResponse::default(), version)
        }
        ApiKey::ControllerRegistration => {
            let mut r = ControllerRegistrationResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &ControllerRegistrationResponse::default(), version)
        }
        ApiKey::GetTelemetrySubscriptions => {
            let mut r = GetTelemetrySubscriptionsResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &GetTelemetrySubscriptionsResponse::default(), version)
        }
        ApiKey::PushTelemetry => {
            let mut r = PushTelemetryResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &PushTelemetryResponse::default(), version)
        }
        ApiKey::AssignReplicasToDirs => {
            let mut r = AssignReplicasToDirsResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &AssignReplicasToDirsResponse::default(), version)
        }
        ApiKey::ListConfigResources => {
            let mut r = ListConfigResourcesResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &ListConfigResourcesResponse::default(), version)
        }
        ApiKey::ShareGroupHeartbeat => {
            let mut r = ShareGroupHeartbeatResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &ShareGroupHeartbeatResponse::default(), version)
        }
        ApiKey::ShareFetch => {
            let mut r = ShareFetchResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &ShareFetchResponse::default(), version)
        }
        ApiKey::ShareAcknowledge => {
            let mut r = ShareAcknowledgeResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &ShareAcknowledgeResponse::default(), version)
        }
        ApiKey::AddRaftVoter => {
            let mut r = AddRaftVoterResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &AddRaftVoterResponse::default(), version)
        }
        ApiKey::RemoveRaftVoter => {
            let mut r = RemoveRaftVoterResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &RemoveRaftVoterResponse::default(), version)
        }
        ApiKey::UpdateRaftVoter => {
            let mut r = UpdateRaftVoterResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &UpdateRaftVoterResponse::default(), version)
        }
        ApiKey::AlterShareGroupOffsets => {
            let mut r = AlterShareGroupOffsetsResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &AlterShareGroupOffsetsResponse::default(), version)
        }
        ApiKey::DeleteShareGroupOffsets => {
            let mut r = DeleteShareGroupOffsetsResponse::default();
            r.error_code = code::UNSUPPORTED_VERSION;
            answer_with(&r, &DeleteShareGroupOffsetsResponse::default(), version)
        }
        ApiKey::Produce => encode(&ProduceResponse::default(), version),
        ApiKey::ListOffsets => encode(&ListOffsetsResponse::default(), version),
        ApiKey::OffsetCommit => encode(&OffsetCommitResponse::default(), version),
        ApiKey::DescribeGroups => encode(&DescribeGroupsResponse::default(), version),
        ApiKey::CreateTopics => encode(&CreateTopicsResponse::default(), version),
        ApiKey::DeleteTopics => encode(&DeleteTopicsResponse::default(), version),
        ApiKey::DeleteRecords => encode(&DeleteRecordsResponse::default(), version),
        ApiKey::OffsetForLeaderEpoch => encode(&OffsetForLeaderEpochResponse::default(), version),
        ApiKey::WriteTxnMarkers => encode(&WriteTxnMarkersResponse::default(), version),
        ApiKey::TxnOffsetCommit => encode(&TxnOffsetCommitResponse::default(), version),
        ApiKey::CreateAcls => encode(&CreateAclsResponse::default(), version),
        ApiKey::DeleteAcls => encode(&DeleteAclsResponse::default(), version),
        ApiKey::DescribeConfigs => encode(&DescribeConfigsResponse::default(), version),
        ApiKey::AlterConfigs => encode(&AlterConfigsResponse::default(), version),
        ApiKey::AlterReplicaLogDirs => encode(&AlterReplicaLogDirsResponse::default(), version),
        ApiKey::CreatePartitions => encode(&CreatePartitionsResponse::default(), version),
        ApiKey::DeleteGroups => encode(&DeleteGroupsResponse::default(), version),
        ApiKey::IncrementalAlterConfigs => {
            encode(&IncrementalAlterConfigsResponse::default(), version)
        }
        ApiKey::AlterClientQuotas => encode(&AlterClientQuotasResponse::default(), version),
        ApiKey::AlterUserScramCredentials => {
            encode(&AlterUserScramCredentialsResponse::default(), version)
        }
        ApiKey::DescribeProducers => encode(&DescribeProducersResponse::default(), version),
        ApiKey::DescribeTransactions => encode(&DescribeTransactionsResponse::default(), version),
        ApiKey::ConsumerGroupDescribe => encode(&ConsumerGroupDescribeResponse::default(), version),
        ApiKey::DescribeTopicPartitions => {
            encode(&DescribeTopicPartitionsResponse::default(), version)
        }
        ApiKey::ShareGroupDescribe => encode(&ShareGroupDescribeResponse::default(), version),
        ApiKey::InitializeShareGroupState => {
            encode(&InitializeShareGroupStateResponse::default(), version)
        }
        ApiKey::ReadShareGroupState => encode(&ReadShareGroupStateResponse::default(), version),
        ApiKey::WriteShareGroupState => encode(&WriteShareGroupStateResponse::default(), version),
        ApiKey::DeleteShareGroupState => encode(&DeleteShareGroupStateResponse::default(), version),
        ApiKey::ReadShareGroupStateSummary => {
            encode(&ReadShareGroupStateSummaryResponse::default(), version)
        }
        ApiKey::DescribeShareGroupOffsets => {
            encode(&DescribeShareGroupOffsetsResponse::default(), version)
        }
    }
}

/// `with_error` where this version has the top-level error code; the
/// plain answer where the field only exists in other versions.
fn answer_with<M: Encodable>(with_error: &M, plain: &M, version: i16) -> anyhow::Result<Bytes> {
    encode(with_error, version).or_else(|_| encode(plain, version))
}

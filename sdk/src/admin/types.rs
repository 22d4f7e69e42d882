//! What the admin client returns: topics, the cluster, groups and lag,
//! converted from the wire messages.

use std::time::Duration;

use sluice_proto::v1;

use crate::types::TopicPartition;

/// Per-topic settings; `None` fields take the server's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicConfig {
    /// Delete whole segments whose newest record is older than this (ms);
    /// -1 keeps data forever.
    pub retention_ms: Option<i64>,
    /// Delete the oldest segments while a partition holds more than this
    /// many bytes; -1 for no limit.
    pub retention_bytes: Option<i64>,
    /// Roll to a new segment once the open one holds this many bytes.
    pub segment_bytes: Option<u64>,
    /// Roll to a new segment once the open one is this old (ms).
    pub segment_ms: Option<u64>,
    /// Largest record batch accepted, in bytes.
    pub max_batch_bytes: Option<u32>,
}

impl From<TopicConfig> for v1::TopicConfig {
    fn from(config: TopicConfig) -> Self {
        v1::TopicConfig {
            retention_ms: config.retention_ms,
            retention_bytes: config.retention_bytes,
            segment_bytes: config.segment_bytes,
            segment_ms: config.segment_ms,
            max_batch_bytes: config.max_batch_bytes,
        }
    }
}

impl From<v1::TopicConfig> for TopicConfig {
    fn from(config: v1::TopicConfig) -> Self {
        TopicConfig {
            retention_ms: config.retention_ms,
            retention_bytes: config.retention_bytes,
            segment_bytes: config.segment_bytes,
            segment_ms: config.segment_ms,
            max_batch_bytes: config.max_batch_bytes,
        }
    }
}

/// A topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// The name.
    pub name: String,
    /// Unique per incarnation of the name (a recreated topic differs).
    pub id: String,
    /// The effective configuration, defaults filled in.
    pub config: TopicConfig,
    /// Its partitions, in order.
    pub partitions: Vec<PartitionDescription>,
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    /// The partition.
    pub partition: u32,
    /// The broker holding its write lease.
    pub broker: u64,
    /// The lease's epoch.
    pub epoch: u64,
    /// The earliest offset stored.
    pub start_offset: i64,
    /// The high watermark: the offset after the last readable record.
    pub end_offset: i64,
    /// Its segments, oldest first.
    pub segments: Vec<SegmentDescription>,
}

/// One segment of a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentDescription {
    /// Offset of its first record.
    pub base_offset: i64,
    /// Offset after its last record.
    pub end_offset: i64,
    /// Its size.
    pub bytes: u64,
    /// URL of the volume it lives on.
    pub volume: String,
    /// Whether it is sealed (no longer written).
    pub sealed: bool,
    /// Newest record timestamp (ms), -1 if unknown.
    pub max_timestamp: i64,
}

impl From<v1::TopicDescription> for TopicDescription {
    fn from(topic: v1::TopicDescription) -> Self {
        TopicDescription {
            name: topic.name,
            id: topic.id,
            config: topic.config.map(Into::into).unwrap_or_default(),
            partitions: topic
                .partitions
                .into_iter()
                .map(|p| PartitionDescription {
                    partition: p.partition,
                    broker: p.broker,
                    epoch: p.epoch,
                    start_offset: p.start_offset,
                    end_offset: p.end_offset,
                    segments: p
                        .segments
                        .into_iter()
                        .map(|s| SegmentDescription {
                            base_offset: s.base_offset,
                            end_offset: s.end_offset,
                            bytes: s.bytes,
                            volume: s.volume,
                            sealed: s.sealed,
                            max_timestamp: s.max_timestamp,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// A topic in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSummary {
    /// The name.
    pub name: String,
    /// Its partition count.
    pub partitions: u32,
}

/// The cluster's controller, brokers and proxies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    /// Address of the leading controller, `None` when none leads.
    pub controller: Option<String>,
    /// Every registered broker.
    pub brokers: Vec<BrokerStatus>,
    /// Addresses of the live proxies.
    pub proxies: Vec<String>,
    /// Partitions whose assigned broker is not live.
    pub unowned_partitions: u32,
}

/// One broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerStatus {
    /// Its id.
    pub id: u64,
    /// Its address; `None` when it is not live.
    pub address: Option<String>,
    /// Whether it is live.
    pub live: bool,
    /// Whether it is being drained.
    pub draining: bool,
    /// Partitions assigned to it.
    pub partitions: u32,
}

impl From<v1::ClusterStatusResponse> for ClusterStatus {
    fn from(status: v1::ClusterStatusResponse) -> Self {
        ClusterStatus {
            controller: Some(status.controller).filter(|c| !c.is_empty()),
            brokers: status
                .brokers
                .into_iter()
                .map(|b| BrokerStatus {
                    id: b.id,
                    address: Some(b.addr).filter(|a| !a.is_empty()),
                    live: b.live,
                    draining: b.draining,
                    partitions: b.partitions,
                })
                .collect(),
            proxies: status.proxies,
            unowned_partitions: status.unowned_partitions,
        }
    }
}

/// A consumer group in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    /// The group's name.
    pub group: String,
    /// "Empty", "PreparingRebalance", "CompletingRebalance" or "Stable".
    pub state: String,
    /// Its member count.
    pub members: u32,
    /// "sluice" (gRPC members) or "consumer" (Kafka clients).
    pub protocol_type: String,
}

impl From<v1::GroupSummary> for GroupSummary {
    fn from(group: v1::GroupSummary) -> Self {
        GroupSummary {
            group: group.group,
            state: group.state,
            members: group.members,
            protocol_type: group.protocol_type,
        }
    }
}

/// A consumer group: members, assignment, committed offsets and lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group's name.
    pub group: String,
    /// "Empty", "PreparingRebalance", "CompletingRebalance" or "Stable".
    pub state: String,
    /// "sluice" or "consumer".
    pub protocol_type: String,
    /// The assignor in use.
    pub assignor: String,
    /// The current generation.
    pub generation: i32,
    /// The leader's member id.
    pub leader_id: String,
    /// The members and their partitions.
    pub members: Vec<MemberDescription>,
    /// Each partition with a committed offset, and its lag.
    pub offsets: Vec<PartitionLag>,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// Its member id.
    pub member_id: String,
    /// Its static instance id, if any.
    pub instance_id: Option<String>,
    /// Its client id.
    pub client_id: String,
    /// Where it connects from, as Kafka shows it: "/IP".
    pub client_host: String,
    /// Its partitions.
    pub assignment: Vec<TopicPartition>,
    /// Its session timeout.
    pub session_timeout: Duration,
}

/// A partition's committed offset in a group and how far behind it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The committed offset (the next to consume).
    pub committed: i64,
    /// Metadata stored with the commit.
    pub metadata: String,
    /// When it was committed (ms since the Unix epoch).
    pub commit_time_ms: i64,
    /// The partition's end offset (high watermark), if it could be read.
    pub end_offset: Option<i64>,
    /// `end_offset - committed`, at least 0, when the end offset is known.
    pub lag: Option<i64>,
}

/// Flatten wire assignments into partitions.
pub(crate) fn partitions_of(assignment: Vec<v1::TopicPartitions>) -> Vec<TopicPartition> {
    assignment
        .into_iter()
        .flat_map(|topic| {
            let name = topic.topic;
            topic
                .partitions
                .into_iter()
                .map(move |partition| TopicPartition::new(name.clone(), partition))
        })
        .collect()
}

/// Lag of a committed offset behind the end offset; never negative.
pub(crate) fn lag(committed: i64, end_offset: i64) -> i64 {
    end_offset.saturating_sub(committed).max(0)
}

impl From<v1::MemberDescription> for MemberDescription {
    fn from(member: v1::MemberDescription) -> Self {
        MemberDescription {
            member_id: member.member_id,
            instance_id: Some(member.instance_id).filter(|id| !id.is_empty()),
            client_id: member.client_id,
            client_host: member.client_host,
            assignment: partitions_of(member.assignment),
            session_timeout: Duration::from_millis(u64::from(member.session_timeout_ms)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_distance_to_the_end_and_never_negative() {
        assert_eq!(lag(90, 100), 10);
        assert_eq!(lag(100, 100), 0);
        // A commit past the end (the log was truncated): no negative lag.
        assert_eq!(lag(120, 100), 0);
    }

    #[test]
    fn wire_messages_convert() {
        let member = MemberDescription::from(v1::MemberDescription {
            member_id: "m1".into(),
            instance_id: String::new(),
            client_id: "c".into(),
            assignment: vec![v1::TopicPartitions {
                topic: "t".into(),
                partitions: vec![0, 2],
            }],
            session_timeout_ms: 10_000,
            ..Default::default()
        });
        assert_eq!(member.instance_id, None);
        assert_eq!(
            member.assignment,
            [TopicPartition::new("t", 0), TopicPartition::new("t", 2)]
        );
        let status = ClusterStatus::from(v1::ClusterStatusResponse {
            controller: String::new(),
            brokers: vec![v1::BrokerStatus {
                id: 1,
                addr: String::new(),
                live: false,
                draining: false,
                partitions: 3,
            }],
            proxies: vec!["p:7070".into()],
            unowned_partitions: 3,
        });
        assert_eq!(status.controller, None);
        assert_eq!(status.brokers[0].address, None);
    }
}

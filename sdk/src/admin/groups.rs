//! Consumer-group administration: list, describe with lag, reset offsets,
//! delete.

use sluice_proto::v1;

use crate::admin::Admin;
use crate::admin::types::{GroupDescription, GroupSummary, PartitionLag, lag};
use crate::connection::groups_client;
use crate::consumer::commit_offsets;
use crate::error::{Error, Result};
use crate::types::{OffsetSpec, TopicPartition, list_offset};

/// Where [`Admin::reset_offsets`] moves a group's committed offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// The earliest offset still stored.
    Earliest,
    /// The end: the group skips everything written so far.
    Latest,
    /// This offset, kept within the partition's stored range.
    Offset(i64),
    /// The first record at or after this time (ms since the Unix epoch);
    /// the end where every record is older.
    Timestamp(i64),
}

/// The offset to commit for `to`, given the partition's earliest and
/// latest offsets and, for a timestamp, the offset found for it.
pub(crate) fn reset_target(to: ResetTo, earliest: i64, latest: i64, found: Option<i64>) -> i64 {
    match to {
        ResetTo::Earliest => earliest,
        ResetTo::Latest => latest,
        ResetTo::Offset(offset) => offset.clamp(earliest, latest.max(earliest)),
        ResetTo::Timestamp(_) => found.unwrap_or(latest),
    }
}

impl Admin {
    /// Every consumer group.
    pub async fn list_groups(&self) -> Result<Vec<GroupSummary>> {
        let answer = self
            .connection
            .call("list groups", self.deadline(), |channel| async move {
                groups_client(channel)
                    .list_groups(v1::ListGroupsRequest {})
                    .await
            })
            .await?;
        Ok(answer.groups.into_iter().map(Into::into).collect())
    }

    /// A group's members, assignment and committed offsets, with each
    /// partition's end offset and lag (`end - committed`).
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let request = v1::DescribeGroupRequest {
            group: group.to_owned(),
        };
        let description = self
            .connection
            .call("describe group", self.deadline(), |channel| {
                let request = request.clone();
                async move { groups_client(channel).describe_group(request).await }
            })
            .await?;
        let deadline = self.deadline();
        let ends = description.offsets.iter().map(|committed| {
            let connection = &self.connection;
            async move {
                list_offset(
                    connection,
                    deadline,
                    &committed.topic,
                    committed.partition,
                    OffsetSpec::Latest,
                )
                .await
                .ok()
                .flatten()
            }
        });
        let ends = futures::future::join_all(ends).await;
        let offsets = description
            .offsets
            .into_iter()
            .zip(ends)
            .map(|(committed, end_offset)| PartitionLag {
                topic: committed.topic,
                partition: committed.partition,
                committed: committed.offset,
                metadata: committed.metadata,
                commit_time_ms: committed.commit_time_ms,
                end_offset,
                lag: end_offset.map(|end| lag(committed.offset, end)),
            })
            .collect();
        Ok(GroupDescription {
            group: description.group,
            state: description.state,
            protocol_type: description.protocol_type,
            assignor: description.assignor,
            generation: description.generation,
            leader_id: description.leader_id,
            members: description.members.into_iter().map(Into::into).collect(),
            offsets,
        })
    }

    /// Move `group`'s committed offsets in every partition of `topic`, and
    /// return them. The group must have no active member: the coordinator
    /// refuses with GROUP_NOT_EMPTY otherwise.
    pub async fn reset_offsets(
        &self,
        group: &str,
        topic: &str,
        to: ResetTo,
    ) -> Result<Vec<(TopicPartition, i64)>> {
        let description = self.describe_topic(topic).await?;
        let deadline = self.deadline();
        let targets = description.partitions.iter().map(|partition| {
            let connection = &self.connection;
            let partition = partition.partition;
            async move {
                let offset = |spec| list_offset(connection, deadline, topic, partition, spec);
                let earliest = offset(OffsetSpec::Earliest).await?.unwrap_or(0);
                let latest = offset(OffsetSpec::Latest).await?.unwrap_or(earliest);
                let found = match to {
                    ResetTo::Timestamp(ms) => offset(OffsetSpec::Timestamp(ms)).await?,
                    ResetTo::Earliest | ResetTo::Latest | ResetTo::Offset(_) => None,
                };
                let target = reset_target(to, earliest, latest, found);
                Ok::<_, Error>((TopicPartition::new(topic, partition), target))
            }
        });
        let offsets = futures::future::try_join_all(targets).await?;
        commit_offsets(
            &self.connection,
            self.request_timeout,
            group,
            "",
            -1,
            &offsets,
        )
        .await?;
        Ok(offsets)
    }

    /// Delete a group without members, and its committed offsets.
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        let request = v1::DeleteGroupRequest {
            group: group.to_owned(),
        };
        self.connection
            .call("delete group", self.deadline(), |channel| {
                let request = request.clone();
                async move { groups_client(channel).delete_group(request).await }
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_targets() {
        assert_eq!(reset_target(ResetTo::Earliest, 10, 50, None), 10);
        assert_eq!(reset_target(ResetTo::Latest, 10, 50, None), 50);
        assert_eq!(reset_target(ResetTo::Offset(30), 10, 50, None), 30);
        assert_eq!(
            reset_target(ResetTo::Offset(3), 10, 50, None),
            10,
            "clamped up"
        );
        assert_eq!(
            reset_target(ResetTo::Offset(99), 10, 50, None),
            50,
            "clamped down"
        );
        assert_eq!(reset_target(ResetTo::Timestamp(5), 10, 50, Some(20)), 20);
        assert_eq!(
            reset_target(ResetTo::Timestamp(5), 10, 50, None),
            50,
            "every record is older: the end"
        );
    }
}

//! Consumer-group calls (groups.proto): join, the heartbeat task that
//! keeps the member alive and tells when to rejoin, commits, committed
//! offsets and leaving.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use sluice_proto::v1;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::connection::{Connection, Deadline, groups_client};
use crate::consumer::builder::ConsumerConfig;
use crate::error::{Error, Result};
use crate::types::TopicPartition;

/// What the heartbeat task learned about this member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemberStatus {
    /// In the group's current generation.
    Active,
    /// A rebalance started, or the generation is over: rejoin.
    Rejoin,
    /// The coordinator does not know this member: rejoin with a new id.
    RejoinAsNew,
    /// No heartbeat reached the coordinator for a session timeout: the
    /// member is presumably dropped; rejoin.
    Lost,
    /// Another consumer joined with the same static instance id and
    /// replaced this one: it must stop.
    Fenced,
}

/// Aborts its task when dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A member of the group's current generation.
#[derive(Debug)]
pub(crate) struct Membership {
    pub member_id: String,
    pub generation: i32,
    pub status: watch::Receiver<MemberStatus>,
    /// The heartbeat task, stopped when the membership is dropped.
    pub _heartbeat: AbortOnDrop,
}

/// The answer of a join.
#[derive(Debug)]
pub(crate) struct Joined {
    pub member_id: String,
    pub generation: i32,
    pub assignment: BTreeSet<TopicPartition>,
    pub heartbeat_interval: Duration,
}

fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

/// Join (or rejoin) `group` with `member_id` (empty the first time) and
/// wait for the rebalance to complete. A coordinator that no longer knows
/// the member id is asked again with an empty one.
pub(crate) async fn join_group(
    connection: &Connection,
    config: &ConsumerConfig,
    group: &str,
    topics: &[String],
    member_id: &str,
) -> Result<Joined> {
    let mut member_id = member_id.to_owned();
    let wait = config.rebalance_timeout.max(config.session_timeout) + config.request_timeout;
    let deadline = Deadline {
        attempt: wait,
        total: wait + config.request_timeout,
    };
    loop {
        let request = v1::JoinGroupRequest {
            group: group.to_owned(),
            member_id: member_id.clone(),
            instance_id: config.instance_id.clone().unwrap_or_default(),
            client_id: config.client_id.clone(),
            session_timeout_ms: millis(config.session_timeout),
            rebalance_timeout_ms: millis(config.rebalance_timeout),
            topics: topics.to_vec(),
            assignors: config.assignors.clone(),
            ..Default::default()
        };
        let answer = connection
            .call("join group", deadline, |channel| {
                let request = request.clone();
                async move { groups_client(channel).join_group(request).await }
            })
            .await;
        match answer {
            Ok(answer) => {
                let assignment = answer
                    .assignment
                    .iter()
                    .flat_map(|topic| {
                        topic
                            .partitions
                            .iter()
                            .map(|&partition| TopicPartition::new(topic.topic.clone(), partition))
                    })
                    .collect();
                let heartbeat_interval = match answer.heartbeat_interval_ms {
                    0 => config.session_timeout / 3,
                    ms => Duration::from_millis(u64::from(ms)),
                };
                tracing::info!(group, member_id = %answer.member_id, generation = answer.generation,
                    assignor = %answer.assignor, "joined the group");
                return Ok(Joined {
                    member_id: answer.member_id,
                    generation: answer.generation,
                    assignment,
                    heartbeat_interval,
                });
            }
            Err(error) if error.code() == Some("UNKNOWN_MEMBER_ID") && !member_id.is_empty() => {
                tracing::info!(group, %member_id, "the coordinator forgot this member; joining anew");
                member_id.clear();
            }
            Err(error) => return Err(error),
        }
    }
}

/// Start the heartbeat task of a member; its status changes once, when
/// the member must rejoin.
pub(crate) fn start_heartbeat(
    connection: Connection,
    config: &ConsumerConfig,
    group: String,
    joined: &Joined,
) -> Membership {
    let (status, receiver) = watch::channel(MemberStatus::Active);
    let heartbeat = Heartbeat {
        connection,
        group,
        member_id: joined.member_id.clone(),
        generation: joined.generation,
        interval: joined.heartbeat_interval,
        session_timeout: config.session_timeout,
    };
    let task = tokio::spawn(async move {
        let outcome = heartbeat.run().await;
        let _ = status.send(outcome);
    });
    Membership {
        member_id: joined.member_id.clone(),
        generation: joined.generation,
        status: receiver,
        _heartbeat: AbortOnDrop(task),
    }
}

struct Heartbeat {
    connection: Connection,
    group: String,
    member_id: String,
    generation: i32,
    interval: Duration,
    session_timeout: Duration,
}

impl Heartbeat {
    /// Heartbeat back to back (the server holds each call for the
    /// interval) until the member must rejoin; returns why.
    async fn run(self) -> MemberStatus {
        let mut last_success = Instant::now();
        let mut backoff = Backoff::default();
        // Long enough for the held call, short enough to notice a dead proxy.
        let attempt = self.interval + self.session_timeout / 2;
        loop {
            let started = Instant::now();
            let request = v1::HeartbeatRequest {
                group: self.group.clone(),
                member_id: self.member_id.clone(),
                generation: self.generation,
                max_wait_ms: millis(self.interval),
            };
            let answer = self
                .connection
                .call_once(attempt, |channel| async move {
                    groups_client(channel).heartbeat(request).await
                })
                .await;
            match answer {
                Ok(answer) if answer.rebalance => return MemberStatus::Rejoin,
                Ok(_) => {
                    last_success = Instant::now();
                    backoff = Backoff::default();
                    // A server that answered early does not make this spin.
                    tokio::time::sleep_until(started + self.interval).await;
                }
                Err(error) => {
                    match error.code() {
                        Some("ILLEGAL_GENERATION" | "REBALANCE_IN_PROGRESS") => {
                            return MemberStatus::Rejoin;
                        }
                        Some("UNKNOWN_MEMBER_ID") => return MemberStatus::RejoinAsNew,
                        Some("FENCED_INSTANCE_ID") => return MemberStatus::Fenced,
                        _ => {}
                    }
                    if last_success.elapsed() > self.session_timeout {
                        tracing::warn!(group = %self.group, %error,
                            "no heartbeat reached the coordinator for a session timeout; rejoining");
                        return MemberStatus::Lost;
                    }
                    tracing::debug!(group = %self.group, %error, "heartbeat failed; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }
}

/// Resolves once the member must rejoin; never without a membership.
pub(crate) async fn rejoin_needed(status: Option<&mut watch::Receiver<MemberStatus>>) {
    let Some(status) = status else {
        return std::future::pending().await;
    };
    loop {
        if *status.borrow_and_update() != MemberStatus::Active {
            return;
        }
        if status.changed().await.is_err() {
            // The task ended without a word (it cannot): rejoin anyway.
            return;
        }
    }
}

/// Commit `offsets` (the next offset to consume per partition) as
/// `member_id` of `generation`; an empty member id and generation -1
/// commit for a group without members.
pub(crate) async fn commit_offsets(
    connection: &Connection,
    timeout: Duration,
    group: &str,
    member_id: &str,
    generation: i32,
    offsets: &[(TopicPartition, i64)],
) -> Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let request = v1::CommitOffsetsRequest {
        group: group.to_owned(),
        member_id: member_id.to_owned(),
        generation,
        offsets: offsets
            .iter()
            .map(|(tp, offset)| v1::OffsetCommit {
                topic: tp.topic.clone(),
                partition: tp.partition,
                offset: *offset,
                metadata: String::new(),
            })
            .collect(),
    };
    connection
        .call("commit offsets", Deadline::request(timeout), |channel| {
            let request = request.clone();
            async move { groups_client(channel).commit_offsets(request).await }
        })
        .await?;
    Ok(())
}

/// The committed offsets of `partitions` in `group` (only those with one).
pub(crate) async fn fetch_offsets(
    connection: &Connection,
    timeout: Duration,
    group: &str,
    partitions: &[TopicPartition],
) -> Result<HashMap<TopicPartition, i64>> {
    let mut by_topic: HashMap<&str, Vec<u32>> = HashMap::new();
    for tp in partitions {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    let request = v1::FetchOffsetsRequest {
        group: group.to_owned(),
        partitions: by_topic
            .into_iter()
            .map(|(topic, partitions)| v1::TopicPartitions {
                topic: topic.to_owned(),
                partitions,
            })
            .collect(),
    };
    let answer = connection
        .call("fetch offsets", Deadline::request(timeout), |channel| {
            let request = request.clone();
            async move { groups_client(channel).fetch_offsets(request).await }
        })
        .await?;
    Ok(answer
        .offsets
        .into_iter()
        .map(|committed| {
            (
                TopicPartition::new(committed.topic, committed.partition),
                committed.offset,
            )
        })
        .filter(|(tp, _)| partitions.contains(tp))
        .collect())
}

/// Leave `group` at once.
pub(crate) async fn leave_group(
    connection: &Connection,
    timeout: Duration,
    group: &str,
    member_id: &str,
) -> Result<()> {
    let request = v1::LeaveGroupRequest {
        group: group.to_owned(),
        member_id: member_id.to_owned(),
        instance_id: String::new(),
    };
    connection
        .call("leave group", Deadline::request(timeout), |channel| {
            let request = request.clone();
            async move { groups_client(channel).leave_group(request).await }
        })
        .await?;
    Ok(())
}

/// Commit errors that only mean the generation moved on (expected while
/// rejoining).
pub(crate) fn is_generation_error(error: &Error) -> bool {
    matches!(
        error.code(),
        Some(
            "ILLEGAL_GENERATION"
                | "REBALANCE_IN_PROGRESS"
                | "UNKNOWN_MEMBER_ID"
                | "PARTITION_NOT_OWNED"
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rejoin_is_signalled_by_the_heartbeat_status() {
        let (status, mut receiver) = watch::channel(MemberStatus::Active);
        let waiting = tokio::spawn(async move {
            rejoin_needed(Some(&mut receiver)).await;
            *receiver.borrow()
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        let _ = status.send(MemberStatus::RejoinAsNew);
        assert_eq!(waiting.await.ok(), Some(MemberStatus::RejoinAsNew));
    }

    #[tokio::test]
    async fn no_membership_never_asks_to_rejoin() {
        let waited = tokio::time::timeout(Duration::from_millis(20), rejoin_needed(None)).await;
        assert!(waited.is_err());
    }
}

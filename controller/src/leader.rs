//! The controller leader's reconcile loop: watch topics, assignments,
//! brokers and drain requests in the metadata store; on every change (and
//! on a resync timer) ask the [`planner`](crate::planner) what to do and
//! write each change in a transaction that checks the assignment did not
//! change meanwhile. Several controllers may run; only the elected leader
//! runs this loop.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sluice_metadata::records::{self, Assignment, TopicRecord};
use sluice_metadata::{Compare, MetadataError, MetadataStore, Op, WatchEvent, keys};
use tokio_util::sync::CancellationToken;

use crate::planner::{self, Change, ClusterState};

/// How often the whole state is re-read, whatever the watch said.
const RESYNC: Duration = Duration::from_secs(10);

/// The election every controller campaigns in.
pub const ELECTION: &str = "/sluice/controller/leader";

/// `/sluice/draining/<broker>`: the broker is being drained.
pub fn draining_key(broker: u64) -> String {
    format!("{}/draining/{broker}", keys::ROOT)
}

fn parse_draining(key: &str) -> Option<u64> {
    key.strip_prefix(keys::ROOT)?
        .strip_prefix("/draining/")?
        .parse()
        .ok()
}

/// The planner's input plus the assignment versions needed to write safely.
#[derive(Debug, Default)]
pub struct Observed {
    pub state: ClusterState,
    versions: BTreeMap<(String, u32), u64>,
}

impl Observed {
    /// Reads everything under `/sluice/`.
    pub async fn read(metadata: &dyn MetadataStore) -> Result<Self, MetadataError> {
        let mut observed = Self::default();
        for (key, value) in metadata.list(&format!("{}/", keys::ROOT)).await? {
            observed.apply(WatchEvent::Put { key, value });
        }
        Ok(observed)
    }

    fn apply(&mut self, event: WatchEvent) {
        match event {
            WatchEvent::Put { key, value } => {
                if let Some(topic) = keys::parse_topic(&key) {
                    if let Ok(record) =
                        records::decode::<TopicRecord>(&key, "a topic", &value.value)
                    {
                        self.state
                            .topics
                            .insert(topic.to_owned(), record.partitions);
                    }
                } else if let Some((topic, partition)) = keys::parse_assignment(&key) {
                    if let Ok(assignment) =
                        records::decode::<Assignment>(&key, "an assignment", &value.value)
                    {
                        let at = (topic.to_owned(), partition);
                        self.state.assignments.insert(at.clone(), assignment);
                        self.versions.insert(at, value.version);
                    }
                } else if let Some(id) = keys::parse_broker(&key) {
                    self.state.live_brokers.insert(id);
                } else if let Some(id) = parse_draining(&key) {
                    self.state.draining.insert(id);
                }
            }
            WatchEvent::Delete { key } => {
                if let Some(topic) = keys::parse_topic(&key) {
                    self.state.topics.remove(topic);
                    self.state.assignments.retain(|(t, _), _| t != topic);
                    self.versions.retain(|(t, _), _| t != topic);
                } else if let Some((topic, partition)) = keys::parse_assignment(&key) {
                    let at = (topic.to_owned(), partition);
                    self.state.assignments.remove(&at);
                    self.versions.remove(&at);
                } else if let Some(id) = keys::parse_broker(&key) {
                    self.state.live_brokers.remove(&id);
                } else if let Some(id) = parse_draining(&key) {
                    self.state.draining.remove(&id);
                }
            }
        }
    }

    /// Writes `change` if the assignment is still what the plan saw.
    /// Returns whether it was written.
    pub async fn write(
        &self,
        metadata: &dyn MetadataStore,
        change: &Change,
    ) -> Result<bool, MetadataError> {
        let key = keys::assignment(&change.topic, change.partition);
        let compare = match self.versions.get(&(change.topic.clone(), change.partition)) {
            Some(version) if change.from.is_some() => Compare::Version(key.clone(), *version),
            _ => Compare::Absent(key.clone()),
        };
        // The topic must still exist: never resurrect a deleted one's partitions.
        let topic = metadata.get(&keys::topic(&change.topic)).await?;
        let Some(topic) = topic else { return Ok(false) };
        let ops = vec![Op::Put {
            key,
            value: records::encode(&change.to),
            lease: None,
        }];
        metadata
            .txn(
                vec![
                    compare,
                    Compare::Version(keys::topic(&change.topic), topic.version),
                ],
                ops,
            )
            .await
    }
}

/// Runs the reconcile loop until `lost` resolves (leadership lost) or
/// `cancel` is cancelled.
pub async fn lead(
    metadata: Arc<dyn MetadataStore>,
    lost: impl Future<Output = ()>,
    cancel: CancellationToken,
) -> Result<(), MetadataError> {
    tokio::pin!(lost);
    loop {
        // (Re)start from a full read, then follow the watch.
        let watch = metadata.watch(&format!("{}/", keys::ROOT)).await?;
        let mut observed = Observed::default();
        for (key, value) in watch.initial {
            observed.apply(WatchEvent::Put { key, value });
        }
        let mut events = watch.events;
        let resync = tokio::time::sleep(RESYNC);
        tokio::pin!(resync);
        loop {
            reconcile_once(metadata.as_ref(), &observed).await?;
            tokio::select! {
                _ = &mut lost => return Ok(()),
                _ = cancel.cancelled() => return Ok(()),
                _ = &mut resync => break,
                event = events.recv() => match event {
                    Some(event) => {
                        observed.apply(event);
                        // Take everything already queued before planning again.
                        while let Ok(event) = events.try_recv() {
                            observed.apply(event);
                        }
                    }
                    None => break,
                },
            }
        }
    }
}

async fn reconcile_once(
    metadata: &dyn MetadataStore,
    observed: &Observed,
) -> Result<(), MetadataError> {
    let plan = planner::reconcile(&observed.state);
    for change in &plan.changes {
        if observed.write(metadata, change).await? {
            tracing::info!(%change, "assigned");
        } else {
            tracing::debug!(%change, "assignment changed meanwhile; replanning");
        }
    }
    for stuck in &plan.unplaceable {
        tracing::warn!(topic = %stuck.topic, partition = stuck.partition, "no live broker to take this partition");
    }
    Ok(())
}

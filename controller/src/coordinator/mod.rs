//! The group coordinator (DESIGN.md, "Consumer groups"): membership and
//! rebalances of consumer groups ([`group`], no I/O) and their committed
//! offsets, kept in the metadata store:
//!
//! ```text
//! /sluice/groups/<group>/state                         the group after its last generation (JSON)
//! /sluice/groups/<group>/offsets/<topic>/<partition>   a committed offset (JSON)
//! ```
//!
//! One coordinator serves a cluster at a time: in the controller process
//! by default, elected apart from the controller's own leadership (its
//! election is [`ELECTION`]), so `sluice coordinator` can run it alone.
//! Every write is a transaction conditional on the coordinator's election
//! key: a coordinator that lost its lease cannot write over its successor.
//! A new coordinator loads each group from the store when it is first
//! asked about it, so members keep their ids, generation and partitions
//! across a failover and simply go on heartbeating.
//!
//! The same [`Group`] machine serves gRPC members (`sluice`, the
//! coordinator assigns) and Kafka's JoinGroup/SyncGroup (the leader assigns).

mod error;
pub mod group;
mod service;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sluice_metadata::records::{self, TopicRecord};
use sluice_metadata::{Compare, MetadataStore, Op, WatchEvent, keys};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

pub use error::GroupError;
pub use group::{Group, GroupState, JoinRequest, JoinResult, Protocol, SLUICE_PROTOCOL};
pub use service::{CoordinatorSlot, GroupsService, client_host};

/// The election coordinators campaign in.
pub const ELECTION: &str = "/sluice/coordinator/leader";

/// How often sessions and rebalance deadlines are checked.
const TICK: Duration = Duration::from_millis(100);

/// Most operations in one metadata transaction (etcd allows 128).
const TXN_OPS: usize = 64;

/// Prefix of every group's keys.
pub fn groups_prefix() -> String {
    format!("{}/groups/", keys::ROOT)
}

fn group_prefix(group: &str) -> String {
    format!("{}/groups/{group}/", keys::ROOT)
}

fn state_key(group: &str) -> String {
    format!("{}/groups/{group}/state", keys::ROOT)
}

fn offset_key(group: &str, topic: &str, partition: u32) -> String {
    format!("{}/groups/{group}/offsets/{topic}/{partition}", keys::ROOT)
}

/// Splits a key under [`groups_prefix`] into the group and the rest.
fn parse_group_key(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix(keys::ROOT)?
        .strip_prefix("/groups/")?
        .split_once('/')
}

/// A committed offset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub offset: i64,
    #[serde(default)]
    pub metadata: String,
    pub commit_time_ms: i64,
}

/// Group ids follow the topic name rules (they become metadata keys).
pub fn validate_group_id(group: &str) -> Result<(), GroupError> {
    crate::validate_topic_name(group).map_err(|e| match e {
        crate::AdminError::InvalidTopicName { reason, .. } => GroupError::InvalidGroupId {
            group: group.to_owned(),
            reason,
        },
        _ => GroupError::InvalidGroupId {
            group: group.to_owned(),
            reason: "invalid",
        },
    })
}

/// A group in memory: membership, committed offsets, and a signal for
/// long-polling heartbeats.
#[derive(Debug)]
struct Entry {
    group: Group,
    offsets: BTreeMap<(String, u32), Committed>,
    rebalances: watch::Sender<u64>,
}

impl Entry {
    fn new(group: Group) -> Self {
        let rebalances = watch::Sender::new(group.rebalances());
        Self {
            group,
            offsets: BTreeMap::new(),
            rebalances,
        }
    }

    /// Never joined, nothing committed: a group only asked about.
    fn is_blank(&self) -> bool {
        self.group.generation() == 0 && self.group.is_empty() && self.offsets.is_empty()
    }

    /// Wakes heartbeats if a rebalance started; the snapshot to save if
    /// the group changed.
    fn after_change(&mut self) -> Option<Vec<u8>> {
        let n = self.group.rebalances();
        self.rebalances.send_if_modified(|old| {
            let changed = *old != n;
            *old = n;
            changed
        });
        self.group
            .take_dirty()
            .then(|| serde_json::to_vec(&self.group.snapshot()).unwrap_or_default())
    }
}

#[derive(Debug, Default)]
struct Inner {
    groups: HashMap<String, Entry>,
    /// Partition counts of every topic.
    topics: BTreeMap<String, u32>,
    /// Numbers snapshots, so an older one never replaces a newer.
    snapshot_seq: u64,
    /// The newest snapshot of each group not saved yet (retried by the
    /// tick when a save fails).
    unsaved: HashMap<String, (u64, Vec<u8>)>,
    /// Per group: held across every read-check-write of the store (loading,
    /// commits, saves, deletion), so they apply in one order.
    io: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
}

/// The coordinator of every group of a cluster (or of a standalone
/// process), while this process holds [`ELECTION`].
#[derive(Debug)]
pub struct Coordinator {
    metadata: Arc<dyn MetadataStore>,
    /// The election key (and its version) every write is conditional on;
    /// `None` in standalone, where nobody else coordinates.
    fence: Option<(String, u64)>,
    inner: Mutex<Inner>,
    cancel: CancellationToken,
}

impl Coordinator {
    /// Starts coordinating: follows the topics, expires sessions, until `cancel`.
    pub async fn start(
        metadata: Arc<dyn MetadataStore>,
        fence: Option<(String, u64)>,
        cancel: CancellationToken,
    ) -> Result<Arc<Self>, GroupError> {
        let watch = metadata.watch(&keys::topics_prefix()).await?;
        let coordinator = Arc::new(Self {
            metadata,
            fence,
            inner: Mutex::default(),
            cancel,
        });
        {
            let mut inner = coordinator.lock();
            for (key, value) in watch.initial {
                if let Some(topic) = keys::parse_topic(&key)
                    && let Ok(record) =
                        records::decode::<TopicRecord>(&key, "a topic", &value.value)
                {
                    inner.topics.insert(topic.to_owned(), record.partitions);
                }
            }
        }
        let follower = Arc::clone(&coordinator);
        let mut events = watch.events;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = follower.cancel.cancelled() => break,
                    _ = tick.tick() => follower.tick().await,
                    event = events.recv() => match event {
                        Some(event) => follower.topic_changed(event).await,
                        None => {
                            tracing::error!("the topic watch ended; the coordinator stops");
                            follower.cancel.cancel();
                            break;
                        }
                    },
                }
            }
        });
        Ok(coordinator)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Never held across an await.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_active(&self) -> Result<(), GroupError> {
        if self.cancel.is_cancelled() {
            return Err(GroupError::NotCoordinator);
        }
        Ok(())
    }

    /// The fence as transaction conditions.
    fn compares(&self) -> Vec<Compare> {
        self.fence
            .iter()
            .map(|(key, version)| Compare::Version(key.clone(), *version))
            .collect()
    }

    /// Applies `ops` in transactions conditional on the fence; a failed
    /// condition means another coordinator took over.
    async fn write(&self, ops: Vec<Op>) -> Result<(), GroupError> {
        for chunk in ops.chunks(TXN_OPS) {
            if !self.metadata.txn(self.compares(), chunk.to_vec()).await? {
                tracing::warn!("lost the coordinator election key; no longer coordinating");
                self.cancel.cancel();
                return Err(GroupError::NotCoordinator);
            }
        }
        Ok(())
    }

    /// The lock that orders `group`'s store reads and writes.
    fn io_lock(&self, group: &str) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(self.lock().io.entry(group.to_owned()).or_default())
    }

    /// Makes sure `group` is in memory, loading it from the store.
    async fn load(&self, group: &str) -> Result<(), GroupError> {
        self.check_active()?;
        if self.lock().groups.contains_key(group) {
            return Ok(());
        }
        let io = self.io_lock(group);
        let _io = io.lock().await;
        self.load_locked(group).await
    }

    /// [`load`](Self::load), with the group's I/O lock held.
    async fn load_locked(&self, group: &str) -> Result<(), GroupError> {
        if self.lock().groups.contains_key(group) {
            return Ok(());
        }
        let stored = self.metadata.list(&group_prefix(group)).await?;
        let now = Instant::now();
        // The offsets' keys sort before the state's: build the group last.
        let mut snapshot = None;
        let mut offsets = BTreeMap::new();
        for (key, value) in stored {
            let Some((_, rest)) = parse_group_key(&key) else {
                continue;
            };
            if rest == "state" {
                match serde_json::from_slice(&value.value) {
                    Ok(found) => snapshot = Some(found),
                    Err(e) => {
                        tracing::warn!(%key, error = %e, "unreadable group state; starting the group afresh")
                    }
                }
            } else if let Some(at) = rest.strip_prefix("offsets/")
                && let Some((topic, partition)) = at.rsplit_once('/')
                && let Ok(partition) = partition.parse()
            {
                match serde_json::from_slice::<Committed>(&value.value) {
                    Ok(committed) => {
                        offsets.insert((topic.to_owned(), partition), committed);
                    }
                    Err(e) => {
                        tracing::warn!(%key, error = %e, "unreadable committed offset; ignored")
                    }
                }
            }
        }
        let group_state = match snapshot {
            Some(snapshot) => Group::restore(group, snapshot, now),
            None => Group::new(group),
        };
        let mut entry = Entry::new(group_state);
        entry.offsets = offsets;
        let mut inner = self.lock();
        let inner = &mut *inner;
        // Partitions nobody owns (the topic grew while no coordinator ran,
        // or the group was saved mid-rebalance): rebalance.
        if entry.group.uncovered(&inner.topics) {
            entry.group.partitions_changed(now);
        }
        inner.groups.insert(group.to_owned(), entry);
        Ok(())
    }

    /// Keeps a snapshot taken under the lock for [`save`](Self::save),
    /// unless a newer one is waiting.
    fn stash(inner: &mut Inner, group: &str, snapshot: Vec<u8>) {
        inner.snapshot_seq += 1;
        let seq = inner.snapshot_seq;
        inner.unsaved.insert(group.to_owned(), (seq, snapshot));
    }

    /// Saves the group's newest unsaved snapshot (if any). A failed save
    /// stays for the next tick to retry.
    async fn save(&self, group: &str) -> Result<(), GroupError> {
        let io = self.io_lock(group);
        let _io = io.lock().await;
        let pending = {
            let mut inner = self.lock();
            if !inner.groups.contains_key(group) {
                // Deleted meanwhile: nothing to bring back.
                inner.unsaved.remove(group);
                return Ok(());
            }
            inner.unsaved.get(group).cloned()
        };
        let Some((seq, snapshot)) = pending else {
            return Ok(());
        };
        self.write(vec![Op::Put {
            key: state_key(group),
            value: snapshot,
            lease: None,
        }])
        .await?;
        let mut inner = self.lock();
        if inner.unsaved.get(group).is_some_and(|(s, _)| *s == seq) {
            inner.unsaved.remove(group);
        }
        Ok(())
    }

    /// Runs `f` on the group (loaded), then saves the group if it changed.
    async fn with_group<T>(
        &self,
        group: &str,
        f: impl FnOnce(&mut Entry, &BTreeMap<String, u32>, Instant) -> T,
    ) -> Result<T, GroupError> {
        validate_group_id(group)?;
        self.load(group).await?;
        let (out, save) = {
            let mut inner = self.lock();
            let inner = &mut *inner;
            let entry = inner
                .groups
                .entry(group.to_owned())
                .or_insert_with(|| Entry::new(Group::new(group)));
            let out = f(entry, &inner.topics, Instant::now());
            let snapshot = entry.after_change();
            // Asking about a group that does not exist leaves nothing behind.
            if entry.is_blank() {
                inner.groups.remove(group);
            }
            let save = snapshot.is_some();
            if let Some(snapshot) = snapshot {
                Self::stash(inner, group, snapshot);
            }
            (out, save)
        };
        if save {
            self.save(group).await?;
        }
        Ok(out)
    }

    /// Joins `group` and waits for the rebalance to end.
    pub async fn join(&self, group: &str, request: JoinRequest) -> Result<JoinResult, GroupError> {
        if request.protocol_type == SLUICE_PROTOCOL {
            self.check_topics(&request.topics).await?;
        }
        let (tx, rx) = oneshot::channel();
        let id = if request.member_id.is_empty() {
            new_member_id(&request.client_id)
        } else {
            request.member_id.clone()
        };
        self.with_group(group, |entry, topics, now| {
            entry.group.join(request, id, tx, topics, now)
        })
        .await?;
        // The join may have completed the rebalance: save the generation.
        self.answer(group, rx).await
    }

    /// Waits for a join's or sync's answer, then saves the group if that
    /// answer came with a new generation.
    async fn answer<T>(
        &self,
        group: &str,
        rx: oneshot::Receiver<Result<T, GroupError>>,
    ) -> Result<T, GroupError> {
        let result = tokio::select! {
            result = rx => result.map_err(|_| GroupError::NotCoordinator)?,
            _ = self.cancel.cancelled() => Err(GroupError::NotCoordinator),
        };
        self.with_group(group, |_, _, _| ()).await?;
        result
    }

    /// Every subscribed topic exists (asking the store for one the topic
    /// watch has not shown yet).
    async fn check_topics(&self, topics: &BTreeSet<String>) -> Result<(), GroupError> {
        let missing: Vec<String> = {
            let inner = self.lock();
            topics
                .iter()
                .filter(|t| !inner.topics.contains_key(*t))
                .cloned()
                .collect()
        };
        for topic in missing {
            let key = keys::topic(&topic);
            let Some(value) = self.metadata.get(&key).await? else {
                return Err(GroupError::UnknownTopic { topic });
            };
            if let Ok(record) = records::decode::<TopicRecord>(&key, "a topic", &value.value) {
                self.lock().topics.insert(topic, record.partitions);
            }
        }
        Ok(())
    }

    /// A SyncGroup of a leader-assigned group (Kafka clients): this
    /// member's assignment bytes, with the group's protocol type and
    /// protocol.
    pub async fn sync(
        &self,
        group: &str,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Vec<u8>)>,
    ) -> Result<(Vec<u8>, String, String), GroupError> {
        let (tx, rx) = oneshot::channel();
        let (protocol_type, protocol) = self
            .with_group(group, |entry, _, now| {
                let g = &mut entry.group;
                g.sync(member_id, generation, assignments, tx, now);
                (
                    g.protocol_type().unwrap_or_default().to_owned(),
                    g.protocol().unwrap_or_default().to_owned(),
                )
            })
            .await?;
        let assignment = self.answer(group, rx).await?;
        Ok((assignment, protocol_type, protocol))
    }

    /// A heartbeat, held up to `max_wait` unless a rebalance starts.
    /// Returns whether the member must rejoin.
    pub async fn heartbeat(
        &self,
        group: &str,
        member_id: &str,
        generation: i32,
        max_wait: Duration,
    ) -> Result<bool, GroupError> {
        let (rejoin, mut rebalances, session) = self
            .with_group(group, |entry, _, now| {
                let rejoin = entry.group.heartbeat(member_id, generation, now);
                let session = entry.group.session_timeout(member_id);
                (rejoin, entry.rebalances.subscribe(), session)
            })
            .await?;
        let rejoin = rejoin?;
        // Held no longer than half the session: the member stays alive.
        let max_wait = max_wait.min(session.unwrap_or_default() / 2);
        if rejoin || max_wait.is_zero() {
            return Ok(rejoin);
        }
        rebalances.mark_unchanged();
        tokio::select! {
            _ = rebalances.changed() => {}
            _ = tokio::time::sleep(max_wait) => {}
            _ = self.cancel.cancelled() => return Err(GroupError::NotCoordinator),
        }
        // The member was alive until now.
        self.with_group(group, |entry, _, now| {
            entry.group.heartbeat(member_id, generation, now)
        })
        .await?
    }

    /// A member leaves at once: by id, or a static member by instance id
    /// (see [`Group::leaving_member`]).
    pub async fn leave(
        &self,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        self.with_group(group, |entry, topics, now| {
            let id = entry.group.leaving_member(member_id, instance_id)?;
            entry.group.leave(&id, topics, now)
        })
        .await?
    }

    /// Commits offsets (see [`Group::check_commit`] for who may).
    pub async fn commit(
        &self,
        group: &str,
        member_id: &str,
        generation: i32,
        offsets: Vec<(String, u32, i64, String)>,
    ) -> Result<(), GroupError> {
        if let Some((topic, partition, offset, _)) = offsets.iter().find(|o| o.2 < 0) {
            return Err(GroupError::InvalidRequest {
                reason: format!("offset {offset} for {topic}/{partition} is negative"),
            });
        }
        validate_group_id(group)?;
        let partitions: Vec<(String, u32)> =
            offsets.iter().map(|(t, p, _, _)| (t.clone(), *p)).collect();
        // Check, write and remember in one order per group: a commit
        // checked against a generation is written before the next
        // generation's owner can commit or read the partition.
        let io = self.io_lock(group);
        let _io = io.lock().await;
        self.check_active()?;
        self.load_locked(group).await?;
        {
            let mut inner = self.lock();
            let inner = &mut *inner;
            for (topic, partition) in &partitions {
                match inner.topics.get(topic) {
                    None => {
                        return Err(GroupError::UnknownTopic {
                            topic: topic.clone(),
                        });
                    }
                    Some(count) if partition >= count => {
                        return Err(GroupError::InvalidRequest {
                            reason: format!(
                                "partition {partition} is out of range for topic {topic:?}, which has {count} partitions"
                            ),
                        });
                    }
                    Some(_) => {}
                }
            }
            let entry = inner
                .groups
                .entry(group.to_owned())
                .or_insert_with(|| Entry::new(Group::new(group)));
            let checked =
                entry
                    .group
                    .check_commit(member_id, generation, &partitions, Instant::now());
            if entry.is_blank() {
                inner.groups.remove(group);
            }
            checked?;
        }
        let now_ms = now_ms();
        let committed: Vec<((String, u32), Committed)> = offsets
            .into_iter()
            .map(|(topic, partition, offset, metadata)| {
                (
                    (topic, partition),
                    Committed {
                        offset,
                        metadata,
                        commit_time_ms: now_ms,
                    },
                )
            })
            .collect();
        let ops = committed
            .iter()
            .map(|((topic, partition), c)| Op::Put {
                key: offset_key(group, topic, *partition),
                value: serde_json::to_vec(c).unwrap_or_default(),
                lease: None,
            })
            .collect();
        self.write(ops).await?;
        self.lock()
            .groups
            .entry(group.to_owned())
            .or_insert_with(|| Entry::new(Group::new(group)))
            .offsets
            .extend(committed);
        Ok(())
    }

    /// Committed offsets of `group`: of `partitions`, or all.
    pub async fn fetch_offsets(
        &self,
        group: &str,
        partitions: Option<&[(String, u32)]>,
    ) -> Result<Vec<((String, u32), Committed)>, GroupError> {
        self.with_group(group, |entry, _, _| match partitions {
            None => entry
                .offsets
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            Some(wanted) => wanted
                .iter()
                .filter_map(|k| entry.offsets.get(k).map(|v| (k.clone(), v.clone())))
                .collect(),
        })
        .await
    }

    /// Every group known to the store or in memory: (name, state, members, protocol type).
    pub async fn list(&self) -> Result<Vec<GroupSummary>, GroupError> {
        self.check_active()?;
        let stored = self.metadata.list(&groups_prefix()).await?;
        let names: BTreeSet<String> = stored
            .iter()
            .filter_map(|(key, _)| parse_group_key(key).map(|(g, _)| g.to_owned()))
            .chain(self.lock().groups.keys().cloned())
            .collect();
        let mut out = Vec::new();
        for name in names {
            match self.describe(&name).await {
                Ok(details) => out.push(details.summary),
                // Deleted meanwhile.
                Err(GroupError::UnknownGroup { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// A group's summary, members (id, instance, client, assignment,
    /// session timeout) and committed offsets.
    pub async fn describe(&self, group: &str) -> Result<GroupDetails, GroupError> {
        self.with_group(group, |entry, _, _| {
            if entry.is_blank() {
                return Err(GroupError::UnknownGroup {
                    group: group.to_owned(),
                });
            }
            let g = &entry.group;
            let summary = GroupSummary {
                group: group.to_owned(),
                state: g.state(),
                members: g.members().count(),
                protocol_type: g.protocol_type().unwrap_or_default().to_owned(),
            };
            let members = g
                .members()
                .map(|m| MemberSummary {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone().unwrap_or_default(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    assignment: m.assignment.clone(),
                    session_timeout: m.session_timeout,
                    metadata: m
                        .protocols
                        .iter()
                        .find(|p| Some(p.name.as_str()) == g.protocol())
                        .map(|p| p.metadata.clone())
                        .unwrap_or_default(),
                    assignment_bytes: m.assignment_bytes.clone(),
                })
                .collect();
            let offsets = entry
                .offsets
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Ok(GroupDetails {
                summary,
                generation: g.generation(),
                assignor: g.protocol().unwrap_or_default().to_owned(),
                leader: g.leader().unwrap_or_default().to_owned(),
                members,
                offsets,
            })
        })
        .await?
    }

    /// Deletes a group without members, with its offsets.
    pub async fn delete(&self, group: &str) -> Result<(), GroupError> {
        validate_group_id(group)?;
        let io = self.io_lock(group);
        let _io = io.lock().await;
        self.check_active()?;
        self.load_locked(group).await?;
        {
            let inner = self.lock();
            // Loading makes a blank entry for a group nobody joined or
            // committed to: that group does not exist either.
            match inner.groups.get(group).filter(|entry| !entry.is_blank()) {
                None => {
                    return Err(GroupError::UnknownGroup {
                        group: group.to_owned(),
                    });
                }
                Some(entry) if !entry.group.is_empty() => {
                    return Err(GroupError::NotEmpty {
                        group: group.to_owned(),
                        members: entry.group.members().count(),
                    });
                }
                Some(_) => {}
            }
        }
        self.write(vec![Op::DeletePrefix {
            prefix: group_prefix(group),
        }])
        .await?;
        let mut inner = self.lock();
        inner.groups.remove(group);
        inner.unsaved.remove(group);
        Ok(())
    }

    /// Expires sessions and rebalance deadlines, saving changed groups (and
    /// retrying saves that failed).
    async fn tick(&self) {
        let unsaved: Vec<String> = {
            let mut inner = self.lock();
            let inner = &mut *inner;
            let now = Instant::now();
            let mut changed = Vec::new();
            for (name, entry) in inner.groups.iter_mut() {
                let dropped = entry.group.tick(&inner.topics, now);
                if !dropped.is_empty() {
                    tracing::info!(group = %name, members = ?dropped, "dropped members (session or rebalance timeout)");
                }
                if let Some(snapshot) = entry.after_change() {
                    changed.push((name.clone(), snapshot));
                }
            }
            for (name, snapshot) in changed {
                Self::stash(inner, &name, snapshot);
            }
            inner.unsaved.keys().cloned().collect()
        };
        for group in unsaved {
            if let Err(e) = self.save(&group).await {
                tracing::warn!(%group, error = %e, "cannot save the group; retrying");
            }
        }
    }

    /// A topic was created, grown or deleted: groups subscribed to it rebalance.
    async fn topic_changed(&self, event: WatchEvent) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let topic = match &event {
            WatchEvent::Put { key, value } => {
                let Some(topic) = keys::parse_topic(key) else {
                    return;
                };
                let Ok(record) = records::decode::<TopicRecord>(key, "a topic", &value.value)
                else {
                    return;
                };
                if inner.topics.insert(topic.to_owned(), record.partitions)
                    == Some(record.partitions)
                {
                    return;
                }
                topic.to_owned()
            }
            WatchEvent::Delete { key } => {
                let Some(topic) = keys::parse_topic(key) else {
                    return;
                };
                inner.topics.remove(topic);
                topic.to_owned()
            }
        };
        let now = Instant::now();
        for entry in inner.groups.values_mut() {
            if entry.group.subscribed(&topic) {
                entry.group.partitions_changed(now);
                // Saved by the next tick if it changed anything durable.
                let n = entry.group.rebalances();
                entry.rebalances.send_replace(n);
            }
        }
    }
}

/// One line of `group list`.
#[derive(Clone, Debug)]
pub struct GroupSummary {
    pub group: String,
    pub state: GroupState,
    pub members: usize,
    pub protocol_type: String,
}

/// A member as `group describe` shows it.
#[derive(Clone, Debug)]
pub struct MemberSummary {
    pub member_id: String,
    pub instance_id: String,
    pub client_id: String,
    pub client_host: String,
    pub assignment: group::Partitions,
    pub session_timeout: Duration,
    /// Leader-assigned groups: the member's metadata for the group's
    /// protocol, and its assignment as its leader encoded it.
    pub metadata: Vec<u8>,
    pub assignment_bytes: Vec<u8>,
}

/// Everything `group describe` shows.
#[derive(Clone, Debug)]
pub struct GroupDetails {
    pub summary: GroupSummary,
    pub generation: i32,
    pub assignor: String,
    pub leader: String,
    pub members: Vec<MemberSummary>,
    pub offsets: Vec<((String, u32), Committed)>,
}

fn new_member_id(client_id: &str) -> String {
    let prefix = if client_id.is_empty() {
        "member"
    } else {
        client_id
    };
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

//! One consumer group's membership, as a plain struct with no I/O: Kafka's
//! classic group protocol (generations, rebalances, session timeouts,
//! static members), for two kinds of members:
//!
//! - `sluice` (gRPC clients): the coordinator assigns partitions itself when
//!   a rebalance's join phase ends, so a join answers with the assignment
//!   and the group goes straight to `Stable`.
//! - any other protocol type (Kafka's `consumer`): the leader assigns, and
//!   the group waits in `CompletingRebalance` for its SyncGroup.
//!
//! ```text
//!  Empty ──join──▶ PreparingRebalance ──all joined / rebalance timeout──▶ (assign)
//!    ▲                    ▲                                                 │
//!    │                    └──── join, leave, session expiry, new partitions ┤
//!    └──── last member gone                           Stable ◀── sync ◀─ CompletingRebalance
//! ```
//!
//! Every method takes the time; waiters (a blocked JoinGroup or SyncGroup)
//! are oneshot senders answered from inside. The coordinator
//! ([`super::Coordinator`]) does the I/O: persisting the group after each
//! new generation and committing offsets.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::GroupError;
use crate::assign::{self, Subscription};

/// The protocol type of Sluice's own (gRPC) members.
pub const SLUICE_PROTOCOL: &str = "sluice";

/// Session timeouts a member may ask for.
pub const MIN_SESSION_TIMEOUT: Duration = Duration::from_millis(500);
pub const MAX_SESSION_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Most members one group may have.
pub const MAX_MEMBERS: usize = 1000;
/// Member ids replaced by a static member's new incarnation, remembered
/// so the old incarnation is told it is fenced.
const FENCED_KEPT: usize = 1000;

/// The assignors of `sluice` groups, in the default order of preference.
pub const ASSIGNORS: [&str; 3] = [assign::STICKY, assign::RANGE, assign::ROUND_ROBIN];

/// Where a group is in its life (Kafka's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// One protocol a member supports: an assignor name and, for Kafka
/// members, its subscription metadata (opaque here).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protocol {
    pub name: String,
    #[serde(default)]
    pub metadata: Vec<u8>,
}

impl Protocol {
    /// A protocol without metadata (`sluice` members' assignors).
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            metadata: Vec::new(),
        }
    }
}

/// A member's partitions: by topic, sorted.
pub type Partitions = BTreeMap<String, Vec<u32>>;

/// What a finished join tells a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinResult {
    pub member_id: String,
    pub generation: i32,
    pub protocol: String,
    pub leader_id: String,
    /// For the leader of a leader-assigned group: every member and its
    /// protocol metadata, so it can compute the assignment.
    pub members: Vec<(String, Option<String>, Vec<u8>)>,
    /// `sluice` groups: this member's partitions.
    pub assignment: Partitions,
    pub session_timeout: Duration,
    /// A leader-assigned group's leader came back as a static member and
    /// nothing changed: it must not assign again (Kafka's KIP-814), only
    /// fetch its assignment with SyncGroup.
    pub skip_assignment: bool,
}

/// A join waiting for the rebalance to end.
pub type JoinWaiter = oneshot::Sender<Result<JoinResult, GroupError>>;
/// A SyncGroup waiting for the leader's assignment: the member's bytes.
pub type SyncWaiter = oneshot::Sender<Result<Vec<u8>, GroupError>>;

/// A join request.
#[derive(Clone, Debug)]
pub struct JoinRequest {
    /// Empty on a first join.
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    /// Where the member connects from.
    pub client_host: String,
    pub session_timeout: Duration,
    /// Zero: the session timeout.
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    /// Preferred first.
    pub protocols: Vec<Protocol>,
    /// `sluice` members: the topics they subscribe to.
    pub topics: BTreeSet<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    #[serde(default)]
    pub client_host: String,
    #[serde(with = "millis")]
    pub session_timeout: Duration,
    #[serde(with = "millis")]
    pub rebalance_timeout: Duration,
    pub protocols: Vec<Protocol>,
    pub topics: BTreeSet<String>,
    /// This generation's partitions (`sluice` groups).
    pub assignment: Partitions,
    /// This generation's assignment bytes (leader-assigned groups).
    #[serde(default)]
    pub assignment_bytes: Vec<u8>,
    #[serde(skip)]
    session_deadline: Option<Instant>,
    /// Rejoined in the rebalance under way.
    #[serde(skip)]
    joined: bool,
    #[serde(skip)]
    join_waiter: Option<JoinWaiter>,
    #[serde(skip)]
    sync_waiter: Option<SyncWaiter>,
}

impl Member {
    fn alive_until(&self, now: Instant) -> Instant {
        self.session_deadline
            .unwrap_or_else(|| now + self.session_timeout)
    }
}

/// The durable part of a group, saved after every new generation so a new
/// coordinator continues where the old one was (members keep their ids
/// and assignments and simply go on heartbeating).
#[derive(Debug, Serialize, Deserialize)]
pub struct GroupSnapshot {
    /// The state when saved (older snapshots have none: stable).
    #[serde(default)]
    pub state: Option<GroupState>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: Vec<Member>,
}

/// One group's membership.
#[derive(Debug)]
pub struct Group {
    name: String,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// When a rebalance stops waiting for members to rejoin.
    rebalance_deadline: Option<Instant>,
    /// Bumped whenever a rebalance starts: long-polling heartbeats wake up.
    rebalances: u64,
    /// A new generation (or a membership change) not saved yet.
    dirty: bool,
    /// Ids of static members' replaced incarnations, oldest first.
    fenced: std::collections::VecDeque<(String, String)>,
}

impl Group {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            rebalance_deadline: None,
            rebalances: 0,
            dirty: false,
            fenced: std::collections::VecDeque::new(),
        }
    }

    /// A group as a previous coordinator saved it: stable, every member's
    /// session starting now.
    pub fn restore(name: &str, snapshot: GroupSnapshot, now: Instant) -> Self {
        let mut group = Self::new(name);
        let snapshot_state = snapshot.state;
        group.generation = snapshot.generation;
        group.protocol_type = snapshot.protocol_type;
        group.protocol = snapshot.protocol;
        group.leader = snapshot.leader;
        for mut member in snapshot.members {
            member.session_deadline = Some(now + member.session_timeout);
            group.members.insert(member.id.clone(), member);
        }
        let synced = group.protocol_type.as_deref() == Some(SLUICE_PROTOCOL)
            || group
                .members
                .values()
                .all(|m| !m.assignment_bytes.is_empty());
        let stable = snapshot_state.is_none_or(|s| s == GroupState::Stable);
        if group.members.is_empty() {
            group.state = GroupState::Empty;
        } else if synced && stable {
            group.state = GroupState::Stable;
        } else {
            // Saved mid-rebalance, or a leader-assigned group saved before
            // its leader's SyncGroup: the members rejoin.
            group.state = GroupState::Stable;
            group.prepare_rebalance(now);
        }
        group
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn rebalances(&self) -> u64 {
        self.rebalances
    }

    /// Takes the "needs saving" flag.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    pub fn snapshot(&self) -> GroupSnapshot {
        GroupSnapshot {
            state: Some(self.state),
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            members: self
                .members
                .values()
                .map(|m| Member {
                    id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout: m.session_timeout,
                    rebalance_timeout: m.rebalance_timeout,
                    protocols: m.protocols.clone(),
                    topics: m.topics.clone(),
                    assignment: m.assignment.clone(),
                    assignment_bytes: m.assignment_bytes.clone(),
                    session_deadline: None,
                    joined: false,
                    join_waiter: None,
                    sync_waiter: None,
                })
                .collect(),
        }
    }

    /// A stable `sluice` group leaves some partition of its topics without
    /// an owner (`partitions` are the topics' counts).
    pub fn uncovered(&self, partitions: &BTreeMap<String, u32>) -> bool {
        if self.state != GroupState::Stable
            || self.protocol_type.as_deref() != Some(SLUICE_PROTOCOL)
        {
            return false;
        }
        let topics: BTreeSet<&String> = self.members.values().flat_map(|m| &m.topics).collect();
        topics.into_iter().any(|topic| {
            let count = partitions.get(topic).copied().unwrap_or(0) as usize;
            let owned: BTreeSet<u32> = self
                .members
                .values()
                .filter_map(|m| m.assignment.get(topic))
                .flatten()
                .copied()
                .collect();
            owned.len() < count
        })
    }

    /// A member's session timeout.
    pub fn session_timeout(&self, member_id: &str) -> Option<Duration> {
        self.members.get(member_id).map(|m| m.session_timeout)
    }

    /// The error for a member id not in the group: fenced if a static
    /// member's newer incarnation replaced it.
    fn unknown(&self, member_id: &str) -> GroupError {
        match self.fenced.iter().find(|(id, _)| id == member_id) {
            Some((_, instance)) => GroupError::FencedInstance {
                instance: instance.clone(),
            },
            None => GroupError::UnknownMember {
                member: member_id.to_owned(),
            },
        }
    }

    /// The topics any member subscribes to.
    pub fn subscribed(&self, topic: &str) -> bool {
        self.members.values().any(|m| m.topics.contains(topic))
    }

    /// Handles a JoinGroup. `new_member_id` names a member joining for the
    /// first time; `partitions` are the topics' partition counts (for
    /// `sluice` groups' assignment).
    pub fn join(
        &mut self,
        request: JoinRequest,
        new_member_id: String,
        waiter: JoinWaiter,
        partitions: &BTreeMap<String, u32>,
        now: Instant,
    ) {
        if let Err(e) = self.check_join(&request) {
            let _ = waiter.send(Err(e));
            return;
        }
        let rebalance_timeout = if request.rebalance_timeout.is_zero() {
            request.session_timeout
        } else {
            request.rebalance_timeout
        };
        let id = if request.member_id.is_empty() {
            // A static member coming back replaces its previous incarnation
            // and keeps its partitions: no rebalance if nothing changed.
            let previous = request.instance_id.as_ref().and_then(|instance| {
                self.members
                    .values()
                    .find(|m| m.instance_id.as_ref() == Some(instance))
                    .map(|m| m.id.clone())
            });
            match previous.and_then(|old| self.members.remove(&old).map(|m| (old, m))) {
                Some((old, mut member)) => {
                    let instance = request.instance_id.clone().unwrap_or_default();
                    self.fenced.push_back((old.clone(), instance));
                    if self.fenced.len() > FENCED_KEPT {
                        self.fenced.pop_front();
                    }
                    if let Some(w) = member.join_waiter.take() {
                        let _ = w.send(Err(GroupError::FencedInstance {
                            instance: request.instance_id.clone().unwrap_or_default(),
                        }));
                    }
                    if self.leader.as_deref() == Some(old.as_str()) {
                        self.leader = Some(new_member_id.clone());
                    }
                    let same_subscription =
                        member.protocols == request.protocols && member.topics == request.topics;
                    member.id = new_member_id.clone();
                    member.client_id = request.client_id.clone();
                    member.client_host = request.client_host.clone();
                    member.session_timeout = request.session_timeout;
                    member.rebalance_timeout = rebalance_timeout;
                    member.protocols = request.protocols.clone();
                    member.topics = request.topics.clone();
                    member.session_deadline = Some(now + request.session_timeout);
                    self.members.insert(new_member_id.clone(), member);
                    self.dirty = true;
                    // Kafka's rule for a leader-assigned group: only a
                    // change of the protocol the group would select
                    // rebalances. The metadata is the client's own, and
                    // may differ in every incarnation (cooperative-sticky
                    // and Java clients put the partitions a member owns
                    // and its generation in it, which a restarted one has
                    // not).
                    let unchanged = if request.protocol_type == SLUICE_PROTOCOL {
                        same_subscription
                    } else {
                        self.select_protocol() == self.protocol
                    };
                    if unchanged && self.state == GroupState::Stable {
                        let mut result = self.result_for(&new_member_id);
                        result.skip_assignment = !result.members.is_empty();
                        let _ = waiter.send(Ok(result));
                        return;
                    }
                    new_member_id
                }
                None => {
                    self.members.insert(
                        new_member_id.clone(),
                        Member {
                            id: new_member_id.clone(),
                            instance_id: request.instance_id.clone(),
                            client_id: request.client_id.clone(),
                            client_host: request.client_host.clone(),
                            session_timeout: request.session_timeout,
                            rebalance_timeout,
                            protocols: request.protocols.clone(),
                            topics: request.topics.clone(),
                            assignment: Partitions::new(),
                            assignment_bytes: Vec::new(),
                            session_deadline: Some(now + request.session_timeout),
                            joined: false,
                            join_waiter: None,
                            sync_waiter: None,
                        },
                    );
                    new_member_id
                }
            }
        } else {
            let missing = self.unknown(&request.member_id);
            let leader = self.leader.as_deref() == Some(request.member_id.as_str());
            let stable = self.state == GroupState::Stable;
            let Some(member) = self.members.get_mut(&request.member_id) else {
                let _ = waiter.send(Err(missing));
                return;
            };
            // Kafka's rule for a leader-assigned group: a member (not the
            // leader) rejoining a stable group with the same protocols
            // gets the current generation back (it lost the answer, say);
            // anything else is a change the group rebalances for.
            if stable
                && !leader
                && request.protocol_type != SLUICE_PROTOCOL
                && member.protocols == request.protocols
            {
                member.session_deadline = Some(now + member.session_timeout);
                let result = self.result_for(&request.member_id);
                let _ = waiter.send(Ok(result));
                return;
            }
            member.protocols = request.protocols.clone();
            member.topics = request.topics.clone();
            member.session_timeout = request.session_timeout;
            member.rebalance_timeout = rebalance_timeout;
            member.client_id = request.client_id.clone();
            member.client_host = request.client_host.clone();
            request.member_id.clone()
        };
        self.protocol_type = Some(request.protocol_type.clone());
        if let Some(member) = self.members.get_mut(&id) {
            if let Some(old) = member.join_waiter.replace(waiter) {
                let _ = old.send(Err(GroupError::RebalanceInProgress));
            }
            member.joined = true;
        }
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now);
            // The joining member is in already.
            if let Some(member) = self.members.get_mut(&id) {
                member.joined = true;
            }
        }
        self.maybe_complete_join(partitions, now);
    }

    fn check_join(&self, request: &JoinRequest) -> Result<(), GroupError> {
        if request.session_timeout < MIN_SESSION_TIMEOUT
            || request.session_timeout > MAX_SESSION_TIMEOUT
        {
            return Err(GroupError::InvalidSessionTimeout {
                ms: request.session_timeout.as_millis() as u64,
            });
        }
        if request.rebalance_timeout > MAX_SESSION_TIMEOUT {
            return Err(GroupError::InvalidRequest {
                reason: format!(
                    "rebalance timeout {} ms is over the maximum of 30 minutes",
                    request.rebalance_timeout.as_millis()
                ),
            });
        }
        let joining = request.member_id.is_empty()
            && request.instance_id.as_ref().is_none_or(|i| {
                !self
                    .members
                    .values()
                    .any(|m| m.instance_id.as_ref() == Some(i))
            });
        if joining && self.members.len() >= MAX_MEMBERS {
            return Err(GroupError::InvalidRequest {
                reason: format!("the group has the maximum of {MAX_MEMBERS} members"),
            });
        }
        if request.protocols.is_empty() {
            return Err(GroupError::InconsistentProtocol {
                reason: "the member lists no protocol (assignor)".into(),
            });
        }
        if request.protocol_type == SLUICE_PROTOCOL {
            if request.topics.is_empty() {
                return Err(GroupError::InvalidRequest {
                    reason: "a member must subscribe to at least one topic".into(),
                });
            }
            if !request
                .protocols
                .iter()
                .any(|p| ASSIGNORS.contains(&p.name.as_str()))
            {
                return Err(GroupError::UnknownAssignor {
                    asked: request.protocols.iter().map(|p| p.name.clone()).collect(),
                });
            }
        }
        let others: Vec<&Member> = self
            .members
            .values()
            .filter(|m| {
                m.id != request.member_id
                    && (request.instance_id.is_none() || m.instance_id != request.instance_id)
            })
            .collect();
        if others.is_empty() {
            return Ok(());
        }
        if let Some(kind) = &self.protocol_type
            && *kind != request.protocol_type
        {
            return Err(GroupError::InconsistentProtocol {
                reason: format!(
                    "the group's members use protocol type {kind:?}, this member {:?}",
                    request.protocol_type
                ),
            });
        }
        let sluice = request.protocol_type == SLUICE_PROTOCOL;
        let shared = request.protocols.iter().any(|p| {
            (!sluice || ASSIGNORS.contains(&p.name.as_str()))
                && others
                    .iter()
                    .all(|m| m.protocols.iter().any(|q| q.name == p.name))
        });
        if !shared {
            return Err(GroupError::InconsistentProtocol {
                reason: format!(
                    "no assignor in [{}] is supported by every member of the group",
                    request
                        .protocols
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        Ok(())
    }

    /// Starts a rebalance: every member must rejoin (heartbeats tell them).
    pub fn prepare_rebalance(&mut self, now: Instant) {
        // A leader-assigned group waiting for SyncGroup: those waiting
        // must rejoin.
        for member in self.members.values_mut() {
            member.joined = false;
            if let Some(w) = member.sync_waiter.take() {
                let _ = w.send(Err(GroupError::RebalanceInProgress));
            }
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.state = GroupState::PreparingRebalance;
        self.rebalance_deadline = Some(now + timeout);
        self.rebalances += 1;
    }

    /// Ends the join phase when every member has rejoined.
    fn maybe_complete_join(&mut self, partitions: &BTreeMap<String, u32>, now: Instant) {
        if self.state == GroupState::PreparingRebalance && self.members.values().all(|m| m.joined) {
            self.complete_join(partitions, now);
        }
    }

    /// New generation: drop members that did not rejoin, pick the
    /// protocol and leader, assign (`sluice`), answer the joins.
    fn complete_join(&mut self, partitions: &BTreeMap<String, u32>, now: Instant) {
        // A member whose join call was abandoned (its caller went away)
        // never learns its id or partitions: it is not part of the generation.
        self.members
            .retain(|_, m| m.joined && !m.join_waiter.as_ref().is_some_and(|w| w.is_closed()));
        self.rebalance_deadline = None;
        self.generation = self.generation.wrapping_add(1).max(1);
        self.dirty = true;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        self.protocol = self.select_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        for member in self.members.values_mut() {
            member.joined = false;
            member.session_deadline = Some(now + member.session_timeout);
        }
        let server_assigns = self.protocol_type.as_deref() == Some(SLUICE_PROTOCOL);
        if server_assigns {
            self.assign(partitions);
            self.state = GroupState::Stable;
        } else {
            for member in self.members.values_mut() {
                member.assignment_bytes.clear();
            }
            self.state = GroupState::CompletingRebalance;
        }
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.result_for(&id);
            if let Some(waiter) = self.members.get_mut(&id).and_then(|m| m.join_waiter.take()) {
                let _ = waiter.send(Ok(result));
            }
        }
    }

    /// The protocol most members prefer among those all support (ties: the
    /// order of the first member by id).
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|p| p.name == *name))
            })
            .filter(|name| {
                self.protocol_type.as_deref() != Some(SLUICE_PROTOCOL) || ASSIGNORS.contains(name)
            })
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(choice) = member
                .protocols
                .iter()
                .map(|p| p.name.as_str())
                .find(|name| candidates.contains(name))
            {
                *votes.entry(choice).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        candidates
            .into_iter()
            .find(|c| votes.get(c) == Some(&best))
            .map(str::to_owned)
    }

    /// The coordinator's assignment (`sluice` groups), sticky to what each
    /// member owned.
    fn assign(&mut self, partitions: &BTreeMap<String, u32>) {
        let name = self.protocol.clone().unwrap_or_else(|| ASSIGNORS[0].into());
        let subscriptions: BTreeMap<String, Subscription> = self
            .members
            .values()
            .map(|m| {
                let owned = m
                    .assignment
                    .iter()
                    .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
                    .collect();
                (
                    m.id.clone(),
                    Subscription {
                        topics: m.topics.clone(),
                        owned,
                    },
                )
            })
            .collect();
        let assignment = assign::assign(&name, &subscriptions, partitions).unwrap_or_default();
        for member in self.members.values_mut() {
            let mut mine = Partitions::new();
            for (topic, partition) in assignment.get(&member.id).into_iter().flatten() {
                mine.entry(topic.clone()).or_default().push(*partition);
            }
            for list in mine.values_mut() {
                list.sort_unstable();
            }
            member.assignment = mine;
        }
    }

    fn result_for(&self, id: &str) -> JoinResult {
        let member = self.members.get(id);
        let leader_id = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if id == leader_id && self.protocol_type.as_deref() != Some(SLUICE_PROTOCOL) {
            self.members
                .values()
                .map(|m| {
                    let metadata = m
                        .protocols
                        .iter()
                        .find(|p| p.name == protocol)
                        .map(|p| p.metadata.clone())
                        .unwrap_or_default();
                    (m.id.clone(), m.instance_id.clone(), metadata)
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            member_id: id.to_owned(),
            generation: self.generation,
            protocol,
            leader_id,
            members,
            assignment: member.map(|m| m.assignment.clone()).unwrap_or_default(),
            session_timeout: member.map(|m| m.session_timeout).unwrap_or_default(),
            skip_assignment: false,
        }
    }

    /// A SyncGroup (leader-assigned groups): the leader brings every
    /// member's assignment; the others wait for it.
    pub fn sync(
        &mut self,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Vec<u8>)>,
        waiter: SyncWaiter,
        now: Instant,
    ) {
        if let Err(e) = self.check_member(member_id, generation) {
            let _ = waiter.send(Err(e));
            return;
        }
        match self.state {
            GroupState::PreparingRebalance => {
                let _ = waiter.send(Err(GroupError::RebalanceInProgress));
            }
            GroupState::Stable => {
                let bytes = self
                    .members
                    .get(member_id)
                    .map(|m| m.assignment_bytes.clone())
                    .unwrap_or_default();
                let _ = waiter.send(Ok(bytes));
            }
            GroupState::Empty => {
                let _ = waiter.send(Err(GroupError::UnknownMember {
                    member: member_id.to_owned(),
                }));
            }
            GroupState::CompletingRebalance => {
                if let Some(member) = self.members.get_mut(member_id) {
                    member.session_deadline = Some(now + member.session_timeout);
                    member.sync_waiter = Some(waiter);
                }
                if self.leader.as_deref() == Some(member_id) {
                    let mut given: BTreeMap<String, Vec<u8>> = assignments.into_iter().collect();
                    for member in self.members.values_mut() {
                        member.assignment_bytes = given.remove(&member.id).unwrap_or_default();
                        if let Some(w) = member.sync_waiter.take() {
                            let _ = w.send(Ok(member.assignment_bytes.clone()));
                        }
                    }
                    self.state = GroupState::Stable;
                    self.dirty = true;
                }
            }
        }
    }

    /// Whether `member_id` is a member of `generation`.
    pub fn check_member(&self, member_id: &str, generation: i32) -> Result<&Member, GroupError> {
        let member = self
            .members
            .get(member_id)
            .ok_or_else(|| self.unknown(member_id))?;
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration {
                got: generation,
                current: self.generation,
            });
        }
        Ok(member)
    }

    /// A heartbeat: keeps the member alive. Returns whether it must rejoin.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        generation: i32,
        now: Instant,
    ) -> Result<bool, GroupError> {
        let missing = self.unknown(member_id);
        let member = self.members.get_mut(member_id).ok_or(missing)?;
        member.session_deadline = Some(now + member.session_timeout);
        if self.state == GroupState::PreparingRebalance {
            return Ok(true);
        }
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration {
                got: generation,
                current: self.generation,
            });
        }
        Ok(false)
    }

    /// The member to leave: by id, or (empty id) the static member with
    /// `instance_id`; with both, they must agree (Kafka's rule: an old
    /// incarnation cannot make the new one leave).
    pub fn leaving_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<String, GroupError> {
        let Some(instance) = instance_id else {
            return Ok(member_id.to_owned());
        };
        let current = self
            .members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance));
        match current {
            Some(m) if member_id.is_empty() || m.id == member_id => Ok(m.id.clone()),
            Some(_) => Err(GroupError::FencedInstance {
                instance: instance.to_owned(),
            }),
            None if member_id.is_empty() => Err(GroupError::UnknownMember {
                member: format!("(instance {instance})"),
            }),
            None => Ok(member_id.to_owned()),
        }
    }

    /// A member leaves: the others rebalance.
    pub fn leave(
        &mut self,
        member_id: &str,
        partitions: &BTreeMap<String, u32>,
        now: Instant,
    ) -> Result<(), GroupError> {
        let missing = self.unknown(member_id);
        let mut member = self.members.remove(member_id).ok_or(missing)?;
        let gone = || GroupError::UnknownMember {
            member: member_id.to_owned(),
        };
        if let Some(w) = member.join_waiter.take() {
            let _ = w.send(Err(gone()));
        }
        if let Some(w) = member.sync_waiter.take() {
            let _ = w.send(Err(gone()));
        }
        self.member_gone(partitions, now);
        Ok(())
    }

    fn member_gone(&mut self, partitions: &BTreeMap<String, u32>, now: Instant) {
        self.dirty = true;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.generation = self.generation.wrapping_add(1).max(1);
            self.protocol = None;
            self.leader = None;
            self.rebalance_deadline = None;
            self.rebalances += 1;
            return;
        }
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now);
        }
        self.maybe_complete_join(partitions, now);
    }

    /// Checks an offset commit: a member of the current generation that
    /// owns the partitions (`sluice` groups), or an administrative commit
    /// (empty member id, generation -1) to a group without members.
    pub fn check_commit(
        &mut self,
        member_id: &str,
        generation: i32,
        partitions: &[(String, u32)],
        now: Instant,
    ) -> Result<(), GroupError> {
        if member_id.is_empty() && generation < 0 {
            if self.members.is_empty() {
                return Ok(());
            }
            return Err(GroupError::NotEmpty {
                group: self.name.clone(),
                members: self.members.len(),
            });
        }
        let state = self.state;
        let sluice = self.protocol_type.as_deref() == Some(SLUICE_PROTOCOL);
        let current = self.generation;
        let missing = self.unknown(member_id);
        let member = self.members.get_mut(member_id).ok_or(missing)?;
        if generation != current {
            return Err(GroupError::IllegalGeneration {
                got: generation,
                current,
            });
        }
        if state == GroupState::CompletingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        member.session_deadline = Some(now + member.session_timeout);
        if sluice {
            for (topic, partition) in partitions {
                let owned = member
                    .assignment
                    .get(topic)
                    .is_some_and(|ps| ps.contains(partition));
                if !owned {
                    return Err(GroupError::NotOwned {
                        member: member_id.to_owned(),
                        generation,
                        topic: topic.clone(),
                        partition: *partition,
                    });
                }
            }
        }
        Ok(())
    }

    /// Time passes: expire sessions, end a rebalance whose members did not
    /// all rejoin in time. Returns the ids of the members dropped (session
    /// expired, or not rejoined within the rebalance timeout).
    pub fn tick(&mut self, partitions: &BTreeMap<String, u32>, now: Instant) -> Vec<String> {
        // A member blocked in a join is alive: its session restarts with
        // the new generation.
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                let waiting = m.join_waiter.as_ref().is_some_and(|w| !w.is_closed());
                !waiting && m.alive_until(now) <= now
            })
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            if let Some(mut member) = self.members.remove(id)
                && let Some(w) = member.sync_waiter.take()
            {
                let _ = w.send(Err(GroupError::UnknownMember { member: id.clone() }));
            }
        }
        if !expired.is_empty() {
            self.member_gone(partitions, now);
        }
        let mut dropped = expired;
        if self.state == GroupState::PreparingRebalance
            && self.rebalance_deadline.is_some_and(|d| d <= now)
        {
            dropped.extend(
                self.members
                    .values()
                    .filter(|m| !m.joined)
                    .map(|m| m.id.clone()),
            );
            self.complete_join(partitions, now);
        }
        dropped
    }

    /// A subscribed topic's partition count changed: rebalance a stable
    /// `sluice` group so the new partitions get owners.
    pub fn partitions_changed(&mut self, now: Instant) {
        if self.state == GroupState::Stable
            && self.protocol_type.as_deref() == Some(SLUICE_PROTOCOL)
        {
            self.prepare_rebalance(now);
        }
    }
}

/// Durations as whole milliseconds in snapshots.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests;

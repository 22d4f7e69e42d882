//! Partition placement as pure functions: from the topics (desired) and the
//! current assignments and brokers (observed), the assignment changes the
//! controller should write. No I/O and no clock: the reconcile loop around it
//! reads etcd, calls these, and writes each [`Change`] with a compare on the
//! old assignment.
//!
//! Rules, in the order they win:
//! 1. Only an *eligible* broker (live, not draining) is ever given a partition.
//! 2. Every move, first assignment included, increases the partition's epoch
//!    by exactly one (a first assignment gets epoch 1).
//! 3. [`reconcile`] places what has no eligible home (unassigned, on a dead
//!    broker, on a draining broker) and moves nothing else.
//! 4. Placement balances by partition count: the broker with the fewest
//!    partitions, then the fewest of the same topic, then the lowest id.
//! 5. [`rebalance`] also evens out the eligible brokers (within one
//!    partition of each other) with the fewest moves, each partition moving
//!    at most once.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use sluice_metadata::records::Assignment;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

/// What the planner sees of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterState {
    /// Desired: each topic's partition count, by topic name.
    pub topics: BTreeMap<String, u32>,
    /// Observed: the assignment of each `(topic, partition)`. A partition of
    /// `topics` missing here is unassigned. Entries for a topic not in
    /// `topics`, or a partition beyond its count, are ignored by the plans.
    pub assignments: BTreeMap<(String, u32), Assignment>,
    /// Brokers registered with a live lease.
    pub live_brokers: BTreeSet<u64>,
    /// Brokers being drained: they get no partitions and lose those they hold.
    /// A draining broker that is not live is simply dead.
    pub draining: BTreeSet<u64>,
}

impl ClusterState {
    /// Whether `broker` may be given partitions: live and not draining.
    pub fn is_eligible(&self, broker: u64) -> bool {
        self.live_brokers.contains(&broker) && !self.draining.contains(&broker)
    }

    /// The brokers that may be given partitions, in id order.
    pub fn eligible_brokers(&self) -> impl Iterator<Item = u64> + '_ {
        self.live_brokers
            .iter()
            .copied()
            .filter(|broker| !self.draining.contains(broker))
    }

    /// Every partition of every topic with its assignment, in (topic,
    /// partition) order.
    fn partitions(&self) -> impl Iterator<Item = (&str, u32, Option<Assignment>)> + '_ {
        self.topics.iter().flat_map(move |(topic, &count)| {
            (0..count).map(move |partition| {
                let current = self.assignments.get(&(topic.clone(), partition)).copied();
                (topic.as_str(), partition, current)
            })
        })
    }
}

/// One assignment to write: `partition` of `topic` goes from `from` (`None`:
/// unassigned) to `to`, whose epoch is one more than `from`'s (1 for a first
/// assignment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub topic: String,
    pub partition: u32,
    pub from: Option<Assignment>,
    pub to: Assignment,
}

impl Change {
    /// The change that gives `partition` to `broker` under the next epoch.
    fn new(topic: &str, partition: u32, from: Option<Assignment>, broker: u64) -> Self {
        Self {
            topic: topic.to_owned(),
            partition,
            from,
            to: Assignment {
                broker,
                epoch: next_epoch(from),
            },
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}: ", self.topic, self.partition)?;
        match self.from {
            Some(from) => write!(f, "broker {} (epoch {})", from.broker, from.epoch)?,
            None => f.write_str("unassigned")?,
        }
        write!(f, " -> broker {} (epoch {})", self.to.broker, self.to.epoch)
    }
}

/// The epoch of the next assignment after `from`. Saturates rather than
/// wrapping: 2^64 moves cannot happen, so only a corrupt record gets there.
fn next_epoch(from: Option<Assignment>) -> u64 {
    from.map_or(1, |from| from.epoch.saturating_add(1))
}

/// A partition that needs a broker but has none to go to, because no broker
/// is eligible. It stays where it is (`current`) until one is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unplaceable {
    pub topic: String,
    pub partition: u32,
    pub current: Option<Assignment>,
}

/// What the controller should do: the changes to write, in order, and the
/// partitions it could not place (to log).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub unplaceable: Vec<Unplaceable>,
}

impl Plan {
    /// Nothing to write and nothing to report.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.unplaceable.is_empty()
    }
}

/// Why an explicit partition move was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("topic {topic:?} does not exist")]
    UnknownTopic { topic: String },
    #[error(
        "topic {topic:?} has no partition {partition}: it has {partitions} (0 to {})",
        .partitions.saturating_sub(1)
    )]
    PartitionOutOfRange {
        topic: String,
        partition: u32,
        partitions: u32,
    },
    #[error(
        "partition {topic}/{partition} is not assigned to any broker yet; \
         the controller assigns it when a broker is live, move it after that"
    )]
    NotAssigned { topic: String, partition: u32 },
    #[error(
        "broker {broker} is not live (not registered, or its lease expired); \
         live brokers: {}", broker_list(.live)
    )]
    BrokerNotLive { broker: u64, live: Vec<u64> },
    #[error("broker {broker} is being drained and cannot take partitions; choose another broker")]
    BrokerDraining { broker: u64 },
    #[error("partition {topic}/{partition} is already on broker {broker}")]
    AlreadyOnBroker {
        topic: String,
        partition: u32,
        broker: u64,
    },
}

/// `1, 2, 3`, or `none`.
fn broker_list(brokers: &[u64]) -> String {
    if brokers.is_empty() {
        return "none".to_owned();
    }
    brokers
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Partition counts per broker and per (topic, broker), over the eligible
/// brokers only, kept up to date as a plan is built.
struct Loads<'a> {
    /// Every eligible broker, including those with no partitions.
    total: BTreeMap<u64, usize>,
    per_topic: BTreeMap<(&'a str, u64), usize>,
}

impl<'a> Loads<'a> {
    fn new(eligible: impl Iterator<Item = u64>) -> Self {
        Self {
            total: eligible.map(|broker| (broker, 0)).collect(),
            per_topic: BTreeMap::new(),
        }
    }

    fn add(&mut self, topic: &'a str, broker: u64) {
        *self.total.entry(broker).or_default() += 1;
        *self.per_topic.entry((topic, broker)).or_default() += 1;
    }

    fn remove(&mut self, topic: &'a str, broker: u64) {
        if let Some(count) = self.total.get_mut(&broker) {
            *count = count.saturating_sub(1);
        }
        if let Some(count) = self.per_topic.get_mut(&(topic, broker)) {
            *count = count.saturating_sub(1);
        }
    }

    fn of_topic(&self, topic: &str, broker: u64) -> usize {
        self.per_topic.get(&(topic, broker)).copied().unwrap_or(0)
    }

    /// Where a partition of `topic` should go: fewest partitions, then fewest
    /// of `topic`, then lowest id. `None` when no broker is eligible.
    fn best_for(&self, topic: &str) -> Option<u64> {
        self.total
            .iter()
            .min_by_key(|&(&broker, &load)| (load, self.of_topic(topic, broker), broker))
            .map(|(&broker, _)| broker)
    }

    /// The most loaded broker (lowest id on ties) and the least loaded
    /// (lowest id on ties), with their loads.
    fn extremes(&self) -> Option<((u64, usize), (u64, usize))> {
        let most = self
            .total
            .iter()
            .max_by_key(|&(&broker, &load)| (load, std::cmp::Reverse(broker)))?;
        let least = self
            .total
            .iter()
            .min_by_key(|&(&broker, &load)| (load, broker))?;
        Some(((*most.0, *most.1), (*least.0, *least.1)))
    }
}

/// Places every partition that has no eligible home — unassigned, or on a
/// broker that is dead or draining — on the best eligible broker (rule 4),
/// one at a time in (topic, partition) order, counting each placement before
/// the next. Partitions already on an eligible broker never move, however
/// unbalanced: evening them out is [`rebalance`]'s job. With no eligible
/// broker, the homeless partitions are returned as unplaceable and left where
/// they are.
pub fn reconcile(state: &ClusterState) -> Plan {
    let mut loads = Loads::new(state.eligible_brokers());
    let mut homeless = Vec::new();
    for (topic, partition, current) in state.partitions() {
        match current {
            Some(assignment) if state.is_eligible(assignment.broker) => {
                loads.add(topic, assignment.broker);
            }
            _ => homeless.push((topic, partition, current)),
        }
    }
    let mut plan = Plan::default();
    for (topic, partition, current) in homeless {
        match loads.best_for(topic) {
            Some(broker) => {
                loads.add(topic, broker);
                plan.changes
                    .push(Change::new(topic, partition, current, broker));
            }
            None => plan.unplaceable.push(Unplaceable {
                topic: topic.to_owned(),
                partition,
                current,
            }),
        }
    }
    plan
}

/// [`reconcile`], then evens out the eligible brokers: while the most loaded
/// has two or more partitions more than the least loaded, moves one from the
/// first to the second (lowest id on ties). This makes the fewest moves that
/// bring every eligible broker within one partition of the others. The
/// partition moved is the one whose topic is most concentrated on the source
/// compared with the target (then the lowest (topic, partition)), so each
/// topic stays spread. No partition moves twice, including one that
/// reconcile already placed.
pub fn rebalance(state: &ClusterState) -> Plan {
    let mut plan = reconcile(state);
    let placed: BTreeMap<(&str, u32), u64> = plan
        .changes
        .iter()
        .map(|change| ((change.topic.as_str(), change.partition), change.to.broker))
        .collect();

    let mut loads = Loads::new(state.eligible_brokers());
    // Partitions that may still move, by the broker holding them.
    let mut movable: BTreeMap<u64, BTreeMap<(&str, u32), Assignment>> = BTreeMap::new();
    for (topic, partition, current) in state.partitions() {
        if let Some(&broker) = placed.get(&(topic, partition)) {
            loads.add(topic, broker);
        } else if let Some(assignment) = current
            && state.is_eligible(assignment.broker)
        {
            loads.add(topic, assignment.broker);
            movable
                .entry(assignment.broker)
                .or_default()
                .insert((topic, partition), assignment);
        }
    }

    while let Some(((source, most), (target, least))) = loads.extremes() {
        if most <= least + 1 {
            break;
        }
        // The source can only have reached `least + 2` with partitions it
        // held from the start (a broker that was given any is at most
        // `least + 1`), so it has a movable one; stop rather than loop if not.
        let Some(candidates) = movable.get_mut(&source) else {
            break;
        };
        let mut best: Option<((&str, u32), isize)> = None;
        for &(topic, partition) in candidates.keys() {
            let spread =
                loads.of_topic(topic, source) as isize - loads.of_topic(topic, target) as isize;
            if best.is_none_or(|(_, best_spread)| spread > best_spread) {
                best = Some(((topic, partition), spread));
            }
        }
        let Some(((topic, partition), _)) = best else {
            break;
        };
        let Some(current) = candidates.remove(&(topic, partition)) else {
            break;
        };
        loads.remove(topic, source);
        loads.add(topic, target);
        plan.changes
            .push(Change::new(topic, partition, Some(current), target));
    }
    plan
}

/// An operator's explicit move of `topic`/`partition` to `to_broker`. Refused
/// with a [`PlanError`] that says what to do when the topic or partition does
/// not exist, the partition is not assigned yet, the target is not live or is
/// draining, or the partition is already there. Balance is not considered:
/// the operator asked for this broker.
pub fn move_partition(
    state: &ClusterState,
    topic: &str,
    partition: u32,
    to_broker: u64,
) -> Result<Change, PlanError> {
    let Some(&partitions) = state.topics.get(topic) else {
        return Err(PlanError::UnknownTopic {
            topic: topic.to_owned(),
        });
    };
    if partition >= partitions {
        return Err(PlanError::PartitionOutOfRange {
            topic: topic.to_owned(),
            partition,
            partitions,
        });
    }
    let Some(&current) = state.assignments.get(&(topic.to_owned(), partition)) else {
        return Err(PlanError::NotAssigned {
            topic: topic.to_owned(),
            partition,
        });
    };
    if !state.live_brokers.contains(&to_broker) {
        return Err(PlanError::BrokerNotLive {
            broker: to_broker,
            live: state.live_brokers.iter().copied().collect(),
        });
    }
    if state.draining.contains(&to_broker) {
        return Err(PlanError::BrokerDraining { broker: to_broker });
    }
    if current.broker == to_broker {
        return Err(PlanError::AlreadyOnBroker {
            topic: topic.to_owned(),
            partition,
            broker: to_broker,
        });
    }
    Ok(Change::new(topic, partition, Some(current), to_broker))
}

/// How many of `assignments` each broker holds, for `sluice cluster status`.
/// Counts every entry given; a broker with none is absent (merge in the live
/// brokers to show them with 0).
pub fn broker_loads(assignments: &BTreeMap<(String, u32), Assignment>) -> BTreeMap<u64, usize> {
    let mut loads = BTreeMap::new();
    for assignment in assignments.values() {
        *loads.entry(assignment.broker).or_default() += 1;
    }
    loads
}

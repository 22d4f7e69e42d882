//! Property tests of the planner over random topics, assignments (some on
//! dead, draining or unknown brokers, some stale) and broker sets. A failure
//! prints the shrunk `ClusterState` that breaks the property.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use sluice_metadata::records::Assignment;

use super::tests::apply;
use super::*;

const MAX_TOPICS: usize = 4;
const MAX_PARTITIONS: u32 = 12;

/// Topics `t0`.. with 0 to 12 partitions; one assignment slot per possible
/// partition (slots past a topic's count become stale entries); brokers 1–8
/// live or not, some draining, and assignments also naming brokers 9–10
/// that never registered.
fn cluster_state() -> impl Strategy<Value = ClusterState> {
    (
        prop::collection::vec(0..=MAX_PARTITIONS, 0..=MAX_TOPICS),
        prop::collection::vec(
            prop::option::of((1u64..=10, 1u64..1_000)),
            MAX_TOPICS * MAX_PARTITIONS as usize,
        ),
        prop::collection::btree_set(1u64..=8, 0..=6),
        prop::collection::btree_set(1u64..=8, 0..=3),
    )
        .prop_map(|(counts, slots, live_brokers, draining)| {
            let mut state = ClusterState {
                live_brokers,
                draining,
                ..ClusterState::default()
            };
            for (index, &count) in counts.iter().enumerate() {
                state.topics.insert(format!("t{index}"), count);
            }
            for (slot, assignment) in slots.into_iter().enumerate() {
                if let Some((broker, epoch)) = assignment {
                    let topic = format!("t{}", slot / MAX_PARTITIONS as usize);
                    let partition = slot as u32 % MAX_PARTITIONS;
                    state
                        .assignments
                        .insert((topic, partition), Assignment { broker, epoch });
                }
            }
            state
        })
}

/// Partitions of `state.topics` per eligible broker, eligible brokers with
/// none included; stale entries and other brokers are left out.
fn eligible_loads(state: &ClusterState) -> BTreeMap<u64, usize> {
    let mut loads: BTreeMap<u64, usize> = state.eligible_brokers().map(|b| (b, 0)).collect();
    for (_, _, current) in state.partitions() {
        if let Some(count) = current.and_then(|a| loads.get_mut(&a.broker)) {
            *count += 1;
        }
    }
    loads
}

/// The partitions of `state.topics` not on an eligible broker.
fn homeless(state: &ClusterState) -> Vec<Unplaceable> {
    state
        .partitions()
        .filter(|(_, _, current)| !current.is_some_and(|a| state.is_eligible(a.broker)))
        .map(|(topic, partition, current)| Unplaceable {
            topic: topic.to_owned(),
            partition,
            current,
        })
        .collect()
}

/// The fewest moves that bring `loads` within one of each other: the most
/// loaded brokers keep `q + 1`, the rest `q`, and the excess must move.
fn fewest_balancing_moves(loads: &BTreeMap<u64, usize>) -> usize {
    if loads.is_empty() {
        return 0;
    }
    let total: usize = loads.values().sum();
    let (quota, extra) = (total / loads.len(), total % loads.len());
    let mut sorted: Vec<usize> = loads.values().copied().collect();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted
        .iter()
        .enumerate()
        .map(|(rank, &load)| load.saturating_sub(quota + usize::from(rank < extra)))
        .sum()
}

/// Checks what every plan must satisfy: each change names a partition of a
/// topic once, replaces its current assignment, goes to an eligible broker
/// and raises the epoch by exactly one.
fn check_changes(state: &ClusterState, plan: &Plan) -> Result<(), TestCaseError> {
    let mut seen = BTreeSet::new();
    for change in &plan.changes {
        let key = (change.topic.clone(), change.partition);
        prop_assert!(seen.insert(key.clone()), "{} moved twice", change);
        let count = state.topics.get(&change.topic).copied().unwrap_or(0);
        prop_assert!(change.partition < count, "{} is not a partition", change);
        prop_assert_eq!(state.assignments.get(&key).copied(), change.from);
        prop_assert!(
            state.is_eligible(change.to.broker),
            "{} to an ineligible broker",
            change
        );
        prop_assert_eq!(change.to.epoch, change.from.map_or(1, |f| f.epoch + 1));
    }
    Ok(())
}

proptest! {
    #[test]
    fn reconcile_puts_every_partition_on_an_eligible_broker_when_one_exists(
        state in cluster_state()
    ) {
        let plan = reconcile(&state);
        check_changes(&state, &plan)?;
        let after = apply(&state, &plan);
        if state.eligible_brokers().next().is_some() {
            prop_assert!(plan.unplaceable.is_empty());
            prop_assert!(homeless(&after).is_empty(), "left homeless: {:?}", homeless(&after));
        } else {
            prop_assert!(plan.changes.is_empty());
            prop_assert_eq!(&plan.unplaceable, &homeless(&state));
        }
        // Reconcile is not rebalance: only the homeless move.
        let homeless_before: BTreeSet<(String, u32)> = homeless(&state)
            .into_iter()
            .map(|u| (u.topic, u.partition))
            .collect();
        for change in &plan.changes {
            prop_assert!(homeless_before.contains(&(change.topic.clone(), change.partition)));
        }
        prop_assert_eq!(plan.changes.len() + plan.unplaceable.len(), homeless_before.len());
        // A second pass finds nothing more to do.
        prop_assert!(reconcile(&after).changes.is_empty());
    }

    #[test]
    fn reconcile_places_each_partition_on_a_least_loaded_broker(state in cluster_state()) {
        let plan = reconcile(&state);
        let mut current = state.clone();
        for change in &plan.changes {
            let loads = eligible_loads(&current);
            let least = loads.values().copied().min();
            prop_assert_eq!(loads.get(&change.to.broker).copied(), least, "{}", change);
            current = apply(&current, &Plan { changes: vec![change.clone()], ..Plan::default() });
        }
    }

    #[test]
    fn rebalance_evens_out_brokers_with_fewest_moves_and_no_partition_twice(
        state in cluster_state()
    ) {
        let plan = rebalance(&state);
        check_changes(&state, &plan)?;
        let after = apply(&state, &plan);
        let loads = eligible_loads(&after);
        if let (Some(most), Some(least)) = (loads.values().max(), loads.values().min()) {
            prop_assert!(most - least <= 1, "loads after rebalance: {:?}", loads);
            prop_assert!(homeless(&after).is_empty());
        }
        let reconciled = reconcile(&state);
        let fewest = fewest_balancing_moves(&eligible_loads(&apply(&state, &reconciled)));
        prop_assert_eq!(plan.changes.len(), reconciled.changes.len() + fewest);
        prop_assert_eq!(&plan.unplaceable, &reconciled.unplaceable);
        prop_assert!(rebalance(&after).changes.is_empty());
    }

    #[test]
    fn plans_are_deterministic(state in cluster_state()) {
        let copy = state.clone();
        prop_assert_eq!(reconcile(&state), reconcile(&copy));
        prop_assert_eq!(rebalance(&state), rebalance(&copy));
    }

    #[test]
    fn move_partition_accepts_exactly_the_valid_moves(
        state in cluster_state(),
        topic in 0..=MAX_TOPICS,
        partition in 0..=MAX_PARTITIONS,
        to_broker in 1u64..=10,
    ) {
        let topic = format!("t{topic}");
        let current = state.assignments.get(&(topic.clone(), partition)).copied();
        let valid = state.topics.get(&topic).is_some_and(|&count| partition < count)
            && current.is_some_and(|a| a.broker != to_broker)
            && state.is_eligible(to_broker);
        match move_partition(&state, &topic, partition, to_broker) {
            Ok(change) => {
                prop_assert!(valid);
                prop_assert_eq!(change.from, current);
                prop_assert_eq!(change.to.broker, to_broker);
                prop_assert_eq!(change.to.epoch, current.map_or(0, |a| a.epoch) + 1);
            }
            Err(error) => prop_assert!(!valid, "refused a valid move: {}", error),
        }
    }
}

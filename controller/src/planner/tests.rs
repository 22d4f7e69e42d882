//! Unit tests of the planner: one test per placement rule, on small layouts
//! written out by hand.

use std::collections::{BTreeMap, BTreeSet};

use sluice_metadata::records::Assignment;

use super::*;

/// A state from `(topic, partitions)`, `(topic, partition, broker, epoch)`,
/// live broker ids and draining broker ids.
pub(super) fn state(
    topics: &[(&str, u32)],
    assignments: &[(&str, u32, u64, u64)],
    live: &[u64],
    draining: &[u64],
) -> ClusterState {
    ClusterState {
        topics: topics
            .iter()
            .map(|&(name, count)| (name.to_owned(), count))
            .collect(),
        assignments: assignments
            .iter()
            .map(|&(topic, partition, broker, epoch)| {
                ((topic.to_owned(), partition), Assignment { broker, epoch })
            })
            .collect(),
        live_brokers: live.iter().copied().collect(),
        draining: draining.iter().copied().collect(),
    }
}

/// `count` partitions of `topic` laid out round-robin over `brokers`, epoch 1.
fn round_robin(
    topic: &'static str,
    count: u32,
    brokers: &[u64],
) -> Vec<(&'static str, u32, u64, u64)> {
    (0..count)
        .map(|p| (topic, p, brokers[p as usize % brokers.len()], 1))
        .collect()
}

/// The state after writing `plan`'s changes, checking each one's `from` is
/// the assignment it replaces.
pub(super) fn apply(state: &ClusterState, plan: &Plan) -> ClusterState {
    let mut next = state.clone();
    for change in &plan.changes {
        let key = (change.topic.clone(), change.partition);
        assert_eq!(next.assignments.get(&key).copied(), change.from, "{change}");
        next.assignments.insert(key, change.to);
    }
    next
}

fn loads(state: &ClusterState) -> BTreeMap<u64, usize> {
    broker_loads(&state.assignments)
}

fn loads_of(pairs: &[(u64, usize)]) -> BTreeMap<u64, usize> {
    pairs.iter().copied().collect()
}

/// Every change raises the epoch by exactly one (first assignment: 1).
fn assert_epochs_step_by_one(plan: &Plan) {
    for change in &plan.changes {
        let expected = change.from.map_or(1, |from| from.epoch + 1);
        assert_eq!(change.to.epoch, expected, "{change}");
    }
}

fn moved_from(plan: &Plan) -> BTreeSet<Option<u64>> {
    plan.changes
        .iter()
        .map(|change| change.from.map(|from| from.broker))
        .collect()
}

// ---- reconcile ----

#[test]
fn first_assignment_of_12_partitions_over_3_brokers_is_4_4_4() {
    let before = state(&[("orders", 12)], &[], &[1, 2, 3], &[]);
    let plan = reconcile(&before);
    assert_eq!(plan.changes.len(), 12);
    assert!(plan.unplaceable.is_empty());
    assert!(
        plan.changes
            .iter()
            .all(|c| c.from.is_none() && c.to.epoch == 1)
    );
    let after = apply(&before, &plan);
    assert_eq!(loads(&after), loads_of(&[(1, 4), (2, 4), (3, 4)]));
    // Consecutive partitions go to different brokers.
    let brokers: Vec<u64> = plan.changes.iter().map(|c| c.to.broker).collect();
    assert_eq!(brokers, [1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3]);
}

#[test]
fn new_partitions_go_to_the_least_loaded_brokers() {
    let mut assignments = round_robin("old", 5, &[1]);
    assignments.push(("other", 0, 2, 1));
    let before = state(
        &[("old", 5), ("other", 1), ("new", 4)],
        &assignments,
        &[1, 2, 3],
        &[],
    );
    let plan = reconcile(&before);
    let targets: Vec<u64> = plan.changes.iter().map(|c| c.to.broker).collect();
    // 3 has 0 and 2 has 1: 3 first; then 2 and 3 tie at 1 and 2 has none of
    // "new"; then 3 has fewer; then a full tie goes to the lower id.
    assert_eq!(targets, [3, 2, 3, 2]);
    assert_eq!(
        loads(&apply(&before, &plan)),
        loads_of(&[(1, 5), (2, 3), (3, 2)])
    );
}

#[test]
fn ties_on_load_prefer_the_broker_with_fewer_of_the_same_topic() {
    // Both brokers hold one partition, but broker 1's is of topic "a".
    let before = state(
        &[("a", 2), ("b", 1)],
        &[("a", 0, 1, 1), ("b", 0, 2, 1)],
        &[1, 2],
        &[],
    );
    let plan = reconcile(&before);
    assert_eq!(plan.changes.len(), 1);
    assert_eq!(
        (plan.changes[0].partition, plan.changes[0].to.broker),
        (1, 2)
    );
}

#[test]
fn each_topic_is_spread_over_the_brokers() {
    let before = state(&[("a", 3), ("b", 3), ("c", 6)], &[], &[1, 2, 3], &[]);
    let after = apply(&before, &reconcile(&before));
    for (topic, per_broker) in [("a", 1), ("b", 1), ("c", 2)] {
        for broker in [1, 2, 3] {
            let count = after
                .assignments
                .iter()
                .filter(|((t, _), a)| t == topic && a.broker == broker)
                .count();
            assert_eq!(count, per_broker, "topic {topic} on broker {broker}");
        }
    }
}

#[test]
fn a_dead_brokers_partitions_spread_evenly_over_the_survivors_and_nothing_else_moves() {
    let before = state(
        &[("orders", 12)],
        &round_robin("orders", 12, &[1, 2, 3]),
        &[1, 2],
        &[],
    );
    let plan = reconcile(&before);
    assert_eq!(plan.changes.len(), 4);
    assert_eq!(moved_from(&plan), BTreeSet::from([Some(3)]));
    assert_epochs_step_by_one(&plan);
    let after = apply(&before, &plan);
    assert_eq!(loads(&after), loads_of(&[(1, 6), (2, 6)]));
}

#[test]
fn a_dead_brokers_partitions_fill_the_emptier_survivor_first() {
    let mut assignments = round_robin("a", 5, &[1]);
    assignments.extend(round_robin("b", 3, &[2]));
    assignments.extend(round_robin("c", 4, &[3]));
    let before = state(&[("a", 5), ("b", 3), ("c", 4)], &assignments, &[1, 2], &[]);
    let after = apply(&before, &reconcile(&before));
    assert_eq!(loads(&after), loads_of(&[(1, 6), (2, 6)]));
}

#[test]
fn drain_moves_everything_off_and_nothing_else() {
    let before = state(
        &[("orders", 12)],
        &round_robin("orders", 12, &[1, 2, 3]),
        &[1, 2, 3],
        &[2],
    );
    let plan = reconcile(&before);
    assert_eq!(plan.changes.len(), 4);
    assert_eq!(moved_from(&plan), BTreeSet::from([Some(2)]));
    assert!(plan.changes.iter().all(|c| c.to.broker != 2));
    assert_epochs_step_by_one(&plan);
    assert_eq!(loads(&apply(&before, &plan)), loads_of(&[(1, 6), (3, 6)]));
}

#[test]
fn a_draining_broker_that_dies_is_emptied_too() {
    let before = state(&[("t", 6)], &round_robin("t", 6, &[1, 2, 3]), &[1, 3], &[2]);
    let plan = reconcile(&before);
    assert_eq!(moved_from(&plan), BTreeSet::from([Some(2)]));
    assert_eq!(loads(&apply(&before, &plan)), loads_of(&[(1, 3), (3, 3)]));
}

#[test]
fn partitions_on_eligible_brokers_stay_however_unbalanced() {
    let before = state(&[("t", 10)], &round_robin("t", 10, &[1]), &[1, 2, 3], &[]);
    assert!(reconcile(&before).is_empty());
}

#[test]
fn with_no_live_broker_nothing_moves_and_the_homeless_are_reported() {
    let before = state(&[("t", 3)], &[("t", 0, 7, 4)], &[], &[]);
    let plan = reconcile(&before);
    assert!(plan.changes.is_empty());
    assert_eq!(
        plan.unplaceable,
        vec![
            Unplaceable {
                topic: "t".into(),
                partition: 0,
                current: Some(Assignment {
                    broker: 7,
                    epoch: 4
                }),
            },
            Unplaceable {
                topic: "t".into(),
                partition: 1,
                current: None
            },
            Unplaceable {
                topic: "t".into(),
                partition: 2,
                current: None
            },
        ]
    );
}

#[test]
fn with_every_live_broker_draining_nothing_moves() {
    let before = state(
        &[("t", 2)],
        &[("t", 0, 1, 1), ("t", 1, 2, 1)],
        &[1, 2],
        &[1, 2],
    );
    let plan = reconcile(&before);
    assert!(plan.changes.is_empty());
    assert_eq!(plan.unplaceable.len(), 2);
}

#[test]
fn assignments_of_unknown_topics_and_partitions_are_ignored() {
    // "gone" is not a topic and t/5 is past t's count: neither moves off the
    // dead broker 9, and neither counts as load on broker 1.
    let before = state(
        &[("t", 2)],
        &[
            ("gone", 0, 9, 1),
            ("t", 5, 9, 1),
            ("gone", 1, 1, 1),
            ("t", 6, 1, 1),
        ],
        &[1, 2],
        &[],
    );
    let plan = reconcile(&before);
    let placed: Vec<(u32, u64)> = plan
        .changes
        .iter()
        .map(|c| (c.partition, c.to.broker))
        .collect();
    assert_eq!(placed, [(0, 1), (1, 2)]);
    assert!(plan.changes.iter().all(|c| c.topic == "t"));
}

#[test]
fn reconcile_is_idempotent() {
    let mut assignments = round_robin("a", 7, &[1, 2, 5]);
    assignments.extend(round_robin("b", 4, &[3]));
    let before = state(
        &[("a", 9), ("b", 4), ("c", 3)],
        &assignments,
        &[1, 2, 3, 4],
        &[3],
    );
    let after = apply(&before, &reconcile(&before));
    assert!(reconcile(&after).is_empty());
}

#[test]
fn epochs_increase_by_exactly_one_per_move() {
    let before = state(
        &[("t", 4)],
        &[("t", 0, 1, 1), ("t", 1, 2, 41), ("t", 2, 3, 7)],
        &[1, 4],
        &[],
    );
    let plan = reconcile(&before);
    let epochs: Vec<(u32, Option<u64>, u64)> = plan
        .changes
        .iter()
        .map(|c| (c.partition, c.from.map(|f| f.epoch), c.to.epoch))
        .collect();
    assert_eq!(epochs, [(1, Some(41), 42), (2, Some(7), 8), (3, None, 1)]);
}

#[test]
fn an_exhausted_epoch_saturates_instead_of_wrapping() {
    let before = state(&[("t", 1)], &[("t", 0, 1, u64::MAX)], &[2], &[]);
    assert_eq!(reconcile(&before).changes[0].to.epoch, u64::MAX);
}

#[test]
fn plans_are_deterministic() {
    let mut assignments = round_robin("a", 9, &[1, 2, 3, 4]);
    assignments.extend(round_robin("b", 5, &[2, 6]));
    let forward = state(
        &[("a", 12), ("b", 5), ("c", 4)],
        &assignments,
        &[1, 2, 3, 7, 8],
        &[3],
    );
    assignments.reverse();
    let reversed = state(
        &[("c", 4), ("b", 5), ("a", 12)],
        &assignments,
        &[8, 7, 3, 2, 1],
        &[3],
    );
    assert_eq!(reconcile(&forward), reconcile(&forward));
    assert_eq!(reconcile(&forward), reconcile(&reversed));
    assert_eq!(rebalance(&forward), rebalance(&forward));
    assert_eq!(rebalance(&forward), rebalance(&reversed));
}

// ---- rebalance ----

#[test]
fn rebalance_after_adding_a_broker_to_3_by_4_moves_exactly_3_partitions_to_it() {
    let before = state(
        &[("orders", 12)],
        &round_robin("orders", 12, &[1, 2, 3]),
        &[1, 2, 3, 4],
        &[],
    );
    assert!(
        reconcile(&before).is_empty(),
        "reconcile alone moves nothing"
    );
    let plan = rebalance(&before);
    assert_eq!(plan.changes.len(), 3);
    assert!(plan.changes.iter().all(|c| c.to.broker == 4));
    assert_eq!(
        moved_from(&plan),
        BTreeSet::from([Some(1), Some(2), Some(3)])
    );
    assert_epochs_step_by_one(&plan);
    let after = apply(&before, &plan);
    assert_eq!(loads(&after), loads_of(&[(1, 3), (2, 3), (3, 3), (4, 3)]));
    assert!(rebalance(&after).is_empty());
}

#[test]
fn rebalance_keeps_each_topic_spread() {
    // Brokers 1 and 2 each hold two of "a" and two of "b"; broker 3 is new.
    let before = state(
        &[("a", 4), ("b", 4)],
        &[
            ("a", 0, 1, 1),
            ("a", 2, 1, 1),
            ("b", 0, 1, 1),
            ("b", 2, 1, 1),
            ("a", 1, 2, 1),
            ("a", 3, 2, 1),
            ("b", 1, 2, 1),
            ("b", 3, 2, 1),
        ],
        &[1, 2, 3],
        &[],
    );
    let plan = rebalance(&before);
    let moved: Vec<(&str, u32, u64)> = plan
        .changes
        .iter()
        .map(|c| (c.topic.as_str(), c.partition, c.to.broker))
        .collect();
    // One of each topic, not two of "a".
    assert_eq!(moved, [("a", 0, 3), ("b", 1, 3)]);
}

#[test]
fn rebalance_of_a_balanced_layout_moves_nothing() {
    let before = state(
        &[("t", 10)],
        &round_robin("t", 10, &[1, 2, 3]),
        &[1, 2, 3],
        &[],
    );
    assert!(rebalance(&before).is_empty());
}

#[test]
fn rebalance_moves_from_the_most_to_the_least_loaded() {
    let mut assignments = round_robin("a", 10, &[1]);
    assignments.extend(round_robin("b", 2, &[2]));
    let before = state(&[("a", 10), ("b", 2)], &assignments, &[1, 2, 3], &[]);
    let plan = rebalance(&before);
    assert_eq!(moved_from(&plan), BTreeSet::from([Some(1)]));
    assert_eq!(plan.changes.len(), 6);
    assert_eq!(
        loads(&apply(&before, &plan)),
        loads_of(&[(1, 4), (2, 4), (3, 4)])
    );
}

#[test]
fn rebalance_also_reconciles_and_moves_no_partition_twice() {
    // Broker 3 is dead, broker 2 draining, broker 4 new, t/11 unassigned.
    let before = state(
        &[("t", 12)],
        &round_robin("t", 11, &[1, 2, 3]),
        &[1, 2, 4],
        &[2],
    );
    let plan = rebalance(&before);
    let keys: BTreeSet<u32> = plan.changes.iter().map(|c| c.partition).collect();
    assert_eq!(keys.len(), plan.changes.len(), "a partition moved twice");
    assert!(
        plan.changes
            .iter()
            .all(|c| c.to.broker == 1 || c.to.broker == 4)
    );
    assert_epochs_step_by_one(&plan);
    let after = apply(&before, &plan);
    assert_eq!(loads(&after), loads_of(&[(1, 6), (4, 6)]));
}

#[test]
fn rebalance_never_fills_a_draining_broker() {
    let before = state(&[("t", 8)], &round_robin("t", 8, &[1]), &[1, 2, 3], &[2]);
    let after = apply(&before, &rebalance(&before));
    assert_eq!(loads(&after), loads_of(&[(1, 4), (3, 4)]));
}

// ---- move_partition ----

fn three_brokers() -> ClusterState {
    state(
        &[("t", 3)],
        &[("t", 0, 1, 5), ("t", 1, 2, 1)],
        &[1, 2, 3, 4],
        &[4],
    )
}

#[test]
fn move_partition_bumps_the_epoch() {
    let change = move_partition(&three_brokers(), "t", 0, 3).expect("move is valid");
    assert_eq!(
        change,
        Change {
            topic: "t".into(),
            partition: 0,
            from: Some(Assignment {
                broker: 1,
                epoch: 5
            }),
            to: Assignment {
                broker: 3,
                epoch: 6
            },
        }
    );
    assert_eq!(
        change.to_string(),
        "t/0: broker 1 (epoch 5) -> broker 3 (epoch 6)"
    );
}

#[test]
fn move_partition_refuses_with_errors_a_person_can_act_on() {
    let state = three_brokers();
    let cases = [
        (
            "u",
            0,
            3,
            PlanError::UnknownTopic { topic: "u".into() },
            r#"topic "u" does not exist"#,
        ),
        (
            "t",
            3,
            3,
            PlanError::PartitionOutOfRange {
                topic: "t".into(),
                partition: 3,
                partitions: 3,
            },
            r#"topic "t" has no partition 3: it has 3 (0 to 2)"#,
        ),
        (
            "t",
            2,
            3,
            PlanError::NotAssigned {
                topic: "t".into(),
                partition: 2,
            },
            "partition t/2 is not assigned to any broker yet; \
             the controller assigns it when a broker is live, move it after that",
        ),
        (
            "t",
            0,
            9,
            PlanError::BrokerNotLive {
                broker: 9,
                live: vec![1, 2, 3, 4],
            },
            "broker 9 is not live (not registered, or its lease expired); live brokers: 1, 2, 3, 4",
        ),
        (
            "t",
            0,
            4,
            PlanError::BrokerDraining { broker: 4 },
            "broker 4 is being drained and cannot take partitions; choose another broker",
        ),
        (
            "t",
            1,
            2,
            PlanError::AlreadyOnBroker {
                topic: "t".into(),
                partition: 1,
                broker: 2,
            },
            "partition t/1 is already on broker 2",
        ),
    ];
    for (topic, partition, to, error, message) in cases {
        let got = move_partition(&state, topic, partition, to);
        assert_eq!(got, Err(error), "{topic}/{partition} -> {to}");
        assert_eq!(got.expect_err("checked above").to_string(), message);
    }
}

#[test]
fn move_partition_with_no_live_broker_says_so() {
    let state = state(&[("t", 1)], &[("t", 0, 1, 1)], &[], &[]);
    let error = move_partition(&state, "t", 0, 1).expect_err("no broker is live");
    assert!(error.to_string().ends_with("live brokers: none"), "{error}");
}

#[test]
fn move_partition_off_a_dead_broker_is_allowed() {
    let state = state(&[("t", 1)], &[("t", 0, 7, 2)], &[1], &[]);
    let change = move_partition(&state, "t", 0, 1).expect("move is valid");
    assert_eq!(
        change.to,
        Assignment {
            broker: 1,
            epoch: 3
        }
    );
}

// ---- broker_loads ----

#[test]
fn broker_loads_counts_partitions_per_broker() {
    let state = state(
        &[("a", 3), ("b", 1)],
        &[
            ("a", 0, 1, 1),
            ("a", 1, 2, 3),
            ("a", 2, 1, 1),
            ("b", 0, 9, 1),
        ],
        &[1, 2, 3],
        &[],
    );
    assert_eq!(
        broker_loads(&state.assignments),
        loads_of(&[(1, 2), (2, 1), (9, 1)])
    );
    assert!(broker_loads(&BTreeMap::new()).is_empty());
}

#[test]
fn a_first_assignment_displays_as_unassigned() {
    let plan = reconcile(&state(&[("t", 1)], &[], &[5], &[]));
    assert_eq!(
        plan.changes[0].to_string(),
        "t/0: unassigned -> broker 5 (epoch 1)"
    );
}

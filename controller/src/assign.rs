//! Consumer-group partition assignors, as pure functions: `range`,
//! `round_robin` and `sticky`, with Kafka's semantics, so a group run by the
//! coordinator for gRPC clients and one run for Kafka clients assign alike.
//!
//! Every assignor gives each partition of a subscribed topic to exactly one
//! member subscribed to that topic. `sticky` also keeps every member's
//! current partitions where it can, so a rebalance moves only what balance
//! requires (a member joining takes its share from the others; a member
//! leaving has only its own partitions moved).

use std::collections::{BTreeMap, BTreeSet};

/// One partition of one topic.
pub type TopicPartition = (String, u32);

/// What a member asks for, and (for `sticky`) what it owns now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subscription {
    pub topics: BTreeSet<String>,
    /// Partitions the member holds from the previous generation.
    pub owned: Vec<TopicPartition>,
}

/// Member id → the partitions assigned to it, sorted. Every member appears,
/// with an empty list if it gets nothing.
pub type Assignment = BTreeMap<String, Vec<TopicPartition>>;

/// Assignor names, as clients ask for them.
pub const RANGE: &str = "range";
pub const ROUND_ROBIN: &str = "roundrobin";
pub const STICKY: &str = "sticky";

/// Runs the assignor called `name`; `None` if Sluice has no such assignor.
pub fn assign(
    name: &str,
    members: &BTreeMap<String, Subscription>,
    partitions: &BTreeMap<String, u32>,
) -> Option<Assignment> {
    match name {
        RANGE => Some(range(members, partitions)),
        ROUND_ROBIN => Some(round_robin(members, partitions)),
        STICKY => Some(sticky(members, partitions)),
        _ => None,
    }
}

fn empty(members: &BTreeMap<String, Subscription>) -> Assignment {
    members.keys().map(|m| (m.clone(), Vec::new())).collect()
}

/// Kafka's range assignor: per topic, the subscribed members in id order
/// take consecutive ranges of partitions, the first ones one more each when
/// the partitions do not divide evenly.
pub fn range(
    members: &BTreeMap<String, Subscription>,
    partitions: &BTreeMap<String, u32>,
) -> Assignment {
    let mut assignment = empty(members);
    for (topic, count) in partitions {
        let subscribed: Vec<&String> = members
            .iter()
            .filter(|(_, s)| s.topics.contains(topic))
            .map(|(m, _)| m)
            .collect();
        if subscribed.is_empty() {
            continue;
        }
        let per_member = *count as usize / subscribed.len();
        let extra = *count as usize % subscribed.len();
        let mut next = 0u32;
        for (i, member) in subscribed.into_iter().enumerate() {
            let take = per_member + usize::from(i < extra);
            let list = assignment.entry(member.clone()).or_default();
            for _ in 0..take {
                list.push((topic.clone(), next));
                next += 1;
            }
        }
    }
    sorted(assignment)
}

/// Kafka's round-robin assignor: every topic partition in order, dealt to
/// the members in id order, skipping members not subscribed to its topic.
pub fn round_robin(
    members: &BTreeMap<String, Subscription>,
    partitions: &BTreeMap<String, u32>,
) -> Assignment {
    let mut assignment = empty(members);
    let ids: Vec<&String> = members.keys().collect();
    if ids.is_empty() {
        return assignment;
    }
    let mut turn = 0usize;
    for (topic, count) in partitions {
        if !members.values().any(|s| s.topics.contains(topic)) {
            continue;
        }
        for partition in 0..*count {
            // Some member takes it: at most one full round of the circle.
            loop {
                let member = ids[turn % ids.len()];
                turn += 1;
                if members[member].topics.contains(topic) {
                    if let Some(list) = assignment.get_mut(member) {
                        list.push((topic.clone(), partition));
                    }
                    break;
                }
            }
        }
    }
    sorted(assignment)
}

/// A sticky, balanced assignment: members keep what they own (if the
/// partition still exists, they still subscribe to its topic, and no other
/// member claimed it first) up to their fair share; the rest goes, one at a
/// time, to the subscribed member holding the fewest partitions.
pub fn sticky(
    members: &BTreeMap<String, Subscription>,
    partitions: &BTreeMap<String, u32>,
) -> Assignment {
    let mut assignment = empty(members);
    let wanted: BTreeSet<TopicPartition> = partitions
        .iter()
        .filter(|(topic, _)| members.values().any(|s| s.topics.contains(*topic)))
        .flat_map(|(topic, count)| (0..*count).map(move |p| (topic.clone(), p)))
        .collect();
    if members.is_empty() {
        return assignment;
    }
    // Fair share: total / members, rounded up for the first `total % members`
    // members that claim that many (homogeneous subscriptions balance to ±1).
    let total = wanted.len();
    let floor = total / members.len();
    let mut ceilings_left = total % members.len();
    let mut taken: BTreeSet<TopicPartition> = BTreeSet::new();
    // Members owning the most keep first, so shares go to those who had them.
    let mut by_owned: Vec<(&String, &Subscription)> = members.iter().collect();
    by_owned.sort_by_key(|(id, s)| (std::cmp::Reverse(s.owned.len()), (*id).clone()));
    for (id, subscription) in by_owned {
        let mut keep: Vec<TopicPartition> = subscription
            .owned
            .iter()
            .filter(|tp| wanted.contains(*tp) && subscription.topics.contains(&tp.0))
            .filter(|tp| !taken.contains(*tp))
            .cloned()
            .collect();
        keep.sort();
        keep.dedup();
        let share = if keep.len() > floor && ceilings_left > 0 {
            ceilings_left -= 1;
            floor + 1
        } else {
            floor
        };
        keep.truncate(share);
        taken.extend(keep.iter().cloned());
        if let Some(list) = assignment.get_mut(id) {
            *list = keep;
        }
    }
    for tp in wanted.into_iter().filter(|tp| !taken.contains(tp)) {
        let receiver = assignment
            .iter()
            .filter(|(id, _)| members[*id].topics.contains(&tp.0))
            .min_by_key(|(id, list)| (list.len(), (*id).clone()))
            .map(|(id, _)| id.clone());
        if let Some(id) = receiver
            && let Some(list) = assignment.get_mut(&id)
        {
            list.push(tp);
        }
    }
    sorted(assignment)
}

fn sorted(mut assignment: Assignment) -> Assignment {
    for list in assignment.values_mut() {
        list.sort();
    }
    assignment
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn members(ids: &[&str], topics: &[&str]) -> BTreeMap<String, Subscription> {
        ids.iter()
            .map(|id| {
                let subscription = Subscription {
                    topics: topics.iter().map(|t| (*t).to_owned()).collect(),
                    owned: Vec::new(),
                };
                ((*id).to_owned(), subscription)
            })
            .collect()
    }

    fn tp(topic: &str, partition: u32) -> TopicPartition {
        (topic.to_owned(), partition)
    }

    /// Every partition of a subscribed topic goes to exactly one member
    /// subscribed to it; nothing else is assigned.
    fn check_complete(
        assignment: &Assignment,
        members: &BTreeMap<String, Subscription>,
        partitions: &BTreeMap<String, u32>,
    ) {
        let mut seen = BTreeSet::new();
        for (member, list) in assignment {
            for tp in list {
                assert!(
                    members[member].topics.contains(&tp.0),
                    "{member} got {tp:?}"
                );
                assert!(tp.1 < partitions[&tp.0], "{tp:?} does not exist");
                assert!(seen.insert(tp.clone()), "{tp:?} assigned twice");
            }
        }
        for (topic, count) in partitions {
            if members.values().any(|s| s.topics.contains(topic)) {
                for p in 0..*count {
                    assert!(seen.contains(&tp(topic, p)), "{topic}/{p} unassigned");
                }
            }
        }
    }

    fn counts(assignment: &Assignment) -> Vec<usize> {
        assignment.values().map(Vec::len).collect()
    }

    #[test]
    fn range_gives_consecutive_ranges_per_topic() {
        let members = members(&["a", "b", "c"], &["t"]);
        let partitions = BTreeMap::from([("t".to_owned(), 7)]);
        let assignment = range(&members, &partitions);
        assert_eq!(assignment["a"], [tp("t", 0), tp("t", 1), tp("t", 2)]);
        assert_eq!(assignment["b"], [tp("t", 3), tp("t", 4)]);
        assert_eq!(assignment["c"], [tp("t", 5), tp("t", 6)]);
    }

    #[test]
    fn round_robin_deals_partitions_in_turn() {
        let members = members(&["a", "b"], &["t", "u"]);
        let partitions = BTreeMap::from([("t".to_owned(), 3), ("u".to_owned(), 2)]);
        let assignment = round_robin(&members, &partitions);
        assert_eq!(assignment["a"], [tp("t", 0), tp("t", 2), tp("u", 1)]);
        assert_eq!(assignment["b"], [tp("t", 1), tp("u", 0)]);
    }

    #[test]
    fn twelve_partitions_over_three_members_are_four_each() {
        let members = members(&["a", "b", "c"], &["t"]);
        let partitions = BTreeMap::from([("t".to_owned(), 12)]);
        for name in [RANGE, ROUND_ROBIN, STICKY] {
            let assignment = assign(name, &members, &partitions).expect("known assignor");
            check_complete(&assignment, &members, &partitions);
            assert_eq!(counts(&assignment), [4, 4, 4], "{name}");
        }
        assert!(assign("no-such-assignor", &members, &partitions).is_none());
    }

    #[test]
    fn a_joining_member_takes_only_its_share() {
        let partitions = BTreeMap::from([("t".to_owned(), 12)]);
        let mut group = members(&["a", "b", "c"], &["t"]);
        let before = sticky(&group, &partitions);
        for (id, list) in &before {
            group.get_mut(id).expect("member").owned = list.clone();
        }
        group.insert("d".to_owned(), members(&["d"], &["t"])["d"].clone());
        let after = sticky(&group, &partitions);
        check_complete(&after, &group, &partitions);
        assert_eq!(counts(&after), [3, 3, 3, 3]);
        for id in ["a", "b", "c"] {
            assert!(
                after[id].iter().all(|tp| before[id].contains(tp)),
                "{id} keeps what it had: {before:?} -> {after:?}"
            );
        }
    }

    #[test]
    fn a_leaving_member_has_only_its_partitions_moved() {
        let partitions = BTreeMap::from([("t".to_owned(), 12)]);
        let mut group = members(&["a", "b", "c"], &["t"]);
        let before = sticky(&group, &partitions);
        for (id, list) in &before {
            group.get_mut(id).expect("member").owned = list.clone();
        }
        group.remove("b");
        let after = sticky(&group, &partitions);
        check_complete(&after, &group, &partitions);
        assert_eq!(counts(&after), [6, 6]);
        for id in ["a", "c"] {
            assert!(
                before[id].iter().all(|tp| after[id].contains(tp)),
                "{id} keeps all"
            );
        }
    }

    proptest! {
        /// Any group, any topics: every assignor is complete, and with one
        /// shared subscription it is balanced to within one partition; sticky
        /// stays balanced and keeps every kept partition where it was.
        #[test]
        fn assignors_are_complete_and_balanced(
            member_count in 1usize..8,
            counts_per_topic in proptest::collection::vec(0u32..20, 1..4),
            owned_seed in proptest::collection::vec(0usize..8, 0..60),
        ) {
            let ids: Vec<String> = (0..member_count).map(|i| format!("m{i}")).collect();
            let topics: Vec<String> = (0..counts_per_topic.len()).map(|i| format!("t{i}")).collect();
            let partitions: BTreeMap<String, u32> =
                topics.iter().cloned().zip(counts_per_topic.iter().copied()).collect();
            let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
            let mut group = members(&id_refs, &topic_refs);
            // Arbitrary (even conflicting or stale) previous ownership.
            let all: Vec<TopicPartition> = partitions
                .iter()
                .flat_map(|(t, c)| (0..*c + 1).map(move |p| (t.clone(), p)))
                .collect();
            for (i, owner) in owned_seed.iter().enumerate() {
                if let Some(tp) = all.get(i) {
                    let id = &ids[owner % ids.len()];
                    group.get_mut(id).expect("member").owned.push(tp.clone());
                }
            }
            // Sticky from a balanced start: a member joining or leaving moves
            // nothing the others may keep.
            let settled = sticky(&group, &partitions);
            let mut next = group.clone();
            for (id, list) in &settled {
                next.get_mut(id).expect("member").owned = list.clone();
            }
            let mut joined = next.clone();
            joined.insert("new".to_owned(), Subscription {
                topics: topics.iter().cloned().collect(),
                owned: Vec::new(),
            });
            let after = sticky(&joined, &partitions);
            for id in &ids {
                prop_assert!(after[id].iter().all(|tp| settled[id].contains(tp)), "{} gained on a join", id);
            }
            let mut left = next.clone();
            let gone = ids[0].clone();
            left.remove(&gone);
            if !left.is_empty() {
                let after = sticky(&left, &partitions);
                for id in ids.iter().skip(1) {
                    prop_assert!(settled[id].iter().all(|tp| after[id].contains(tp)), "{} lost on a leave", id);
                }
            }
            for name in [RANGE, ROUND_ROBIN, STICKY] {
                let assignment = assign(name, &group, &partitions).expect("known");
                check_complete(&assignment, &group, &partitions);
                prop_assert_eq!(assignment.len(), ids.len());
                if name != RANGE {
                    let c = counts(&assignment);
                    let (min, max) = (c.iter().min().copied(), c.iter().max().copied());
                    prop_assert!(max.unwrap_or(0) - min.unwrap_or(0) <= 1, "{} unbalanced: {:?}", name, c);
                }
            }
        }
    }
}

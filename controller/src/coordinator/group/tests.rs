//! The group state machine driven by hand: a fake clock (`Instant`s advanced
//! explicitly) and oneshot waiters checked with `try_recv`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::sync::oneshot::error::TryRecvError;

use super::*;

const TOPIC: &str = "t";
const SESSION: Duration = Duration::from_secs(10);
const REBALANCE: Duration = Duration::from_secs(30);

type JoinRx = oneshot::Receiver<Result<JoinResult, GroupError>>;
type SyncRx = oneshot::Receiver<Result<Vec<u8>, GroupError>>;

/// A group, its topics and a clock that only moves when told to.
struct Harness {
    group: Group,
    partitions: BTreeMap<String, u32>,
    now: Instant,
}

impl Harness {
    fn new(partitions: u32) -> Self {
        Self {
            group: Group::new("g"),
            partitions: BTreeMap::from([(TOPIC.to_owned(), partitions)]),
            now: Instant::now(),
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// Sends a join; `new_id` names the member if it joins without an id.
    fn join(&mut self, request: JoinRequest, new_id: &str) -> JoinRx {
        let (tx, rx) = oneshot::channel();
        self.group
            .join(request, new_id.to_owned(), tx, &self.partitions, self.now);
        rx
    }

    fn sync(
        &mut self,
        member: &str,
        generation: i32,
        assignments: Vec<(String, Vec<u8>)>,
    ) -> SyncRx {
        let (tx, rx) = oneshot::channel();
        self.group
            .sync(member, generation, assignments, tx, self.now);
        rx
    }

    fn heartbeat(&mut self, member: &str, generation: i32) -> Result<bool, GroupError> {
        self.group.heartbeat(member, generation, self.now)
    }

    fn tick(&mut self) -> Vec<String> {
        self.group.tick(&self.partitions, self.now)
    }

    fn leave(&mut self, member: &str) -> Result<(), GroupError> {
        self.group.leave(member, &self.partitions, self.now)
    }

    fn commit(
        &mut self,
        member: &str,
        generation: i32,
        partitions: &[u32],
    ) -> Result<(), GroupError> {
        let partitions: Vec<(String, u32)> =
            partitions.iter().map(|p| (TOPIC.to_owned(), *p)).collect();
        self.group
            .check_commit(member, generation, &partitions, self.now)
    }

    fn assignment(&self, member: &str) -> Vec<u32> {
        self.group
            .members()
            .find(|m| m.id == member)
            .and_then(|m| m.assignment.get(TOPIC).cloned())
            .unwrap_or_default()
    }

    fn member_ids(&self) -> Vec<String> {
        self.group.members().map(|m| m.id.clone()).collect()
    }

    /// Three `sluice` members m1, m2, m3 (m1 with instance id "i1"), Stable
    /// with 4 partitions each after a completed rebalance.
    fn stable_three(partitions: u32) -> (Self, i32) {
        let mut h = Self::new(partitions);
        let first = h.join(sluice_request("", Some("i1")), "m1");
        let first = joined(first);
        assert_eq!(first.generation, 1);
        let m2 = h.join(sluice_request("", None), "m2");
        let m3 = h.join(sluice_request("", None), "m3");
        assert_eq!(h.group.state(), GroupState::PreparingRebalance);
        assert!(h.heartbeat("m1", 1).expect("m1 heartbeat"));
        let m1 = h.join(sluice_request("m1", Some("i1")), "unused");
        let results = [joined(m1), joined(m2), joined(m3)];
        let generation = results[0].generation;
        assert!(results.iter().all(|r| r.generation == generation));
        assert_eq!(h.group.state(), GroupState::Stable);
        (h, generation)
    }
}

fn sluice_request(member_id: &str, instance: Option<&str>) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_owned(),
        instance_id: instance.map(str::to_owned),
        client_id: "client".to_owned(),
        client_host: "/127.0.0.1".to_owned(),
        session_timeout: SESSION,
        rebalance_timeout: REBALANCE,
        protocol_type: SLUICE_PROTOCOL.to_owned(),
        protocols: vec![protocol(assign::STICKY, b"")],
        topics: BTreeSet::from([TOPIC.to_owned()]),
    }
}

fn consumer_request(member_id: &str, metadata: &[u8]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_owned(),
        instance_id: None,
        client_id: "kafka-client".to_owned(),
        client_host: "/127.0.0.1".to_owned(),
        session_timeout: SESSION,
        rebalance_timeout: REBALANCE,
        protocol_type: "consumer".to_owned(),
        protocols: vec![protocol("range", metadata)],
        topics: BTreeSet::new(),
    }
}

fn protocol(name: &str, metadata: &[u8]) -> Protocol {
    Protocol {
        name: name.to_owned(),
        metadata: metadata.to_vec(),
    }
}

fn with_protocols(mut request: JoinRequest, names: &[&str]) -> JoinRequest {
    request.protocols = names.iter().map(|n| protocol(n, b"")).collect();
    request
}

/// The answer of a join, if there is one yet.
fn join_answer(rx: &mut JoinRx) -> Option<Result<JoinResult, GroupError>> {
    match rx.try_recv() {
        Ok(answer) => Some(answer),
        Err(TryRecvError::Empty) => None,
        Err(TryRecvError::Closed) => panic!("join waiter dropped unanswered"),
    }
}

/// A join that must have succeeded already.
fn joined(mut rx: JoinRx) -> JoinResult {
    join_answer(&mut rx)
        .expect("join answered")
        .expect("join succeeded")
}

/// A join that must have failed already.
fn join_error(mut rx: JoinRx) -> GroupError {
    match join_answer(&mut rx).expect("join answered") {
        Ok(result) => panic!("join succeeded: {result:?}"),
        Err(e) => e,
    }
}

fn sync_answer(rx: &mut SyncRx) -> Option<Result<Vec<u8>, GroupError>> {
    match rx.try_recv() {
        Ok(answer) => Some(answer),
        Err(TryRecvError::Empty) => None,
        Err(TryRecvError::Closed) => panic!("sync waiter dropped unanswered"),
    }
}

fn partitions_of(result: &JoinResult) -> Vec<u32> {
    result.assignment.get(TOPIC).cloned().unwrap_or_default()
}

/// Every partition 0..count exactly once across `lists`.
fn assert_exact_cover(lists: &[Vec<u32>], count: u32) {
    let mut all: Vec<u32> = lists.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..count).collect::<Vec<_>>(), "{lists:?}");
}

#[test]
fn three_members_get_four_partitions_each() {
    let mut h = Harness::new(12);
    let first = joined(h.join(sluice_request("", None), "m1"));
    assert_eq!(first.member_id, "m1");
    assert_eq!(first.generation, 1);
    assert_eq!(partitions_of(&first).len(), 12, "alone, m1 owns everything");

    let mut m2 = h.join(sluice_request("", None), "m2");
    let mut m3 = h.join(sluice_request("", None), "m3");
    assert!(join_answer(&mut m2).is_none(), "waits for m1 to rejoin");
    assert!(join_answer(&mut m3).is_none(), "waits for m1 to rejoin");
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
    assert!(h.heartbeat("m1", 1).expect("heartbeat"));

    let m1 = h.join(sluice_request("m1", None), "unused");
    let results = [
        joined(m1),
        join_answer(&mut m2).expect("answered").expect("ok"),
        join_answer(&mut m3).expect("answered").expect("ok"),
    ];
    assert_eq!(h.group.state(), GroupState::Stable);
    assert_eq!(h.group.generation(), 2);
    let lists: Vec<Vec<u32>> = results.iter().map(partitions_of).collect();
    for (result, id) in results.iter().zip(["m1", "m2", "m3"]) {
        assert_eq!(result.member_id, id);
        assert_eq!(result.generation, 2);
        assert_eq!(result.protocol, assign::STICKY);
        assert_eq!(result.leader_id, "m1");
        assert!(
            result.members.is_empty(),
            "sluice members get no member list"
        );
        assert_eq!(result.session_timeout, SESSION);
        assert_eq!(partitions_of(result).len(), 4, "{lists:?}");
        assert_eq!(partitions_of(result), h.assignment(id));
    }
    assert_exact_cover(&lists, 12);
    for id in ["m1", "m2", "m3"] {
        assert!(!h.heartbeat(id, 2).expect("heartbeat"));
    }
}

#[test]
fn expired_session_is_dropped_and_survivors_take_over() {
    let (mut h, generation) = Harness::stable_three(12);
    let rebalances = h.group.rebalances();
    h.advance(Duration::from_secs(6));
    assert!(!h.heartbeat("m1", generation).expect("m1"));
    assert!(!h.heartbeat("m2", generation).expect("m2"));
    assert!(h.tick().is_empty(), "nobody expired yet");

    h.advance(Duration::from_secs(5)); // 11 s: m3's session (10 s) is over.
    assert_eq!(h.tick(), ["m3"]);
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
    assert_eq!(h.group.rebalances(), rebalances + 1);
    assert!(matches!(
        h.heartbeat("m3", generation),
        Err(GroupError::UnknownMember { .. })
    ));
    assert!(h.heartbeat("m1", generation).expect("m1"));
    assert!(h.heartbeat("m2", generation).expect("m2"));

    let mut m1 = h.join(sluice_request("m1", Some("i1")), "unused");
    assert!(join_answer(&mut m1).is_none(), "waits for m2");
    let m2 = joined(h.join(sluice_request("m2", None), "unused"));
    let m1 = join_answer(&mut m1).expect("answered").expect("ok");
    assert_eq!(h.group.state(), GroupState::Stable);
    assert!(h.group.generation() > generation);
    assert_eq!(m1.generation, h.group.generation());
    assert_eq!(m2.generation, h.group.generation());
    assert_eq!(partitions_of(&m1).len(), 6);
    assert_eq!(partitions_of(&m2).len(), 6);
    assert_exact_cover(&[partitions_of(&m1), partitions_of(&m2)], 12);
    assert_eq!(h.member_ids(), ["m1", "m2"]);
}

#[test]
fn a_fourth_member_takes_only_its_share() {
    let (mut h, generation) = Harness::stable_three(12);
    let before: BTreeMap<&str, Vec<u32>> = ["m1", "m2", "m3"]
        .into_iter()
        .map(|id| (id, h.assignment(id)))
        .collect();
    let mut m4 = h.join(sluice_request("", None), "m4");
    assert!(join_answer(&mut m4).is_none());
    let mut waiting = Vec::new();
    for id in ["m1", "m2", "m3"] {
        assert!(h.heartbeat(id, generation).expect("heartbeat"));
        let instance = (id == "m1").then_some("i1");
        waiting.push(h.join(sluice_request(id, instance), "unused"));
    }
    let m4 = join_answer(&mut m4).expect("answered").expect("ok");
    assert_eq!(h.group.state(), GroupState::Stable);
    assert_eq!(m4.generation, generation + 1);
    let mut lists = vec![partitions_of(&m4)];
    for (rx, id) in waiting.into_iter().zip(["m1", "m2", "m3"]) {
        let result = joined(rx);
        let now = partitions_of(&result);
        assert_eq!(now.len(), 3, "{id}: {now:?}");
        assert!(
            now.iter().all(|p| before[id].contains(p)),
            "{id} keeps 3 of its own: {:?} -> {now:?}",
            before[id]
        );
        lists.push(now);
    }
    assert_eq!(lists[0].len(), 3);
    assert_exact_cover(&lists, 12);
}

#[test]
fn static_member_rejoins_without_rebalance() {
    let (mut h, generation) = Harness::stable_three(12);
    let rebalances = h.group.rebalances();
    let previous = h.assignment("m1");
    assert_eq!(h.group.leader(), Some("m1"));
    let _ = h.group.take_dirty();

    h.advance(Duration::from_secs(1));
    let result = joined(h.join(sluice_request("", Some("i1")), "m1-again"));
    assert_eq!(result.member_id, "m1-again");
    assert_eq!(result.generation, generation);
    assert_eq!(partitions_of(&result), previous);
    assert_eq!(h.group.generation(), generation);
    assert_eq!(h.group.state(), GroupState::Stable);
    assert_eq!(h.group.rebalances(), rebalances, "no rebalance");
    assert_eq!(h.group.leader(), Some("m1-again"), "leadership follows");
    assert!(h.group.take_dirty(), "the new member id must be saved");
    assert_eq!(h.member_ids(), ["m1-again", "m2", "m3"]);

    // The replaced incarnation is told it is fenced, not to rejoin.
    assert!(matches!(
        h.heartbeat("m1", generation),
        Err(GroupError::FencedInstance { instance }) if instance == "i1"
    ));
    assert!(matches!(
        h.commit("m1", generation, &previous),
        Err(GroupError::FencedInstance { .. })
    ));
    for id in ["m1-again", "m2", "m3"] {
        assert!(!h.heartbeat(id, generation).expect("heartbeat"));
    }
    assert!(h.commit("m1-again", generation, &previous).is_ok());
}

#[test]
fn static_member_with_a_new_subscription_rebalances() {
    let (mut h, generation) = Harness::stable_three(12);
    let mut request = sluice_request("", Some("i1"));
    request.topics.insert("u".to_owned());
    let mut rx = h.join(request, "m1-again");
    assert!(join_answer(&mut rx).is_none(), "the others must rejoin");
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
    assert!(h.heartbeat("m2", generation).expect("m2"));
}

#[test]
fn member_not_rejoining_is_dropped_at_the_rebalance_deadline() {
    let (mut h, generation) = Harness::stable_three(12);
    // m1 rejoins (e.g. its subscription changed): a rebalance starts.
    let mut m1 = h.join(sluice_request("m1", Some("i1")), "unused");
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
    let mut m2 = h.join(sluice_request("m2", None), "unused");
    // m3 stays alive by heartbeating but never rejoins.
    for _ in 0..5 {
        h.advance(Duration::from_secs(5));
        assert!(h.heartbeat("m3", generation).expect("m3"));
        assert!(h.tick().is_empty());
        assert!(join_answer(&mut m1).is_none());
        assert!(join_answer(&mut m2).is_none());
        assert_eq!(h.group.state(), GroupState::PreparingRebalance);
    }
    h.advance(Duration::from_secs(5)); // 30 s: the rebalance timeout.
    h.tick();
    assert_eq!(h.group.state(), GroupState::Stable);
    assert_eq!(h.member_ids(), ["m1", "m2"]);
    let m1 = join_answer(&mut m1).expect("answered").expect("ok");
    let m2 = join_answer(&mut m2).expect("answered").expect("ok");
    assert_eq!(m1.generation, generation + 1);
    assert_eq!(m2.generation, generation + 1);
    assert_exact_cover(&[partitions_of(&m1), partitions_of(&m2)], 12);
    assert!(matches!(
        h.heartbeat("m3", generation),
        Err(GroupError::UnknownMember { .. })
    ));
}

#[test]
fn a_leaving_member_completes_a_pending_join() {
    let (mut h, generation) = Harness::stable_three(12);
    let mut m4 = h.join(sluice_request("", None), "m4");
    let mut m1 = h.join(sluice_request("m1", Some("i1")), "unused");
    let mut m2 = h.join(sluice_request("m2", None), "unused");
    assert!(join_answer(&mut m4).is_none());
    h.leave("m3").expect("m3 leaves");
    let results: Vec<JoinResult> = [&mut m1, &mut m2, &mut m4]
        .into_iter()
        .map(|rx| join_answer(rx).expect("answered").expect("ok"))
        .collect();
    assert!(results.iter().all(|r| r.generation == generation + 1));
    assert_exact_cover(&results.iter().map(partitions_of).collect::<Vec<_>>(), 12);
    assert!(results.iter().all(|r| partitions_of(r).len() == 4));
}

#[test]
fn new_partitions_get_owners() {
    let (mut h, generation) = Harness::stable_three(12);
    let before: Vec<Vec<u32>> = ["m1", "m2", "m3"].map(|id| h.assignment(id)).to_vec();
    h.partitions.insert(TOPIC.to_owned(), 15);
    h.group.partitions_changed(h.now);
    assert!(h.heartbeat("m2", generation).expect("m2"));
    let rxs: Vec<JoinRx> = ["m1", "m2", "m3"]
        .into_iter()
        .map(|id| h.join(sluice_request(id, (id == "m1").then_some("i1")), "unused"))
        .collect();
    let after: Vec<Vec<u32>> = rxs
        .into_iter()
        .map(|rx| partitions_of(&joined(rx)))
        .collect();
    assert_exact_cover(&after, 15);
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(new.len(), 5);
        assert!(old.iter().all(|p| new.contains(p)), "{old:?} -> {new:?}");
    }
}

#[test]
fn join_errors() {
    let mut h = Harness::new(12);
    let unknown = with_protocols(sluice_request("", None), &["foo"]);
    assert!(matches!(
        join_error(h.join(unknown, "x")),
        GroupError::UnknownAssignor { asked } if asked == ["foo"]
    ));
    for bad in [Duration::from_millis(100), Duration::from_secs(31 * 60)] {
        let mut request = sluice_request("", None);
        request.session_timeout = bad;
        assert!(matches!(
            join_error(h.join(request, "x")),
            GroupError::InvalidSessionTimeout { ms } if ms == bad.as_millis() as u64
        ));
    }
    let no_topics = JoinRequest {
        topics: BTreeSet::new(),
        ..sluice_request("", None)
    };
    assert!(matches!(
        join_error(h.join(no_topics, "x")),
        GroupError::InvalidRequest { .. }
    ));
    assert!(h.group.is_empty(), "refused joins add nobody");

    joined(h.join(with_protocols(sluice_request("", None), &["range"]), "m1"));
    let other = with_protocols(sluice_request("", None), &["roundrobin"]);
    assert!(matches!(
        join_error(h.join(other, "m2")),
        GroupError::InconsistentProtocol { .. }
    ));
    assert!(matches!(
        join_error(h.join(consumer_request("", b""), "m2")),
        GroupError::InconsistentProtocol { .. }
    ));
    assert!(matches!(
        join_error(h.join(
            with_protocols(sluice_request("nobody", None), &["range"]),
            "x"
        )),
        GroupError::UnknownMember { .. }
    ));
    assert_eq!(h.member_ids(), ["m1"]);
    assert_eq!(h.group.state(), GroupState::Stable);
}

#[test]

fn sluice_members_sharing_only_an_unknown_assignor_are_inconsistent() {
    let mut h = Harness::new(12);
    joined(h.join(
        with_protocols(sluice_request("", None), &["foo", "range"]),
        "m1",
    ));
    let other = with_protocols(sluice_request("", None), &["foo", "roundrobin"]);
    let mut rx = h.join(other, "m2");
    match join_answer(&mut rx) {
        Some(Err(GroupError::InconsistentProtocol { .. })) => {}
        answer => {
            // Show what happens instead once m1 rejoins.
            let m1 = h.join(
                with_protocols(sluice_request("m1", None), &["foo", "range"]),
                "-",
            );
            panic!(
                "m2 accepted ({answer:?}); m1 then gets protocol {:?}",
                joined(m1).protocol
            );
        }
    }
}

#[test]
fn heartbeat_errors() {
    let (mut h, generation) = Harness::stable_three(12);
    assert!(matches!(
        h.heartbeat("nobody", generation),
        Err(GroupError::UnknownMember { member }) if member == "nobody"
    ));
    assert!(matches!(
        h.heartbeat("m2", generation - 1),
        Err(GroupError::IllegalGeneration { got, current })
            if got == generation - 1 && current == generation
    ));
}

#[test]
fn commit_checks() {
    let (mut h, generation) = Harness::stable_three(12);
    let mine = h.assignment("m1");
    let theirs = h.assignment("m2");
    h.commit("m1", generation, &mine).expect("own partitions");
    assert!(matches!(
        h.commit("m1", generation, &theirs[..1]),
        Err(GroupError::NotOwned { member, partition, .. })
            if member == "m1" && partition == theirs[0]
    ));
    assert!(matches!(
        h.commit("m1", generation - 1, &mine),
        Err(GroupError::IllegalGeneration { .. })
    ));
    assert!(matches!(
        h.commit("nobody", generation, &mine),
        Err(GroupError::UnknownMember { .. })
    ));
    assert!(matches!(
        h.commit("", -1, &mine),
        Err(GroupError::NotEmpty { members: 3, .. })
    ));

    assert!(matches!(
        h.leave("nobody"),
        Err(GroupError::UnknownMember { .. })
    ));
    for id in ["m1", "m2", "m3"] {
        h.leave(id).expect("leave");
    }
    assert!(matches!(
        h.leave("m1"),
        Err(GroupError::UnknownMember { .. })
    ));
    assert_eq!(h.group.state(), GroupState::Empty);
    assert!(h.group.is_empty());
    h.commit("", -1, &[0, 5, 11])
        .expect("admin commit on an empty group");
}

#[test]
fn leader_assigns_consumer_groups() {
    let mut h = Harness::new(12);
    let a = joined(h.join(consumer_request("", b"meta-a"), "a"));
    assert_eq!(a.generation, 1);
    assert_eq!(h.group.state(), GroupState::CompletingRebalance);

    let mut b = h.join(consumer_request("", b"meta-b"), "b");
    assert!(join_answer(&mut b).is_none());
    assert!(h.heartbeat("a", 1).expect("a"));
    let a = joined(h.join(consumer_request("a", b"meta-a"), "unused"));
    let b = join_answer(&mut b).expect("answered").expect("ok");
    assert_eq!(h.group.state(), GroupState::CompletingRebalance);
    assert_eq!(a.generation, 2);
    assert_eq!(b.generation, 2);
    assert_eq!(a.protocol, "range");
    assert_eq!(a.leader_id, "a");
    assert_eq!(b.leader_id, "a");
    assert_eq!(
        a.members,
        [
            ("a".to_owned(), None, b"meta-a".to_vec()),
            ("b".to_owned(), None, b"meta-b".to_vec()),
        ]
    );
    assert!(b.members.is_empty(), "only the leader gets the members");
    assert!(a.assignment.is_empty() && b.assignment.is_empty());

    let mut b_sync = h.sync("b", 2, Vec::new());
    assert!(sync_answer(&mut b_sync).is_none(), "waits for the leader");
    assert_eq!(h.group.state(), GroupState::CompletingRebalance);
    assert!(!h.heartbeat("b", 2).expect("b"));
    assert!(matches!(
        h.commit("b", 2, &[0]),
        Err(GroupError::RebalanceInProgress)
    ));

    let mut a_sync = h.sync(
        "a",
        2,
        vec![
            ("a".to_owned(), b"for-a".to_vec()),
            ("b".to_owned(), b"for-b".to_vec()),
        ],
    );
    assert_eq!(h.group.state(), GroupState::Stable);
    assert_eq!(
        sync_answer(&mut a_sync).expect("answered").expect("ok"),
        b"for-a"
    );
    assert_eq!(
        sync_answer(&mut b_sync).expect("answered").expect("ok"),
        b"for-b"
    );
    // A late sync in Stable gets the same bytes; commits need no ownership.
    let mut again = h.sync("b", 2, Vec::new());
    assert_eq!(
        sync_answer(&mut again).expect("answered").expect("ok"),
        b"for-b"
    );
    h.commit("b", 2, &[0, 1, 2]).expect("commit");
}

#[test]
fn a_static_consumer_returning_with_other_metadata_keeps_its_assignment() {
    let mut h = Harness::new(12);
    let static_request = |member_id: &str, metadata: &[u8]| {
        let mut request = consumer_request(member_id, metadata);
        request.instance_id = Some("i1".to_owned());
        request
    };
    joined(h.join(static_request("", b"owns-nothing"), "a"));
    let mut a_sync = h.sync("a", 1, vec![("a".to_owned(), b"for-a".to_vec())]);
    sync_answer(&mut a_sync).expect("answered").expect("ok");
    let rebalances = h.group.rebalances();

    // A new incarnation: its metadata (owned partitions, generation)
    // differs, the protocol the group selects does not.
    let again = joined(h.join(static_request("", b"owns-0-1-2"), "a-again"));
    assert_eq!(again.generation, 1);
    assert!(
        again.skip_assignment,
        "the returning leader must not assign again"
    );
    assert_eq!(h.group.state(), GroupState::Stable);
    assert_eq!(h.group.rebalances(), rebalances, "no rebalance");
    let mut sync = h.sync("a-again", 1, Vec::new());
    assert_eq!(
        sync_answer(&mut sync).expect("answered").expect("ok"),
        b"for-a"
    );

    // One whose protocols the group would not select rebalances.
    let mut other = static_request("", b"");
    other.protocols = vec![protocol("roundrobin", b"")];
    let mut rx = h.join(other, "a-third");
    assert!(join_answer(&mut rx).is_some_and(|r| r.is_ok()));
    assert_ne!(h.group.rebalances(), rebalances);
}

#[test]
fn a_rebalance_answers_waiting_syncs() {
    let mut h = Harness::new(12);
    joined(h.join(consumer_request("", b"meta-a"), "a"));
    let mut b = h.join(consumer_request("", b"meta-b"), "b");
    joined(h.join(consumer_request("a", b"meta-a"), "unused"));
    let _ = join_answer(&mut b).expect("answered").expect("ok");
    let mut b_sync = h.sync("b", 2, Vec::new());
    // A third member arrives before the leader syncs.
    let mut c = h.join(consumer_request("", b"meta-c"), "c");
    assert!(join_answer(&mut c).is_none());
    assert!(matches!(
        sync_answer(&mut b_sync).expect("answered"),
        Err(GroupError::RebalanceInProgress)
    ));
    let mut late = h.sync("a", 2, Vec::new());
    assert!(matches!(
        sync_answer(&mut late).expect("answered"),
        Err(GroupError::RebalanceInProgress)
    ));
}

#[test]
fn snapshot_round_trip() {
    let (h, generation) = Harness::stable_three(12);
    let json = serde_json::to_vec(&h.group.snapshot()).expect("serialize");
    let snapshot: GroupSnapshot = serde_json::from_slice(&json).expect("deserialize");
    assert_eq!(snapshot.generation, generation);
    assert_eq!(snapshot.members.len(), 3);

    let later = h.now + Duration::from_secs(3600);
    let mut restored = Harness {
        group: Group::restore("g", snapshot, later),
        partitions: h.partitions.clone(),
        now: later,
    };
    assert_eq!(restored.group.name(), "g");
    assert_eq!(restored.group.state(), GroupState::Stable);
    assert_eq!(restored.group.generation(), generation);
    assert_eq!(restored.group.protocol_type(), Some(SLUICE_PROTOCOL));
    assert_eq!(restored.group.protocol(), Some(assign::STICKY));
    assert_eq!(restored.group.leader(), h.group.leader());
    assert_eq!(restored.member_ids(), h.member_ids());
    for (old, new) in h.group.members().zip(restored.group.members()) {
        assert_eq!(old.id, new.id);
        assert_eq!(old.instance_id, new.instance_id);
        assert_eq!(old.session_timeout, new.session_timeout);
        assert_eq!(old.rebalance_timeout, new.rebalance_timeout);
        assert_eq!(old.protocols, new.protocols);
        assert_eq!(old.topics, new.topics);
        assert_eq!(old.assignment, new.assignment);
    }
    // Sessions restart at the restore.
    restored.advance(Duration::from_secs(9));
    assert!(restored.tick().is_empty());
    for id in ["m1", "m2", "m3"] {
        assert!(!restored.heartbeat(id, generation).expect("heartbeat"));
    }
    let mine = restored.assignment("m2");
    restored.commit("m2", generation, &mine).expect("commit");
    // The static member is still recognised by its instance id.
    let back = joined(restored.join(sluice_request("", Some("i1")), "m1-new"));
    assert_eq!(back.generation, generation);
    assert_eq!(partitions_of(&back), h.assignment("m1"));
}

#[test]

fn restored_leader_assigned_group_before_sync_must_rejoin() {
    let mut h = Harness::new(12);
    joined(h.join(consumer_request("", b"meta-a"), "a"));
    let mut b = h.join(consumer_request("", b"meta-b"), "b");
    joined(h.join(consumer_request("a", b"meta-a"), "unused"));
    let _ = join_answer(&mut b).expect("answered").expect("ok");
    // The coordinator saves the new generation here, before the leader's sync.
    assert_eq!(h.group.state(), GroupState::CompletingRebalance);
    assert!(h.group.take_dirty());
    let json = serde_json::to_vec(&h.group.snapshot()).expect("serialize");
    let snapshot: GroupSnapshot = serde_json::from_slice(&json).expect("deserialize");

    let mut restored = Harness {
        group: Group::restore("g", snapshot, h.now),
        partitions: h.partitions.clone(),
        now: h.now,
    };
    let mut b_sync = restored.sync("b", 2, Vec::new());
    let b_answer = sync_answer(&mut b_sync);
    let heartbeat = restored.heartbeat("b", 2);
    assert!(
        matches!(heartbeat, Ok(true)),
        "members must be told to rejoin; state {:?}, heartbeat {heartbeat:?}, b's sync {b_answer:?}",
        restored.group.state()
    );
}

#[test]
fn an_abandoned_first_join_is_left_out_of_the_generation() {
    let (mut h, generation) = Harness::stable_three(12);
    // A join whose caller went away (its call was cancelled, then retried).
    drop(h.join(sluice_request("", None), "ghost"));
    let retried = h.join(sluice_request("", None), "m4");
    for id in ["m1", "m2", "m3"] {
        assert!(h.heartbeat(id, generation).expect("heartbeat"));
    }
    let rejoins: Vec<JoinRx> = ["m1", "m2", "m3"]
        .iter()
        .map(|id| h.join(sluice_request(id, None), "unused"))
        .collect();
    let m4 = joined(retried);
    assert_eq!(h.member_ids(), ["m1", "m2", "m3", "m4"], "no ghost member");
    assert_eq!(m4.assignment.values().flatten().count(), 3);
    for rx in rejoins {
        assert_eq!(joined(rx).assignment.values().flatten().count(), 3);
    }
}

#[test]
fn a_group_saved_mid_rebalance_rejoins_when_restored() {
    let (mut h, generation) = Harness::stable_three(12);
    h.leave("m3").expect("leave");
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
    let json = serde_json::to_vec(&h.group.snapshot()).expect("encode");
    let snapshot: GroupSnapshot = serde_json::from_slice(&json).expect("decode");
    let mut restored = Group::restore("g", snapshot, h.now);
    assert_eq!(restored.state(), GroupState::PreparingRebalance);
    assert!(
        restored
            .heartbeat("m1", generation, h.now)
            .expect("heartbeat")
    );
}

#[test]
fn partitions_without_an_owner_are_noticed() {
    let (h, _) = Harness::stable_three(12);
    assert!(!h.group.uncovered(&h.partitions));
    let grown = BTreeMap::from([(TOPIC.to_owned(), 15)]);
    assert!(h.group.uncovered(&grown), "3 new partitions have no owner");
}

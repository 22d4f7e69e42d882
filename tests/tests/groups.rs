//! Consumer groups on a real cluster (etcd, controller with the group
//! coordinator, brokers, proxies): members share a topic's partitions,
//! survive a member's kill -9 and a coordinator failover without losing a
//! message, and a joining member moves only the partitions it needs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use sluice_sdk::Admin;
use sluice_tests::cluster::Cluster;
use sluice_tests::group::{CliMember, SdkMember, numbered, produce_numbered};
use sluice_tests::wait_for;

const PARTITIONS: u32 = 12;
const SESSION: Duration = Duration::from_secs(3);
/// Time for what the system must do: generous, not a performance figure.
const PATIENCE: Duration = Duration::from_secs(60);

/// Partitions per member id, from the coordinator.
async fn assignment(admin: &Admin, group: &str) -> anyhow::Result<BTreeMap<String, usize>> {
    let description = admin.describe_group(group).await?;
    Ok(description
        .members
        .iter()
        .map(|m| (m.member_id.clone(), m.assignment.len()))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_share_twelve_partitions_and_survive_a_kill9() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, 2, 1, &[])?;
    let server = cluster.proxy_addrs()[0].clone();
    cluster.create_topic("orders", PARTITIONS).await?;
    produce_numbered(&server, "orders", 0..1200).await?;
    let admin = Admin::connect([server.clone()]).await?;
    let dir = tempfile::tempdir()?;
    let mut members = Vec::new();
    for i in 0..3 {
        let name = format!("member-{i}");
        members.push(CliMember::start(
            dir.path(),
            &name,
            &server,
            "g",
            "orders",
            SESSION,
        )?);
    }
    wait_for("three members with 4 partitions each", PATIENCE, || async {
        let owned = assignment(&admin, "g").await?;
        Ok((owned.len() == 3 && owned.values().all(|n| *n == 4)).then_some(()))
    })
    .await?;
    let union = |members: &[CliMember]| -> BTreeSet<String> {
        members.iter().flat_map(|m| m.values()).collect()
    };
    wait_for("the first 1200 messages processed", PATIENCE, || async {
        Ok(union(&members)
            .is_superset(&numbered(0..1200))
            .then_some(()))
    })
    .await?;

    // Messages keep coming across the kill: the new owners must pick the
    // killed member's partitions up where it committed.
    let producing = {
        let server = server.clone();
        tokio::spawn(async move {
            for chunk in 0..12 {
                let first = 1200 + chunk * 100;
                produce_numbered(&server, "orders", first..first + 100).await?;
            }
            anyhow::Ok(())
        })
    };
    wait_for("the second batch flowing", PATIENCE, || async {
        Ok(union(&members).contains("m-1250").then_some(()))
    })
    .await?;
    // kill -9: no LeaveGroup, only the session timeout tells.
    members[0].kill9();
    let killed = Instant::now();
    let printed_by_killed = members[0].values().len();
    wait_for(
        "the two survivors to own all 12 partitions",
        SESSION + PATIENCE,
        || async {
            let owned = assignment(&admin, "g").await?;
            Ok(
                (owned.len() == 2 && owned.values().sum::<usize>() == PARTITIONS as usize)
                    .then_some(()),
            )
        },
    )
    .await?;
    let reowned = killed.elapsed();
    println!("partitions re-owned {reowned:?} after the kill (session timeout {SESSION:?})");
    // Within the session timeout, plus the coordinator's check and the
    // survivors' rejoin; a generous margin for a loaded machine.
    assert!(
        reowned < SESSION + Duration::from_secs(5),
        "re-owned only after {reowned:?}"
    );
    producing.await??;
    wait_for(
        "every message processed at least once",
        PATIENCE,
        || async {
            Ok(union(&members)
                .is_superset(&numbered(0..2400))
                .then_some(()))
        },
    )
    .await?;
    let printed: Vec<String> = members.iter().flat_map(|m| m.values()).collect();
    let unknown: Vec<&String> = printed
        .iter()
        .filter(|v| !numbered(0..2400).contains(*v))
        .collect();
    assert!(
        unknown.is_empty(),
        "printed messages nobody sent: {unknown:?}"
    );
    // Commits after each print: the survivors re-read at most what the
    // killed member printed after its last commit, never its whole share.
    let twice = printed.len() - 2400;
    assert!(
        twice < printed_by_killed,
        "{twice} messages delivered twice: the new owners did not start at the committed offsets"
    );
    println!(
        "{} lines printed for 2400 messages ({} delivered twice)",
        printed.len(),
        printed.len() - 2400
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_member_takes_only_the_partitions_it_needs() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, 1, 1, &[])?;
    let server = cluster.proxy_addrs()[0].clone();
    cluster.create_topic("orders", PARTITIONS).await?;
    let mut members = Vec::new();
    for _ in 0..3 {
        members.push(
            SdkMember::start(&server, "sticky", "orders", Duration::from_secs(10), false).await?,
        );
    }
    let before = wait_for("three members with 4 partitions each", PATIENCE, || async {
        let seen: Vec<_> = members.iter().map(|m| m.seen().assignment).collect();
        Ok(seen.iter().all(|a| a.len() == 4).then_some(seen))
    })
    .await?;
    let all: BTreeSet<_> = before.iter().flatten().cloned().collect();
    assert_eq!(all.len(), PARTITIONS as usize, "{before:?}");

    members
        .push(SdkMember::start(&server, "sticky", "orders", Duration::from_secs(10), false).await?);
    let after = wait_for("four members with 3 partitions each", PATIENCE, || async {
        let seen: Vec<_> = members.iter().map(|m| m.seen().assignment).collect();
        Ok(seen.iter().all(|a| a.len() == 3).then_some(seen))
    })
    .await?;
    // Each old member kept 3 of its 4; the newcomer got exactly the ones they gave up.
    let mut given_up = BTreeSet::new();
    for (old, new) in before.iter().zip(&after) {
        assert!(
            new.is_subset(old),
            "a member got a partition it did not need: {old:?} -> {new:?}"
        );
        given_up.extend(old.difference(new).cloned());
    }
    assert_eq!(
        given_up, after[3],
        "the newcomer's partitions are the ones given up"
    );
    assert!(members.iter().all(|m| !m.failed()), "a member stopped");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_resumes_after_the_coordinator_is_killed() -> anyhow::Result<()> {
    let cluster = Cluster::start(2, 2, 1, &[])?;
    let server = cluster.proxy_addrs()[0].clone();
    cluster.create_topic("orders", 4).await?;
    let admin = Admin::connect([server.clone()]).await?;
    let members = [
        SdkMember::start(&server, "g", "orders", Duration::from_secs(10), true).await?,
        SdkMember::start(&server, "g", "orders", Duration::from_secs(10), true).await?,
    ];
    produce_numbered(&server, "orders", 0..400).await?;
    let fully_committed = || async {
        let g = admin.describe_group("g").await?;
        let done = g.offsets.len() == 4 && g.offsets.iter().all(|o| o.lag == Some(0));
        anyhow::Ok(done.then_some(g))
    };
    let before = wait_for(
        "the first 400 messages committed",
        PATIENCE,
        fully_committed,
    )
    .await?;
    // Members are shown where they connect from.
    let hosts: Vec<&str> = before
        .members
        .iter()
        .map(|m| m.client_host.as_str())
        .collect();
    assert_eq!(hosts, ["/127.0.0.1", "/127.0.0.1"], "{before:?}");

    // The coordinator is the controller whose log says it coordinates now.
    let coordinating = |log: &str| {
        let started = log.rfind("coordinating consumer groups");
        let stopped = log.rfind("stopped coordinating consumer groups");
        started.is_some_and(|s| stopped.is_none_or(|t| t < s))
    };
    let leader = wait_for("a coordinator", PATIENCE, || async {
        let found: Vec<usize> = (0..2)
            .filter(|&i| coordinating(&cluster.controllers[i].log()))
            .collect();
        Ok((found.len() == 1).then(|| found[0]))
    })
    .await?;
    let mut cluster = cluster;
    cluster.controllers[leader].kill9();
    // The new coordinator has the group as it was: generation and offsets.
    let resumed = wait_for(
        "the group through the new coordinator",
        PATIENCE,
        || async { Ok(Some(admin.describe_group("g").await?)) },
    )
    .await?;
    assert_eq!(
        resumed.generation, before.generation,
        "no rebalance on failover"
    );
    let offsets = |g: &sluice_sdk::GroupDescription| -> BTreeMap<u32, i64> {
        g.offsets
            .iter()
            .map(|o| (o.partition, o.committed))
            .collect()
    };
    assert_eq!(
        offsets(&resumed),
        offsets(&before),
        "committed offsets kept"
    );

    produce_numbered(&server, "orders", 400..800).await?;
    let after = wait_for(
        "all 800 committed through the new coordinator",
        PATIENCE,
        fully_committed,
    )
    .await?;
    let survivor = &cluster.controllers[1 - leader];
    assert!(
        coordinating(&survivor.log()),
        "the standby took over:\n{}",
        survivor.log()
    );
    let committed = |g: &sluice_sdk::GroupDescription| -> BTreeMap<u32, i64> {
        g.offsets
            .iter()
            .map(|o| (o.partition, o.committed))
            .collect()
    };
    for (partition, offset) in committed(&before) {
        assert!(
            committed(&after)[&partition] >= offset,
            "partition {partition} went back"
        );
    }
    let values: BTreeSet<String> = members.iter().flat_map(|m| m.seen().values).collect();
    assert_eq!(values, numbered(0..800), "every message consumed");
    println!(
        "generation {} before, {} after the failover; members {:?}",
        before.generation,
        after.generation,
        after
            .members
            .iter()
            .map(|m| &m.member_id)
            .collect::<Vec<_>>()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_of_its_own_serves_groups() -> anyhow::Result<()> {
    // The controller assigns partitions only; `sluice coordinator` runs the groups.
    let mut cluster = Cluster::start(0, 1, 1, &[])?;
    cluster.add_controller_with(0, &["--coordinator", "false"])?;
    cluster.add_coordinator(0)?;
    let server = cluster.proxy_addrs()[0].clone();
    cluster.create_topic("orders", 4).await?;
    let member =
        SdkMember::start(&server, "apart", "orders", Duration::from_secs(10), true).await?;
    produce_numbered(&server, "orders", 0..100).await?;
    let admin = Admin::connect([server.clone()]).await?;
    wait_for("100 messages consumed and committed", PATIENCE, || async {
        let g = admin.describe_group("apart").await?;
        let committed: i64 = g.offsets.iter().map(|o| o.committed).sum();
        Ok((committed == 100).then_some(()))
    })
    .await?;
    let values: BTreeSet<String> = member.seen().values.into_iter().collect();
    assert_eq!(values, numbered(0..100));
    let controller = cluster.controllers[0].log();
    let coordinator = cluster.controllers[1].log();
    assert!(
        !controller.contains("coordinating consumer groups"),
        "{controller}"
    );
    assert!(
        coordinator.contains("coordinating consumer groups"),
        "{coordinator}"
    );
    Ok(())
}

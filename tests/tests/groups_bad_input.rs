//! Bad group requests get precise errors (gRPC code and `sluice-error`
//! name), straight from the coordinator of a real standalone server:
//! unknown assignors, inconsistent protocols, bad session timeouts and
//! group ids, unknown topics and members, old generations, commits for
//! partitions the member does not own, administrative commits and
//! deletes while members are active.

use std::time::Duration;

use sluice_proto::v1;
use sluice_proto::v1::groups_client::GroupsClient;
use sluice_tests::{Standalone, expect_error};
use tonic::Code;
use tonic::transport::Channel;

fn join(group: &str, member: &str, assignors: &[&str], topics: &[&str]) -> v1::JoinGroupRequest {
    v1::JoinGroupRequest {
        group: group.into(),
        member_id: member.into(),
        instance_id: String::new(),
        client_id: "bad-input-test".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        topics: topics.iter().map(|t| t.to_string()).collect(),
        assignors: assignors.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    }
}

fn commit(group: &str, member: &str, generation: i32, partition: u32) -> v1::CommitOffsetsRequest {
    v1::CommitOffsetsRequest {
        group: group.into(),
        member_id: member.into(),
        generation,
        offsets: vec![v1::OffsetCommit {
            topic: "orders".into(),
            partition,
            offset: 1,
            metadata: String::new(),
        }],
    }
}

/// A heartbeat of `member` in group "g", held up to `max_wait_ms`.
fn heartbeat(member: impl Into<String>, generation: i32, max_wait_ms: u32) -> v1::HeartbeatRequest {
    v1::HeartbeatRequest {
        group: "g".into(),
        member_id: member.into(),
        generation,
        max_wait_ms,
    }
}

async fn groups(server: &Standalone) -> anyhow::Result<GroupsClient<Channel>> {
    Ok(GroupsClient::new(server.channel().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_joins_are_refused_with_precise_errors() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    server.create_topic("orders", 4, None).await?;
    let mut client = groups(&server).await?;

    let r = client
        .join_group(join("g", "", &["foo"], &["orders"]))
        .await;
    let status = expect_error(
        "unknown assignor",
        r,
        Code::InvalidArgument,
        "UNKNOWN_ASSIGNOR",
    );
    assert!(status.message().contains("foo"), "{}", status.message());

    let mut request = join("g", "", &[], &["orders"]);
    request.session_timeout_ms = 10;
    let r = client.join_group(request).await;
    expect_error(
        "tiny session timeout",
        r,
        Code::InvalidArgument,
        "INVALID_SESSION_TIMEOUT",
    );

    let r = client
        .join_group(join("g", "", &[], &["no-such-topic"]))
        .await;
    let status = expect_error("unknown topic", r, Code::NotFound, "UNKNOWN_TOPIC");
    assert!(status.message().contains("no-such-topic"));

    let r = client.join_group(join("a/b", "", &[], &["orders"])).await;
    expect_error("bad group id", r, Code::InvalidArgument, "INVALID_GROUP_ID");

    let r = client.join_group(join("g", "", &[], &[])).await;
    expect_error("no topics", r, Code::InvalidArgument, "INVALID_REQUEST");

    let r = client
        .join_group(join("g", "ghost", &[], &["orders"]))
        .await;
    expect_error("unknown member id", r, Code::NotFound, "UNKNOWN_MEMBER_ID");

    // One member with only "range"; another with only "roundrobin" cannot join.
    let first = client
        .join_group(join("g", "", &["range"], &["orders"]))
        .await?
        .into_inner();
    let r = client
        .join_group(join("g", "", &["roundrobin"], &["orders"]))
        .await;
    expect_error(
        "no common assignor",
        r,
        Code::InvalidArgument,
        "INCONSISTENT_GROUP_PROTOCOL",
    );
    // The group is untouched: the first member is still stable.
    let beat = client
        .heartbeat(heartbeat(first.member_id.clone(), first.generation, 0))
        .await?
        .into_inner();
    assert!(!beat.rebalance, "a refused join must not start a rebalance");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_members_and_foreign_partitions_are_refused() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    server.create_topic("orders", 4, None).await?;
    let mut client = groups(&server).await?;
    let a = client
        .join_group(join("g", "", &["range"], &["orders"]))
        .await?
        .into_inner();
    assert_eq!(a.assignment.len(), 1);
    assert_eq!(a.assignment[0].partitions, vec![0, 1, 2, 3]);

    // B's join waits for A to rejoin; A's heartbeat says so at once.
    let mut b_client = groups(&server).await?;
    let b_join = tokio::spawn(async move {
        b_client
            .join_group(join("g", "", &["range"], &["orders"]))
            .await
    });
    let beat = tokio::time::timeout(
        Duration::from_secs(10),
        client.heartbeat(heartbeat(a.member_id.clone(), a.generation, 5_000)),
    )
    .await??
    .into_inner();
    assert!(beat.rebalance, "A must be told to rejoin");
    let a2 = client
        .join_group(join("g", &a.member_id, &["range"], &["orders"]))
        .await?
        .into_inner();
    let b = b_join.await??.into_inner();
    assert_eq!(a2.generation, b.generation);
    assert!(a2.generation > a.generation);
    let owned = |r: &v1::JoinGroupResponse| -> Vec<u32> {
        r.assignment
            .iter()
            .flat_map(|tp| tp.partitions.clone())
            .collect()
    };
    let (mine, theirs) = (owned(&a2), owned(&b));
    assert_eq!(mine.len() + theirs.len(), 4);

    let r = client
        .commit_offsets(commit("g", &a.member_id, a.generation, mine[0]))
        .await;
    expect_error(
        "old generation",
        r,
        Code::FailedPrecondition,
        "ILLEGAL_GENERATION",
    );

    let r = client
        .commit_offsets(commit("g", &a.member_id, a2.generation, theirs[0]))
        .await;
    let status = expect_error(
        "foreign partition",
        r,
        Code::FailedPrecondition,
        "PARTITION_NOT_OWNED",
    );
    assert!(status.message().contains(&format!("orders/{}", theirs[0])));

    // A member's own partition commits.
    client
        .commit_offsets(commit("g", &a.member_id, a2.generation, mine[0]))
        .await?;

    let r = client.commit_offsets(commit("g", "", -1, mine[0])).await;
    expect_error(
        "admin commit with members",
        r,
        Code::FailedPrecondition,
        "GROUP_NOT_EMPTY",
    );
    let r = client
        .delete_group(v1::DeleteGroupRequest { group: "g".into() })
        .await;
    expect_error(
        "delete with members",
        r,
        Code::FailedPrecondition,
        "GROUP_NOT_EMPTY",
    );

    let mut negative = commit("g", &a.member_id, a2.generation, mine[0]);
    negative.offsets[0].offset = -5;
    let r = client.commit_offsets(negative).await;
    expect_error(
        "negative offset",
        r,
        Code::InvalidArgument,
        "INVALID_REQUEST",
    );

    let r = client.heartbeat(heartbeat("ghost", a2.generation, 0)).await;
    expect_error(
        "unknown member heartbeat",
        r,
        Code::NotFound,
        "UNKNOWN_MEMBER_ID",
    );

    let r = client
        .describe_group(v1::DescribeGroupRequest {
            group: "nobody".into(),
        })
        .await;
    expect_error("unknown group", r, Code::NotFound, "UNKNOWN_GROUP");

    // Once both leave, administrative commits and deletion work.
    for member in [&a.member_id, &b.member_id] {
        client
            .leave_group(v1::LeaveGroupRequest {
                group: "g".into(),
                member_id: member.clone(),
                instance_id: String::new(),
            })
            .await?;
    }
    client.commit_offsets(commit("g", "", -1, 3)).await?;
    let offsets = client
        .fetch_offsets(v1::FetchOffsetsRequest {
            group: "g".into(),
            partitions: vec![],
        })
        .await?
        .into_inner()
        .offsets;
    let committed: Vec<(u32, i64)> = offsets.iter().map(|o| (o.partition, o.offset)).collect();
    assert!(committed.contains(&(3, 1)), "{committed:?}");
    client
        .delete_group(v1::DeleteGroupRequest { group: "g".into() })
        .await?;
    let r = client
        .describe_group(v1::DescribeGroupRequest { group: "g".into() })
        .await;
    expect_error("deleted group", r, Code::NotFound, "UNKNOWN_GROUP");
    Ok(())
}

//! Real Python Kafka clients against a real standalone server, one scenario
//! per test, each on a server of its own:
//!
//! - confluent-kafka (librdkafka) consumer groups, tests/kafka/groups.py:
//!   members are separate processes (one is killed with SIGKILL), commit by
//!   hand, and the script checks the full set of messages each consumed;
//!   also static membership, `offsets_for_times` and the AdminClient's
//!   group APIs.
//! - kafka-python, tests/kafka/kafka_python.py: version inference,
//!   headers, group commits and resuming from them.
//!
//! A script prints a summary and "ok" when its checks passed. Without
//! python3 and the client module (a plain `cargo test`) a test is skipped,
//! unless SLUICE_TEST_SERVERS_REQUIRED is set (scripts/test.sh sets it;
//! scripts/testenv/install.sh installs the modules).

use std::time::{Duration, Instant};

use sluice_tests::Standalone;
use sluice_tests::kafka::run_script;

/// Longest a scenario may take.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts a standalone server with Kafka and runs `tests/kafka/SCRIPT ARGS
/// BROKER`; fails unless the script ends with "ok" within the timeout.
/// The script (and the member processes it started) is killed if the
/// test fails or times out.
async fn run_against_server(script: &str, args: &[&str]) -> anyhow::Result<()> {
    let server = Standalone::start_temp(&["--kafka-addr", "127.0.0.1:0"])?;
    let kafka = server
        .kafka_addr
        .ok_or_else(|| anyhow::anyhow!("the server did not announce its Kafka address"))?
        .to_string();
    let started = Instant::now();
    let args: Vec<&str> = args.iter().copied().chain([kafka.as_str()]).collect();
    let stdout = run_script(script, &args, SCENARIO_TIMEOUT)
        .await
        .map_err(|e| anyhow::anyhow!("{e}\nserver log:\n{}", tail(&server.log())))?;
    println!(
        "{script} {args:?} passed in {:.1} s:\n{stdout}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The end of a long log.
fn tail(log: &str) -> &str {
    let start = log.len().saturating_sub(8000);
    let start = (start..log.len())
        .find(|i| log.is_char_boundary(*i))
        .unwrap_or(log.len());
    &log[start..]
}

async fn groups_scenario(scenario: &str) -> anyhow::Result<()> {
    if !sluice_tests::python_has("confluent_kafka") {
        return Ok(());
    }
    run_against_server("groups.py", &[scenario]).await
}

/// Three member processes over 6 partitions (range assignor, manual
/// commits) get 2 partitions each and consume everything; one is killed
/// with SIGKILL while more is produced; after the session timeout the two
/// survivors hold 3 partitions each, every message was consumed, and a
/// message was consumed twice only if its first consumer had not committed
/// it (each new owner starts at the committed offset).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivors_take_a_killed_members_partitions_after_the_session_timeout_and_lose_nothing()
-> anyhow::Result<()> {
    groups_scenario("eager").await
}

/// The same with cooperative-sticky: a 4th member takes partitions while
/// the others keep at least one of theirs throughout (and get none new);
/// when a member is killed the survivors revoke nothing and take its
/// partitions; the full set is consumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_members_keep_their_partitions_when_a_member_joins_or_dies()
-> anyhow::Result<()> {
    groups_scenario("cooperative").await
}

/// A static member (group.instance.id) killed and restarted gets the same
/// partitions back at once: the others' rebalance callbacks never fire,
/// their member ids stay, the group stays stable with the new
/// incarnation's id, and it resumes from its committed offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_static_member_gets_its_partitions_back_without_a_rebalance()
-> anyhow::Result<()> {
    groups_scenario("static").await
}

/// The same with cooperative-sticky, whose subscription metadata names the
/// partitions a member owns and its generation (a restarted incarnation's
/// differs): the group still does not rebalance, as in Kafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_cooperative_static_member_gets_its_partitions_back_without_a_rebalance()
-> anyhow::Result<()> {
    groups_scenario("static-cooperative").await
}

/// `offsets_for_times` answers the first offset at or after a timestamp
/// (between messages, exactly on one, before the first, after the last),
/// and assigning or seeking there consumes from that message on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_for_times_finds_the_first_message_at_or_after_a_timestamp() -> anyhow::Result<()> {
    groups_scenario("offsets-for-times").await
}

/// AdminClient: list_consumer_groups (with state filters),
/// describe_consumer_groups (members, assignments, state, assignor),
/// list_consumer_group_offsets, and delete_consumer_groups, which fails
/// with NON_EMPTY_GROUP while members are live, works once they left, and
/// answers GROUP_ID_NOT_FOUND for a group that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_client_lists_describes_and_deletes_consumer_groups() -> anyhow::Result<()> {
    groups_scenario("admin").await
}

/// kafka-python without api_version infers a broker of at least 2.0,
/// produces with headers that come back unchanged, commits what one
/// group member processed, and a new member resumes exactly there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_infers_the_version_round_trips_headers_and_resumes_from_commits()
-> anyhow::Result<()> {
    if !sluice_tests::python_has("kafka") {
        return Ok(());
    }
    run_against_server("kafka_python.py", &[]).await
}

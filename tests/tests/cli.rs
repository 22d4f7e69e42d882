//! The `sluice` CLI against a real server: lines piped through `produce`
//! come back from `consume` (every compression, keys, per-partition order),
//! topic verbs work, and errors are one line without a panic.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::process::{Command, Stdio};
use std::time::Duration;

use sluice_tests::{DEADLINE, Standalone, latest, run_cli, sluice_bin, wait_for};

const PARTITIONS: u32 = 3;

/// One consumed line of `consume --print-offsets`: "partition:offset:key:value".
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Consumed {
    partition: u32,
    offset: i64,
    key: String,
    value: String,
}

fn parse_consumed(output: &str) -> Vec<Consumed> {
    output
        .lines()
        .map(|line| {
            let mut parts = line.splitn(4, ':');
            let mut next = || parts.next().unwrap_or_else(|| panic!("bad line {line:?}"));
            Consumed {
                partition: next().parse().expect("partition"),
                offset: next().parse().expect("offset"),
                key: next().to_owned(),
                value: next().to_owned(),
            }
        })
        .collect()
}

/// Input lines: keyed ones ("key=value", the value may hold the separator
/// again) and keyless ones (no separator); every value is unique.
fn input_lines(tag: &str) -> Vec<(Option<String>, String)> {
    (0..120)
        .map(|n| match n % 4 {
            0 => (None, format!("{tag} keyless {n} with spaces")),
            1 => (Some(format!("user-{}", n % 7)), format!("{tag}-{n}")),
            2 => (
                Some(format!("user-{}", n % 5)),
                format!("{tag}-{n}=has=equals"),
            ),
            _ => (Some(format!("order.{n}")), format!("{tag}-{n} ✓ ünïcode")),
        })
        .collect()
}

fn to_stdin(lines: &[(Option<String>, String)]) -> Vec<u8> {
    let mut text = String::new();
    for (key, value) in lines {
        if let Some(key) = key {
            text.push_str(key);
            text.push('=');
        }
        text.push_str(value);
        text.push('\n');
    }
    text.into_bytes()
}

async fn round_trip(
    server: &Standalone,
    topic: &str,
    produce_flags: &[&str],
) -> anyhow::Result<()> {
    let created = server.cli(
        &[
            "topic",
            "create",
            topic,
            "--partitions",
            &PARTITIONS.to_string(),
        ],
        None,
    )?;
    assert!(created.contains(topic), "{created}");
    let lines = input_lines(topic);
    let mut produce = vec!["produce", topic, "--key-separator", "="];
    produce.extend_from_slice(produce_flags);
    server.cli(&produce, Some(&to_stdin(&lines)))?;
    // acks=buffer answers before the data is visible: wait for all of it.
    let client = server.data().await?;
    wait_for("every produced line to be visible", DEADLINE, || {
        let mut client = client.clone();
        async move {
            let mut total = 0;
            for partition in 0..PARTITIONS {
                total += latest(&mut client, topic, partition).await?;
            }
            Ok((total == 120).then_some(()))
        }
    })
    .await?;

    let output = server.cli(
        &["consume", topic, "--from-beginning", "--print-offsets"],
        None,
    )?;
    let consumed = parse_consumed(&output);
    assert_eq!(consumed.len(), lines.len(), "{produce_flags:?}: line count");

    let count = NonZeroU32::new(PARTITIONS).expect("non-zero");
    let where_stored: BTreeMap<&str, u32> = consumed
        .iter()
        .map(|c| (c.value.as_str(), c.partition))
        .collect();
    // For each partition: the input lines that belong there, in input order.
    let mut expected: BTreeMap<u32, Vec<(String, String)>> = BTreeMap::new();
    for (key, value) in &lines {
        let partition = match key {
            Some(key) => sluice_record::partition_for_key(key.as_bytes(), count),
            // Keyless lines may go anywhere; they must go somewhere.
            None => *where_stored
                .get(value.as_str())
                .unwrap_or_else(|| panic!("{produce_flags:?}: keyless line {value:?} was lost")),
        };
        expected
            .entry(partition)
            .or_default()
            .push((key.clone().unwrap_or_default(), value.clone()));
    }
    for partition in 0..PARTITIONS {
        let mut got: Vec<&Consumed> = consumed
            .iter()
            .filter(|c| c.partition == partition)
            .collect();
        got.sort_by_key(|c| c.offset);
        sluice_tests::assert_contiguous(
            &format!("{produce_flags:?} partition {partition}"),
            0,
            got.iter().map(|c| c.offset),
        );
        let got: Vec<(String, String)> = got
            .iter()
            .map(|c| (c.key.clone(), c.value.clone()))
            .collect();
        assert_eq!(
            got,
            expected.remove(&partition).unwrap_or_default(),
            "{produce_flags:?}: partition {partition} holds its lines, in input order"
        );
    }
    Ok(())
}

#[tokio::test]
async fn produce_and_consume_round_trip_with_every_compression() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        round_trip(&server, &format!("cli-{codec}"), &["--compression", codec]).await?;
    }
    round_trip(
        &server,
        "cli-buffer",
        &["--compression", "lz4", "--acks", "buffer"],
    )
    .await?;
    // Small batches: many requests per partition.
    round_trip(&server, "cli-small", &["--batch-messages", "3"]).await?;
    Ok(())
}

#[tokio::test]
async fn consume_honours_partition_offset_and_count() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    server.cli(&["topic", "create", "pick", "--partitions", "2"], None)?;
    let input: String = (0..10).map(|n| format!("m{n}\n")).collect();
    server.cli(
        &["produce", "pick", "--partition", "1"],
        Some(input.as_bytes()),
    )?;
    let output = server.cli(
        &[
            "consume",
            "pick",
            "--partition",
            "1",
            "--offset",
            "4",
            "--count",
            "3",
            "--print-offsets",
        ],
        None,
    )?;
    assert_eq!(output, "1:4::m4\n1:5::m5\n1:6::m6\n");
    let output = server.cli(
        &["consume", "pick", "--partition", "0", "--from-beginning"],
        None,
    )?;
    assert_eq!(output, "", "partition 0 is empty");
    // Without --from-beginning or --offset, consume starts at the end.
    let output = server.cli(&["consume", "pick"], None)?;
    assert_eq!(output, "");
    Ok(())
}

#[tokio::test]
async fn consume_follow_waits_for_new_messages() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    server.cli(&["topic", "create", "follow", "--partitions", "1"], None)?;
    server.cli(&["produce", "follow"], Some(b"old-1\nold-2\n"))?;
    let consumer = Command::new(sluice_bin())
        .args([
            "consume",
            "follow",
            "--from-beginning",
            "--follow",
            "--count",
            "5",
        ])
        .args(["--server", &server.server()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // The consumer reads the two old messages, then must wait for three more.
    server.cli(&["produce", "follow"], Some(b"new-1\nnew-2\nnew-3\n"))?;
    let output = tokio::time::timeout(
        DEADLINE,
        tokio::task::spawn_blocking(move || consumer.wait_with_output()),
    )
    .await???;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8(output.stdout)?,
        "old-1\nold-2\nnew-1\nnew-2\nnew-3\n"
    );
    Ok(())
}

#[tokio::test]
async fn client_verbs_stop_quietly_when_their_reader_goes_away() -> anyhow::Result<()> {
    use std::io::BufRead;
    let server = Standalone::start_temp(&[])?;
    server.cli(&["topic", "create", "piped", "--partitions", "1"], None)?;
    let lines: String = (0..20_000).map(|i| format!("line-{i}\n")).collect();
    server.cli(&["produce", "piped"], Some(lines.as_bytes()))?;
    // `sluice consume … | head -1`: far more output than a pipe holds.
    for args in [vec!["consume", "piped", "--from-beginning"]] {
        let mut child = Command::new(sluice_bin())
            .args(&args)
            .args(["--server", &server.server()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped");
        let mut first = String::new();
        std::io::BufReader::new(stdout).read_line(&mut first)?;
        // The reader is gone (dropped with the BufReader).
        let output = tokio::time::timeout(
            DEADLINE,
            tokio::task::spawn_blocking(move || child.wait_with_output()),
        )
        .await???;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!first.is_empty(), "{args:?} printed nothing");
        assert!(
            output.status.success() && stderr.is_empty(),
            "{args:?}: {:?}, stderr: {stderr}",
            output.status
        );
    }
    Ok(())
}

#[tokio::test]
async fn topic_verbs_create_list_describe_delete() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    server.cli(
        &[
            "topic",
            "create",
            "alpha",
            "--partitions",
            "3",
            "--retention-ms",
            "-1",
            "--segment-bytes",
            "4096",
        ],
        None,
    )?;
    server.cli(&["topic", "create", "beta"], None)?;
    let list = server.cli(&["topic", "list"], None)?;
    assert_eq!(list, "alpha\t3 partitions\nbeta\t1 partitions\n");
    server.cli(&["produce", "alpha", "--partition", "2"], Some(b"a\nb\n"))?;
    let describe = server.cli(&["topic", "describe", "alpha"], None)?;
    assert!(describe.starts_with("topic alpha (id "), "{describe}");
    assert!(describe.contains("retention_ms=-1"), "{describe}");
    assert!(describe.contains("segment_bytes=4096"), "{describe}");
    assert!(describe.contains("partition 2: broker 0"), "{describe}");
    assert!(
        describe.contains("offsets 0..2"),
        "the produced lines show in the describe output: {describe}"
    );
    let deleted = server.cli(&["topic", "delete", "beta"], None)?;
    assert_eq!(deleted, "deleted topic beta\n");
    let list = server.cli(&["topic", "list"], None)?;
    assert_eq!(list, "alpha\t3 partitions\n");
    Ok(())
}

/// Runs a CLI command that must fail; checks it failed cleanly with one line.
fn expect_cli_error(args: &[&str], server: &str, stdin: Option<&[u8]>, mentions: &str) {
    let output = run_cli(args, server, stdin).expect("run the CLI");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "sluice {args:?} should fail; stderr {stderr:?}"
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "sluice {args:?}: exit code; stderr {stderr:?}"
    );
    assert!(
        !stderr.contains("panicked")
            && !stderr.contains("backtrace")
            && !stderr.contains("RUST_BACKTRACE"),
        "sluice {args:?} panicked: {stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "sluice {args:?}: one line on stderr, got {stderr:?}"
    );
    assert!(stderr.starts_with("error: "), "sluice {args:?}: {stderr:?}");
    assert!(
        stderr.contains(mentions),
        "sluice {args:?}: the error should mention {mentions:?}: {stderr:?}"
    );
}

#[tokio::test]
async fn cli_errors_are_one_line_without_a_panic() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    let addr = server.server();
    server.cli(&["topic", "create", "exists", "--partitions", "2"], None)?;
    expect_cli_error(
        &["consume", "nope", "--from-beginning"],
        &addr,
        None,
        "nope",
    );
    expect_cli_error(&["produce", "nope"], &addr, Some(b"x\n"), "nope");
    expect_cli_error(&["topic", "describe", "nope"], &addr, None, "nope");
    expect_cli_error(&["topic", "delete", "nope"], &addr, None, "nope");
    expect_cli_error(&["topic", "create", "exists"], &addr, None, "exists");
    expect_cli_error(&["topic", "create", "bad/name"], &addr, None, "bad/name");
    expect_cli_error(
        &["topic", "create", "zero", "--partitions", "0"],
        &addr,
        None,
        "0",
    );
    expect_cli_error(
        &["produce", "exists", "--partition", "5"],
        &addr,
        Some(b"x\n"),
        "partition 5",
    );
    expect_cli_error(
        &["consume", "exists", "--partition", "5"],
        &addr,
        None,
        "partition 5",
    );
    expect_cli_error(
        &["consume", "exists", "--offset", "99", "--follow"],
        &addr,
        None,
        "99",
    );

    // A port nobody listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.local_addr()?.to_string()
    };
    for args in [
        &["topic", "list"][..],
        &["consume", "exists", "--from-beginning"][..],
        &["produce", "exists"][..],
    ] {
        let started = std::time::Instant::now();
        expect_cli_error(args, &closed, Some(b"x\n"), &closed);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "sluice {args:?} against a closed port should fail fast"
        );
    }
    Ok(())
}

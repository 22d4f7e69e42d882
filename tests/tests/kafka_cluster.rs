//! Kafka clients on a real cluster (etcd, a controller, three brokers, two
//! proxies with Kafka listeners): the proxies are listed as the brokers,
//! partition leaders are spread over them, and a broker killed with SIGKILL
//! under a librdkafka idempotent producer and consumer group loses and
//! duplicates nothing (tests/kafka/cluster_load.py does the Kafka side).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use sluice_tests::cluster::Cluster;

const MESSAGES: u32 = 6000;
const PARTITIONS: u32 = 6;

/// A cluster whose two proxies serve Kafka; returns it and the bootstrap list.
async fn kafka_cluster() -> anyhow::Result<(Cluster, String)> {
    let mut cluster = Cluster::start(1, 3, 0, &[])?;
    for i in 0..2 {
        cluster.add_proxy_with(i, &["--kafka-addr", "127.0.0.1:0"])?;
    }
    let bootstrap = cluster
        .proxies
        .iter()
        .map(|p| p.kafka_addr.clone())
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| anyhow::anyhow!("a proxy did not announce its Kafka address"))?
        .join(",");
    cluster.create_topic("orders", PARTITIONS).await?;
    Ok((cluster, bootstrap))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_lists_every_proxy_and_spreads_leaders() -> anyhow::Result<()> {
    if !sluice_tests::python_has("confluent_kafka") {
        return Ok(());
    }
    let (cluster, bootstrap) = kafka_cluster().await?;
    let script = r#"
import sys
from confluent_kafka.admin import AdminClient
for bootstrap in sys.argv[1].split(","):
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=20)
    brokers = sorted(f"{b.host}:{b.port}" for b in md.brokers.values())
    leaders = {p.leader for p in md.topics["orders"].partitions.values()}
    print(",".join(brokers), len(md.topics["orders"].partitions), len(leaders))
"#;
    let expected = {
        let mut addrs: Vec<&str> = bootstrap.split(',').collect();
        addrs.sort_unstable();
        format!("{} {PARTITIONS} 2", addrs.join(","))
    };
    // Each proxy learns of the other through the metadata store's watch.
    sluice_tests::wait_for(
        "both proxies to list both listeners",
        Duration::from_secs(20),
        || async {
            let output = tokio::process::Command::new("python3")
                .args(["-c", script, &bootstrap])
                .output()
                .await?;
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            let lines: Vec<&str> = stdout.lines().collect();
            anyhow::ensure!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            Ok((lines.len() == 2 && lines.iter().all(|l| *l == expected)).then_some(()))
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}; logs:\n{}", cluster.logs()))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_broker_loses_and_duplicates_nothing_for_kafka_clients() -> anyhow::Result<()> {
    if !sluice_tests::python_has("confluent_kafka") {
        return Ok(());
    }
    let (mut cluster, bootstrap) = kafka_cluster().await?;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kafka/cluster_load.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .args([&bootstrap, "orders", &MESSAGES.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let errors = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
            .join("\n")
    });
    let waited = tokio::task::spawn_blocking(move || {
        let half = lines.recv_timeout(Duration::from_secs(90));
        (half, lines)
    })
    .await?;
    let (half, lines) = waited;
    if half.as_deref().ok() != Some("half") {
        let _ = child.kill();
        let _ = child.wait();
        anyhow::bail!(
            "the script did not get half its messages acknowledged: {half:?}\n{}\nlogs:\n{}",
            errors.join().unwrap_or_default(),
            cluster.logs()
        );
    }
    // Half the messages are in; a broker that writes some of the
    // partitions dies with the rest to come.
    let owned = |d: &sluice_proto::v1::TopicDescription, broker: u64| {
        d.partitions.iter().filter(|p| p.broker == broker).count()
    };
    let before = cluster.describe("orders").await?;
    anyhow::ensure!(owned(&before, 1) > 0, "broker 1 owns nothing: {before:?}");
    cluster.broker(1).kill9();
    child.stdin.take().expect("piped").write_all(b"killed\n")?;
    let status = tokio::task::spawn_blocking(move || {
        let last = lines.recv_timeout(Duration::from_secs(180));
        (child.wait(), last)
    })
    .await?;
    let (status, last) = status;
    let stderr = errors.join().unwrap_or_default();
    anyhow::ensure!(
        status?.success() && last.as_deref().ok() == Some("ok"),
        "{} failed ({last:?}):\n{stderr}\nlogs:\n{}",
        script.display(),
        cluster.logs()
    );
    let after = cluster.describe("orders").await?;
    anyhow::ensure!(
        owned(&after, 1) == 0,
        "the killed broker's partitions did not move: {after:?}"
    );
    eprintln!("{stderr}");
    Ok(())
}

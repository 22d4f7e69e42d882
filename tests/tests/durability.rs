//! Durability: every durably acknowledged message survives `kill -9` exactly
//! once, at the offset it was acknowledged with; restarts keep topics,
//! configs and data.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sluice_proto::v1;
use sluice_record::{BatchBuilder, Compression};
use sluice_tests::{DEADLINE, Standalone, assert_contiguous, read_batches, read_records, wait_for};

/// What the producers of a test know: messages sent (acknowledged or not)
/// and the (partition, offset) each acknowledged message was given.
#[derive(Default)]
struct Ledger {
    sent: Mutex<HashSet<String>>,
    acked: Mutex<HashMap<String, (u32, i64)>>,
    acked_count: AtomicUsize,
    /// Why each producer stopped.
    stopped: Mutex<Vec<String>>,
}

const PRODUCERS: usize = 4;
const PARTITIONS: u32 = 3;
const CYCLES: usize = 3;
/// Acknowledgements to wait for in each cycle before killing the server.
const ACKS_PER_CYCLE: usize = 300;

/// One producer: sends batches of 1..=6 uniquely numbered messages to random
/// partitions with durable acks until the server goes away.
async fn produce_until_error(
    server: String,
    topic: String,
    cycle: usize,
    producer: usize,
    seed: u64,
    ledger: Arc<Ledger>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ ((cycle * PRODUCERS + producer) as u64 + 1));
    let channel = match tonic::transport::Channel::from_shared(format!("http://{server}"))
        .expect("valid uri")
        .connect()
        .await
    {
        Ok(channel) => channel,
        Err(e) => {
            let reason = format!("producer {producer} could not connect: {e}");
            ledger.stopped.lock().expect("lock").push(reason);
            return;
        }
    };
    let mut client = v1::sluice_client::SluiceClient::new(channel);
    for sequence in 0.. {
        let partition = rng.random_range(0..PARTITIONS);
        let count = rng.random_range(1..=6);
        let codec = Compression::ALL[rng.random_range(0..Compression::ALL.len())];
        let mut builder = BatchBuilder::new(codec);
        let mut values = Vec::new();
        for n in 0..count {
            let value = format!("c{cycle}-p{producer}-s{sequence}-n{n}");
            // Padding so small segments roll every few batches.
            let padding = "x".repeat(rng.random_range(0..200));
            builder
                .push(
                    now_ms(),
                    Some(value.as_bytes()),
                    Some(format!("{value}|{padding}").as_bytes()),
                    &[],
                )
                .expect("push");
            values.push(value);
        }
        ledger
            .sent
            .lock()
            .expect("lock")
            .extend(values.iter().cloned());
        let request = v1::ProduceRequest {
            topic: topic.clone(),
            target: Some(v1::produce_request::Target::Partition(partition)),
            records: builder.build().expect("build"),
            acks: v1::AckMode::Durable as i32,
        };
        match client.produce(request).await {
            Ok(response) => {
                let response = response.into_inner();
                assert_eq!(response.partition, partition);
                assert_eq!(
                    response.last_offset - response.base_offset + 1,
                    count as i64,
                    "acknowledged offsets cover the batch"
                );
                let mut acked = ledger.acked.lock().expect("lock");
                for (n, value) in values.into_iter().enumerate() {
                    let previous =
                        acked.insert(value, (partition, response.base_offset + n as i64));
                    assert!(previous.is_none(), "a message id was acknowledged twice");
                }
                ledger.acked_count.fetch_add(count, Ordering::SeqCst);
            }
            // The server was killed (or is shutting down): this producer is done.
            Err(status) => {
                let reason = format!("producer {producer} after {sequence} requests: {status:?}");
                ledger.stopped.lock().expect("lock").push(reason);
                return;
            }
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Reads every partition from 0 and checks the ledger: offsets contiguous
/// from 0, no message twice, nothing that was never sent, and every
/// acknowledged message at exactly its acknowledged partition and offset.
async fn check_log(server: &Standalone, topic: &str, ledger: &Ledger) -> anyhow::Result<usize> {
    let mut client = server.data().await?;
    let sent = ledger.sent.lock().expect("lock").clone();
    let acked = ledger.acked.lock().expect("lock").clone();
    let mut seen: HashMap<String, (u32, i64)> = HashMap::new();
    for partition in 0..PARTITIONS {
        let records = read_records(&mut client, topic, partition, 0).await?;
        assert_contiguous(
            &format!("partition {partition} after restart"),
            0,
            records.iter().map(|r| r.offset),
        );
        for record in records {
            let id = String::from_utf8(record.key.unwrap_or_default().to_vec())?;
            let value = String::from_utf8(record.value.unwrap_or_default().to_vec())?;
            assert!(
                value.starts_with(&format!("{id}|")),
                "record {partition}/{} has a value {value:?} that does not belong to its key {id:?}",
                record.offset
            );
            assert!(
                sent.contains(&id),
                "record {partition}/{} holds {id:?}, which no producer sent",
                record.offset
            );
            if let Some(first) = seen.insert(id.clone(), (partition, record.offset)) {
                panic!(
                    "message {id:?} is stored twice: at {first:?} and at {partition}/{}",
                    record.offset
                );
            }
        }
    }
    let mut missing = Vec::new();
    for (id, place) in &acked {
        match seen.get(id) {
            Some(found) if found == place => {}
            Some(found) => panic!(
                "acknowledged message {id:?} was acknowledged at {place:?} but is stored at {found:?}"
            ),
            None => missing.push((id.clone(), *place)),
        }
    }
    missing.sort_by_key(|(_, place)| *place);
    assert!(
        missing.is_empty(),
        "{} acknowledged messages are lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    Ok(acked.len())
}

/// Producers load the server; it is killed with `kill -9` once enough
/// acknowledgements came, restarted, and the log checked; three times, so
/// recovery also recovers a log that earlier recoveries wrote.
async fn kill9_keeps_every_acknowledged_message(extra_args: &[&str]) -> anyhow::Result<Standalone> {
    let seed = sluice_tests::seed("kill9");
    let mut server = Standalone::start_temp(extra_args)?;
    let topic = "durable";
    server.create_topic(topic, PARTITIONS, None).await?;
    let ledger = Arc::new(Ledger::default());
    for cycle in 0..CYCLES {
        let target = ledger.acked_count.load(Ordering::SeqCst) + ACKS_PER_CYCLE;
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|producer| {
                tokio::spawn(produce_until_error(
                    server.server(),
                    topic.to_owned(),
                    cycle,
                    producer,
                    seed,
                    Arc::clone(&ledger),
                ))
            })
            .collect();
        wait_for(
            &format!("{ACKS_PER_CYCLE} more acknowledgements in cycle {cycle}"),
            DEADLINE,
            || {
                let reached = ledger.acked_count.load(Ordering::SeqCst) >= target;
                async move { Ok(reached.then_some(())) }
            },
        )
        .await
        .map_err(|e| {
            let stopped = ledger.stopped.lock().expect("lock").join("\n");
            anyhow::anyhow!("{e}; producers stopped: {stopped}; log:\n{}", server.log())
        })?;
        server.kill9();
        for producer in producers {
            tokio::time::timeout(DEADLINE, producer).await??;
        }
        server = server.restart().await?;
        let acked = check_log(&server, topic, &ledger).await.map_err(|e| {
            anyhow::anyhow!("cycle {cycle} (seed {seed}): {e}; log:\n{}", server.log())
        })?;
        let sent = ledger.sent.lock().expect("lock").len();
        println!(
            "cycle {cycle}: {acked} acknowledged messages all present once ({} sent but never acknowledged so far)",
            sent - acked
        );
    }
    Ok(server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_under_load_loses_no_acknowledged_message() -> anyhow::Result<()> {
    kill9_keeps_every_acknowledged_message(&[]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_across_segment_rolls_loses_no_acknowledged_message() -> anyhow::Result<()> {
    let server = kill9_keeps_every_acknowledged_message(&["--segment-bytes", "4096"]).await?;
    for partition in 0..PARTITIONS {
        let segments =
            sluice_tests::files_ending(&server.partition_dir("durable", partition), ".log");
        assert!(
            segments.len() >= 5,
            "partition {partition} should have rolled many 4 KiB segments; it has {segments:?}"
        );
    }
    Ok(())
}

fn one_record_batch(value: &str) -> Bytes {
    let mut builder = BatchBuilder::new(Compression::Lz4);
    builder
        .push(now_ms(), None, Some(value.as_bytes()), &[])
        .expect("push");
    builder.build().expect("build")
}

#[tokio::test]
async fn clean_restart_keeps_topics_configs_and_data() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&["--segment-bytes", "2048"])?;
    let config = v1::TopicConfig {
        retention_ms: Some(-1),
        retention_bytes: Some(1 << 30),
        segment_bytes: Some(4096),
        segment_ms: Some(3_600_000),
        max_batch_bytes: Some(65536),
    };
    server.create_topic("configured", 2, Some(config)).await?;
    server.create_topic("plain", 1, None).await?;
    let mut client = server.data().await?;
    let mut expected: BTreeMap<(String, u32), Vec<String>> = BTreeMap::new();
    for n in 0..60 {
        let (topic, partition) = [("configured", 0), ("configured", 1), ("plain", 0)][n % 3];
        let value = format!("{topic}-{partition}-{n}-{}", "y".repeat(100));
        sluice_tests::produce(&mut client, topic, partition, one_record_batch(&value)).await?;
        expected
            .entry((topic.to_owned(), partition))
            .or_default()
            .push(value);
    }
    let mut before = BTreeMap::new();
    for (topic, partition) in expected.keys() {
        before.insert(
            (topic.clone(), *partition),
            read_batches(&mut client, topic, *partition, 0).await?,
        );
    }
    let description_before = server
        .admin()
        .await?
        .describe_topic(v1::DescribeTopicRequest {
            name: "configured".into(),
        })
        .await?
        .into_inner();
    drop(client);

    let server = server.restart().await?;
    let mut admin = server.admin().await?;
    let topics = admin
        .list_topics(v1::ListTopicsRequest {})
        .await?
        .into_inner()
        .topics;
    let names: Vec<(String, u32)> = topics.into_iter().map(|t| (t.name, t.partitions)).collect();
    assert_eq!(
        names,
        vec![("configured".to_owned(), 2), ("plain".to_owned(), 1)]
    );
    let description = admin
        .describe_topic(v1::DescribeTopicRequest {
            name: "configured".into(),
        })
        .await?
        .into_inner();
    assert_eq!(description.id, description_before.id, "topic id survives");
    assert_eq!(
        description.config, description_before.config,
        "config survives"
    );
    let mut client = server.data().await?;
    for ((topic, partition), values) in &expected {
        let batches = read_batches(&mut client, topic, *partition, 0).await?;
        assert_eq!(
            &batches,
            &before[&(topic.clone(), *partition)],
            "{topic}/{partition}: the stored batches are the same bytes after the restart"
        );
        let stored: Vec<String> = sluice_tests::read_all(&mut client, topic, *partition, 0)
            .await?
            .into_iter()
            .map(|(_, v)| String::from_utf8_lossy(&v).into_owned())
            .collect();
        assert_eq!(&stored, values, "{topic}/{partition}");
        // Writing continues at the next offset.
        let response =
            sluice_tests::produce(&mut client, topic, *partition, one_record_batch("after"))
                .await?;
        assert_eq!(response.base_offset, values.len() as i64);
    }
    Ok(())
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_is_refused() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    server.create_topic("mine", 1, None).await?;
    let output = std::process::Command::new(sluice_tests::sluice_bin())
        .arg("standalone")
        .arg("--data-dir")
        .arg(&server.data_dir)
        .args(["--grpc-addr", "127.0.0.1:0"])
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "a second process started on a data dir in use"
    );
    assert!(stderr.contains("in use"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The first server is unharmed.
    let mut client = server.data().await?;
    sluice_tests::produce(&mut client, "mine", 0, one_record_batch("still mine")).await?;
    Ok(())
}

//! Group members for whole-system tests: `sluice consume --group`
//! processes (real processes, so they can be killed with SIGKILL) whose
//! printed lines are collected as they come, and in-process SDK consumers
//! that poll in the background.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use sluice_sdk::{Consumer, OffsetReset, Producer, Record, TopicPartition};
use tokio::task::JoinHandle;

use crate::sluice_bin;

/// A `sluice consume TOPIC --group G --print-offsets` process.
pub struct CliMember {
    child: Child,
    /// Every line printed so far: `partition:offset:key:value`.
    lines: Arc<Mutex<Vec<String>>>,
    pub log: std::path::PathBuf,
}

impl CliMember {
    pub fn start(
        dir: &Path,
        name: &str,
        server: &str,
        group: &str,
        topic: &str,
        session_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let mut child = Command::new(sluice_bin())
            .args(["consume", topic, "--group", group, "--server", server])
            .args([
                "--from-beginning",
                "--print-offsets",
                "--session-timeout-ms",
            ])
            .arg(session_timeout.as_millis().to_string())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start {}", sluice_bin().display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        Ok(Self { child, lines, log })
    }

    /// The values printed so far (the part after `partition:offset:key:`).
    pub fn values(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|l| l.splitn(4, ':').nth(3).map(str::to_owned))
            .collect()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for CliMember {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What an in-process member has seen.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Its assignment after its last poll.
    pub assignment: BTreeSet<(String, u32)>,
    /// Every value received.
    pub values: Vec<String>,
}

/// An SDK consumer polling in a background task; it commits what it
/// received after each poll when `commit` is set.
pub struct SdkMember {
    pub seen: Arc<Mutex<Seen>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl SdkMember {
    pub async fn start(
        server: &str,
        group: &str,
        topic: &str,
        session_timeout: Duration,
        commit: bool,
    ) -> anyhow::Result<Self> {
        let mut consumer = Consumer::builder([server.to_owned()])
            .group(group)
            .session_timeout(session_timeout)
            .auto_commit(None)
            .auto_offset_reset(OffsetReset::Earliest)
            .fetch_max_wait(Duration::from_millis(200))
            .build()
            .await?;
        consumer.subscribe([topic])?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            loop {
                let records = consumer.poll(Duration::from_millis(200)).await?;
                let mut last = std::collections::BTreeMap::new();
                {
                    let mut seen = shared.lock().unwrap_or_else(|e| e.into_inner());
                    for r in &records {
                        let value = r.value.as_deref().unwrap_or_default();
                        seen.values
                            .push(String::from_utf8_lossy(value).into_owned());
                        last.insert((r.topic.to_string(), r.partition), r.offset);
                    }
                    seen.assignment = consumer
                        .assignment()
                        .into_iter()
                        .map(|tp| (tp.topic, tp.partition))
                        .collect();
                }
                if commit && !last.is_empty() {
                    let offsets = last
                        .into_iter()
                        .map(|((t, p), o)| (TopicPartition::new(t, p), o + 1));
                    if let Err(e) = consumer.commit_offsets(offsets).await {
                        // Not ours any more (a rebalance): redelivered elsewhere.
                        eprintln!("commit refused: {e}");
                    }
                }
            }
        });
        Ok(Self { seen, task })
    }

    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops polling without leaving the group: as if the process died.
    pub fn crash(&self) {
        self.task.abort();
    }

    /// The error that stopped the member, if it stopped.
    pub fn failed(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for SdkMember {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends `m-<i>` for each i in `range`, keyed `k-<i>`, through the SDK, and
/// waits for every delivery.
pub async fn produce_numbered(
    server: &str,
    topic: &str,
    range: std::ops::Range<u32>,
) -> anyhow::Result<()> {
    let producer = Producer::builder([server.to_owned()]).build().await?;
    let mut deliveries = Vec::new();
    for i in range {
        let record = Record::new(topic, format!("m-{i}")).with_key(format!("k-{i}"));
        deliveries.push(producer.send(record).await?);
    }
    for delivery in deliveries {
        delivery.await?;
    }
    producer.close().await?;
    Ok(())
}

/// The values [`produce_numbered`] sends for `range`.
pub fn numbered(range: std::ops::Range<u32>) -> BTreeSet<String> {
    range.map(|i| format!("m-{i}")).collect()
}

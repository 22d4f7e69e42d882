//! `sluice bench consume --group G`: a consumer group of SDK consumers
//! reads a topic from the earliest offset, as applications would; or, with
//! `--kill-after-ms`, one member stops without leaving (as a killed process
//! does) and the time until the others own and consume its partitions is
//! measured: the session timeout plus the rebalance.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use sluice_sdk::{Admin, Consumer, OffsetReset};
use tokio::task::JoinHandle;

use crate::client::ServerArgs;

pub struct GroupArgs {
    pub group: String,
    pub members: usize,
    pub kill_after: Option<Duration>,
    pub session_timeout: Duration,
    pub max_bytes: u32,
}

/// What the members share with the measuring loop.
#[derive(Default)]
struct Progress {
    records: AtomicU64,
    bytes: AtomicU64,
    /// Per member: its assignment after its last poll.
    owned: Mutex<BTreeMap<usize, BTreeSet<u32>>>,
    /// Per partition: when a record of it last arrived, and at which member.
    last_record: Mutex<BTreeMap<u32, (Instant, usize)>>,
}

impl Progress {
    fn owned(&self) -> BTreeMap<usize, BTreeSet<u32>> {
        self.owned.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn last_record(&self) -> BTreeMap<u32, (Instant, usize)> {
        self.last_record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

pub async fn run(server: &ServerArgs, topic: &str, args: &GroupArgs) -> anyhow::Result<()> {
    let admin = Admin::connect(server.endpoints()).await?;
    let description = admin.describe_topic(topic).await?;
    let partitions = description.partitions.len() as u32;
    let total: u64 = description
        .partitions
        .iter()
        .map(|p| (p.end_offset - p.start_offset).max(0) as u64)
        .sum();
    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let mut members: Vec<JoinHandle<anyhow::Result<()>>> = Vec::new();
    for member in 0..args.members {
        let consumer = Consumer::builder(server.endpoints())
            .group(&args.group)
            .client_id(format!("bench-{member}"))
            .session_timeout(args.session_timeout)
            .auto_commit(None)
            .auto_offset_reset(OffsetReset::Earliest)
            .fetch_max_bytes(args.max_bytes)
            .build()
            .await?;
        members.push(tokio::spawn(consume(
            consumer,
            topic.to_owned(),
            member,
            Arc::clone(&progress),
        )));
    }
    let result = match args.kill_after {
        None => throughput(&progress, total, started).await,
        Some(after) => rebalance(&progress, &mut members, partitions, after, args).await,
    };
    for member in &members {
        member.abort();
    }
    result
}

async fn consume(
    mut consumer: Consumer,
    topic: String,
    member: usize,
    progress: Arc<Progress>,
) -> anyhow::Result<()> {
    consumer.subscribe([topic.as_str()])?;
    loop {
        let records = consumer.poll(Duration::from_millis(100)).await?;
        let now = Instant::now();
        let mut bytes = 0u64;
        let mut partitions = BTreeSet::new();
        for record in &records {
            bytes += record.value.as_ref().map_or(0, |v| v.len() as u64);
            partitions.insert(record.partition);
        }
        progress
            .records
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        progress.bytes.fetch_add(bytes, Ordering::Relaxed);
        {
            let mut last = progress
                .last_record
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for partition in partitions {
                last.insert(partition, (now, member));
            }
        }
        let owned = consumer
            .assignment()
            .into_iter()
            .map(|tp| tp.partition)
            .collect();
        progress
            .owned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(member, owned);
    }
}

async fn throughput(progress: &Progress, total: u64, started: Instant) -> anyhow::Result<()> {
    while progress.records.load(Ordering::Relaxed) < total {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let bytes = progress.bytes.load(Ordering::Relaxed);
    let records = progress.records.load(Ordering::Relaxed);
    println!(
        "consume (group, {} members): {records} messages, {bytes} value bytes in {:.2} s: {:.0} messages/s, {:.1} MB/s",
        progress.owned().len(),
        elapsed.as_secs_f64(),
        records as f64 / elapsed.as_secs_f64(),
        super::mb_per_s(bytes, elapsed)
    );
    Ok(())
}

async fn rebalance(
    progress: &Progress,
    members: &mut [JoinHandle<anyhow::Result<()>>],
    partitions: u32,
    after: Duration,
    args: &GroupArgs,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.members >= 2,
        "--kill-after-ms needs at least 2 members"
    );
    tokio::time::sleep(after).await;
    let owned = progress.owned();
    let victim = owned
        .iter()
        .find(|(_, p)| !p.is_empty())
        .map(|(m, p)| (*m, p.clone()))
        .context("no member owns a partition yet: raise --kill-after-ms")?;
    let (victim, lost) = victim;
    // Stops its heartbeats and fetches at once, without LeaveGroup.
    members[victim].abort();
    let killed = Instant::now();
    println!(
        "killed member {victim} owning partitions {lost:?} after {:.1} s",
        after.as_secs_f64()
    );
    let deadline = killed + args.session_timeout * 3 + Duration::from_secs(30);
    let mut reowned = None;
    loop {
        let owned = progress.owned();
        let survivors: BTreeSet<u32> = owned
            .iter()
            .filter(|(m, _)| **m != victim)
            .flat_map(|(_, p)| p.iter().copied())
            .collect();
        if reowned.is_none() && survivors.len() == partitions as usize {
            reowned = Some(killed.elapsed());
        }
        let last = progress.last_record();
        let consuming = lost.iter().all(|p| {
            last.get(p)
                .is_some_and(|(at, member)| *at > killed && *member != victim)
        });
        if let (Some(reowned), true) = (reowned, consuming) {
            println!(
                "rebalance: partitions re-owned after {:.2} s, consuming again after {:.2} s (session timeout {:.1} s)",
                reowned.as_secs_f64(),
                killed.elapsed().as_secs_f64(),
                args.session_timeout.as_secs_f64()
            );
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the group did not take over the killed member's partitions within {:?} (re-owned: {reowned:?}); is there data left to consume in them?",
            deadline - killed
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

//! Producer load for whole-system tests: producers write uniquely named
//! messages with durable acks through proxies and remember the offset every
//! acknowledged message was given; [`check_acknowledged`] then reads the
//! partitions back and checks that every one of them is there.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use sluice_proto::v1;
use sluice_proto::v1::sluice_client::SluiceClient;
use sluice_record::{BatchBuilder, Compression};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::transport::Channel;

use crate::cluster::connect;
use crate::{latest, read_all, wait_for};

/// How long [`check_acknowledged`] waits for a proxy to see the newest
/// checkpoint of a partition.
const VISIBLE_DEADLINE: Duration = Duration::from_secs(10);

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One uncompressed batch of `values`.
pub fn batch(values: &[String]) -> anyhow::Result<Bytes> {
    let mut builder = BatchBuilder::new(Compression::None);
    for value in values {
        builder.push(now_ms(), None, Some(value.as_bytes()), &[])?;
    }
    Ok(builder.build()?)
}

/// A durable produce of `values` to an explicit partition.
pub fn produce_request(
    topic: &str,
    partition: u32,
    values: &[String],
) -> anyhow::Result<v1::ProduceRequest> {
    Ok(v1::ProduceRequest {
        topic: topic.into(),
        target: Some(v1::produce_request::Target::Partition(partition)),
        records: batch(values)?,
        acks: v1::AckMode::Durable as i32,
    })
}

/// Every acknowledged message, by (partition, offset). Shared by the tasks
/// that produce.
#[derive(Clone, Debug, Default)]
pub struct Acknowledged(Arc<Mutex<BTreeMap<(u32, i64), String>>>);

impl Acknowledged {
    /// Records `values` acknowledged at `base_offset` onwards.
    pub fn record(&self, partition: u32, base_offset: i64, values: &[String]) {
        let mut acked = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (i, value) in values.iter().enumerate() {
            let previous = acked.insert((partition, base_offset + i as i64), value.clone());
            assert!(
                previous.is_none(),
                "two acknowledgements for {partition}/{}: {previous:?} and {value}",
                base_offset + i as i64
            );
        }
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn snapshot(&self) -> BTreeMap<(u32, i64), String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until at least `count` messages are acknowledged.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> anyhow::Result<()> {
        wait_for(&format!("{count} acknowledged messages"), timeout, || {
            let enough = self.len() >= count;
            async move { Ok(enough.then_some(())) }
        })
        .await
    }
}

/// How a [`Load`] produces.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Concurrent producers, each with its own connection; producer `i`
    /// uses proxy `i % proxies`.
    pub producers: u32,
    /// Messages per produce request (one batch).
    pub messages: usize,
    /// Requests per producer; `None` produces until [`Load::stop`].
    pub requests: Option<u32>,
    /// `None`: an error fails the load (the proxy must hide every move).
    /// `Some(d)`: an error is counted and the same messages are sent again,
    /// for up to `d` per request.
    pub retry_for: Option<Duration>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            producers: 4,
            messages: 5,
            requests: None,
            retry_for: None,
        }
    }
}

/// Producers writing to every partition of a topic through proxies, with
/// durable acks, each message named `<topic>-w<producer>-r<request>-m<i>`.
pub struct Load {
    pub acknowledged: Acknowledged,
    errors: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<anyhow::Result<()>>,
}

/// What a load did.
#[derive(Debug)]
pub struct LoadReport {
    pub acknowledged: BTreeMap<(u32, i64), String>,
    /// Produce errors that were retried.
    pub errors: u64,
}

impl Load {
    pub async fn start(
        proxies: &[String],
        topic: &str,
        partitions: u32,
        options: LoadOptions,
    ) -> anyhow::Result<Self> {
        let acknowledged = Acknowledged::default();
        let errors = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for producer in 0..options.producers {
            let client =
                SluiceClient::new(connect(&proxies[producer as usize % proxies.len()]).await?);
            tasks.spawn(produce(
                client,
                topic.to_owned(),
                partitions,
                producer,
                options.clone(),
                acknowledged.clone(),
                Arc::clone(&errors),
                stopped.clone(),
            ));
        }
        Ok(Self {
            acknowledged,
            errors,
            stop,
            tasks,
        })
    }

    /// Produce errors so far (retried ones; see [`LoadOptions::retry_for`]).
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Waits for the producers to finish their requests.
    pub async fn finish(mut self) -> anyhow::Result<LoadReport> {
        while let Some(result) = self.tasks.join_next().await {
            result??;
        }
        Ok(LoadReport {
            acknowledged: self.acknowledged.snapshot(),
            errors: self.errors(),
        })
    }

    /// Lets each producer finish the request it is sending, then stops them.
    pub async fn stop(self) -> anyhow::Result<LoadReport> {
        self.stop.send_replace(true);
        self.finish().await
    }
}

#[allow(clippy::too_many_arguments)]
async fn produce(
    mut client: SluiceClient<Channel>,
    topic: String,
    partitions: u32,
    producer: u32,
    options: LoadOptions,
    acknowledged: Acknowledged,
    errors: Arc<AtomicU64>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    for request in 0..options.requests.unwrap_or(u32::MAX) {
        if *stop.borrow() {
            break;
        }
        let partition = (producer + request) % partitions;
        let values: Vec<String> = (0..options.messages)
            .map(|i| format!("{topic}-w{producer}-r{request}-m{i}"))
            .collect();
        let started = Instant::now();
        let response = loop {
            let produce = produce_request(&topic, partition, &values)?;
            match client.produce(produce).await {
                Ok(response) => break response.into_inner(),
                Err(status) => {
                    let what = format!(
                        "producer {producer}, request {request} to partition {partition}: {:?} {:?} {}",
                        status.code(),
                        sluice_proto::error_code(&status),
                        status.message()
                    );
                    match options.retry_for {
                        Some(limit) if started.elapsed() < limit => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            // Backoff before the retry, not synchronisation.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Some(limit) => bail!("{what} (still failing after {limit:?})"),
                        None => bail!("{what}"),
                    }
                }
            }
        };
        ensure!(
            response.partition == partition,
            "produced to {partition}, answered for {}",
            response.partition
        );
        acknowledged.record(partition, response.base_offset, &values);
    }
    Ok(())
}

/// Reads partitions `0..partitions` of `topic` through `client` and checks
/// them against `acknowledged`: offsets contiguous from 0, and every
/// acknowledged message at the offset it was acknowledged with. First waits
/// until the proxy sees every acknowledged offset (it learns checkpoints
/// from the brokers' streams). Returns each partition's values, indexed by
/// offset.
pub async fn check_acknowledged(
    client: &SluiceClient<Channel>,
    topic: &str,
    partitions: u32,
    acknowledged: &BTreeMap<(u32, i64), String>,
) -> anyhow::Result<BTreeMap<u32, Vec<String>>> {
    let mut stored = BTreeMap::new();
    for partition in 0..partitions {
        let wanted = acknowledged
            .range((partition, 0)..(partition + 1, 0))
            .next_back()
            .map_or(0, |((_, offset), _)| offset + 1);
        let what = format!("{topic}/{partition} to show offsets up to {wanted}");
        wait_for(&what, VISIBLE_DEADLINE, || {
            let mut client = client.clone();
            async move {
                let end = latest(&mut client, topic, partition).await?;
                Ok((end >= wanted).then_some(()))
            }
        })
        .await?;
        let records = read_all(&mut client.clone(), topic, partition, 0).await?;
        let mut values = Vec::with_capacity(records.len());
        for (index, (offset, value)) in records.into_iter().enumerate() {
            ensure!(
                offset == index as i64,
                "{topic}/{partition}: offset {offset} where {index} was expected (not contiguous from 0)"
            );
            values.push(String::from_utf8(value)?);
        }
        for ((_, offset), value) in acknowledged.range((partition, 0)..(partition + 1, 0)) {
            let found = values.get(*offset as usize);
            ensure!(
                found == Some(value),
                "{topic}/{partition}: {value} was acknowledged at offset {offset}, which holds {found:?} (the partition has {} records)",
                values.len()
            );
        }
        stored.insert(partition, values);
    }
    Ok(stored)
}

/// How many stored values are copies of an earlier one (a produce retried
/// after its answer was lost is written again: producers are not
/// idempotent yet).
pub fn duplicates(stored: &BTreeMap<u32, Vec<String>>) -> usize {
    let mut seen = BTreeSet::new();
    stored
        .values()
        .flatten()
        .filter(|value| !seen.insert(value.as_str()))
        .count()
}

/// Produces one batch and waits for its answer for at most `timeout`:
/// a produce that hangs fails the test instead.
pub async fn produce_within(
    client: &mut SluiceClient<Channel>,
    request: v1::ProduceRequest,
    timeout: Duration,
) -> anyhow::Result<Result<v1::ProduceResponse, tonic::Status>> {
    let what = format!(
        "produce to {}/{:?}",
        request.topic,
        request.target.as_ref().context("no target")?
    );
    match tokio::time::timeout(timeout, client.produce(request)).await {
        Ok(result) => Ok(result.map(tonic::Response::into_inner)),
        Err(_) => bail!("{what} did not answer within {timeout:?} (it hangs)"),
    }
}

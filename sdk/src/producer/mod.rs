//! The producer: `send` appends a record to its partition's open batch and
//! returns a future of its delivery; one sender task per partition sends
//! the batches (see `sender.rs`).

mod accumulator;
mod builder;
mod metadata;
mod partitioner;
mod record;
mod send_queue;
mod sender;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use builder::{Acks, ProducerBuilder};
pub use partitioner::{PartitionFn, Partitioner};
pub use record::{Delivery, DeliveryFuture, Record};

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::types::TopicName;
use accumulator::Accumulator;
use builder::ProducerConfig;
use metadata::TopicMetadata;
use partitioner::{Sticky, partition_for_key, random_below, round_robin, sticky_partition};
use sender::{Command, PartitionSender, PartitionShared, SenderContext, init_producer};

/// Sends records to Sluice in batches.
///
/// Cheap to clone: clones share the same batches, connections and buffer,
/// so many tasks can send through one producer.
///
/// ```no_run
/// # async fn example() -> sluice_sdk::Result<()> {
/// use sluice_sdk::{Producer, Record};
///
/// let producer = Producer::builder(["127.0.0.1:7070"]).build().await?;
/// let delivery = producer
///     .send(Record::new("orders", "hello").with_key("customer-42"))
///     .await?
///     .await?;
/// println!("written at {}/{}", delivery.partition, delivery.offset);
/// producer.close().await?;
/// # Ok(())
/// # }
/// ```
///
/// Call [`Producer::close`] (or [`Producer::flush`]) before the program
/// ends: dropping the last clone lets the sender tasks send what they
/// hold, but nothing waits for them.
#[derive(Clone)]
pub struct Producer {
    shared: Arc<Shared>,
}

/// See [`Producer::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProducerStats {
    pub retries: u64,
    pub duplicates: u64,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("config", &self.shared.context.config)
            .field("producer_id", &self.shared.identity)
            .finish()
    }
}

struct Shared {
    context: Arc<SenderContext>,
    /// The producer id and epoch from InitProducer (idempotence).
    identity: Option<(i64, i16)>,
    /// Never held across an `.await`.
    topics: Mutex<Topics>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    closed: AtomicBool,
}

/// The topics written to, found by name without copying it.
#[derive(Default)]
struct Topics {
    index: HashMap<String, usize>,
    states: Vec<TopicState>,
}

impl Topics {
    /// The state of `topic`, made the first time.
    fn get_or_insert(&mut self, topic: &str, partitions: NonZeroU32) -> &mut TopicState {
        let index = match self.index.get(topic) {
            Some(&index) => index,
            None => {
                self.states.push(TopicState {
                    name: topic.into(),
                    partitions: HashMap::new(),
                    sticky: None,
                    round_robin: random_below(partitions.get()),
                });
                self.index.insert(topic.to_owned(), self.states.len() - 1);
                self.states.len() - 1
            }
        };
        &mut self.states[index]
    }

    fn get_mut(&mut self, topic: &str) -> Option<&mut TopicState> {
        let index = *self.index.get(topic)?;
        self.states.get_mut(index)
    }
}

/// The producer's per-topic state.
struct TopicState {
    name: TopicName,
    partitions: HashMap<u32, PartitionHandle>,
    sticky: Option<Sticky>,
    round_robin: u32,
}

#[derive(Clone)]
struct PartitionHandle {
    shared: Arc<PartitionShared>,
    commands: mpsc::UnboundedSender<Command>,
}

/// Returns a record's buffer bytes to the producer unless it was accepted.
struct Reservation<'a> {
    buffer: &'a Semaphore,
    bytes: usize,
}

impl Reservation<'_> {
    fn accept(mut self) {
        self.bytes = 0;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.buffer.add_permits(self.bytes);
        }
    }
}

impl Producer {
    /// A builder of a producer for the cluster behind `endpoints` (proxy
    /// addresses, "host:port" or URLs).
    pub fn builder<I, S>(endpoints: I) -> ProducerBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ProducerBuilder::new(endpoints)
    }

    /// A producer with the default settings.
    pub async fn connect<I, S>(endpoints: I) -> Result<Producer>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Producer::builder(endpoints).build().await
    }

    pub(crate) async fn start(endpoints: Vec<String>, config: ProducerConfig) -> Result<Producer> {
        let connection = Connection::new(endpoints)?;
        let identity = if config.idempotence {
            Some(init_producer(&connection, config.request_timeout).await?)
        } else {
            None
        };
        let buffer = Arc::new(Semaphore::new(config.buffer_bytes));
        let metadata = TopicMetadata::new(connection.clone(), config.request_timeout);
        Ok(Producer {
            shared: Arc::new(Shared {
                context: Arc::new(SenderContext {
                    connection,
                    metadata,
                    config,
                    buffer,
                    stats: Default::default(),
                }),
                identity,
                topics: Mutex::new(Topics::default()),
                tasks: Mutex::new(Vec::new()),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// Queue `record` for sending and return the future of its delivery.
    ///
    /// Waits while the producer's buffer is full (back-pressure) and, the
    /// first time a topic is used, for its partition count. Fails at once
    /// for a record too large to ever send or a producer that is closed;
    /// everything the server decides (an unknown topic, a partition out of
    /// range, ...) fails the returned future instead.
    pub async fn send(&self, record: Record) -> Result<DeliveryFuture> {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(Error::Closed { what: "producer" });
        }
        let config = &shared.context.config;
        let size = record.estimated_size();
        if size > config.max_record_bytes() {
            return Err(Error::RecordTooLarge {
                size,
                max: config.max_record_bytes(),
                limit: if config.buffer_bytes <= config.max_record_bytes() {
                    "the producer's buffer_bytes"
                } else {
                    "the largest request"
                },
            });
        }
        let buffer = &*shared.context.buffer;
        let permits = u32::try_from(size).map_err(|_| Error::RecordTooLarge {
            size,
            max: u32::MAX as usize,
            limit: "the largest request",
        })?;
        buffer
            .acquire_many(permits)
            .await
            .map_err(|_| Error::Closed { what: "producer" })?
            .forget();
        let reservation = Reservation {
            buffer,
            bytes: size,
        };
        let partitions = match self.partition_count(&record).await {
            Ok(count) => count,
            Err(error) => return Ok(DeliveryFuture::failed(error)),
        };
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let route = self.route(&record, partitions);
        let appended = match route.handle.shared.accumulator.lock() {
            Ok(mut accumulator) => accumulator.append(
                Instant::now(),
                timestamp,
                record.key.as_deref(),
                record.value.as_deref(),
                &record.headers,
                size,
            )?,
            Err(_) => return Err(Error::Closed { what: "producer" }),
        };
        reservation.accept();
        if appended.wake_sender {
            // A closed mailbox means the producer is closing; the record's
            // future then fails with Closed.
            let _ = route.handle.commands.send(Command::Wake);
        }
        if route.sticky {
            self.stuck(&record.topic, route.partition, appended.batch_id);
        }
        Ok(DeliveryFuture::pending(
            appended.batch,
            appended.index,
            route.topic,
            route.partition,
            timestamp,
        ))
    }

    /// The partition count of the record's topic; an explicit partition
    /// beyond it fails with PARTITION_OUT_OF_RANGE (after one refresh, in
    /// case partitions were added).
    async fn partition_count(&self, record: &Record) -> Result<NonZeroU32> {
        let metadata = &self.shared.context.metadata;
        let count = metadata.partitions(&record.topic).await?;
        let Some(partition) = record.partition else {
            return Ok(count);
        };
        if partition < count.get() {
            return Ok(count);
        }
        metadata.invalidate(&record.topic);
        let count = metadata.partitions(&record.topic).await?;
        if partition < count.get() {
            return Ok(count);
        }
        Err(Error::Server {
            status: tonic::Code::InvalidArgument,
            code: Some("PARTITION_OUT_OF_RANGE".into()),
            message: format!(
                "partition {partition} is out of range for topic {:?}, which has {count} partitions",
                record.topic
            ),
        })
    }

    /// The partition of `record` and its handle (starting its sender the
    /// first time).
    fn route(&self, record: &Record, partitions: NonZeroU32) -> Route {
        let shared = &self.shared;
        let mut topics = match shared.topics.lock() {
            Ok(topics) => topics,
            Err(poisoned) => poisoned.into_inner(),
        };
        let state = topics.get_or_insert(&record.topic, partitions);
        let config = &shared.context.config;
        let (partition, sticky) = match (record.partition, &record.key, &config.partitioner) {
            (Some(partition), _, _) => (partition, false),
            (None, key, Partitioner::Custom(choose)) => (
                choose(&record.topic, key.as_deref(), partitions) % partitions.get(),
                false,
            ),
            (None, Some(key), _) => (partition_for_key(key, partitions), false),
            (None, None, Partitioner::RoundRobin) => {
                (round_robin(&mut state.round_robin, partitions), false)
            }
            (None, None, Partitioner::Sticky) => {
                let handles = &state.partitions;
                let open_batch = |partition: u32| {
                    handles
                        .get(&partition)
                        .and_then(|handle| handle.shared.accumulator.lock().ok()?.open_batch())
                };
                let sticky = sticky_partition(state.sticky, partitions, open_batch, random_below);
                state.sticky = Some(sticky);
                (sticky.partition, true)
            }
        };
        let topic = state.name.clone();
        let handle = state
            .partitions
            .entry(partition)
            .or_insert_with(|| self.start_sender(topic.clone(), partition))
            .clone();
        Route {
            topic,
            partition,
            handle,
            sticky,
        }
    }

    /// Remember the batch the topic's keyless records joined.
    fn stuck(&self, topic: &str, partition: u32, batch: u64) {
        if let Ok(mut topics) = self.shared.topics.lock()
            && let Some(state) = topics.get_mut(topic)
            && let Some(sticky) = &mut state.sticky
            && sticky.partition == partition
        {
            sticky.batch = Some(batch);
        }
    }

    fn start_sender(&self, topic: TopicName, partition: u32) -> PartitionHandle {
        let shared = &self.shared;
        let config = &shared.context.config;
        let partition_shared = Arc::new(PartitionShared {
            accumulator: Mutex::new(Accumulator::new(config.compression, config.batch_bytes)),
        });
        let (commands, mailbox) = mpsc::unbounded_channel();
        let sender = PartitionSender::new(
            topic,
            partition,
            Arc::clone(&partition_shared),
            mailbox,
            Arc::clone(&shared.context),
            shared.identity,
        );
        let task = tokio::spawn(sender.run());
        if let Ok(mut tasks) = shared.tasks.lock() {
            tasks.retain(|task| !task.is_finished());
            tasks.push(task);
        }
        PartitionHandle {
            shared: partition_shared,
            commands,
        }
    }

    /// Counts since the producer was built: requests retried after a
    /// retriable failure, and retries the server recognised as batches it
    /// had already written (a lost response: answered with the first
    /// attempt's offsets, written once).
    pub fn stats(&self) -> ProducerStats {
        let stats = &self.shared.context.stats;
        ProducerStats {
            retries: stats.retries.load(std::sync::atomic::Ordering::Relaxed),
            duplicates: stats.duplicates.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Send every waiting record now and wait until every record sent
    /// before the call is acknowledged or has failed (each record's
    /// outcome is in its own future).
    pub async fn flush(&self) -> Result<()> {
        let mailboxes: Vec<mpsc::UnboundedSender<Command>> = match self.shared.topics.lock() {
            Ok(topics) => topics
                .states
                .iter()
                .flat_map(|topic| topic.partitions.values())
                .map(|handle| handle.commands.clone())
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut answers = Vec::with_capacity(mailboxes.len());
        for mailbox in mailboxes {
            let (done, answer) = oneshot::channel();
            if mailbox.send(Command::Flush(done)).is_ok() {
                answers.push(answer);
            }
        }
        for answer in answers {
            // An error means the sender ended, having resolved everything.
            let _ = answer.await;
        }
        Ok(())
    }

    /// Flush, then stop the sender tasks. Later sends fail with
    /// [`Error::Closed`]; so do sends waiting for buffer room.
    pub async fn close(&self) -> Result<()> {
        let shared = &self.shared;
        shared.closed.store(true, Ordering::Release);
        shared.context.buffer.close();
        self.flush().await?;
        // Dropping the mailboxes ends the senders once they are idle.
        let topics = match shared.topics.lock() {
            Ok(mut topics) => std::mem::take(&mut *topics),
            Err(_) => Topics::default(),
        };
        drop(topics);
        let tasks = match shared.tasks.lock() {
            Ok(mut tasks) => std::mem::take(&mut *tasks),
            Err(_) => Vec::new(),
        };
        for task in tasks {
            if let Err(error) = task.await {
                tracing::warn!(%error, "a partition sender ended abnormally");
            }
        }
        Ok(())
    }
}

struct Route {
    topic: TopicName,
    partition: u32,
    handle: PartitionHandle,
    sticky: bool,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

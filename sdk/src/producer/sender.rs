//! One partition's sender task: takes batches from the partition's
//! accumulator, seals them (idempotent sequence), keeps up to
//! `max_in_flight` produce requests out, retries in order, and resolves
//! each batch's records.
//!
//! It owns the partition's sending state ([`SendQueue`], the producer
//! identity); the producer reaches it only through its mailbox and the
//! accumulator. It ends when the producer is closed or dropped, after
//! sending what it holds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use sluice_proto::v1;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use crate::connection::{Connection, Deadline, data_client};
use crate::error::{Error, Result};
use crate::producer::accumulator::{Accumulator, OpenBatch, ProducerIdentity, SealedBatch};
use crate::producer::builder::ProducerConfig;
use crate::producer::metadata::TopicMetadata;
use crate::producer::send_queue::{Retry, SendQueue};
use crate::types::TopicName;

/// A message to a partition's sender.
pub(crate) enum Command {
    /// A batch opened or closed: look at the accumulator again.
    Wake,
    /// Send everything now; answer once every batch made so far is resolved.
    Flush(oneshot::Sender<()>),
}

/// What the producer and a partition's sender share.
pub(crate) struct PartitionShared {
    /// Never held across an `.await`.
    pub accumulator: Mutex<Accumulator>,
}

/// What every sender of a producer shares.
pub(crate) struct SenderContext {
    pub connection: Connection,
    pub metadata: TopicMetadata,
    pub config: ProducerConfig,
    /// The producer's buffer, in bytes: released as batches complete.
    pub buffer: Arc<Semaphore>,
    pub stats: Counters,
}

/// What [`Producer::stats`](super::Producer::stats) reports.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub retries: std::sync::atomic::AtomicU64,
    pub duplicates: std::sync::atomic::AtomicU64,
}

/// A new producer id and epoch for idempotent batches.
pub(crate) async fn init_producer(
    connection: &Connection,
    timeout: Duration,
) -> Result<(i64, i16)> {
    let answer = connection
        .call(
            "init producer",
            Deadline::request(timeout),
            |channel| async move {
                data_client(channel)
                    .init_producer(v1::InitProducerRequest {})
                    .await
            },
        )
        .await?;
    let epoch = i16::try_from(answer.producer_epoch).map_err(|_| Error::Server {
        status: tonic::Code::Internal,
        code: None,
        message: format!(
            "the server gave producer epoch {}, beyond a record batch's 16 bits",
            answer.producer_epoch
        ),
    })?;
    Ok((answer.producer_id, epoch))
}

/// How a failed produce attempt is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Send again (in order, after a backoff).
    Retry,
    /// Fail the batch.
    Fail,
    /// Fail the batch; the topic's partition count may have changed.
    FailAndRefresh,
}

/// The handling of a produce error. OUT_OF_ORDER_SEQUENCE is retriable
/// while an earlier batch of the partition is unacknowledged (that one
/// will fill the gap); otherwise the partition's sequence is broken.
pub(crate) fn judge(error: &Error, earlier_unacknowledged: bool) -> Verdict {
    match error.code() {
        Some("OUT_OF_ORDER_SEQUENCE") if earlier_unacknowledged => Verdict::Retry,
        Some("UNKNOWN_TOPIC" | "PARTITION_OUT_OF_RANGE") => Verdict::FailAndRefresh,
        _ if error.is_retriable() => Verdict::Retry,
        _ => Verdict::Fail,
    }
}

enum Identity {
    /// Not idempotent.
    None,
    Ready(ProducerIdentity),
    /// A batch failed for good and broke the partition's sequence: the
    /// next batches need a new producer id.
    Renew,
}

type Attempt = BoxFuture<'static, (u64, Result<v1::ProduceResponse>)>;

pub(crate) struct PartitionSender {
    topic: TopicName,
    partition: u32,
    shared: Arc<PartitionShared>,
    commands: mpsc::UnboundedReceiver<Command>,
    context: Arc<SenderContext>,
    identity: Identity,
    queue: SendQueue<SealedBatch>,
    attempts: FuturesUnordered<Attempt>,
    flush_waiters: Vec<(Option<u64>, oneshot::Sender<()>)>,
    closing: bool,
}

impl PartitionSender {
    pub(crate) fn new(
        topic: TopicName,
        partition: u32,
        shared: Arc<PartitionShared>,
        commands: mpsc::UnboundedReceiver<Command>,
        context: Arc<SenderContext>,
        identity: Option<(i64, i16)>,
    ) -> Self {
        let strict_order = identity.is_some();
        let max_in_flight = context.config.max_in_flight;
        PartitionSender {
            topic,
            partition,
            shared,
            commands,
            context,
            identity: match identity {
                Some((id, epoch)) => Identity::Ready(ProducerIdentity::new(id, epoch)),
                None => Identity::None,
            },
            queue: SendQueue::new(max_in_flight, strict_order),
            attempts: FuturesUnordered::new(),
            flush_waiters: Vec::new(),
            closing: false,
        }
    }

    pub(crate) async fn run(mut self) {
        loop {
            let now = Instant::now();
            let force = self.closing || !self.flush_waiters.is_empty();
            let linger = self.context.config.linger;
            let (ready, linger_deadline, accumulator_empty) = match self.shared.accumulator.lock() {
                Ok(mut accumulator) => {
                    let ready = accumulator.take_ready(now, linger, force);
                    (
                        ready,
                        accumulator.linger_deadline(linger),
                        accumulator.is_empty(),
                    )
                }
                Err(_) => (Vec::new(), None, true),
            };
            self.seal(ready).await;
            let now = Instant::now();
            self.expire(now);
            self.send_ready(now);
            self.answer_flushes();
            if self.closing && accumulator_empty && self.queue.is_idle() && self.attempts.is_empty()
            {
                break;
            }
            let wake_at = [linger_deadline, self.queue.next_wakeup()]
                .into_iter()
                .flatten()
                .min();
            tokio::select! {
                command = self.commands.recv(), if !self.closing => match command {
                    Some(Command::Wake) => {}
                    Some(Command::Flush(done)) => {
                        let last = self.shared.accumulator.lock().ok().and_then(|a| a.last_batch_id());
                        self.flush_waiters.push((last, done));
                    }
                    None => self.closing = true,
                },
                Some((id, result)) = self.attempts.next(), if !self.attempts.is_empty() => {
                    self.answered(id, result);
                }
                () = sleep_until(wake_at), if wake_at.is_some() => {}
            }
        }
        for (_, done) in self.flush_waiters.drain(..) {
            let _ = done.send(());
        }
    }

    fn context_of(&self) -> String {
        format!("record batch for {}/{}", self.topic, self.partition)
    }

    /// Seal the batches taken from the accumulator and queue them.
    async fn seal(&mut self, ready: Vec<OpenBatch>) {
        if ready.is_empty() {
            return;
        }
        if let Identity::Renew = self.identity {
            let config = &self.context.config;
            match init_producer(&self.context.connection, config.request_timeout).await {
                Ok((id, epoch)) => {
                    tracing::info!(topic = %self.topic, partition = self.partition, producer_id = id,
                        "new producer id for the partition after a failed batch");
                    self.identity = Identity::Ready(ProducerIdentity::new(id, epoch));
                }
                Err(error) => {
                    for batch in ready {
                        let reserved = batch.fail(error.clone());
                        self.release(reserved);
                    }
                    return;
                }
            }
        }
        let delivery_timeout = self.context.config.delivery_timeout;
        for batch in ready {
            let deadline = batch.created + delivery_timeout;
            let context = self.context_of();
            let identity = match &mut self.identity {
                Identity::Ready(identity) => Some(identity),
                Identity::None | Identity::Renew => None,
            };
            match batch.seal(identity, || context) {
                Ok(sealed) => self.queue.push(sealed.id, deadline, sealed),
                Err((_, reserved)) => self.release(reserved),
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        for group in self.queue.expire(now) {
            let error = Error::Timeout {
                operation: "produce",
                after: self.context.config.delivery_timeout,
                last: None,
            };
            self.fail_group(group, error);
        }
    }

    /// Start every attempt the queue allows now.
    fn send_ready(&mut self, now: Instant) {
        while let Some((id, batch)) = self.queue.next_to_send(now) {
            let records = batch.bytes.clone();
            let timeout = self
                .context
                .config
                .request_timeout
                .min(self.queue.remaining(id, now))
                .max(Duration::from_millis(1));
            let request = v1::ProduceRequest {
                topic: self.topic.to_string(),
                target: Some(v1::produce_request::Target::Partition(self.partition)),
                records,
                acks: self.context.config.acks.to_proto() as i32,
            };
            let connection = self.context.connection.clone();
            self.attempts.push(Box::pin(async move {
                let result = connection
                    .call_once(timeout, |channel| async move {
                        data_client(channel).produce(request).await
                    })
                    .await;
                (id, result)
            }));
        }
    }

    fn answered(&mut self, id: u64, result: Result<v1::ProduceResponse>) {
        match result {
            Ok(answer) => {
                if let Some(mut batch) = self.queue.succeeded(id) {
                    if answer.duplicate {
                        self.context
                            .stats
                            .duplicates
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::debug!(topic = %self.topic, partition = self.partition,
                            base_offset = answer.base_offset, "a retried batch was already written");
                    }
                    let reserved = batch.complete(Ok(answer.base_offset));
                    self.release(reserved);
                }
            }
            Err(error) => match judge(&error, self.queue.has_earlier(id)) {
                Verdict::Retry => {
                    self.context
                        .stats
                        .retries
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::debug!(topic = %self.topic, partition = self.partition, %error, "produce failed; retrying");
                    if let Retry::Expired(group) = self.queue.failed_retriable(id, Instant::now()) {
                        let error = Error::Timeout {
                            operation: "produce",
                            after: self.context.config.delivery_timeout,
                            last: Some(Box::new(error)),
                        };
                        self.fail_group(group, error);
                    }
                }
                verdict @ (Verdict::Fail | Verdict::FailAndRefresh) => {
                    if verdict == Verdict::FailAndRefresh {
                        self.context.metadata.invalidate(&self.topic);
                    }
                    let group = self.queue.failed(id);
                    self.fail_group(group, error);
                }
            },
        }
    }

    /// Fail a batch with `error` and the batches it took along (they were
    /// not written: they would have followed a gap).
    fn fail_group(&mut self, group: Vec<SealedBatch>, error: Error) {
        if group.is_empty() {
            return;
        }
        tracing::warn!(topic = %self.topic, partition = self.partition, batches = group.len(), %error, "produce failed");
        if let Identity::Ready(_) = self.identity {
            self.identity = Identity::Renew;
        }
        let mut group = group.into_iter();
        if let Some(mut first) = group.next() {
            let reserved = first.complete(Err(error.clone()));
            self.release(reserved);
        }
        for mut batch in group {
            let reserved = batch.complete(Err(Error::EarlierBatchFailed {
                topic: self.topic.to_string(),
                partition: self.partition,
                cause: Box::new(error.clone()),
            }));
            self.release(reserved);
        }
    }

    fn release(&self, bytes: usize) {
        if bytes > 0 {
            self.context.buffer.add_permits(bytes);
        }
    }

    /// Answer the flushes whose batches are all resolved.
    fn answer_flushes(&mut self) {
        let oldest = self.queue.oldest();
        let waiters = std::mem::take(&mut self.flush_waiters);
        for (last, done) in waiters {
            let resolved = match (last, oldest) {
                (None, _) | (_, None) => true,
                (Some(last), Some(oldest)) => oldest > last,
            };
            if resolved {
                let _ = done.send(());
            } else {
                self.flush_waiters.push((last, done));
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: &str) -> Error {
        Error::Server {
            status: tonic::Code::FailedPrecondition,
            code: Some(code.to_owned()),
            message: String::new(),
        }
    }

    #[test]
    fn out_of_order_is_retried_only_behind_an_unacknowledged_batch() {
        let gap = refused("OUT_OF_ORDER_SEQUENCE");
        assert_eq!(judge(&gap, true), Verdict::Retry);
        assert_eq!(judge(&gap, false), Verdict::Fail);
    }

    #[test]
    fn fatal_and_retriable_produce_errors() {
        for code in [
            "PRODUCER_FENCED",
            "UNKNOWN_PRODUCER_ID",
            "DUPLICATE_SEQUENCE",
            "INVALID_BATCH",
            "BATCH_TOO_LARGE",
        ] {
            assert_eq!(judge(&refused(code), true), Verdict::Fail, "{code}");
        }
        for code in ["UNKNOWN_TOPIC", "PARTITION_OUT_OF_RANGE"] {
            assert_eq!(
                judge(&refused(code), true),
                Verdict::FailAndRefresh,
                "{code}"
            );
        }
        for code in [
            "NOT_OWNER",
            "NOT_AVAILABLE",
            "METADATA_UNAVAILABLE",
            "STORAGE_UNAVAILABLE",
        ] {
            assert_eq!(judge(&refused(code), false), Verdict::Retry, "{code}");
        }
        let lost = Error::Transport {
            endpoint: "a:1".into(),
            status: tonic::Code::Unavailable,
            message: "connection reset".into(),
        };
        assert_eq!(judge(&lost, false), Verdict::Retry);
    }
}

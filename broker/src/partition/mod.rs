//! One partition's write path: a task that owns the [`machine`] and does its
//! I/O, and the [`PartitionHandle`] through which everything reaches it.

pub mod machine;
mod recovery;
pub mod retention;
mod task;

use std::sync::Arc;

use sluice_log::{PartitionKey, PartitionView, VolumeSet};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::PartitionConfig;
use machine::{AckMode, Appended, DeleteRecordsRejected, ProduceBatches, WriteRejected};

/// Requests waiting in a partition's mailbox before producers wait.
const MAILBOX: usize = 1024;

/// What readers can watch: `None` until the partition has recovered.
pub type ViewReceiver = watch::Receiver<Option<Arc<PartitionView>>>;

pub(crate) enum Command {
    Produce {
        batches: ProduceBatches,
        ack: AckMode,
        reply: oneshot::Sender<Result<Appended, WriteRejected>>,
    },
    /// Raise the log start offset to `offset` (-1: the high watermark).
    DeleteRecords {
        offset: i64,
        reply: oneshot::Sender<Result<i64, DeleteRecordsRejected>>,
    },
}

/// A running partition.
#[derive(Debug)]
pub struct PartitionHandle {
    pub key: PartitionKey,
    pub topic_id: String,
    pub epoch: u64,
    commands: mpsc::Sender<Command>,
    view: ViewReceiver,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Produce { ack, .. } => write!(f, "Produce({ack:?})"),
            Command::DeleteRecords { offset, .. } => write!(f, "DeleteRecords({offset})"),
        }
    }
}

/// Sends writes to a partition's mailbox.
#[derive(Debug, Clone)]
pub struct PartitionWriter {
    commands: mpsc::Sender<Command>,
}

impl PartitionWriter {
    /// Appends validated batches; resolves as the ack mode says. Waits while
    /// the partition's mailbox is full (back-pressure).
    pub async fn produce(
        &self,
        batches: ProduceBatches,
        ack: AckMode,
    ) -> Result<Appended, ProduceFailure> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Produce {
                batches,
                ack,
                reply,
            })
            .await
            .map_err(|_| ProduceFailure::Gone)?;
        answer
            .await
            .map_err(|_| ProduceFailure::Gone)?
            .map_err(ProduceFailure::Rejected)
    }
}

impl PartitionWriter {
    /// Raises the partition's log start offset to `offset` (-1: the high
    /// watermark); resolves with the new log start once a checkpoint
    /// records it.
    pub async fn delete_records(&self, offset: i64) -> Result<i64, DeleteRecordsFailure> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::DeleteRecords { offset, reply })
            .await
            .map_err(|_| DeleteRecordsFailure::Gone)?;
        answer
            .await
            .map_err(|_| DeleteRecordsFailure::Gone)?
            .map_err(DeleteRecordsFailure::Rejected)
    }
}

/// Why a DeleteRecords did not reach an answer from the partition.
#[derive(Debug)]
pub enum DeleteRecordsFailure {
    Rejected(DeleteRecordsRejected),
    /// The task is gone (stopped or fenced).
    Gone,
}

/// Why a produce did not reach an answer from the partition.
#[derive(Debug)]
pub enum ProduceFailure {
    Rejected(WriteRejected),
    /// The task is gone (stopped or fenced).
    Gone,
}

impl PartitionHandle {
    /// Starts the task: it takes ownership under `epoch`, recovers, then
    /// accepts writes.
    pub fn spawn(
        key: PartitionKey,
        topic_id: String,
        epoch: u64,
        config: PartitionConfig,
        volumes: VolumeSet,
    ) -> Self {
        let (commands, mailbox) = mpsc::channel(MAILBOX);
        let (view_sender, view) = watch::channel(None);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(task::run(task::Context {
            key: key.clone(),
            topic_id: topic_id.clone(),
            epoch,
            config,
            volumes,
            mailbox,
            view: view_sender,
            cancel: cancel.clone(),
        }));
        Self {
            key,
            topic_id,
            epoch,
            commands,
            view,
            cancel,
            task,
        }
    }

    /// A cheap, cloneable way to send writes to the partition.
    pub fn writer(&self) -> PartitionWriter {
        PartitionWriter {
            commands: self.commands.clone(),
        }
    }

    /// The partition's visible log, updated on every checkpoint.
    pub fn view(&self) -> ViewReceiver {
        self.view.clone()
    }

    /// Whether the task has ended (fenced or failed).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the task: waiting producers are told to retry; buffered data
    /// that was not flushed is dropped (it was acknowledged with `buffer` at
    /// most). Waits for the task to end.
    pub async fn stop(self) {
        self.cancel.cancel();
        if let Err(e) = self.task.await {
            tracing::error!(partition = %self.key, error = %e, "partition task panicked");
        }
    }
}

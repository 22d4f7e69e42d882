//! The partition task: the one owner of a partition's state machine. It feeds
//! the machine its inputs (produce requests from the mailbox, finished I/O,
//! timer ticks) and performs the actions it returns. At most one flush and
//! one checkpoint (or recovery) are in flight at a time; deletions and merges
//! run in the background.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sluice_log::checkpoint::{self, Checkpoint, SaveOutcome};
use sluice_log::{PartitionKey, PartitionView, SegmentMeta, VolumeSet, paths};
use sluice_storage::{SegmentLayout, SegmentWriter, StorageError, Volume};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::Command;
use super::machine::{
    Action, Appended, DeleteRecordsRejected, FlushJob, Flushed, Now, PartitionMachine, Phase,
    SealJob, SegmentTarget, WriteRejected,
};
use super::recovery;
use crate::config::PartitionConfig;

type Reply = oneshot::Sender<Result<Appended, WriteRejected>>;
type DeleteReply = oneshot::Sender<Result<i64, DeleteRecordsRejected>>;

/// How long a stopping partition may take to flush what it buffered.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

pub(crate) struct Context {
    pub key: PartitionKey,
    pub topic_id: String,
    pub epoch: u64,
    pub config: PartitionConfig,
    pub volumes: VolumeSet,
    pub mailbox: mpsc::Receiver<Command>,
    pub view: watch::Sender<Option<Arc<PartitionView>>>,
    pub cancel: CancellationToken,
}

/// The segment the task holds open for appends.
struct OpenWriter {
    name: String,
    volume: Arc<dyn Volume>,
    writer: Box<dyn SegmentWriter>,
}

enum IoDone {
    Flush(Result<Flushed, String>, Option<OpenWriter>),
    Checkpoint(Result<SaveOutcome, String>),
    /// `None` when the partition was stopped while recovering.
    Recovered(Option<recovery::Recovered>),
}

type IoFuture = Pin<Box<dyn Future<Output = IoDone> + Send>>;

pub(crate) async fn run(mut ctx: Context) {
    let mut machine: PartitionMachine<Reply, DeleteReply> = PartitionMachine::new(
        ctx.key.clone(),
        ctx.topic_id.clone(),
        ctx.epoch,
        ctx.config.clone(),
    );
    let (merged_sender, mut merged) = mpsc::unbounded_channel();
    let mut state = TaskState {
        writer: None,
        flush: None,
        checkpoint: None,
        merged: merged_sender,
    };
    let actions = machine.start();
    let mut stop = state.perform(&ctx, actions);
    // Set when stopping: until then, buffered data is flushed and checkpointed.
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    while !stop {
        let deadline = machine.next_deadline().map(tokio::time::Instant::from_std);
        let deadline = match (deadline, drain_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let accepting =
            !machine.is_full() && machine.phase() != Phase::Fenced && drain_deadline.is_none();
        let actions = tokio::select! {
            _ = ctx.cancel.cancelled(), if drain_deadline.is_none() => {
                drain_deadline = Some(tokio::time::Instant::now() + DRAIN_GRACE);
                machine.drain(Now::current())
            }
            command = ctx.mailbox.recv(), if accepting => match command {
                Some(Command::Produce { batches, ack, reply }) => {
                    machine.produce(batches, ack, reply, Now::current())
                }
                Some(Command::DeleteRecords { offset, reply }) => {
                    machine.delete_records(offset, reply, Now::current())
                }
                None => break,
            },
            done = in_flight(&mut state.flush) => {
                state.flush = None;
                let IoDone::Flush(result, writer) = done else { continue };
                state.writer = writer;
                machine.flush_done(result, Now::current())
            }
            done = in_flight(&mut state.checkpoint) => {
                state.checkpoint = None;
                match done {
                    IoDone::Checkpoint(result) => machine.checkpoint_done(result, Now::current()),
                    IoDone::Recovered(Some(recovered)) => {
                        tracing::info!(partition = %ctx.key, epoch = ctx.epoch, found = recovered.checkpoint.as_ref().map(|c| c.sequence), "recovered; saving the takeover checkpoint");
                        machine.recover(recovered.checkpoint, recovered.verified_end, Now::current())
                    }
                    IoDone::Recovered(None) | IoDone::Flush(..) => break,
                }
            }
            Some((name, layout)) = merged.recv() => machine.merge_done(&name, layout, Now::current()),
            _ = sleep_until(deadline) => machine.tick(Now::current()),
        };
        stop = state.perform(&ctx, actions);
        if let Some(grace_end) = drain_deadline {
            if machine.is_drained() {
                break;
            }
            if tokio::time::Instant::now() >= grace_end {
                tracing::warn!(partition = %ctx.key, "stopping before buffered data was flushed: storage did not answer within {DRAIN_GRACE:?}");
                break;
            }
        }
    }
    for action in machine.stop() {
        match action {
            Action::Reply(reply, result) => {
                let _ = reply.send(result);
            }
            Action::ReplyDeleteRecords(reply, result) => {
                let _ = reply.send(result);
            }
            _ => {}
        }
    }
    // Anything still queued is told to retry elsewhere.
    ctx.mailbox.close();
    while let Ok(command) = ctx.mailbox.try_recv() {
        match command {
            Command::Produce { reply, .. } => {
                let _ = reply.send(Err(WriteRejected::Stopped));
            }
            Command::DeleteRecords { reply, .. } => {
                let _ = reply.send(Err(DeleteRecordsRejected::Write(WriteRejected::Stopped)));
            }
        }
    }
    if let Some(open) = state.writer.take()
        && let Err(e) = open.writer.seal().await
    {
        tracing::warn!(partition = %ctx.key, error = %e, "closing the open segment failed");
    }
    ctx.view.send_replace(None);
    tracing::info!(partition = %ctx.key, epoch = ctx.epoch, "partition stopped");
}

/// An in-flight I/O; never resolves when there is none.
async fn in_flight(io: &mut Option<IoFuture>) -> IoDone {
    match io.as_mut() {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Recovers, retrying storage errors with backoff until it works or the
/// partition is stopped.
async fn recover_with_retries(
    key: PartitionKey,
    topic_id: String,
    volumes: VolumeSet,
    cancel: CancellationToken,
) -> Option<recovery::Recovered> {
    let mut delay = Duration::from_millis(100);
    loop {
        match recovery::recover(&key, &topic_id, &volumes).await {
            Ok(recovered) => return Some(recovered),
            Err(e) => {
                tracing::error!(partition = %key, error = %e, retry_in = ?delay, "recovery failed")
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

struct TaskState {
    writer: Option<OpenWriter>,
    /// The flush in flight.
    flush: Option<IoFuture>,
    /// The checkpoint save or the recovery in flight.
    checkpoint: Option<IoFuture>,
    /// Where background merges report the merged layout of a segment.
    merged: mpsc::UnboundedSender<(String, SegmentLayout)>,
}

impl TaskState {
    /// Performs the machine's actions; returns whether the task must stop.
    fn perform(&mut self, ctx: &Context, actions: Vec<Action<Reply, DeleteReply>>) -> bool {
        let mut stop = false;
        for action in actions {
            match action {
                Action::Reply(reply, result) => {
                    // The producer may have gone away; that is fine.
                    let _ = reply.send(result);
                }
                Action::ReplyDeleteRecords(reply, result) => {
                    let _ = reply.send(result);
                }
                Action::Recover => {
                    let recovering = recover_with_retries(
                        ctx.key.clone(),
                        ctx.topic_id.clone(),
                        ctx.volumes.clone(),
                        ctx.cancel.clone(),
                    );
                    self.checkpoint =
                        Some(Box::pin(async move { IoDone::Recovered(recovering.await) }));
                }
                Action::Flush(job) => {
                    let writer = self.writer.take();
                    self.flush = Some(Box::pin(flush(
                        ctx.key.clone(),
                        ctx.volumes.clone(),
                        writer,
                        job,
                        self.merged.clone(),
                    )));
                }
                Action::SaveCheckpoint { seal, checkpoint } => {
                    let key = ctx.key.clone();
                    let volumes = ctx.volumes.clone();
                    let merges = self.merged.clone();
                    self.checkpoint = Some(Box::pin(async move {
                        IoDone::Checkpoint(save(&key, &volumes, seal, &checkpoint, merges).await)
                    }));
                }
                Action::Publish(checkpoint) => publish(ctx, &checkpoint),
                Action::DeleteSegments(segments) => {
                    let (key, volumes) = (ctx.key.clone(), ctx.volumes.clone());
                    tokio::spawn(async move { delete_segments(&key, &volumes, segments).await });
                }
                Action::DeleteChunks(segment) => {
                    let (key, volumes) = (ctx.key.clone(), ctx.volumes.clone());
                    tokio::spawn(async move {
                        if let Ok(volume) = volumes.get(&segment.volume)
                            && let Err(e) = volume
                                .delete_chunks(
                                    &paths::segment(&key, &segment.name),
                                    &segment.layout,
                                )
                                .await
                        {
                            tracing::warn!(partition = %key, error = %e, "deleting merged chunks failed; they are garbage now");
                        }
                    });
                }
                Action::PruneCheckpoints { newest, keep } => {
                    let (key, volumes) = (ctx.key.clone(), ctx.volumes.clone());
                    tokio::spawn(async move {
                        if let Ok(home) = volumes.home()
                            && let Err(e) =
                                checkpoint::prune(home.as_ref(), &key, newest, &keep).await
                        {
                            tracing::warn!(partition = %key, error = %e, "pruning old checkpoints failed");
                        }
                    });
                }
                Action::Stop => {
                    tracing::warn!(partition = %ctx.key, epoch = ctx.epoch, "fenced by a newer owner; stopping");
                    stop = true;
                }
            }
        }
        stop
    }
}

fn publish(ctx: &Context, checkpoint: &Checkpoint) {
    let previous = ctx.view.borrow().clone();
    let view = PartitionView::from_checkpoint(ctx.key.clone(), checkpoint, previous.as_deref());
    ctx.view.send_replace(Some(Arc::new(view)));
}

/// Seal (if asked), then append the batches to the open or a new segment.
async fn flush(
    key: PartitionKey,
    volumes: VolumeSet,
    mut writer: Option<OpenWriter>,
    job: FlushJob,
    merges: mpsc::UnboundedSender<(String, SegmentLayout)>,
) -> IoDone {
    if let Some(seal_job) = job.seal
        && let Err(e) = seal(&key, &volumes, &mut writer, seal_job, merges).await
    {
        return IoDone::Flush(Err(e.to_string()), writer);
    }
    if let SegmentTarget::New { name, avoid } = job.target {
        if let Some(old) = writer.take() {
            tracing::warn!(partition = %key, segment = %old.name, "dropping a writer the machine no longer uses");
        }
        let volume = match volumes.pick_for_new_segment(avoid.as_deref()) {
            Ok(volume) => volume,
            Err(e) => return IoDone::Flush(Err(e.to_string()), None),
        };
        match volume.create_segment(&paths::segment(&key, &name)).await {
            Ok(created) => {
                writer = Some(OpenWriter {
                    name,
                    volume,
                    writer: created,
                })
            }
            Err(e) => {
                return IoDone::Flush(Err(write_failed(&key, &volumes, volume.url(), &e)), None);
            }
        }
    }
    let Some(mut open) = writer else {
        return IoDone::Flush(Err("no open segment to append to".into()), None);
    };
    match open.writer.append(job.data).await {
        Ok(layout) => {
            let flushed = Flushed {
                volume: open.volume.url().to_owned(),
                layout,
            };
            IoDone::Flush(Ok(flushed), Some(open))
        }
        // The writer is abandoned: the machine continues in a new segment.
        Err(e) => IoDone::Flush(
            Err(write_failed(&key, &volumes, open.volume.url(), &e)),
            None,
        ),
    }
}

fn write_failed(
    key: &PartitionKey,
    volumes: &VolumeSet,
    url: &str,
    error: &StorageError,
) -> String {
    tracing::error!(partition = %key, volume = %url, error = %error, "segment write failed; continuing in a new segment on another volume");
    volumes.mark_unhealthy(url, Duration::from_secs(30));
    error.to_string()
}

/// Closes the segment's writer if it is the open one, writes its index, and
/// starts merging its chunks into one object in the background.
async fn seal(
    key: &PartitionKey,
    volumes: &VolumeSet,
    writer: &mut Option<OpenWriter>,
    job: SealJob,
    merges: mpsc::UnboundedSender<(String, SegmentLayout)>,
) -> Result<(), sluice_log::LogError> {
    if writer.as_ref().is_some_and(|w| w.name == job.name)
        && let Some(open) = writer.take()
    {
        // Everything the checkpoints reference is durable already; a
        // failing close (its volume may be the one failing) changes nothing.
        if let Err(e) = open.writer.seal().await {
            tracing::warn!(partition = %key, segment = %job.name, error = %e, "closing a sealed segment failed");
        }
    }
    // The index goes to the home volume, which must be healthy anyway for
    // checkpoints: sealing never depends on a failing data volume.
    let home = volumes.home()?;
    match home
        .put_if_absent(&paths::segment_index(key, &job.name), job.index)
        .await
    {
        // Same name, same epoch, same content: an earlier attempt wrote it.
        Ok(()) | Err(StorageError::AlreadyExists { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    if let SegmentLayout::Chunks { .. } = job.layout {
        let volume = Arc::clone(volumes.get(&job.volume)?);
        let path = paths::segment(key, &job.name);
        let key = key.clone();
        tokio::spawn(async move {
            match volume.merge_segment(&path, &job.layout).await {
                Ok(merged) => {
                    let _ = merges.send((job.name, merged));
                }
                Err(e) => {
                    tracing::warn!(partition = %key, segment = %path, error = %e, "merging sealed chunks failed; the segment stays chunked")
                }
            }
        });
    }
    Ok(())
}

async fn save(
    key: &PartitionKey,
    volumes: &VolumeSet,
    seal_job: Option<SealJob>,
    checkpoint: &Checkpoint,
    merges: mpsc::UnboundedSender<(String, SegmentLayout)>,
) -> Result<SaveOutcome, String> {
    if let Some(job) = seal_job {
        seal(key, volumes, &mut None, job, merges)
            .await
            .map_err(|e| e.to_string())?;
    }
    let home = volumes.home().map_err(|e| e.to_string())?;
    checkpoint::save(home.as_ref(), key, checkpoint).await.map_err(|e| {
        tracing::error!(partition = %key, sequence = checkpoint.sequence, error = %e, "saving the checkpoint failed; retrying");
        e.to_string()
    })
}

async fn delete_segments(key: &PartitionKey, volumes: &VolumeSet, segments: Vec<SegmentMeta>) {
    for segment in segments {
        let Ok(volume) = volumes.get(&segment.volume) else {
            continue;
        };
        let data = paths::segment(key, &segment.name);
        let result = async {
            volume.delete_chunks(&data, &segment.layout).await?;
            volume.delete(&data).await?;
            match volumes.home() {
                Ok(home) => home.delete(&paths::segment_index(key, &segment.name)).await,
                Err(_) => Ok(()),
            }
        }
        .await;
        match result {
            Ok(()) => tracing::info!(partition = %key, segment = %data, "deleted by retention"),
            Err(e) => {
                tracing::warn!(partition = %key, segment = %data, error = %e, "deleting an expired segment failed; it is garbage now")
            }
        }
    }
}

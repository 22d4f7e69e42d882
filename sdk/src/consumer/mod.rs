//! The consumer: `poll` returns fetched records of the owned partitions,
//! drives group membership (join, rejoin on rebalance) and auto-commits;
//! one fetcher task per partition long-polls the server.

mod builder;
mod commit;
mod fetcher;
mod group;
mod listener;
mod positions;
mod state;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use builder::{ConsumerBuilder, OffsetReset};
pub use fetcher::ConsumerRecord;
pub use listener::RebalanceListener;

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::types::TopicPartition;
pub(crate) use group::commit_offsets;

use builder::ConsumerConfig;
use fetcher::{FetchEvent, Fetcher};
use group::{AbortOnDrop, MemberStatus, Membership};
use state::Partitions;

/// Fetch answers waiting for `poll`, all partitions together.
const EVENT_QUEUE: usize = 64;

/// How the consumer gets its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    /// Neither subscribed nor assigned yet.
    Idle,
    /// Group membership: the coordinator assigns partitions of these topics.
    Subscribed(Vec<String>),
    /// Partitions given by hand; no membership.
    Assigned,
}

/// Reads records from Sluice, alone or as a member of a consumer group.
///
/// ```no_run
/// # async fn example() -> sluice_sdk::Result<()> {
/// use std::time::Duration;
/// use sluice_sdk::Consumer;
///
/// let mut consumer = Consumer::builder(["127.0.0.1:7070"])
///     .group("billing")
///     .auto_commit(None)
///     .build()
///     .await?;
/// consumer.subscribe(["orders"])?;
/// loop {
///     let records = consumer.poll(Duration::from_secs(1)).await?;
///     for record in &records {
///         println!("{}/{} at {}", record.topic, record.partition, record.offset);
///     }
///     consumer.commit().await?;
/// }
/// # }
/// ```
///
/// A consumer is used by one task at a time (`&mut self`); its fetcher and
/// heartbeat tasks run in the background and stop when it is dropped.
///
/// A join waits until every member of the group has rejoined (or the
/// rebalance timeout dropped it), and members rejoin from `poll`: several
/// members of one group driven by one task must be polled concurrently
/// (`tokio::join!`), not one after the other.
/// Call [`Consumer::close`] to commit (with auto-commit) and leave the
/// group at once instead of after the session timeout.
pub struct Consumer {
    config: Arc<ConsumerConfig>,
    connection: Connection,
    mode: Mode,
    /// The id the coordinator gave, kept across rejoins; empty before the first join.
    member_id: String,
    membership: Option<Membership>,
    /// Join at the next poll (subscription changed, or a join failed).
    rejoin: bool,
    partitions: Partitions,
    fetchers: HashMap<TopicPartition, (u64, AbortOnDrop)>,
    events_sender: mpsc::Sender<FetchEvent>,
    events: mpsc::Receiver<FetchEvent>,
    next_auto_commit: Option<Instant>,
    auto_commit_task: Option<JoinHandle<Result<()>>>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("config", &self.config)
            .field("mode", &self.mode)
            .field("membership", &self.membership)
            .field("assignment", &self.partitions.owned())
            .finish()
    }
}

impl Consumer {
    /// A builder of a consumer for the cluster behind `endpoints` (proxy
    /// addresses, "host:port" or URLs).
    pub fn builder<I, S>(endpoints: I) -> ConsumerBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ConsumerBuilder::new(endpoints)
    }

    pub(crate) fn start(endpoints: Vec<String>, config: ConsumerConfig) -> Result<Consumer> {
        let connection = Connection::new(endpoints)?;
        let (events_sender, events) = mpsc::channel(EVENT_QUEUE);
        Ok(Consumer {
            config: Arc::new(config),
            connection,
            mode: Mode::Idle,
            member_id: String::new(),
            membership: None,
            rejoin: false,
            partitions: Partitions::default(),
            fetchers: HashMap::new(),
            events_sender,
            events,
            next_auto_commit: None,
            auto_commit_task: None,
        })
    }

    fn group(&self) -> Result<&str> {
        self.config.group.as_deref().ok_or_else(|| {
            Error::invalid_state("no consumer group: set one with ConsumerBuilder::group")
        })
    }

    /// Join the group (at the next poll) for partitions of `topics`; the
    /// coordinator assigns them. Needs a group; not after [`Consumer::assign`].
    pub fn subscribe<I, S>(&mut self, topics: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.group()?;
        if self.mode == Mode::Assigned {
            return Err(Error::invalid_state(
                "the consumer has partitions assigned by hand: unsubscribe first",
            ));
        }
        let mut topics: Vec<String> = topics.into_iter().map(Into::into).collect();
        topics.sort();
        topics.dedup();
        if topics.is_empty() {
            return Err(Error::invalid_state("subscribe to at least one topic"));
        }
        if self.mode != Mode::Subscribed(topics.clone()) {
            self.mode = Mode::Subscribed(topics);
            self.rejoin = true;
        }
        Ok(())
    }

    /// Read exactly `partitions`, without group membership. Commits (if a
    /// group is set) then use member id "" and generation -1, which the
    /// coordinator accepts only while the group has no members.
    pub fn assign<I>(&mut self, partitions: I) -> Result<()>
    where
        I: IntoIterator<Item = TopicPartition>,
    {
        if matches!(self.mode, Mode::Subscribed(_)) {
            return Err(Error::invalid_state(
                "the consumer is subscribed to a group: unsubscribe first",
            ));
        }
        let partitions: BTreeSet<TopicPartition> = partitions.into_iter().collect();
        self.mode = if partitions.is_empty() {
            Mode::Idle
        } else {
            Mode::Assigned
        };
        self.partitions.assign(partitions);
        self.sync_fetchers();
        Ok(())
    }

    /// Leave the group (or drop the hand-made assignment): no partitions
    /// are owned afterwards. Auto-commit commits first.
    pub async fn unsubscribe(&mut self) -> Result<()> {
        let result = self.stop(false).await;
        self.mode = Mode::Idle;
        self.partitions.assign(BTreeSet::new());
        self.sync_fetchers();
        result
    }

    /// Records of the owned, unpaused partitions, up to `max_poll_records`:
    /// at once if some are fetched, else as soon as some arrive, else empty
    /// after `timeout`.
    ///
    /// In a group, poll also joins and rejoins (on a rebalance it returns
    /// promptly to do so, commits first with auto-commit, and calls the
    /// rebalance listener), so call it at least every rebalance timeout.
    /// Positions move past the records returned; with auto-commit they are
    /// committed every interval from here.
    ///
    /// A fetch failure that is not passing (an unknown topic, corrupt
    /// data) is returned as an error; the partition's fetcher retries after
    /// a backoff.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        if self.mode == Mode::Idle {
            return Err(Error::invalid_state(
                "nothing to poll: subscribe to topics or assign partitions first",
            ));
        }
        let deadline = Instant::now() + timeout;
        loop {
            self.maintain().await?;
            let records = self.partitions.take(self.config.max_poll_records);
            if !records.is_empty() {
                return Ok(records);
            }
            if Instant::now() >= deadline {
                return Ok(Vec::new());
            }
            let auto_commit_at = self.next_auto_commit;
            tokio::select! {
                event = self.events.recv() => {
                    if let Some(event) = event {
                        self.handle_event(event)?;
                        while let Ok(event) = self.events.try_recv() {
                            self.handle_event(event)?;
                        }
                    }
                }
                () = group::rejoin_needed(self.membership.as_mut().map(|m| &mut m.status)) => {}
                () = sleep_until(auto_commit_at) => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    fn handle_event(&mut self, event: FetchEvent) -> Result<()> {
        match event {
            FetchEvent::Records {
                partition,
                fetcher,
                records,
                next_offset,
            } => {
                let tp = TopicPartition::new(partition.topic.to_string(), partition.partition);
                self.partitions.fetched(tp, fetcher, records, next_offset);
                Ok(())
            }
            FetchEvent::Failed {
                partition,
                fetcher,
                error,
            } => {
                let tp = TopicPartition::new(partition.topic.to_string(), partition.partition);
                if self.partitions.fetcher(&tp) == Some(fetcher) {
                    Err(error)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Membership, auto-commit, positions and fetchers, brought up to date.
    async fn maintain(&mut self) -> Result<()> {
        if let Mode::Subscribed(topics) = &self.mode {
            let status = self
                .membership
                .as_ref()
                .map(|membership| *membership.status.borrow());
            if self.rejoin || status != Some(MemberStatus::Active) {
                let topics = topics.clone();
                self.rejoin_group(&topics, status).await?;
            }
        }
        self.auto_commit_if_due();
        self.init_positions().await?;
        self.start_fetchers();
        Ok(())
    }

    async fn rejoin_group(
        &mut self,
        topics: &[String],
        status: Option<MemberStatus>,
    ) -> Result<()> {
        let group = self.group()?.to_owned();
        if status == Some(MemberStatus::Fenced) {
            return Err(Error::invalid_state(format!(
                "another consumer joined group {group:?} with this consumer's instance id {:?} and replaced it (FENCED_INSTANCE_ID)",
                self.config.instance_id.clone().unwrap_or_default()
            )));
        }
        self.partitions.stop_fetching();
        self.sync_fetchers();
        // An auto-commit still in flight lands before the commit below.
        if let Some(task) = self.auto_commit_task.take() {
            let _ = task.await;
        }
        let dropped = matches!(status, Some(MemberStatus::RejoinAsNew | MemberStatus::Lost));
        if dropped {
            // No longer a member: its partitions may have had other owners
            // (who committed) meanwhile. Give them all up, positions
            // included; whatever comes back starts from the committed offset.
            let change = self.partitions.assign(std::collections::BTreeSet::new());
            self.sync_fetchers();
            if let Some(listener) = self.config.listener.clone()
                && !change.revoked.is_empty()
            {
                listener.on_revoked(&change.revoked).await;
            }
        } else if self.config.auto_commit.is_some() && self.membership.is_some() {
            if let Err(error) = self.commit().await {
                if group::is_generation_error(&error) {
                    tracing::debug!(group, %error, "commit before rejoining refused");
                } else {
                    tracing::warn!(group, %error, "commit before rejoining failed");
                }
            }
        }
        // Stops the old heartbeat.
        self.membership = None;
        if status == Some(MemberStatus::RejoinAsNew) {
            self.member_id.clear();
        }
        self.rejoin = true;
        let joined = group::join_group(
            &self.connection,
            &self.config,
            &group,
            topics,
            &self.member_id,
        )
        .await?;
        self.member_id = joined.member_id.clone();
        self.membership = Some(group::start_heartbeat(
            self.connection.clone(),
            &self.config,
            group,
            &joined,
        ));
        self.rejoin = false;
        let change = self.partitions.assign(joined.assignment);
        self.sync_fetchers();
        if let Some(listener) = self.config.listener.clone() {
            if !change.revoked.is_empty() {
                listener.on_revoked(&change.revoked).await;
            }
            if !change.assigned.is_empty() {
                listener.on_assigned(&change.assigned).await;
            }
        }
        Ok(())
    }

    /// Stop fetchers whose data is no longer current.
    fn sync_fetchers(&mut self) {
        let partitions = &self.partitions;
        self.fetchers
            .retain(|tp, (id, _)| partitions.fetcher(tp) == Some(*id));
    }

    fn start_fetchers(&mut self) {
        self.sync_fetchers();
        for (key, tp, id, offset) in self.partitions.start_fetchers() {
            let fetcher = Fetcher {
                connection: self.connection.clone(),
                config: Arc::clone(&self.config),
                partition: key,
                id,
                offset,
                events: self.events_sender.clone(),
            };
            let task = AbortOnDrop(tokio::spawn(fetcher.run()));
            self.fetchers.insert(tp, (id, task));
        }
    }

    /// The partitions owned now, in order.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.partitions.owned()
    }

    /// The member id and generation in the group, once joined.
    pub fn member(&self) -> Option<(&str, i32)> {
        self.membership
            .as_ref()
            .map(|membership| (membership.member_id.as_str(), membership.generation))
    }

    /// Stop fetching, commit with auto-commit, and leave the group (a
    /// static member stays, to come back without a rebalance). Returns the
    /// first failure, after trying both.
    pub async fn close(mut self) -> Result<()> {
        self.stop(true).await
    }

    async fn stop(&mut self, closing: bool) -> Result<()> {
        self.partitions.stop_fetching();
        self.fetchers.clear();
        let mut first_error = None;
        if let Some(task) = self.auto_commit_task.take() {
            let _ = task.await;
        }
        let committing = self.config.auto_commit.is_some()
            && self.config.group.is_some()
            && (self.membership.is_some() || self.mode == Mode::Assigned);
        if committing && let Err(error) = self.commit().await {
            first_error.get_or_insert(error);
        }
        let static_member = self.config.instance_id.is_some();
        if let Some(membership) = self.membership.take()
            && !(closing && static_member)
            && let Ok(group) = self.group()
        {
            let left = group::leave_group(
                &self.connection,
                self.config.request_timeout,
                group,
                &membership.member_id,
            )
            .await;
            if let Err(error) = left {
                first_error.get_or_insert(error);
            }
        }
        self.rejoin = true;
        match first_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

//! Committing the consumer's positions: by hand, in the background, and
//! automatically every interval from `poll`.

use std::collections::HashMap;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::consumer::group;
use crate::consumer::{Consumer, Mode};
use crate::error::{Error, Result};
use crate::types::TopicPartition;

impl Consumer {
    pub(super) fn auto_commit_if_due(&mut self) {
        let Some(interval) = self.config.auto_commit else {
            return;
        };
        let now = Instant::now();
        let next = *self.next_auto_commit.get_or_insert(now + interval);
        if now < next {
            return;
        }
        self.next_auto_commit = Some(now + interval);
        // A commit still running (a slow coordinator) skips this round.
        let running = self
            .auto_commit_task
            .as_ref()
            .is_some_and(|task| !task.is_finished());
        if !running && self.config.group.is_some() {
            self.auto_commit_task = Some(self.commit_async());
        }
    }

    /// The member id and generation commits are made as.
    fn commit_identity(&self) -> Result<(String, i32)> {
        match (&self.mode, &self.membership) {
            (Mode::Subscribed(_), Some(membership)) => {
                Ok((membership.member_id.clone(), membership.generation))
            }
            (Mode::Subscribed(_), None) => Err(Error::invalid_state(
                "not a member of the group yet: poll joins it",
            )),
            (Mode::Assigned | Mode::Idle, _) => Ok((String::new(), -1)),
        }
    }

    /// Commit the positions of the owned partitions, and wait for it.
    ///
    /// Fails with PARTITION_NOT_OWNED or ILLEGAL_GENERATION when the group
    /// rebalanced meanwhile (the consumer then rejoins at its next poll).
    pub async fn commit(&mut self) -> Result<()> {
        let offsets = self.partitions.positions();
        self.commit_offsets(offsets).await
    }

    /// Commit these offsets (the next offset to consume in each partition).
    pub async fn commit_offsets<I>(&mut self, offsets: I) -> Result<()>
    where
        I: IntoIterator<Item = (TopicPartition, i64)>,
    {
        let offsets: Vec<(TopicPartition, i64)> = offsets.into_iter().collect();
        let group = self.group()?;
        let (member_id, generation) = self.commit_identity()?;
        let result = group::commit_offsets(
            &self.connection,
            self.config.request_timeout,
            group,
            &member_id,
            generation,
            &offsets,
        )
        .await;
        if let Err(error) = &result
            && group::is_generation_error(error)
            && matches!(self.mode, Mode::Subscribed(_))
        {
            self.rejoin = true;
        }
        result
    }

    /// Commit the positions of the owned partitions in the background.
    /// Failures are logged, and returned by the handle.
    pub fn commit_async(&self) -> JoinHandle<Result<()>> {
        let offsets = self.partitions.positions();
        let identity = self
            .group()
            .map(str::to_owned)
            .and_then(|group| Ok((group, self.commit_identity()?)));
        let connection = self.connection.clone();
        let timeout = self.config.request_timeout;
        tokio::spawn(async move {
            let (group, (member_id, generation)) = identity?;
            let result = group::commit_offsets(
                &connection,
                timeout,
                &group,
                &member_id,
                generation,
                &offsets,
            )
            .await;
            if let Err(error) = &result {
                tracing::warn!(group, %error, "commit failed");
            }
            result
        })
    }

    /// The committed offsets of `partitions` in the group (those without
    /// one are left out).
    pub async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, i64>> {
        let group = self.group()?;
        group::fetch_offsets(
            &self.connection,
            self.config.request_timeout,
            group,
            partitions,
        )
        .await
    }
}

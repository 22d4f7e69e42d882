//! Where the consumer reads: initial positions (committed offset or the
//! reset policy), seeks, pauses and the position of a partition.

use std::collections::HashMap;

use crate::connection::Deadline;
use crate::consumer::{Consumer, group};
use crate::error::{Error, Result};
use crate::types::{OffsetSpec, TopicPartition, resolve_offset};

impl Consumer {
    /// Give every owned partition without a position one: its committed
    /// offset in the group, else where `auto_offset_reset` says.
    pub(super) async fn init_positions(&mut self) -> Result<()> {
        let missing = self.partitions.without_position();
        if missing.is_empty() {
            return Ok(());
        }
        let timeout = self.config.request_timeout;
        let committed = match &self.config.group {
            Some(group) => group::fetch_offsets(&self.connection, timeout, group, &missing).await?,
            None => HashMap::new(),
        };
        let spec = OffsetSpec::from(self.config.auto_offset_reset);
        let mut reset = Vec::new();
        for tp in missing {
            match committed.get(&tp) {
                Some(&offset) => {
                    self.partitions.seek(&tp, offset);
                }
                None => reset.push(tp),
            }
        }
        for (tp, offset) in self.resolve_all(&reset, spec).await? {
            self.partitions.seek(&tp, offset);
        }
        Ok(())
    }

    /// The offset `spec` names in each of `partitions`, asked concurrently.
    async fn resolve_all(
        &self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
    ) -> Result<Vec<(TopicPartition, i64)>> {
        let deadline = Deadline::request(self.config.request_timeout);
        let lookups = partitions.iter().map(|tp| async move {
            let offset =
                resolve_offset(&self.connection, deadline, &tp.topic, tp.partition, spec).await?;
            Ok::<_, Error>((tp.clone(), offset))
        });
        futures::future::try_join_all(lookups).await
    }

    fn owned(&self, tp: &TopicPartition) -> Result<()> {
        if self.partitions.is_owned(tp) {
            Ok(())
        } else {
            Err(Error::invalid_state(format!(
                "partition {tp} is not assigned to this consumer"
            )))
        }
    }

    /// The next record `poll` returns from `tp` will be at `offset`.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<()> {
        self.owned(tp)?;
        self.partitions.seek(tp, offset);
        self.sync_fetchers();
        Ok(())
    }

    async fn seek_to(&mut self, partitions: &[TopicPartition], spec: OffsetSpec) -> Result<()> {
        for tp in partitions {
            self.owned(tp)?;
        }
        for (tp, offset) in self.resolve_all(partitions, spec).await? {
            self.partitions.seek(&tp, offset);
        }
        self.sync_fetchers();
        Ok(())
    }

    /// Move to the earliest offset still stored.
    pub async fn seek_to_beginning(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.seek_to(partitions, OffsetSpec::Earliest).await
    }

    /// Move to the end: only records written from now on.
    pub async fn seek_to_end(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.seek_to(partitions, OffsetSpec::Latest).await
    }

    /// Move to the first record at or after `timestamp` (milliseconds since
    /// the Unix epoch); to the end where every record is older.
    pub async fn seek_to_timestamp(
        &mut self,
        partitions: &[TopicPartition],
        timestamp: i64,
    ) -> Result<()> {
        self.seek_to(partitions, OffsetSpec::Timestamp(timestamp))
            .await
    }

    /// Stop returning and fetching records of `partitions` until resumed;
    /// they stay assigned and keep their position.
    pub fn pause(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for tp in partitions {
            self.owned(tp)?;
        }
        for tp in partitions {
            self.partitions.set_paused(tp, true);
        }
        self.sync_fetchers();
        Ok(())
    }

    /// Fetch paused partitions again.
    pub fn resume(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for tp in partitions {
            self.owned(tp)?;
        }
        for tp in partitions {
            self.partitions.set_paused(tp, false);
        }
        Ok(())
    }

    /// The offset of the next record `poll` will return from `tp`, looked
    /// up (committed offset or reset policy) if not known yet.
    pub async fn position(&mut self, tp: &TopicPartition) -> Result<i64> {
        self.owned(tp)?;
        if let Some(position) = self.partitions.position(tp) {
            return Ok(position);
        }
        self.init_positions().await?;
        self.partitions
            .position(tp)
            .ok_or_else(|| Error::invalid_state(format!("no position for {tp}")))
    }
}

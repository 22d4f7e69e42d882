//! Kafka's DeleteRecords: raising the log start offset. Offsets below it
//! are no longer served (readers skip them, a fetch below it is out of
//! range) and whole segments below it are dropped as retention drops them.
//! The new start is durable once a saved checkpoint records it, and only
//! then is the request answered, so a crash or a move never brings the
//! deleted records back.

use super::{Action, DeleteRecordsRejected, LogStartWaiter, Now, PartitionMachine, Phase};

impl<W, D> PartitionMachine<W, D> {
    /// Raises the log start offset to `offset` (-1: the high watermark) and
    /// answers `waiter` with the new log start once a checkpoint with it is
    /// saved. An offset at or below the current start changes nothing and
    /// is answered at once; one past the high watermark is refused. While
    /// recovering, requests wait in order.
    pub fn delete_records(&mut self, offset: i64, waiter: D, now: Now) -> Vec<Action<W, D>> {
        let mut actions = Vec::new();
        match self.phase {
            Phase::Fenced => actions.push(Action::ReplyDeleteRecords(
                waiter,
                Err(DeleteRecordsRejected::Write(self.rejection())),
            )),
            Phase::Recovering => self
                .early_deletes
                .push_back(LogStartWaiter { offset, waiter }),
            Phase::Writing => self.advance_log_start(offset, waiter, now, &mut actions),
        }
        actions
    }

    /// [`delete_records`](Self::delete_records) of a writing partition.
    pub(super) fn advance_log_start(
        &mut self,
        offset: i64,
        waiter: D,
        now: Now,
        actions: &mut Vec<Action<W, D>>,
    ) {
        // Only what readers can see may be deleted: the saved high watermark.
        let high_watermark = self.saved.high_watermark;
        let target = if offset == -1 { high_watermark } else { offset };
        if !(0..=high_watermark).contains(&target) {
            let rejected = DeleteRecordsRejected::OffsetOutOfRange {
                offset,
                high_watermark,
            };
            actions.push(Action::ReplyDeleteRecords(waiter, Err(rejected)));
            return;
        }
        if target <= self.saved.log_start_offset {
            // Deleted already (as Kafka does: the start never moves back).
            let start = self.saved.log_start_offset;
            actions.push(Action::ReplyDeleteRecords(waiter, Ok(start)));
            return;
        }
        self.log_start_offset = self.log_start_offset.max(target);
        self.drop_sealed(self.sealed_below_log_start());
        self.checkpoint_due = true;
        self.delete_waiters.push(LogStartWaiter {
            offset: target,
            waiter,
        });
        self.maybe_checkpoint(now, actions);
    }

    /// How many of the oldest sealed segments end at or below the log start
    /// offset (the open segment stays: it is dropped after it rolls).
    pub(super) fn sealed_below_log_start(&self) -> usize {
        self.sealed
            .iter()
            .take_while(|s| s.end_offset <= self.log_start_offset)
            .count()
    }

    /// Answers the DeleteRecords the saved checkpoint covers.
    pub(super) fn answer_deletes(&mut self, actions: &mut Vec<Action<W, D>>) {
        let start = self.saved.log_start_offset;
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delete_waiters)
            .into_iter()
            .partition(|w| w.offset <= start);
        self.delete_waiters = waiting;
        for done in done {
            actions.push(Action::ReplyDeleteRecords(done.waiter, Ok(start)));
        }
    }
}

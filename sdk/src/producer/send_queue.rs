//! The sealed batches of one partition that are not acknowledged yet, in
//! sequence order, and the rules for sending and retrying them in order.
//!
//! Up to `max_in_flight` batches are sent one after the other without
//! waiting, all within `max_in_flight` batches of the oldest one not
//! acknowledged (the broker keeps the outcome of that many recent batches
//! per producer to answer retries). When one fails with a retriable error, later ones of the same
//! partition will fail too (the broker refuses a sequence gap with
//! OUT_OF_ORDER_SEQUENCE): nothing more is sent until every request in
//! flight has answered, then every unacknowledged batch is sent again, in
//! order, after a backoff. A batch that fails for good (or expires) takes
//! the batches after it with it when `strict_order` is set (idempotent
//! producers): their sequences follow a gap that can never be filled.
//!
//! No I/O: the partition's sender task drives it.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::backoff::{INITIAL, MAX, delay_for, jitter};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    InFlight,
}

#[derive(Debug)]
struct Entry<T> {
    id: u64,
    state: State,
    attempts: u32,
    deadline: Instant,
    item: T,
}

/// What became of a batch whose attempt failed with a retriable error.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Retry<T> {
    /// It will be sent again.
    Scheduled,
    /// Its deadline passed: it fails, with the batches listed after it in
    /// strict order (first the batch itself).
    Expired(Vec<T>),
    /// It had already failed (an earlier batch took it with it).
    Gone,
}

#[derive(Debug)]
pub(crate) struct SendQueue<T> {
    entries: VecDeque<Entry<T>>,
    /// Requests sent and not answered, including those of batches that
    /// failed meanwhile.
    in_flight: usize,
    max_in_flight: usize,
    strict_order: bool,
    /// A retriable failure: send nothing until every request answered.
    draining: bool,
    /// Nothing is sent before this time (backoff).
    retry_at: Option<Instant>,
}

impl<T> SendQueue<T> {
    pub(crate) fn new(max_in_flight: usize, strict_order: bool) -> Self {
        SendQueue {
            entries: VecDeque::new(),
            in_flight: 0,
            max_in_flight: max_in_flight.max(1),
            strict_order,
            draining: false,
            retry_at: None,
        }
    }

    /// Queue a batch; ids must increase.
    pub(crate) fn push(&mut self, id: u64, deadline: Instant, item: T) {
        self.entries.push_back(Entry {
            id,
            state: State::Waiting,
            attempts: 0,
            deadline,
            item,
        });
    }

    /// The next batch to send now, marked in flight: the oldest waiting
    /// one, when fewer than `max_in_flight` requests are out, no backoff
    /// runs and no failure is being drained.
    pub(crate) fn next_to_send(&mut self, now: Instant) -> Option<(u64, &T)> {
        if self.draining {
            if self.in_flight > 0 {
                return None;
            }
            self.draining = false;
        }
        if self.retry_at.is_some_and(|at| now < at) {
            return None;
        }
        self.retry_at = None;
        if self.in_flight >= self.max_in_flight {
            return None;
        }
        // Only batches within max_in_flight of the oldest unacknowledged
        // one: the broker remembers that many batches per producer, so a
        // retry of the oldest is still recognised as a duplicate however
        // many batches after it were written.
        let window_end = self
            .entries
            .front()?
            .id
            .saturating_add(self.max_in_flight as u64);
        let entry = self
            .entries
            .iter_mut()
            .find(|e| e.state == State::Waiting)
            .filter(|e| e.id < window_end)?;
        entry.state = State::InFlight;
        entry.attempts += 1;
        self.in_flight += 1;
        Some((entry.id, &entry.item))
    }

    fn position(&self, id: u64) -> Option<usize> {
        self.entries.iter().position(|e| e.id == id)
    }

    /// The batch `id` was acknowledged.
    pub(crate) fn succeeded(&mut self, id: u64) -> Option<T> {
        self.in_flight = self.in_flight.saturating_sub(1);
        let at = self.position(id)?;
        self.entries.remove(at).map(|e| e.item)
    }

    /// Whether a batch older than `id` is still unacknowledged.
    pub(crate) fn has_earlier(&self, id: u64) -> bool {
        self.entries.front().is_some_and(|e| e.id < id)
    }

    /// The attempt of batch `id` failed with a retriable error at `now`.
    pub(crate) fn failed_retriable(&mut self, id: u64, now: Instant) -> Retry<T> {
        self.in_flight = self.in_flight.saturating_sub(1);
        let Some(at) = self.position(id) else {
            return Retry::Gone;
        };
        if now >= self.entries[at].deadline {
            return Retry::Expired(self.remove_from(at));
        }
        let entry = &mut self.entries[at];
        entry.state = State::Waiting;
        let delay = jitter(delay_for(INITIAL, MAX, entry.attempts.saturating_sub(1)));
        // Later batches still out are resent after the drain, unless their
        // answers acknowledge them.
        self.draining = true;
        let at = now + delay;
        self.retry_at = Some(self.retry_at.map_or(at, |previous| previous.max(at)));
        Retry::Scheduled
    }

    /// The attempt of batch `id` failed for good: it fails, with the batches
    /// after it in strict order (first the batch itself; empty if it had
    /// already failed).
    pub(crate) fn failed(&mut self, id: u64) -> Vec<T> {
        self.in_flight = self.in_flight.saturating_sub(1);
        match self.position(id) {
            Some(at) => self.remove_from(at),
            None => Vec::new(),
        }
    }

    /// Waiting batches whose deadline passed, with those they take along
    /// (strict order): each group starts with the expired batch.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Vec<T>> {
        let mut expired = Vec::new();
        while let Some(at) = self
            .entries
            .iter()
            .position(|e| e.state == State::Waiting && e.deadline <= now)
        {
            expired.push(self.remove_from(at));
        }
        expired
    }

    fn remove_from(&mut self, at: usize) -> Vec<T> {
        if self.strict_order {
            self.entries.drain(at..).map(|e| e.item).collect()
        } else {
            self.entries
                .remove(at)
                .map(|e| e.item)
                .into_iter()
                .collect()
        }
    }

    /// When something may be sendable or expirable without a new event.
    pub(crate) fn next_wakeup(&self) -> Option<Instant> {
        let expiry = self
            .entries
            .iter()
            .filter(|e| e.state == State::Waiting)
            .map(|e| e.deadline)
            .min();
        // While draining, the answers still out wake the sender.
        let retry = self.retry_at.filter(|_| {
            !(self.draining && self.in_flight > 0)
                && self.entries.iter().any(|e| e.state == State::Waiting)
        });
        match (expiry, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The id of the oldest unacknowledged batch.
    pub(crate) fn oldest(&self) -> Option<u64> {
        self.entries.front().map(|e| e.id)
    }

    /// Whether no batch waits and no request is out.
    pub(crate) fn is_idle(&self) -> bool {
        self.entries.is_empty() && self.in_flight == 0
    }

    /// Time left to batch `id` before its deadline.
    pub(crate) fn remaining(&self, id: u64, now: Instant) -> Duration {
        self.position(id).map_or(Duration::ZERO, |at| {
            self.entries[at].deadline.saturating_duration_since(now)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(max_in_flight: usize, ids: &[u64], now: Instant) -> SendQueue<u64> {
        let mut queue = SendQueue::new(max_in_flight, true);
        for &id in ids {
            queue.push(id, now + Duration::from_secs(60), id);
        }
        queue
    }

    fn send_all(queue: &mut SendQueue<u64>, now: Instant) -> Vec<u64> {
        std::iter::from_fn(|| queue.next_to_send(now).map(|(id, _)| id)).collect()
    }

    #[test]
    fn sends_in_order_up_to_max_in_flight() {
        let now = Instant::now();
        let mut q = queue(2, &[1, 2, 3], now);
        assert_eq!(send_all(&mut q, now), [1, 2]);
        assert_eq!(q.succeeded(1), Some(1));
        assert_eq!(send_all(&mut q, now), [3]);
        assert_eq!(q.oldest(), Some(2));
    }

    #[test]
    fn a_retriable_failure_drains_then_resends_everything_in_order() {
        let now = Instant::now();
        let mut q = queue(5, &[1, 2, 3], now);
        assert_eq!(send_all(&mut q, now), [1, 2, 3]);
        // 1 fails (the proxy lost it); 2 and 3 then fail OUT_OF_ORDER_SEQUENCE.
        assert_eq!(q.failed_retriable(1, now), Retry::Scheduled);
        assert!(
            send_all(&mut q, now + Duration::from_secs(5)).is_empty(),
            "2 and 3 still out"
        );
        assert!(
            q.has_earlier(2),
            "1 is not acknowledged: 2's gap is not fatal"
        );
        assert_eq!(q.failed_retriable(2, now), Retry::Scheduled);
        assert_eq!(q.failed_retriable(3, now), Retry::Scheduled);
        // Not before the backoff...
        assert!(send_all(&mut q, now).is_empty());
        let later = now + Duration::from_secs(2);
        assert!(q.next_wakeup().is_some_and(|at| at <= later));
        // ...then all again, in sequence order.
        assert_eq!(send_all(&mut q, later), [1, 2, 3]);
        assert_eq!(q.succeeded(1), Some(1));
        assert_eq!(q.succeeded(2), Some(2));
        assert_eq!(q.succeeded(3), Some(3));
        assert!(q.is_idle());
    }

    #[test]
    fn nothing_goes_beyond_max_in_flight_of_the_oldest_unacknowledged_batch() {
        let now = Instant::now();
        let mut q = queue(3, &[1, 2, 3, 4, 5, 6], now);
        assert_eq!(send_all(&mut q, now), [1, 2, 3]);
        // 2 and 3 are acknowledged, 1 is not: 4 and 5 would push 1 out of
        // the broker's memory of recent batches.
        q.succeeded(2);
        q.succeeded(3);
        assert!(send_all(&mut q, now).is_empty());
        q.succeeded(1);
        assert_eq!(send_all(&mut q, now), [4, 5, 6]);
    }

    #[test]
    fn a_later_batch_acknowledged_during_a_drain_is_not_resent() {
        let now = Instant::now();
        let mut q = queue(5, &[1, 2], now);
        send_all(&mut q, now);
        q.failed_retriable(1, now);
        // The broker had appended 1 (its answer was lost), so 2 succeeds.
        assert_eq!(q.succeeded(2), Some(2));
        assert_eq!(send_all(&mut q, now + Duration::from_secs(2)), [1]);
    }

    #[test]
    fn a_fatal_failure_takes_the_later_batches_in_strict_order() {
        let now = Instant::now();
        let mut q = queue(5, &[1, 2, 3], now);
        send_all(&mut q, now);
        assert_eq!(q.succeeded(1), Some(1));
        assert_eq!(q.failed(2), [2, 3]);
        // 3's answer arrives later: nothing left to do with it.
        assert_eq!(q.failed_retriable(3, now), Retry::Gone);
        assert!(q.is_idle());

        let mut loose = SendQueue::new(5, false);
        for id in 1..=3 {
            loose.push(id, now + Duration::from_secs(60), id);
        }
        send_all(&mut loose, now);
        assert_eq!(loose.failed(2), [2]);
        assert_eq!(loose.succeeded(3), Some(3));
    }

    #[test]
    fn batches_expire_at_their_deadline() {
        let now = Instant::now();
        let mut q = SendQueue::new(1, true);
        q.push(1, now + Duration::from_secs(1), 1);
        q.push(2, now + Duration::from_secs(2), 2);
        q.push(3, now + Duration::from_secs(3), 3);
        assert_eq!(send_all(&mut q, now), [1]);
        // In flight: not expired by time alone; its answer decides.
        assert!(q.expire(now + Duration::from_millis(1500)).is_empty());
        assert_eq!(
            q.failed_retriable(1, now + Duration::from_millis(1500)),
            Retry::Expired(vec![1, 2, 3])
        );
        let mut q = SendQueue::new(1, true);
        q.push(1, now + Duration::from_secs(1), 1);
        q.push(2, now + Duration::from_secs(2), 2);
        assert_eq!(q.expire(now + Duration::from_secs(1)), vec![vec![1, 2]]);
    }

    #[test]
    fn retries_back_off_longer_each_attempt() {
        let now = Instant::now();
        let mut q = queue(1, &[1], now);
        let mut waits = Vec::new();
        let mut clock = now;
        for _ in 0..5 {
            let (id, _) = q.next_to_send(clock).unwrap_or((0, &0));
            assert_eq!(id, 1);
            q.failed_retriable(1, clock);
            let at = q.next_wakeup().unwrap_or(clock);
            waits.push(at.saturating_duration_since(clock));
            clock = at;
        }
        assert!(waits[0] <= Duration::from_millis(120));
        assert!(waits[3] >= Duration::from_millis(640));
        assert!(waits[4] <= Duration::from_millis(1200));
    }
}

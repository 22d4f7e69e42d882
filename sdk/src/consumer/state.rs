//! The consumer's partitions: which it owns, the position of each, which
//! are paused, which fetcher's data is current, and the fetched records
//! not yet returned by `poll`.
//!
//! No I/O: the consumer starts and stops fetcher tasks to match it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use crate::consumer::fetcher::{ConsumerRecord, PartitionKey};
use crate::types::TopicPartition;

#[derive(Debug)]
pub(crate) struct PartitionState {
    pub key: Arc<PartitionKey>,
    /// The offset of the next record `poll` returns; `None` until known
    /// (committed offset, or the reset policy).
    pub position: Option<i64>,
    pub paused: bool,
    /// The fetcher whose data is current; its records are the only ones kept.
    pub fetcher: Option<u64>,
}

/// Partitions taken away and given by a new assignment.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Change {
    pub revoked: Vec<TopicPartition>,
    pub assigned: Vec<TopicPartition>,
}

#[derive(Debug)]
struct Chunk {
    partition: TopicPartition,
    fetcher: u64,
    records: VecDeque<ConsumerRecord>,
    next_offset: i64,
}

#[derive(Debug, Default)]
pub(crate) struct Partitions {
    owned: BTreeMap<TopicPartition, PartitionState>,
    chunks: VecDeque<Chunk>,
    next_fetcher: u64,
}

impl Partitions {
    /// Own exactly `new`: partitions kept keep their position, new ones
    /// start without one.
    pub(crate) fn assign(&mut self, new: BTreeSet<TopicPartition>) -> Change {
        let revoked: Vec<TopicPartition> = self
            .owned
            .keys()
            .filter(|tp| !new.contains(*tp))
            .cloned()
            .collect();
        let assigned: Vec<TopicPartition> = new
            .iter()
            .filter(|tp| !self.owned.contains_key(*tp))
            .cloned()
            .collect();
        for tp in &revoked {
            self.owned.remove(tp);
        }
        for tp in &assigned {
            let key = Arc::new(PartitionKey {
                topic: tp.topic.as_str().into(),
                partition: tp.partition,
            });
            self.owned.insert(
                tp.clone(),
                PartitionState {
                    key,
                    position: None,
                    paused: false,
                    fetcher: None,
                },
            );
        }
        self.drop_stale_chunks();
        Change { revoked, assigned }
    }

    /// Stop fetching everything (before a rejoin): fetched records not
    /// returned yet are dropped, positions stay.
    pub(crate) fn stop_fetching(&mut self) {
        for state in self.owned.values_mut() {
            state.fetcher = None;
        }
        self.chunks.clear();
    }

    pub(crate) fn is_owned(&self, tp: &TopicPartition) -> bool {
        self.owned.contains_key(tp)
    }

    pub(crate) fn owned(&self) -> Vec<TopicPartition> {
        self.owned.keys().cloned().collect()
    }

    pub(crate) fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.owned.get(tp)?.position
    }

    /// Positions of the owned partitions that have one.
    pub(crate) fn positions(&self) -> Vec<(TopicPartition, i64)> {
        self.owned
            .iter()
            .filter_map(|(tp, state)| Some((tp.clone(), state.position?)))
            .collect()
    }

    /// Owned partitions without a position yet.
    pub(crate) fn without_position(&self) -> Vec<TopicPartition> {
        self.owned
            .iter()
            .filter(|(_, state)| state.position.is_none())
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    /// Move `tp` to `offset`: records fetched from the old position are dropped.
    /// Returns false if `tp` is not owned.
    pub(crate) fn seek(&mut self, tp: &TopicPartition, offset: i64) -> bool {
        let Some(state) = self.owned.get_mut(tp) else {
            return false;
        };
        state.position = Some(offset);
        state.fetcher = None;
        self.drop_stale_chunks();
        true
    }

    /// Pause or resume `tp`; returns false if it is not owned.
    pub(crate) fn set_paused(&mut self, tp: &TopicPartition, paused: bool) -> bool {
        let Some(state) = self.owned.get_mut(tp) else {
            return false;
        };
        state.paused = paused;
        if paused {
            state.fetcher = None;
            self.drop_stale_chunks();
        }
        true
    }

    /// Partitions to start a fetcher for, with the id it gets and the offset
    /// it starts at: owned, unpaused, with a position and no fetcher.
    pub(crate) fn start_fetchers(&mut self) -> Vec<(Arc<PartitionKey>, TopicPartition, u64, i64)> {
        let mut started = Vec::new();
        for (tp, state) in &mut self.owned {
            if state.paused || state.fetcher.is_some() {
                continue;
            }
            let Some(position) = state.position else {
                continue;
            };
            let id = self.next_fetcher;
            self.next_fetcher += 1;
            state.fetcher = Some(id);
            started.push((Arc::clone(&state.key), tp.clone(), id, position));
        }
        started
    }

    /// The id of the fetcher whose data is current for `tp`.
    pub(crate) fn fetcher(&self, tp: &TopicPartition) -> Option<u64> {
        self.owned.get(tp)?.fetcher
    }

    /// Keep fetched records if they come from `tp`'s current fetcher.
    pub(crate) fn fetched(
        &mut self,
        tp: TopicPartition,
        fetcher: u64,
        records: Vec<ConsumerRecord>,
        next_offset: i64,
    ) {
        if self.fetcher(&tp) == Some(fetcher) {
            self.chunks.push_back(Chunk {
                partition: tp,
                fetcher,
                records: records.into(),
                next_offset,
            });
        }
    }

    /// Up to `max` fetched records, oldest first; positions move past them.
    pub(crate) fn take(&mut self, max: usize) -> Vec<ConsumerRecord> {
        let mut taken = Vec::new();
        while taken.len() < max {
            let Some(chunk) = self.chunks.front_mut() else {
                break;
            };
            let Some(state) = self
                .owned
                .get_mut(&chunk.partition)
                .filter(|state| state.fetcher == Some(chunk.fetcher))
            else {
                self.chunks.pop_front();
                continue;
            };
            let room = max - taken.len();
            if chunk.records.len() <= room {
                state.position = Some(chunk.next_offset);
                taken.extend(chunk.records.drain(..));
                self.chunks.pop_front();
            } else {
                let part: Vec<ConsumerRecord> = chunk.records.drain(..room).collect();
                if let Some(last) = part.last() {
                    state.position = Some(last.offset + 1);
                }
                taken.extend(part);
            }
        }
        taken
    }

    fn drop_stale_chunks(&mut self) {
        let owned = &self.owned;
        self.chunks.retain(|chunk| {
            owned
                .get(&chunk.partition)
                .is_some_and(|state| state.fetcher == Some(chunk.fetcher))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(partition: u32) -> TopicPartition {
        TopicPartition::new("t", partition)
    }

    fn set(partitions: &[u32]) -> BTreeSet<TopicPartition> {
        partitions.iter().map(|&p| tp(p)).collect()
    }

    fn records(partition: u32, offsets: std::ops::Range<i64>) -> Vec<ConsumerRecord> {
        offsets
            .map(|offset| ConsumerRecord {
                topic: "t".into(),
                partition,
                offset,
                timestamp: 0,
                key: None,
                value: None,
                headers: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn a_new_assignment_revokes_assigns_and_keeps_positions() {
        let mut partitions = Partitions::default();
        let change = partitions.assign(set(&[0, 1]));
        assert_eq!(change.assigned, [tp(0), tp(1)]);
        assert!(partitions.seek(&tp(1), 40));
        let change = partitions.assign(set(&[1, 2]));
        assert_eq!(
            change,
            Change {
                revoked: vec![tp(0)],
                assigned: vec![tp(2)]
            }
        );
        assert_eq!(partitions.position(&tp(1)), Some(40), "kept");
        assert_eq!(partitions.without_position(), [tp(2)]);
        assert!(!partitions.seek(&tp(0), 1), "no longer owned");
    }

    #[test]
    fn positions_follow_the_records_returned() {
        let mut partitions = Partitions::default();
        partitions.assign(set(&[0]));
        partitions.seek(&tp(0), 10);
        let started = partitions.start_fetchers();
        assert_eq!(started.len(), 1);
        let (_, _, fetcher, offset) = &started[0];
        assert_eq!(*offset, 10);
        assert!(partitions.start_fetchers().is_empty(), "already fetching");
        partitions.fetched(tp(0), *fetcher, records(0, 10..15), 16);
        let first = partitions.take(3);
        assert_eq!(
            first.iter().map(|r| r.offset).collect::<Vec<_>>(),
            [10, 11, 12]
        );
        assert_eq!(partitions.position(&tp(0)), Some(13));
        let rest = partitions.take(100);
        assert_eq!(rest.len(), 2);
        // The whole chunk is consumed: the position is the fetcher's next
        // offset (past a control batch at 15).
        assert_eq!(partitions.position(&tp(0)), Some(16));
    }

    #[test]
    fn a_seek_drops_what_the_old_fetcher_brought() {
        let mut partitions = Partitions::default();
        partitions.assign(set(&[0]));
        partitions.seek(&tp(0), 0);
        let old = partitions.start_fetchers()[0].2;
        partitions.fetched(tp(0), old, records(0, 0..5), 5);
        partitions.seek(&tp(0), 100);
        // Late data of the old fetcher is dropped as well.
        partitions.fetched(tp(0), old, records(0, 5..10), 10);
        assert!(partitions.take(10).is_empty());
        assert_eq!(partitions.position(&tp(0)), Some(100));
        let new = partitions.start_fetchers();
        assert_eq!(new[0].3, 100);
        assert_ne!(new[0].2, old);
    }

    #[test]
    fn paused_partitions_are_not_fetched() {
        let mut partitions = Partitions::default();
        partitions.assign(set(&[0, 1]));
        partitions.seek(&tp(0), 0);
        partitions.seek(&tp(1), 0);
        assert!(partitions.set_paused(&tp(1), true));
        let started: Vec<TopicPartition> = partitions
            .start_fetchers()
            .into_iter()
            .map(|(_, tp, _, _)| tp)
            .collect();
        assert_eq!(started, [tp(0)]);
        partitions.set_paused(&tp(1), false);
        assert_eq!(partitions.start_fetchers().len(), 1);
    }

    #[test]
    fn stop_fetching_keeps_positions_and_drops_records() {
        let mut partitions = Partitions::default();
        partitions.assign(set(&[0]));
        partitions.seek(&tp(0), 3);
        let fetcher = partitions.start_fetchers()[0].2;
        partitions.fetched(tp(0), fetcher, records(0, 3..6), 6);
        partitions.stop_fetching();
        assert!(partitions.take(10).is_empty());
        assert_eq!(partitions.positions(), [(tp(0), 3)]);
        assert_eq!(partitions.fetcher(&tp(0)), None);
    }
}

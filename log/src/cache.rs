//! [`BlockCache`]: the readers' cache of segment bytes, in fixed-size
//! blocks, so consumers re-reading recent data (several consumer groups, a
//! restarted consumer) cost no more GETs on an object store.
//!
//! Bytes below a segment's checkpointed length never change (segments are
//! append-only, and a merge rewrites the same bytes in one object), so a
//! full block is cached for good under the segment's identity — the topic
//! id and the segment path, which a re-created topic does not share. A
//! segment's last, partial block is read directly and never cached. The
//! cache is bounded; the least recently used blocks go first.

use std::collections::HashMap;
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};

/// Cached block size.
pub const BLOCK: u64 = 1 << 20;

/// A bounded cache of full blocks of segments.
#[derive(Debug)]
pub struct BlockCache {
    capacity: u64,
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// (segment id, block index) → (block, last use).
    blocks: HashMap<(Arc<str>, u64), (Bytes, u64)>,
    /// Bytes held.
    bytes: u64,
    /// Use counter: larger is more recent.
    clock: u64,
}

impl BlockCache {
    /// A cache holding at most `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        Self {
            capacity,
            state: Mutex::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Blocks found in the cache and blocks read, since it was created.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Bytes `range` of the segment `id` whose checkpointed length is `len`,
    /// from the cache where it can, else through `fetch` (which reads a range
    /// of the segment from storage). Full blocks missing from the cache are
    /// read block-aligned, one `fetch` per run of consecutive blocks, and kept.
    pub async fn read<F, Fut, E>(
        &self,
        id: &Arc<str>,
        len: u64,
        range: Range<u64>,
        fetch: F,
    ) -> Result<Bytes, E>
    where
        F: Fn(Range<u64>) -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
    {
        let full_end = len / BLOCK * BLOCK;
        if range.start >= range.end || range.start >= full_end || self.capacity < BLOCK {
            return fetch(range).await;
        }
        let cached_end = range.end.min(full_end);
        let first = range.start / BLOCK;
        let last = (cached_end - 1) / BLOCK;
        let mut blocks: Vec<Option<Bytes>> = self.lookup(id, first..last + 1);
        let mut index = 0;
        while index < blocks.len() {
            if blocks[index].is_some() {
                index += 1;
                continue;
            }
            let run_start = index;
            while index < blocks.len() && blocks[index].is_none() {
                index += 1;
            }
            let from = (first + run_start as u64) * BLOCK;
            let to = (first + index as u64) * BLOCK;
            let data = fetch(from..to).await?;
            if data.len() as u64 != to - from {
                // Storage answered short: nothing to cache; the direct read
                // reports whatever is wrong.
                return fetch(range).await;
            }
            for (offset, slot) in blocks[run_start..index].iter_mut().enumerate() {
                let begin = offset * BLOCK as usize;
                // A copy: a slice would keep the whole run's buffer alive.
                let block = Bytes::copy_from_slice(&data[begin..begin + BLOCK as usize]);
                *slot = Some(block);
            }
            self.insert(id, first + run_start as u64, &blocks[run_start..index]);
        }
        let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
        for (offset, block) in blocks.iter().flatten().enumerate() {
            let block_start = (first + offset as u64) * BLOCK;
            let from = range.start.saturating_sub(block_start) as usize;
            let to = ((cached_end - block_start) as usize).min(block.len());
            if from < to {
                out.extend_from_slice(&block[from..to]);
            }
        }
        if range.end > cached_end {
            out.extend_from_slice(&fetch(cached_end..range.end).await?);
        }
        Ok(out.freeze())
    }

    fn lookup(&self, id: &Arc<str>, blocks: Range<u64>) -> Vec<Option<Bytes>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.clock += 1;
        let clock = state.clock;
        let found: Vec<Option<Bytes>> = blocks
            .map(|block| {
                state
                    .blocks
                    .get_mut(&(Arc::clone(id), block))
                    .map(|(data, used)| {
                        *used = clock;
                        data.clone()
                    })
            })
            .collect();
        let hits = found.iter().filter(|b| b.is_some()).count() as u64;
        self.hits.fetch_add(hits, Ordering::Relaxed);
        self.misses
            .fetch_add(found.len() as u64 - hits, Ordering::Relaxed);
        found
    }

    fn insert(&self, id: &Arc<str>, first: u64, blocks: &[Option<Bytes>]) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.clock += 1;
        let clock = state.clock;
        for (offset, block) in blocks.iter().enumerate() {
            // A short block means storage returned less than a full block:
            // never cache it (a later read would get a short answer).
            let Some(block) = block.as_ref().filter(|b| b.len() as u64 == BLOCK) else {
                continue;
            };
            let key = (Arc::clone(id), first + offset as u64);
            if let Some((old, _)) = state.blocks.insert(key, (block.clone(), clock)) {
                state.bytes -= old.len() as u64;
            }
            state.bytes += BLOCK;
        }
        while state.bytes > self.capacity {
            let Some(oldest) = state
                .blocks
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            if let Some((old, _)) = state.blocks.remove(&oldest) {
                state.bytes -= old.len() as u64;
            }
        }
    }
}

#[cfg(test)]
// One-range arrays are the expected lists of fetched ranges.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use super::*;

    /// A segment of `len` bytes whose byte at position p is p mod 251, and
    /// the ranges fetched from it.
    struct Segment {
        len: u64,
        fetched: StdMutex<Vec<Range<u64>>>,
    }

    impl Segment {
        fn new(len: u64) -> Self {
            Self {
                len,
                fetched: StdMutex::default(),
            }
        }

        fn bytes(range: Range<u64>) -> Bytes {
            range.map(|p| (p % 251) as u8).collect::<Vec<u8>>().into()
        }

        async fn read(
            &self,
            cache: &BlockCache,
            id: &Arc<str>,
            range: Range<u64>,
        ) -> Result<Bytes, String> {
            cache
                .read(id, self.len, range, |r: Range<u64>| async move {
                    self.fetched.lock().expect("lock").push(r.clone());
                    Ok::<_, String>(Self::bytes(r))
                })
                .await
        }

        fn take_fetched(&self) -> Vec<Range<u64>> {
            std::mem::take(&mut self.fetched.lock().expect("lock"))
        }
    }

    #[tokio::test]
    async fn full_blocks_are_read_once_and_the_tail_is_always_read() {
        let cache = BlockCache::new(16 * BLOCK);
        let segment = Segment::new(3 * BLOCK + 100);
        let id: Arc<str> = Arc::from("topic-id:t/0/segment.log");
        let range = BLOCK / 2..3 * BLOCK + 50;
        let got = segment
            .read(&cache, &id, range.clone())
            .await
            .expect("read");
        assert_eq!(got, Segment::bytes(range.clone()));
        assert_eq!(
            segment.take_fetched(),
            [0..3 * BLOCK, 3 * BLOCK..3 * BLOCK + 50],
            "one aligned read of the missing blocks, one of the tail"
        );
        let again = segment
            .read(&cache, &id, range.clone())
            .await
            .expect("read");
        assert_eq!(again, Segment::bytes(range));
        assert_eq!(segment.take_fetched(), [3 * BLOCK..3 * BLOCK + 50]);
        assert_eq!(cache.hits_and_misses(), (3, 3));
    }

    #[tokio::test]
    async fn only_missing_runs_are_fetched_and_other_segments_are_apart() {
        let cache = BlockCache::new(16 * BLOCK);
        let segment = Segment::new(8 * BLOCK);
        let id: Arc<str> = Arc::from("a");
        segment
            .read(&cache, &id, 2 * BLOCK..3 * BLOCK)
            .await
            .expect("read");
        segment.take_fetched();
        let got = segment
            .read(&cache, &id, BLOCK + 7..4 * BLOCK - 7)
            .await
            .expect("read");
        assert_eq!(got, Segment::bytes(BLOCK + 7..4 * BLOCK - 7));
        assert_eq!(
            segment.take_fetched(),
            [BLOCK..2 * BLOCK, 3 * BLOCK..4 * BLOCK]
        );
        let other: Arc<str> = Arc::from("b");
        segment
            .read(&cache, &other, 2 * BLOCK..3 * BLOCK)
            .await
            .expect("read");
        assert_eq!(segment.take_fetched(), [2 * BLOCK..3 * BLOCK]);
    }

    #[tokio::test]
    async fn the_least_recently_used_blocks_are_evicted() {
        let cache = BlockCache::new(2 * BLOCK);
        let segment = Segment::new(8 * BLOCK);
        let id: Arc<str> = Arc::from("a");
        for block in [0, 1, 0, 2] {
            segment
                .read(&cache, &id, block * BLOCK..(block + 1) * BLOCK)
                .await
                .expect("read");
        }
        segment.take_fetched();
        // 1 was least recently used when 2 came in.
        segment.read(&cache, &id, 0..BLOCK).await.expect("read");
        segment
            .read(&cache, &id, 2 * BLOCK..3 * BLOCK)
            .await
            .expect("read");
        assert!(segment.take_fetched().is_empty());
        segment
            .read(&cache, &id, BLOCK..2 * BLOCK)
            .await
            .expect("read");
        assert_eq!(segment.take_fetched(), [BLOCK..2 * BLOCK]);
    }

    #[tokio::test]
    async fn a_short_answer_is_not_cached_and_the_range_is_read_directly() {
        let cache = BlockCache::new(8 * BLOCK);
        let id: Arc<str> = Arc::from("a");
        let calls = StdMutex::new(Vec::new());
        let got = cache
            .read(&id, 4 * BLOCK, 0..2 * BLOCK, |r: Range<u64>| {
                calls.lock().expect("lock").push(r.clone());
                async move { Ok::<_, String>(Segment::bytes(r.start..r.start + 10)) }
            })
            .await
            .expect("read");
        assert_eq!(got.len(), 10, "the direct read's answer is passed on");
        assert_eq!(
            calls.into_inner().expect("lock"),
            [0..2 * BLOCK, 0..2 * BLOCK]
        );
        assert_eq!(cache.hits_and_misses(), (0, 2));
        let segment = Segment::new(4 * BLOCK);
        segment.read(&cache, &id, 0..BLOCK).await.expect("read");
        assert_eq!(segment.take_fetched(), [0..BLOCK], "nothing was cached");
    }

    #[tokio::test]
    async fn errors_pass_through_and_nothing_is_cached() {
        let cache = BlockCache::new(4 * BLOCK);
        let id: Arc<str> = Arc::from("a");
        let failed = cache
            .read(&id, 4 * BLOCK, 0..BLOCK, |_| async {
                Err::<Bytes, _>("down")
            })
            .await;
        assert_eq!(failed, Err("down"));
        assert_eq!(cache.hits_and_misses(), (0, 1));
        let segment = Segment::new(4 * BLOCK);
        segment.read(&cache, &id, 0..BLOCK).await.expect("read");
        assert_eq!(segment.take_fetched(), [0..BLOCK]);
    }
}

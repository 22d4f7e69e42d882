//! Cluster-unique ids for idempotent producers (`InitProducer`): each
//! allocator (one per proxy) reserves a block of ids at a time with a
//! compare-and-swap on `/sluice/producer-ids` and hands them out from
//! memory. Ids of a block an allocator never hands out (it stopped) are
//! skipped, never reused.

use std::ops::Range;
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::records::{self, ProducerIdCounter};
use crate::{Compare, MetadataError, MetadataStore, Op, Result, keys};

/// Ids reserved per transaction.
const BLOCK_SIZE: i64 = 1000;
/// The first id ever handed out: 0 and negative ids are never used (-1
/// means "no producer" in a RecordBatch).
const FIRST_ID: i64 = 1000;
/// Reservations lost to other allocators before giving up; each lost one
/// means another allocator made progress.
const MAX_ATTEMPTS: u32 = 100;

/// Hands out producer ids no other allocator on the same store hands out.
#[derive(Debug)]
pub struct ProducerIds {
    store: Arc<dyn MetadataStore>,
    /// The reserved ids not handed out yet. An async mutex: it is held
    /// while a new block is reserved, so one allocator reserves one at a time.
    block: Mutex<Range<i64>>,
}

impl ProducerIds {
    pub fn new(store: Arc<dyn MetadataStore>) -> Self {
        Self {
            store,
            block: Mutex::new(0..0),
        }
    }

    /// A new producer id, with epoch 0.
    pub async fn next(&self) -> Result<(i64, i16)> {
        let mut block = self.block.lock().await;
        if block.is_empty() {
            *block = self.reserve().await?;
        }
        let id = block.start;
        block.start += 1;
        Ok((id, 0))
    }

    /// Moves the stored counter forward by a block, if no one else moved it
    /// in between; returns the block.
    async fn reserve(&self) -> Result<Range<i64>> {
        let key = keys::producer_ids();
        for _ in 0..MAX_ATTEMPTS {
            let (start, compare) = match self.store.get(&key).await? {
                None => (FIRST_ID, Compare::Absent(key.clone())),
                Some(current) => {
                    let counter: ProducerIdCounter =
                        records::decode(&key, "a producer id counter", &current.value)?;
                    (
                        counter.next.max(FIRST_ID),
                        Compare::Version(key.clone(), current.version),
                    )
                }
            };
            let end = start
                .checked_add(BLOCK_SIZE)
                .ok_or_else(|| MetadataError::BadValue {
                    key: key.clone(),
                    what: "a producer id counter",
                    reason: format!("no producer ids left after {start}"),
                })?;
            let put = Op::Put {
                key: key.clone(),
                value: records::encode(&ProducerIdCounter { next: end }),
                lease: None,
            };
            if self.store.txn(vec![compare], vec![put]).await? {
                return Ok(start..end);
            }
        }
        Err(MetadataError::Unavailable {
            reason: format!(
                "could not reserve producer ids: {MAX_ATTEMPTS} attempts lost to other allocators"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::EmbeddedStore;

    #[tokio::test]
    async fn ids_start_at_1000_with_epoch_0_and_continue_after_a_restart() {
        let store: Arc<dyn MetadataStore> = Arc::new(EmbeddedStore::in_memory());
        let ids = ProducerIds::new(Arc::clone(&store));
        assert_eq!(ids.next().await.expect("id"), (1000, 0));
        assert_eq!(ids.next().await.expect("id"), (1001, 0));
        let stored = store
            .get(&keys::producer_ids())
            .await
            .expect("get")
            .expect("the counter");
        let counter: ProducerIdCounter =
            records::decode("k", "counter", &stored.value).expect("json");
        assert_eq!(counter.next, 2000, "a block of 1000 is reserved");
        // A new allocator (a restarted proxy) skips the block reserved before.
        let restarted = ProducerIds::new(store);
        assert_eq!(restarted.next().await.expect("id"), (2000, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn allocators_sharing_a_store_never_hand_out_the_same_id() {
        const ALLOCATORS: usize = 4;
        const TASKS_PER_ALLOCATOR: usize = 3;
        // Each allocator crosses several blocks.
        const IDS_PER_TASK: usize = 900;
        let store: Arc<dyn MetadataStore> = Arc::new(EmbeddedStore::in_memory());
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..ALLOCATORS {
            let ids = Arc::new(ProducerIds::new(Arc::clone(&store)));
            for _ in 0..TASKS_PER_ALLOCATOR {
                let ids = Arc::clone(&ids);
                tasks.spawn(async move {
                    let mut got = Vec::with_capacity(IDS_PER_TASK);
                    for _ in 0..IDS_PER_TASK {
                        got.push(ids.next().await.expect("an id"));
                        tokio::task::yield_now().await;
                    }
                    got
                });
            }
        }
        let mut seen = HashSet::new();
        while let Some(got) = tasks.join_next().await {
            for (id, epoch) in got.expect("task") {
                assert!(id >= 1000, "id {id}");
                assert_eq!(epoch, 0);
                assert!(seen.insert(id), "id {id} handed out twice");
            }
        }
        assert_eq!(seen.len(), ALLOCATORS * TASKS_PER_ALLOCATOR * IDS_PER_TASK);
    }

    /// A store where another allocator reserves a block between each of
    /// the first `races` reads of the counter and the transaction after it.
    #[derive(Debug)]
    struct Racing {
        inner: EmbeddedStore,
        races: std::sync::atomic::AtomicU32,
    }

    #[async_trait::async_trait]
    impl MetadataStore for Racing {
        async fn get(&self, key: &str) -> Result<Option<crate::Versioned>> {
            self.inner.get(key).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<(String, crate::Versioned)>> {
            self.inner.list(prefix).await
        }
        async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64> {
            self.inner.put(key, value).await
        }
        async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<bool> {
            use std::sync::atomic::Ordering;
            if self.races.load(Ordering::SeqCst) > 0 {
                self.races.fetch_sub(1, Ordering::SeqCst);
                let key = keys::producer_ids();
                let next = match self.inner.get(&key).await? {
                    Some(v) => {
                        records::decode::<ProducerIdCounter>(&key, "counter", &v.value)?.next
                    }
                    None => FIRST_ID,
                };
                let next = ProducerIdCounter {
                    next: next + BLOCK_SIZE,
                };
                self.inner.put(&key, records::encode(&next)).await?;
            }
            self.inner.txn(compares, ops).await
        }
        async fn watch(&self, prefix: &str) -> Result<crate::Watch> {
            self.inner.watch(prefix).await
        }
        async fn grant_lease(&self, ttl: std::time::Duration) -> Result<crate::LeaseId> {
            self.inner.grant_lease(ttl).await
        }
        async fn keep_alive(&self, lease: crate::LeaseId) -> Result<()> {
            self.inner.keep_alive(lease).await
        }
        async fn revoke_lease(&self, lease: crate::LeaseId) -> Result<()> {
            self.inner.revoke_lease(lease).await
        }
        async fn campaign(
            &self,
            election: &str,
            value: Vec<u8>,
            lease: crate::LeaseId,
        ) -> Result<()> {
            self.inner.campaign(election, value, lease).await
        }
        async fn leader(&self, election: &str) -> Result<Option<Vec<u8>>> {
            self.inner.leader(election).await
        }
    }

    #[tokio::test]
    async fn a_reservation_lost_to_another_allocator_is_retried_past_its_block() {
        let store = Arc::new(Racing {
            inner: EmbeddedStore::in_memory(),
            races: 3.into(),
        });
        let ids = ProducerIds::new(store);
        // Blocks 1000, 2000 and 3000 went to the others (the first
        // created the key under our Compare::Absent).
        assert_eq!(ids.next().await.expect("id"), (4000, 0));
        assert_eq!(ids.next().await.expect("id"), (4001, 0));
    }

    #[tokio::test]
    async fn a_damaged_counter_is_an_error_not_a_panic() {
        let store: Arc<dyn MetadataStore> = Arc::new(EmbeddedStore::in_memory());
        store
            .put(&keys::producer_ids(), b"not json".to_vec())
            .await
            .expect("put");
        let ids = ProducerIds::new(Arc::clone(&store));
        assert!(matches!(
            ids.next().await,
            Err(MetadataError::BadValue { .. })
        ));
        store
            .put(
                &keys::producer_ids(),
                records::encode(&ProducerIdCounter { next: i64::MAX - 5 }),
            )
            .await
            .expect("put");
        assert!(matches!(
            ids.next().await,
            Err(MetadataError::BadValue { .. })
        ));
    }
}

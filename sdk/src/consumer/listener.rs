//! The rebalance listener: told which partitions a rebalance took away
//! and which it gave.

use crate::types::TopicPartition;

/// Called by [`Consumer::poll`](crate::Consumer::poll) after each join of
/// the group, with the partitions revoked (owned before, not now) and then
/// those assigned (owned now, not before). Partitions kept across the
/// rebalance appear in neither and keep their position.
///
/// The positions of revoked partitions were committed before the rejoin
/// when auto-commit is on; with manual commits, records processed and not
/// committed will be delivered again to the partition's next owner.
///
/// ```
/// use sluice_sdk::{RebalanceListener, TopicPartition, async_trait};
///
/// struct Log;
///
/// #[async_trait]
/// impl RebalanceListener for Log {
///     async fn on_assigned(&self, partitions: &[TopicPartition]) {
///         println!("assigned {partitions:?}");
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait RebalanceListener: Send + Sync {
    /// Partitions this member no longer owns.
    async fn on_revoked(&self, _partitions: &[TopicPartition]) {}

    /// Partitions this member now owns.
    async fn on_assigned(&self, _partitions: &[TopicPartition]) {}
}

//! Leases: the [`LeaseId`] of a granted lease, and [`LeaseKeeper`], which
//! keeps one alive in the background and says when it is lost.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{MetadataError, MetadataStore, Result};

/// The id of a lease granted by a [`MetadataStore`] (etcd's lease id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub i64);

impl fmt::Display for LeaseId {
    /// Hexadecimal, as etcd prints lease ids and names election keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// Keeps a lease alive from a background task, refreshing it every third of
/// its TTL, until it is released or dropped (both revoke it).
///
/// The lease counts as lost — [`LeaseKeeper::lost`] resolves — when the store
/// says it is gone, or when no refresh has succeeded for a whole TTL since
/// the last one that did (the store may have expired it by then, so a holder
/// of anything bound to it must assume it has).
#[derive(Debug)]
pub struct LeaseKeeper {
    id: LeaseId,
    store: Arc<dyn MetadataStore>,
    lost: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl LeaseKeeper {
    /// Grants a lease of `ttl` and starts keeping it alive.
    pub async fn grant(store: Arc<dyn MetadataStore>, ttl: Duration) -> Result<Self> {
        let id = store.grant_lease(ttl).await?;
        Ok(Self::keep(store, id, ttl))
    }

    /// Starts keeping an existing lease of `ttl` alive. Must be called inside
    /// a tokio runtime.
    pub fn keep(store: Arc<dyn MetadataStore>, id: LeaseId, ttl: Duration) -> Self {
        let lost = CancellationToken::new();
        let task = tokio::spawn(refresh(store.clone(), id, ttl, lost.clone()));
        Self {
            id,
            store,
            lost,
            task: Some(task),
        }
    }

    /// The lease being kept alive.
    pub fn id(&self) -> LeaseId {
        self.id
    }

    /// Resolves once the lease is lost. Does not borrow the keeper, so it can
    /// be awaited in a task of its own.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        self.lost.clone().cancelled_owned()
    }

    /// Whether the lease is lost already.
    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// Stops refreshing and revokes the lease, deleting its keys now rather
    /// than when the TTL runs out.
    pub async fn release(mut self) -> Result<()> {
        self.stop();
        self.store.revoke_lease(self.id).await
    }

    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.lost.cancel();
    }
}

impl Drop for LeaseKeeper {
    /// Revokes the lease in the background, so its keys go at once. Without a
    /// runtime (or if that fails) they go when the TTL runs out.
    fn drop(&mut self) {
        if self.task.is_none() {
            return; // released
        }
        self.stop();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let store = self.store.clone();
            let id = self.id;
            runtime.spawn(async move {
                if let Err(error) = store.revoke_lease(id).await {
                    tracing::warn!(lease = %id, %error, "cannot revoke a dropped lease; it expires with its TTL");
                }
            });
        }
    }
}

/// The keep-alive loop: refreshes every `ttl / 3`; after a failure it
/// retries every `ttl / 6` until a whole TTL has passed since the last
/// refresh that succeeded, and then gives the lease up.
async fn refresh(
    store: Arc<dyn MetadataStore>,
    id: LeaseId,
    ttl: Duration,
    lost: CancellationToken,
) {
    // Counted from when a refresh was sent, so the deadline is never later
    // than the store's own.
    let mut expires = Instant::now() + ttl;
    let mut wait = ttl / 3;
    loop {
        tokio::select! {
            () = lost.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let sent = Instant::now();
        if sent >= expires {
            break;
        }
        match tokio::time::timeout_at(expires, store.keep_alive(id)).await {
            Ok(Ok(())) => {
                expires = sent + ttl;
                wait = ttl / 3;
            }
            Ok(Err(MetadataError::LeaseExpired { .. })) => {
                tracing::warn!(lease = %id, "lease expired");
                break;
            }
            Ok(Err(error)) => {
                tracing::warn!(lease = %id, %error, "cannot refresh lease; retrying");
                wait = ttl / 6;
            }
            Err(_elapsed) => break,
        }
    }
    tracing::warn!(lease = %id, ttl_ms = ttl.as_millis() as u64, "lease lost");
    lost.cancel();
}

//! Prefix watches on etcd that miss nothing.
//!
//! A watch reads the prefix at revision R (the initial state), then watches
//! from R + 1, so no change falls between the two. A task forwards etcd's
//! events and remembers the version of every key it has reported. When the
//! stream breaks (etcd restarted, connection lost) it reconnects from the
//! revision after the last event it saw; when etcd cannot replay from there
//! (the history was compacted) or cancels the watch, it re-reads the prefix
//! and sends the differences from what it had reported.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, WatchOptions, WatchStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{EtcdStore, Shared, key_string, version, versioned};
use crate::{Result, Versioned, Watch, WatchEvent};

/// First and longest wait between attempts to reach etcd again.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Reads the initial state and starts the task that follows the changes.
pub(super) async fn start(store: &EtcdStore, prefix: &str) -> Result<Watch> {
    let (initial, revision) = read(store, prefix).await?;
    let (sender, events) = mpsc::unbounded_channel();
    let follower = Follower {
        client: store.shared.client.clone(),
        store: Arc::downgrade(&store.shared),
        prefix: prefix.to_owned(),
        reported: initial
            .iter()
            .map(|(key, value)| (key.clone(), value.version))
            .collect(),
        next_revision: revision + 1,
        sender,
    };
    tokio::spawn(follower.run(store.shared.dropped.clone()));
    Ok(Watch { initial, events })
}

/// The keys under `prefix` and the revision they were read at.
async fn read(store: &EtcdStore, prefix: &str) -> Result<(Vec<(String, Versioned)>, i64)> {
    let mut kv = store.client().kv_client();
    let options = GetOptions::new().with_prefix();
    let response = store
        .call(
            "read a prefix to watch",
            None,
            kv.get(prefix, Some(options)),
        )
        .await?;
    let revision = response.header().map_or(0, |h| h.revision());
    let keys = response
        .kvs()
        .iter()
        .map(|kv| (key_string(kv.key()), versioned(kv)))
        .collect();
    Ok((keys, revision))
}

struct Follower {
    /// The store's client, for watch streams.
    client: Client,
    /// The store, for the reads of a resync; weak, so that dropping the last
    /// [`EtcdStore`] ends its watches.
    store: Weak<Shared>,
    prefix: String,
    /// Every key under the prefix as reported to the consumer, with its
    /// version.
    reported: BTreeMap<String, u64>,
    /// The first revision not yet reported.
    next_revision: i64,
    sender: mpsc::UnboundedSender<WatchEvent>,
}

/// Why a watch stream ended.
enum Ended {
    /// The consumer or the store went away: stop.
    Stop,
    /// The connection broke: watch again from `next_revision`.
    Broken,
    /// etcd cancelled the watch (compaction, or another reason): re-read.
    Cancelled,
}

impl Follower {
    async fn run(mut self, dropped: CancellationToken) {
        let mut retry = RETRY_MIN;
        let mut resync = false;
        loop {
            if resync {
                match self.resync().await {
                    Ok(()) => resync = false,
                    Err(error) => {
                        tracing::warn!(prefix = %self.prefix, %error, "cannot re-read a watched prefix; retrying");
                        if !self.pause(&dropped, &mut retry).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            let options = WatchOptions::new()
                .with_prefix()
                .with_start_revision(self.next_revision);
            let mut client = self.client.watch_client();
            let opened = tokio::select! {
                () = dropped.cancelled() => return,
                () = self.sender.closed() => return,
                opened = client.watch(self.prefix.as_str(), Some(options)) => opened,
            };
            let stream = match opened {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::debug!(prefix = %self.prefix, %error, "cannot watch; retrying");
                    if !self.pause(&dropped, &mut retry).await {
                        return;
                    }
                    continue;
                }
            };
            match self.follow(stream, &dropped, &mut retry).await {
                Ended::Stop => return,
                Ended::Broken => {
                    if !self.pause(&dropped, &mut retry).await {
                        return;
                    }
                }
                Ended::Cancelled => resync = true,
            }
        }
    }

    /// Forwards the events of one watch stream until it ends.
    async fn follow(
        &mut self,
        mut stream: WatchStream,
        dropped: &CancellationToken,
        retry: &mut Duration,
    ) -> Ended {
        loop {
            let message = tokio::select! {
                () = dropped.cancelled() => return Ended::Stop,
                () = self.sender.closed() => return Ended::Stop,
                message = stream.message() => message,
            };
            let response = match message {
                Ok(Some(response)) => response,
                Ok(None) => return Ended::Broken,
                Err(error) => {
                    tracing::debug!(prefix = %self.prefix, %error, "watch stream broke; resuming");
                    return Ended::Broken;
                }
            };
            *retry = RETRY_MIN;
            if response.canceled() {
                tracing::info!(
                    prefix = %self.prefix,
                    compacted_to = response.compact_revision(),
                    reason = response.cancel_reason(),
                    "etcd cancelled a watch; re-reading the prefix"
                );
                return Ended::Cancelled;
            }
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let key = key_string(kv.key());
                let change = match event.event_type() {
                    EventType::Put => {
                        self.reported
                            .insert(key.clone(), version(kv.mod_revision()));
                        WatchEvent::Put {
                            key,
                            value: versioned(kv),
                        }
                    }
                    EventType::Delete => {
                        self.reported.remove(&key);
                        WatchEvent::Delete { key }
                    }
                };
                self.next_revision = self.next_revision.max(kv.mod_revision() + 1);
                if self.sender.send(change).is_err() {
                    return Ended::Stop;
                }
            }
        }
    }

    /// Re-reads the prefix and reports what differs from what was reported.
    async fn resync(&mut self) -> Result<()> {
        let Some(shared) = self.store.upgrade() else {
            return Ok(()); // the store is gone; `run` stops next
        };
        let store = EtcdStore { shared };
        let (now, revision) = read(&store, &self.prefix).await?;
        drop(store);
        let now: BTreeMap<String, Versioned> = now.into_iter().collect();
        let gone: Vec<String> = self
            .reported
            .keys()
            .filter(|key| !now.contains_key(*key))
            .cloned()
            .collect();
        for key in gone {
            self.reported.remove(&key);
            let _ = self.sender.send(WatchEvent::Delete { key });
        }
        for (key, value) in now {
            if self.reported.get(&key) != Some(&value.version) {
                self.reported.insert(key.clone(), value.version);
                let _ = self.sender.send(WatchEvent::Put { key, value });
            }
        }
        self.next_revision = revision + 1;
        Ok(())
    }

    /// Waits before the next attempt, doubling the wait up to a bound.
    /// Returns false if the watch should stop instead.
    async fn pause(&self, dropped: &CancellationToken, retry: &mut Duration) -> bool {
        let wait = *retry;
        *retry = (*retry * 2).min(RETRY_MAX);
        tokio::select! {
            () = dropped.cancelled() => false,
            () = self.sender.closed() => false,
            () = tokio::time::sleep(wait) => true,
        }
    }
}

/// The etcd harness of the integration tests.
#[cfg(test)]
#[path = "../../tests/support/mod.rs"]
mod test_support;

#[cfg(test)]
mod tests {
    //! The resync path, which a live watch reaches only when etcd compacts
    //! past it: a follower is started behind a compaction on purpose.

    use super::test_support as support;
    use super::*;
    use crate::MetadataStore;

    #[tokio::test]
    async fn a_watch_behind_a_compaction_resyncs_and_reports_the_differences() {
        let server = support::EtcdServer::start();
        let store = EtcdStore::connect(&[server.endpoint()])
            .await
            .expect("connect");
        let a = store.put("/c/a", b"a".to_vec()).await.expect("put");
        let b = store.put("/c/b", b"b".to_vec()).await.expect("put");
        store.put("/c/c", b"c".to_vec()).await.expect("put");
        let ops = vec![crate::Op::Delete { key: "/c/a".into() }];
        assert!(store.txn(vec![], ops).await.expect("txn"));
        let latest = store.put("/elsewhere", b"e".to_vec()).await.expect("put");
        let mut client = store.shared.client.clone();
        client
            .compact(i64::try_from(latest).expect("revision"), None)
            .await
            .expect("compact");

        // What a watch would have reported had it stopped at revision `b`:
        // /c/a and /c/b, and a key /c/x that the consumer believes exists.
        let (sender, mut events) = mpsc::unbounded_channel();
        let follower = Follower {
            client: store.shared.client.clone(),
            store: Arc::downgrade(&store.shared),
            prefix: "/c/".into(),
            reported: [
                ("/c/a".to_owned(), a),
                ("/c/b".to_owned(), b),
                ("/c/x".to_owned(), 1),
            ]
            .into_iter()
            .collect(),
            next_revision: i64::try_from(b).expect("revision") + 1,
            sender,
        };
        tokio::spawn(follower.run(store.shared.dropped.clone()));

        let mut next = async || {
            tokio::time::timeout(Duration::from_secs(15), events.recv())
                .await
                .expect("an event in time")
                .expect("the watch is open")
        };
        assert_eq!(next().await, WatchEvent::Delete { key: "/c/a".into() });
        assert_eq!(next().await, WatchEvent::Delete { key: "/c/x".into() });
        assert!(matches!(next().await, WatchEvent::Put { key, .. } if key == "/c/c"));
        // Then it follows live changes again.
        store.put("/c/d", b"d".to_vec()).await.expect("put");
        assert!(matches!(next().await, WatchEvent::Put { key, .. } if key == "/c/d"));

        // Dropping the store ends the watch.
        drop(store);
        let ended = tokio::time::timeout(Duration::from_secs(15), events.recv()).await;
        assert_eq!(ended.expect("the watch ends"), None);
    }
}

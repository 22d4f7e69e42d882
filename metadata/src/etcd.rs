//! The cluster metadata store: etcd, through etcd-client.
//!
//! A version is etcd's `mod_revision` of the key; `Compare::Absent` is
//! `create_revision == 0`. Leases are etcd leases; elections use etcd's
//! election service, whose candidates are `<election>/<lease hex>` keys bound
//! to the campaigner's lease, led by the oldest. Every unary call is bounded
//! by [`EtcdOptions::request_timeout`], so a dead etcd gives an error, not a
//! hang; watches reconnect by themselves (see `etcd/watch.rs`).

mod watch;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare as EtcdCompare, CompareOp, ConnectOptions, DeleteOptions, GetOptions,
    PutOptions, SortOrder, SortTarget, Txn, TxnOp,
};
use tokio_util::sync::CancellationToken;

use crate::{
    Compare, LeaseId, MetadataError, MetadataStore, Op, Result, Versioned, Watch, election_prefix,
};

/// How an [`EtcdStore`] talks to etcd.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// How long [`EtcdStore::connect`] waits for an endpoint to answer.
    pub connect_timeout: Duration,
    /// How long one call (get, put, transaction, lease call) may take before
    /// it fails as [`MetadataError::Unavailable`].
    pub request_timeout: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// A [`MetadataStore`] on an etcd cluster. Cheap to clone; watches end when
/// the last clone is dropped.
#[derive(Clone)]
pub struct EtcdStore {
    shared: Arc<Shared>,
}

struct Shared {
    client: Client,
    /// The endpoints, comma-separated, for error messages.
    endpoints: String,
    request_timeout: Duration,
    /// Cancelled when the store is dropped: stops its watch tasks.
    dropped: CancellationToken,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.dropped.cancel();
    }
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.shared.endpoints)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (`http://host:port` or `host:port`)
    /// with the default [`EtcdOptions`].
    pub async fn connect(endpoints: &[String]) -> Result<Self> {
        Self::connect_with(endpoints, EtcdOptions::default()).await
    }

    /// Connects, and checks that etcd answers within the connect timeout:
    /// an unreachable etcd fails here with [`MetadataError::Unreachable`]
    /// naming the endpoints.
    pub async fn connect_with(endpoints: &[String], options: EtcdOptions) -> Result<Self> {
        let joined = endpoints.join(",");
        let unreachable = |reason: String| MetadataError::Unreachable {
            endpoints: joined.clone(),
            reason,
        };
        if endpoints.is_empty() {
            return Err(unreachable("no endpoint given".into()));
        }
        // HTTP/2 pings find a dead connection under a watch (etcd refuses
        // pings more often than every 5 s). Requiring a leader makes a member
        // cut off from its cluster fail calls and cancel watches (which then
        // resume elsewhere) instead of serving stale data.
        let connect_options = ConnectOptions::new()
            .with_connect_timeout(options.connect_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_require_leader(true);
        let within = options.connect_timeout;
        let client =
            tokio::time::timeout(within, Client::connect(endpoints, Some(connect_options)))
                .await
                .map_err(|_| unreachable(format!("no answer within {within:?}")))?
                .map_err(|e| unreachable(describe(&e)))?;
        // The client connects lazily: one read proves etcd answers.
        let probe = GetOptions::new().with_count_only();
        tokio::time::timeout(
            within,
            client.kv_client().get(crate::keys::ROOT, Some(probe)),
        )
        .await
        .map_err(|_| unreachable(format!("no answer within {within:?}")))?
        .map_err(|e| unreachable(describe(&e)))?;
        tracing::debug!(endpoints = %joined, "connected to etcd");
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                endpoints: joined,
                request_timeout: options.request_timeout,
                dropped: CancellationToken::new(),
            }),
        })
    }

    fn client(&self) -> &Client {
        &self.shared.client
    }

    /// Runs one etcd call within the request timeout, mapping its error.
    async fn call<T>(
        &self,
        op: &'static str,
        lease: Option<LeaseId>,
        call: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        let within = self.shared.request_timeout;
        match tokio::time::timeout(within, call).await {
            Ok(result) => result.map_err(|e| self.error(op, lease, e)),
            Err(_) => Err(MetadataError::Unavailable {
                reason: format!(
                    "etcd at {} did not answer within {within:?} to {op}",
                    self.shared.endpoints
                ),
            }),
        }
    }

    /// Maps an etcd-client error of `op` (about `lease`, if any).
    fn error(
        &self,
        op: &'static str,
        lease: Option<LeaseId>,
        error: etcd_client::Error,
    ) -> MetadataError {
        use etcd_client::Error as E;
        let unavailable = |reason: String| MetadataError::Unavailable {
            reason: format!("cannot {op} at {}: {reason}", self.shared.endpoints),
        };
        let rejected = |reason: String| MetadataError::Rejected { op, reason };
        match error {
            E::GRpcStatus(ref status) => {
                let message = describe(&error);
                if let Some(lease) = lease
                    && is_lease_not_found(&message)
                {
                    return MetadataError::LeaseExpired { lease };
                }
                use tonic::Code;
                match status.code() {
                    Code::Unavailable
                    | Code::DeadlineExceeded
                    | Code::Cancelled
                    | Code::Aborted
                    | Code::Unknown => unavailable(message),
                    Code::Ok
                    | Code::InvalidArgument
                    | Code::NotFound
                    | Code::AlreadyExists
                    | Code::PermissionDenied
                    | Code::ResourceExhausted
                    | Code::FailedPrecondition
                    | Code::OutOfRange
                    | Code::Unimplemented
                    | Code::Internal
                    | Code::DataLoss
                    | Code::Unauthenticated => rejected(message),
                }
            }
            E::LeaseKeepAliveError(message) => match lease {
                Some(lease) if is_lease_not_found(&message) => {
                    MetadataError::LeaseExpired { lease }
                }
                _ => unavailable(message),
            },
            E::InvalidArgs(_) | E::InvalidUri(_) | E::Utf8Error(_) | E::InvalidMetadataValue(_) => {
                rejected(error.to_string())
            }
            // Transport, I/O, watch and internal errors: etcd cannot be
            // talked to right now.
            other => unavailable(describe(&other)),
        }
    }

    /// The oldest candidate of `election`: its leader.
    async fn oldest_candidate(&self, election: &str) -> Result<Option<etcd_client::KeyValue>> {
        let options = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
            .with_limit(1);
        let mut kv = self.client().kv_client();
        let mut response = self
            .call(
                "read the leader",
                None,
                kv.get(election_prefix(election), Some(options)),
            )
            .await?;
        Ok(response.take_kvs().into_iter().next())
    }
}

/// A one-line description of an etcd-client error: gRPC's message and the
/// root cause under it ("tcp connect error: Connection refused ...").
fn describe(error: &etcd_client::Error) -> String {
    let etcd_client::Error::GRpcStatus(status) = error else {
        return error.to_string();
    };
    let mut root: Option<&dyn std::error::Error> = std::error::Error::source(status);
    while let Some(next) = root.and_then(|e| e.source()) {
        root = Some(next);
    }
    match root {
        Some(cause) => format!("{}: {cause}", status.message()),
        None => status.message().to_owned(),
    }
}

fn is_lease_not_found(message: &str) -> bool {
    message.contains("lease not found")
}

/// An etcd revision as a version; etcd revisions are positive.
fn version(revision: i64) -> u64 {
    u64::try_from(revision).unwrap_or(0)
}

fn key_string(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

fn versioned(kv: &etcd_client::KeyValue) -> Versioned {
    Versioned {
        value: kv.value().to_vec(),
        version: version(kv.mod_revision()),
    }
}

#[async_trait]
impl MetadataStore for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>> {
        let mut kv = self.client().kv_client();
        let response = self.call("get a key", None, kv.get(key, None)).await?;
        Ok(response.kvs().first().map(versioned))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>> {
        let mut kv = self.client().kv_client();
        let options = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Key, SortOrder::Ascend);
        let response = self
            .call("list keys", None, kv.get(prefix, Some(options)))
            .await?;
        Ok(response
            .kvs()
            .iter()
            .map(|kv| (key_string(kv.key()), versioned(kv)))
            .collect())
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64> {
        let mut kv = self.client().kv_client();
        let response = self
            .call("put a key", None, kv.put(key, value, None))
            .await?;
        Ok(response.header().map_or(0, |h| version(h.revision())))
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<bool> {
        let mut when = Vec::with_capacity(compares.len());
        for compare in compares {
            when.push(match compare {
                Compare::Absent(key) => EtcdCompare::create_revision(key, CompareOp::Equal, 0),
                Compare::Version(key, version) => {
                    let Ok(revision) = i64::try_from(version) else {
                        return Ok(false); // no etcd revision is that large
                    };
                    EtcdCompare::mod_revision(key, CompareOp::Equal, revision)
                }
            });
        }
        let mut lease_of_ops = None;
        let then: Vec<TxnOp> = ops
            .into_iter()
            .map(|op| match op {
                Op::Put { key, value, lease } => {
                    lease_of_ops = lease_of_ops.or(lease);
                    let options = lease.map(|lease| PutOptions::new().with_lease(lease.0));
                    TxnOp::put(key, value, options)
                }
                Op::Delete { key } => TxnOp::delete(key, None),
                Op::DeletePrefix { prefix } => {
                    TxnOp::delete(prefix, Some(DeleteOptions::new().with_prefix()))
                }
            })
            .collect();
        let txn = Txn::new().when(when).and_then(then);
        let mut kv = self.client().kv_client();
        let response = self
            .call("apply a transaction", lease_of_ops, kv.txn(txn))
            .await?;
        Ok(response.succeeded())
    }

    async fn watch(&self, prefix: &str) -> Result<Watch> {
        watch::start(self, prefix).await
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        // etcd counts whole seconds: round up, so the lease never lives
        // shorter than asked.
        let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let seconds = i64::try_from(seconds.max(1)).unwrap_or(i64::MAX);
        let mut leases = self.client().lease_client();
        let response = self
            .call("grant a lease", None, leases.grant(seconds, None))
            .await?;
        if !response.error().is_empty() {
            return Err(MetadataError::Rejected {
                op: "grant a lease",
                reason: response.error().to_owned(),
            });
        }
        Ok(LeaseId(response.id()))
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<()> {
        // etcd-client sends one refresh on a new keep-alive stream and fails
        // if the answer says the lease is gone; the stream closes on drop.
        let mut leases = self.client().lease_client();
        self.call(
            "keep a lease alive",
            Some(lease),
            leases.keep_alive(lease.0),
        )
        .await
        .map(drop)
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        let mut leases = self.client().lease_client();
        match self
            .call("revoke a lease", Some(lease), leases.revoke(lease.0))
            .await
        {
            Ok(_) | Err(MetadataError::LeaseExpired { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn campaign(&self, election: &str, value: Vec<u8>, lease: LeaseId) -> Result<()> {
        // Blocks in etcd until this candidate is the oldest, so no timeout.
        let mut elections = self.client().election_client();
        let response = elections
            .campaign(election, value, lease.0)
            .await
            .map_err(|e| self.error("campaign", Some(lease), e))?;
        // etcd answers "leader" even if the candidate's own key went with its
        // lease while it waited: check that it is still there.
        let key = response.leader().map_or_else(
            || format!("{}{lease}", election_prefix(election)).into_bytes(),
            |l| l.key().to_vec(),
        );
        let mut kv = self.client().kv_client();
        let still = self.call("campaign", None, kv.get(key, None)).await?;
        match still.kvs().first() {
            Some(kv) if kv.lease() == lease.0 => Ok(()),
            _ => Err(MetadataError::LeaseExpired { lease }),
        }
    }

    async fn leader(&self, election: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .oldest_candidate(election)
            .await?
            .map(|kv| kv.value().to_vec()))
    }
}

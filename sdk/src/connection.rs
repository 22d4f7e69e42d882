//! The connection to a Sluice cluster: a list of proxy endpoints, one used
//! at a time, with failover to the next on a transport failure and retries
//! with backoff within each call's deadline.
//!
//! Channels are made lazily (no I/O until the first call) and reconnect by
//! themselves, so a restarted proxy is used again once it is back.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sluice_proto::v1::admin_client::AdminClient;
use sluice_proto::v1::groups_client::GroupsClient;
use sluice_proto::v1::sluice_client::SluiceClient;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::backoff::Backoff;
use crate::error::{Error, Result};

/// Largest gRPC message sent or accepted (a produce request or a fetch answer).
pub(crate) const MAX_MESSAGE_BYTES: usize = 128 << 20;
/// How long connecting to one endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings find a dead proxy (no reset, no answer) during long polls.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A shared, cheaply cloned handle on the cluster's endpoints.
#[derive(Clone)]
pub(crate) struct Connection {
    inner: Arc<Inner>,
}

struct Inner {
    targets: Vec<Target>,
    /// Index of the endpoint in use.
    current: AtomicUsize,
}

struct Target {
    address: String,
    endpoint: Endpoint,
    channel: OnceLock<Channel>,
}

/// How long a call may take: each attempt, and all attempts with the
/// backoff between them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    /// Longest wait for one answer (long polls add the time the server holds the call).
    pub attempt: Duration,
    /// Time after which no new attempt starts.
    pub total: Duration,
}

impl Deadline {
    /// One request timeout per attempt and overall.
    pub(crate) fn request(timeout: Duration) -> Deadline {
        Deadline {
            attempt: timeout,
            total: timeout,
        }
    }
}

impl Connection {
    /// A connection to `endpoints` ("host:port" or URLs); nothing is
    /// connected until the first call.
    pub(crate) fn new<I, S>(endpoints: I) -> Result<Connection>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut targets = Vec::new();
        for address in endpoints {
            let address: String = address.into();
            let address = address.trim().to_owned();
            let uri = if address.contains("://") {
                address.clone()
            } else {
                format!("http://{address}")
            };
            let endpoint = Endpoint::from_shared(uri).map_err(|error| Error::InvalidEndpoint {
                endpoint: address.clone(),
                reason: error.to_string(),
            })?;
            let endpoint = endpoint
                .tcp_nodelay(true)
                .connect_timeout(CONNECT_TIMEOUT)
                .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
                .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
            targets.push(Target {
                address,
                endpoint,
                channel: OnceLock::new(),
            });
        }
        if targets.is_empty() {
            return Err(Error::InvalidConfig {
                reason: "no endpoint given: list at least one proxy (host:port)".into(),
            });
        }
        // Clients started together spread over the proxies.
        let first = rand::random_range(0..targets.len());
        Ok(Connection {
            inner: Arc::new(Inner {
                targets,
                current: AtomicUsize::new(first),
            }),
        })
    }

    /// The endpoint in use and its channel.
    fn pick(&self) -> (usize, &Target, Channel) {
        let targets = &self.inner.targets;
        let index = self.inner.current.load(Ordering::Relaxed) % targets.len();
        let target = &targets[index];
        let channel = target
            .channel
            .get_or_init(|| target.endpoint.connect_lazy())
            .clone();
        (index, target, channel)
    }

    /// Move to the next endpoint, unless another call already did.
    fn failed(&self, index: usize) {
        let next = (index + 1) % self.inner.targets.len();
        let _ =
            self.inner
                .current
                .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn endpoint_count(&self) -> usize {
        self.inner.targets.len()
    }

    /// One attempt of a call: `request` is given the channel of the
    /// endpoint in use and answered within `timeout`. A transport failure
    /// moves later calls to the next endpoint.
    pub(crate) async fn call_once<T, F, Fut>(&self, timeout: Duration, request: F) -> Result<T>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let (index, target, channel) = self.pick();
        let result = match tokio::time::timeout(timeout, request(channel)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(Error::from_status(&status, &target.address)),
            Err(_) => Err(Error::Transport {
                endpoint: target.address.clone(),
                status: tonic::Code::DeadlineExceeded,
                message: format!("no answer within {timeout:?}"),
            }),
        };
        if let Err(error) = &result
            && error.is_transport()
        {
            tracing::debug!(endpoint = %target.address, %error, "endpoint failed; trying the next");
            self.failed(index);
        }
        result
    }

    /// A call retried until it succeeds, fails with an error that is not
    /// retriable, or `deadline.total` passes. After a transport failure the
    /// next endpoint is tried at once, until every endpoint failed in a
    /// row; then retries back off (100 ms doubling to 1 s).
    pub(crate) async fn call<T, F, Fut>(
        &self,
        operation: &'static str,
        deadline: Deadline,
        mut request: F,
    ) -> Result<T>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let end = Instant::now() + deadline.total;
        let mut backoff = Backoff::default();
        let mut transport_failures = 0;
        loop {
            let remaining = end.saturating_duration_since(Instant::now());
            let attempt = deadline
                .attempt
                .min(remaining.max(Duration::from_millis(1)));
            let error = match self.call_once(attempt, &mut request).await {
                Ok(answer) => return Ok(answer),
                Err(error) if !error.is_retriable() => return Err(error),
                Err(error) => error,
            };
            let delay = if error.is_transport() {
                transport_failures += 1;
                if transport_failures < self.endpoint_count() {
                    Duration::ZERO
                } else {
                    transport_failures = 0;
                    backoff.next_delay()
                }
            } else {
                backoff.next_delay()
            };
            if Instant::now() + delay >= end {
                return Err(Error::Timeout {
                    operation,
                    after: deadline.total,
                    last: Some(Box::new(error)),
                });
            }
            tracing::debug!(operation, %error, ?delay, "retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

/// A data-plane client (produce, fetch, list offsets) with Sluice's message limits.
pub(crate) fn data_client(channel: Channel) -> SluiceClient<Channel> {
    SluiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// An admin client.
pub(crate) fn admin_client(channel: Channel) -> AdminClient<Channel> {
    AdminClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// A consumer-group client.
pub(crate) fn groups_client(channel: Channel) -> GroupsClient<Channel> {
    GroupsClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_become_http_uris() -> Result<()> {
        let connection = Connection::new(["127.0.0.1:7070", " http://proxy:7071 "])?;
        let addresses: Vec<String> = connection
            .inner
            .targets
            .iter()
            .map(|t| t.endpoint.uri().to_string())
            .collect();
        assert_eq!(addresses, ["http://127.0.0.1:7070/", "http://proxy:7071/"]);
        Ok(())
    }

    #[test]
    fn no_endpoint_or_a_bad_one_is_refused() {
        assert!(matches!(
            Connection::new(Vec::<String>::new()),
            Err(Error::InvalidConfig { .. })
        ));
        assert!(matches!(
            Connection::new(["bad host:7070"]),
            Err(Error::InvalidEndpoint { .. })
        ));
    }

    #[test]
    fn a_failure_moves_to_the_next_endpoint_once() -> Result<()> {
        let connection = Connection::new(["a:1", "b:2", "c:3"])?;
        connection.inner.current.store(0, Ordering::Relaxed);
        connection.failed(0);
        // A second call that also failed on endpoint 0 does not skip endpoint 1.
        connection.failed(0);
        assert_eq!(connection.inner.current.load(Ordering::Relaxed), 1);
        connection.failed(1);
        connection.failed(2);
        assert_eq!(connection.inner.current.load(Ordering::Relaxed), 0);
        Ok(())
    }
}

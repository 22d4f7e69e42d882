//! The consumer's settings and their builder.

use std::sync::Arc;
use std::time::Duration;

use crate::consumer::Consumer;
use crate::consumer::listener::RebalanceListener;
use crate::error::{Error, Result};

/// Where a consumer starts in a partition that has no committed offset
/// (and after its offset fell out of the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// At the earliest offset still stored: every message.
    Earliest,
    /// At the end: only messages written from now on.
    #[default]
    Latest,
}

impl From<OffsetReset> for crate::types::OffsetSpec {
    fn from(reset: OffsetReset) -> Self {
        match reset {
            OffsetReset::Earliest => crate::types::OffsetSpec::Earliest,
            OffsetReset::Latest => crate::types::OffsetSpec::Latest,
        }
    }
}

/// The consumer's settings (see [`ConsumerBuilder`] for each).
#[derive(Clone)]
pub(crate) struct ConsumerConfig {
    pub group: Option<String>,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub assignors: Vec<String>,
    pub auto_commit: Option<Duration>,
    pub auto_offset_reset: OffsetReset,
    pub fetch_max_wait: Duration,
    pub fetch_min_bytes: u32,
    pub fetch_max_bytes: u32,
    pub max_poll_records: usize,
    pub request_timeout: Duration,
    pub listener: Option<Arc<dyn RebalanceListener>>,
}

impl std::fmt::Debug for ConsumerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerConfig")
            .field("group", &self.group)
            .field("instance_id", &self.instance_id)
            .field("client_id", &self.client_id)
            .field("session_timeout", &self.session_timeout)
            .field("rebalance_timeout", &self.rebalance_timeout)
            .field("assignors", &self.assignors)
            .field("auto_commit", &self.auto_commit)
            .field("auto_offset_reset", &self.auto_offset_reset)
            .field("fetch_max_wait", &self.fetch_max_wait)
            .field("fetch_min_bytes", &self.fetch_min_bytes)
            .field("fetch_max_bytes", &self.fetch_max_bytes)
            .field("max_poll_records", &self.max_poll_records)
            .field("request_timeout", &self.request_timeout)
            .field("listener", &self.listener.is_some())
            .finish()
    }
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            group: None,
            instance_id: None,
            client_id: "sluice-sdk".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            assignors: vec!["sticky".into(), "range".into(), "roundrobin".into()],
            auto_commit: Some(Duration::from_secs(5)),
            auto_offset_reset: OffsetReset::Latest,
            fetch_max_wait: Duration::from_millis(500),
            fetch_min_bytes: 1,
            fetch_max_bytes: 1 << 20,
            max_poll_records: 500,
            request_timeout: Duration::from_secs(30),
            listener: None,
        }
    }
}

impl ConsumerConfig {
    fn validate(&self) -> Result<()> {
        let invalid = |reason: &str| {
            Err(Error::InvalidConfig {
                reason: reason.to_owned(),
            })
        };
        if self.group.as_deref().is_some_and(str::is_empty) {
            return invalid("the group name is empty");
        }
        if self.instance_id.is_some() && self.group.is_none() {
            return invalid("instance_id (static membership) needs a group");
        }
        if self.session_timeout < Duration::from_millis(100) {
            return invalid("session_timeout must be at least 100 ms");
        }
        if self.max_poll_records == 0 {
            return invalid("max_poll_records must be at least 1");
        }
        if self.auto_commit.is_some_and(|interval| interval.is_zero()) {
            return invalid("the auto-commit interval must be above zero (None commits by hand)");
        }
        if self.request_timeout.is_zero() {
            return invalid("request_timeout must be above zero");
        }
        if u32::try_from(self.fetch_max_wait.as_millis()).is_err() {
            return invalid("fetch_max_wait is too long");
        }
        Ok(())
    }
}

/// Builds a [`Consumer`]: `Consumer::builder(["127.0.0.1:7070"]).group("g").build().await?`.
#[derive(Debug, Clone)]
pub struct ConsumerBuilder {
    endpoints: Vec<String>,
    config: ConsumerConfig,
}

impl ConsumerBuilder {
    pub(crate) fn new<I, S>(endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ConsumerBuilder {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            config: ConsumerConfig::default(),
        }
    }

    /// The consumer group: needed by [`Consumer::subscribe`] and by commits.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.config.group = Some(group.into());
        self
    }

    /// Static membership: a consumer restarted with the same instance id
    /// takes its place back, with its partitions, without a rebalance (if
    /// it returns within the session timeout). A static member does not
    /// leave the group on [`Consumer::close`].
    pub fn instance_id(mut self, instance_id: impl Into<String>) -> Self {
        self.config.instance_id = Some(instance_id.into());
        self
    }

    /// A name for this client in group descriptions (default "sluice-sdk").
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.config.client_id = client_id.into();
        self
    }

    /// The group drops a member that sends no heartbeat for this long
    /// (default 10 s).
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.config.session_timeout = timeout;
        self
    }

    /// How long a rebalance waits for members to rejoin (default 30 s). A
    /// member rejoins from [`Consumer::poll`]: poll at least this often.
    pub fn rebalance_timeout(mut self, timeout: Duration) -> Self {
        self.config.rebalance_timeout = timeout;
        self
    }

    /// Assignors this member supports, preferred first (default sticky,
    /// range, roundrobin). The group uses the first that every member lists.
    pub fn assignors<I, S>(mut self, assignors: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.assignors = assignors.into_iter().map(Into::into).collect();
        self
    }

    /// Commit the positions every `interval` from `poll`, before a
    /// rebalance and on close (default every 5 s); `None` to commit by hand
    /// with [`Consumer::commit`].
    pub fn auto_commit(mut self, interval: Option<Duration>) -> Self {
        self.config.auto_commit = interval;
        self
    }

    /// Where to start in a partition without a committed offset (default
    /// [`OffsetReset::Latest`]).
    pub fn auto_offset_reset(mut self, reset: OffsetReset) -> Self {
        self.config.auto_offset_reset = reset;
        self
    }

    /// How long the server holds a fetch waiting for data (default 500 ms).
    pub fn fetch_max_wait(mut self, wait: Duration) -> Self {
        self.config.fetch_max_wait = wait;
        self
    }

    /// Bytes a fetch waits for (default 1).
    pub fn fetch_min_bytes(mut self, bytes: u32) -> Self {
        self.config.fetch_min_bytes = bytes;
        self
    }

    /// Most bytes one fetch returns per partition (default 1 MiB; at least
    /// one whole batch is always returned).
    pub fn fetch_max_bytes(mut self, bytes: u32) -> Self {
        self.config.fetch_max_bytes = bytes;
        self
    }

    /// Most records one `poll` returns (default 500).
    pub fn max_poll_records(mut self, records: usize) -> Self {
        self.config.max_poll_records = records;
        self
    }

    /// The longest wait for one answer of the server, long polls aside
    /// (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// Called with the partitions taken away and given at each rebalance.
    pub fn rebalance_listener(mut self, listener: Arc<dyn RebalanceListener>) -> Self {
        self.config.listener = Some(listener);
        self
    }

    /// Check the settings and make the consumer. Nothing is connected
    /// until the first call that needs the server.
    pub async fn build(self) -> Result<Consumer> {
        self.config.validate()?;
        Consumer::start(self.endpoints, self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_nonsense_is_refused() {
        assert!(ConsumerConfig::default().validate().is_ok());
        let bad = [
            ConsumerConfig {
                instance_id: Some("a".into()),
                ..ConsumerConfig::default()
            },
            ConsumerConfig {
                group: Some(String::new()),
                ..ConsumerConfig::default()
            },
            ConsumerConfig {
                max_poll_records: 0,
                ..ConsumerConfig::default()
            },
            ConsumerConfig {
                auto_commit: Some(Duration::ZERO),
                ..ConsumerConfig::default()
            },
        ];
        for config in bad {
            assert!(matches!(
                config.validate(),
                Err(Error::InvalidConfig { .. })
            ));
        }
    }
}

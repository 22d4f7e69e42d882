//! The admin client: topics and the cluster (admin.proto); consumer groups
//! are in `groups.rs`.

mod groups;
mod types;

use std::time::Duration;

use sluice_proto::v1;

pub use groups::ResetTo;
pub use types::{
    BrokerStatus, ClusterStatus, GroupDescription, GroupSummary, MemberDescription,
    PartitionDescription, PartitionLag, SegmentDescription, TopicConfig, TopicDescription,
    TopicSummary,
};

use crate::connection::{Connection, Deadline, admin_client};
use crate::error::Result;
use crate::types::{OffsetSpec, list_offset};

/// Administers topics, the cluster and consumer groups.
///
/// ```no_run
/// # async fn example() -> sluice_sdk::Result<()> {
/// use sluice_sdk::{Admin, TopicConfig};
///
/// let admin = Admin::connect(["127.0.0.1:7070"]).await?;
/// admin.create_topic("orders", 8, TopicConfig::default()).await?;
/// for group in admin.list_groups().await? {
///     println!("{} ({} members)", group.group, group.members);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Admin {
    connection: Connection,
    request_timeout: Duration,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// Builds an [`Admin`].
#[derive(Debug, Clone)]
pub struct AdminBuilder {
    endpoints: Vec<String>,
    request_timeout: Duration,
}

impl AdminBuilder {
    /// How long one call may take, retries included (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Make the client; nothing is connected until the first call.
    pub async fn build(self) -> Result<Admin> {
        Ok(Admin {
            connection: Connection::new(self.endpoints)?,
            request_timeout: self.request_timeout,
        })
    }
}

impl Admin {
    /// A builder of an admin client for the cluster behind `endpoints`.
    pub fn builder<I, S>(endpoints: I) -> AdminBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        AdminBuilder {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            request_timeout: Duration::from_secs(30),
        }
    }

    /// An admin client with the default settings.
    pub async fn connect<I, S>(endpoints: I) -> Result<Admin>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Admin::builder(endpoints).build().await
    }

    fn deadline(&self) -> Deadline {
        Deadline::request(self.request_timeout)
    }

    /// Create a topic with `partitions` partitions. An existing name fails
    /// with TOPIC_EXISTS.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
    ) -> Result<TopicDescription> {
        let request = v1::CreateTopicRequest {
            name: name.to_owned(),
            partitions,
            config: Some(config.into()),
        };
        let topic = self
            .connection
            .call("create topic", self.deadline(), |channel| {
                let request = request.clone();
                async move { admin_client(channel).create_topic(request).await }
            })
            .await?;
        Ok(topic.into())
    }

    /// Every topic with its partition count.
    pub async fn list_topics(&self) -> Result<Vec<TopicSummary>> {
        let answer = self
            .connection
            .call("list topics", self.deadline(), |channel| async move {
                admin_client(channel)
                    .list_topics(v1::ListTopicsRequest {})
                    .await
            })
            .await?;
        Ok(answer
            .topics
            .into_iter()
            .map(|topic| TopicSummary {
                name: topic.name,
                partitions: topic.partitions,
            })
            .collect())
    }

    /// A topic's configuration and partitions; UNKNOWN_TOPIC if it does not exist.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let request = v1::DescribeTopicRequest {
            name: name.to_owned(),
        };
        let topic = self
            .connection
            .call("describe topic", self.deadline(), |channel| {
                let request = request.clone();
                async move { admin_client(channel).describe_topic(request).await }
            })
            .await?;
        Ok(topic.into())
    }

    /// Delete a topic and its data.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let request = v1::DeleteTopicRequest {
            name: name.to_owned(),
        };
        self.connection
            .call("delete topic", self.deadline(), |channel| {
                let request = request.clone();
                async move { admin_client(channel).delete_topic(request).await }
            })
            .await?;
        Ok(())
    }

    /// Raise a topic's partition count to `partitions` (never lowers it).
    pub async fn add_partitions(&self, name: &str, partitions: u32) -> Result<TopicDescription> {
        let request = v1::AddPartitionsRequest {
            name: name.to_owned(),
            partitions,
        };
        let topic = self
            .connection
            .call("add partitions", self.deadline(), |channel| {
                let request = request.clone();
                async move { admin_client(channel).add_partitions(request).await }
            })
            .await?;
        Ok(topic.into())
    }

    /// Delete a partition's records before `before` (`None`: all of them,
    /// up to the end), as Kafka's DeleteRecords does: its log start offset
    /// rises there for good, readers start there, and whole segments below
    /// it are removed from storage. Returns the new log start offset. An
    /// offset at or below the current start changes nothing; one past the
    /// end is `OFFSET_OUT_OF_RANGE`.
    pub async fn delete_records(
        &self,
        topic: &str,
        partition: u32,
        before: Option<i64>,
    ) -> Result<i64> {
        let request = v1::DeleteRecordsRequest {
            topic: topic.to_owned(),
            partition,
            offset: before.unwrap_or(-1),
        };
        // Safe to send again: deleting up to the same offset twice is one deletion.
        let answer = self
            .connection
            .call("delete records", self.deadline(), |channel| {
                let request = request.clone();
                async move { admin_client(channel).delete_records(request).await }
            })
            .await?;
        Ok(answer.log_start_offset)
    }

    /// The controller, brokers and proxies of the cluster.
    pub async fn cluster_status(&self) -> Result<ClusterStatus> {
        let status = self
            .connection
            .call("cluster status", self.deadline(), |channel| async move {
                admin_client(channel)
                    .cluster_status(v1::ClusterStatusRequest {})
                    .await
            })
            .await?;
        Ok(status.into())
    }

    /// The offset `spec` names in a partition: `None` only for a timestamp
    /// after every record.
    pub async fn list_offset(
        &self,
        topic: &str,
        partition: u32,
        spec: OffsetSpec,
    ) -> Result<Option<i64>> {
        list_offset(&self.connection, self.deadline(), topic, partition, spec).await
    }
}

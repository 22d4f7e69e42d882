//! Topic administration: create (with its partition assignments, in one
//! transaction), list, describe, delete, and re-claiming partitions under a
//! new epoch.

use std::sync::Arc;

use sluice_metadata::records::{self, Assignment, TopicConfig, TopicRecord};
use sluice_metadata::{Compare, MetadataStore, Op, keys};

use crate::AdminError;

/// Most partitions one topic may have.
pub const MAX_PARTITIONS: u32 = 10_000;

/// A topic and where its partitions are assigned.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicInfo {
    pub name: String,
    pub record: TopicRecord,
    /// By partition number; `None` for a partition not assigned yet.
    pub assignments: Vec<Option<Assignment>>,
}

/// Topic operations on the metadata store.
#[derive(Debug, Clone)]
pub struct TopicAdmin {
    metadata: Arc<dyn MetadataStore>,
}

impl TopicAdmin {
    pub fn new(metadata: Arc<dyn MetadataStore>) -> Self {
        Self { metadata }
    }

    /// The store this works on.
    pub fn metadata(&self) -> Arc<dyn MetadataStore> {
        Arc::clone(&self.metadata)
    }

    /// Creates a topic and, given `brokers`, assigns its partitions
    /// round-robin over them in the same transaction (standalone: a reader
    /// never sees a topic without its assignments). With `None`, the
    /// controller's reconcile loop assigns them (cluster).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
        brokers: Option<&[u64]>,
        now_ms: i64,
    ) -> Result<TopicRecord, AdminError> {
        validate_topic_name(name)?;
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(AdminError::InvalidPartitions {
                partitions,
                max: MAX_PARTITIONS,
            });
        }
        validate_config(&config)?;
        if brokers.is_some_and(<[u64]>::is_empty) {
            return Err(AdminError::NoBrokers);
        }
        let record = TopicRecord {
            id: new_topic_id(now_ms),
            partitions,
            config,
            created_at_ms: now_ms,
        };
        let topic_key = keys::topic(name);
        let mut ops = vec![Op::Put {
            key: topic_key.clone(),
            value: records::encode(&record),
            lease: None,
        }];
        if let Some(brokers) = brokers {
            let start = rand::random_range(0..brokers.len());
            for partition in 0..partitions {
                let broker = brokers[(start + partition as usize) % brokers.len()];
                let assignment = Assignment { broker, epoch: 1 };
                ops.push(Op::Put {
                    key: keys::assignment(name, partition),
                    value: records::encode(&assignment),
                    lease: None,
                });
            }
        }
        let created = self
            .metadata
            .txn(vec![Compare::Absent(topic_key)], ops)
            .await?;
        if !created {
            return Err(AdminError::TopicExists {
                name: name.to_owned(),
            });
        }
        tracing::info!(topic = name, partitions, id = %record.id, "created topic");
        Ok(record)
    }

    /// Every topic, sorted by name.
    pub async fn list_topics(&self) -> Result<Vec<(String, TopicRecord)>, AdminError> {
        let mut topics = Vec::new();
        for (key, value) in self.metadata.list(&keys::topics_prefix()).await? {
            if let Some(name) = keys::parse_topic(&key) {
                topics.push((
                    name.to_owned(),
                    records::decode(&key, "a topic", &value.value)?,
                ));
            }
        }
        Ok(topics)
    }

    /// A topic with its assignments.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicInfo, AdminError> {
        let key = keys::topic(name);
        let Some(value) = self.metadata.get(&key).await? else {
            return Err(AdminError::UnknownTopic {
                name: name.to_owned(),
            });
        };
        let record: TopicRecord = records::decode(&key, "a topic", &value.value)?;
        let mut assignments = vec![None; record.partitions as usize];
        for (key, value) in self
            .metadata
            .list(&keys::topic_assignments_prefix(name))
            .await?
        {
            if let Some((_, partition)) = keys::parse_assignment(&key)
                && let Some(slot) = assignments.get_mut(partition as usize)
            {
                *slot = Some(records::decode(&key, "an assignment", &value.value)?);
            }
        }
        Ok(TopicInfo {
            name: name.to_owned(),
            record,
            assignments,
        })
    }

    /// Deletes a topic and its assignments; brokers then stop its partitions
    /// and delete its data.
    pub async fn delete_topic(&self, name: &str) -> Result<(), AdminError> {
        let key = keys::topic(name);
        let Some(value) = self.metadata.get(&key).await? else {
            return Err(AdminError::UnknownTopic {
                name: name.to_owned(),
            });
        };
        let ops = vec![
            Op::DeletePrefix {
                prefix: keys::topic_assignments_prefix(name),
            },
            Op::DeletePrefix {
                prefix: format!("{}/leases/{name}/", keys::ROOT),
            },
            Op::Delete { key: key.clone() },
        ];
        if !self
            .metadata
            .txn(vec![Compare::Version(key, value.version)], ops)
            .await?
        {
            return Err(AdminError::Conflict);
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Assigns every partition to `broker` under a new, higher epoch. A
    /// restarted standalone process calls this before its broker starts, so
    /// each run writes under an epoch no earlier run used.
    pub async fn claim_all(&self, broker: u64) -> Result<(), AdminError> {
        for (key, value) in self.metadata.list(&keys::assignments_prefix()).await? {
            let old: Assignment = records::decode(&key, "an assignment", &value.value)?;
            let new = Assignment {
                broker,
                epoch: old.epoch + 1,
            };
            let op = Op::Put {
                key: key.clone(),
                value: records::encode(&new),
                lease: None,
            };
            if !self
                .metadata
                .txn(vec![Compare::Version(key, value.version)], vec![op])
                .await?
            {
                return Err(AdminError::Conflict);
            }
        }
        Ok(())
    }
}

/// Kafka's topic name rules: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), AdminError> {
    let invalid = |reason| AdminError::InvalidTopicName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.len() > 249 {
        return Err(invalid("it is longer than 249 characters"));
    }
    if name == "." || name == ".." {
        return Err(invalid("'.' and '..' are not allowed"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(invalid(
            "only ASCII letters, digits, '.', '_' and '-' are allowed",
        ));
    }
    Ok(())
}

fn validate_config(config: &TopicConfig) -> Result<(), AdminError> {
    let invalid = |reason: String| Err(AdminError::InvalidConfig { reason });
    if let Some(bytes) = config.segment_bytes
        && bytes < 1024
    {
        return invalid(format!(
            "segment_bytes {bytes} is below the minimum of 1024"
        ));
    }
    if let Some(max) = config.max_batch_bytes
        && !(1024..=(64 << 20)).contains(&max)
    {
        return invalid(format!(
            "max_batch_bytes {max} must be between 1024 and 67108864"
        ));
    }
    if config.segment_ms == Some(0) {
        return invalid("segment_ms must be positive".into());
    }
    Ok(())
}

fn new_topic_id(now_ms: i64) -> String {
    format!("{now_ms:x}-{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use sluice_metadata::EmbeddedStore;

    use super::*;

    fn admin() -> TopicAdmin {
        TopicAdmin::new(Arc::new(EmbeddedStore::in_memory()))
    }

    #[tokio::test]
    async fn create_describe_delete() {
        let admin = admin();
        let record = admin
            .create_topic("orders", 3, TopicConfig::default(), Some(&[0]), 1)
            .await
            .expect("create");
        assert_eq!(record.partitions, 3);
        let info = admin.describe_topic("orders").await.expect("describe");
        assert_eq!(
            info.assignments,
            vec![
                Some(Assignment {
                    broker: 0,
                    epoch: 1
                });
                3
            ]
        );
        assert!(matches!(
            admin
                .create_topic("orders", 1, TopicConfig::default(), Some(&[0]), 2)
                .await,
            Err(AdminError::TopicExists { .. })
        ));
        assert_eq!(admin.list_topics().await.expect("list").len(), 1);
        admin.delete_topic("orders").await.expect("delete");
        assert!(matches!(
            admin.describe_topic("orders").await,
            Err(AdminError::UnknownTopic { .. })
        ));
        assert!(matches!(
            admin.delete_topic("orders").await,
            Err(AdminError::UnknownTopic { .. })
        ));
    }

    #[tokio::test]
    async fn claim_all_raises_every_epoch() {
        let admin = admin();
        admin
            .create_topic("a", 2, TopicConfig::default(), Some(&[0]), 1)
            .await
            .expect("create");
        admin.claim_all(0).await.expect("claim");
        let info = admin.describe_topic("a").await.expect("describe");
        assert!(
            info.assignments
                .iter()
                .all(|a| a.is_some_and(|a| a.epoch == 2))
        );
    }

    #[tokio::test]
    async fn bad_requests_are_refused() {
        let admin = admin();
        for name in ["", ".", "..", "a/b", "white space", &"x".repeat(250)] {
            assert!(
                matches!(
                    admin
                        .create_topic(name, 1, TopicConfig::default(), Some(&[0]), 1)
                        .await,
                    Err(AdminError::InvalidTopicName { .. })
                ),
                "{name}"
            );
        }
        assert!(matches!(
            admin
                .create_topic("t", 0, TopicConfig::default(), Some(&[0]), 1)
                .await,
            Err(AdminError::InvalidPartitions { .. })
        ));
        let tiny = TopicConfig {
            segment_bytes: Some(10),
            ..TopicConfig::default()
        };
        assert!(matches!(
            admin.create_topic("t", 1, tiny, Some(&[0]), 1).await,
            Err(AdminError::InvalidConfig { .. })
        ));
        assert!(matches!(
            admin
                .create_topic("t", 1, TopicConfig::default(), Some(&[]), 1)
                .await,
            Err(AdminError::NoBrokers)
        ));
    }
}

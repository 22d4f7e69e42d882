//! Operator actions on the cluster, as metadata-store writes: status,
//! drain, move one partition, rebalance, add partitions. None copies data:
//! a partition changes hands when its assignment (and epoch) changes, and
//! the brokers follow. The leader's reconcile loop does the rest (a drained
//! broker's partitions, new partitions).

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_metadata::records::{self, BrokerRecord, TopicRecord};
use sluice_metadata::{Compare, MetadataStore, Op, keys};

use crate::AdminError;
use crate::leader::{self, Observed};
use crate::planner::{self, Change, PlanError};

/// A broker as `cluster status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerStatus {
    pub id: u64,
    /// `None` when it is not live.
    pub addr: Option<String>,
    pub draining: bool,
    pub partitions: usize,
}

/// What `cluster status` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    /// The leading controller's address.
    pub controller: Option<String>,
    pub brokers: Vec<BrokerStatus>,
    pub proxies: Vec<String>,
    /// Partitions assigned to a broker that is not live.
    pub unowned_partitions: usize,
}

/// Cluster operations over the metadata store.
#[derive(Debug, Clone)]
pub struct ClusterOps {
    metadata: Arc<dyn MetadataStore>,
}

impl ClusterOps {
    pub fn new(metadata: Arc<dyn MetadataStore>) -> Self {
        Self { metadata }
    }

    pub async fn status(&self) -> Result<ClusterStatus, AdminError> {
        let observed = Observed::read(self.metadata.as_ref()).await?;
        let state = &observed.state;
        let mut addrs = BTreeMap::new();
        for (key, value) in self.metadata.list(&keys::brokers_prefix()).await? {
            if let Some(id) = keys::parse_broker(&key) {
                let record: BrokerRecord = records::decode(&key, "a broker", &value.value)?;
                addrs.insert(id, record.addr);
            }
        }
        let loads = planner::broker_loads(&state.assignments);
        let ids: std::collections::BTreeSet<u64> = loads
            .keys()
            .chain(addrs.keys())
            .chain(state.draining.iter())
            .copied()
            .collect();
        let brokers = ids
            .into_iter()
            .map(|id| BrokerStatus {
                id,
                addr: addrs.get(&id).cloned(),
                draining: state.draining.contains(&id),
                partitions: loads.get(&id).copied().unwrap_or(0),
            })
            .collect();
        let unowned_partitions = state
            .assignments
            .values()
            .filter(|a| !state.live_brokers.contains(&a.broker))
            .count();
        let proxies = self
            .metadata
            .list(&format!("{}/proxies/", keys::ROOT))
            .await?
            .into_iter()
            .map(|(_, v)| String::from_utf8_lossy(&v.value).into_owned())
            .collect();
        let controller = self
            .metadata
            .leader(leader::ELECTION)
            .await?
            .map(|v| String::from_utf8_lossy(&v).into_owned());
        Ok(ClusterStatus {
            controller,
            brokers,
            proxies,
            unowned_partitions,
        })
    }

    /// Marks a broker as draining (the controller moves its partitions away)
    /// or lifts the mark.
    pub async fn drain(&self, broker: u64, undrain: bool) -> Result<(), AdminError> {
        let key = leader::draining_key(broker);
        let op = if undrain {
            Op::Delete { key }
        } else {
            Op::Put {
                key,
                value: b"{}".to_vec(),
                lease: None,
            }
        };
        self.metadata.txn(vec![], vec![op]).await?;
        Ok(())
    }

    /// Moves one partition to `to_broker` under a new epoch.
    pub async fn move_partition(
        &self,
        topic: &str,
        partition: u32,
        to_broker: u64,
    ) -> Result<Change, AdminError> {
        let observed = Observed::read(self.metadata.as_ref()).await?;
        let change = planner::move_partition(&observed.state, topic, partition, to_broker)
            .map_err(plan_error)?;
        if !observed.write(self.metadata.as_ref(), &change).await? {
            return Err(AdminError::Conflict);
        }
        tracing::info!(%change, "moved by an operator");
        Ok(change)
    }

    /// Spreads partitions evenly over the eligible brokers.
    pub async fn rebalance(&self) -> Result<Vec<Change>, AdminError> {
        let observed = Observed::read(self.metadata.as_ref()).await?;
        let plan = planner::rebalance(&observed.state);
        let mut done = Vec::new();
        for change in plan.changes {
            if observed.write(self.metadata.as_ref(), &change).await? {
                tracing::info!(%change, "rebalanced");
                done.push(change);
            }
        }
        Ok(done)
    }

    /// Raises a topic's partition count. The new partitions are assigned
    /// by the controller, or to `assign_to` when given (standalone).
    pub async fn add_partitions(
        &self,
        topic: &str,
        partitions: u32,
        assign_to: Option<u64>,
    ) -> Result<(), AdminError> {
        let key = keys::topic(topic);
        let Some(value) = self.metadata.get(&key).await? else {
            return Err(AdminError::UnknownTopic {
                name: topic.to_owned(),
            });
        };
        let mut record: TopicRecord = records::decode(&key, "a topic", &value.value)?;
        if partitions <= record.partitions {
            return Err(AdminError::InvalidConfig {
                reason: format!(
                    "topic {topic:?} has {} partitions already; partitions can only be added (ask for more than {})",
                    record.partitions, record.partitions
                ),
            });
        }
        if partitions > crate::topics::MAX_PARTITIONS {
            return Err(AdminError::InvalidPartitions {
                partitions,
                max: crate::topics::MAX_PARTITIONS,
            });
        }
        let old = record.partitions;
        record.partitions = partitions;
        let mut ops = vec![Op::Put {
            key: key.clone(),
            value: records::encode(&record),
            lease: None,
        }];
        if let Some(broker) = assign_to {
            for partition in old..partitions {
                ops.push(Op::Put {
                    key: keys::assignment(topic, partition),
                    value: records::encode(&sluice_metadata::records::Assignment {
                        broker,
                        epoch: 1,
                    }),
                    lease: None,
                });
            }
        }
        if !self
            .metadata
            .txn(vec![Compare::Version(key, value.version)], ops)
            .await?
        {
            return Err(AdminError::Conflict);
        }
        tracing::info!(topic, from = old, to = partitions, "added partitions");
        Ok(())
    }
}

fn plan_error(e: PlanError) -> AdminError {
    AdminError::Plan(e)
}

//! The metadata state machine: the image that records are applied to.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::records::{ConfigResource, MetadataRecord, ReplicaLog};

#[derive(Debug, Clone, PartialEq)]
pub struct BrokerImage {
    pub broker_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Fenced brokers lead nothing and are not shown to clients.
    pub fenced: bool,
    /// Grows with every start of the broker process (KRaft's broker epoch).
    pub epoch: i64,
    /// The broker process that registered last; a start with another one is a new incarnation.
    pub incarnation: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PartitionImage {
    /// Every replica; during a reassignment, the target replicas first, then those leaving.
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    /// A reassignment in progress: replicas joining, and replicas leaving once every target
    /// replica (`replicas` minus `removing_replicas`) is in the ISR. Both empty otherwise.
    pub adding_replicas: Vec<i32>,
    pub removing_replicas: Vec<i32>,
    /// While the ISR is empty: the replicas' logs as their brokers reported them.
    pub recovery: Vec<ReplicaLog>,
}

impl PartitionImage {
    /// Whether a reassignment is in progress.
    pub fn reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TopicImage {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: BTreeMap<i32, PartitionImage>,
}

/// Everything the metadata log has said so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetadataImage {
    pub brokers: BTreeMap<i32, BrokerImage>,
    topics: BTreeMap<Uuid, TopicImage>,
    names: BTreeMap<String, Uuid>,
    configs: BTreeMap<ConfigResource, BTreeMap<String, String>>,
    pub next_producer_id: i64,
    /// The cluster id (Kafka's `cluster.id`), once the first controller has chosen it.
    pub cluster_id: Option<String>,
    /// The image's version: the index of the last metadata-log entry applied to it (set by the
    /// state machine; every voter and broker agrees on what each version holds).
    pub version: u64,
}

impl MetadataImage {
    /// Applies one record. Records that name unknown topics are ignored, as a replay of a log
    /// that deleted a topic must be.
    pub fn apply(&mut self, record: &MetadataRecord) {
        match record {
            MetadataRecord::RegisterBroker {
                broker_id,
                host,
                port,
                rack,
                broker_epoch,
                incarnation,
                fenced,
            } => {
                self.brokers.insert(
                    *broker_id,
                    BrokerImage {
                        broker_id: *broker_id,
                        host: host.clone(),
                        port: *port,
                        rack: rack.clone(),
                        fenced: *fenced,
                        epoch: *broker_epoch,
                        incarnation: *incarnation,
                    },
                );
            }
            MetadataRecord::FenceBroker { broker_id } => {
                if let Some(b) = self.brokers.get_mut(broker_id) {
                    b.fenced = true;
                }
            }
            MetadataRecord::UnfenceBroker { broker_id } => {
                if let Some(b) = self.brokers.get_mut(broker_id) {
                    b.fenced = false;
                }
            }
            MetadataRecord::Topic { name, topic_id } => {
                self.names.insert(name.clone(), *topic_id);
                self.topics.insert(
                    *topic_id,
                    TopicImage {
                        name: name.clone(),
                        topic_id: *topic_id,
                        partitions: BTreeMap::new(),
                    },
                );
            }
            MetadataRecord::Partition {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
                leader_epoch,
                adding_replicas,
                removing_replicas,
                recovery,
            } => {
                if let Some(topic) = self.topics.get_mut(topic_id) {
                    topic.partitions.insert(
                        *partition,
                        PartitionImage {
                            replicas: replicas.clone(),
                            isr: isr.clone(),
                            leader: *leader,
                            leader_epoch: *leader_epoch,
                            adding_replicas: adding_replicas.clone(),
                            removing_replicas: removing_replicas.clone(),
                            recovery: recovery.clone(),
                        },
                    );
                }
            }
            MetadataRecord::Config {
                resource,
                name,
                value,
            } => {
                let entry = self.configs.entry(resource.clone()).or_default();
                match value {
                    Some(v) => {
                        entry.insert(name.clone(), v.clone());
                    }
                    None => {
                        entry.remove(name);
                    }
                }
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                if let Some(topic) = self.topics.remove(topic_id) {
                    self.names.remove(&topic.name);
                    self.configs.remove(&ConfigResource::Topic(topic.name));
                }
            }
            MetadataRecord::Cluster { cluster_id } => {
                self.cluster_id = Some(cluster_id.clone());
            }
            MetadataRecord::ProducerIds { next_producer_id } => {
                self.next_producer_id = self.next_producer_id.max(*next_producer_id);
            }
        }
    }

    /// Whether `broker_id` is registered and not fenced.
    pub fn is_live(&self, broker_id: i32) -> bool {
        self.brokers.get(&broker_id).is_some_and(|b| !b.fenced)
    }

    /// The registered, unfenced brokers.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerImage> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.names.get(name).and_then(|id| self.topics.get(id))
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&TopicImage> {
        self.topics.get(id)
    }

    pub fn topics(&self) -> impl Iterator<Item = &TopicImage> {
        self.names.values().filter_map(|id| self.topics.get(id))
    }

    /// The configs set explicitly on a resource (not the defaults).
    pub fn configs(&self, resource: &ConfigResource) -> BTreeMap<String, String> {
        self.configs.get(resource).cloned().unwrap_or_default()
    }

    /// Records that rebuild this image from empty (its snapshot, as KRaft's snapshots are):
    /// brokers (and their fencing), then each topic with its partitions, then configs, then the producer-id mark.
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        let mut out = Vec::new();
        if let Some(cluster_id) = &self.cluster_id {
            out.push(MetadataRecord::Cluster {
                cluster_id: cluster_id.clone(),
            });
        }
        for b in self.brokers.values() {
            out.push(MetadataRecord::RegisterBroker {
                broker_id: b.broker_id,
                host: b.host.clone(),
                port: b.port,
                rack: b.rack.clone(),
                broker_epoch: b.epoch,
                incarnation: b.incarnation,
                fenced: b.fenced,
            });
        }
        for topic in self.topics.values() {
            out.push(MetadataRecord::Topic {
                name: topic.name.clone(),
                topic_id: topic.topic_id,
            });
            for (partition, p) in &topic.partitions {
                out.push(crate::election::partition_record(
                    topic.topic_id,
                    *partition,
                    p.clone(),
                ));
            }
        }
        for (resource, configs) in &self.configs {
            for (name, value) in configs {
                out.push(MetadataRecord::Config {
                    resource: resource.clone(),
                    name: name.clone(),
                    value: Some(value.clone()),
                });
            }
        }
        if self.next_producer_id > 0 {
            out.push(MetadataRecord::ProducerIds {
                next_producer_id: self.next_producer_id,
            });
        }
        out
    }
}

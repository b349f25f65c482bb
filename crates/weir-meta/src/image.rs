//! The metadata state machine: the image that records are applied to.
//!
//! Topics and partitions sit behind `Arc`s, so a copy of the image (one per published version)
//! shares every topic and partition a change did not touch: copying costs one pointer per topic,
//! and [`MetadataImage::changes_since`] finds what changed between two versions by comparing
//! pointers, without walking every partition.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use uuid::Uuid;
use weir_types::{BrokerId, LeaderEpoch, ProducerId};

use crate::acl::Acls;
use crate::records::{ConfigResource, Endpoint, MetadataRecord, ReplicaLog};
use crate::scram::{ScramCredential, ScramMechanism};

#[derive(Debug, Clone, PartialEq)]
pub struct BrokerImage {
    pub broker_id: BrokerId,
    /// The inter-broker listener's endpoint: where followers fetch from.
    pub host: String,
    pub port: i32,
    /// Every listener's endpoint, by listener name.
    pub endpoints: Vec<Endpoint>,
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
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    pub leader: Option<BrokerId>,
    pub leader_epoch: LeaderEpoch,
    /// A reassignment in progress: replicas joining, and replicas leaving once every target
    /// replica (`replicas` minus `removing_replicas`) is in the ISR. Both empty otherwise.
    pub adding_replicas: Vec<BrokerId>,
    pub removing_replicas: Vec<BrokerId>,
    /// While the ISR is empty: the replicas' logs as their brokers reported them.
    pub recovery: Vec<ReplicaLog>,
}

impl BrokerImage {
    /// Where clients of `listener` reach this broker, or `None` when it has no such listener
    /// (Kafka leaves such a broker out of the answer). A broker registered before listeners had
    /// names has one endpoint, served to every listener.
    pub fn endpoint(&self, listener: &str) -> Option<(&str, i32)> {
        if self.endpoints.is_empty() {
            return Some((&self.host, self.port));
        }
        self.endpoints
            .iter()
            .find(|e| e.listener == listener)
            .map(|e| (e.host.as_str(), e.port))
    }
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
    pub partitions: BTreeMap<i32, Arc<PartitionImage>>,
}

/// What changed between two versions of an image (see [`MetadataImage::changes_since`]).
#[derive(Debug, Default, PartialEq)]
pub struct ImageDelta {
    /// Topics that are new or changed, each with its new or changed partitions.
    pub changed: Vec<(Uuid, Vec<i32>)>,
    /// Topics whose own configs changed.
    pub reconfigured: Vec<Uuid>,
    /// Topics that went away.
    pub removed: Vec<Uuid>,
}

/// Everything the metadata log has said so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetadataImage {
    pub brokers: BTreeMap<BrokerId, BrokerImage>,
    topics: BTreeMap<Uuid, Arc<TopicImage>>,
    names: BTreeMap<String, Uuid>,
    /// Partitions whose ISR is empty (in recovery, see `crate::election`).
    recovering: BTreeSet<(Uuid, i32)>,
    configs: BTreeMap<ConfigResource, BTreeMap<String, String>>,
    pub next_producer_id: ProducerId,
    /// SCRAM credentials by user and mechanism.
    pub scram: BTreeMap<(String, ScramMechanism), ScramCredential>,
    /// Whether the `--add-scram` credentials were applied once already.
    pub scram_bootstrapped: bool,
    /// Every ACL, shared between versions until one changes them.
    pub acls: Arc<Acls>,
    /// Client quotas by the entity they are set on, then key.
    pub quotas: Arc<crate::quotas::Quotas>,
    /// Feature levels finalized by UpdateFeatures; a feature not here is at its default
    /// level (see `crate::features`).
    pub features: BTreeMap<String, i16>,
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
                endpoints,
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
                        endpoints: endpoints.clone(),
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
                    Arc::new(TopicImage {
                        name: name.clone(),
                        topic_id: *topic_id,
                        partitions: BTreeMap::new(),
                    }),
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
                    Arc::make_mut(topic).partitions.insert(
                        *partition,
                        Arc::new(PartitionImage {
                            replicas: replicas.clone(),
                            isr: isr.clone(),
                            leader: *leader,
                            leader_epoch: *leader_epoch,
                            adding_replicas: adding_replicas.clone(),
                            removing_replicas: removing_replicas.clone(),
                            recovery: recovery.clone(),
                        }),
                    );
                    if isr.is_empty() {
                        self.recovering.insert((*topic_id, *partition));
                    } else {
                        self.recovering.remove(&(*topic_id, *partition));
                    }
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
                    self.configs
                        .remove(&ConfigResource::Topic(topic.name.clone()));
                    let id = *topic_id;
                    self.recovering.retain(|(t, _)| *t != id);
                }
            }
            MetadataRecord::Cluster { cluster_id } => {
                self.cluster_id = Some(cluster_id.clone());
            }
            MetadataRecord::ProducerIds { next_producer_id } => {
                self.next_producer_id = self.next_producer_id.max(*next_producer_id);
            }
            MetadataRecord::ScramCredential {
                name,
                mechanism,
                credential,
            } => {
                self.scram
                    .insert((name.clone(), *mechanism), credential.clone());
            }
            MetadataRecord::RemoveScramCredential { name, mechanism } => {
                self.scram.remove(&(name.clone(), *mechanism));
            }
            MetadataRecord::ScramBootstrapped => self.scram_bootstrapped = true,
            MetadataRecord::Acl { id, acl } => {
                Arc::make_mut(&mut self.acls).insert(*id, acl.clone())
            }
            MetadataRecord::RemoveAcl { id } => Arc::make_mut(&mut self.acls).remove(*id),
            MetadataRecord::ClientQuota { entity, key, value } => {
                let quotas = Arc::make_mut(&mut self.quotas);
                match value {
                    Some(v) => {
                        quotas
                            .entry(entity.clone())
                            .or_default()
                            .insert(key.clone(), *v);
                    }
                    None => {
                        if let Some(values) = quotas.get_mut(entity) {
                            values.remove(key);
                            if values.is_empty() {
                                quotas.remove(entity);
                            }
                        }
                    }
                }
            }
            MetadataRecord::FeatureLevel { name, level } => {
                self.features.insert(name.clone(), *level);
            }
        }
    }

    /// Whether `broker_id` is registered and not fenced.
    pub fn is_live(&self, broker_id: BrokerId) -> bool {
        self.brokers.get(&broker_id).is_some_and(|b| !b.fenced)
    }

    /// The registered, unfenced brokers.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerImage> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.names
            .get(name)
            .and_then(|id| self.topics.get(id))
            .map(|t| &**t)
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&TopicImage> {
        self.topics.get(id).map(|t| &**t)
    }

    pub fn topics(&self) -> impl Iterator<Item = &TopicImage> {
        self.names
            .values()
            .filter_map(|id| self.topics.get(id))
            .map(|t| &**t)
    }

    /// The partitions in recovery (an empty ISR), as topic and partition.
    pub fn recovering(&self) -> impl Iterator<Item = (&TopicImage, i32, &PartitionImage)> {
        self.recovering.iter().filter_map(|(id, index)| {
            let topic = self.topics.get(id)?;
            let p = topic.partitions.get(index)?;
            Some((&**topic, *index, &**p))
        })
    }

    /// The configs set explicitly on a resource (not the defaults).
    pub fn configs(&self, resource: &ConfigResource) -> BTreeMap<String, String> {
        self.configs.get(resource).cloned().unwrap_or_default()
    }

    /// What changed since `older`, an earlier version of this image: topics that appeared,
    /// changed or went away, and within a changed topic the partitions that did. Found by
    /// comparing the shared pointers, so unchanged topics cost one comparison each. A
    /// partition or topic rebuilt with equal contents (after a snapshot) counts as changed.
    pub fn changes_since(&self, older: &MetadataImage) -> ImageDelta {
        let mut delta = ImageDelta::default();
        // Dynamic broker configs (they sort after every topic's) are defaults of every topic.
        let first_broker = ConfigResource::Broker(BrokerId(i32::MIN));
        let brokers_reconfigured = !self
            .configs
            .range(first_broker.clone()..)
            .eq(older.configs.range(first_broker..));
        for (id, topic) in &self.topics {
            let resource = ConfigResource::Topic(topic.name.clone());
            let configs_changed =
                brokers_reconfigured || self.configs.get(&resource) != older.configs.get(&resource);
            let partitions = match older.topics.get(id) {
                Some(old) if Arc::ptr_eq(old, topic) => {
                    if configs_changed {
                        delta.reconfigured.push(*id);
                    }
                    continue;
                }
                Some(old) => topic
                    .partitions
                    .iter()
                    .filter(|(i, p)| old.partitions.get(i).is_none_or(|o| !Arc::ptr_eq(o, p)))
                    .map(|(i, _)| *i)
                    .collect(),
                None => topic.partitions.keys().copied().collect(),
            };
            if configs_changed {
                delta.reconfigured.push(*id);
            }
            delta.changed.push((*id, partitions));
        }
        delta.removed = older
            .topics
            .keys()
            .filter(|id| !self.topics.contains_key(id))
            .copied()
            .collect();
        delta
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
                endpoints: b.endpoints.clone(),
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
                    (**p).clone(),
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
        if self.next_producer_id > ProducerId(0) {
            out.push(MetadataRecord::ProducerIds {
                next_producer_id: self.next_producer_id,
            });
        }
        for ((name, mechanism), credential) in &self.scram {
            out.push(MetadataRecord::ScramCredential {
                name: name.clone(),
                mechanism: *mechanism,
                credential: credential.clone(),
            });
        }
        if self.scram_bootstrapped {
            out.push(MetadataRecord::ScramBootstrapped);
        }
        for (id, acl) in self.acls.iter() {
            out.push(MetadataRecord::Acl {
                id: *id,
                acl: acl.clone(),
            });
        }
        for (entity, values) in self.quotas.iter() {
            for (key, value) in values {
                out.push(MetadataRecord::ClientQuota {
                    entity: entity.clone(),
                    key: key.clone(),
                    value: Some(*value),
                });
            }
        }
        for (name, level) in &self.features {
            out.push(MetadataRecord::FeatureLevel {
                name: name.clone(),
                level: *level,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(topic_id: Uuid, partition: i32, isr: Vec<BrokerId>) -> MetadataRecord {
        MetadataRecord::Partition {
            topic_id,
            partition,
            replicas: vec![BrokerId(1), BrokerId(2)],
            isr,
            leader: Some(BrokerId(1)),
            leader_epoch: LeaderEpoch(0),
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
            recovery: Vec::new(),
        }
    }

    #[test]
    fn quotas_and_features_survive_a_snapshot() {
        use crate::quotas::{EntityName, QuotaEntity};
        let mut image = with_topics(&[("a", 1)]);
        let alice = QuotaEntity {
            user: Some(EntityName::Name("alice".into())),
            client_id: Some(EntityName::Default),
        };
        let set = |key: &str, value| MetadataRecord::ClientQuota {
            entity: alice.clone(),
            key: key.into(),
            value,
        };
        image.apply(&set("producer_byte_rate", Some(1024.0)));
        image.apply(&set("consumer_byte_rate", Some(2048.0)));
        image.apply(&set("producer_byte_rate", None));
        image.apply(&MetadataRecord::FeatureLevel {
            name: "group.version".into(),
            level: 0,
        });
        assert_eq!(image.quotas[&alice].len(), 1);
        let mut rebuilt = MetadataImage::default();
        for r in image.to_records() {
            rebuilt.apply(&r);
        }
        assert_eq!(rebuilt.quotas, image.quotas);
        assert_eq!(rebuilt.features.get("group.version"), Some(&0));
        image.apply(&set("consumer_byte_rate", None));
        assert!(image.quotas.is_empty(), "an entity without quotas is gone");
    }

    fn with_topics(topics: &[(&str, u128)]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for (name, id) in topics {
            let topic_id = Uuid::from_u128(*id);
            image.apply(&MetadataRecord::Topic {
                name: name.to_string(),
                topic_id,
            });
            for p in 0..3 {
                image.apply(&partition(topic_id, p, vec![BrokerId(1), BrokerId(2)]));
            }
        }
        image
    }

    #[test]
    fn a_delta_names_only_the_partitions_and_topics_that_changed() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let older = with_topics(&[("a", 1), ("b", 2)]);
        let mut image = older.clone();
        assert_eq!(image.changes_since(&older), ImageDelta::default());
        image.apply(&partition(a, 1, vec![BrokerId(1)]));
        image.apply(&MetadataRecord::Config {
            resource: ConfigResource::Topic("b".into()),
            name: "retention.ms".into(),
            value: Some("1".into()),
        });
        image.apply(&MetadataRecord::Topic {
            name: "c".into(),
            topic_id: Uuid::from_u128(3),
        });
        image.apply(&partition(Uuid::from_u128(3), 0, vec![BrokerId(1)]));
        let delta = image.changes_since(&older);
        assert_eq!(
            delta.changed,
            vec![(a, vec![1]), (Uuid::from_u128(3), vec![0])]
        );
        assert_eq!(delta.reconfigured, vec![b]);
        assert!(delta.removed.is_empty());
        // The older version is untouched by the changes made to the newer one.
        assert_eq!(
            older.topic("a").unwrap().partitions[&1].isr,
            vec![BrokerId(1), BrokerId(2)]
        );

        let mut later = image.clone();
        later.apply(&MetadataRecord::RemoveTopic { topic_id: a });
        let delta = later.changes_since(&image);
        assert_eq!(delta.removed, vec![a]);
        assert!(delta.changed.is_empty() && delta.reconfigured.is_empty());
        // Against an empty image, everything is new.
        let all = later.changes_since(&MetadataImage::default());
        assert_eq!(all.changed.len(), 2);
    }

    #[test]
    fn partitions_in_recovery_are_indexed_until_their_isr_fills_or_the_topic_goes() {
        let a = Uuid::from_u128(1);
        let mut image = with_topics(&[("a", 1)]);
        assert_eq!(image.recovering().count(), 0);
        image.apply(&partition(a, 2, Vec::new()));
        let found: Vec<i32> = image.recovering().map(|(_, p, _)| p).collect();
        assert_eq!(found, vec![2]);
        image.apply(&partition(a, 2, vec![BrokerId(2)]));
        assert_eq!(image.recovering().count(), 0);
        image.apply(&partition(a, 0, Vec::new()));
        image.apply(&MetadataRecord::RemoveTopic { topic_id: a });
        assert_eq!(image.recovering().count(), 0);
    }
}

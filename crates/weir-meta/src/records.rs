//! The metadata records: every change to the cluster's metadata is one of these.
//!
//! They mirror KRaft's record types (`RegisterBrokerRecord`, `TopicRecord`, `PartitionRecord`,
//! `ConfigRecord`, `RemoveTopicRecord`, `ProducerIdsRecord`) and are stored as JSON, one record
//! per entry of the record log.

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use weir_types::{minus_one_as_none, BrokerId, LeaderEpoch, Offset, ProducerId};

use crate::acl::AclBinding;
use crate::scram::{ScramCredential, ScramMechanism};

/// What a config record applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ConfigResource {
    Topic(String),
    /// One broker's dynamic configs.
    Broker(BrokerId),
    /// The cluster-wide default of dynamic broker configs (Kafka's `<default>` broker entity,
    /// resource name "").
    ClusterDefault,
}

/// One of a broker's listeners as clients of that listener reach it (KRaft's
/// `BrokerEndpoint`): the listener's name, the advertised host and port, and its security
/// protocol (Kafka's ids: 0 PLAINTEXT, 1 SSL, 2 SASL_PLAINTEXT, 3 SASL_SSL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub listener: String,
    pub host: String,
    pub port: i32,
    pub security_protocol: i16,
}

/// Where one replica's log ends, as reported by that replica's broker in one incarnation: what
/// the recovery of a partition with an empty ISR compares (KIP-966's unclean recovery).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaLog {
    pub broker_id: BrokerId,
    /// The incarnation that reported: a report from an earlier one says nothing of the log now.
    pub broker_epoch: i64,
    /// The partition's leader epoch when the report was made: one made for an earlier recovery
    /// (delayed or sent again) says nothing of this one.
    #[serde(default)]
    pub leader_epoch: LeaderEpoch,
    /// The leader epoch of the log's last batch, if it has one.
    #[serde(with = "minus_one_as_none")]
    pub last_epoch: Option<LeaderEpoch>,
    pub log_end_offset: Offset,
}

/// One partition's log, as a broker reports it for recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionLog {
    pub topic_id: Uuid,
    pub partition: i32,
    /// The partition's leader epoch in the image the broker reported from.
    pub leader_epoch: LeaderEpoch,
    /// The leader epoch of the log's last batch, if it has one.
    #[serde(with = "minus_one_as_none")]
    pub last_epoch: Option<LeaderEpoch>,
    pub log_end_offset: Offset,
}

impl ReplicaLog {
    /// The order of logs for recovery: later epochs first, then longer logs.
    pub fn rank(&self) -> (Option<LeaderEpoch>, Offset) {
        (self.last_epoch, self.log_end_offset)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// A broker registered (or re-registered, perhaps with new endpoints). Each start of a broker
    /// process is a new incarnation with a new, larger `broker_epoch` (KRaft's broker epoch); a
    /// known broker's new incarnation registers `fenced` and is unfenced by its first heartbeat,
    /// so it leaves every ISR and leadership in between. Records of logs written before epochs
    /// existed read as epoch 0, no incarnation, unfenced.
    RegisterBroker {
        broker_id: BrokerId,
        /// The endpoint of the inter-broker listener (followers fetch from it).
        host: String,
        port: i32,
        /// Every listener's endpoint; empty in records written before listeners had names.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        endpoints: Vec<Endpoint>,
        rack: Option<String>,
        #[serde(default)]
        broker_epoch: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        incarnation: Option<Uuid>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        fenced: bool,
    },
    /// The broker missed its heartbeats or shut down: it leads nothing and is in no ISR it can
    /// leave, and clients are not told of it.
    FenceBroker {
        broker_id: BrokerId,
    },
    /// The broker heartbeats again.
    UnfenceBroker {
        broker_id: BrokerId,
    },
    Topic {
        name: String,
        topic_id: Uuid,
    },
    /// A partition's whole state: written when it is created and on every change of leader or ISR.
    /// `leader` is -1 while no eligible replica is live; `leader_epoch` grows with every change of
    /// leader. An empty `isr` means no replica is known to hold every acknowledged record (the
    /// last member came back from an unclean shutdown): the partition recovers by electing the
    /// replica with the longest log once every replica reported its log in `recovery`.
    Partition {
        topic_id: Uuid,
        partition: i32,
        replicas: Vec<BrokerId>,
        isr: Vec<BrokerId>,
        #[serde(with = "minus_one_as_none")]
        leader: Option<BrokerId>,
        leader_epoch: LeaderEpoch,
        /// A reassignment in progress (KIP-455): replicas being added (in `replicas`, copying)
        /// and replicas to remove once every target replica is in the ISR.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        adding_replicas: Vec<BrokerId>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        removing_replicas: Vec<BrokerId>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recovery: Vec<ReplicaLog>,
    },
    /// Sets a config (`value: Some`) or removes it back to its default (`None`).
    Config {
        resource: ConfigResource,
        name: String,
        value: Option<String>,
    },
    RemoveTopic {
        topic_id: Uuid,
    },
    /// The cluster's id, chosen once by the first active controller.
    Cluster {
        cluster_id: String,
    },
    /// Producer ids below `next_producer_id` have been handed out.
    ProducerIds {
        next_producer_id: ProducerId,
    },
    /// A user's SCRAM credential for one mechanism, made or replaced.
    ScramCredential {
        name: String,
        mechanism: ScramMechanism,
        credential: ScramCredential,
    },
    /// A user's SCRAM credential for one mechanism is gone.
    RemoveScramCredential {
        name: String,
        mechanism: ScramMechanism,
    },
    /// The `--add-scram` credentials were applied: later starts add none (as Kafka applies
    /// them once, at `kafka-storage format`), so a credential deleted since stays deleted.
    ScramBootstrapped,
    /// An ACL was created (KRaft's `AccessControlEntryRecord`).
    Acl {
        id: Uuid,
        acl: AclBinding,
    },
    /// The ACL created with `id` is gone.
    RemoveAcl {
        id: Uuid,
    },
    /// A client quota set (`value: Some`) or removed (KRaft's `ClientQuotaRecord`).
    ClientQuota {
        entity: crate::quotas::QuotaEntity,
        key: String,
        value: Option<f64>,
    },
    /// A feature's finalized level (KRaft's `FeatureLevelRecord`); 0 turns it off.
    FeatureLevel {
        name: String,
        level: i16,
    },
}

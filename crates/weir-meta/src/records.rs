//! The metadata records: every change to the cluster's metadata is one of these.
//!
//! They mirror KRaft's record types (`RegisterBrokerRecord`, `TopicRecord`, `PartitionRecord`,
//! `ConfigRecord`, `RemoveTopicRecord`, `ProducerIdsRecord`) and are stored as JSON, one record
//! per entry of the record log.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a config record applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ConfigResource {
    Topic(String),
    Broker(i32),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// A broker registered (or re-registered, perhaps with new endpoints). A registered broker is
    /// live (unfenced) until a [`MetadataRecord::FenceBroker`].
    RegisterBroker {
        broker_id: i32,
        host: String,
        port: i32,
        rack: Option<String>,
    },
    /// The broker missed its heartbeats or shut down: it leads nothing and is in no ISR it can
    /// leave, and clients are not told of it.
    FenceBroker {
        broker_id: i32,
    },
    /// The broker heartbeats again.
    UnfenceBroker {
        broker_id: i32,
    },
    Topic {
        name: String,
        topic_id: Uuid,
    },
    /// A partition's whole state: written when it is created and on every change of leader or ISR.
    /// `leader` is -1 while no eligible replica is live; `leader_epoch` grows with every change of
    /// leader.
    Partition {
        topic_id: Uuid,
        partition: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        leader: i32,
        leader_epoch: i32,
        /// A reassignment in progress (KIP-455): replicas being added (in `replicas`, copying)
        /// and replicas to remove once every target replica is in the ISR.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        adding_replicas: Vec<i32>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        removing_replicas: Vec<i32>,
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
        next_producer_id: i64,
    },
}

//! `weir-meta` owns the cluster's metadata.
//!
//! The metadata is a log of [`MetadataRecord`]s applied, in order, to a [`MetadataImage`]: the
//! state machine of brokers, topics, partitions, configs and producer-id blocks. The log is
//! replicated by a Raft quorum ([`quorum`]). The active controller checks each [`ControllerOp`]
//! (create topics, add partitions, alter configs, heartbeats, ...) against the image, turns it
//! into records, and commits them through the quorum; every node applies them. [`election`]
//! decides partition leadership from broker liveness; [`placement`] places new replicas.
//!
//! This crate knows nothing of client sockets or of the log format.

pub mod acl;
pub mod broker_configs;
pub mod configs;
mod controller;
pub mod election;
pub mod features;
mod framing;
pub mod fuzzing;
mod image;
pub mod placement;
pub mod quorum;
pub mod quotas;
mod records;
mod registration;
pub mod scram;

pub use controller::{
    validate_topic_name, ControllerOp, ControllerReply, CreateTopic, Election, Outcome,
    PRODUCER_ID_BLOCK_SIZE,
};
pub use image::{BrokerImage, ImageDelta, MetadataImage, PartitionImage, TopicImage};
pub use records::{ConfigResource, Endpoint, MetadataRecord, PartitionLog, ReplicaLog};

/// Errors of the metadata layer; the broker maps each to a Kafka error code in one place. They
/// cross the controller RPC, so they are plain data.
#[derive(Debug, Clone, PartialEq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum MetaError {
    #[error("I/O error in the metadata log: {0}")]
    Io(String),
    #[error("metadata log is corrupt: {0}")]
    Corrupt(String),
    #[error("topic '{0}' already exists")]
    TopicAlreadyExists(String),
    #[error("invalid topic name: {0}")]
    InvalidTopicName(String),
    #[error("unknown topic '{0}'")]
    UnknownTopic(String),
    #[error("invalid number of partitions: {0}")]
    InvalidPartitions(String),
    #[error("invalid replication factor: {0}")]
    InvalidReplicationFactor(String),
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The node asked is not the active controller; `leader` is the one it knows of.
    #[error("not the active controller (active: {leader:?})")]
    NotController { leader: Option<u64> },
    /// No active controller answered in time (no quorum, or it is electing one).
    #[error("no active controller: {0}")]
    Unavailable(String),
    /// A request from an earlier incarnation of a broker (its broker epoch is not the current one).
    #[error("stale broker epoch: {0}")]
    StaleBrokerEpoch(String),
    /// A heartbeat from a broker the controller has no registration for: it must register.
    #[error("broker {0} is not registered")]
    UnknownBroker(weir_types::BrokerId),
    /// The partitions named do not exist.
    #[error("unknown partition {0}")]
    UnknownPartition(String),
    /// A preferred election for a partition already led by its preferred replica.
    #[error("election not needed: {0}")]
    ElectionNotNeeded(String),
    /// An unclean election found no live replica.
    #[error("no eligible leader: {0}")]
    EligibleLeadersNotAvailable(String),
    /// A preferred election whose preferred replica is not live or not in the ISR.
    #[error("preferred leader not available: {0}")]
    PreferredLeaderNotAvailable(String),
    /// An ISR change from a leader that was deposed, or that saw an ISR the image no longer holds.
    #[error("stale partition state: {0}")]
    StalePartitionState(String),
    /// A cancellation of a reassignment where none is in progress.
    #[error("no reassignment in progress: {0}")]
    NoReassignmentInProgress(String),
    /// An ISR change that adds a fenced broker.
    #[error("ineligible replica: {0}")]
    IneligibleReplica(String),
}

impl From<std::io::Error> for MetaError {
    fn from(e: std::io::Error) -> Self {
        MetaError::Io(e.to_string())
    }
}

pub type Result<T, E = MetaError> = std::result::Result<T, E>;

//! `weir-meta` owns the cluster's metadata.
//!
//! The metadata is a log of [`MetadataRecord`]s applied, in order, to a [`MetadataImage`]: the
//! state machine of brokers, topics, partitions, configs and producer-id blocks. The
//! [`Controller`] validates requests (create topics, add partitions, alter configs, ...), turns
//! them into records, makes the records durable in its [`RecordLog`], then applies them. Today the
//! record log is a local file under `<data>/meta`; the cluster work puts the same records behind a
//! Raft quorum without changing the image's interface (records in, state out).
//!
//! This crate knows nothing of client sockets or of the log format.

pub mod configs;
mod controller;
mod framing;
mod image;
pub mod placement;
pub mod quorum;
mod records;
mod store;

pub use controller::{validate_topic_name, Controller, CreateTopic, PRODUCER_ID_BLOCK_SIZE};
pub use image::{BrokerImage, MetadataImage, PartitionImage, TopicImage};
pub use records::{ConfigResource, MetadataRecord};
pub use store::RecordLog;

/// Errors of the metadata layer; the broker maps each to a Kafka error code in one place.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("I/O error in the metadata log: {0}")]
    Io(#[from] std::io::Error),
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
}

pub type Result<T, E = MetaError> = std::result::Result<T, E>;

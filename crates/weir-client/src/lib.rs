//! `weir-client`: an async Rust client for Kafka-compatible brokers (Weir, Kafka, Redpanda).
//!
//! - [`Producer`]: batching with linger, compression, acks, idempotence, partitioners
//!   (murmur2 identical to the Java client), delivery futures, bounded memory.
//! - [`Consumer`]: manual assignment or group membership (range, roundrobin, cooperative-sticky,
//!   with a [`RebalanceListener`]), batch polling with a timeout, commits, and ordered commits for
//!   records processed concurrently.
//! - [`TransactionalProducer`]: transactions (KIP-98), with consumed offsets committed inside
//!   them (KIP-447); [`ConsumerConfig::read_committed`] reads only committed records.
//! - [`Admin`]: topics, partitions, configs, groups, offsets and lag.
//!
//! Every request is sent at the highest version both sides support (KIP-35). Errors are one
//! [`Error`] enum; Kafka error codes arrive as [`Error::Kafka`].

#![warn(missing_docs)]

mod acls;
mod admin;
mod assignor;
mod cluster;
mod connection;
mod consumer;
mod error;
pub mod partitioner;
mod producer;
mod quotas;
mod sasl;
mod security;
mod transaction;
mod transactions_admin;
mod users;

pub use acls::{Acl, AclFilter};
pub use admin::{
    Admin, BrokerState, ClusterDescription, ConfigEntry, GroupDescription, GroupMember, NewTopic,
    OffsetSpec, PartitionLag, QuorumDescription, TopicDescription,
};
pub use assignor::TopicPartition;
pub use cluster::{BrokerInfo, ClientConfig, PartitionInfo, TopicInfo};
pub use connection::Connection;
pub use consumer::{
    AutoOffsetReset, Consumer, ConsumerConfig, ConsumerRecord, GroupProtocol, OffsetTracker,
    RebalanceListener,
};
pub use error::{Error, Result};
pub use kafka_protocol::error::ResponseError;
pub use kafka_protocol::records::Compression;
pub use producer::{
    Acks, DeliveryFuture, Producer, ProducerConfig, ProducerRecord, RecordMetadata,
};
pub use quotas::{ClientQuota, EntityPart};
pub use security::{Sasl, SaslMechanism, Security};
pub use transaction::{GroupMetadata, TransactionalProducer};
pub use transactions_admin::{ProducerState, TransactionDescription, TransactionListing};
pub use users::ScramUser;

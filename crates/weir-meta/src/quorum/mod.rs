//! The metadata quorum: the record log replicated by Raft (`openraft`), KRaft's role in Weir.
//!
//! Entries of the Raft log carry batches of [`MetadataRecord`]s. Each voter keeps the log on disk
//! ([`log_store`]), applies committed entries to a [`MetadataImage`] ([`state_machine`]), and
//! snapshots the image as the records that rebuild it (as KRaft's snapshots do). Voters talk over
//! their own versioned RPC ([`network`]). [`MetaQuorum`] ([`node`]) starts a voter and offers
//! writes (on the leader) and the latest image (on every voter).

mod controller;
mod follower;
mod log_store;
pub(crate) mod network;
mod node;
#[cfg(test)]
mod sim;
mod state_machine;
#[cfg(test)]
mod tests;
mod transport;

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::records::MetadataRecord;

pub use controller::{ActiveController, ControllerClient};
pub use follower::MetadataFollower;
pub use log_store::LogStore;
pub use node::{MetaQuorum, QuorumConfig, QuorumError, QuorumView};
pub use state_machine::StateMachine;
pub use transport::{Admit, QuorumTls};

/// A Raft node id: Kafka's `node.id` of a controller.
pub type NodeId = u64;

/// One entry's payload: records the active controller decided on, applied together.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// The records, in order.
    pub records: Vec<MetadataRecord>,
}

/// What applying a batch answers: the image version after it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// The index of the entry in the metadata log: the image's version once it is applied.
    pub version: u64,
}

openraft::declare_raft_types!(
    /// openraft's type parameters for the metadata log.
    pub TypeConfig:
        D = Batch,
        R = Applied,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A storage error for openraft from an I/O error, naming what was being done.
fn io_err(
    subject: openraft::ErrorSubject<NodeId>,
    verb: openraft::ErrorVerb,
    e: impl std::fmt::Display,
) -> openraft::StorageError<NodeId> {
    openraft::StorageError::from_io_error(subject, verb, std::io::Error::other(e.to_string()))
}

/// Writes `bytes` to `path` through a temporary file, fsync, rename and a directory fsync: the
/// one checkpoint writer every durable file of Weir goes through.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    weir_log::storage::write_atomically(&weir_log::Disk, path, bytes)
}

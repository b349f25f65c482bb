//! `weir-broker` serves the Kafka protocol.
//!
//! The request path follows the folders: [`server`] accepts connections and reads size-prefixed
//! frames → [`frame`] decodes headers and encodes responses → [`apis`] is the registry of
//! implemented APIs (ApiVersions is generated from it) and dispatches → `handlers/<api>.rs`
//! answer, after [`security`] has told who the connection is → the [`replica_manager`] owns the partitions and their `weir-log` logs, and the
//! `weir-meta` controller owns the metadata.
//!
//! Every error from the layers below becomes a Kafka error code in exactly one place:
//! [`errors`].

pub mod apis;
mod broker;
pub mod config;
mod connection;
mod console;
#[cfg(test)]
mod datadriven;
pub mod errors;
mod fetcher;
mod flusher;
mod frame;
pub mod fuzzing;
mod group;
mod handlers;
pub mod http;
mod io_threads;
pub mod metrics;
pub mod partition;
mod partition_dirs;
mod quota;
pub mod replica_manager;
mod replication;
#[cfg(test)]
mod replication_sim;
pub mod security;
mod server;
mod txn;
mod waiters;

pub use broker::Broker;
pub use config::BrokerConfig;
pub use server::{run, ServerHandle};

//! One module per Kafka API. Each takes the decoded request and returns the complete response.

pub(crate) mod acls;
pub(crate) mod add_offsets_to_txn;
pub(crate) mod add_partitions_to_txn;
pub(crate) mod alter_configs;
pub(crate) mod api_versions;
pub(crate) mod client_quotas;
pub(crate) mod cluster_access;
pub(crate) mod consumer_group_describe;
pub(crate) mod consumer_group_heartbeat;
pub(crate) mod create_partitions;
pub(crate) mod create_topics;
pub(crate) mod delete_groups;
pub(crate) mod delete_records;
pub(crate) mod delete_topics;
pub(crate) mod describe_cluster;
pub(crate) mod describe_configs;
pub(crate) mod describe_groups;
pub(crate) mod describe_log_dirs;
pub(crate) mod describe_producers;
pub(crate) mod describe_quorum;
pub(crate) mod describe_topic_partitions;
pub(crate) mod describe_transactions;
pub(crate) mod elect_leaders;
pub(crate) mod end_txn;
pub(crate) mod fetch;
pub(crate) mod find_coordinator;
pub(crate) mod heartbeat;
pub(crate) mod init_producer_id;
pub(crate) mod join_group;
pub(crate) mod leave_group;
pub(crate) mod list_groups;
pub(crate) mod list_offsets;
pub(crate) mod list_transactions;
pub(crate) mod metadata;
pub(crate) mod offset_commit;
pub(crate) mod offset_delete;
pub(crate) mod offset_fetch;
pub(crate) mod offset_for_leader_epoch;
pub(crate) mod partition_reassignments;
pub(crate) mod produce;
pub(crate) mod scram_credentials;
pub(crate) mod sync_group;
pub(crate) mod txn_offset_commit;
pub(crate) mod update_features;
pub(crate) mod write_txn_markers;

use kafka_protocol::protocol::StrBytes;

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// The client id and host a group member is described with (the host as Kafka writes it,
/// `/ip`).
pub(crate) fn member_origin(
    header: &kafka_protocol::messages::RequestHeader,
    peer: std::net::SocketAddr,
) -> (String, String) {
    let client_id = header
        .client_id
        .as_ref()
        .map(|s| s.to_string())
        .unwrap_or_default();
    (client_id, format!("/{}", peer.ip()))
}

/// A broker id as the protocol carries it; none is -1.
pub(crate) fn wire_broker(id: Option<weir_types::BrokerId>) -> kafka_protocol::messages::BrokerId {
    kafka_protocol::messages::BrokerId(weir_types::BrokerId::to_wire(id))
}

/// Broker ids as the protocol carries them.
pub(crate) fn wire_brokers(
    ids: &[weir_types::BrokerId],
) -> Vec<kafka_protocol::messages::BrokerId> {
    ids.iter()
        .map(|b| kafka_protocol::messages::BrokerId(b.0))
        .collect()
}

/// Broker ids a client sent (replica lists): kept as sent, since the controller checks each
/// against the registered brokers and refuses unknown or negative ones.
pub(crate) fn brokers_from_wire(
    ids: &[kafka_protocol::messages::BrokerId],
) -> Vec<weir_types::BrokerId> {
    ids.iter().map(|b| weir_types::BrokerId(b.0)).collect()
}

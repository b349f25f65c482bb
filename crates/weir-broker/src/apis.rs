//! The registry of implemented APIs and request dispatch.
//!
//! [`APIS`] is the single source of truth: ApiVersions answers from it, and dispatch refuses any
//! version outside it, so what we advertise is what we handle.

use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

use crate::broker::Broker;
use crate::frame::{Body, RequestFrame};
use crate::handlers;
use crate::quota::Kind;

/// One implemented API and the versions its handler supports.
#[derive(Debug, Clone, Copy)]
pub struct ApiSpec {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> ApiSpec {
    ApiSpec { key, min, max }
}

/// Produce is advertised from v0 although v0-v2 (legacy message sets) are refused: librdkafka
/// enables compression only when it sees Produce v0 (KAFKA-18659).
pub const PRODUCE_MIN_DECODABLE: i16 = 3;

/// OffsetCommit v0-v1 are decoded by hand (`kafka-protocol` starts at v2); Sarama 1.22 sends v1.
pub const OFFSET_COMMIT_MIN_DECODABLE: i16 = 2;

pub const APIS: &[ApiSpec] = &[
    api(ApiKey::Produce, 0, 11),
    api(ApiKey::Fetch, 4, 12),
    api(ApiKey::ListOffsets, 1, 8),
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::ApiVersions, 0, 3),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::InitProducerId, 0, 4),
    api(ApiKey::OffsetForLeaderEpoch, 2, 4),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::DescribeCluster, 0, 2),
    api(ApiKey::DescribeQuorum, 0, 1),
    api(ApiKey::ElectLeaders, 0, 2),
    api(ApiKey::AlterPartitionReassignments, 0, 1),
    api(ApiKey::ListPartitionReassignments, 0, 0),
    api(ApiKey::FindCoordinator, 0, 4),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::OffsetCommit, 0, 9),
    api(ApiKey::OffsetFetch, 1, 9),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::DescribeGroups, 0, 5),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::ConsumerGroupHeartbeat, 0, 1),
    api(ApiKey::ConsumerGroupDescribe, 0, 1),
    api(ApiKey::OffsetDelete, 0, 0),
    api(ApiKey::SaslHandshake, 0, 1),
    api(ApiKey::SaslAuthenticate, 0, 2),
    api(ApiKey::DescribeUserScramCredentials, 0, 0),
    api(ApiKey::AlterUserScramCredentials, 0, 0),
    api(ApiKey::CreateAcls, 1, 3),
    api(ApiKey::DescribeAcls, 1, 3),
    api(ApiKey::DeleteAcls, 1, 3),
    api(ApiKey::AddPartitionsToTxn, 0, 4),
    api(ApiKey::AddOffsetsToTxn, 0, 3),
    api(ApiKey::EndTxn, 0, 4),
    api(ApiKey::WriteTxnMarkers, 0, 1),
    api(ApiKey::TxnOffsetCommit, 0, 3),
    api(ApiKey::DescribeTransactions, 0, 0),
    api(ApiKey::ListTransactions, 0, 1),
    api(ApiKey::DescribeProducers, 0, 0),
    api(ApiKey::DescribeClientQuotas, 0, 1),
    api(ApiKey::AlterClientQuotas, 0, 1),
    api(ApiKey::UpdateFeatures, 0, 1),
    api(ApiKey::DescribeLogDirs, 1, 4),
    api(ApiKey::DescribeTopicPartitions, 0, 0),
];

pub fn spec(key: ApiKey) -> Option<&'static ApiSpec> {
    APIS.iter().find(|s| s.key == key)
}

/// Why a request was not answered (the connection is closed).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DispatchError {
    #[error("API {0:?} is not implemented")]
    Unsupported(ApiKey),
    #[error("version {version} of {api:?} is not supported (supported: {min}..={max})")]
    UnsupportedVersion {
        api: ApiKey,
        version: i16,
        min: i16,
        max: i16,
    },
    #[error("malformed {api:?} v{version} request: {reason}")]
    Malformed {
        api: ApiKey,
        version: i16,
        reason: String,
    },
}

/// A request body, decoded for its handler.
#[derive(Debug)]
pub(crate) enum Decoded {
    Request(RequestKind),
    /// OffsetCommit v0-v1, decoded by hand; answered in v2's layout, which is the same.
    LegacyOffsetCommit(kafka_protocol::messages::OffsetCommitRequest),
    /// ApiVersions of a version we do not know: answered in v0 with our list (KIP-511).
    UnknownApiVersions,
}

/// Checks the version against the registry and decodes the body: the one place that decides
/// what a connection does with untrusted bytes (the fuzz targets call it too).
pub(crate) fn decode(
    api: ApiKey,
    version: i16,
    body: &mut bytes::Bytes,
) -> Result<Decoded, DispatchError> {
    let spec = spec(api).ok_or(DispatchError::Unsupported(api))?;
    // Produce v0-v2 are advertised for librdkafka but refused.
    let min = if api == ApiKey::Produce {
        PRODUCE_MIN_DECODABLE
    } else {
        spec.min
    };
    if version < min || version > spec.max {
        if api == ApiKey::ApiVersions {
            return Ok(Decoded::UnknownApiVersions);
        }
        return Err(DispatchError::UnsupportedVersion {
            api,
            version,
            min,
            max: spec.max,
        });
    }
    let malformed = |reason: String| DispatchError::Malformed {
        api,
        version,
        reason,
    };
    if api == ApiKey::OffsetCommit && version < OFFSET_COMMIT_MIN_DECODABLE {
        return handlers::offset_commit::decode_legacy(body, version)
            .map(Decoded::LegacyOffsetCommit)
            .map_err(malformed);
    }
    RequestKind::decode(api, body, version)
        .map(Decoded::Request)
        .map_err(|e| malformed(e.to_string()))
}

/// Counts a produce request's bytes against its client's byte-rate quota; the throttle its
/// answer tells (in ms, with the request quota's), which the connection waits out too.
fn produce_throttle(
    broker: &Broker,
    session: &crate::security::Session,
    client_id: &str,
    size: usize,
) -> i32 {
    let image = broker.image();
    if image.quotas.is_empty() {
        return 0;
    }
    let client = session.quota_client(client_id);
    let now = std::time::Instant::now();
    let quotas = &broker.quotas;
    let wait = quotas
        .record(&image.quotas, Kind::Produce, client, size as f64, now)
        .max(quotas.pending(&image.quotas, Kind::Request, client, now));
    session.throttle(wait);
    wait.as_millis().min(i32::MAX as u128) as i32
}

pub(crate) async fn dispatch(
    broker: &Arc<Broker>,
    request: RequestFrame,
    session: &crate::security::Session,
    held: Option<crate::connection::ProduceSlot>,
) -> Result<Option<Body>, DispatchError> {
    let peer = session.peer;
    let listener = session.listener.name.as_str();
    let RequestFrame {
        api,
        header,
        mut body,
    } = request;
    let version = header.request_api_version;
    let size = body.len();
    let client_id = header.client_id.as_deref().unwrap_or("");
    let access = broker.access(session);
    let decoded = match decode(api, version, &mut body)? {
        Decoded::Request(decoded) => decoded,
        Decoded::UnknownApiVersions => {
            let answer = ResponseKind::ApiVersions(handlers::api_versions::unsupported());
            return Ok(Some(Body::Message(Box::new(answer))));
        }
        Decoded::LegacyOffsetCommit(request) => {
            let response = handlers::offset_commit::handle(broker, &access, version, request).await;
            let mut buf = bytes::BytesMut::new();
            kafka_protocol::protocol::Encodable::encode(
                &response,
                &mut buf,
                OFFSET_COMMIT_MIN_DECODABLE,
            )
            .map_err(|e| DispatchError::Malformed {
                api,
                version,
                reason: e.to_string(),
            })?;
            return Ok(Some(Body::Chunks(vec![crate::frame::Chunk::Bytes(
                buf.freeze(),
            )])));
        }
    };
    if let Some(refusal) = handlers::cluster_access::refuse(&access, &decoded) {
        return Ok(Some(Body::Message(Box::new(refusal))));
    }
    let access = &access;
    let response = match decoded {
        RequestKind::ApiVersions(_) => {
            ResponseKind::ApiVersions(handlers::api_versions::handle(&broker.image()))
        }
        RequestKind::DescribeClientQuotas(r) => {
            ResponseKind::DescribeClientQuotas(handlers::client_quotas::describe(broker, access, r))
        }
        RequestKind::AlterClientQuotas(r) => {
            ResponseKind::AlterClientQuotas(handlers::client_quotas::alter(broker, access, r).await)
        }
        RequestKind::UpdateFeatures(r) => ResponseKind::UpdateFeatures(
            handlers::update_features::handle(broker, access, version, r).await,
        ),
        RequestKind::Metadata(r) => ResponseKind::Metadata(
            handlers::metadata::handle(broker, access, listener, version, r).await,
        ),
        RequestKind::Produce(r) => {
            let throttle = produce_throttle(broker, session, client_id, size);
            match handlers::produce::handle(broker, access, version, r, peer, held).await {
                Some(resp) => ResponseKind::Produce(resp.with_throttle_time_ms(throttle)),
                None => return Ok(None),
            }
        }
        RequestKind::Fetch(r) => {
            let client = session.quota_client(client_id);
            return Ok(Some(
                handlers::fetch::handle(broker, access, version, r, session, client).await,
            ));
        }
        RequestKind::ListOffsets(r) => {
            let (broker, access) = (broker.clone(), access.clone());
            ResponseKind::ListOffsets(
                on_blocking_thread(move || {
                    handlers::list_offsets::handle(&broker, &access, version, r)
                })
                .await,
            )
        }
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(
            handlers::create_topics::handle(broker, access, version, r).await,
        ),
        RequestKind::DeleteTopics(r) => ResponseKind::DeleteTopics(
            handlers::delete_topics::handle(broker, access, version, r).await,
        ),
        RequestKind::CreatePartitions(r) => ResponseKind::CreatePartitions(
            handlers::create_partitions::handle(broker, access, r).await,
        ),
        RequestKind::DescribeConfigs(r) => ResponseKind::DescribeConfigs(
            handlers::describe_configs::handle(broker, access, version, r),
        ),
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(handlers::alter_configs::handle(broker, access, r).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
            handlers::alter_configs::handle_incremental(broker, access, r).await,
        ),
        RequestKind::DescribeCluster(r) => {
            // Anyone may describe the cluster (as in Kafka); the operations it may perform are
            // told only to a principal with Describe on it.
            let operations = if !r.include_cluster_authorized_operations {
                i32::MIN
            } else if !access.cluster(weir_meta::acl::AclOperation::Describe) {
                0
            } else {
                access.operations(
                    weir_meta::acl::ResourceType::Cluster,
                    weir_meta::acl::CLUSTER_NAME,
                )
            };
            ResponseKind::DescribeCluster(
                handlers::describe_cluster::handle(broker, listener, r)
                    .with_cluster_authorized_operations(operations),
            )
        }
        RequestKind::DescribeQuorum(r) => {
            ResponseKind::DescribeQuorum(handlers::describe_quorum::handle(broker, r))
        }
        RequestKind::AlterPartitionReassignments(r) => ResponseKind::AlterPartitionReassignments(
            handlers::partition_reassignments::alter(broker, version, r).await,
        ),
        RequestKind::ListPartitionReassignments(r) => ResponseKind::ListPartitionReassignments(
            handlers::partition_reassignments::list(broker, r),
        ),
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(handlers::elect_leaders::handle(broker, version, r).await)
        }
        RequestKind::DeleteRecords(r) => {
            let (broker, access) = (broker.clone(), access.clone());
            ResponseKind::DeleteRecords(
                on_blocking_thread(move || handlers::delete_records::handle(&broker, &access, r))
                    .await,
            )
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            // On a blocking thread: it takes the log's lock, which an append may hold while it
            // writes.
            let (broker, access) = (broker.clone(), access.clone());
            ResponseKind::OffsetForLeaderEpoch(
                on_blocking_thread(move || {
                    handlers::offset_for_leader_epoch::handle(&broker, &access, r)
                })
                .await,
            )
        }
        RequestKind::InitProducerId(r) => ResponseKind::InitProducerId(
            handlers::init_producer_id::handle(broker, access, r).await,
        ),
        RequestKind::AddPartitionsToTxn(r) => ResponseKind::AddPartitionsToTxn(
            handlers::add_partitions_to_txn::handle(broker, access, version, r).await,
        ),
        RequestKind::AddOffsetsToTxn(r) => ResponseKind::AddOffsetsToTxn(
            handlers::add_offsets_to_txn::handle(broker, access, r).await,
        ),
        RequestKind::EndTxn(r) => {
            ResponseKind::EndTxn(handlers::end_txn::handle(broker, access, r).await)
        }
        RequestKind::WriteTxnMarkers(r) => ResponseKind::WriteTxnMarkers(
            handlers::write_txn_markers::handle(broker, access, r).await,
        ),
        RequestKind::TxnOffsetCommit(r) => ResponseKind::TxnOffsetCommit(
            handlers::txn_offset_commit::handle(broker, access, version, r).await,
        ),
        RequestKind::DescribeTransactions(r) => ResponseKind::DescribeTransactions(
            handlers::describe_transactions::handle(broker, access, r).await,
        ),
        RequestKind::ListTransactions(r) => ResponseKind::ListTransactions(
            handlers::list_transactions::handle(broker, access, version, r),
        ),
        RequestKind::DescribeLogDirs(r) => {
            let (broker, access) = (broker.clone(), access.clone());
            ResponseKind::DescribeLogDirs(
                on_blocking_thread(move || {
                    handlers::describe_log_dirs::handle(&broker, &access, version, r)
                })
                .await,
            )
        }
        RequestKind::DescribeTopicPartitions(r) => ResponseKind::DescribeTopicPartitions(
            handlers::describe_topic_partitions::handle(broker, access, listener, r),
        ),
        RequestKind::DescribeProducers(r) => {
            ResponseKind::DescribeProducers(handlers::describe_producers::handle(broker, access, r))
        }
        RequestKind::FindCoordinator(r) => ResponseKind::FindCoordinator(
            handlers::find_coordinator::handle(broker, access, listener, version, r).await,
        ),
        RequestKind::JoinGroup(r) => ResponseKind::JoinGroup(
            handlers::join_group::handle(broker, &header, peer, access, version, r).await,
        ),
        RequestKind::SyncGroup(r) => {
            ResponseKind::SyncGroup(handlers::sync_group::handle(broker, access, version, r).await)
        }
        RequestKind::Heartbeat(r) => {
            ResponseKind::Heartbeat(handlers::heartbeat::handle(broker, access, r).await)
        }
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(
            handlers::leave_group::handle(broker, access, version, r).await,
        ),
        RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(
            handlers::offset_commit::handle(broker, access, version, r).await,
        ),
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(
            handlers::offset_fetch::handle(broker, access, version, r).await,
        ),
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(
            handlers::list_groups::handle(broker, access, version, r).await,
        ),
        RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(
            handlers::describe_groups::handle(broker, access, version, r).await,
        ),
        // group.version 0 turns the consumer group protocol off (KIP-848).
        RequestKind::ConsumerGroupHeartbeat(_) | RequestKind::ConsumerGroupDescribe(_)
            if !handlers::api_versions::offered(&broker.image(), api) =>
        {
            handlers::api_versions::protocol_off(decoded)
        }
        RequestKind::ConsumerGroupHeartbeat(r) => ResponseKind::ConsumerGroupHeartbeat(
            handlers::consumer_group_heartbeat::handle(broker, &header, peer, access, version, r)
                .await,
        ),
        RequestKind::ConsumerGroupDescribe(r) => ResponseKind::ConsumerGroupDescribe(
            handlers::consumer_group_describe::handle(broker, access, version, r).await,
        ),
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(handlers::delete_groups::handle(broker, access, r).await)
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(handlers::offset_delete::handle(broker, access, r).await)
        }
        RequestKind::DescribeUserScramCredentials(r) => ResponseKind::DescribeUserScramCredentials(
            handlers::scram_credentials::describe(broker, r),
        ),
        RequestKind::AlterUserScramCredentials(r) => ResponseKind::AlterUserScramCredentials(
            handlers::scram_credentials::alter(broker, r).await,
        ),
        RequestKind::CreateAcls(r) => {
            ResponseKind::CreateAcls(handlers::acls::create(broker, access, r).await)
        }
        RequestKind::DescribeAcls(r) => {
            ResponseKind::DescribeAcls(handlers::acls::describe(broker, access, r))
        }
        RequestKind::DeleteAcls(r) => {
            ResponseKind::DeleteAcls(handlers::acls::delete(broker, access, r).await)
        }
        // On a SASL listener these come before authentication (connection/authenticate.rs);
        // here the connection is authenticated already, or its listener has no SASL.
        RequestKind::SaslHandshake(_) => ResponseKind::SaslHandshake(
            kafka_protocol::messages::SaslHandshakeResponse::default()
                .with_error_code(kafka_protocol::error::ResponseError::IllegalSaslState.code()),
        ),
        RequestKind::SaslAuthenticate(_) => ResponseKind::SaslAuthenticate(
            kafka_protocol::messages::SaslAuthenticateResponse::default()
                .with_error_code(kafka_protocol::error::ResponseError::IllegalSaslState.code())
                .with_error_message(Some(handlers::str_bytes(
                    "SaslAuthenticate on a connection that is not in a SASL exchange",
                ))),
        ),
        _ => return Err(DispatchError::Unsupported(api)),
    };
    Ok(Some(Body::Message(Box::new(response))))
}

/// Runs a handler that reads or writes a log (index lookups, record decoding, a checkpoint file)
/// on tokio's blocking pool, never on an async worker. A panic in it goes on unwinding here, as
/// it would have on the worker.
async fn on_blocking_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

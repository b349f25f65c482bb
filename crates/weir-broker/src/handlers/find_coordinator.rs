//! FindCoordinator: a group's coordinator is the leader of the group's partition of
//! `__consumer_offsets` (created here on first use); v4+ answers a batch of keys (KIP-699).
//! A transactional id's coordinator is the leader of its partition of `__transaction_state`.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::group::OFFSETS_TOPIC;
use crate::security::authorizer::Access;
use crate::txn::TXN_TOPIC;
use weir_meta::acl::AclOperation;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

async fn lookup(
    broker: &Arc<Broker>,
    access: &Access,
    listener: &str,
    key_type: i8,
    key: &str,
) -> Result<(i32, String, i32), (i16, String)> {
    if key_type == KEY_TYPE_GROUP && !access.group(AclOperation::Describe, key) {
        return Err((
            ResponseError::GroupAuthorizationFailed.code(),
            format!("not authorized to describe group '{key}'"),
        ));
    }
    if key_type == KEY_TYPE_TRANSACTION && !access.transactional_id(AclOperation::Describe, key) {
        return Err((
            ResponseError::TransactionalIdAuthorizationFailed.code(),
            format!("not authorized to describe transactional id '{key}'"),
        ));
    }
    let (topic, index) = match key_type {
        KEY_TYPE_GROUP => {
            broker
                .groups
                .create_offsets_topic(broker)
                .await
                .map_err(|e| (e.code(), format!("{e}")))?;
            (OFFSETS_TOPIC, broker.groups.partition_of(key))
        }
        KEY_TYPE_TRANSACTION => {
            if key.is_empty() {
                return Err((
                    ResponseError::InvalidRequest.code(),
                    "a transactional id must not be empty".into(),
                ));
            }
            broker
                .txns
                .create_topic(broker)
                .await
                .map_err(|e| (e.code(), format!("{e}")))?;
            (TXN_TOPIC, broker.txns.partition_of(key))
        }
        other => {
            return Err((
                ResponseError::InvalidRequest.code(),
                format!("unknown coordinator key type {other}"),
            ))
        }
    };
    let image = broker.image();
    let unavailable = |why: String| (ResponseError::CoordinatorNotAvailable.code(), why);
    let leader = image
        .topic(topic)
        .and_then(|t| t.partitions.get(&index))
        .ok_or_else(|| unavailable(format!("{topic}-{index} does not exist")))?
        .leader;
    let node = image
        .brokers
        .get(&leader.ok_or_else(|| unavailable(format!("{topic}-{index} has no leader")))?)
        .filter(|b| !b.fenced)
        .ok_or_else(|| unavailable(format!("{topic}-{index} has no live leader")))?;
    let (host, port) = node.endpoint(listener).ok_or_else(|| {
        unavailable(format!(
            "the coordinator, broker {}, has no listener {listener}",
            node.broker_id
        ))
    })?;
    Ok((node.broker_id.0, host.to_string(), port))
}

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    listener: &str,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    if version >= 4 {
        let mut coordinators = Vec::with_capacity(request.coordinator_keys.len());
        for key in request.coordinator_keys {
            let found = lookup(broker, access, listener, request.key_type, &key).await;
            let c = Coordinator::default().with_key(key);
            coordinators.push({
                match found {
                    Ok((id, host, port)) => c
                        .with_node_id(BrokerId(id))
                        .with_host(str_bytes(host))
                        .with_port(port),
                    Err((code, msg)) => c
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(code)
                        .with_error_message(Some(str_bytes(msg))),
                }
            });
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    match lookup(broker, access, listener, request.key_type, &request.key).await {
        Ok((id, host, port)) => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(id))
            .with_host(str_bytes(host))
            .with_port(port),
        Err((code, msg)) => {
            let r = FindCoordinatorResponse::default()
                .with_error_code(code)
                .with_node_id(BrokerId(-1))
                .with_port(-1);
            if version >= 1 {
                r.with_error_message(Some(str_bytes(msg)))
            } else {
                r
            }
        }
    }
}

//! FindCoordinator: every group's coordinator is this broker (one node); v4+ answers a batch of
//! keys (KIP-699). Transaction coordinators do not exist yet.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::broker::Broker;

const KEY_TYPE_GROUP: i8 = 0;

fn lookup(broker: &Broker, key_type: i8) -> Result<(i32, String, i32), (i16, String)> {
    if key_type != KEY_TYPE_GROUP {
        return Err((
            ResponseError::CoordinatorNotAvailable.code(),
            "transactions are not supported yet, so there is no transaction coordinator".into(),
        ));
    }
    broker
        .groups
        .ensure_ready(broker)
        .map_err(|e| (e.code(), format!("{e}")))?;
    let image = broker.image();
    let me = image.brokers.get(&broker.node_id()).ok_or((
        ResponseError::CoordinatorNotAvailable.code(),
        "this broker is not registered".to_string(),
    ))?;
    Ok((me.broker_id, me.host.clone(), me.port))
}

pub(crate) fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key: StrBytes| {
                let c = Coordinator::default().with_key(key);
                match lookup(broker, request.key_type) {
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
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    match lookup(broker, request.key_type) {
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

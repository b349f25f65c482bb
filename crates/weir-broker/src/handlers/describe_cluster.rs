//! DescribeCluster (KIP-700): the cluster id, the controller to send admin requests to and the
//! live brokers; v1's request for the controllers (KIP-919) gets MISMATCHED_ENDPOINT_TYPE, as
//! from any broker listener; v2 can include fenced brokers, marked as such (KIP-1073).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::broker::Broker;

/// Endpoint types of DescribeCluster v1: 1 = brokers, 2 = controllers.
const ENDPOINT_BROKERS: i8 = 1;
const ENDPOINT_CONTROLLERS: i8 = 2;

pub(crate) fn handle(
    broker: &Arc<Broker>,
    listener: &str,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let leader = broker
        .quorum()
        .leader()
        .and_then(|l| i32::try_from(l).ok())
        .map(weir_types::BrokerId);
    // Clients send controller requests to the id named here, so it must be a broker they can
    // reach: the active controller when it is a live broker too, else this broker, which
    // forwards (KRaft names a random live broker).
    let image = broker.image();
    let controller_id = match leader {
        Some(l) if image.is_live(l) => l,
        _ => broker.node_id(),
    };
    let response = DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(broker.cluster_id()))
        .with_controller_id(super::wire_broker(Some(controller_id)))
        .with_endpoint_type(request.endpoint_type);
    match request.endpoint_type {
        ENDPOINT_BROKERS => {}
        // KIP-919: a broker's listener does not describe the controllers; that is asked of a
        // CONTROLLER listener, which speaks only the quorum's own RPC here.
        ENDPOINT_CONTROLLERS => {
            return response
                .with_error_code(ResponseError::MismatchedEndpointType.code())
                .with_error_message(Some(str_bytes(
                    "controllers are described through a controller's listener, not a broker's",
                )))
        }
        other => {
            return response
                .with_error_code(ResponseError::UnsupportedEndpointType.code())
                .with_error_message(Some(str_bytes(format!("unknown endpoint type {other}"))))
        }
    }
    let brokers = image
        .brokers
        .values()
        .filter(|b| request.include_fenced_brokers || !b.fenced)
        .filter_map(|b| {
            let (host, port) = b.endpoint(listener)?;
            Some(
                DescribeClusterBroker::default()
                    .with_is_fenced(b.fenced)
                    .with_broker_id(super::wire_broker(Some(b.broker_id)))
                    .with_host(str_bytes(host.to_string()))
                    .with_port(port)
                    .with_rack(b.rack.clone().map(str_bytes)),
            )
        })
        .collect();
    response.with_brokers(brokers)
}

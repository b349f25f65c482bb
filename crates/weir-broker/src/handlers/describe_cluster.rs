//! DescribeCluster (KIP-700): the cluster id, the active controller and the live brokers; v2 can
//! include fenced brokers, marked as such (KIP-1073).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::broker::Broker;

/// Endpoint types of DescribeCluster v1: 1 = brokers, 2 = controllers.
const ENDPOINT_BROKERS: i8 = 1;

pub(crate) fn handle(
    broker: &Arc<Broker>,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let response = DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(broker.cluster_id()))
        .with_controller_id(BrokerId(
            broker
                .quorum()
                .leader()
                .and_then(|l| i32::try_from(l).ok())
                .unwrap_or(-1),
        ))
        .with_endpoint_type(request.endpoint_type);
    if request.endpoint_type > ENDPOINT_BROKERS {
        // Every node here is a combined broker and controller; the controller endpoint is the broker's.
        if request.endpoint_type != 2 {
            return response
                .with_error_code(ResponseError::UnsupportedEndpointType.code())
                .with_error_message(Some(str_bytes(format!(
                    "unknown endpoint type {}",
                    request.endpoint_type
                ))));
        }
    }
    let brokers = broker
        .image()
        .brokers
        .values()
        .filter(|b| request.include_fenced_brokers || !b.fenced)
        .map(|b| {
            DescribeClusterBroker::default()
                .with_is_fenced(b.fenced)
                .with_broker_id(BrokerId(b.broker_id))
                .with_host(str_bytes(b.host.clone()))
                .with_port(b.port)
                .with_rack(b.rack.clone().map(str_bytes))
        })
        .collect();
    response.with_brokers(brokers)
}

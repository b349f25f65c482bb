//! DescribeCluster (KIP-700): the cluster id, the controller and every broker.

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
        .with_cluster_id(str_bytes(broker.cluster_id.clone()))
        .with_controller_id(BrokerId(broker.node_id()))
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
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.broker_id))
                .with_host(str_bytes(b.host.clone()))
                .with_port(b.port)
                .with_rack(b.rack.clone().map(str_bytes))
        })
        .collect();
    response.with_brokers(brokers)
}

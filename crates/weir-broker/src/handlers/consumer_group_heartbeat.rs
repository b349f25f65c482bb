//! ConsumerGroupHeartbeat (KIP-848): a member of a consumer group joins, heartbeats, reports the
//! partitions it owns and leaves; the answer carries its epoch and, when it changed, its
//! assignment. Topics travel as ids on the wire and as names in the coordinator.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, RequestHeader,
};

use super::str_bytes;
use crate::broker::Broker;
use crate::group::coordinator::consumer::HeartbeatRequest;
use crate::security::authorizer::Access;
use weir_meta::acl::AclOperation;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    peer: std::net::SocketAddr,
    access: &Access,
    version: i16,
    request: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let refuse = |e: ResponseError, message: String| {
        ConsumerGroupHeartbeatResponse::default()
            .with_error_code(e.code())
            .with_error_message(Some(str_bytes(message)))
    };
    if !access.group(AclOperation::Read, &request.group_id.0) {
        return refuse(
            ResponseError::GroupAuthorizationFailed,
            format!("not allowed to read group {}", request.group_id.0),
        );
    }
    if let Some(names) = &request.subscribed_topic_names {
        if let Some(t) = names
            .iter()
            .find(|t| !access.topic(AclOperation::Describe, &t.0))
        {
            return refuse(
                ResponseError::TopicAuthorizationFailed,
                format!("not allowed to describe topic {}", t.0),
            );
        }
    }
    let image = broker.image();
    // Owned partitions of topics this broker no longer knows are left out: nobody holds them.
    let owned = request.topic_partitions.map(|tps| {
        tps.into_iter()
            .filter_map(|tp| {
                let topic = image.topic_by_id(&tp.topic_id)?;
                Some((topic.name.clone(), tp.partitions.into_iter().collect()))
            })
            .collect()
    });
    let (client_id, client_host) = super::member_origin(header, peer);
    let req = HeartbeatRequest {
        group_id: request.group_id.0.to_string(),
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.map(|s| s.to_string()),
        rack_id: request.rack_id.map(|s| s.to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed: request
            .subscribed_topic_names
            .map(|ts| ts.into_iter().map(|t| t.0.to_string()).collect()),
        regex: request.subscribed_topic_regex.map(|s| s.to_string()),
        server_assignor: request.server_assignor.map(|s| s.to_string()),
        owned,
        client_id,
        client_host,
    };
    let result = broker.groups.consumer_heartbeat(broker, req, version).await;
    let assignment = result.assignment.map(|a| {
        let image = broker.image();
        Assignment::default().with_topic_partitions(
            a.into_iter()
                .filter_map(|(name, parts)| {
                    let topic = image.topic(&name)?;
                    Some(
                        TopicPartitions::default()
                            .with_topic_id(topic.topic_id)
                            .with_partitions(parts.into_iter().collect()),
                    )
                })
                .collect(),
        )
    });
    if result.error != 0 {
        return ConsumerGroupHeartbeatResponse::default()
            .with_error_code(result.error)
            .with_error_message(result.message.map(str_bytes));
    }
    ConsumerGroupHeartbeatResponse::default()
        .with_member_id(Some(str_bytes(result.member_id)))
        .with_member_epoch(result.member_epoch)
        .with_heartbeat_interval_ms(result.heartbeat_interval_ms)
        .with_assignment(assignment)
}

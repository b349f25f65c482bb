//! JoinGroup: parks until the group's rebalance completes (see `group::coordinator`).

use std::net::SocketAddr;
use std::sync::Arc;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, RequestHeader};

use super::str_bytes;
use crate::broker::Broker;
use crate::group::coordinator::JoinRequest;
use crate::security::authorizer::Access;
use weir_meta::acl::AclOperation;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    peer: SocketAddr,
    access: &Access,
    version: i16,
    request: JoinGroupRequest,
) -> JoinGroupResponse {
    if !access.group(AclOperation::Read, &request.group_id.0) {
        return JoinGroupResponse::default()
            .with_error_code(kafka_protocol::error::ResponseError::GroupAuthorizationFailed.code())
            .with_generation_id(-1)
            .with_member_id(request.member_id);
    }
    let (client_id, client_host) = super::member_origin(header, peer);
    let req = JoinRequest {
        group_id: request.group_id.0.to_string(),
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.map(|s| s.to_string()),
        client_id,
        client_host,
        session_timeout_ms: request.session_timeout_ms,
        // v0 has no rebalance timeout: it is the session timeout.
        rebalance_timeout_ms: if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        version,
    };
    let result = broker.groups.join(broker, req).await;
    let members = result
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            let m = JoinGroupResponseMember::default()
                .with_member_id(str_bytes(id))
                .with_metadata(metadata);
            if version >= 5 {
                m.with_group_instance_id(instance.map(str_bytes))
            } else {
                m
            }
        })
        .collect();
    let mut response = JoinGroupResponse::default()
        .with_error_code(result.error)
        .with_generation_id(result.generation_id)
        .with_protocol_name(result.protocol_name.map(str_bytes))
        .with_leader(str_bytes(result.leader))
        .with_member_id(str_bytes(result.member_id))
        .with_members(members);
    if version >= 7 {
        response = response.with_protocol_type(result.protocol_type.map(str_bytes));
    }
    response
}

//! DescribeGroups: state, protocol and members with their metadata and assignments. An unknown
//! group is described as Dead with no error, as Kafka does. A consumer group (KIP-848) is
//! described in the classic shape, protocol type "consumer" and its assignor as the protocol,
//! each member's subscription and assignment in the consumer protocol's encoding, so tools
//! that know only DescribeGroups see its members (Kafka answers Dead for it instead).

use std::sync::Arc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::group::coordinator::consumer::{embedded, ConsumerGroup};
use crate::security::authorizer::Access;
use weir_meta::acl::AclOperation;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    version: i16,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let mut groups = Vec::with_capacity(request.groups.len());
    for id in request.groups {
        if !access.group(AclOperation::Describe, &id.0) {
            groups.push(DescribedGroup::default().with_group_id(id).with_error_code(
                kafka_protocol::error::ResponseError::GroupAuthorizationFailed.code(),
            ));
            continue;
        }
        groups.push({
            let described = broker
                .groups
                .with_groups(broker, |c| {
                    let base = DescribedGroup::default().with_group_id(id.clone());
                    let Some(g) = c.groups.get(&*id.0) else {
                        return base.with_group_state(str_bytes("Dead"));
                    };
                    if let Some(consumer) = &g.consumer {
                        return describe_consumer_group(base, consumer, version);
                    }
                    let protocol = g.protocol_name.clone().unwrap_or_default();
                    let members = g
                        .members
                        .values()
                        .map(|m| {
                            described_member(
                                version,
                                [&m.member_id, &m.client_id, &m.client_host],
                                m.group_instance_id.as_ref(),
                                m.metadata(&protocol),
                                m.assignment.clone(),
                            )
                        })
                        .collect();
                    base.with_group_state(str_bytes(g.state.name()))
                        .with_protocol_type(str_bytes(g.protocol_type.clone().unwrap_or_default()))
                        .with_protocol_data(str_bytes(protocol))
                        .with_members(members)
                })
                .await;
            match described {
                Ok(d) => d,
                Err(e) => DescribedGroup::default()
                    .with_group_id(id)
                    .with_error_code(e.code()),
            }
        });
    }
    DescribeGroupsResponse::default().with_groups(groups)
}

/// A consumer group in DescribeGroups' shape.
fn describe_consumer_group(
    base: DescribedGroup,
    g: &ConsumerGroup,
    version: i16,
) -> DescribedGroup {
    let members = g
        .members
        .values()
        .map(|m| {
            described_member(
                version,
                [&m.member_id, &m.client_id, &m.client_host],
                m.instance_id.as_ref(),
                embedded::encode_subscription(m.subscribed.iter()),
                embedded::encode_assignment(&m.assigned),
            )
        })
        .collect();
    base.with_group_state(str_bytes(g.state_name()))
        .with_protocol_type(str_bytes("consumer"))
        .with_protocol_data(str_bytes(g.assignor.clone()))
        .with_members(members)
}

/// A member as DescribeGroups answers it: `[member id, client id, client host]`, the instance
/// id (v4+), its metadata and assignment.
fn described_member(
    version: i16,
    [member_id, client_id, client_host]: [&String; 3],
    instance: Option<&String>,
    metadata: bytes::Bytes,
    assignment: bytes::Bytes,
) -> DescribedGroupMember {
    let d = DescribedGroupMember::default()
        .with_member_id(str_bytes(member_id.clone()))
        .with_client_id(str_bytes(client_id.clone()))
        .with_client_host(str_bytes(client_host.clone()))
        .with_member_metadata(metadata)
        .with_member_assignment(assignment);
    if version >= 4 {
        d.with_group_instance_id(instance.cloned().map(str_bytes))
    } else {
        d
    }
}

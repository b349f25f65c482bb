//! ListGroups, with the state filter (v4, KIP-518) and the type filter (v5, KIP-848): a group
//! is "consumer" once members joined it through ConsumerGroupHeartbeat, else "classic".

use std::sync::Arc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::group::coordinator::GroupState;
use crate::security::authorizer::Access;
use weir_meta::acl::AclOperation;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    version: i16,
    request: ListGroupsRequest,
) -> ListGroupsResponse {
    // Describe on the cluster lists every group; otherwise those the principal may describe.
    let all = access.cluster(AclOperation::Describe);
    let states: Vec<String> = request
        .states_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let types: Vec<String> = request
        .types_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let listed = broker
        .groups
        .with_groups(broker, |c| {
            c.groups
                .values()
                .filter(|g| g.state != GroupState::Dead)
                .map(|g| {
                    let (state, kind) = match &g.consumer {
                        Some(c) => (c.state_name(), "consumer"),
                        None => (g.state.name(), "classic"),
                    };
                    (g, state, kind)
                })
                .filter(|(_, state, _)| {
                    states.is_empty() || states.contains(&state.to_ascii_lowercase())
                })
                .filter(|(_, _, kind)| types.is_empty() || types.iter().any(|t| t == kind))
                .filter(|(g, _, _)| all || access.group(AclOperation::Describe, &g.group_id))
                .map(|(g, state, kind)| {
                    let mut l = ListedGroup::default()
                        .with_group_id(GroupId(str_bytes(g.group_id.clone())))
                        .with_protocol_type(str_bytes(g.protocol_type.clone().unwrap_or_default()));
                    if version >= 4 {
                        l = l.with_group_state(str_bytes(state));
                    }
                    if version >= 5 {
                        l = l.with_group_type(str_bytes(kind));
                    }
                    l
                })
                .collect::<Vec<_>>()
        })
        .await;
    match listed {
        Ok(groups) => ListGroupsResponse::default().with_groups(groups),
        Err(e) => ListGroupsResponse::default().with_error_code(e.code()),
    }
}

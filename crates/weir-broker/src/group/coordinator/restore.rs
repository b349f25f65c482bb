//! Rebuilding the coordinator from `__consumer_offsets`, and forgetting the groups of a
//! partition that is loaded again.

use kafka_protocol::error::ResponseError;

use super::super::records::{GroupValue, OffsetValue};
use super::{Coordinator, Group, GroupState, JoinResult, Member, Output, Outputs, SyncResult};

impl Coordinator {
    /// Forgets the groups `belongs` picks (their partition of `__consumer_offsets` is loaded
    /// again); their parked JoinGroup and SyncGroup requests are answered NOT_COORDINATOR, so
    /// clients find the coordinator again.
    pub(crate) fn unload(&mut self, belongs: impl Fn(&str) -> bool) -> Outputs {
        let mut out = Vec::new();
        let doomed: Vec<String> = self.groups.keys().filter(|g| belongs(g)).cloned().collect();
        for name in doomed {
            let Some(group) = self.groups.remove(&name) else {
                continue;
            };
            for (member_id, member) in group.members {
                if let Some(req) = member.awaiting_join {
                    out.push(Output::Join(
                        req,
                        JoinResult::error(ResponseError::NotCoordinator, &member_id),
                    ));
                }
                if let Some(req) = member.awaiting_sync {
                    out.push(Output::Sync(
                        req,
                        SyncResult::error(ResponseError::NotCoordinator),
                    ));
                }
            }
        }
        out
    }

    /// Restores a group from its latest metadata record. A group stored with members comes back
    /// Stable in its generation, every member with a fresh session (as Kafka's coordinator
    /// loads it), so its members go on heartbeating and committing without a rebalance; one
    /// stored without members comes back Empty.
    pub(crate) fn restore_group(&mut self, group_id: &str, value: Option<GroupValue>, now_ms: i64) {
        let Some(v) = value else {
            self.groups.remove(group_id);
            return;
        };
        let group = self
            .groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id, now_ms));
        let offsets = std::mem::take(&mut group.offsets);
        *group = Group::new(group_id, now_ms);
        group.offsets = offsets;
        group.generation_id = v.generation;
        group.protocol_type = (!v.protocol_type.is_empty()).then_some(v.protocol_type);
        let Some(protocol) = v.protocol.filter(|_| !v.members.is_empty()) else {
            return;
        };
        for m in v.members {
            if let Some(instance) = &m.group_instance_id {
                group
                    .static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            group.join_order.push(m.member_id.clone());
            group.members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols: vec![(protocol.clone(), m.subscription)],
                    assignment: m.assignment,
                    last_heartbeat_ms: now_ms,
                    awaiting_join: None,
                    awaiting_sync: None,
                    is_new: false,
                },
            );
        }
        group.leader_id = v.leader.filter(|l| group.members.contains_key(l));
        group.protocol_name = Some(protocol);
        group.state = GroupState::Stable;
    }

    pub(crate) fn restore_offset(
        &mut self,
        group_id: &str,
        topic: &str,
        partition: i32,
        value: Option<OffsetValue>,
        now_ms: i64,
    ) {
        match value {
            Some(v) => {
                let group = self
                    .groups
                    .entry(group_id.to_string())
                    .or_insert_with(|| Group::new(group_id, now_ms));
                group.offsets.insert((topic.to_string(), partition), v);
            }
            None => {
                if let Some(group) = self.groups.get_mut(group_id) {
                    group.offsets.remove(&(topic.to_string(), partition));
                }
            }
        }
    }
}

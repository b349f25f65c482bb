//! The classic group coordinator as a pure state machine: requests and `now` in, results out.
//!
//! No sockets, no clocks, no disk: the driver (`group/mod.rs`) feeds it requests and ticks, sends
//! the results it returns (some immediately, some later, when a rebalance completes), and writes
//! the records it asks to persist. The state machine follows Kafka's `GroupCoordinator`
//! (KIP-62 rebalance timeouts, KIP-345 static membership, KIP-394 MEMBER_ID_REQUIRED, KIP-429
//! cooperative rebalancing is client-side and needs nothing special here):
//!
//! ```text
//! Empty --join--> PreparingRebalance --all joined / timeout--> CompletingRebalance
//!   ^                  ^    |                                         |
//!   |                  |    +--no members left--> Empty               | leader's SyncGroup
//!   |                  +---- join / leave / session timeout ------ Stable <--+
//!   +-- DeleteGroups, offsets expired --> Dead
//! ```

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

pub(crate) mod consumer;
mod consumer_groups;
mod group;
mod offsets;
mod restore;
mod txn_offsets;

pub(crate) use group::*;
pub(crate) use txn_offsets::GroupPartition;

/// Settings of the coordinator (Kafka's broker configs of the same names).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CoordinatorConfig {
    pub(crate) min_session_timeout_ms: i32,
    pub(crate) max_session_timeout_ms: i32,
    pub(crate) initial_rebalance_delay_ms: i64,
    pub(crate) offsets_retention_ms: i64,
    /// Member ids are random (UUIDs) in service, numbered in tests so scripts are repeatable.
    pub(crate) random_member_ids: bool,
    /// The consumer-group protocol's settings (KIP-848).
    pub(crate) consumer: consumer::ConsumerConfig,
}

#[derive(Debug)]
pub(crate) struct Coordinator {
    config: CoordinatorConfig,
    pub(crate) groups: BTreeMap<String, Group>,
    next_member: u64,
    /// The token of the last commit begun (see [`Coordinator::begin_commit`]).
    next_commit: u64,
    /// Offsets of open transactions, by producer (`txn_offsets.rs`).
    pending_txn: HashMap<weir_types::ProducerId, Vec<txn_offsets::StagedOffset>>,
    /// The cluster's topics as the driver last saw them (consumer groups assign from them).
    topics: consumer::Topics,
}

type Outputs = Vec<Output>;

impl Coordinator {
    pub(crate) fn new(config: CoordinatorConfig) -> Coordinator {
        Coordinator {
            config,
            groups: BTreeMap::new(),
            next_member: 0,
            next_commit: 0,
            pending_txn: HashMap::new(),
            topics: consumer::Topics::new(),
        }
    }

    fn new_member_id(next_member: &mut u64, random: bool, prefix: &str) -> String {
        *next_member += 1;
        if random {
            format!("{prefix}-{}", uuid::Uuid::new_v4())
        } else {
            format!("{prefix}-{next_member}")
        }
    }

    // ---- JoinGroup ----------------------------------------------------------------------

    pub(crate) fn join(&mut self, id: RequestId, req: JoinRequest, now_ms: i64) -> Outputs {
        let mut out = Vec::new();
        let cfg = self.config;
        if req.session_timeout_ms < cfg.min_session_timeout_ms
            || req.session_timeout_ms > cfg.max_session_timeout_ms
        {
            out.push(Output::Join(
                id,
                JoinResult::error(ResponseError::InvalidSessionTimeout, &req.member_id),
            ));
            return out;
        }
        if req.group_id.is_empty() {
            out.push(Output::Join(
                id,
                JoinResult::error(ResponseError::InvalidGroupId, &req.member_id),
            ));
            return out;
        }
        if self
            .groups
            .get(&req.group_id)
            .is_some_and(Group::has_consumer_members)
        {
            return self.join_consumer_group(id, req, now_ms);
        }
        let prefix = req
            .group_instance_id
            .clone()
            .unwrap_or_else(|| req.client_id.clone());
        let next_member = &mut self.next_member;
        let mut fresh_id = || Self::new_member_id(next_member, cfg.random_member_ids, &prefix);
        let group = self
            .groups
            .entry(req.group_id.clone())
            .or_insert_with(|| Group::new(&req.group_id, now_ms));
        if group.state == GroupState::Dead {
            *group = Group::new(&req.group_id, now_ms);
        }
        if Self::classic_again(group) {
            out.push(Output::PersistConsumer(group.group_id.clone(), None));
        }
        if !group.supports(&req.protocol_type, &req.protocols) {
            out.push(Output::Join(
                id,
                JoinResult::error(ResponseError::InconsistentGroupProtocol, &req.member_id),
            ));
            return out;
        }
        let member_id = if let Some(instance) = &req.group_instance_id {
            // Static membership (KIP-345): the instance id names the member across restarts.
            match group.static_members.get(instance).cloned() {
                Some(existing) if !req.member_id.is_empty() && req.member_id != existing => {
                    out.push(Output::Join(
                        id,
                        JoinResult::error(ResponseError::FencedInstanceId, &req.member_id),
                    ));
                    return out;
                }
                Some(existing) if req.member_id.is_empty() => {
                    // A restarted static member: it takes over the old member under a new id.
                    let mut member = group
                        .members
                        .remove(&existing)
                        .expect("static members are members");
                    if let Some(old) = member.awaiting_join.take() {
                        out.push(Output::Join(
                            old,
                            JoinResult::error(ResponseError::FencedInstanceId, &existing),
                        ));
                    }
                    if let Some(old) = member.awaiting_sync.take() {
                        out.push(Output::Sync(
                            old,
                            SyncResult::error(ResponseError::FencedInstanceId),
                        ));
                    }
                    let fresh_id = fresh_id();
                    member.member_id = fresh_id.clone();
                    group.members.insert(fresh_id.clone(), member);
                    for m in group.join_order.iter_mut() {
                        if *m == existing {
                            *m = fresh_id.clone();
                        }
                    }
                    if group.leader_id.as_deref() == Some(existing.as_str()) {
                        group.leader_id = Some(fresh_id.clone());
                    }
                    group
                        .static_members
                        .insert(instance.clone(), fresh_id.clone());
                    if group.state == GroupState::Stable {
                        // The stored generation names the new id, so a new coordinator knows it.
                        out.push(Output::PersistGroup(
                            group.group_id.clone(),
                            Some(group.durable(now_ms)),
                        ));
                    }
                    fresh_id
                }
                Some(existing) => existing,
                None if req.member_id.is_empty() => {
                    let fresh_id = fresh_id();
                    group
                        .static_members
                        .insert(instance.clone(), fresh_id.clone());
                    fresh_id
                }
                None => {
                    out.push(Output::Join(
                        id,
                        JoinResult::error(ResponseError::UnknownMemberId, &req.member_id),
                    ));
                    return out;
                }
            }
        } else if req.member_id.is_empty() {
            let fresh_id = fresh_id();
            if req.version >= 4 {
                // KIP-394: hand out an id and ask the client to join again with it.
                let expire = now_ms + i64::from(req.session_timeout_ms);
                group.pending_members.insert(fresh_id.clone(), expire);
                out.push(Output::Join(
                    id,
                    JoinResult::error(ResponseError::MemberIdRequired, &fresh_id),
                ));
                return out;
            }
            fresh_id
        } else if group.pending_members.remove(&req.member_id).is_some()
            || group.members.contains_key(&req.member_id)
        {
            req.member_id.clone()
        } else {
            out.push(Output::Join(
                id,
                JoinResult::error(ResponseError::UnknownMemberId, &req.member_id),
            ));
            return out;
        };

        let known = group.members.contains_key(&member_id);
        let protocols_changed = group
            .members
            .get(&member_id)
            .is_some_and(|m| m.protocols != req.protocols);
        if known {
            let member = group.members.get_mut(&member_id).expect("checked above");
            if let Some(old) = member.awaiting_join.replace(id) {
                // A retried join replaces the earlier one.
                out.push(Output::Join(
                    old,
                    JoinResult::error(ResponseError::UnknownMemberId, &member_id),
                ));
            }
            member.protocols = req.protocols.clone();
            member.session_timeout_ms = req.session_timeout_ms;
            member.rebalance_timeout_ms = req.rebalance_timeout_ms;
            member.last_heartbeat_ms = now_ms;
        } else {
            group.members.insert(
                member_id.clone(),
                Member {
                    member_id: member_id.clone(),
                    group_instance_id: req.group_instance_id.clone(),
                    client_id: req.client_id.clone(),
                    client_host: req.client_host.clone(),
                    session_timeout_ms: req.session_timeout_ms,
                    rebalance_timeout_ms: req.rebalance_timeout_ms,
                    protocols: req.protocols.clone(),
                    assignment: Bytes::new(),
                    last_heartbeat_ms: now_ms,
                    awaiting_join: Some(id),
                    awaiting_sync: None,
                    is_new: true,
                },
            );
            group.join_order.push(member_id.clone());
            if group.protocol_type.is_none() {
                group.protocol_type = Some(req.protocol_type.clone());
            }
        }

        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance
                if known
                    && !protocols_changed
                    && group.leader_id.as_deref() != Some(member_id.as_str()) =>
            {
                // A follower rejoining with nothing new: answer with the current generation.
                let member = group.members.get_mut(&member_id).expect("known member");
                member.awaiting_join = None;
                out.push(Output::Join(
                    id,
                    JoinResult {
                        error: 0,
                        generation_id: group.generation_id,
                        protocol_type: group.protocol_type.clone(),
                        protocol_name: group.protocol_name.clone(),
                        leader: group.leader_id.clone().unwrap_or_default(),
                        member_id: member_id.clone(),
                        members: Vec::new(),
                    },
                ));
            }
            GroupState::Empty | GroupState::Stable | GroupState::CompletingRebalance => {
                let from_empty = group.state == GroupState::Empty;
                Self::prepare_rebalance(group, now_ms, &mut out);
                if from_empty {
                    group.initial_delay_until_ms = Some(now_ms + cfg.initial_rebalance_delay_ms);
                }
                Self::maybe_complete_join(group, now_ms, &mut out);
            }
            GroupState::PreparingRebalance => {
                if let Some(until) = group.initial_delay_until_ms {
                    // A new member during the initial delay extends it, up to the rebalance timeout.
                    if !known {
                        let cap = group.rebalance_deadline_ms.unwrap_or(until);
                        group.initial_delay_until_ms =
                            Some((now_ms + cfg.initial_rebalance_delay_ms).min(cap));
                    }
                }
                Self::maybe_complete_join(group, now_ms, &mut out);
            }
            GroupState::Dead => unreachable!("a dead group is replaced above"),
        }
        out
    }

    fn prepare_rebalance(group: &mut Group, now_ms: i64, out: &mut Outputs) {
        // Members waiting for an assignment must rejoin first.
        for member in group.members.values_mut() {
            if let Some(sync) = member.awaiting_sync.take() {
                out.push(Output::Sync(
                    sync,
                    SyncResult::error(ResponseError::RebalanceInProgress),
                ));
            }
        }
        group.state = GroupState::PreparingRebalance;
        group.rebalance_deadline_ms = Some(now_ms + group.max_rebalance_timeout());
        group.initial_delay_until_ms = None;
    }

    fn maybe_complete_join(group: &mut Group, now_ms: i64, out: &mut Outputs) {
        if group.state != GroupState::PreparingRebalance {
            return;
        }
        let deadline_passed = group.rebalance_deadline_ms.is_some_and(|d| now_ms >= d);
        let delay_over = group
            .initial_delay_until_ms
            .is_none_or(|until| now_ms >= until);
        if !(deadline_passed || (group.all_joined() && delay_over)) {
            return;
        }
        // Members that did not rejoin in time are out.
        let gone: Vec<String> = group
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in gone {
            Self::remove_member(group, &id, out);
        }
        group.generation_id += 1;
        group.rebalance_deadline_ms = None;
        group.initial_delay_until_ms = None;
        if group.members.is_empty() {
            group.state = GroupState::Empty;
            group.protocol_name = None;
            group.leader_id = None;
            group.empty_since_ms = now_ms;
            out.push(Output::PersistGroup(
                group.group_id.clone(),
                Some(group.durable(now_ms)),
            ));
            return;
        }
        group.protocol_name = group.select_protocol();
        let leader_still_here = group
            .leader_id
            .as_ref()
            .is_some_and(|l| group.members.contains_key(l));
        if !leader_still_here {
            group.leader_id = group
                .join_order
                .iter()
                .find(|m| group.members.contains_key(*m))
                .cloned();
        }
        group.state = GroupState::CompletingRebalance;
        let protocol = group.protocol_name.clone().unwrap_or_default();
        let leader = group.leader_id.clone().unwrap_or_default();
        let all: Vec<(String, Option<String>, Bytes)> = group
            .join_order
            .iter()
            .filter_map(|id| group.members.get(id))
            .map(|m| {
                (
                    m.member_id.clone(),
                    m.group_instance_id.clone(),
                    m.metadata(&protocol),
                )
            })
            .collect();
        for member in group.members.values_mut() {
            member.is_new = false;
            member.last_heartbeat_ms = now_ms;
            if let Some(req) = member.awaiting_join.take() {
                let members = if member.member_id == leader {
                    all.clone()
                } else {
                    Vec::new()
                };
                out.push(Output::Join(
                    req,
                    JoinResult {
                        error: 0,
                        generation_id: group.generation_id,
                        protocol_type: group.protocol_type.clone(),
                        protocol_name: group.protocol_name.clone(),
                        leader: leader.clone(),
                        member_id: member.member_id.clone(),
                        members,
                    },
                ));
            }
        }
    }

    fn remove_member(group: &mut Group, member_id: &str, out: &mut Outputs) {
        if let Some(member) = group.members.remove(member_id) {
            if let Some(req) = member.awaiting_join {
                out.push(Output::Join(
                    req,
                    JoinResult::error(ResponseError::UnknownMemberId, member_id),
                ));
            }
            if let Some(req) = member.awaiting_sync {
                out.push(Output::Sync(
                    req,
                    SyncResult::error(ResponseError::UnknownMemberId),
                ));
            }
            if let Some(instance) = member.group_instance_id {
                if group.static_members.get(&instance).map(String::as_str) == Some(member_id) {
                    group.static_members.remove(&instance);
                }
            }
        }
        group.join_order.retain(|m| m != member_id);
        if group.leader_id.as_deref() == Some(member_id) {
            group.leader_id = None;
        }
    }

    /// Checks the identity fields shared by SyncGroup, Heartbeat and OffsetCommit.
    fn check_member(
        group: &Group,
        member_id: &str,
        instance: Option<&str>,
    ) -> Result<(), ResponseError> {
        if let Some(instance) = instance {
            match group.static_members.get(instance) {
                Some(current) if current != member_id => {
                    return Err(ResponseError::FencedInstanceId)
                }
                _ => {}
            }
        }
        if !group.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        Ok(())
    }

    // ---- SyncGroup ----------------------------------------------------------------------

    pub(crate) fn sync(&mut self, id: RequestId, req: SyncRequest, now_ms: i64) -> Outputs {
        if let Some(consumer) = self.consumer_group_mut(&req.group_id) {
            return vec![Output::Sync(id, consumer.classic_sync_result(&req, now_ms))];
        }
        let mut out = Vec::new();
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            out.push(Output::Sync(
                id,
                SyncResult::error(ResponseError::UnknownMemberId),
            ));
            return out;
        };
        if let Err(e) = Self::check_member(group, &req.member_id, req.group_instance_id.as_deref())
        {
            out.push(Output::Sync(id, SyncResult::error(e)));
            return out;
        }
        if req.generation_id != group.generation_id {
            out.push(Output::Sync(
                id,
                SyncResult::error(ResponseError::IllegalGeneration),
            ));
            return out;
        }
        let type_mismatch = req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != group.protocol_type.as_ref());
        let name_mismatch = req
            .protocol_name
            .as_ref()
            .is_some_and(|n| Some(n) != group.protocol_name.as_ref());
        if type_mismatch || name_mismatch {
            out.push(Output::Sync(
                id,
                SyncResult::error(ResponseError::InconsistentGroupProtocol),
            ));
            return out;
        }
        match group.state {
            GroupState::PreparingRebalance => {
                out.push(Output::Sync(
                    id,
                    SyncResult::error(ResponseError::RebalanceInProgress),
                ));
            }
            GroupState::Empty | GroupState::Dead => {
                out.push(Output::Sync(
                    id,
                    SyncResult::error(ResponseError::UnknownMemberId),
                ));
            }
            GroupState::Stable => {
                let member = group.members.get_mut(&req.member_id).expect("checked");
                member.last_heartbeat_ms = now_ms;
                out.push(Output::Sync(
                    id,
                    SyncResult {
                        error: 0,
                        protocol_type: group.protocol_type.clone(),
                        protocol_name: group.protocol_name.clone(),
                        assignment: member.assignment.clone(),
                    },
                ));
            }
            GroupState::CompletingRebalance => {
                let member = group.members.get_mut(&req.member_id).expect("checked");
                member.last_heartbeat_ms = now_ms;
                if let Some(old) = member.awaiting_sync.replace(id) {
                    out.push(Output::Sync(
                        old,
                        SyncResult::error(ResponseError::UnknownMemberId),
                    ));
                }
                if group.leader_id.as_deref() == Some(req.member_id.as_str()) {
                    let assignments: HashMap<String, Bytes> = req.assignments.into_iter().collect();
                    for m in group.members.values_mut() {
                        m.assignment = assignments.get(&m.member_id).cloned().unwrap_or_default();
                    }
                    group.state = GroupState::Stable;
                    out.push(Output::PersistGroup(
                        group.group_id.clone(),
                        Some(group.durable(now_ms)),
                    ));
                    for m in group.members.values_mut() {
                        if let Some(req) = m.awaiting_sync.take() {
                            out.push(Output::Sync(
                                req,
                                SyncResult {
                                    error: 0,
                                    protocol_type: group.protocol_type.clone(),
                                    protocol_name: group.protocol_name.clone(),
                                    assignment: m.assignment.clone(),
                                },
                            ));
                        }
                    }
                }
            }
        }
        out
    }

    // ---- Heartbeat ----------------------------------------------------------------------

    pub(crate) fn heartbeat(
        &mut self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        instance: Option<&str>,
        now_ms: i64,
    ) -> i16 {
        if let Some(consumer) = self.consumer_group_mut(group_id) {
            return match consumer.classic_heartbeat(member_id, instance, generation_id, now_ms) {
                Ok(()) => 0,
                Err(e) => e.code(),
            };
        }
        let Some(group) = self.groups.get_mut(group_id) else {
            return ResponseError::UnknownMemberId.code();
        };
        if let Err(e) = Self::check_member(group, member_id, instance) {
            return e.code();
        }
        if generation_id != group.generation_id {
            return ResponseError::IllegalGeneration.code();
        }
        let member = group.members.get_mut(member_id).expect("checked");
        member.last_heartbeat_ms = now_ms;
        match group.state {
            GroupState::PreparingRebalance => ResponseError::RebalanceInProgress.code(),
            GroupState::Empty | GroupState::Dead => ResponseError::UnknownMemberId.code(),
            GroupState::CompletingRebalance | GroupState::Stable => 0,
        }
    }

    // ---- LeaveGroup ---------------------------------------------------------------------

    /// Removes members; returns one error code per member and the outputs of any rebalance.
    pub(crate) fn leave(
        &mut self,
        group_id: &str,
        members: &[(String, Option<String>)],
        now_ms: i64,
    ) -> (i16, Vec<i16>, Outputs) {
        let mut out = Vec::new();
        if let Some(consumer) = self.consumer_group_mut(group_id) {
            let (top, codes) = consumer.classic_leave(members);
            let emptied = consumer.members.is_empty();
            if let Some(group) = self.groups.get_mut(group_id) {
                if emptied {
                    group.empty_since_ms = now_ms;
                }
                Self::persist_consumer(group, &mut out);
            }
            return (top, codes, out);
        }
        let Some(group) = self.groups.get_mut(group_id) else {
            return (
                ResponseError::UnknownMemberId.code(),
                vec![ResponseError::UnknownMemberId.code(); members.len()],
                out,
            );
        };
        let mut codes = Vec::with_capacity(members.len());
        let mut removed = false;
        for (member_id, instance) in members {
            let target = match instance {
                Some(instance) => match group.static_members.get(instance) {
                    Some(current) if !member_id.is_empty() && current != member_id => {
                        codes.push(ResponseError::FencedInstanceId.code());
                        continue;
                    }
                    Some(current) => current.clone(),
                    None => {
                        codes.push(ResponseError::UnknownMemberId.code());
                        continue;
                    }
                },
                None => member_id.clone(),
            };
            if group.pending_members.remove(&target).is_some() {
                codes.push(0);
                continue;
            }
            if !group.members.contains_key(&target) {
                codes.push(ResponseError::UnknownMemberId.code());
                continue;
            }
            Self::remove_member(group, &target, &mut out);
            removed = true;
            codes.push(0);
        }
        if removed {
            Self::member_left(group, now_ms, &mut out);
        }
        let top = if members.len() == 1 { codes[0] } else { 0 };
        (top, codes, out)
    }

    fn member_left(group: &mut Group, now_ms: i64, out: &mut Outputs) {
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                Self::prepare_rebalance(group, now_ms, out);
                Self::maybe_complete_join(group, now_ms, out);
            }
            GroupState::PreparingRebalance => Self::maybe_complete_join(group, now_ms, out),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    // ---- time ---------------------------------------------------------------------------

    /// Session timeouts, pending-member expiry, rebalance deadlines and offset expiry.
    /// Advances the clock of the groups `active` picks (the driver skips groups whose
    /// partition this broker does not lead, or is loading).
    pub(crate) fn tick(&mut self, now_ms: i64, active: impl Fn(&str) -> bool) -> Outputs {
        let mut out = Vec::new();
        let retention = self.config.offsets_retention_ms;
        let config = self.config;
        let mut dead = Vec::new();
        for group in self.groups.values_mut().filter(|g| active(&g.group_id)) {
            group.pending_members.retain(|_, expire| *expire > now_ms);
            // As Kafka's heartbeat expiry: a member waiting in a join or sync is kept; any other
            // member whose session has run out is removed, in every live state. During a
            // rebalance this is what frees the group from a member that died before rejoining.
            if matches!(
                group.state,
                GroupState::Stable
                    | GroupState::CompletingRebalance
                    | GroupState::PreparingRebalance
            ) {
                let expired: Vec<String> = group
                    .members
                    .values()
                    .filter(|m| {
                        m.awaiting_join.is_none()
                            && m.awaiting_sync.is_none()
                            && now_ms - m.last_heartbeat_ms > i64::from(m.session_timeout_ms)
                    })
                    .map(|m| m.member_id.clone())
                    .collect();
                if !expired.is_empty() {
                    for id in &expired {
                        Self::remove_member(group, id, &mut out);
                    }
                    Self::member_left(group, now_ms, &mut out);
                }
            }
            Self::maybe_complete_join(group, now_ms, &mut out);
            Self::expire_consumers(group, &config, now_ms);
            Self::persist_consumer(group, &mut out);
            if Self::expire_offsets(group, now_ms, retention, &mut out) {
                dead.push(group.group_id.clone());
            }
        }
        for id in dead {
            let had_consumer = self
                .groups
                .remove(&id)
                .is_some_and(|g| g.consumer.is_some());
            if had_consumer {
                out.push(Output::PersistConsumer(id.clone(), None));
            }
            out.push(Output::PersistGroup(id, None));
        }
        out
    }
}

#[cfg(test)]
mod tests;

//! Classic members in a consumer group: KIP-848's online migration, as in Kafka 4.
//!
//! A member of the classic protocol (JoinGroup, SyncGroup, Heartbeat) may be in a consumer
//! group beside members of the new one. The broker assigns it like any other member; it learns
//! its partitions from SyncGroup, and a Heartbeat answers REBALANCE_IN_PROGRESS when it should
//! join again: the group moved on, it must give partitions up, or partitions it waits for were
//! released. Its JoinGroup carries the partitions it still owns (the consumer protocol's
//! subscription, v1 and later), which is how it acknowledges a revocation; an eager client
//! owns nothing when it joins again. Its epoch is the generation it sees.

use std::collections::BTreeSet;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use super::super::{SyncRequest, SyncResult};
use super::{
    embedded, pairs, Assignment, ConsumerConfig, ConsumerGroup, ConsumerMember, MemberState, Topics,
};

/// What only a classic member has.
#[derive(Debug, Clone)]
pub(crate) struct ClassicMember {
    /// Its protocols (assignor names) with their metadata, as in its JoinGroup.
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) session_timeout_ms: i32,
}

/// A JoinGroup into a consumer group, its subscription decoded.
#[derive(Debug, Clone)]
pub(crate) struct ClassicJoin {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout_ms: i32,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) subscribed: Vec<String>,
    pub(crate) owned: Assignment,
    /// The member id came from the client (not made for a JoinGroup without one).
    pub(crate) id_given: bool,
}

impl ConsumerGroup {
    /// A classic member joins (or joins again): its member id and epoch, the generation it is
    /// answered with.
    pub(crate) fn classic_join(
        &mut self,
        join: ClassicJoin,
        topics: &Topics,
        config: &ConsumerConfig,
        now_ms: i64,
    ) -> Result<(String, i32), ResponseError> {
        let member_id = join.member_id.clone();
        let mut changed = false;
        if self
            .members
            .get(&member_id)
            .is_some_and(|m| m.classic.is_none())
        {
            // A member of the new protocol is not joined again through the classic one.
            return Err(ResponseError::UnknownMemberId);
        }
        if let Some(instance) = &join.instance_id {
            let previous = self
                .static_members
                .get(instance)
                .filter(|p| self.members.contains_key(*p))
                .cloned();
            if let Some(previous) = previous.filter(|p| *p != member_id) {
                // KIP-345: a known instance under another member id is a zombie, unless the
                // member joins without an id (a restart), which takes the old one's place.
                if join.id_given || self.members.contains_key(&member_id) {
                    return Err(ResponseError::FencedInstanceId);
                }
                self.rename_member(&previous, &member_id);
            }
        }
        if !self.members.contains_key(&member_id) {
            if self.members.len() >= config.max_size {
                return Err(ResponseError::GroupMaxSizeReached);
            }
            if let Some(instance) = &join.instance_id {
                self.static_members
                    .insert(instance.clone(), member_id.clone());
            }
            self.members.insert(
                member_id.clone(),
                ConsumerMember::new(&member_id, join.instance_id.clone(), now_ms),
            );
            changed = true;
        }
        let m = self.members.get_mut(&member_id).expect("inserted above");
        let subscribed: BTreeSet<String> = join.subscribed.into_iter().collect();
        changed |= subscribed != m.subscribed;
        m.subscribed = subscribed;
        m.client_id = join.client_id;
        m.client_host = join.client_host;
        m.rebalance_timeout_ms = join.rebalance_timeout_ms;
        m.last_heartbeat_ms = now_ms;
        m.classic = Some(ClassicMember {
            protocols: join.protocols,
            session_timeout_ms: join.session_timeout_ms,
        });
        if m.epoch == super::STATIC_LEAVE_EPOCH {
            m.epoch = m.previous_epoch;
        }
        // It joined as asked: the deadline a heartbeat set for that is met.
        m.revoke_deadline_ms = None;
        changed |= self.topics_changed(topics);
        if changed {
            self.epoch += 1;
        }
        if self.assignment_epoch < self.epoch {
            self.compute_target(topics, config.assignors);
        }
        self.reconcile_member(&member_id, Some(&join.owned), now_ms);
        Ok((member_id.clone(), self.members[&member_id].epoch))
    }

    /// SyncGroup from a classic member: its assignment.
    pub(crate) fn classic_sync(
        &mut self,
        member_id: &str,
        generation: i32,
        now_ms: i64,
    ) -> Result<Assignment, ResponseError> {
        let group_epoch = self.epoch;
        let m = self.classic_member(member_id, generation)?;
        m.last_heartbeat_ms = now_ms;
        if m.epoch < group_epoch && m.state != MemberState::UnrevokedPartitions {
            // The group moved on since this member joined: it joins again first.
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(m.assigned.clone())
    }

    /// SyncGroup's answer to a classic member: its assignment in the consumer protocol's
    /// encoding, under the protocol it joined with.
    pub(crate) fn classic_sync_result(&mut self, req: &SyncRequest, now_ms: i64) -> SyncResult {
        let error = |e: ResponseError| SyncResult {
            error: e.code(),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        };
        let assigned = match self.classic_sync(&req.member_id, req.generation_id, now_ms) {
            Ok(a) => a,
            Err(e) => return error(e),
        };
        let protocol = self.members[&req.member_id]
            .classic
            .as_ref()
            .and_then(|c| c.protocols.first())
            .map(|(n, _)| n.clone());
        let type_mismatch = req
            .protocol_type
            .as_deref()
            .is_some_and(|t| t != "consumer");
        let name_mismatch = req.protocol_name.is_some() && req.protocol_name != protocol;
        if type_mismatch || name_mismatch {
            return error(ResponseError::InconsistentGroupProtocol);
        }
        SyncResult {
            error: 0,
            protocol_type: Some("consumer".to_string()),
            protocol_name: protocol,
            assignment: embedded::encode_assignment(&assigned),
        }
    }

    /// LeaveGroup for members of this group (by member id, or by instance id): the top-level
    /// code and one per member.
    pub(crate) fn classic_leave(
        &mut self,
        members: &[(String, Option<String>)],
    ) -> (i16, Vec<i16>) {
        let codes: Vec<i16> = members
            .iter()
            .map(|(member_id, instance)| {
                let target = match instance {
                    Some(i) => match self.static_members.get(i) {
                        Some(current) if !member_id.is_empty() && current != member_id => {
                            return ResponseError::FencedInstanceId.code()
                        }
                        Some(current) => current.clone(),
                        None => return ResponseError::UnknownMemberId.code(),
                    },
                    None => member_id.clone(),
                };
                // By member id, only classic members leave this way (an admin names the
                // instance, with no member id, to remove any static member).
                let by_admin = member_id.is_empty() && instance.is_some();
                match self.members.get(&target) {
                    Some(m) if m.classic.is_some() || by_admin => {}
                    _ => return ResponseError::UnknownMemberId.code(),
                }
                self.remove_member(&target);
                0
            })
            .collect();
        let top = if members.len() == 1 { codes[0] } else { 0 };
        (top, codes)
    }

    /// Heartbeat from a classic member: REBALANCE_IN_PROGRESS when it should join again.
    pub(crate) fn classic_heartbeat(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        if let Some(i) = instance {
            if self.static_members.get(i).is_some_and(|m| m != member_id) {
                return Err(ResponseError::FencedInstanceId);
            }
        }
        let group_epoch = self.epoch;
        let m = self.classic_member(member_id, generation)?;
        m.last_heartbeat_ms = now_ms;
        let (epoch, state) = (m.epoch, m.state);
        let rejoin = epoch < group_epoch
            || state == MemberState::UnrevokedPartitions
            || (state == MemberState::UnreleasedPartitions && !self.waiting_on_others(member_id));
        if !rejoin {
            return Ok(());
        }
        // Told to join again, it must within its rebalance timeout, or it is removed (what it
        // holds may be another member's target).
        if let Some(m) = self.members.get_mut(member_id) {
            let timeout = i64::from(m.rebalance_timeout_ms.max(0));
            m.revoke_deadline_ms.get_or_insert(now_ms + timeout);
        }
        Err(ResponseError::RebalanceInProgress)
    }

    fn classic_member(
        &mut self,
        member_id: &str,
        generation: i32,
    ) -> Result<&mut ConsumerMember, ResponseError> {
        let m = self
            .members
            .get_mut(member_id)
            .filter(|m| m.classic.is_some())
            .ok_or(ResponseError::UnknownMemberId)?;
        if m.epoch != generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(m)
    }

    /// Whether every partition of the member's target it does not have is still held by
    /// another member (so joining again would change nothing).
    fn waiting_on_others(&self, member_id: &str) -> bool {
        let Some(m) = self.members.get(member_id) else {
            return false;
        };
        let Some(target) = self.target.get(member_id) else {
            return false;
        };
        let waiting = pairs(target)
            .filter(|(t, p)| !m.assigned.get(t).is_some_and(|a| a.contains(p)))
            .all(|key| self.holders.get(&key).is_some_and(|h| h != member_id));
        waiting
    }

    /// A classic group's members become members of a consumer group, each keeping its
    /// assignment and taking the generation as its epoch.
    pub(crate) fn from_classic(generation: i32, members: Vec<ConsumerMember>) -> ConsumerGroup {
        let mut group = ConsumerGroup::new();
        group.epoch = generation;
        group.assignment_epoch = generation;
        for mut m in members {
            m.epoch = generation;
            m.previous_epoch = generation;
            for key in pairs(&m.assigned) {
                group
                    .holders
                    .entry(key)
                    .or_insert_with(|| m.member_id.clone());
            }
            // A partition two members claimed stays with the first; the other is not given it.
            for (t, ps) in m.assigned.iter_mut() {
                ps.retain(|p| group.holders.get(&(t.clone(), *p)) == Some(&m.member_id));
            }
            if let Some(instance) = &m.instance_id {
                group
                    .static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            group.target.insert(m.member_id.clone(), m.assigned.clone());
            group.members.insert(m.member_id.clone(), m);
        }
        group
    }
}

impl ConsumerMember {
    pub(crate) fn new(member_id: &str, instance_id: Option<String>, now_ms: i64) -> ConsumerMember {
        ConsumerMember {
            member_id: member_id.to_string(),
            instance_id,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            rebalance_timeout_ms: 0,
            subscribed: BTreeSet::new(),
            regex: None,
            server_assignor: None,
            epoch: 0,
            previous_epoch: 0,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            revoking: Assignment::new(),
            last_heartbeat_ms: now_ms,
            revoke_deadline_ms: None,
            classic: None,
            compiled: None,
        }
    }
}

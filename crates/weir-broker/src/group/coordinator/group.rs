//! A group's state and its members, and the requests and answers of the state machine.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use super::super::records::{GroupValue, MemberValue, OffsetValue};

/// Identifies a parked request so that its answer can be sent later.
pub(crate) type RequestId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub(crate) fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct JoinRequest {
    pub(crate) group_id: String,
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout_ms: i32,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) protocol_type: String,
    pub(crate) protocols: Vec<(String, Bytes)>,
    /// MEMBER_ID_REQUIRED only exists from JoinGroup v4 (old Sarama does not know it).
    pub(crate) version: i16,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JoinResult {
    pub(crate) error: i16,
    pub(crate) generation_id: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) leader: String,
    pub(crate) member_id: String,
    /// Filled for the leader only: every member with its metadata for the chosen protocol.
    pub(crate) members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    pub(super) fn error(error: ResponseError, member_id: &str) -> JoinResult {
        JoinResult {
            error: error.code(),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct SyncRequest {
    pub(crate) group_id: String,
    pub(crate) generation_id: i32,
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SyncResult {
    pub(crate) error: i16,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) assignment: Bytes,
}

impl SyncResult {
    pub(super) fn error(error: ResponseError) -> SyncResult {
        SyncResult {
            error: error.code(),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// What the coordinator asks its driver to do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Output {
    Join(RequestId, JoinResult),
    Sync(RequestId, SyncResult),
    /// Write the group's metadata record (`None`: a tombstone, the group is gone).
    PersistGroup(String, Option<GroupValue>),
    /// A consumer group's snapshot (KIP-848 state), or its tombstone.
    PersistConsumer(String, Option<Bytes>),
    /// Write offset tombstones (expired or deleted offsets).
    DeleteOffsets(String, Vec<(String, i32)>),
}

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout_ms: i32,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) assignment: Bytes,
    pub(super) last_heartbeat_ms: i64,
    pub(super) awaiting_join: Option<RequestId>,
    pub(super) awaiting_sync: Option<RequestId>,
    /// Joined during the current rebalance (a new member, for the initial-delay extension).
    pub(super) is_new: bool,
}

impl Member {
    /// The member's metadata for a protocol (its subscription, for consumers).
    pub(crate) fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub(crate) group_id: String,
    pub(crate) state: GroupState,
    pub(crate) generation_id: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) leader_id: Option<String>,
    /// Members in join order (the first is leader when a leader must be chosen).
    pub(crate) members: BTreeMap<String, Member>,
    pub(super) join_order: Vec<String>,
    pub(super) static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with when they expire.
    pub(super) pending_members: HashMap<String, i64>,
    pub(super) rebalance_deadline_ms: Option<i64>,
    /// The rebalance started from Empty: wait `initial_rebalance_delay` for more members.
    pub(super) initial_delay_until_ms: Option<i64>,
    pub(crate) offsets: BTreeMap<(String, i32), OffsetValue>,
    /// Offsets committed and queued for `__consumer_offsets`, not stored yet: each key with the
    /// tokens of its writes ([`Coordinator::begin_commit`]). DeleteGroups, OffsetDelete and
    /// expiry drop them (and tombstone their keys), so a write that lands after them is not
    /// stored; expiry leaves a key with a pending write alone.
    pub(crate) pending_offsets: BTreeMap<(String, i32), BTreeSet<u64>>,
    /// When the group last became Empty (for offset expiry, KIP-211).
    pub(super) empty_since_ms: i64,
    /// The group's KIP-848 state once a member joined it through ConsumerGroupHeartbeat.
    pub(crate) consumer: Option<super::consumer::ConsumerGroup>,
}

impl Group {
    pub(super) fn new(group_id: &str, now_ms: i64) -> Group {
        Group {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: BTreeMap::new(),
            join_order: Vec::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            rebalance_deadline_ms: None,
            initial_delay_until_ms: None,
            offsets: BTreeMap::new(),
            pending_offsets: BTreeMap::new(),
            empty_since_ms: now_ms,
            consumer: None,
        }
    }

    pub(super) fn durable(&self, now_ms: i64) -> GroupValue {
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation_id,
            protocol: self.protocol_name.clone(),
            leader: self.leader_id.clone(),
            state_timestamp: now_ms,
            members: self
                .join_order
                .iter()
                .filter_map(|id| self.members.get(id))
                .map(|m| MemberValue {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: self
                        .protocol_name
                        .as_deref()
                        .map(|p| m.metadata(p))
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    pub(super) fn max_rebalance_timeout(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    pub(super) fn all_joined(&self) -> bool {
        self.members.values().all(|m| m.awaiting_join.is_some())
    }

    /// The protocol every member supports, most preferred by the members' own orders.
    pub(super) fn select_protocol(&self) -> Option<String> {
        let mut candidates: Vec<&String> = self
            .members
            .values()
            .next()?
            .protocols
            .iter()
            .map(|(n, _)| n)
            .collect();
        candidates.retain(|c| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == *c))
        });
        let mut votes: Vec<(usize, &String)> = candidates.iter().map(|c| (0usize, *c)).collect();
        for m in self.members.values() {
            if let Some(first) = m
                .protocols
                .iter()
                .map(|(n, _)| n)
                .find(|n| candidates.contains(n))
            {
                if let Some(v) = votes.iter_mut().find(|(_, c)| *c == first) {
                    v.0 += 1;
                }
            }
        }
        // Most votes; ties go to the earlier candidate in the first member's order.
        let best = votes.iter().map(|(n, _)| *n).max()?;
        votes
            .iter()
            .find(|(n, _)| *n == best)
            .map(|(_, c)| (*c).clone())
    }

    pub(super) fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocols.is_empty() && !protocol_type.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(p, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == p))
            })
    }
}

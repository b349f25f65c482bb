//! A consumer group's state as written to `__consumer_offsets`, so that a new coordinator (a
//! failover, a restart) knows its members, their epochs and assignments, and they carry on
//! without a rebalance.
//!
//! Kafka writes a consumer group as several record types (key versions 3 to 8: metadata,
//! members, target assignment, current assignments), each appended as it changes. Weir
//! writes one snapshot of the whole group under a key version of its own
//! ([`super::super::super::records::CONSUMER_GROUP_KEY_VERSION`]), JSON with a version field,
//! when something durable changed (a member, an epoch, an assignment; not a heartbeat's
//! timestamp): compaction keeps the latest. Kafka's coordinator skips record types it does
//! not know. Sessions start afresh on load, as Kafka's do.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{
    anchored, pairs, Assignment, ClassicMember, ConsumerGroup, ConsumerMember, MemberState,
};

const SNAPSHOT_VERSION: u8 = 1;

/// A classic member's protocols (name, metadata) and session timeout.
type ClassicSnapshot = (Vec<(String, Vec<u8>)>, i32);

#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    v: u8,
    epoch: i32,
    assignment_epoch: i32,
    assignor: String,
    topics_seen: BTreeMap<String, i32>,
    target: BTreeMap<String, Assignment>,
    members: Vec<MemberSnapshot>,
}

#[derive(Debug, Serialize, Deserialize)]
struct MemberSnapshot {
    member_id: String,
    instance_id: Option<String>,
    rack_id: Option<String>,
    client_id: String,
    client_host: String,
    rebalance_timeout_ms: i32,
    subscribed: BTreeSet<String>,
    regex: Option<String>,
    server_assignor: Option<String>,
    epoch: i32,
    previous_epoch: i32,
    /// 0 stable, 1 revoking, 2 waiting for partitions others hold.
    state: u8,
    assigned: Assignment,
    revoking: Assignment,
    classic: Option<ClassicSnapshot>,
}

fn state_code(s: MemberState) -> u8 {
    match s {
        MemberState::Stable => 0,
        MemberState::UnrevokedPartitions => 1,
        MemberState::UnreleasedPartitions => 2,
    }
}

impl ConsumerGroup {
    /// The group as stored.
    pub(crate) fn encode(&self) -> Bytes {
        let snapshot = Snapshot {
            v: SNAPSHOT_VERSION,
            epoch: self.epoch,
            assignment_epoch: self.assignment_epoch,
            assignor: self.assignor.clone(),
            topics_seen: self.topics_seen.clone(),
            target: self.target.clone(),
            members: self
                .members
                .values()
                .map(|m| MemberSnapshot {
                    member_id: m.member_id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    subscribed: m.subscribed.clone(),
                    regex: m.regex.clone(),
                    server_assignor: m.server_assignor.clone(),
                    epoch: m.epoch,
                    previous_epoch: m.previous_epoch,
                    state: state_code(m.state),
                    assigned: m.assigned.clone(),
                    revoking: m.revoking.clone(),
                    classic: m.classic.as_ref().map(|c| {
                        (
                            c.protocols
                                .iter()
                                .map(|(n, meta)| (n.clone(), meta.to_vec()))
                                .collect(),
                            c.session_timeout_ms,
                        )
                    }),
                })
                .collect(),
        };
        // Plain data (strings, numbers, maps with string keys): serializing cannot fail.
        Bytes::from(serde_json::to_vec(&snapshot).unwrap_or_default())
    }

    /// The group stored in `value`, every member with a fresh session from `now_ms`; `None`
    /// when it does not decode.
    pub(crate) fn decode(value: &[u8], now_ms: i64) -> Option<ConsumerGroup> {
        let s: Snapshot = serde_json::from_slice(value).ok()?;
        if s.v != SNAPSHOT_VERSION {
            return None;
        }
        let mut group = ConsumerGroup::new();
        group.epoch = s.epoch;
        group.assignment_epoch = s.assignment_epoch;
        group.assignor = s.assignor;
        group.topics_seen = s.topics_seen;
        group.target = s.target;
        for m in s.members {
            let mut member = ConsumerMember::new(&m.member_id, m.instance_id.clone(), now_ms);
            member.rack_id = m.rack_id;
            member.client_id = m.client_id;
            member.client_host = m.client_host;
            member.rebalance_timeout_ms = m.rebalance_timeout_ms;
            member.subscribed = m.subscribed;
            member.compiled = m.regex.as_deref().and_then(anchored);
            member.regex = m.regex;
            member.server_assignor = m.server_assignor;
            member.epoch = m.epoch;
            member.previous_epoch = m.previous_epoch;
            member.state = match m.state {
                1 => MemberState::UnrevokedPartitions,
                2 => MemberState::UnreleasedPartitions,
                _ => MemberState::Stable,
            };
            if member.state == MemberState::UnrevokedPartitions {
                member.revoke_deadline_ms =
                    Some(now_ms + i64::from(member.rebalance_timeout_ms.max(0)));
            }
            member.classic = m
                .classic
                .map(|(protocols, session_timeout_ms)| ClassicMember {
                    protocols: protocols
                        .into_iter()
                        .map(|(n, meta)| (n, Bytes::from(meta)))
                        .collect(),
                    session_timeout_ms,
                });
            // One holder per partition, whatever the record says.
            for (t, ps) in m.assigned.iter().chain(m.revoking.iter()) {
                for p in ps {
                    group
                        .holders
                        .entry((t.clone(), *p))
                        .or_insert_with(|| m.member_id.clone());
                }
            }
            let mine = |a: Assignment, holders: &HashMap<(String, i32), String>| {
                let mut out = Assignment::new();
                for (t, p) in pairs(&a) {
                    if holders.get(&(t.clone(), p)) == Some(&m.member_id) {
                        out.entry(t).or_default().insert(p);
                    }
                }
                out
            };
            member.assigned = mine(m.assigned, &group.holders);
            member.revoking = mine(m.revoking, &group.holders);
            if let Some(instance) = &m.instance_id {
                group
                    .static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            group.members.insert(m.member_id, member);
        }
        Some(group)
    }

    /// What a snapshot holds, hashed: it changes exactly when the group must be written again.
    pub(crate) fn fingerprint(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.epoch, self.assignment_epoch, &self.assignor).hash(&mut h);
        self.topics_seen.hash(&mut h);
        self.target.hash(&mut h);
        for m in self.members.values() {
            (
                &m.member_id,
                &m.instance_id,
                &m.rack_id,
                m.rebalance_timeout_ms,
            )
                .hash(&mut h);
            (&m.subscribed, &m.regex, &m.server_assignor).hash(&mut h);
            (m.epoch, m.previous_epoch, state_code(m.state)).hash(&mut h);
            (&m.assigned, &m.revoking).hash(&mut h);
            m.classic
                .as_ref()
                .map(|c| (&c.protocols, c.session_timeout_ms))
                .hash(&mut h);
        }
        h.finish()
    }
}

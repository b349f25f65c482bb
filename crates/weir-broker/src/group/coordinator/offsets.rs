//! Committed offsets: who may commit, storing them, and deleting a group with its offsets.

use kafka_protocol::error::ResponseError;

use super::super::records::OffsetValue;
use super::{Coordinator, Group, GroupState, Output};

/// Offsets by (topic, partition).
type Offsets = Vec<((String, i32), OffsetValue)>;

/// OffsetDelete's answer: one code per partition asked (by topic), and the keys to tombstone.
type Deleted = (Vec<Vec<i16>>, Vec<(String, i32)>);

impl Coordinator {
    /// May this member commit offsets for the group now? (Kafka's `doCommitOffsets` rules.)
    pub(crate) fn check_commit(
        &mut self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        instance: Option<&str>,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        let group = match self.groups.get(group_id) {
            None if generation_id < 0 => {
                self.groups
                    .insert(group_id.to_string(), Group::new(group_id, now_ms));
                return Ok(());
            }
            None => return Err(ResponseError::IllegalGeneration),
            Some(g) => g,
        };
        if group.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if let Some(consumer) = group.consumer.as_ref().filter(|c| !c.members.is_empty()) {
            // KIP-848: the member at its current epoch (Kafka accepts no other).
            return consumer.check_member_epoch(member_id, generation_id);
        }
        if generation_id < 0 && group.state == GroupState::Empty {
            return Ok(());
        }
        if group.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        Self::check_member(group, member_id, instance)?;
        if generation_id != group.generation_id {
            return Err(ResponseError::IllegalGeneration);
        }
        if let Some(group) = self.groups.get_mut(group_id) {
            if let Some(m) = group.members.get_mut(member_id) {
                m.last_heartbeat_ms = now_ms;
            }
        }
        Ok(())
    }

    /// A checked commit of `keys` is about to be written: they are pending until
    /// [`Coordinator::finish_commit`] with the token returned. (The group exists:
    /// [`Coordinator::check_commit`] made it.)
    pub(crate) fn begin_commit(&mut self, group_id: &str, keys: &[(String, i32)]) -> u64 {
        self.next_commit += 1;
        let token = self.next_commit;
        if let Some(group) = self.groups.get_mut(group_id) {
            for k in keys {
                group
                    .pending_offsets
                    .entry(k.clone())
                    .or_default()
                    .insert(token);
            }
        }
        token
    }

    /// The write of commit `token` ended, in log order: if it was `written`, its offsets that
    /// are still pending are stored; a key dropped meanwhile (the group or the offset deleted,
    /// or expired) is not brought back, and no group is made again.
    pub(crate) fn finish_commit(
        &mut self,
        group_id: &str,
        token: u64,
        offsets: Offsets,
        written: bool,
    ) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        for (k, v) in offsets {
            let Some(tokens) = group.pending_offsets.get_mut(&k) else {
                continue;
            };
            if !tokens.remove(&token) {
                continue;
            }
            if tokens.is_empty() {
                group.pending_offsets.remove(&k);
            }
            if written {
                group.offsets.insert(k, v);
            }
        }
    }

    /// OffsetDelete: removes the offsets of `topics` (stored or pending) that the group's
    /// members do not subscribe to. One code per partition asked, and the keys to tombstone.
    pub(crate) fn delete_offsets(
        &mut self,
        group_id: &str,
        topics: &[(String, Vec<i32>)],
    ) -> Result<Deleted, ResponseError> {
        let Some(group) = self.groups.get_mut(group_id) else {
            return Err(ResponseError::GroupIdNotFound);
        };
        let subscribed = subscribed_topics(group, &self.topics);
        let mut removed = Vec::new();
        let codes = topics
            .iter()
            .map(|(t, parts)| {
                parts
                    .iter()
                    .map(|p| {
                        if subscribed.contains(t) {
                            return ResponseError::GroupSubscribedToTopic.code();
                        }
                        let key = (t.clone(), *p);
                        let stored = group.offsets.remove(&key).is_some();
                        let pending = group.pending_offsets.remove(&key).is_some();
                        if stored || pending {
                            removed.push(key);
                        }
                        0
                    })
                    .collect()
            })
            .collect();
        Ok((codes, removed))
    }

    /// Kafka's offset expiry (KIP-211): once a group has been Empty for the retention, its
    /// offsets committed longer ago than that go (a key with a write pending stays). Whether
    /// the group is left with nothing, and so is Dead.
    pub(super) fn expire_offsets(
        group: &mut Group,
        now_ms: i64,
        retention: i64,
        out: &mut Vec<Output>,
    ) -> bool {
        if group.state != GroupState::Empty
            || group.has_consumer_members()
            || now_ms - group.empty_since_ms <= retention
        {
            return false;
        }
        let expired: Vec<(String, i32)> = group
            .offsets
            .iter()
            .filter(|(k, v)| {
                now_ms - v.commit_timestamp > retention && !group.pending_offsets.contains_key(*k)
            })
            .map(|(k, _)| k.clone())
            .collect();
        if !expired.is_empty() {
            for k in &expired {
                group.offsets.remove(k);
            }
            out.push(Output::DeleteOffsets(group.group_id.clone(), expired));
        }
        if group.offsets.is_empty() && group.pending_offsets.is_empty() {
            group.state = GroupState::Dead;
            return true;
        }
        false
    }

    /// DeleteGroups: only empty groups may go.
    pub(crate) fn delete_group(
        &mut self,
        group_id: &str,
    ) -> Result<Vec<(String, i32)>, ResponseError> {
        let Some(group) = self.groups.get(group_id) else {
            return Err(ResponseError::GroupIdNotFound);
        };
        match group.state {
            GroupState::Dead => Err(ResponseError::GroupIdNotFound),
            GroupState::Empty if group.has_consumer_members() => Err(ResponseError::NonEmptyGroup),
            GroupState::Empty => {
                // Pending commits go too: their keys are tombstoned behind them.
                let offsets = group
                    .offsets
                    .keys()
                    .chain(group.pending_offsets.keys())
                    .cloned()
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                self.groups.remove(group_id);
                Ok(offsets)
            }
            _ => Err(ResponseError::NonEmptyGroup),
        }
    }
}

/// Topics the group's members subscribe to (from their consumer-protocol metadata), for
/// OffsetDelete's GROUP_SUBSCRIBED_TO_TOPIC check.
pub(crate) fn subscribed_topics(
    group: &Group,
    cluster_topics: &super::consumer::Topics,
) -> std::collections::HashSet<String> {
    let mut topics = std::collections::HashSet::new();
    if let Some(consumer) = &group.consumer {
        // Named, or matched by a member's pattern.
        topics.extend(consumer.subscribed_topics(cluster_topics));
        return topics;
    }
    if group.protocol_type.as_deref() != Some("consumer") {
        return topics;
    }
    let protocol = group.protocol_name.clone().unwrap_or_default();
    for m in group.members.values() {
        if let Some((subscribed, _)) =
            super::consumer::embedded::decode_subscription(&m.metadata(&protocol))
        {
            topics.extend(subscribed);
        }
    }
    topics
}

//! Moving one member toward its target assignment (Kafka's `CurrentAssignmentBuilder`).
//!
//! Revoke before assign: a member that holds partitions outside its target keeps its epoch and
//! is told to give them up; only once a heartbeat shows it no longer owns them are they
//! released, and only then does it receive new partitions, those no other member still holds.
//! Its epoch becomes the target's when it has nothing left to revoke.

use super::{owns_any, pairs, release, Assignment, ConsumerGroup, MemberState};

impl ConsumerGroup {
    pub(super) fn reconcile_member(
        &mut self,
        member_id: &str,
        owned: Option<&Assignment>,
        now_ms: i64,
    ) {
        let Some(m) = self.members.get(member_id) else {
            return;
        };
        match m.state {
            MemberState::UnrevokedPartitions => {
                if owns_any(owned, &m.revoking) {
                    return;
                }
                if let Some(m) = self.members.get_mut(member_id) {
                    release(&mut self.holders, member_id, &m.revoking);
                    m.revoking.clear();
                    m.revoke_deadline_ms = None;
                }
            }
            MemberState::Stable if m.epoch == self.assignment_epoch => return,
            MemberState::Stable | MemberState::UnreleasedPartitions => {}
        }
        self.next_assignment(member_id, owned, now_ms);
    }

    fn next_assignment(&mut self, member_id: &str, owned: Option<&Assignment>, now_ms: i64) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let assignment_epoch = self.assignment_epoch;
        let Some(m) = self.members.get_mut(member_id) else {
            return;
        };
        let mut kept = Assignment::new();
        let mut revoke = Assignment::new();
        for (topic, parts) in &m.assigned {
            for &p in parts {
                let side = if target.get(topic).is_some_and(|t| t.contains(&p)) {
                    &mut kept
                } else {
                    &mut revoke
                };
                side.entry(topic.clone()).or_default().insert(p);
            }
        }
        // Kafka's `ownsRevokedPartitions`: a member that says it no longer owns them (or an
        // eager classic member, owning nothing when it joins again) has nothing to revoke.
        if !revoke.is_empty() && owns_any(owned, &revoke) {
            m.assigned = kept;
            m.revoking = revoke;
            m.state = MemberState::UnrevokedPartitions;
            m.revoke_deadline_ms = Some(now_ms + i64::from(m.rebalance_timeout_ms.max(0)));
            return;
        }
        release(&mut self.holders, member_id, &revoke);
        let mut unreleased = false;
        for (topic, p) in pairs(&target) {
            if kept.get(&topic).is_some_and(|k| k.contains(&p)) {
                continue;
            }
            match self.holders.get(&(topic.clone(), p)) {
                Some(holder) if holder != member_id => unreleased = true,
                _ => {
                    self.holders
                        .insert((topic.clone(), p), member_id.to_string());
                    kept.entry(topic).or_default().insert(p);
                }
            }
        }
        m.assigned = kept;
        if m.epoch != assignment_epoch {
            m.previous_epoch = m.epoch;
            m.epoch = assignment_epoch;
        }
        m.state = if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
        m.revoke_deadline_ms = None;
    }
}

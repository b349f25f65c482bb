//! Consumer groups of the next-generation protocol (KIP-848): ConsumerGroupHeartbeat as a pure
//! state machine.
//!
//! The broker computes the assignment. A group has an epoch, bumped whenever what the
//! assignment depends on changes (a member joins or leaves, a subscription changes, a subscribed
//! topic gains partitions or appears); the *target assignment* is computed for that epoch by the
//! group's assignor ([`assignor`]). Each member then moves toward its target at its own pace,
//! one heartbeat at a time ([`reconcile`]): it first gives up partitions it must revoke (its
//! epoch stays), then receives partitions once no other member holds them any more (its epoch
//! becomes the target's). A partition is therefore never held by two members: [`ConsumerGroup`]
//! keeps the holder of every partition a member owns or is still revoking.
//!
//! A heartbeat with a stale epoch is FENCED_MEMBER_EPOCH, unless it carries the member's previous
//! epoch and owns nothing beyond its current assignment (the answer that bumped it was lost).
//! Members that stop heartbeating for `group.consumer.session.timeout.ms`, or that do not revoke
//! within their rebalance timeout, are removed. Static members (an instance id) may leave with
//! epoch -2 and come back under a new member id within their session, keeping their partitions.

mod assignor;
mod classic;
mod durable;
pub(crate) mod embedded;
mod reconcile;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kafka_protocol::error::ResponseError;

use self::assignor::MemberSpec;
pub(crate) use self::assignor::{parse_assignors, ASSIGNORS};
pub(crate) use self::classic::{ClassicJoin, ClassicMember};

/// Partitions by topic name.
pub(crate) type Assignment = BTreeMap<String, BTreeSet<i32>>;

/// The epoch a member leaves with; -2: a static member leaving for a while.
pub(crate) const LEAVE_EPOCH: i32 = -1;
pub(crate) const STATIC_LEAVE_EPOCH: i32 = -2;

/// Settings of the consumer-group protocol (Kafka's broker configs of the same names).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConsumerConfig {
    /// `group.consumer.session.timeout.ms`.
    pub(crate) session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`.
    pub(crate) heartbeat_interval_ms: i32,
    /// `group.consumer.max.size`.
    pub(crate) max_size: usize,
    /// `group.consumer.assignors`: those offered, the first the default.
    pub(crate) assignors: &'static [&'static str],
}

/// Where a member stands between its assignment and its target (Kafka's `MemberState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemberState {
    Stable,
    /// It must revoke partitions before it gets anything new.
    UnrevokedPartitions,
    /// Partitions of its target are still held by other members.
    UnreleasedPartitions,
}

#[derive(Debug, Clone)]
pub(crate) struct ConsumerMember {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) rack_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) subscribed: BTreeSet<String>,
    pub(crate) regex: Option<String>,
    pub(crate) server_assignor: Option<String>,
    pub(crate) epoch: i32,
    pub(crate) previous_epoch: i32,
    pub(crate) state: MemberState,
    pub(crate) assigned: Assignment,
    pub(crate) revoking: Assignment,
    pub(super) last_heartbeat_ms: i64,
    /// When a member that must revoke is removed if it has not.
    pub(super) revoke_deadline_ms: Option<i64>,
    /// Set for a member of the classic protocol (JoinGroup and SyncGroup) in this group.
    pub(crate) classic: Option<ClassicMember>,
    /// `regex` compiled, anchored at both ends as Java's `matches`.
    compiled: Option<regex::Regex>,
}

/// The KIP-848 state of a group (its offsets stay in [`super::Group`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct ConsumerGroup {
    pub(crate) epoch: i32,
    pub(crate) assignment_epoch: i32,
    pub(crate) assignor: String,
    pub(crate) members: BTreeMap<String, ConsumerMember>,
    pub(crate) target: BTreeMap<String, Assignment>,
    static_members: HashMap<String, String>,
    /// The partition counts the current epoch was computed from.
    topics_seen: BTreeMap<String, i32>,
    /// The member holding each partition (assigned, or still revoking).
    holders: HashMap<(String, i32), String>,
    /// The [`ConsumerGroup::fingerprint`] of what was last written to `__consumer_offsets`.
    pub(crate) persisted: u64,
}

/// A ConsumerGroupHeartbeat, topic ids already turned into names by the driver.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeartbeatRequest {
    pub(crate) group_id: String,
    pub(crate) member_id: String,
    pub(crate) member_epoch: i32,
    pub(crate) instance_id: Option<String>,
    pub(crate) rack_id: Option<String>,
    /// -1: unchanged.
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) subscribed: Option<Vec<String>>,
    pub(crate) regex: Option<String>,
    pub(crate) server_assignor: Option<String>,
    /// `None`: unchanged since the last heartbeat.
    pub(crate) owned: Option<Assignment>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HeartbeatResult {
    pub(crate) error: i16,
    pub(crate) message: Option<String>,
    pub(crate) member_id: String,
    pub(crate) member_epoch: i32,
    pub(crate) heartbeat_interval_ms: i32,
    /// Sent when the member (re)joined, sent a full request, or its assignment changed.
    pub(crate) assignment: Option<Assignment>,
}

impl HeartbeatResult {
    pub(crate) fn error(e: ResponseError, message: impl Into<String>) -> HeartbeatResult {
        HeartbeatResult {
            error: e.code(),
            message: Some(message.into()),
            member_id: String::new(),
            member_epoch: 0,
            heartbeat_interval_ms: 0,
            assignment: None,
        }
    }
}

/// The topics a heartbeat may subscribe to: every topic's partition count.
pub(crate) type Topics = BTreeMap<String, i32>;

impl ConsumerGroup {
    pub(crate) fn new() -> ConsumerGroup {
        ConsumerGroup {
            assignor: ASSIGNORS[0].to_string(),
            ..ConsumerGroup::default()
        }
    }

    /// Kafka's consumer group states: Empty, Assigning (a target not computed yet), Reconciling
    /// (members still moving to it), Stable.
    pub(crate) fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch < self.epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// Every topic a member subscribes to, by name or through its pattern.
    pub(crate) fn subscribed_topics(&self, topics: &Topics) -> BTreeSet<String> {
        let mut all = BTreeSet::new();
        for m in self.members.values() {
            all.extend(member_topics(m, topics));
        }
        all
    }

    /// One heartbeat; `topics`: the cluster's topics now.
    pub(crate) fn heartbeat(
        &mut self,
        req: HeartbeatRequest,
        topics: &Topics,
        config: &ConsumerConfig,
        fresh_member_id: impl FnOnce() -> String,
        now_ms: i64,
    ) -> HeartbeatResult {
        let full_request = req.member_epoch == 0
            || (req.rebalance_timeout_ms != -1
                && (req.subscribed.is_some() || req.regex.is_some())
                && req.owned.is_some());
        if req.member_epoch == LEAVE_EPOCH || req.member_epoch == STATIC_LEAVE_EPOCH {
            return self.leave(&req, config);
        }
        let mut changed = false;
        let member_id = if req.member_epoch == 0 {
            match self.join(&req, config, fresh_member_id, now_ms) {
                Ok((id, new)) => {
                    changed = new;
                    id
                }
                Err(e) => return e,
            }
        } else {
            let Some(member) = self.members.get(&req.member_id) else {
                return HeartbeatResult::error(
                    ResponseError::UnknownMemberId,
                    format!("member {} is not in the group", req.member_id),
                );
            };
            if let Some(instance) = &req.instance_id {
                if self.static_members.get(instance) != Some(&req.member_id) {
                    return HeartbeatResult::error(
                        ResponseError::FencedInstanceId,
                        format!("instance {instance} belongs to another member"),
                    );
                }
            }
            let owned_within = req
                .owned
                .as_ref()
                .is_some_and(|o| within(o, &member.assigned));
            let stale_ok = req.member_epoch == member.previous_epoch && owned_within;
            if req.member_epoch > member.epoch || (req.member_epoch < member.epoch && !stale_ok) {
                return HeartbeatResult::error(
                    ResponseError::FencedMemberEpoch,
                    format!(
                        "member epoch {} is fenced (the member is at {})",
                        req.member_epoch, member.epoch
                    ),
                );
            }
            req.member_id.clone()
        };
        let member = self.members.get_mut(&member_id).expect("joined or checked");
        let before = member.assigned.clone();
        member.last_heartbeat_ms = now_ms;
        if req.rebalance_timeout_ms != -1 {
            member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        if let Some(rack) = &req.rack_id {
            member.rack_id = Some(rack.clone());
        }
        if let Some(names) = &req.subscribed {
            let set: BTreeSet<String> = names.iter().cloned().collect();
            changed |= set != member.subscribed;
            member.subscribed = set;
        }
        if let Some(pattern) = &req.regex {
            // An empty pattern is no pattern.
            let pattern = Some(pattern.clone()).filter(|r| !r.is_empty());
            if pattern != member.regex {
                member.compiled = pattern.as_deref().and_then(anchored);
                member.regex = pattern;
                changed = true;
            }
        }
        // A member of the classic protocol that now heartbeats speaks the new one.
        member.classic = None;
        if req.server_assignor.is_some() && req.server_assignor != member.server_assignor {
            member.server_assignor = req.server_assignor.clone();
            changed = true;
        }
        changed |= self.topics_changed(topics);
        if changed {
            self.epoch += 1;
        }
        if self.assignment_epoch < self.epoch {
            self.compute_target(topics, config.assignors);
        }
        self.reconcile_member(&member_id, req.owned.as_ref(), now_ms);
        let member = &self.members[&member_id];
        HeartbeatResult {
            error: 0,
            message: None,
            member_id: member_id.clone(),
            member_epoch: member.epoch,
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            assignment: (full_request || member.assigned != before)
                .then(|| member.assigned.clone()),
        }
    }

    /// A member joining with epoch 0: a new one, a restarted static member taking over its
    /// instance, or a known member starting over (its partitions released).
    fn join(
        &mut self,
        req: &HeartbeatRequest,
        config: &ConsumerConfig,
        fresh_member_id: impl FnOnce() -> String,
        now_ms: i64,
    ) -> Result<(String, bool), HeartbeatResult> {
        if req.rebalance_timeout_ms == -1 {
            return Err(HeartbeatResult::error(
                ResponseError::InvalidRequest,
                "RebalanceTimeoutMs must be given when joining",
            ));
        }
        if req.subscribed.is_none() && req.regex.is_none() {
            return Err(HeartbeatResult::error(
                ResponseError::InvalidRequest,
                "SubscribedTopicNames or SubscribedTopicRegex must be given when joining",
            ));
        }
        if req
            .owned
            .as_ref()
            .is_none_or(|o| o.values().any(|p| !p.is_empty()))
        {
            return Err(HeartbeatResult::error(
                ResponseError::InvalidRequest,
                "TopicPartitions must be given, and empty, when joining",
            ));
        }
        let member_id = if req.member_id.is_empty() {
            fresh_member_id()
        } else {
            req.member_id.clone()
        };
        if let Some(instance) = &req.instance_id {
            let previous = self
                .static_members
                .get(instance)
                .filter(|p| self.members.contains_key(*p))
                .cloned();
            if let Some(previous) = previous {
                if previous != member_id {
                    if self.members.contains_key(&member_id) {
                        return Err(HeartbeatResult::error(
                            ResponseError::FencedInstanceId,
                            format!("member {member_id} is not instance {instance}'s member"),
                        ));
                    }
                    let old = &self.members[&previous];
                    if old.epoch != STATIC_LEAVE_EPOCH {
                        return Err(HeartbeatResult::error(
                            ResponseError::UnreleasedInstanceId,
                            format!("instance {instance} is still used by member {previous}"),
                        ));
                    }
                    // The restarted instance takes over the old member: its assignment, its
                    // target and its epoch, so nothing is rebalanced.
                    self.rename_member(&previous, &member_id);
                    if let Some(m) = self.members.get_mut(&member_id) {
                        m.epoch = m.previous_epoch;
                        m.last_heartbeat_ms = now_ms;
                    }
                    return Ok((member_id, false));
                }
            }
        }
        if let Some(m) = self.members.get_mut(&member_id) {
            // A member starting over: what it held is released.
            release(&mut self.holders, &member_id, &m.assigned);
            release(&mut self.holders, &member_id, &m.revoking);
            m.assigned.clear();
            m.revoking.clear();
            m.epoch = 0;
            m.previous_epoch = 0;
            m.state = MemberState::Stable;
            return Ok((member_id, false));
        }
        if self.members.len() >= config.max_size {
            return Err(HeartbeatResult::error(
                ResponseError::GroupMaxSizeReached,
                format!("the group has reached its {} members", config.max_size),
            ));
        }
        if let Some(instance) = &req.instance_id {
            self.static_members
                .insert(instance.clone(), member_id.clone());
        }
        let mut member = ConsumerMember::new(&member_id, req.instance_id.clone(), now_ms);
        member.rack_id = req.rack_id.clone();
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        self.members.insert(member_id.clone(), member);
        // A new member changes the assignment even with an empty subscription.
        Ok((member_id, true))
    }

    fn leave(&mut self, req: &HeartbeatRequest, config: &ConsumerConfig) -> HeartbeatResult {
        let target = match &req.instance_id {
            Some(instance) => self.static_members.get(instance).cloned(),
            None => Some(req.member_id.clone()),
        };
        let Some(member_id) = target.filter(|m| self.members.contains_key(m)) else {
            return HeartbeatResult::error(
                ResponseError::UnknownMemberId,
                format!("member {} is not in the group", req.member_id),
            );
        };
        if member_id != req.member_id {
            // Another process with the same instance id does not evict the live member.
            return HeartbeatResult::error(
                ResponseError::FencedInstanceId,
                format!(
                    "instance belongs to member {member_id}, not {}",
                    req.member_id
                ),
            );
        }
        if req.member_epoch == STATIC_LEAVE_EPOCH {
            if req.instance_id.is_none() {
                return HeartbeatResult::error(
                    ResponseError::InvalidRequest,
                    "a member without an instance id cannot leave with epoch -2",
                );
            }
            // Kept, partitions and all, until its session ends or its instance comes back.
            let m = self.members.get_mut(&member_id).expect("checked");
            if m.epoch != STATIC_LEAVE_EPOCH {
                m.previous_epoch = m.epoch;
                m.epoch = STATIC_LEAVE_EPOCH;
            }
        } else {
            self.remove_member(&member_id);
        }
        HeartbeatResult {
            error: 0,
            message: None,
            member_id,
            member_epoch: req.member_epoch,
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            assignment: None,
        }
    }

    /// A member goes on under another id (a static member back from a restart): what it
    /// holds, its target and its instance go with it.
    fn rename_member(&mut self, from: &str, to: &str) {
        if from == to || self.members.contains_key(to) {
            return;
        }
        let Some(mut member) = self.members.remove(from) else {
            return;
        };
        member.member_id = to.to_string();
        for holder in self.holders.values_mut() {
            if holder == from {
                *holder = to.to_string();
            }
        }
        if let Some(target) = self.target.remove(from) {
            self.target.insert(to.to_string(), target);
        }
        if let Some(instance) = &member.instance_id {
            self.static_members.insert(instance.clone(), to.to_string());
        }
        self.members.insert(to.to_string(), member);
    }

    /// Removes a member and releases what it held; the group's epoch moves on.
    pub(crate) fn remove_member(&mut self, member_id: &str) {
        let Some(m) = self.members.remove(member_id) else {
            return;
        };
        release(&mut self.holders, member_id, &m.assigned);
        release(&mut self.holders, member_id, &m.revoking);
        if let Some(instance) = &m.instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        self.target.remove(member_id);
        self.epoch += 1;
    }

    /// Whether a subscribed topic appeared, went, or gained partitions since the last epoch.
    fn topics_changed(&mut self, topics: &Topics) -> bool {
        let now: BTreeMap<String, i32> = self
            .subscribed_topics(topics)
            .into_iter()
            .filter_map(|t| topics.get(&t).map(|&n| (t, n)))
            .collect();
        if now == self.topics_seen {
            return false;
        }
        self.topics_seen = now;
        true
    }

    fn compute_target(&mut self, topics: &Topics, offered: &[&str]) {
        self.assignor = self.chosen_assignor(offered);
        let subscriptions: Vec<(String, Option<String>, BTreeSet<String>)> = self
            .members
            .values()
            .map(|m| {
                (
                    m.member_id.clone(),
                    m.instance_id.clone(),
                    member_topics(m, topics),
                )
            })
            .collect();
        let specs: Vec<MemberSpec<'_>> = subscriptions
            .iter()
            .map(|(id, instance, t)| MemberSpec {
                member_id: id,
                instance_id: instance.as_deref(),
                topics: t,
            })
            .collect();
        self.target = assignor::assign(&self.assignor, &specs, &self.topics_seen, &self.target);
        self.assignment_epoch = self.epoch;
    }

    /// The assignor most members ask for, else the first configured one (Kafka's rule).
    fn chosen_assignor(&self, offered: &[&str]) -> String {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.server_assignor {
                *votes.entry(a.as_str()).or_default() += 1;
            }
        }
        let best = votes.values().copied().max().unwrap_or(0);
        offered
            .iter()
            .find(|a| best > 0 && votes.get(**a) == Some(&best))
            .or(offered.first())
            .unwrap_or(&ASSIGNORS[0])
            .to_string()
    }

    /// Members that stopped heartbeating, or did not revoke in time, are removed; the names
    /// of those removed.
    pub(crate) fn expire(&mut self, config: &ConsumerConfig, now_ms: i64) -> Vec<String> {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                let session = m
                    .classic
                    .as_ref()
                    .map_or(config.session_timeout_ms, |c| c.session_timeout_ms);
                now_ms - m.last_heartbeat_ms > i64::from(session)
                    || m.revoke_deadline_ms.is_some_and(|d| now_ms > d)
            })
            .map(|m| m.member_id.clone())
            .collect();
        for id in &gone {
            self.remove_member(id);
        }
        gone
    }

    /// OffsetCommit and OffsetFetch from a member: it must be in the group, at its epoch.
    pub(crate) fn check_member_epoch(
        &self,
        member_id: &str,
        epoch: i32,
    ) -> Result<(), ResponseError> {
        match self.members.get(member_id) {
            None => Err(ResponseError::UnknownMemberId),
            // A classic member knows generations, not epochs.
            Some(m) if m.epoch != epoch && m.classic.is_some() => {
                Err(ResponseError::IllegalGeneration)
            }
            Some(m) if m.epoch != epoch => Err(ResponseError::StaleMemberEpoch),
            Some(_) => Ok(()),
        }
    }
}

/// The topics a member subscribes to that exist.
fn member_topics(m: &ConsumerMember, topics: &Topics) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = m
        .subscribed
        .iter()
        .filter(|t| topics.contains_key(*t))
        .cloned()
        .collect();
    if let Some(re) = &m.compiled {
        // Internal topics are named, never matched (as Kafka).
        out.extend(
            topics
                .keys()
                .filter(|t| !t.starts_with("__") && re.is_match(t))
                .cloned(),
        );
    }
    out
}

/// A topic pattern as Java's `matches` reads it: the whole name must match.
fn anchored(pattern: &str) -> Option<regex::Regex> {
    regex::Regex::new(&format!("^(?:{pattern})$")).ok()
}

/// Whether a member owning `owned` (not said: `None`, taken as yes) still owns any of
/// `partitions` (Kafka's `ownsRevokedPartitions`).
fn owns_any(owned: Option<&Assignment>, partitions: &Assignment) -> bool {
    owned
        .is_none_or(|o| pairs(partitions).any(|(t, p)| o.get(&t).is_some_and(|ps| ps.contains(&p))))
}

/// `member_id` no longer holds `partitions` (those another member holds stay held).
fn release(holders: &mut HashMap<(String, i32), String>, member_id: &str, partitions: &Assignment) {
    for key in pairs(partitions) {
        if holders.get(&key).map(String::as_str) == Some(member_id) {
            holders.remove(&key);
        }
    }
}

fn pairs(a: &Assignment) -> impl Iterator<Item = (String, i32)> + '_ {
    a.iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
}

/// Whether every partition of `owned` is in `assigned`.
fn within(owned: &Assignment, assigned: &Assignment) -> bool {
    owned
        .iter()
        .all(|(t, ps)| ps.is_empty() || assigned.get(t).is_some_and(|a| ps.is_subset(a)))
}

#[cfg(test)]
mod tests;

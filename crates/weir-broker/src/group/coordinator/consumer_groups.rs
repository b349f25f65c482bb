//! The coordinator's side of KIP-848: which group a ConsumerGroupHeartbeat reaches, the checks
//! Kafka makes on the request before the group sees it, and the consumer groups' timers.
//!
//! A group is classic or consumer, never both here: an empty classic group (offsets only)
//! becomes a consumer group at its first heartbeat, and an empty consumer group becomes classic
//! again at a JoinGroup. A classic group with members refuses heartbeats (GROUP_ID_NOT_FOUND,
//! as Kafka's coordinator does when the group is not a consumer group).

use kafka_protocol::error::ResponseError;

use super::consumer::{
    ConsumerGroup, HeartbeatRequest, HeartbeatResult, Topics, STATIC_LEAVE_EPOCH,
};
use super::{Coordinator, Group, GroupState};

/// The first ConsumerGroupHeartbeat version whose member ids the client makes (KIP-1082).
const CLIENT_MEMBER_ID_VERSION: i16 = 1;

impl Coordinator {
    pub(crate) fn consumer_heartbeat(
        &mut self,
        req: HeartbeatRequest,
        version: i16,
        topics: &Topics,
        now_ms: i64,
    ) -> HeartbeatResult {
        let config = self.config.consumer;
        if let Err(e) = validate(&req, version, config.assignors) {
            return e;
        }
        let random = self.config.random_member_ids;
        let next_member = &mut self.next_member;
        let group = match self.groups.get_mut(&req.group_id) {
            Some(g) => g,
            None if req.member_epoch == 0 => self
                .groups
                .entry(req.group_id.clone())
                .or_insert_with(|| Group::new(&req.group_id, now_ms)),
            None => {
                return HeartbeatResult::error(
                    ResponseError::UnknownMemberId,
                    format!("group {} has no member {}", req.group_id, req.member_id),
                )
            }
        };
        if group.consumer.is_none() {
            if !group.members.is_empty() {
                return HeartbeatResult::error(
                    ResponseError::GroupIdNotFound,
                    format!("group {} is a classic group with members", req.group_id),
                );
            }
            if req.member_epoch != 0 {
                return HeartbeatResult::error(
                    ResponseError::UnknownMemberId,
                    format!("group {} has no member {}", req.group_id, req.member_id),
                );
            }
            group.state = GroupState::Empty;
            group.protocol_type = Some("consumer".to_string());
            group.protocol_name = None;
            group.consumer = Some(ConsumerGroup::new());
        }
        let consumer = group.consumer.as_mut().expect("made above");
        let fresh = || Self::new_member_id(next_member, random, "consumer");
        let result = consumer.heartbeat(req, topics, &config, fresh, now_ms);
        if consumer.members.is_empty() {
            group.empty_since_ms = now_ms;
        }
        result
    }

    /// Ends the sessions of consumer-group members that stopped heartbeating and of those that
    /// did not revoke in time.
    pub(super) fn expire_consumers(
        group: &mut Group,
        config: &super::CoordinatorConfig,
        now_ms: i64,
    ) {
        let Some(consumer) = group.consumer.as_mut() else {
            return;
        };
        let gone = consumer.expire(&config.consumer, now_ms);
        for member in &gone {
            tracing::info!(
                group = group.group_id,
                member,
                "consumer group member removed"
            );
        }
        if !gone.is_empty() && consumer.members.is_empty() {
            group.empty_since_ms = now_ms;
        }
    }

    /// A JoinGroup reaching a consumer group: an empty one turns classic; one with members
    /// refuses it (mixing protocols in one group is not offered).
    pub(super) fn classic_join_allowed(group: &mut Group) -> bool {
        match &group.consumer {
            Some(c) if !c.members.is_empty() => false,
            Some(_) => {
                group.consumer = None;
                group.protocol_type = None;
                true
            }
            None => true,
        }
    }

    /// OffsetFetch v9 naming a member: it must be in the group at its epoch.
    pub(crate) fn check_fetch_member(
        &self,
        group_id: &str,
        member_id: &str,
        epoch: i32,
    ) -> Result<(), ResponseError> {
        match self.groups.get(group_id).and_then(|g| g.consumer.as_ref()) {
            Some(c) => c.check_member_epoch(member_id, epoch),
            None => Ok(()),
        }
    }
}

impl Group {
    /// Whether members of the consumer-group protocol are in the group.
    pub(crate) fn has_consumer_members(&self) -> bool {
        self.consumer
            .as_ref()
            .is_some_and(|c| !c.members.is_empty())
    }
}

/// Kafka's checks of a heartbeat before any group sees it.
fn validate(
    req: &HeartbeatRequest,
    version: i16,
    assignors: &[&str],
) -> Result<(), HeartbeatResult> {
    let invalid = |m: &str| Err(HeartbeatResult::error(ResponseError::InvalidRequest, m));
    if req.group_id.is_empty() {
        return invalid("GroupId can't be empty.");
    }
    if req.member_id.is_empty() && (version >= CLIENT_MEMBER_ID_VERSION || req.member_epoch != 0) {
        return invalid("MemberId can't be empty.");
    }
    if req.instance_id.as_deref() == Some("") {
        return invalid("InstanceId can't be empty.");
    }
    if req.rack_id.as_deref() == Some("") {
        return invalid("RackId can't be empty.");
    }
    if req.member_epoch < STATIC_LEAVE_EPOCH {
        return invalid("MemberEpoch is invalid.");
    }
    if req.member_epoch == STATIC_LEAVE_EPOCH && req.instance_id.is_none() {
        return invalid("InstanceId can't be null when leaving with epoch -2.");
    }
    if let Some(a) = &req.server_assignor {
        if !assignors.contains(&a.as_str()) {
            return Err(HeartbeatResult::error(
                ResponseError::UnsupportedAssignor,
                format!("assignor {a} is not one of {}", assignors.join(", ")),
            ));
        }
    }
    if let Some(pattern) = req.regex.as_deref().filter(|r| !r.is_empty()) {
        if let Err(e) = regex::Regex::new(pattern) {
            let first = e.to_string().lines().last().unwrap_or_default().to_string();
            return Err(HeartbeatResult::error(
                ResponseError::InvalidRegularExpression,
                format!("SubscribedTopicRegex {pattern} is not valid: {first}"),
            ));
        }
    }
    Ok(())
}

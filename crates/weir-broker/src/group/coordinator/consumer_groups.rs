//! The coordinator's side of KIP-848: which group a ConsumerGroupHeartbeat reaches, the checks
//! Kafka makes on the request before the group sees it, and the consumer groups' timers.
//!
//! A group is classic or consumer, never both here: an empty classic group (offsets only)
//! becomes a consumer group at its first heartbeat, and an empty consumer group becomes classic
//! again at a JoinGroup. A classic group with members refuses heartbeats (GROUP_ID_NOT_FOUND,
//! as Kafka's coordinator does when the group is not a consumer group).

use kafka_protocol::error::ResponseError;

use super::consumer::{
    embedded, ClassicJoin, ClassicMember, ConsumerGroup, ConsumerMember, HeartbeatRequest,
    HeartbeatResult, Topics, STATIC_LEAVE_EPOCH,
};
use super::{
    Coordinator, Group, GroupState, JoinRequest, JoinResult, Output, RequestId, SyncResult,
};

/// The first ConsumerGroupHeartbeat version whose member ids the client makes (KIP-1082).
const CLIENT_MEMBER_ID_VERSION: i16 = 1;

impl Coordinator {
    /// A ConsumerGroupHeartbeat: its answer, and the records to write (a classic group
    /// upgraded).
    pub(crate) fn consumer_heartbeat(
        &mut self,
        req: HeartbeatRequest,
        version: i16,
        now_ms: i64,
    ) -> (HeartbeatResult, Vec<Output>) {
        let config = self.config.consumer;
        if let Err(e) = validate(&req, version, config.assignors) {
            return (e, Vec::new());
        }
        let unknown = || {
            HeartbeatResult::error(
                ResponseError::UnknownMemberId,
                format!("group {} has no member {}", req.group_id, req.member_id),
            )
        };
        let group = match self.groups.get_mut(&req.group_id) {
            Some(g) => g,
            None if req.member_epoch == 0 => self
                .groups
                .entry(req.group_id.clone())
                .or_insert_with(|| Group::new(&req.group_id, now_ms)),
            None => return (unknown(), Vec::new()),
        };
        let mut out = Vec::new();
        if group.consumer.is_none() {
            if req.member_epoch != 0 {
                return (unknown(), out);
            }
            if group.members.is_empty() {
                group.state = GroupState::Empty;
                group.protocol_type = Some("consumer".to_string());
                group.protocol_name = None;
                group.consumer = Some(ConsumerGroup::new());
            } else {
                match Self::upgrade(group, config.max_size, now_ms) {
                    Ok(persist) => out = persist,
                    Err(e) => return (e, out),
                }
            }
        }
        let consumer = group.consumer.as_mut().expect("made above");
        let (next_member, random) = (&mut self.next_member, self.config.random_member_ids);
        let fresh = || Self::new_member_id(next_member, random, "consumer");
        let result = consumer.heartbeat(req, &self.topics, &config, fresh, now_ms);
        if consumer.members.is_empty() {
            group.empty_since_ms = now_ms;
        }
        Self::persist_consumer(group, &mut out);
        (result, out)
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

    /// A JoinGroup reaching an empty consumer group: it is a classic group again (`true`: its
    /// consumer-group record is to be tombstoned).
    pub(super) fn classic_again(group: &mut Group) -> bool {
        if group.consumer.is_none() {
            return false;
        }
        group.consumer = None;
        group.protocol_type = None;
        true
    }

    /// Asks to write the group's consumer-group snapshot if something durable changed.
    pub(super) fn persist_consumer(group: &mut Group, out: &mut Vec<Output>) {
        let Some(consumer) = group.consumer.as_mut() else {
            return;
        };
        let now = consumer.fingerprint();
        if now != consumer.persisted {
            consumer.persisted = now;
            out.push(Output::PersistConsumer(
                group.group_id.clone(),
                Some(consumer.encode()),
            ));
        }
    }

    /// A snapshot write failed: the next tick writes the group again.
    pub(crate) fn forget_persisted(&mut self, group_id: &str) {
        if let Some(c) = self
            .groups
            .get_mut(group_id)
            .and_then(|g| g.consumer.as_mut())
        {
            c.persisted = 0;
        }
    }

    /// A consumer group's snapshot read back from `__consumer_offsets` (`None`: its tombstone).
    pub(crate) fn restore_consumer_group(
        &mut self,
        group_id: &str,
        value: Option<&[u8]>,
        now_ms: i64,
    ) {
        let Some(value) = value else {
            if let Some(g) = self.groups.get_mut(group_id) {
                if g.consumer.take().is_some() && g.members.is_empty() {
                    g.protocol_type = None;
                }
            }
            return;
        };
        let Some(mut consumer) = ConsumerGroup::decode(value, now_ms) else {
            tracing::warn!(
                group = group_id,
                "skipping an unreadable consumer-group record"
            );
            return;
        };
        consumer.persisted = consumer.fingerprint();
        let group = self
            .groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id, now_ms));
        group.members.clear();
        group.state = GroupState::Empty;
        group.protocol_type = Some("consumer".to_string());
        group.consumer = Some(consumer);
    }

    /// The consumer group `group_id` if it has members (classic requests reach it through
    /// its classic members).
    pub(super) fn consumer_group_mut(&mut self, group_id: &str) -> Option<&mut ConsumerGroup> {
        self.groups
            .get_mut(group_id)
            .filter(|g| g.has_consumer_members())
            .and_then(|g| g.consumer.as_mut())
    }

    /// The cluster's topics, which consumer groups assign (the driver refreshes them).
    pub(crate) fn set_topics(&mut self, topics: Topics) {
        self.topics = topics;
    }

    /// A classic member joins a group with consumer-protocol members (KIP-848's mixed
    /// groups): the broker assigns it; no member leads, so every member asks SyncGroup for
    /// its own assignment.
    pub(super) fn join_consumer_group(
        &mut self,
        id: RequestId,
        req: JoinRequest,
        now_ms: i64,
    ) -> Vec<Output> {
        let refuse =
            |e: ResponseError| vec![Output::Join(id, JoinResult::error(e, &req.member_id))];
        let subscription = req
            .protocols
            .first()
            .and_then(|(_, meta)| embedded::decode_subscription(meta));
        let (Some((subscribed, owned)), "consumer") = (subscription, req.protocol_type.as_str())
        else {
            return refuse(ResponseError::InconsistentGroupProtocol);
        };
        let id_given = !req.member_id.is_empty();
        let mut member_id = req.member_id.clone();
        if member_id.is_empty() {
            let prefix = req.group_instance_id.as_deref().unwrap_or(&req.client_id);
            member_id =
                Self::new_member_id(&mut self.next_member, self.config.random_member_ids, prefix);
            if req.version >= 4 && req.group_instance_id.is_none() {
                // KIP-394, as for a classic group: the member joins again with its id.
                return vec![Output::Join(
                    id,
                    JoinResult::error(ResponseError::MemberIdRequired, &member_id),
                )];
            }
        }
        let protocol = req.protocols.first().map(|(n, _)| n.clone());
        let join = ClassicJoin {
            member_id,
            instance_id: req.group_instance_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocols: req.protocols.clone(),
            subscribed,
            owned,
            id_given,
        };
        let config = self.config.consumer;
        let topics = &self.topics;
        let Some(consumer) = self
            .groups
            .get_mut(&req.group_id)
            .and_then(|g| g.consumer.as_mut())
        else {
            return refuse(ResponseError::CoordinatorNotAvailable);
        };
        let joined = consumer.classic_join(join, topics, &config, now_ms);
        let mut out = Vec::new();
        if let Some(group) = self.groups.get_mut(&req.group_id) {
            Self::persist_consumer(group, &mut out);
        }
        match joined {
            Err(e) => {
                out.extend(refuse(e));
                out
            }
            Ok((member_id, epoch)) => {
                out.push(Output::Join(
                    id,
                    JoinResult {
                        error: 0,
                        generation_id: epoch,
                        protocol_type: Some("consumer".to_string()),
                        protocol_name: protocol,
                        leader: String::new(),
                        member_id,
                        members: Vec::new(),
                    },
                ));
                out
            }
        }
    }

    /// A classic group with members becomes a consumer group when a member of the new
    /// protocol joins it (Kafka 4's online upgrade): every member keeps its partitions and
    /// takes the generation as its epoch, then is moved to the new assignment. Requests parked
    /// by a rebalance under way are answered REBALANCE_IN_PROGRESS (they join the consumer
    /// group next), as Kafka converts in any state.
    fn upgrade(
        group: &mut Group,
        max_size: usize,
        now_ms: i64,
    ) -> Result<Vec<Output>, HeartbeatResult> {
        if group.protocol_type.as_deref() != Some("consumer") {
            return Err(HeartbeatResult::error(
                ResponseError::GroupIdNotFound,
                format!(
                    "group {} is a classic group of another protocol type",
                    group.group_id
                ),
            ));
        }
        if group.members.len() >= max_size {
            return Err(HeartbeatResult::error(
                ResponseError::GroupIdNotFound,
                format!(
                    "group {} has too many members to be upgraded",
                    group.group_id
                ),
            ));
        }
        // A rebalance under way ends: its parked requests join again, into the consumer group.
        let mut out = Vec::new();
        for m in group.members.values_mut() {
            if let Some(r) = m.awaiting_join.take() {
                out.push(Output::Join(
                    r,
                    JoinResult::error(ResponseError::RebalanceInProgress, &m.member_id),
                ));
            }
            if let Some(r) = m.awaiting_sync.take() {
                out.push(Output::Sync(
                    r,
                    SyncResult::error(ResponseError::RebalanceInProgress),
                ));
            }
        }
        let protocol = group.protocol_name.clone().unwrap_or_default();
        let members = std::mem::take(&mut group.members)
            .into_values()
            .map(|m| {
                let subscribed = embedded::decode_subscription(&m.metadata(&protocol))
                    .map(|(topics, _)| topics)
                    .unwrap_or_default();
                let mut member =
                    ConsumerMember::new(&m.member_id, m.group_instance_id.clone(), now_ms);
                member.client_id = m.client_id;
                member.client_host = m.client_host;
                member.rebalance_timeout_ms = m.rebalance_timeout_ms;
                member.subscribed = subscribed.into_iter().collect();
                member.assigned = embedded::decode_assignment(&m.assignment);
                member.classic = Some(ClassicMember {
                    protocols: m.protocols,
                    session_timeout_ms: m.session_timeout_ms,
                });
                member
            })
            .collect();
        group.consumer = Some(ConsumerGroup::from_classic(group.generation_id, members));
        group.join_order.clear();
        group.static_members.clear();
        group.pending_members.clear();
        group.leader_id = None;
        group.protocol_name = None;
        group.state = GroupState::Empty;
        tracing::info!(
            group = group.group_id,
            "classic group upgraded to a consumer group"
        );
        group.rebalance_deadline_ms = None;
        group.initial_delay_until_ms = None;
        // The stored classic generation would bring the old members back on a new coordinator.
        out.push(Output::PersistGroup(
            group.group_id.clone(),
            Some(group.durable(now_ms)),
        ));
        Ok(out)
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

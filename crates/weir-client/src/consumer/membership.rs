//! Group membership of a consumer: joining, leading (computing the assignment), syncing, and
//! giving partitions up in an eager or a cooperative rebalance.

use super::*;

/// Decodes a consumer-protocol assignment (version prefix, then the struct).
pub(crate) fn decode_assignment(mut bytes: Bytes) -> Vec<TopicPartition> {
    if bytes.len() < 2 {
        return Vec::new();
    }
    let version = bytes.get_i16().clamp(0, 3);
    match ConsumerProtocolAssignment::decode(&mut bytes, version) {
        Ok(a) => a
            .assigned_partitions
            .into_iter()
            .flat_map(|t| {
                let topic = t.topic.0.to_string();
                t.partitions.into_iter().map(move |p| (topic.clone(), p))
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A consumer-protocol subscription: topics, owned partitions and their generation (v2 fields).
pub(super) fn subscription(
    topics: &[String],
    owned: &[TopicPartition],
    generation: i32,
) -> ConsumerProtocolSubscription {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in owned {
        by_topic.entry(t.as_str()).or_default().push(*p);
    }
    ConsumerProtocolSubscription::default()
        .with_topics(topics.iter().map(|t| s(t)).collect())
        .with_owned_partitions(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    consumer_protocol_subscription::TopicPartition::default()
                        .with_topic(TopicName(s(t)))
                        .with_partitions(ps)
                })
                .collect(),
        )
        .with_generation_id(generation)
}

pub(super) fn encode_versioned<T: Encodable>(value: &T, version: i16) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    value
        .encode(&mut buf, version)
        .map_err(|e| Error::Protocol(e.to_string()))?;
    Ok(buf.freeze())
}

impl Consumer {
    /// Whether rebalances are incremental: every configured assignor is cooperative (KIP-429).
    pub(super) fn cooperative(&self) -> bool {
        self.config
            .assignors
            .iter()
            .all(|a| a == "cooperative-sticky")
    }

    /// Forgets these partitions: positions, consumed offsets, buffered records.
    pub(super) fn drop_partitions(&mut self, partitions: &[TopicPartition]) {
        self.assignment.retain(|tp| !partitions.contains(tp));
        self.fetch_positions
            .retain(|tp, _| !partitions.contains(tp));
        self.consumed.retain(|tp, _| !partitions.contains(tp));
        self.buffer
            .retain(|r| !partitions.contains(&(r.topic.clone(), r.partition)));
    }

    /// Gives partitions up in an orderly way: commits what was consumed (auto-commit), tells the
    /// listener and commits the offsets it returns, then forgets them. Commit failures are
    /// logged: the partitions go either way, and their next owner starts from the last commit.
    pub(super) async fn revoke(&mut self, partitions: &[TopicPartition]) {
        if partitions.is_empty() {
            return;
        }
        if self.config.enable_auto_commit {
            let consumed: BTreeMap<TopicPartition, i64> = self
                .consumed
                .iter()
                .filter(|(tp, _)| partitions.contains(tp))
                .map(|(tp, o)| (tp.clone(), *o))
                .collect();
            if let Err(e) = self.commit_offsets(&consumed).await {
                tracing::warn!(error = %e, "commit before giving partitions up failed");
            }
        }
        let extra = self
            .listener
            .with(|l| l.on_partitions_revoked(partitions))
            .unwrap_or_default();
        if let Err(e) = self.commit_offsets(&extra).await {
            tracing::warn!(error = %e, "listener's commit before giving partitions up failed");
        }
        self.drop_partitions(partitions);
    }

    /// Drops every partition without committing: the membership is gone.
    pub(super) fn lose_partitions(&mut self) {
        let lost = std::mem::take(&mut self.assignment);
        self.generation = -1;
        if lost.is_empty() {
            return;
        }
        self.drop_partitions(&lost);
        self.listener.with(|l| l.on_partitions_lost(&lost));
    }

    /// Joins (or rejoins) the group and takes the assignment the leader computes.
    pub(super) async fn join_group(&mut self) -> Result<()> {
        let group = self
            .config
            .group_id
            .clone()
            .ok_or_else(|| Error::Config("no group id".into()))?;
        let cooperative = self.cooperative();
        if let Some(old) = &self.membership {
            old.stop.store(true, Ordering::Release);
            self.membership_member_id_hint = old.member_id.clone();
            if old.state.load(Ordering::Acquire) == LOST {
                self.membership = None;
                self.lose_partitions();
            } else if !cooperative {
                // Eager: give everything up (committing under the old generation) first.
                let all = self.assignment.clone();
                self.revoke(&all).await;
            }
        }
        self.membership = None;
        let coordinator = self.coordinator(&group).await?;
        let (owned, generation) = if cooperative {
            (self.assignment.clone(), self.generation)
        } else {
            (Vec::new(), -1)
        };
        let metadata = encode_versioned(&subscription(&self.subscription, &owned, generation), 2)?;
        let protocols: Vec<JoinGroupRequestProtocol> = self
            .config
            .assignors
            .iter()
            .map(|a| {
                JoinGroupRequestProtocol::default()
                    .with_name(s(a))
                    .with_metadata(metadata.clone())
            })
            .collect();
        let mut member_id = std::mem::take(&mut self.membership_member_id_hint);
        let join = loop {
            let request = JoinGroupRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_session_timeout_ms(self.config.session_timeout.as_millis() as i32)
                .with_rebalance_timeout_ms(self.config.rebalance_timeout.as_millis() as i32)
                .with_member_id(s(&member_id))
                .with_protocol_type(s("consumer"))
                .with_protocols(protocols.clone());
            let (response, _) = coordinator.request(&request, 7).await?;
            match ResponseError::try_from_code(response.error_code) {
                None => break response,
                Some(ResponseError::MemberIdRequired) => member_id = response.member_id.to_string(),
                Some(ResponseError::UnknownMemberId) => {
                    member_id.clear();
                    self.lose_partitions();
                    return Err(Error::from_code(response.error_code, None));
                }
                Some(e) if e.is_retriable() || e == ResponseError::RebalanceInProgress => {
                    tokio::time::sleep(self.config.client.retry_backoff).await;
                }
                Some(_) => check(response.error_code).map(|_| ())?,
            }
        };
        let member_id = join.member_id.to_string();
        let protocol = join
            .protocol_name
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let assignments = if join.leader == join.member_id {
            self.lead(&join.members, &protocol).await?
        } else {
            Vec::new()
        };
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_generation_id(join.generation_id)
            .with_member_id(s(&member_id))
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(Some(s(&protocol)))
            .with_assignments(assignments);
        let (sync, _) = coordinator.request(&sync, 5).await?;
        if sync.error_code != 0 {
            if matches!(
                ResponseError::try_from_code(sync.error_code),
                Some(ResponseError::UnknownMemberId | ResponseError::IllegalGeneration)
            ) {
                self.lose_partitions();
            }
            self.membership_member_id_hint = member_id;
            return Err(Error::from_code(sync.error_code, None));
        }
        let assigned = decode_assignment(sync.assignment);
        let state = Arc::new(AtomicU8::new(STABLE));
        let stop = Arc::new(AtomicBool::new(false));
        tokio::spawn(heartbeat_loop(
            coordinator.clone(),
            group.clone(),
            member_id.clone(),
            join.generation_id,
            self.config.heartbeat_interval,
            state.clone(),
            stop.clone(),
        ));
        self.membership = Some(Membership {
            group_id: group,
            member_id,
            generation: join.generation_id,
            coordinator,
            state: state.clone(),
            stop,
        });
        self.generation = join.generation_id;
        let revoked: Vec<TopicPartition> = self
            .assignment
            .iter()
            .filter(|tp| !assigned.contains(tp))
            .cloned()
            .collect();
        let added: Vec<TopicPartition> = assigned
            .iter()
            .filter(|tp| !self.assignment.contains(tp))
            .cloned()
            .collect();
        if !revoked.is_empty() {
            // Cooperative: commit and give up what the plan moves, then rejoin so that the new
            // owner gets it in a follow-up rebalance.
            self.revoke(&revoked).await;
            flag(&state, REJOIN);
        }
        self.assignment.extend(added.iter().cloned());
        self.listener.with(|l| l.on_partitions_assigned(&added));
        // Positions come from the commits; if that fails, fetch_once tries again first.
        self.init_positions().await
    }

    /// The leader's part of a rebalance: every member's assignment under the chosen protocol.
    pub(super) async fn lead(
        &self,
        members: &[join_group_response::JoinGroupResponseMember],
        protocol: &str,
    ) -> Result<Vec<SyncGroupRequestAssignment>> {
        let members: BTreeMap<String, MemberSubscription> = members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    decode_subscription(m.metadata.clone()),
                )
            })
            .collect();
        let all_topics: Vec<String> = members
            .values()
            .flat_map(|m| m.topics.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        self.cluster.refresh(&all_topics).await?;
        let counts: HashMap<String, i32> = all_topics
            .iter()
            .filter_map(|t| {
                self.cluster
                    .topic(t)
                    .map(|i| (t.clone(), i.partitions.len() as i32))
            })
            .collect();
        let plan = match protocol {
            "roundrobin" => assign_roundrobin(&members, &counts),
            "cooperative-sticky" => assign_cooperative_sticky(&members, &counts),
            _ => assign_range(&members, &counts),
        };
        let mut assignments = Vec::new();
        for (m, parts) in plan {
            let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for (t, p) in parts {
                by_topic.entry(t).or_default().push(p);
            }
            let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
                by_topic
                    .into_iter()
                    .map(|(t, ps)| {
                        AssignedTopic::default()
                            .with_topic(TopicName(s(&t)))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
            assignments.push(
                SyncGroupRequestAssignment::default()
                    .with_member_id(s(&m))
                    .with_assignment(encode_versioned(&assignment, 1)?),
            );
        }
        Ok(assignments)
    }
}

//! Group membership through the consumer protocol (KIP-848, `group.protocol=consumer`): the
//! broker assigns, and the consumer follows.
//!
//! A background task sends ConsumerGroupHeartbeat (v1: the member id is this client's, a random
//! UUID kept across rejoins). The first heartbeat, and every one after a coordinator change or a
//! fencing, is a full request (subscription, rebalance timeout, owned partitions); later ones
//! carry only what changed. The coordinator's assignment, topic ids turned into names, waits in
//! [`Shared`] until the next poll takes it: the consumer first gives up what is no longer in it
//! (committing, telling the listener), then starts on what is new, then tells the coordinator
//! what it owns, which is how a revocation is acknowledged. Fenced (UNKNOWN_MEMBER_ID,
//! FENCED_MEMBER_EPOCH): the partitions are dropped without a commit and the member joins again
//! with epoch 0. Errors Kafka's clients treat as fatal (an unknown assignor, a full group, a
//! refused group) end the task and are returned by the next poll.

use std::sync::MutexGuard;

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use tokio::sync::Notify;

use super::*;

/// The first version whose member ids are the client's (KIP-1082).
const HEARTBEAT_VERSION: i16 = 1;
/// The epoch a member leaves with.
const LEAVE_EPOCH: i32 = -1;

/// What the heartbeat task and the consumer share.
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// The member's epoch, 0 until the coordinator gave one.
    pub(super) epoch: i32,
    /// The latest assignment from the coordinator, not yet taken by the consumer.
    assignment: Option<Vec<TopicPartition>>,
    /// What the consumer owns, sent with the next heartbeat when `owned_changed`.
    owned: Vec<TopicPartition>,
    owned_changed: bool,
    subscription: Vec<String>,
    subscription_changed: bool,
    /// The coordinator forgot or fenced the member: its partitions must go without a commit.
    fenced: bool,
    /// A fatal refusal; the task has ended.
    fatal: Option<Error>,
}

/// The consumer's handle on its membership.
#[derive(Debug)]
pub(super) struct NextGen {
    pub(super) member_id: String,
    shared: Arc<Mutex<Shared>>,
    wake: Arc<Notify>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl NextGen {
    pub(super) fn start(
        cluster: Arc<Cluster>,
        config: &ConsumerConfig,
        group: String,
        subscription: &[String],
    ) -> NextGen {
        let member_id = uuid::Uuid::new_v4().to_string();
        // Subscribed before the task starts: its first heartbeat joins with the topics.
        let shared = Arc::new(Mutex::new(Shared {
            subscription: subscription.to_vec(),
            ..Shared::default()
        }));
        let wake = Arc::new(Notify::new());
        let stop = Arc::new(AtomicBool::new(false));
        let task = Task {
            cluster,
            group,
            member_id: member_id.clone(),
            rebalance_timeout_ms: config.rebalance_timeout.as_millis().min(i32::MAX as u128) as i32,
            assignor: config.group_remote_assignor.clone(),
            shared: shared.clone(),
            wake: wake.clone(),
            stop: stop.clone(),
        };
        let task = tokio::spawn(task.run());
        NextGen {
            member_id,
            shared,
            wake,
            stop,
            task,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn epoch(&self) -> i32 {
        self.lock().epoch
    }

    pub(super) fn subscribe(&self, topics: &[String]) {
        let mut s = self.lock();
        s.subscription = topics.to_vec();
        s.subscription_changed = true;
        drop(s);
        self.wake.notify_one();
    }

    /// Tells the coordinator (at once) what the consumer owns now.
    fn owned(&self, owned: &[TopicPartition]) {
        let mut s = self.lock();
        s.owned = owned.to_vec();
        s.owned_changed = true;
        drop(s);
        self.wake.notify_one();
    }

    /// Stops heartbeating and leaves the group (epoch -1).
    pub(super) async fn leave(self, cluster: &Cluster, group: &str) {
        // A heartbeat under way must not land after the leave (a join would leave a ghost).
        self.stop.store(true, Ordering::Release);
        self.task.abort();
        let request = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_member_id(s(&self.member_id))
            .with_member_epoch(LEAVE_EPOCH)
            .with_rebalance_timeout_ms(-1);
        if let Ok(conn) = cluster.group_coordinator(group).await {
            let _ = conn.request_at(&request, HEARTBEAT_VERSION).await;
        }
    }
}

impl Drop for NextGen {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.task.abort();
    }
}

impl Consumer {
    /// Follows the coordinator: drops everything when fenced, takes a new assignment (giving
    /// up first what left it), and reports what it owns.
    pub(super) async fn follow_assignment(&mut self, group: &str) -> Result<()> {
        if self.next_gen.is_none() {
            let next = NextGen::start(
                self.cluster.clone(),
                &self.config,
                group.to_string(),
                &self.subscription,
            );
            self.next_gen = Some(next);
        }
        let Some(next) = &self.next_gen else {
            return Ok(());
        };
        let (fenced, assignment, fatal) = {
            let mut s = next.lock();
            let fenced = std::mem::take(&mut s.fenced);
            // An assignment of the fenced membership is no longer ours.
            let assignment = s.assignment.take().filter(|_| !fenced);
            (fenced, assignment, s.fatal.take())
        };
        if let Some(e) = fatal {
            // The membership is over: what it held goes, uncommitted, as when fenced.
            self.next_gen = None;
            self.lose_partitions();
            return Err(e);
        }
        if fenced {
            self.lose_partitions();
            if let Some(next) = &self.next_gen {
                next.owned(&[]);
            }
        }
        let Some(target) = assignment else {
            return Ok(());
        };
        let revoked: Vec<TopicPartition> = self
            .assignment
            .iter()
            .filter(|tp| !target.contains(tp))
            .cloned()
            .collect();
        let added: Vec<TopicPartition> = target
            .iter()
            .filter(|tp| !self.assignment.contains(tp))
            .cloned()
            .collect();
        self.revoke(&revoked).await;
        self.assignment.extend(added.iter().cloned());
        if !added.is_empty() {
            self.listener.with(|l| l.on_partitions_assigned(&added));
        }
        if let Some(next) = &self.next_gen {
            next.owned(&self.assignment);
            self.generation = next.epoch();
        }
        self.init_positions().await
    }
}

struct Task {
    cluster: Arc<Cluster>,
    group: String,
    member_id: String,
    rebalance_timeout_ms: i32,
    assignor: Option<String>,
    shared: Arc<Mutex<Shared>>,
    wake: Arc<Notify>,
    stop: Arc<AtomicBool>,
}

/// How the task goes on after an answer.
enum Next {
    /// Heartbeat again after this long (or when woken).
    After(Duration),
    /// Find the coordinator again and send a full request.
    Rediscover,
}

impl Task {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn run(self) {
        let mut interval = Duration::from_millis(0);
        let mut full = true;
        let mut conn: Option<Arc<Connection>> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.wake.notified() => {}
            }
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            let c = match &conn {
                Some(c) if !c.is_closed() => c.clone(),
                _ => match self.cluster.group_coordinator(&self.group).await {
                    Ok(c) => {
                        conn = Some(c.clone());
                        c
                    }
                    Err(_) => {
                        interval = Duration::from_millis(500);
                        continue;
                    }
                },
            };
            match self.beat(&c, full).await {
                Ok(Next::After(d)) => {
                    full = false;
                    interval = d;
                }
                Ok(Next::Rediscover) | Err(_) => {
                    conn = None;
                    full = true;
                    interval = Duration::from_millis(200);
                }
            }
            if self.lock().fatal.is_some() {
                return;
            }
        }
    }

    async fn beat(&self, conn: &Connection, full: bool) -> Result<Next> {
        let (epoch, subscription, owned) = {
            let mut s = self.lock();
            if s.fenced {
                // Joins again only once the consumer dropped what it owned.
                return Ok(Next::After(Duration::from_millis(100)));
            }
            let full = full || s.epoch == 0;
            let subscription = (full || s.subscription_changed).then(|| s.subscription.clone());
            let owned = (full || s.owned_changed).then(|| s.owned.clone());
            s.subscription_changed = false;
            s.owned_changed = false;
            (s.epoch, subscription, owned)
        };
        let full = full || epoch == 0;
        let version = match conn.version_for::<ConsumerGroupHeartbeatRequest>(HEARTBEAT_VERSION) {
            Ok(v) if v >= HEARTBEAT_VERSION => v,
            _ => {
                self.lock().fatal = Some(Error::Config(
                    "the broker does not offer ConsumerGroupHeartbeat v1 (KIP-848): use group.protocol=classic".into(),
                ));
                return Ok(Next::After(Duration::ZERO));
            }
        };
        let owned_ids = match &owned {
            Some(o) => Some(self.topic_ids(o, subscription.as_deref()).await),
            None => None,
        };
        let request = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_member_id(s(&self.member_id))
            .with_member_epoch(epoch)
            .with_rebalance_timeout_ms(if full { self.rebalance_timeout_ms } else { -1 })
            .with_subscribed_topic_names(
                subscription
                    .as_ref()
                    .map(|ts| ts.iter().map(|t| TopicName(s(t))).collect()),
            )
            .with_server_assignor(self.assignor.as_deref().filter(|_| full).map(s))
            .with_topic_partitions(owned_ids);
        let result = conn.request_at(&request, version).await;
        // What this request carried is sent again if it was not taken.
        let unsent = |s: &mut Shared| {
            s.owned_changed |= owned.is_some();
            s.subscription_changed |= subscription.is_some();
        };
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                // Sent again in full to whichever coordinator answers next.
                unsent(&mut self.lock());
                return Err(e);
            }
        };
        if response.error_code != 0 {
            unsent(&mut self.lock());
        }
        match ResponseError::try_from_code(response.error_code) {
            None => {}
            Some(ResponseError::UnknownMemberId | ResponseError::FencedMemberEpoch) => {
                let mut s = self.lock();
                s.epoch = 0;
                s.fenced = true;
                s.owned.clear();
                s.assignment = None;
                return Ok(Next::After(Duration::ZERO));
            }
            Some(
                ResponseError::NotCoordinator
                | ResponseError::CoordinatorNotAvailable
                | ResponseError::CoordinatorLoadInProgress,
            ) => return Ok(Next::Rediscover),
            Some(e) if e.is_retriable() => return Ok(Next::After(Duration::from_millis(200))),
            Some(_) => {
                let message = response.error_message.map(|m| m.to_string());
                self.lock().fatal = Some(Error::from_code(response.error_code, message));
                return Ok(Next::After(Duration::ZERO));
            }
        }
        let assignment = match response.assignment {
            Some(a) => Some(self.topic_names(a.topic_partitions).await),
            None => None,
        };
        let mut s = self.lock();
        s.epoch = response.member_epoch;
        if let Some(a) = assignment {
            s.assignment = Some(a);
        }
        Ok(Next::After(Duration::from_millis(
            response.heartbeat_interval_ms.max(100) as u64,
        )))
    }

    /// Owned partitions by topic id, as the request carries them; a topic this client can no
    /// longer look up (deleted) is left out, as Kafka's clients do.
    async fn topic_ids(
        &self,
        owned: &[TopicPartition],
        subscription: Option<&[String]>,
    ) -> Vec<TopicPartitions> {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in owned {
            by_topic.entry(t.as_str()).or_default().push(*p);
        }
        let mut out = Vec::with_capacity(by_topic.len());
        for (topic, partitions) in by_topic {
            let info = match self.cluster.topic(topic) {
                Some(i) => i,
                None => {
                    let wanted = subscription.map(<[String]>::to_vec).unwrap_or_default();
                    let _ = self.cluster.refresh(&wanted).await;
                    match self.cluster.topic_or_refresh(topic).await {
                        Ok(i) => i,
                        Err(_) => continue,
                    }
                }
            };
            out.push(
                TopicPartitions::default()
                    .with_topic_id(info.topic_id)
                    .with_partitions(partitions),
            );
        }
        out
    }

    /// The assignment's topic ids as names; ids this client cannot name yet (a topic it has
    /// not seen) are looked up once, and left out if still unknown.
    async fn topic_names(
        &self,
        assigned: Vec<consumer_group_heartbeat_response::TopicPartitions>,
    ) -> Vec<TopicPartition> {
        let name_of = |id: &uuid::Uuid| {
            self.cluster
                .topics()
                .into_iter()
                .find(|t| t.topic_id == *id)
                .map(|t| t.name)
        };
        if assigned.iter().any(|tp| name_of(&tp.topic_id).is_none()) {
            let _ = self.cluster.refresh(&[]).await;
        }
        let mut out = Vec::new();
        for tp in assigned {
            match name_of(&tp.topic_id) {
                Some(name) => out.extend(tp.partitions.into_iter().map(|p| (name.clone(), p))),
                None => {
                    tracing::warn!(topic_id = %tp.topic_id, "assigned a topic this client cannot name")
                }
            }
        }
        out.sort();
        out
    }
}

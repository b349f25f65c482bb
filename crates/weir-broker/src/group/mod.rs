//! The group coordinator: consumer groups and committed offsets, stored in `__consumer_offsets`.
//!
//! [`coordinator`] is the pure state machine; this module drives it: it parks JoinGroup and
//! SyncGroup requests until the state machine answers them, writes the records it asks for to
//! the group's partition of `__consumer_offsets` (`abs(javaHash(group)) % partitions`, as
//! Kafka), rebuilds the state from that topic before serving the first group request, and ticks
//! its clock. On one broker this broker coordinates every group.

mod consumer;
pub(crate) mod coordinator;
mod load;
mod offsets;
pub(crate) mod records;
mod txn_offsets;

pub(crate) use self::offsets::{check_entries, CommitEntry, Durable};
pub(crate) use self::txn_offsets::TxnCommitter;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::sync::oneshot;
use weir_meta::{CreateTopic, MetaError};
use weir_types::LeaderEpoch;

use self::coordinator::{
    Coordinator, CoordinatorConfig, JoinRequest, JoinResult, Output, RequestId, SyncRequest,
    SyncResult,
};
use self::records::OffsetValue;
use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::replica_manager::Partition;

/// The internal topic of committed offsets and group metadata.
pub(crate) const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's `offset.metadata.max.bytes`.
const OFFSET_METADATA_MAX_BYTES: usize = 4096;
/// Kafka's `offsets.topic.segment.bytes`.
const OFFSETS_SEGMENT_BYTES: &str = "104857600";

#[derive(Debug)]
struct Inner {
    coordinator: Coordinator,
    waiters: HashMap<RequestId, oneshot::Sender<Output>>,
    next_request: RequestId,
    /// Every hosted partition was loaded once (ListGroups and DescribeGroups need them all).
    loaded: bool,
    /// A load of every hosted partition is under way.
    loading_all: bool,
    /// The leader epoch of each `__consumer_offsets` partition when its groups were loaded: a
    /// partition this broker leads in another epoch is loaded again before it serves a group
    /// (replication kept its log current, not this memory).
    loaded_epochs: HashMap<i32, LeaderEpoch>,
    /// Partitions whose load is queued: their groups answer COORDINATOR_LOAD_IN_PROGRESS.
    loading: HashSet<i32>,
}

/// What a write does once it ended (`true`: its records are in the log), on the I/O thread
/// that wrote them and so in log order: a commit's offsets enter memory there.
type AfterWrite = Box<dyn FnOnce(&mut Coordinator, bool) + Send>;

/// Takes a partition out of `loading` when its load job ends, also when the job panics or is
/// dropped without running (the threads closed): a partition left in `loading` would answer
/// COORDINATOR_LOAD_IN_PROGRESS forever.
struct Loading {
    broker: Arc<Broker>,
    index: i32,
}

impl Drop for Loading {
    fn drop(&mut self) {
        self.broker.groups.lock().loading.remove(&self.index);
    }
}

#[derive(Debug)]
pub(crate) struct GroupManager {
    inner: Mutex<Inner>,
    partitions: i32,
    /// Bumped when a load of every partition ends: requests that came meanwhile wait on it.
    all_loaded: tokio::sync::watch::Sender<u64>,
}

/// A group as the console shows it: its members and committed offsets.
#[derive(Debug)]
pub(crate) struct GroupSummary {
    pub(crate) group_id: String,
    pub(crate) state: &'static str,
    pub(crate) protocol: &'static str,
    pub(crate) members: Vec<MemberSummary>,
    pub(crate) offsets: GroupOffsets,
}

/// A member as the console shows it, with the partitions assigned to it by topic.
#[derive(Debug)]
pub(crate) struct MemberSummary {
    pub(crate) member_id: String,
    pub(crate) client_id: String,
    pub(crate) host: String,
    pub(crate) assignment: std::collections::BTreeMap<String, std::collections::BTreeSet<i32>>,
    /// A classic member's assignment as it sent it, not decoded yet.
    pub(crate) raw: Option<Bytes>,
}

/// A group's committed offsets by (topic, partition).
pub(crate) type GroupOffsets = Vec<((String, i32), i64)>;

/// Committed offsets by topic, then partition (`None`: nothing committed).
pub(crate) type TopicOffsets = Vec<(String, Vec<(i32, Option<OffsetValue>)>)>;

fn record(key: Bytes, value: Option<Bytes>, offset: i64, now_ms: i64) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: offset as i32 - 1,
        timestamp: now_ms,
        key: Some(key),
        value,
        headers: Default::default(),
    }
}

impl GroupManager {
    pub(crate) fn new(config: &BrokerConfig) -> GroupManager {
        let coordinator = Coordinator::new(CoordinatorConfig {
            min_session_timeout_ms: config.group_min_session_timeout_ms,
            max_session_timeout_ms: config.group_max_session_timeout_ms,
            initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms as i64,
            offsets_retention_ms: config.offsets_retention_minutes.saturating_mul(60_000),
            random_member_ids: true,
            consumer: coordinator::consumer::ConsumerConfig {
                session_timeout_ms: config.group_consumer_session_timeout_ms,
                heartbeat_interval_ms: config.group_consumer_heartbeat_interval_ms,
                max_size: config.group_consumer_max_size,
                assignors: coordinator::consumer::parse_assignors(&config.group_consumer_assignors)
                    .unwrap_or(&coordinator::consumer::ASSIGNORS),
            },
        });
        GroupManager {
            inner: Mutex::new(Inner {
                coordinator,
                waiters: HashMap::new(),
                next_request: 0,
                loaded: false,
                loading_all: false,
                loaded_epochs: HashMap::new(),
                loading: HashSet::new(),
            }),
            partitions: config.offsets_topic_num_partitions,
            all_loaded: tokio::sync::watch::channel(0).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates `__consumer_offsets` when it does not exist yet (FindCoordinator does, as Kafka's
    /// brokers do), then loads the groups.
    pub(crate) async fn create_offsets_topic(
        &self,
        broker: &Arc<Broker>,
    ) -> Result<(), ResponseError> {
        if broker.image().topic(OFFSETS_TOPIC).is_none() {
            let brokers = broker.image().live_brokers().count().max(1) as i16;
            let create = CreateTopic {
                name: OFFSETS_TOPIC.to_string(),
                num_partitions: self.partitions,
                replication_factor: broker.config.offsets_topic_replication_factor.min(brokers),
                assignments: Vec::new(),
                configs: vec![
                    ("cleanup.policy".into(), "compact".into()),
                    ("segment.bytes".into(), OFFSETS_SEGMENT_BYTES.into()),
                    ("compression.type".into(), "producer".into()),
                ],
            };
            match broker.create_topic(&create, false).await {
                Ok(_) | Err(MetaError::TopicAlreadyExists(_)) => {}
                Err(e) => {
                    tracing::error!(error = %e, "cannot create {OFFSETS_TOPIC}");
                    return Err(ResponseError::CoordinatorNotAvailable);
                }
            }
        }
        // Another request may have created it: the image shows it before the logs do.
        broker.catch_up_to_image().await;
        self.ensure_ready(broker).await
    }

    /// The I/O lane of a `__consumer_offsets` partition: its loads and writes run there, one
    /// after the other, in the order they were queued.
    fn lane(broker: &Broker, index: i32) -> usize {
        broker.io.lane_of((OFFSETS_TOPIC, index))
    }

    /// Queues a load of one partition's groups on its lane, behind every write queued to it
    /// before: the log is read there, then what memory held of its groups is replaced. The
    /// partition must be in `loading`; the job takes it out (a guard does, if the job never
    /// runs). Never called with the group lock held: the guard takes it.
    fn queue_load(
        broker: &Arc<Broker>,
        partition: Arc<Partition>,
    ) -> impl Future<Output = Result<(), ResponseError>> {
        let b = broker.clone();
        let loading = Loading {
            broker: broker.clone(),
            index: partition.index,
        };
        let job = broker.io.run(Self::lane(broker, partition.index), move || {
            let epoch = partition.leader_epoch();
            let read = load::read_partition(&partition);
            // Out of `loading` before the lock is taken here (the guard takes it too).
            drop(loading);
            let groups = &b.groups;
            let mut inner = groups.lock();
            let restored = read?;
            let (index, count) = (partition.index, groups.partitions);
            let belongs = |g: &str| records::partition_for(g, count) == index;
            let parked = inner.coordinator.unload(belongs);
            inner.coordinator.unload_txn_offsets(belongs);
            groups.handle_outputs(&b, &mut inner, parked);
            let n = restored.len();
            load::apply(
                &mut inner.coordinator,
                restored,
                belongs,
                weir_log::now_ms(),
            );
            inner.loaded_epochs.insert(index, epoch);
            tracing::info!(
                partition = index,
                %epoch,
                records = n,
                "groups of an {OFFSETS_TOPIC} partition loaded"
            );
            Ok(())
        });
        async move {
            job.await
                .unwrap_or(Err(ResponseError::CoordinatorNotAvailable))
        }
    }

    /// Ready to serve `group`: the groups are loaded and this broker leads the group's partition
    /// of `__consumer_offsets` (else NOT_COORDINATOR, and the client looks the coordinator up
    /// again). A partition led in a new epoch is loaded again first.
    async fn ready_for(&self, broker: &Arc<Broker>, group: &str) -> Result<(), ResponseError> {
        self.ensure_ready(broker).await?;
        let index = records::partition_for(group, self.partitions);
        match broker.replicas.get(OFFSETS_TOPIC, index) {
            Some(p) if p.is_leader(broker.node_id()) => {
                {
                    let mut inner = self.lock();
                    if inner.loaded_epochs.get(&index) == Some(&p.leader_epoch()) {
                        return Ok(());
                    }
                    if !inner.loading.insert(index) {
                        return Err(ResponseError::CoordinatorLoadInProgress);
                    }
                }
                // Queued without the group lock: a job that cannot be queued drops its guard,
                // which takes the lock.
                Self::queue_load(broker, p).await
            }
            // The image names this broker, but its logs have not caught up yet: retriable.
            None if broker
                .image()
                .topic(OFFSETS_TOPIC)
                .and_then(|t| t.partitions.get(&index))
                .is_some_and(|p| p.leader == Some(broker.node_id())) =>
            {
                Err(ResponseError::CoordinatorLoadInProgress)
            }
            _ => Err(ResponseError::NotCoordinator),
        }
    }

    /// The partition of `__consumer_offsets` that holds `group`.
    pub(crate) fn partition_of(&self, group: &str) -> i32 {
        records::partition_for(group, self.partitions)
    }

    /// Loads the groups of every hosted `__consumer_offsets` partition, once;
    /// COORDINATOR_NOT_AVAILABLE until the topic exists, COORDINATOR_LOAD_IN_PROGRESS while
    /// another request's load runs. The load goes on if the request that began it goes away.
    pub(crate) async fn ensure_ready(&self, broker: &Arc<Broker>) -> Result<(), ResponseError> {
        enum Start {
            Loaded,
            /// Another request's load runs: wait for it (FindCoordinator never answers
            /// COORDINATOR_LOAD_IN_PROGRESS in Kafka).
            Wait(tokio::sync::watch::Receiver<u64>),
            /// Load these; `skipped`: some partition's load another request queued is not
            /// among them, so this load is not complete without it.
            Load(Vec<Arc<Partition>>, bool),
        }
        let start = {
            let mut inner = self.lock();
            if inner.loaded {
                Start::Loaded
            } else if broker.image().topic(OFFSETS_TOPIC).is_none() {
                return Err(ResponseError::CoordinatorNotAvailable);
            } else if inner.loading_all {
                Start::Wait(self.all_loaded.subscribe())
            } else {
                inner.loading_all = true;
                let mut partitions: Vec<Arc<Partition>> = broker
                    .replicas
                    .all()
                    .into_iter()
                    .filter(|p| p.topic == OFFSETS_TOPIC)
                    .collect();
                let skipped = partitions.iter().any(|p| inner.loading.contains(&p.index));
                partitions.retain(|p| inner.loading.insert(p.index));
                Start::Load(partitions, skipped)
            }
        };
        let (partitions, skipped) = match start {
            Start::Loaded => return Ok(()),
            Start::Wait(mut done) => {
                let _ = done.changed().await;
                return if self.lock().loaded {
                    Ok(())
                } else {
                    Err(ResponseError::CoordinatorLoadInProgress)
                };
            }
            Start::Load(partitions, skipped) => (partitions, skipped),
        };
        let loads: Vec<_> = partitions
            .into_iter()
            .map(|p| Self::queue_load(broker, p))
            .collect();
        let b = broker.clone();
        let all = tokio::spawn(async move {
            let mut result = if skipped {
                Err(ResponseError::CoordinatorLoadInProgress)
            } else {
                Ok(())
            };
            for load in loads {
                if let Err(e) = load.await {
                    result = Err(e);
                }
            }
            let mut inner = b.groups.lock();
            inner.loading_all = false;
            if result.is_ok() {
                inner.loaded = true;
                tracing::info!(
                    groups = inner.coordinator.groups.len(),
                    "group coordinator loaded"
                );
            }
            drop(inner);
            b.groups.all_loaded.send_modify(|n| *n += 1);
            result
        });
        all.await
            .unwrap_or(Err(ResponseError::CoordinatorNotAvailable))
    }

    /// Queues records for the group's partition of `__consumer_offsets` on that partition's I/O
    /// lane at once (so writes queued under the group lock reach the log in that order), then
    /// `after`. The future answers what to wait on for them to be replicated, if anything was
    /// written; dropping it leaves the write queued.
    fn write(
        &self,
        broker: &Arc<Broker>,
        group: &str,
        entries: Vec<(Bytes, Option<Bytes>)>,
        after: Option<AfterWrite>,
    ) -> impl Future<Output = Result<Option<Durable>, ResponseError>> {
        let queued = if entries.is_empty() {
            Ok(None)
        } else {
            self.queue_write(broker, group, entries, after).map(Some)
        };
        async move {
            match queued {
                Ok(Some(job)) => job
                    .await
                    .unwrap_or(Err(ResponseError::CoordinatorNotAvailable)),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            }
        }
    }

    fn queue_write(
        &self,
        broker: &Arc<Broker>,
        group: &str,
        entries: Vec<(Bytes, Option<Bytes>)>,
        after: Option<AfterWrite>,
    ) -> Result<impl Future<Output = Option<Result<Option<Durable>, ResponseError>>>, ResponseError>
    {
        let index = records::partition_for(group, self.partitions);
        let Some(partition) = broker.replicas.get(OFFSETS_TOPIC, index) else {
            return Err(ResponseError::CoordinatorNotAvailable);
        };
        let now = weir_log::now_ms();
        let recs: Vec<Record> = entries
            .into_iter()
            .enumerate()
            .map(|(i, (k, v))| record(k, v, i as i64, now))
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &recs,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .map_err(|_| ResponseError::UnknownServerError)?;
        let mut bytes = buf.to_vec();
        let b = broker.clone();
        let group = group.to_string();
        Ok(broker.io.run(Self::lane(broker, index), move || {
            let result = match partition.append_as_leader(b.node_id(), &mut bytes, now) {
                Ok(Some((info, epoch))) => Ok(Some(Durable {
                    partition,
                    epoch,
                    last_offset: info.last_offset,
                })),
                Ok(None) => Err(ResponseError::NotCoordinator),
                Err(e) => {
                    tracing::error!(error = %e, group, "cannot write to {OFFSETS_TOPIC}");
                    Err(ResponseError::CoordinatorNotAvailable)
                }
            };
            if let Some(after) = after {
                after(&mut b.groups.lock().coordinator, result.is_ok());
            }
            result
        }))
    }

    /// Sends answers to parked requests and queues the writes the state machine asked for.
    fn handle_outputs(&self, broker: &Arc<Broker>, inner: &mut Inner, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Join(id, _) | Output::Sync(id, _) if !inner.waiters.contains_key(&id) => {}
                Output::Join(id, _) | Output::Sync(id, _) => {
                    if let Some(tx) = inner.waiters.remove(&id) {
                        let _ = tx.send(output);
                    }
                }
                Output::PersistGroup(group, value) => {
                    let entry = (
                        records::group_key(&group),
                        value.as_ref().map(records::group_value),
                    );
                    drop(self.write(broker, &group, vec![entry], None));
                }
                Output::PersistConsumer(group, value) => {
                    let entry = (records::consumer_group_key(&group), value);
                    // A write that failed is tried again at the next tick (the fingerprint
                    // forgotten makes the group differ from what was written).
                    let name = group.clone();
                    let retry: AfterWrite = Box::new(move |c: &mut Coordinator, written| {
                        if !written {
                            c.forget_persisted(&name);
                        }
                    });
                    drop(self.write(broker, &group, vec![entry], Some(retry)));
                }
                Output::DeleteOffsets(group, offsets) => {
                    let entries = offsets
                        .iter()
                        .map(|(t, p)| (records::offset_key(&group, t, *p), None))
                        .collect();
                    drop(self.write(broker, &group, entries, None));
                }
            }
        }
    }

    /// Runs a state-machine call that may park the request, and waits for its answer.
    async fn parked(
        &self,
        broker: &Arc<Broker>,
        group: &str,
        call: impl FnOnce(&mut Coordinator, RequestId) -> Vec<Output>,
    ) -> Result<Option<Output>, ResponseError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut inner = self.lock();
            self.check_ready(broker, &inner, group)?;
            inner.next_request += 1;
            let id = inner.next_request;
            inner.waiters.insert(id, tx);
            let outputs = call(&mut inner.coordinator, id);
            self.handle_outputs(broker, &mut inner, outputs);
        }
        Ok(rx.await.ok())
    }

    pub(crate) async fn join(&self, broker: &Arc<Broker>, req: JoinRequest) -> JoinResult {
        let member_id = req.member_id.clone();
        if let Err(e) = self.ready_for(broker, &req.group_id).await {
            return error_join(e, &member_id);
        }
        let group = req.group_id.clone();
        let topics = Self::topics_now(broker);
        match self
            .parked(broker, &group, |c, id| {
                c.set_topics(topics);
                c.join(id, req, weir_log::now_ms())
            })
            .await
        {
            Ok(Some(Output::Join(_, result))) => result,
            Err(e) => error_join(e, &member_id),
            _ => error_join(ResponseError::CoordinatorNotAvailable, &member_id),
        }
    }

    pub(crate) async fn sync(&self, broker: &Arc<Broker>, req: SyncRequest) -> SyncResult {
        if let Err(e) = self.ready_for(broker, &req.group_id).await {
            return error_sync(e);
        }
        let group = req.group_id.clone();
        match self
            .parked(broker, &group, |c, id| c.sync(id, req, weir_log::now_ms()))
            .await
        {
            Ok(Some(Output::Sync(_, result))) => result,
            Err(e) => error_sync(e),
            _ => error_sync(ResponseError::CoordinatorNotAvailable),
        }
    }

    pub(crate) async fn heartbeat(
        &self,
        broker: &Arc<Broker>,
        group: &str,
        generation: i32,
        member: &str,
        instance: Option<&str>,
    ) -> i16 {
        if let Err(e) = self.ready_for(broker, group).await {
            return e.code();
        }
        let mut inner = self.lock();
        if let Err(e) = self.check_ready(broker, &inner, group) {
            return e.code();
        }
        inner
            .coordinator
            .heartbeat(group, generation, member, instance, weir_log::now_ms())
    }

    pub(crate) async fn leave(
        &self,
        broker: &Arc<Broker>,
        group: &str,
        members: &[(String, Option<String>)],
    ) -> (i16, Vec<i16>) {
        if let Err(e) = self.ready_for(broker, group).await {
            return (e.code(), vec![e.code(); members.len()]);
        }
        let mut inner = self.lock();
        if let Err(e) = self.check_ready(broker, &inner, group) {
            return (e.code(), vec![e.code(); members.len()]);
        }
        let (top, codes, outputs) = inner.coordinator.leave(group, members, weir_log::now_ms());
        self.handle_outputs(broker, &mut inner, outputs);
        (top, codes)
    }

    /// Every group this broker coordinates now, as the console shows it.
    pub(crate) fn summaries(&self) -> Vec<GroupSummary> {
        let mut out: Vec<GroupSummary> = self
            .lock()
            .coordinator
            .groups
            .values()
            .map(|g| {
                let consumer_protocol = g.protocol_type.as_deref() == Some("consumer");
                let mut members: Vec<MemberSummary> = g
                    .members
                    .values()
                    .map(|m| MemberSummary {
                        member_id: m.member_id.clone(),
                        client_id: m.client_id.clone(),
                        host: m.client_host.clone(),
                        assignment: Default::default(),
                        // Decoded once the lock is let go; other protocols' (Connect's) are
                        // opaque.
                        raw: consumer_protocol.then(|| m.assignment.clone()),
                    })
                    .collect();
                if let Some(c) = &g.consumer {
                    members.extend(c.members.values().map(|m| MemberSummary {
                        member_id: m.member_id.clone(),
                        client_id: m.client_id.clone(),
                        host: m.client_host.clone(),
                        assignment: m.assigned.clone(),
                        raw: None,
                    }));
                }
                GroupSummary {
                    group_id: g.group_id.clone(),
                    state: g.state.name(),
                    protocol: if g.consumer.is_some() {
                        "consumer"
                    } else {
                        "classic"
                    },
                    members,
                    offsets: g
                        .offsets
                        .iter()
                        .map(|(k, v)| (k.clone(), v.offset))
                        .collect(),
                }
            })
            .collect();
        for m in out.iter_mut().flat_map(|g| g.members.iter_mut()) {
            if let Some(raw) = m.raw.take() {
                m.assignment = coordinator::consumer::embedded::decode_assignment(&raw);
            }
        }
        out
    }

    /// Every group this broker coordinates now, with its committed offsets (for `/metrics`).
    pub(crate) fn committed_offsets(&self) -> Vec<(String, GroupOffsets)> {
        self.lock()
            .coordinator
            .groups
            .values()
            .map(|g| {
                let offsets = g.offsets.iter().map(|(k, v)| (k.clone(), v.offset));
                (g.group_id.clone(), offsets.collect())
            })
            .collect()
    }

    /// A snapshot of a group for DescribeGroups and ListGroups.
    pub(crate) async fn with_groups<T>(
        &self,
        broker: &Arc<Broker>,
        f: impl FnOnce(&Coordinator) -> T,
    ) -> Result<T, ResponseError> {
        self.ensure_ready(broker).await?;
        Ok(f(&self.lock().coordinator))
    }

    pub(crate) async fn delete_group(&self, broker: &Arc<Broker>, group: &str) -> i16 {
        if let Err(e) = self.ready_for(broker, group).await {
            return e.code();
        }
        let written = {
            let mut inner = self.lock();
            if let Err(e) = self.check_ready(broker, &inner, group) {
                return e.code();
            }
            // Sessions that ran out by now end first, as Kafka's timers would have ended them
            // to the millisecond, not at the next tick.
            let outputs = inner.coordinator.tick(weir_log::now_ms(), |g| g == group);
            self.handle_outputs(broker, &mut inner, outputs);
            match inner.coordinator.delete_group(group) {
                Err(e) => return e.code(),
                Ok(offsets) => {
                    let mut entries: Vec<(Bytes, Option<Bytes>)> = offsets
                        .iter()
                        .map(|(t, p)| (records::offset_key(group, t, *p), None))
                        .collect();
                    entries.push((records::group_key(group), None));
                    entries.push((records::consumer_group_key(group), None));
                    self.write(broker, group, entries, None)
                }
            }
        };
        match written.await {
            Ok(_) => 0,
            Err(e) => e.code(),
        }
    }

    /// OffsetDelete: removes offsets of topics the group's members do not subscribe to.
    pub(crate) async fn delete_offsets(
        &self,
        broker: &Arc<Broker>,
        group: &str,
        topics: &[(String, Vec<i32>)],
    ) -> Result<Vec<Vec<i16>>, ResponseError> {
        self.ready_for(broker, group).await?;
        let cluster_topics = Self::topics_now(broker);
        let (codes, written) = {
            let mut inner = self.lock();
            self.check_ready(broker, &inner, group)?;
            inner.coordinator.set_topics(cluster_topics);
            let (codes, removed) = inner.coordinator.delete_offsets(group, topics)?;
            let entries = removed
                .iter()
                .map(|(t, p)| (records::offset_key(group, t, *p), None))
                .collect();
            (codes, self.write(broker, group, entries, None))
        };
        written.await?;
        Ok(codes)
    }

    /// Advances the state machine's clock: timeouts, delayed rebalances, offset expiry.
    pub(crate) fn tick(&self, broker: &Arc<Broker>) {
        let mut inner = self.lock();
        if !inner.loaded {
            return;
        }
        let ready: HashSet<i32> = (0..self.partitions)
            .filter(|i| Self::partition_ready(broker, &inner, *i).is_ok())
            .collect();
        let count = self.partitions;
        let outputs = inner.coordinator.tick(weir_log::now_ms(), |g| {
            ready.contains(&records::partition_for(g, count))
        });
        self.handle_outputs(broker, &mut inner, outputs);
    }

    /// Whether this broker serves the groups of `__consumer_offsets` partition `index` now:
    /// it leads the partition, and memory holds what the log held in its current epoch.
    /// Checked again under the group lock by every change, since `ready_for` let go of it:
    /// a change made to memory that a queued reload will replace would reach the log after
    /// the reload, and disagree with memory.
    fn partition_ready(broker: &Broker, inner: &Inner, index: i32) -> Result<(), ResponseError> {
        match broker.replicas.get(OFFSETS_TOPIC, index) {
            Some(p) if p.is_leader(broker.node_id()) => {
                let current = inner.loaded_epochs.get(&index) == Some(&p.leader_epoch());
                if current && !inner.loading.contains(&index) {
                    Ok(())
                } else {
                    Err(ResponseError::CoordinatorLoadInProgress)
                }
            }
            _ => Err(ResponseError::NotCoordinator),
        }
    }

    /// [`GroupManager::partition_ready`] for `group`'s partition.
    fn check_ready(
        &self,
        broker: &Broker,
        inner: &Inner,
        group: &str,
    ) -> Result<(), ResponseError> {
        Self::partition_ready(
            broker,
            inner,
            records::partition_for(group, self.partitions),
        )
    }
}

fn error_join(e: ResponseError, member_id: &str) -> JoinResult {
    JoinResult {
        error: e.code(),
        generation_id: -1,
        protocol_type: None,
        protocol_name: None,
        leader: String::new(),
        member_id: member_id.to_string(),
        members: Vec::new(),
    }
}

fn error_sync(e: ResponseError) -> SyncResult {
    SyncResult {
        error: e.code(),
        protocol_type: None,
        protocol_name: None,
        assignment: Bytes::new(),
    }
}

//! The consumer: manual assignment or group membership, batch polling, commits, and an
//! [`OffsetTracker`] for processing records concurrently while committing only behind records
//! that are fully processed.
//!
//! Group membership uses the classic protocol (JoinGroup/SyncGroup/Heartbeat) with Kafka's
//! range, roundrobin and cooperative-sticky assignors. With range or roundrobin the rebalance is
//! eager: before rejoining, the consumer commits (when auto-commit is on) and gives up every
//! partition. With cooperative-sticky alone it is incremental (KIP-429): the consumer keeps its
//! partitions through the rebalance, gives up only those the new plan takes away (committing them
//! first) and rejoins at once so that their new owner receives them. A [`RebalanceListener`] hears
//! of every change. A background task heartbeats and flags when a rebalance is needed or the
//! membership was lost; the next poll acts on it. With `group_protocol` set to
//! [`GroupProtocol::Consumer`] the consumer speaks KIP-848 instead (`next_gen.rs`): the broker
//! assigns, and the consumer follows its assignment one heartbeat at a time.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;

use crate::assignor::{
    assign_cooperative_sticky, assign_range, assign_roundrobin, decode_subscription,
    MemberSubscription, TopicPartition,
};
use crate::cluster::{ClientConfig, Cluster};
use crate::connection::Connection;
use crate::error::{check, Error, Result};

mod aborted;
mod fetch;
mod membership;
mod next_gen;
mod tracker;

pub(crate) use membership::decode_assignment;
pub use tracker::OffsetTracker;

/// Offsets handed out and not yet done, and the next offset after the last one handed out.
type InFlight = (BTreeSet<i64>, i64);

/// Where to start when a partition has no committed offset (or it is out of range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoOffsetReset {
    /// The log start: read everything still kept.
    Earliest,
    /// The log end: read only records written from now on (the default, as in Kafka).
    Latest,
}

/// Consumer settings; [`ConsumerConfig::new`] gives Kafka's defaults.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Connection settings shared with the other clients.
    pub client: ClientConfig,
    /// Group membership and commits need a group id; manual assignment does not.
    pub group_id: Option<String>,
    /// Where to start without a committed offset (Kafka's `auto.offset.reset`). Default: latest.
    pub auto_offset_reset: AutoOffsetReset,
    /// Commit consumed offsets every `auto_commit_interval` during polls, before a rebalance and
    /// on close (Kafka's `enable.auto.commit`). Default: on.
    pub enable_auto_commit: bool,
    /// Kafka's `auto.commit.interval.ms`. Default: 5 s.
    pub auto_commit_interval: Duration,
    /// How long the coordinator waits for a heartbeat before it expels this member (Kafka's
    /// `session.timeout.ms`). Default: 45 s.
    pub session_timeout: Duration,
    /// How long the coordinator waits for members to rejoin in a rebalance (Kafka's
    /// `max.poll.interval.ms` is sent as this). Default: 60 s.
    pub rebalance_timeout: Duration,
    /// Kafka's `heartbeat.interval.ms`. Default: 3 s.
    pub heartbeat_interval: Duration,
    /// Assignors in order of preference (Kafka's `partition.assignment.strategy`): "range",
    /// "roundrobin", "cooperative-sticky". Rebalances are incremental only when every one listed
    /// is cooperative, as in the Java client. Default: range, then roundrobin.
    pub assignors: Vec<String>,
    /// The longest a broker holds a fetch waiting for `fetch_min_bytes` (Kafka's
    /// `fetch.max.wait.ms`). Default: 500 ms.
    pub fetch_max_wait: Duration,
    /// Kafka's `fetch.min.bytes`. Default: 1.
    pub fetch_min_bytes: i32,
    /// The most bytes one fetch answer may carry (Kafka's `fetch.max.bytes`). Default: 50 MiB.
    pub fetch_max_bytes: i32,
    /// The most bytes per partition in one fetch answer (Kafka's
    /// `max.partition.fetch.bytes`). Default: 1 MiB.
    pub max_partition_fetch_bytes: i32,
    /// Kafka's `isolation.level`: with `true` (`read_committed`) only committed transactions'
    /// records are read, up to the last stable offset. Default `false` (`read_uncommitted`).
    pub read_committed: bool,
    /// Kafka's `group.protocol`: the classic rebalance protocol, or KIP-848's.
    pub group_protocol: GroupProtocol,
    /// Kafka's `group.remote.assignor`: the broker-side assignor asked for with
    /// [`GroupProtocol::Consumer`] (`uniform` or `range`; the broker's default when `None`).
    pub group_remote_assignor: Option<String>,
}

/// Which group protocol a consumer speaks (Kafka's `group.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupProtocol {
    /// JoinGroup, SyncGroup and Heartbeat; the group's leader assigns.
    #[default]
    Classic,
    /// ConsumerGroupHeartbeat (KIP-848); the broker assigns.
    Consumer,
}

impl ConsumerConfig {
    /// Defaults for a consumer of the cluster at `bootstrap` (`host:port[,host:port...]`).
    pub fn new(bootstrap: &str) -> ConsumerConfig {
        ConsumerConfig {
            client: ClientConfig::new(bootstrap),
            group_id: None,
            auto_offset_reset: AutoOffsetReset::Latest,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(3),
            assignors: vec!["range".into(), "roundrobin".into()],
            fetch_max_wait: Duration::from_millis(500),
            fetch_min_bytes: 1,
            fetch_max_bytes: 52_428_800,
            max_partition_fetch_bytes: 1_048_576,
            read_committed: false,
            group_protocol: GroupProtocol::Classic,
            group_remote_assignor: None,
        }
    }

    /// Sets the consumer group id.
    pub fn with_group(mut self, group: &str) -> ConsumerConfig {
        self.group_id = Some(group.to_string());
        self
    }
}

/// A record as consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The topic it was read from.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Milliseconds since the epoch: create time, or log-append time when the topic says so.
    pub timestamp: i64,
    /// The key, `None` for a null key.
    pub key: Option<Bytes>,
    /// The value, `None` for a null value (a tombstone).
    pub value: Option<Bytes>,
    /// Headers in order, each a name and a possibly null value.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// The group side of a consumer.
#[derive(Debug)]
struct Membership {
    group_id: String,
    member_id: String,
    generation: i32,
    coordinator: Arc<Connection>,
    /// [`STABLE`], [`REJOIN`] or [`LOST`], set by the heartbeat task and by commits.
    state: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
}

/// The membership is current.
const STABLE: u8 = 0;
/// The group is rebalancing (or the coordinator moved): join again, keeping what we own.
const REJOIN: u8 = 1;
/// The coordinator no longer knows this member or generation: its partitions may already be
/// someone else's, so they are dropped without a commit before joining again.
const LOST: u8 = 2;

fn flag(state: &AtomicU8, value: u8) {
    // LOST wins over REJOIN.
    state.fetch_max(value, Ordering::AcqRel);
}

/// Told when a group rebalance changes a consumer's partitions, like Java's
/// `ConsumerRebalanceListener`. Its methods run inside [`Consumer::poll_batch`] (and
/// [`Consumer::close`]), so they see no fetch in between.
pub trait RebalanceListener: Send {
    /// These partitions are about to be given up: the consumer has committed what the
    /// application consumed (with auto-commit on) and then commits the offsets returned here,
    /// e.g. an [`OffsetTracker`]'s committable offsets for these partitions.
    fn on_partitions_revoked(
        &mut self,
        partitions: &[TopicPartition],
    ) -> BTreeMap<TopicPartition, i64> {
        let _ = partitions;
        BTreeMap::new()
    }

    /// These partitions were added to the assignment. Eager assignors hand over the whole
    /// assignment each time; cooperative-sticky only what is new (possibly nothing).
    fn on_partitions_assigned(&mut self, partitions: &[TopicPartition]) {
        let _ = partitions;
    }

    /// The membership was lost (session expired, generation fenced): these partitions were taken
    /// away without a chance to commit, and another member may already be reading them.
    fn on_partitions_lost(&mut self, partitions: &[TopicPartition]) {
        let _ = partitions;
    }
}

/// The listener slot. The mutex makes [`Consumer`] `Sync` (its futures hold `&self` across
/// awaits) without asking listeners to be; it is never contended.
#[derive(Default)]
struct Listener(Mutex<Option<Box<dyn RebalanceListener>>>);

impl Listener {
    fn with<R>(&self, f: impl FnOnce(&mut dyn RebalanceListener) -> R) -> Option<R> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_mut().map(|l| f(l.as_mut()))
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Listener")
    }
}

/// A consumer: reads assigned partitions, or the partitions its group hands it, in batches.
#[derive(Debug)]
pub struct Consumer {
    config: ConsumerConfig,
    cluster: Arc<Cluster>,
    subscription: Vec<String>,
    assignment: Vec<TopicPartition>,
    /// Next offset to fetch.
    fetch_positions: BTreeMap<TopicPartition, i64>,
    /// Offset after the last record handed to the application: what auto-commit commits.
    consumed: BTreeMap<TopicPartition, i64>,
    buffer: VecDeque<ConsumerRecord>,
    /// Fetches sent and not yet applied (prefetched while the application works).
    in_flight: Vec<fetch::InFlight>,
    membership: Option<Membership>,
    /// The membership under KIP-848 (`group_protocol` consumer).
    next_gen: Option<next_gen::NextGen>,
    /// The member id of the last membership, offered again on the next join.
    membership_member_id_hint: String,
    /// The generation in which the current assignment was received, -1 when none.
    generation: i32,
    listener: Listener,
    last_commit: Instant,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

impl Consumer {
    /// Connects to the cluster. Fails on an unknown assignor or when no bootstrap broker answers.
    pub async fn new(config: ConsumerConfig) -> Result<Consumer> {
        if let Some(a) = config
            .assignors
            .iter()
            .find(|a| !matches!(a.as_str(), "range" | "roundrobin" | "cooperative-sticky"))
        {
            return Err(Error::Config(format!(
                "unknown assignor '{a}' (range, roundrobin or cooperative-sticky)"
            )));
        }
        if config.assignors.is_empty() {
            return Err(Error::Config("at least one assignor is needed".into()));
        }
        let cluster = Cluster::connect(config.client.clone()).await?;
        Ok(Consumer {
            config,
            cluster,
            subscription: Vec::new(),
            assignment: Vec::new(),
            fetch_positions: BTreeMap::new(),
            consumed: BTreeMap::new(),
            buffer: VecDeque::new(),
            in_flight: Vec::new(),
            membership: None,
            next_gen: None,
            membership_member_id_hint: String::new(),
            generation: -1,
            listener: Listener::default(),
            last_commit: Instant::now(),
        })
    }

    /// Reads these partitions without a group; positions come from committed offsets when a
    /// group id is set, else from `auto_offset_reset`.
    pub async fn assign(&mut self, partitions: Vec<(String, i32)>) -> Result<()> {
        self.subscription.clear();
        self.assignment = partitions;
        self.fetch_positions
            .retain(|tp, _| self.assignment.contains(tp));
        self.init_positions().await
    }

    /// Joins the group (which must be configured) and reads the topics it assigns.
    pub async fn subscribe(&mut self, topics: Vec<String>) -> Result<()> {
        if self.config.group_id.is_none() {
            return Err(Error::Config("subscribe needs a group id".into()));
        }
        self.subscription = topics;
        if let Some(m) = &self.membership {
            flag(&m.state, REJOIN);
        }
        if let Some(n) = &self.next_gen {
            n.subscribe(&self.subscription);
        }
        Ok(())
    }

    /// Sets the listener told of partitions assigned, revoked and lost by group rebalances.
    pub fn set_rebalance_listener(&mut self, listener: Box<dyn RebalanceListener>) {
        self.listener = Listener(Mutex::new(Some(listener)));
    }

    /// The group, generation and member this consumer is (KIP-447), for
    /// [`crate::TransactionalProducer::send_offsets_to_transaction`].
    pub fn group_metadata(&self) -> Option<crate::GroupMetadata> {
        let group_id = self.config.group_id.clone()?;
        if let Some(n) = &self.next_gen {
            return Some(crate::GroupMetadata {
                group_id,
                generation: n.epoch(),
                member_id: n.member_id.clone(),
            });
        }
        Some(match &self.membership {
            Some(m) => crate::GroupMetadata {
                group_id,
                generation: m.generation,
                member_id: m.member_id.clone(),
            },
            None => crate::GroupMetadata {
                group_id,
                generation: -1,
                member_id: String::new(),
            },
        })
    }

    /// The partitions this consumer reads now.
    pub fn assignment(&self) -> &[(String, i32)] {
        &self.assignment
    }

    /// Sets the next offset to read of an assigned partition.
    pub fn seek(&mut self, topic: &str, partition: i32, offset: i64) {
        let tp = (topic.to_string(), partition);
        self.buffer
            .retain(|r| !(r.topic == topic && r.partition == partition));
        self.fetch_positions.insert(tp.clone(), offset);
        self.consumed.insert(tp, offset);
    }

    /// Offsets of partitions by time (first record at or after `timestamp`), or -1.
    pub async fn offsets_for_time(
        &self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<i64> {
        self.list_offset(topic, partition, timestamp).await
    }

    async fn list_offset(&self, topic: &str, partition: i32, timestamp: i64) -> Result<i64> {
        let leader = self.leader_of(topic, partition).await?;
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(i8::from(self.config.read_committed))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_timestamp(timestamp)])]);
        let (response, _) = self
            .cluster
            .broker(leader)
            .await?
            .request(&request, 7)
            .await?;
        let p = response
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| Error::Protocol("empty ListOffsets answer".into()))?;
        check(p.error_code)?;
        Ok(p.offset)
    }

    async fn leader_of(&self, topic: &str, partition: i32) -> Result<i32> {
        if let Some(l) = self.cluster.leader(topic, partition) {
            return Ok(l);
        }
        self.cluster.refresh(&[topic.to_string()]).await?;
        self.cluster
            .leader(topic, partition)
            .ok_or_else(|| Error::UnknownTopic(format!("{topic}-{partition}")))
    }

    async fn reset_offset(&self, topic: &str, partition: i32) -> Result<i64> {
        let spec = match self.config.auto_offset_reset {
            AutoOffsetReset::Earliest => -2,
            AutoOffsetReset::Latest => -1,
        };
        self.list_offset(topic, partition, spec).await
    }

    /// Positions for assigned partitions that have none: committed offset, else the reset policy.
    async fn init_positions(&mut self) -> Result<()> {
        let missing: Vec<TopicPartition> = self
            .assignment
            .iter()
            .filter(|tp| !self.fetch_positions.contains_key(*tp))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let committed = match &self.config.group_id {
            // An error here must not fall back to the reset policy: that would skip or repeat
            // what the group committed. The caller retries.
            Some(g) => self.fetch_committed(g, &missing).await?,
            None => BTreeMap::new(),
        };
        for tp in missing {
            let offset = match committed.get(&tp) {
                Some(&o) if o >= 0 => o,
                _ => self.reset_offset(&tp.0, tp.1).await?,
            };
            self.fetch_positions.insert(tp.clone(), offset);
            self.consumed.insert(tp, offset);
        }
        Ok(())
    }

    async fn coordinator(&self, group: &str) -> Result<Arc<Connection>> {
        self.cluster.group_coordinator(group).await
    }

    async fn fetch_committed(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        let conn = self.coordinator(group).await?;
        let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in partitions {
            topics.entry(t.as_str()).or_default().push(*p);
        }
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(Some(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        OffsetFetchRequestTopic::default()
                            .with_name(TopicName(s(t)))
                            .with_partition_indexes(ps)
                    })
                    .collect(),
            ));
        let (response, _) = conn.request(&request, 7).await?;
        check(response.error_code)?;
        let mut out = BTreeMap::new();
        for t in response.topics {
            for p in t.partitions {
                if p.error_code == 0 {
                    out.insert(
                        (t.name.0.to_string(), p.partition_index),
                        p.committed_offset,
                    );
                }
            }
        }
        Ok(out)
    }

    /// Commits what the application has consumed so far (synchronously).
    pub async fn commit(&mut self) -> Result<()> {
        let offsets = self.consumed.clone();
        self.commit_offsets(&offsets).await
    }

    /// Commits the given next-offsets, e.g. from an [`OffsetTracker`].
    pub async fn commit_offsets(&mut self, offsets: &BTreeMap<TopicPartition, i64>) -> Result<()> {
        let Some(group) = self.config.group_id.clone() else {
            return Err(Error::Config("commits need a group id".into()));
        };
        if offsets.is_empty() {
            return Ok(());
        }
        let (generation, member, conn) = match (&self.membership, &self.next_gen) {
            (_, Some(n)) => (
                n.epoch(),
                n.member_id.clone(),
                self.coordinator(&group).await?,
            ),
            (Some(m), None) => (m.generation, m.member_id.clone(), m.coordinator.clone()),
            (None, None) => (-1, String::new(), self.coordinator(&group).await?),
        };
        let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for ((t, p), o) in offsets {
            topics.entry(t.as_str()).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*p)
                    .with_committed_offset(*o),
            );
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(s(&member))
            .with_retention_time_ms(-1)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(TopicName(s(t)))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        // v9: a consumer-protocol member commits under its epoch (KIP-848).
        let (response, _) = conn
            .request(&request, if self.next_gen.is_some() { 9 } else { 8 })
            .await?;
        self.last_commit = Instant::now();
        for t in response.topics {
            for p in t.partitions {
                if p.error_code != 0 {
                    let e = Error::from_code(p.error_code, None);
                    // A consumer-protocol member learns of fencing from its heartbeats, as
                    // Kafka's consumer does, not from a refused commit.
                    if let Some(m) = &self.membership {
                        match ResponseError::try_from_code(p.error_code) {
                            Some(ResponseError::RebalanceInProgress) => flag(&m.state, REJOIN),
                            Some(
                                ResponseError::IllegalGeneration
                                | ResponseError::UnknownMemberId
                                | ResponseError::FencedInstanceId,
                            ) => flag(&m.state, LOST),
                            _ => {}
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Returns up to `max_records` records: as soon as that many are there, or when `max_wait`
    /// has passed with fewer (possibly none).
    pub async fn poll_batch(
        &mut self,
        max_records: usize,
        max_wait: Duration,
    ) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + max_wait;
        loop {
            if !self.subscription.is_empty()
                && self.config.group_protocol == GroupProtocol::Consumer
            {
                let group = self.config.group_id.clone().unwrap_or_default();
                if let Err(e) = self.follow_assignment(&group).await {
                    if !e.is_retriable() {
                        return Err(e);
                    }
                    tokio::time::sleep(self.config.client.retry_backoff).await;
                    continue;
                }
            } else if !self.subscription.is_empty() {
                let needs_join = self
                    .membership
                    .as_ref()
                    .is_none_or(|m| m.state.load(Ordering::Acquire) != STABLE);
                if needs_join {
                    if let Err(e) = self.join_group().await {
                        if !e.is_retriable()
                            && !matches!(
                                e,
                                Error::Kafka {
                                    error: ResponseError::RebalanceInProgress
                                        | ResponseError::IllegalGeneration
                                        | ResponseError::UnknownMemberId,
                                    ..
                                }
                            )
                        {
                            return Err(e);
                        }
                        tracing::debug!(error = %e, "rejoining the group");
                        tokio::time::sleep(self.config.client.retry_backoff).await;
                        continue;
                    }
                }
            }
            if self.config.enable_auto_commit
                && self.config.group_id.is_some()
                && self.last_commit.elapsed() >= self.config.auto_commit_interval
            {
                let _ = self.commit().await;
            }
            if self.buffer.len() >= max_records {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if self.assignment.is_empty() {
                tokio::time::sleep((deadline - now).min(Duration::from_millis(100))).await;
                continue;
            }
            let wait = (deadline - now).min(self.config.fetch_max_wait);
            if let Err(e) = self.fetch_once(wait, deadline).await {
                if !e.is_retriable() {
                    return Err(e);
                }
                tokio::time::sleep(self.config.client.retry_backoff).await;
                let _ = self.cluster.refresh(&[]).await;
            }
        }
        let n = self.buffer.len().min(max_records);
        let out: Vec<ConsumerRecord> = self.buffer.drain(..n).collect();
        for r in &out {
            self.consumed
                .insert((r.topic.clone(), r.partition), r.offset + 1);
        }
        // Prefetch: the next round is on its way while the application handles this batch.
        if !self.assignment.is_empty() && self.buffer.len() < max_records {
            let _ = self.start_fetches(self.config.fetch_max_wait).await;
        }
        Ok(out)
    }

    /// Gives up the group's partitions as in a rebalance (committing with auto-commit on, and
    /// telling the listener), then leaves the group.
    pub async fn close(mut self) -> Result<()> {
        for f in self.in_flight.drain(..) {
            f.abort();
        }
        if self.next_gen.is_some() {
            // Committed under the member's epoch, then the member leaves (epoch -1).
            let all = self.assignment.clone();
            self.revoke(&all).await;
            if let Some(n) = self.next_gen.take() {
                let group = self.config.group_id.clone().unwrap_or_default();
                n.leave(&self.cluster, &group).await;
            }
            return Ok(());
        }
        if self.membership.is_some() {
            // A member gives its partitions up as in a rebalance: commit, tell the listener.
            let all = self.assignment.clone();
            self.revoke(&all).await;
        } else if self.config.enable_auto_commit && self.config.group_id.is_some() {
            let _ = self.commit().await;
        }
        if let Some(m) = self.membership.take() {
            m.stop.store(true, Ordering::Release);
            // v0-v2 name the member at the top level, v3+ in a list.
            let version = m.coordinator.version_for::<LeaveGroupRequest>(5)?;
            let request = if version >= 3 {
                LeaveGroupRequest::default()
                    .with_group_id(GroupId(s(&m.group_id)))
                    .with_members(vec![leave_group_request::MemberIdentity::default()
                        .with_member_id(s(&m.member_id))])
            } else {
                LeaveGroupRequest::default()
                    .with_group_id(GroupId(s(&m.group_id)))
                    .with_member_id(s(&m.member_id))
            };
            let _ = m.coordinator.request_at(&request, version).await;
        }
        Ok(())
    }
}

async fn heartbeat_loop(
    coordinator: Arc<Connection>,
    group: String,
    member_id: String,
    generation: i32,
    interval: Duration,
    state: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
) {
    loop {
        tokio::time::sleep(interval).await;
        if stop.load(Ordering::Acquire) {
            return;
        }
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_generation_id(generation)
            .with_member_id(s(&member_id));
        match coordinator.request(&request, 4).await {
            Ok((r, _)) if r.error_code == 0 => {}
            Ok((r, _)) => {
                let lost = matches!(
                    ResponseError::try_from_code(r.error_code),
                    Some(
                        ResponseError::UnknownMemberId
                            | ResponseError::IllegalGeneration
                            | ResponseError::FencedInstanceId
                    )
                );
                flag(&state, if lost { LOST } else { REJOIN });
                return;
            }
            Err(_) => {
                flag(&state, REJOIN);
                return;
            }
        }
    }
}

//! The follower's side of replication: one fetcher task per leader broker, fetching every
//! partition this broker follows on that leader in one Fetch request, as Kafka's replica
//! fetchers do.
//!
//! Each round, partitions whose log has not been reconciled with the current leader epoch are
//! checked first with OffsetForLeaderEpoch (KIP-101, KIP-279): the leader says where the
//! follower's latest epoch ends in its log, and the follower truncates there, never by high
//! watermark alone. Then one Fetch with this broker's replica id and each partition's log end as
//! its offset (which is how the leader learns the follower's progress) brings the leader's
//! batches, appended with their offsets and epochs, and the leader's high watermark and log
//! start offset, which the follower follows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{FetchRequest, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weir_client::Connection;
use weir_types::{BrokerId, LeaderEpoch, Offset};

use crate::broker::Broker;
use crate::replica_manager::Partition;

/// Pause after a failed round (leader unreachable, or it refused every partition).
const BACKOFF: Duration = Duration::from_millis(200);

#[derive(Debug)]
struct Fetcher {
    partitions: watch::Sender<Vec<Arc<Partition>>>,
    task: JoinHandle<()>,
}

/// The fetcher tasks of this broker, by leader broker id.
#[derive(Debug, Default)]
pub(crate) struct Fetchers {
    tasks: Mutex<HashMap<BrokerId, Fetcher>>,
}

impl Fetchers {
    /// Points each leader's fetcher at the partitions this broker follows there, starting and
    /// stopping fetchers as leaders come and go. Runs after every metadata change.
    pub(crate) fn update(&self, broker: &Arc<Broker>) {
        let me = broker.node_id();
        let mut by_leader: HashMap<BrokerId, Vec<Arc<Partition>>> = HashMap::new();
        for p in broker.replicas.all() {
            if let Some(leader) = p.leader().filter(|l| *l != me) {
                by_leader.entry(leader).or_default().push(p);
            }
        }
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|leader, fetcher| {
            let keep = by_leader.contains_key(leader);
            if !keep {
                fetcher.task.abort();
            }
            keep
        });
        for (leader, partitions) in by_leader {
            match tasks.get(&leader) {
                Some(fetcher) if !fetcher.task.is_finished() => {
                    fetcher.partitions.send_replace(partitions);
                }
                _ => {
                    let (tx, rx) = watch::channel(partitions);
                    let task = tokio::spawn(run(Arc::downgrade(broker), leader, rx));
                    tasks.insert(
                        leader,
                        Fetcher {
                            partitions: tx,
                            task,
                        },
                    );
                }
            }
        }
    }

    /// Stops every fetcher.
    pub(crate) fn shutdown(&self) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        for (_, fetcher) in tasks.drain() {
            fetcher.task.abort();
        }
    }
}

/// Partitions left out of fetches until a time, after an error (by topic and index).
type Backoff = HashMap<(String, i32), Instant>;

async fn run(
    broker: Weak<Broker>,
    leader: BrokerId,
    mut partitions: watch::Receiver<Vec<Arc<Partition>>>,
) {
    let mut conn: Option<Connection> = None;
    let mut backoff = Backoff::new();
    // A failure is logged as a warning when it is new (a wrong inter-broker password, an
    // untrusted certificate, a refusal), and at debug while it repeats.
    let mut last_failure: Option<String> = None;
    loop {
        let targets = partitions.borrow_and_update().clone();
        if targets.is_empty() {
            if partitions.changed().await.is_err() {
                return;
            }
            continue;
        }
        let Some(b) = broker.upgrade() else { return };
        let now = Instant::now();
        backoff.retain(|_, until| *until > now);
        let outcome = round(&b, leader, &mut conn, &targets, &mut backoff).await;
        drop(b);
        match outcome {
            Ok(true) => last_failure = None,
            Ok(false) => tokio::time::sleep(BACKOFF).await,
            Err(why) => {
                if last_failure.as_deref() == Some(why.as_str()) {
                    tracing::debug!(%leader, error = %why, "replica fetch failed");
                } else {
                    tracing::warn!(%leader, error = %why, "replica fetch failed");
                    last_failure = Some(why);
                }
                conn = None;
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
}

/// One round against `leader`: reconcile logs with new epochs, then fetch. `Ok(false)` when
/// nothing could be fetched (the caller backs off).
async fn round(
    broker: &Arc<Broker>,
    leader: BrokerId,
    conn: &mut Option<Connection>,
    targets: &[Arc<Partition>],
    backoff: &mut Backoff,
) -> Result<bool, String> {
    let me = broker.node_id();
    if conn.as_ref().is_none_or(|c| c.is_closed()) {
        let image = broker.image();
        let info = image
            .brokers
            .get(&leader)
            .ok_or_else(|| format!("broker {leader} is not registered"))?;
        // The leader's endpoint on this broker's inter-broker listener (during a rolling change
        // of inter.broker.listener.name, a leader may still register another one as its own).
        let listener = broker.inter_broker_listener();
        let (host, port) = info
            .endpoint(listener)
            .ok_or_else(|| format!("leader {leader} has no listener {listener}"))?;
        let addr = format!("{host}:{port}");
        let timeout = Duration::from_millis(broker.config.replica_fetch_wait_max_ms + 10_000);
        let client_id = format!("weir-replica-{me}");
        let c = Connection::connect_with(&addr, &client_id, timeout, &broker.inter_broker_security)
            .await
            .map_err(|e| e.to_string())?;
        *conn = Some(c);
    }
    let Some(c) = conn.as_ref() else {
        return Err("no connection".into());
    };
    let following = |p: &Arc<Partition>| p.leader() == Some(leader);
    let unchecked: Vec<&Arc<Partition>> = targets
        .iter()
        .filter(|p| following(p) && p.state().truncated_for_epoch != Some(p.leader_epoch()))
        .collect();
    if !unchecked.is_empty() {
        reconcile(c, me, &unchecked).await?;
    }
    let ready: Vec<&Arc<Partition>> = targets
        .iter()
        .filter(|p| {
            following(p)
                && p.state().truncated_for_epoch == Some(p.leader_epoch())
                && !backoff.contains_key(&(p.topic.clone(), p.index))
        })
        .collect();
    if ready.is_empty() {
        return Ok(false);
    }
    fetch(broker, c, me, leader, &ready, backoff).await
}

/// OffsetForLeaderEpoch for each partition, then truncation to where its log diverges.
async fn reconcile(
    c: &Connection,
    me: BrokerId,
    partitions: &[&Arc<Partition>],
) -> Result<(), String> {
    let mut asked: Vec<(&Arc<Partition>, LeaderEpoch, Option<LeaderEpoch>)> = Vec::new();
    let mut topics: HashMap<String, Vec<OffsetForLeaderPartition>> = HashMap::new();
    let mut without_epochs = Vec::new();
    for p in partitions {
        let epoch = p.leader_epoch();
        let latest = p.log().epochs().latest_epoch();
        match latest {
            None => without_epochs.push((Arc::clone(p), epoch)),
            Some(latest) => {
                asked.push((p, epoch, Some(latest)));
                topics.entry(p.topic.clone()).or_default().push(
                    OffsetForLeaderPartition::default()
                        .with_partition(p.index)
                        .with_current_leader_epoch(epoch.0)
                        .with_leader_epoch(latest.0),
                );
            }
        }
    }
    if !without_epochs.is_empty() {
        // A truncation writes: on a blocking thread, never on an async worker.
        tokio::task::spawn_blocking(move || {
            without_epochs
                .iter()
                .try_for_each(|(p, epoch)| reconcile_without_epochs(p, *epoch))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    }
    if asked.is_empty() {
        return Ok(());
    }
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(me.0))
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetForLeaderTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(name)))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let (response, _) = c.request(&request, 4).await.map_err(|e| e.to_string())?;
    let mut truncations = Vec::new();
    for topic in response.topics {
        for answer in topic.partitions {
            let Some((p, epoch, latest)) = asked
                .iter()
                .find(|(p, _, _)| *p.topic == *topic.topic.0 && p.index == answer.partition)
            else {
                continue;
            };
            if answer.error_code != 0 {
                tracing::debug!(topic = %p.topic, partition = p.index, code = answer.error_code, "OffsetForLeaderEpoch refused");
                continue;
            }
            let Some(latest) = *latest else { continue };
            // The leader's answer; none when it has no epoch at or before ours (-1, -1).
            let answer = LeaderEpoch::from_wire(answer.leader_epoch)
                .zip(Offset::from_wire(answer.end_offset));
            truncations.push((Arc::clone(p), *epoch, latest, answer));
        }
    }
    // Truncations write and fsync: on a blocking thread, never on an async worker.
    tokio::task::spawn_blocking(move || {
        for (p, epoch, latest, answer) in truncations {
            if let Err(e) = reconcile_partition(&p, epoch, latest, answer) {
                tracing::error!(topic = %p.topic, partition = p.index, error = %e, "truncation failed");
            }
        }
    })
    .await
    .map_err(|e| format!("truncating failed: {e}"))
}

/// A follower's log with no batch under any epoch: nothing can diverge, but batches without an
/// epoch are cut to the high watermark (Kafka's fallback). Reconciled for `epoch` after.
pub(crate) fn reconcile_without_epochs(
    p: &Partition,
    epoch: LeaderEpoch,
) -> Result<(), weir_log::LogError> {
    let hw = p.high_watermark();
    if truncate(p, hw, epoch)? {
        p.state().truncated_for_epoch = Some(epoch);
    }
    Ok(())
}

/// Cuts a follower's log where it diverges from the leader's, given the leader's
/// OffsetForLeaderEpoch `answer` (epoch, end offset) for the follower's `latest` epoch, and marks
/// it reconciled for `epoch` when that settles it (otherwise the next round asks again).
pub(crate) fn reconcile_partition(
    p: &Partition,
    epoch: LeaderEpoch,
    latest: LeaderEpoch,
    answer: Option<(LeaderEpoch, Offset)>,
) -> Result<(), weir_log::LogError> {
    let (target, settled) = match answer {
        // The leader has no epoch at or before ours: Kafka's fallback, the high watermark.
        None => (p.high_watermark(), true),
        Some((answer_epoch, answer_end)) if answer_epoch == latest => (answer_end, true),
        Some((answer_epoch, answer_end)) => {
            // KIP-279: the leader's epoch is older than ours. Cut where it ends in both logs; if
            // we never had that epoch, ask again with our epoch before it.
            let log = p.log();
            match log
                .epochs()
                .end_offset_for(answer_epoch, log.log_end_offset())
            {
                Some((ours_epoch, ours_end)) => {
                    (answer_end.min(ours_end), ours_epoch == answer_epoch)
                }
                // None of ours is that old (Kafka's rule): cut where the leader's ends.
                None => (answer_end, true),
            }
        }
    };
    if truncate(p, target, epoch)? && settled {
        p.state().truncated_for_epoch = Some(epoch);
    }
    Ok(())
}

/// Cuts the follower's log at `offset` (if it reaches past it) and its watermark with it.
/// Only while the partition is still in `epoch`, checked under the log's lock (leadership changes
/// under it): a truncation that ran late, after this broker became leader, would cut its log.
/// Whether it was done.
fn truncate(p: &Partition, offset: Offset, epoch: LeaderEpoch) -> Result<bool, weir_log::LogError> {
    let mut log = p.log();
    if p.leader_epoch() != epoch {
        return Ok(false);
    }
    if offset < log.log_end_offset() {
        tracing::info!(topic = %p.topic, partition = p.index, from = %log.log_end_offset(), to = %offset, "truncating a diverging follower log");
        log.truncate_to(offset)?;
    }
    let end = log.log_end_offset();
    let mut state = p.state();
    state.high_watermark = state.high_watermark.min(end);
    Ok(true)
}

async fn fetch(
    broker: &Arc<Broker>,
    c: &Connection,
    me: BrokerId,
    leader: BrokerId,
    partitions: &[&Arc<Partition>],
    backoff: &mut Backoff,
) -> Result<bool, String> {
    // A fetch offset is what the leader counts as this replica's: a durable log offers only
    // what is on its disk (what the last round copied, or what it wrote as leader).
    sync_copied(me, partitions).await;
    let synced: Vec<&Arc<Partition>> = partitions
        .iter()
        .copied()
        .filter(|p| {
            let log = p.log();
            let on_disk = log.durable_end() >= log.log_end_offset();
            if !on_disk {
                backoff.insert((p.topic.clone(), p.index), Instant::now() + BACKOFF);
            }
            on_disk
        })
        .collect();
    let partitions = synced.as_slice();
    if partitions.is_empty() {
        return Ok(false);
    }
    let mut topics: HashMap<String, Vec<FetchPartition>> = HashMap::new();
    // The epoch each partition was fetched in: an answer is applied only if it still holds.
    let mut sent: HashMap<(String, i32), LeaderEpoch> = HashMap::new();
    for p in partitions {
        sent.insert((p.topic.clone(), p.index), p.leader_epoch());
        let (start, end) = {
            let log = p.log();
            (log.log_start_offset(), log.log_end_offset())
        };
        topics.entry(p.topic.clone()).or_default().push(
            FetchPartition::default()
                .with_partition(p.index)
                .with_current_leader_epoch(sent[&(p.topic.clone(), p.index)].0)
                .with_fetch_offset(end.0)
                .with_log_start_offset(start.0)
                .with_last_fetched_epoch(-1)
                .with_partition_max_bytes(broker.config.replica_fetch_max_bytes.max(1)),
        );
    }
    let request = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(me.0))
        .with_max_wait_ms(broker.config.replica_fetch_wait_max_ms.min(i32::MAX as u64) as i32)
        .with_min_bytes(1)
        .with_max_bytes(i32::MAX)
        .with_session_epoch(-1)
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(name)))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let (response, _) = c.request(&request, 12).await.map_err(|e| e.to_string())?;
    if response.error_code != 0 {
        return Err(format!("fetch refused with error {}", response.error_code));
    }
    let mut answers = Vec::new();
    for topic in response.responses {
        for data in topic.partitions {
            let Some(p) = partitions
                .iter()
                .find(|p| *p.topic == *topic.topic.0 && p.index == data.partition_index)
            else {
                continue;
            };
            let epoch = sent[&(p.topic.clone(), p.index)];
            answers.push((Arc::clone(p), epoch, data));
        }
    }
    // The copies (and any restart of a log) are written on a blocking thread, never on an async
    // worker.
    let applied = tokio::task::spawn_blocking(move || {
        answers
            .into_iter()
            .map(|(p, epoch, data)| {
                let ok = apply(&p, leader, epoch, &data);
                (p, ok)
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| format!("applying fetched records failed: {e}"))?;
    let mut healthy = false;
    for (p, ok) in applied {
        if ok {
            healthy = true;
        } else {
            backoff.insert((p.topic.clone(), p.index), Instant::now() + BACKOFF);
        }
    }
    Ok(healthy)
}

/// Fsyncs, in one blocking task, the durable logs (`write.caching=false`) whose end is not on
/// disk yet.
async fn sync_copied(me: BrokerId, partitions: &[&Arc<Partition>]) {
    let unsynced: Vec<Arc<Partition>> = partitions
        .iter()
        .filter(|p| {
            let log = p.log();
            log.durable_end() < log.log_end_offset()
        })
        .map(|p| Arc::clone(p))
        .collect();
    if unsynced.is_empty() {
        return;
    }
    let synced = tokio::task::spawn_blocking(move || crate::flusher::sync_all(me, &unsynced));
    if let Err(e) = synced.await {
        tracing::error!(error = %e, "follower fsync task failed");
    }
}

/// Applies one partition's fetch answer, if the partition is still followed from `leader` in
/// `epoch` and reconciled for it (checked under the log lock, which leadership changes take);
/// returns whether the partition is healthy.
pub(crate) fn apply(
    p: &Partition,
    leader: BrokerId,
    epoch: LeaderEpoch,
    data: &kafka_protocol::messages::fetch_response::PartitionData,
) -> bool {
    let mut log = p.log();
    let leader_start = Offset(data.log_start_offset);
    let current = p.leader() == Some(leader)
        && p.leader_epoch() == epoch
        && p.state().truncated_for_epoch == Some(epoch);
    if !current {
        return true;
    }
    let code = data.error_code;
    if code == ResponseError::OffsetOutOfRange.code() {
        if log.log_end_offset() < leader_start {
            tracing::info!(topic = %p.topic, partition = p.index, start = %leader_start, "follower log ends before the leader's starts; starting over there");
            if let Err(e) = log.truncate_fully_and_start_at(leader_start) {
                tracing::error!(topic = %p.topic, partition = p.index, error = %e, "restarting the follower log failed");
            }
            let mut state = p.state();
            state.high_watermark = state.high_watermark.min(leader_start);
        } else {
            p.state().truncated_for_epoch = None;
        }
        return false;
    }
    if code != 0 {
        tracing::debug!(topic = %p.topic, partition = p.index, code, "replica fetch refused");
        return false;
    }
    if let Some(records) = data.records.as_ref().filter(|r| !r.is_empty()) {
        if let Err(e) = log.append_as_follower(records, weir_log::now_ms()) {
            tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "appending replicated batches failed; reconciling again");
            p.state().truncated_for_epoch = None;
            return false;
        }
    }
    let start = leader_start.min(log.log_end_offset());
    if start > log.log_start_offset() {
        if let Err(e) = log.delete_records_before(start) {
            tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "following the leader's log start failed");
        }
    }
    let end = log.log_end_offset();
    let mut state = p.state();
    state.high_watermark = state
        .high_watermark
        .max(Offset(data.high_watermark).min(end))
        .min(end);
    true
}

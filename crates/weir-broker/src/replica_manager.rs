//! The replica manager: the partitions this broker hosts, each with its log.
//!
//! It follows the metadata image: [`ReplicaManager::sync`] opens a log for every partition the
//! image places on this broker, applies config changes, and deletes the logs of removed topics.
//! Appends bump a watch counter that parked (long-poll) fetches wait on.
//!
//! Lock order: the partition map lock is never held while a partition's log lock is taken for I/O.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use std::time::Instant;

use tokio::sync::watch;
use uuid::Uuid;
use weir_log::storage::{self, Storage};
use weir_log::{AppendInfo, Disk, FileCache, Log, LogConfig, LogError};
use weir_meta::configs::{effective_topic_configs, EffectiveConfig};
use weir_meta::{ConfigResource, MetadataImage, PartitionImage, PartitionLog};

use crate::flusher::FlushQueue;
use crate::partition_dirs::{open_logs, partition_dir, NewPartition, OPEN_THREADS};
use crate::replication::ReplicaState;

/// One partition hosted by this broker.
#[derive(Debug)]
pub struct Partition {
    pub topic: String,
    pub topic_id: Uuid,
    pub index: i32,
    log: Mutex<Log>,
    pub leader: AtomicI32,
    pub leader_epoch: AtomicI32,
    pub isr_size: AtomicUsize,
    pub min_insync_replicas: AtomicUsize,
    /// Replication: replicas, ISR, followers' progress, high watermark. Lock order: the log lock
    /// before this one, never the other way.
    state: Mutex<ReplicaState>,
    /// Bumped on every change of the high watermark, ISR or leadership (acks=all waits on it).
    changes: watch::Sender<u64>,
    /// Where follower progress and leadership times come from (a simulated clock in tests).
    clock: Clock,
    /// Where appends to a durable log (`write.caching=false`) ask for their fsync.
    flush_queue: FlushQueue,
}

/// A source of [`Instant`]s: the real clock, or a simulation's.
#[derive(Clone)]
pub(crate) struct Clock(Arc<dyn Fn() -> Instant + Send + Sync>);

impl Clock {
    pub(crate) fn real() -> Clock {
        Clock(Arc::new(Instant::now))
    }

    #[cfg(test)]
    pub(crate) fn new(f: impl Fn() -> Instant + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(f))
    }

    pub(crate) fn now(&self) -> Instant {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

impl Partition {
    /// Locks the log. A panic while the lock was held poisons it; the log's own state is still
    /// consistent at every await-free step, so the guard is recovered rather than propagated.
    pub fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, ReplicaState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes whoever waits on this partition's high watermark, ISR or leadership.
    pub(crate) fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    pub fn is_leader(&self, node_id: i32) -> bool {
        self.leader.load(Ordering::Acquire) == node_id
    }

    /// The high watermark: on the leader, the lowest log end offset over the ISR; on a follower,
    /// the leader's as last fetched, capped by its own log end. Consumers read below it.
    pub fn high_watermark(&self) -> i64 {
        self.state().high_watermark
    }

    /// Appends a producer's (or the group coordinator's) batches as the leader, in the current
    /// leader epoch, and moves the high watermark if no follower needs to copy them first.
    /// Returns the epoch the batches carry, or `None` when this broker no longer leads.
    /// Leadership is checked under the log lock, which [`Partition::apply_image`] also holds to
    /// change it: a deposed leader never writes a batch stamped with its successor's epoch.
    /// A durable log (`write.caching=false`) counts its records for the high watermark only once
    /// the flush thread fsynced them.
    pub fn append_as_leader(
        self: &Arc<Self>,
        node_id: i32,
        records: &mut [u8],
        now_ms: i64,
    ) -> Result<Option<(AppendInfo, i32)>, LogError> {
        let mut log = self.log();
        if !self.is_leader(node_id) {
            return Ok(None);
        }
        let epoch = self.leader_epoch();
        let info = log.append_as_leader(records, epoch, now_ms)?;
        let moved = {
            let mut state = self.state();
            let moved = state.advance_high_watermark(node_id, log.durable_end());
            debug_assert!(
                state.high_watermark <= log.log_end_offset(),
                "the high watermark passed the log end"
            );
            moved
        };
        let unsynced = log.durable_end() < log.log_end_offset();
        drop(log);
        if unsynced {
            self.flush_queue.request(self.clone());
        }
        if moved {
            self.changed();
        }
        Ok(Some((info, epoch)))
    }

    /// Asks the flush thread to fsync this log.
    pub(crate) fn request_sync(self: &Arc<Self>) {
        self.flush_queue.request(self.clone());
    }

    /// Fsyncs the log up to its end (without holding its lock during the fsync) and, on the
    /// leader, moves the high watermark to what is now durable. Returns whether it moved.
    pub(crate) fn sync_log(&self, me: i32) -> Result<bool, LogError> {
        let Some(target) = self.log().sync_target()? else {
            return Ok(false);
        };
        let result = target.sync();
        let mut log = self.log();
        log.synced(&target, result)?;
        let moved =
            self.is_leader(me) && self.state().advance_high_watermark(me, log.durable_end());
        drop(log);
        if moved {
            self.changed();
        }
        Ok(moved)
    }

    /// Whether records up to `last_offset`, written in `epoch`, are settled for acks=all: `None`
    /// while the ISR does not hold them yet, else the answer's error code (0 for success).
    pub(crate) fn replication_status(&self, me: i32, epoch: i32, last_offset: i64) -> Option<i16> {
        use kafka_protocol::error::ResponseError;
        if !self.is_leader(me) || self.leader_epoch() != epoch {
            return Some(ResponseError::NotLeaderOrFollower.code());
        }
        // Kafka's order: once the watermark passed the records, the ISR that holds them must
        // still be large enough (a shrink to the leader alone moves the watermark too).
        if self.high_watermark() > last_offset {
            let enough = self.isr_size.load(Ordering::Acquire)
                >= self.min_insync_replicas.load(Ordering::Acquire);
            return Some(if enough {
                0
            } else {
                ResponseError::NotEnoughReplicasAfterAppend.code()
            });
        }
        None
    }

    /// Waits until every ISR member holds the records up to `last_offset`, written in `epoch`
    /// (acks=all). Returns 0, or why that cannot be known: NOT_LEADER_OR_FOLLOWER when
    /// leadership moved, NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR that holds them is below
    /// `min.insync.replicas`, REQUEST_TIMED_OUT at `deadline`. The records stay written.
    pub(crate) async fn wait_replicated(
        &self,
        me: i32,
        epoch: i32,
        last_offset: i64,
        deadline: tokio::time::Instant,
    ) -> i16 {
        use kafka_protocol::error::ResponseError;
        let mut changes = self.subscribe();
        loop {
            changes.mark_unchanged();
            if let Some(code) = self.replication_status(me, epoch, last_offset) {
                return code;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                // The partition left this broker (its topic was deleted).
                Ok(Err(_)) => return ResponseError::NotLeaderOrFollower.code(),
                Err(_) => return ResponseError::RequestTimedOut.code(),
            }
        }
    }

    /// A follower fetched at `offset`: records its progress; returns whether the high watermark
    /// moved.
    pub(crate) fn record_follower_fetch(&self, me: i32, follower: i32, offset: i64) -> bool {
        let log = self.log();
        let end = log.log_end_offset();
        // Only an offset the log holds says how far the follower reached; a larger one is a
        // follower that diverged (or a client posing as one), and fails its read.
        if offset < log.log_start_offset() || offset > end || !self.is_leader(me) {
            return false;
        }
        let mut state = self.state();
        if !state.replicas.contains(&follower) || follower == me {
            return false;
        }
        state.record_fetch(follower, offset, end, self.clock.now());
        let moved = state.advance_high_watermark(me, log.durable_end());
        drop(state);
        drop(log);
        if moved {
            self.changed();
        }
        moved
    }

    /// Takes the image's view of this partition: leader, epoch, replicas and ISR.
    /// Returns whether the high watermark moved.
    fn apply_image(
        self: &Arc<Self>,
        me: i32,
        leader: i32,
        epoch: i32,
        replicas: &[i32],
        isr: &[i32],
    ) -> bool {
        // Leadership changes under the log lock (see `append_as_leader`).
        let log = self.log();
        let new_epoch =
            epoch != self.leader_epoch() || leader != self.leader.load(Ordering::Acquire);
        self.leader.store(leader, Ordering::Release);
        self.leader_epoch.store(epoch, Ordering::Release);
        self.isr_size.store(isr.len(), Ordering::Release);
        let end = log.log_end_offset();
        let mut state = self.state();
        let before = state.high_watermark;
        state.replicas = replicas.to_vec();
        state.isr = isr.to_vec();
        // A replica that left (a reassignment) is forgotten: if it comes back, it starts from
        // nothing, not from the log end it had.
        state.followers.retain(|b, _| replicas.contains(b));
        if state
            .pending_isr
            .as_ref()
            .is_some_and(|p| p.settled_by(isr))
        {
            state.pending_isr = None;
        }
        // A new leader or epoch: this includes this broker taking over from another.
        let began_leading = leader == me && new_epoch;
        if leader == me {
            if began_leading {
                state.become_leader(me, self.clock.now());
                tracing::info!(topic = %self.topic, partition = self.index, epoch, "leading");
            }
            state.advance_high_watermark(me, log.durable_end());
            if log.durable_end() < end {
                self.flush_queue.request(self.clone());
            }
        } else {
            state.followers.clear();
            state.pending_isr = None;
            state.high_watermark = state.high_watermark.min(end);
        }
        let moved = state.high_watermark != before;
        drop(state);
        drop(log);
        self.changed();
        moved
    }
}

type PartitionKey = (String, i32);

#[derive(Debug)]
pub struct ReplicaManager {
    /// The file system under the data directory: the real one, or a simulated disk.
    storage: Arc<dyn Storage>,
    data_dir: PathBuf,
    node_id: i32,
    partitions: RwLock<HashMap<PartitionKey, Arc<Partition>>>,
    appended: Arc<watch::Sender<u64>>,
    flush_queue: FlushQueue,
    /// Held for a whole [`ReplicaManager::sync`]: two syncs must not race to create one log.
    syncing: Mutex<()>,
    clock: Clock,
    /// High watermarks from `replication-offset-checkpoint`, read at start; and the last ones
    /// written, to skip writing an unchanged file.
    checkpointed: Mutex<HashMap<PartitionKey, i64>>,
    /// A digest of every (partition, high watermark) when the checkpoint was last written: a
    /// second's check of 50,000 unchanged partitions then allocates nothing.
    checkpoint_digest: AtomicU64,
    /// Set by any log of this broker that failed (see `weir_log::Log::report_failure_to`), so
    /// the check for a failed log directory is one load, not a lock of every log.
    log_failed: Arc<AtomicBool>,
    /// Whether any topic sets `flush.ms`: if none does, the time-based flush looks at no log.
    timed_flushes: AtomicBool,
    /// Threads that open new logs at once (1 in simulations, which must run the same each time).
    open_threads: usize,
    /// Set by [`ReplicaManager::close_all`]: no later metadata sync opens a log again.
    closed: AtomicBool,
}

/// Builds a log's settings from a topic's effective configs.
pub fn log_config(effective: &[EffectiveConfig]) -> LogConfig {
    let mut config = LogConfig::default();
    for e in effective {
        let v = e.value.as_str();
        let long = || v.parse::<i64>().ok();
        match e.def.name {
            "segment.bytes" => {
                config.segment_bytes = long().map_or(config.segment_bytes, |n| n.max(14) as u64)
            }
            "segment.ms" => config.segment_ms = long().unwrap_or(config.segment_ms),
            "retention.ms" => config.retention_ms = long().unwrap_or(config.retention_ms),
            "retention.bytes" => config.retention_bytes = long().unwrap_or(config.retention_bytes),
            "index.interval.bytes" => {
                config.index_interval_bytes =
                    long().map_or(config.index_interval_bytes, |n| n.max(0) as u64)
            }
            "max.message.bytes" => {
                config.max_message_bytes =
                    long().map_or(config.max_message_bytes, |n| n.max(0) as usize)
            }
            "flush.messages" => {
                config.flush_messages = long().map_or(config.flush_messages, |n| n.max(1) as u64)
            }
            "flush.ms" => config.flush_ms = long().unwrap_or(config.flush_ms),
            "message.timestamp.type" => config.log_append_time = v == "LogAppendTime",
            "cleanup.policy" => {
                config.cleanup_delete = v.split(',').any(|p| p.trim() == "delete");
                config.cleanup_compact = v.split(',').any(|p| p.trim() == "compact");
            }
            "delete.retention.ms" => {
                config.delete_retention_ms = long().unwrap_or(config.delete_retention_ms)
            }
            "write.caching" => config.write_caching = v.eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    config
}

/// Kafka's name and format: a version line, a count line, then `topic partition offset` lines.
const HW_CHECKPOINT: &str = "replication-offset-checkpoint";

fn read_checkpoint(fs: &dyn Storage, path: &Path) -> HashMap<PartitionKey, i64> {
    let Ok(Some(text)) = storage::read_text(fs, path) else {
        return HashMap::new();
    };
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let topic = parts.next()?.to_string();
            let partition = parts.next()?.parse().ok()?;
            let offset = parts.next()?.parse().ok()?;
            Some(((topic, partition), offset))
        })
        .collect()
}

fn write_checkpoint(
    fs: &dyn Storage,
    path: &Path,
    entries: &HashMap<PartitionKey, i64>,
) -> std::io::Result<()> {
    let mut text = format!("0\n{}\n", entries.len());
    for ((topic, partition), offset) in entries {
        text.push_str(&format!("{topic} {partition} {offset}\n"));
    }
    storage::write_atomically(fs, path, text.as_bytes())
}

impl Drop for ReplicaManager {
    fn drop(&mut self) {
        self.flush_queue.close();
    }
}

impl ReplicaManager {
    /// A replica manager on the real file system, keeping at most `open_files` files of its logs
    /// open at once (see `weir_log::FileCache`).
    pub fn new(data_dir: &Path, node_id: i32, open_files: usize) -> ReplicaManager {
        let storage = Arc::new(FileCache::new(Disk::shared(), open_files));
        let mut manager = ReplicaManager::on_storage(storage, data_dir, node_id, Clock::real());
        manager.open_threads = OPEN_THREADS;
        manager
    }

    /// A replica manager whose logs live in `storage` (a simulated disk, in simulations).
    pub(crate) fn on_storage(
        storage: Arc<dyn Storage>,
        data_dir: &Path,
        node_id: i32,
        clock: Clock,
    ) -> ReplicaManager {
        let (appended, _) = watch::channel(0);
        let checkpointed = read_checkpoint(&*storage, &data_dir.join(HW_CHECKPOINT));
        ReplicaManager {
            storage,
            clock,
            flush_queue: FlushQueue::default(),
            data_dir: data_dir.to_path_buf(),
            node_id,
            partitions: RwLock::new(HashMap::new()),
            appended: Arc::new(appended),
            syncing: Mutex::new(()),
            checkpointed: Mutex::new(checkpointed),
            checkpoint_digest: AtomicU64::new(0),
            log_failed: Arc::new(AtomicBool::new(false)),
            timed_flushes: AtomicBool::new(false),
            open_threads: 1,
            closed: AtomicBool::new(false),
        }
    }

    /// Starts the thread that fsyncs durable logs in groups (see `flusher.rs`).
    pub fn start_flusher(&self) -> std::io::Result<()> {
        self.flush_queue.start(self.node_id, self.appended.clone())
    }

    /// Runs the fsyncs asked for so far on this thread (for simulations, which run no flush
    /// thread). Wakes parked fetches when a high watermark moved.
    #[cfg(test)]
    pub(crate) fn flush_pending(&self) {
        if self.flush_queue.run_pending(self.node_id) {
            self.notify_append();
        }
    }

    /// Writes every partition's high watermark to `replication-offset-checkpoint` (when one
    /// changed), so a restarted broker does not show consumers less, or more, than it did.
    pub fn checkpoint_high_watermarks(&self) {
        // Each watermark is read once: the digest and the file must tell of the same values.
        let all: Vec<(Arc<Partition>, i64)> = self
            .all()
            .into_iter()
            .map(|p| {
                let hw = p.high_watermark();
                (p, hw)
            })
            .collect();
        // (topic id, partition, watermark) name the entry; a multiply-and-rotate mix of them is
        // enough to notice a change, and costs a few nanoseconds a partition (not SipHash over
        // the topic's name).
        let digest = all.iter().fold(all.len() as u64, |acc, (p, hw)| {
            let id = p.topic_id.as_u128();
            [id as u64, (id >> 64) as u64, p.index as u64, *hw as u64]
                .iter()
                .fold(acc, |acc, v| {
                    (acc ^ v)
                        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                        .rotate_left(29)
                })
        });
        if self.checkpoint_digest.load(Ordering::Acquire) == digest {
            return;
        }
        let mut now: HashMap<PartitionKey, i64> = all
            .iter()
            .map(|(p, hw)| ((p.topic.clone(), p.index), *hw))
            .collect();
        let mut last = self.checkpointed.lock().unwrap_or_else(|p| p.into_inner());
        // Partitions on disk but not open yet (metadata still replaying) keep their entries.
        for (key, hw) in last.iter() {
            let dir = partition_dir(&self.data_dir, &key.0, key.1);
            if !now.contains_key(key) && self.storage.exists(&dir) {
                now.insert(key.clone(), *hw);
            }
        }
        if *last == now {
            self.checkpoint_digest.store(digest, Ordering::Release);
            return;
        }
        match write_checkpoint(&*self.storage, &self.data_dir.join(HW_CHECKPOINT), &now) {
            Ok(()) => {
                *last = now;
                self.checkpoint_digest.store(digest, Ordering::Release);
            }
            Err(e) => tracing::error!(error = %e, "writing {HW_CHECKPOINT} failed"),
        }
    }

    fn map(&self) -> std::sync::RwLockReadGuard<'_, HashMap<PartitionKey, Arc<Partition>>> {
        self.partitions.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.map().get(&(topic.to_string(), partition)).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.map().values().cloned().collect()
    }

    /// Wakes parked fetches: new data was appended somewhere.
    pub fn notify_append(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Makes the hosted partitions match the image: opens, reconfigures and deletes logs, and
    /// starts or ends leaderships. Without `may_lead` (this incarnation is not registered yet, and
    /// the image is what an earlier one left) it leads nothing: the controller has yet to move
    /// leadership away from a restarted broker.
    pub fn sync(
        &self,
        image: &MetadataImage,
        broker_defaults: &BTreeMap<String, String>,
        may_lead: bool,
    ) -> Result<(), LogError> {
        let _one_at_a_time = self.syncing.lock().unwrap_or_else(|p| p.into_inner());
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut wanted: HashMap<PartitionKey, (Uuid, PartitionImage)> = HashMap::new();
        let mut configs: HashMap<String, LogConfig> = HashMap::new();
        let mut min_isr: HashMap<String, usize> = HashMap::new();
        for topic in image.topics() {
            let effective = effective_topic_configs(
                &image.configs(&ConfigResource::Topic(topic.name.clone())),
                broker_defaults,
            );
            let min = effective
                .iter()
                .find(|e| e.def.name == "min.insync.replicas")
                .and_then(|e| e.value.parse::<usize>().ok())
                .unwrap_or(1);
            min_isr.insert(topic.name.clone(), min);
            configs.insert(topic.name.clone(), log_config(&effective));
            for (p, part) in &topic.partitions {
                if part.replicas.contains(&self.node_id) {
                    wanted.insert((topic.name.clone(), *p), (topic.topic_id, part.clone()));
                }
            }
        }
        // Remove partitions that are gone (deleted topics, or a topic re-created under a new id).
        let doomed: Vec<Arc<Partition>> = {
            let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<PartitionKey> = map
                .iter()
                .filter(|(k, p)| wanted.get(k).is_none_or(|w| w.0 != p.topic_id))
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| map.remove(k)).collect()
        };
        for partition in doomed {
            let dir = partition_dir(&self.data_dir, &partition.topic, partition.index);
            tracing::info!(topic = %partition.topic, partition = partition.index, "deleting partition log");
            // Whoever waits on it (an acks=all produce, a commit) hears that it left.
            partition.leader.store(-1, Ordering::Release);
            partition.changed();
            drop(partition);
            match self.storage.remove_dir_all(&dir) {
                // Durably: a directory that came back after a power cut would never be removed.
                Ok(()) => storage::sync_parent(&*self.storage, &dir)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        let timed = configs.values().any(|c| c.flush_ms < i64::MAX);
        self.timed_flushes.store(timed, Ordering::Release);
        // Whether a high watermark moved (an ISR shrank): parked fetches must look again.
        let mut moved = false;
        let mut opening = Vec::new();
        for ((topic, p), (topic_id, state)) in wanted {
            let PartitionImage {
                replicas,
                isr,
                leader,
                leader_epoch: epoch,
                ..
            } = state;
            let leader = if leader == self.node_id && !may_lead {
                -1
            } else {
                leader
            };
            let config = configs.get(&topic).cloned().unwrap_or_default();
            let min = min_isr.get(&topic).copied().unwrap_or(1);
            if let Some(existing) = self.get(&topic, p) {
                existing.min_insync_replicas.store(min, Ordering::Release);
                {
                    let mut log = existing.log();
                    if *log.config() != config {
                        log.set_config(config);
                    }
                }
                moved |= existing.apply_image(self.node_id, leader, epoch, &replicas, &isr);
                continue;
            }
            opening.push(NewPartition {
                topic,
                index: p,
                topic_id,
                config,
                min_insync_replicas: min,
                leader,
                leader_epoch: epoch,
                replicas,
                isr,
            });
        }
        // New logs open in parallel: each open fsyncs, and a restart opens every log at once.
        let opened = open_logs(&self.storage, &self.data_dir, &opening, self.open_threads);
        let mut failed = None;
        for (new, log) in opening.into_iter().zip(opened) {
            let NewPartition {
                topic,
                index: p,
                topic_id,
                min_insync_replicas: min,
                leader,
                leader_epoch: epoch,
                replicas,
                isr,
                ..
            } = new;
            let mut log = match log {
                Ok(log) => log,
                Err(e) => {
                    tracing::error!(topic = %topic, partition = p, error = %e, "opening the log failed");
                    failed.get_or_insert(e);
                    continue;
                }
            };
            log.report_failure_to(self.log_failed.clone());
            let high_watermark = self
                .checkpointed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&(topic.clone(), p))
                .copied()
                .unwrap_or(0)
                .clamp(log.log_start_offset(), log.log_end_offset());
            let partition = Arc::new(Partition {
                topic: topic.clone(),
                topic_id,
                index: p,
                log: Mutex::new(log),
                // Not yet leading: apply_image below starts the leadership.
                leader: AtomicI32::new(-1),
                leader_epoch: AtomicI32::new(epoch),
                isr_size: AtomicUsize::new(isr.len()),
                min_insync_replicas: AtomicUsize::new(min),
                state: Mutex::new(ReplicaState::new(
                    replicas.clone(),
                    isr.clone(),
                    high_watermark,
                )),
                changes: watch::channel(0).0,
                clock: self.clock.clone(),
                flush_queue: self.flush_queue.clone(),
            });
            moved |= partition.apply_image(self.node_id, leader, epoch, &replicas, &isr);

            self.partitions
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert((topic, p), partition);
        }
        if moved {
            self.notify_append();
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Where this broker's logs of recovering partitions end (those whose ISR is empty, see
    /// `weir_meta::election`), for the ones its incarnation `broker_epoch` has not reported in
    /// this recovery (leader epoch) yet.
    pub fn recovery_reports(&self, image: &MetadataImage, broker_epoch: i64) -> Vec<PartitionLog> {
        let me = self.node_id;
        let mut out = Vec::new();
        for topic in image.topics() {
            for (index, p) in &topic.partitions {
                let reported = p.recovery.iter().any(|r| {
                    r.broker_id == me
                        && r.broker_epoch == broker_epoch
                        && r.leader_epoch == p.leader_epoch
                });
                if !p.isr.is_empty()
                    || reported
                    || !p.replicas.contains(&me)
                    || p.adding_replicas.contains(&me)
                {
                    continue;
                }
                let Some(partition) = self.get(&topic.name, *index) else {
                    continue;
                };
                let log = partition.log();
                out.push(PartitionLog {
                    topic_id: topic.topic_id,
                    partition: *index,
                    leader_epoch: p.leader_epoch,
                    last_epoch: log.epochs().latest_epoch().unwrap_or(-1),
                    log_end_offset: log.durable_end(),
                });
            }
        }
        out
    }

    /// Gives up every leadership (the log directory failed): appends and consumer fetches get
    /// NOT_LEADER_OR_FOLLOWER, and waiters hear that leadership moved.
    pub fn resign_all(&self) {
        for p in self.all() {
            let log = p.log();
            p.leader.store(-1, Ordering::Release);
            drop(log);
            p.changed();
        }
        self.notify_append();
    }

    /// Why the log directory failed, if a write or fsync failed in one of its logs.
    pub fn failed_log_dir(&self) -> Option<String> {
        if !self.log_failed.load(Ordering::Acquire) {
            return None;
        }
        self.all().iter().find_map(|p| {
            let log = p.log();
            log.poisoned()
                .map(|why| format!("{}-{}: {why}", p.topic, p.index))
        })
    }

    /// Applies retention to every log; errors are logged per partition.
    pub fn enforce_retention(&self, now_ms: i64) {
        for partition in self.all() {
            if let Err(e) = partition.log().enforce_retention(now_ms) {
                tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "retention failed");
            }
        }
    }

    /// Runs a compaction pass on compacted logs that have something to clean.
    pub fn compact_due(&self, now_ms: i64) {
        for partition in self.all() {
            if let Err(e) = partition.log().maybe_compact(now_ms) {
                tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "compaction failed");
            }
        }
    }

    /// Flushes logs whose `flush.ms` has passed.
    pub fn flush_due(&self, now_ms: i64) {
        if !self.timed_flushes.load(Ordering::Acquire) {
            return;
        }
        for partition in self.all() {
            let mut log = partition.log();
            if log.flush_due(now_ms) {
                if let Err(e) = log.flush() {
                    tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "flush failed");
                }
            }
        }
    }

    /// Closes every log cleanly (flush, clean-shutdown marker). Returns whether every log was
    /// flushed.
    pub fn close_all(&self) -> bool {
        // A metadata sync still opening logs finishes first, so every log it opens is closed.
        let _no_sync = self.syncing.lock().unwrap_or_else(|p| p.into_inner());
        self.closed.store(true, Ordering::Release);
        self.flush_queue.close();
        let mut clean = true;
        self.checkpoint_high_watermarks();
        let all: Vec<Arc<Partition>> = {
            let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
            map.drain().map(|(_, p)| p).collect()
        };
        for partition in all {
            match Arc::try_unwrap(partition) {
                Ok(partition) => {
                    let log = partition
                        .log
                        .into_inner()
                        .unwrap_or_else(|p| p.into_inner());
                    if let Err(e) = log.close() {
                        tracing::error!(error = %e, "closing a log failed");
                        clean = false;
                    }
                }
                Err(shared) => {
                    if let Err(e) = shared.log().flush() {
                        tracing::error!(error = %e, "flushing a log failed");
                        clean = false;
                    }
                }
            }
        }
        clean
    }
}

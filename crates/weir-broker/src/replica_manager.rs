//! The replica manager: the partitions this broker hosts, each with its log.
//!
//! It follows the metadata image: [`ReplicaManager::sync`] opens a log for every partition the
//! image places on this broker, applies config changes, and deletes the logs of removed topics.
//! It applies only what changed since the image it applied last ([`MetadataImage::changes_since`]),
//! so a change to one topic costs that topic's partitions, not every hosted one.
//! Each partition wakes its own parked fetches (`crate::waiters`) and acks=all waiters.
//!
//! Lock order: the partition map lock is never held while a partition's log lock is taken for I/O.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use uuid::Uuid;
use weir_log::storage::{self, Storage};
use weir_log::{Disk, FileCache, LogConfig, LogError};
use weir_meta::broker_configs::TopicDefaults;
use weir_meta::configs::{effective_topic_configs, EffectiveConfig};
use weir_meta::{ConfigResource, ImageDelta, MetadataImage, PartitionLog};
use weir_types::{BrokerId, Offset};

use crate::flusher::FlushQueue;
pub(crate) use crate::partition::Clock;
pub use crate::partition::Partition;
use crate::partition_dirs::{open_logs, partition_dir, NewPartition, OPEN_THREADS};
use crate::replication::ReplicaState;

type PartitionKey = (String, i32);

#[derive(Debug)]
pub struct ReplicaManager {
    /// The file system under the data directory: the real one, or a simulated disk.
    storage: Arc<dyn Storage>,
    data_dir: PathBuf,
    node_id: BrokerId,
    /// Hosted partitions by topic, then index: a lookup by `&str` allocates nothing.
    partitions: RwLock<HashMap<String, BTreeMap<i32, Arc<Partition>>>>,
    /// The image [`ReplicaManager::sync`] applied last, and whether it could lead then.
    applied: Mutex<Option<(Arc<MetadataImage>, bool)>>,
    /// Topics that set `flush.ms`.
    timed_topics: Mutex<HashSet<Uuid>>,
    flush_queue: FlushQueue,
    /// Held for a whole [`ReplicaManager::sync`]: two syncs must not race to create one log.
    syncing: Mutex<()>,
    clock: Clock,
    /// High watermarks from `replication-offset-checkpoint`, read at start; and the last ones
    /// written, to skip writing an unchanged file.
    checkpointed: Mutex<HashMap<PartitionKey, Offset>>,
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
    /// What every partition's probe shares (fsync times, ISR changes).
    probe: Arc<crate::metrics::ReplicaProbe>,
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

/// A topic's log settings and `min.insync.replicas`, from its own configs and the broker's
/// defaults.
fn topic_settings(
    image: &MetadataImage,
    topic: &str,
    broker_defaults: &TopicDefaults,
) -> (LogConfig, usize) {
    let effective = effective_topic_configs(
        &image.configs(&ConfigResource::Topic(topic.to_string())),
        broker_defaults,
    );
    let min = effective
        .iter()
        .find(|e| e.def.name == "min.insync.replicas")
        .and_then(|e| e.value.parse::<usize>().ok())
        .unwrap_or(1);
    (log_config(&effective), min)
}

/// Kafka's name and format: a version line, a count line, then `topic partition offset` lines.
const HW_CHECKPOINT: &str = "replication-offset-checkpoint";

fn read_checkpoint(fs: &dyn Storage, path: &Path) -> HashMap<PartitionKey, Offset> {
    let Ok(Some(text)) = storage::read_text(fs, path) else {
        return HashMap::new();
    };
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let topic = parts.next()?.to_string();
            let partition = parts.next()?.parse().ok()?;
            let offset = Offset(parts.next()?.parse().ok()?);
            Some(((topic, partition), offset))
        })
        .collect()
}

fn write_checkpoint(
    fs: &dyn Storage,
    path: &Path,
    entries: &HashMap<PartitionKey, Offset>,
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
    pub fn new(data_dir: &Path, node_id: BrokerId, open_files: usize) -> ReplicaManager {
        let storage = Arc::new(FileCache::new(Disk::shared(), open_files));
        let mut manager = ReplicaManager::on_storage(storage, data_dir, node_id, Clock::real());
        manager.open_threads = OPEN_THREADS;
        manager
    }

    /// A replica manager whose logs live in `storage` (a simulated disk, in simulations).
    pub(crate) fn on_storage(
        storage: Arc<dyn Storage>,
        data_dir: &Path,
        node_id: BrokerId,
        clock: Clock,
    ) -> ReplicaManager {
        let checkpointed = read_checkpoint(&*storage, &data_dir.join(HW_CHECKPOINT));
        ReplicaManager {
            storage,
            clock,
            flush_queue: FlushQueue::default(),
            data_dir: data_dir.to_path_buf(),
            node_id,
            partitions: RwLock::new(HashMap::new()),
            applied: Mutex::new(None),
            timed_topics: Mutex::new(HashSet::new()),
            syncing: Mutex::new(()),
            checkpointed: Mutex::new(checkpointed),
            checkpoint_digest: AtomicU64::new(0),
            log_failed: Arc::new(AtomicBool::new(false)),
            timed_flushes: AtomicBool::new(false),
            open_threads: 1,
            closed: AtomicBool::new(false),
            probe: Arc::default(),
        }
    }

    /// Starts the thread that fsyncs durable logs in groups (see `flusher.rs`).
    pub fn start_flusher(&self) -> std::io::Result<()> {
        self.flush_queue.start(self.node_id)
    }

    /// Runs the fsyncs asked for so far on this thread (for simulations, which run no flush
    /// thread).
    #[cfg(test)]
    pub(crate) fn flush_pending(&self) {
        self.flush_queue.run_pending(self.node_id);
    }

    /// Writes every partition's high watermark to `replication-offset-checkpoint` (when one
    /// changed), so a restarted broker does not show consumers less, or more, than it did.
    pub fn checkpoint_high_watermarks(&self) {
        // Each watermark is read once: the digest and the file must tell of the same values.
        let all: Vec<(Arc<Partition>, Offset)> = self
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
            [id as u64, (id >> 64) as u64, p.index as u64, hw.0 as u64]
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
        let mut now: HashMap<PartitionKey, Offset> = all
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

    fn map(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<String, BTreeMap<i32, Arc<Partition>>>> {
        self.partitions.read().unwrap_or_else(|p| p.into_inner())
    }

    fn map_mut(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<String, BTreeMap<i32, Arc<Partition>>>> {
        self.partitions.write().unwrap_or_else(|p| p.into_inner())
    }

    /// What the partitions' probes share, for `/metrics`.
    pub(crate) fn probe(&self) -> Arc<crate::metrics::ReplicaProbe> {
        self.probe.clone()
    }

    /// The directory holding the logs.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.map().get(topic)?.get(&partition).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.map()
            .values()
            .flat_map(|t| t.values().cloned())
            .collect()
    }

    /// Makes the hosted partitions match the image: opens, reconfigures and deletes logs, and
    /// starts or ends leaderships. Without `may_lead` (this incarnation is not registered yet, and
    /// the image is what an earlier one left) it leads nothing: the controller has yet to move
    /// leadership away from a restarted broker.
    ///
    /// Only what changed since the image applied last is looked at; the first sync, and one
    /// where `may_lead` changed, look at everything. A sync that failed is not remembered, so
    /// the next one tries its changes again.
    pub fn sync(
        &self,
        image: &Arc<MetadataImage>,
        broker_defaults: &BTreeMap<String, String>,
        may_lead: bool,
    ) -> Result<(), LogError> {
        let _one_at_a_time = self.syncing.lock().unwrap_or_else(|p| p.into_inner());
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        let empty = MetadataImage::default();
        let (older, everything) = match &*applied {
            Some((older, led)) => (&**older, *led != may_lead),
            None => (&empty, true),
        };
        let mut delta = image.changes_since(older);
        if everything {
            delta.changed = image
                .topics()
                .map(|t| (t.topic_id, t.partitions.keys().copied().collect()))
                .collect();
            delta.reconfigured = image.topics().map(|t| t.topic_id).collect();
            // Whatever is hosted and not in the image goes, whichever image was applied before.
            let hosted: HashSet<Uuid> = self
                .map()
                .values()
                .flat_map(|t| t.values().map(|p| p.topic_id))
                .collect();
            delta.removed = hosted
                .into_iter()
                .filter(|id| image.topic_by_id(id).is_none())
                .collect();
        }
        // Dynamic broker configs over the static ones: a change of them reconfigures every
        // topic (see `changes_since`).
        let defaults = TopicDefaults::of(image, self.node_id, broker_defaults);
        let result = self.apply_delta(image, &delta, &defaults, may_lead);
        // A sync that failed may have opened some logs: the next one looks at everything, as
        // a delta against the image before it would miss a topic it opened and that went away.
        *applied = result.is_ok().then(|| (image.clone(), may_lead));
        result
    }

    fn apply_delta(
        &self,
        image: &MetadataImage,
        delta: &ImageDelta,
        broker_defaults: &TopicDefaults,
        may_lead: bool,
    ) -> Result<(), LogError> {
        let me = self.node_id;
        // Logs to delete: of topics that went away (or were re-created under a new id), and of
        // partitions moved off this broker.
        let gone: HashSet<Uuid> = delta.removed.iter().copied().collect();
        let moved_off: HashSet<(Uuid, i32)> = delta
            .changed
            .iter()
            .filter_map(|(id, indexes)| image.topic_by_id(id).map(|t| (t, indexes)))
            .flat_map(|(t, indexes)| {
                indexes
                    .iter()
                    .filter(|i| {
                        t.partitions
                            .get(i)
                            .is_some_and(|p| !p.replicas.contains(&me))
                    })
                    .map(move |i| (t.topic_id, *i))
            })
            .collect();
        if !gone.is_empty() || !moved_off.is_empty() {
            self.delete_partitions(|p| {
                gone.contains(&p.topic_id) || moved_off.contains(&(p.topic_id, p.index))
            })?;
        }
        // Settings of every topic that is new, changed or reconfigured.
        let mut settings: HashMap<Uuid, (LogConfig, usize)> = HashMap::new();
        for id in delta
            .changed
            .iter()
            .map(|(id, _)| id)
            .chain(&delta.reconfigured)
        {
            let Some(topic) = image.topic_by_id(id) else {
                continue;
            };
            settings
                .entry(*id)
                .or_insert_with(|| topic_settings(image, &topic.name, broker_defaults));
        }
        {
            let mut timed = self.timed_topics.lock().unwrap_or_else(|p| p.into_inner());
            for id in &delta.removed {
                timed.remove(id);
            }
            for (id, (config, _)) in &settings {
                if config.flush_ms < i64::MAX {
                    timed.insert(*id);
                } else {
                    timed.remove(id);
                }
            }
            self.timed_flushes
                .store(!timed.is_empty(), Ordering::Release);
        }
        for id in &delta.reconfigured {
            let (Some(topic), Some((config, min))) = (image.topic_by_id(id), settings.get(id))
            else {
                continue;
            };
            for index in topic.partitions.keys() {
                if let Some(existing) = self.get(&topic.name, *index) {
                    existing.min_insync_replicas.store(*min, Ordering::Release);
                    let mut log = existing.log();
                    if log.config() != config {
                        log.set_config(config.clone());
                    }
                }
            }
        }
        let mut opening = Vec::new();
        let mut stale = false;
        for (id, indexes) in &delta.changed {
            let (Some(topic), Some((config, min))) = (image.topic_by_id(id), settings.get(id))
            else {
                continue;
            };
            for index in indexes {
                let Some(state) = topic.partitions.get(index) else {
                    continue;
                };
                if !state.replicas.contains(&me) {
                    continue;
                }
                let leader = state.leader.filter(|l| *l != me || may_lead);
                if let Some(existing) = self.get(&topic.name, *index) {
                    if existing.topic_id != topic.topic_id {
                        // An older topic of the name still hosted: this sync fails, and the
                        // next one, which looks at everything, removes it first.
                        stale = true;
                        continue;
                    }
                    existing.apply_image(
                        me,
                        leader,
                        state.leader_epoch,
                        &state.replicas,
                        &state.isr,
                    );
                    continue;
                }
                opening.push(NewPartition {
                    topic: topic.name.clone(),
                    index: *index,
                    topic_id: topic.topic_id,
                    config: config.clone(),
                    min_insync_replicas: *min,
                    leader,
                    leader_epoch: state.leader_epoch,
                    replicas: state.replicas.clone(),
                    isr: state.isr.clone(),
                });
            }
        }
        self.open_partitions(opening)?;
        if stale {
            return Err(LogError::Io(std::io::Error::other(
                "a deleted topic's log is still hosted under a re-created topic's name",
            )));
        }
        Ok(())
    }

    /// Deletes the logs of the hosted partitions `doomed` picks, durably.
    fn delete_partitions(&self, doomed: impl Fn(&Partition) -> bool) -> Result<(), LogError> {
        let doomed: Vec<Arc<Partition>> = {
            let mut map = self.map_mut();
            let mut out = Vec::new();
            for partitions in map.values_mut() {
                if !partitions.values().any(|p| doomed(p)) {
                    continue;
                }
                let (gone, kept) = std::mem::take(partitions)
                    .into_iter()
                    .partition(|(_, p)| doomed(p));
                *partitions = kept;
                out.extend(gone.into_values());
            }
            map.retain(|_, partitions| !partitions.is_empty());
            out
        };
        // Whoever waits on them (an acks=all produce, a commit, a fetch) hears that they left,
        // before any directory is removed (a removal that fails ends the loop below).
        for partition in &doomed {
            partition.resign();
        }
        for partition in doomed {
            let dir = partition_dir(&self.data_dir, &partition.topic, partition.index);
            tracing::info!(topic = %partition.topic, partition = partition.index, "deleting partition log");
            drop(partition);
            match self.storage.remove_dir_all(&dir) {
                // Durably: a directory that came back after a power cut would never be removed.
                Ok(()) => storage::sync_parent(&*self.storage, &dir)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Opens the logs of partitions new to this broker, in parallel (each open fsyncs, and a
    /// restart opens every log at once), and starts hosting them.
    fn open_partitions(&self, opening: Vec<NewPartition>) -> Result<(), LogError> {
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
                .unwrap_or(Offset::ZERO)
                .clamp(log.log_start_offset(), log.log_end_offset());
            let state = ReplicaState::new(replicas.clone(), isr.clone(), high_watermark);
            let partition = Arc::new(Partition::new(
                topic.clone(),
                topic_id,
                p,
                log,
                epoch,
                min,
                state,
                self.clock.clone(),
                self.flush_queue.clone(),
                crate::metrics::PartitionProbe::new(self.probe.clone()),
            ));
            partition.apply_image(self.node_id, leader, epoch, &replicas, &isr);
            self.map_mut()
                .entry(topic)
                .or_default()
                .insert(p, partition);
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
        for (topic, index, p) in image.recovering() {
            let reported = p.recovery.iter().any(|r| {
                r.broker_id == me
                    && r.broker_epoch == broker_epoch
                    && r.leader_epoch == p.leader_epoch
            });
            if reported || !p.replicas.contains(&me) || p.adding_replicas.contains(&me) {
                continue;
            }
            let Some(partition) = self.get(&topic.name, index) else {
                continue;
            };
            let log = partition.log();
            out.push(PartitionLog {
                topic_id: topic.topic_id,
                partition: index,
                leader_epoch: p.leader_epoch,
                last_epoch: log.epochs().latest_epoch(),
                log_end_offset: log.durable_end(),
            });
        }
        out
    }

    /// Gives up every leadership (the log directory failed): appends and consumer fetches get
    /// NOT_LEADER_OR_FOLLOWER, and waiters hear that leadership moved.
    pub fn resign_all(&self) {
        for p in self.all() {
            p.resign();
        }
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

    /// Runs a compaction pass on compacted logs that have something to clean. The log's lock is
    /// held only to plan a pass and to swap its copies in: appends go on while it reads and
    /// writes.
    pub fn compact_due(&self, now_ms: i64) {
        for partition in self.all() {
            let failed = |e: &weir_log::LogError| {
                tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "compaction failed");
            };
            let plan = partition.log().compaction_due(now_ms);
            let mut pass = match plan {
                Ok(Some(pass)) => pass,
                Ok(None) => continue,
                Err(e) => {
                    failed(&e);
                    continue;
                }
            };
            if let Err(e) = pass.build() {
                failed(&e);
                pass.abandon();
                continue;
            }
            // One swap per hold of the lock: appends go on between them.
            loop {
                match partition.log().finish_next(&mut pass) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        failed(&e);
                        pass.abandon();
                        break;
                    }
                }
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
            let mut map = self.map_mut();
            map.drain().flat_map(|(_, t)| t.into_values()).collect()
        };
        for partition in all {
            match Arc::try_unwrap(partition) {
                Ok(partition) => {
                    let log = partition.into_log();
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

#[cfg(test)]
mod tests {
    use super::*;
    use weir_log::simfs::{Failure, Fault, FsOp};
    use weir_log::SimDisk;
    use weir_meta::MetadataRecord;
    use weir_types::LeaderEpoch;

    fn with_topic(image: &MetadataImage, name: &str, id: u128) -> Arc<MetadataImage> {
        let mut next = image.clone();
        let topic_id = Uuid::from_u128(id);
        next.apply(&MetadataRecord::Topic {
            name: name.into(),
            topic_id,
        });
        next.apply(&MetadataRecord::Partition {
            topic_id,
            partition: 0,
            replicas: vec![BrokerId(1)],
            isr: vec![BrokerId(1)],
            leader: Some(BrokerId(1)),
            leader_epoch: LeaderEpoch(0),
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
            recovery: Vec::new(),
        });
        next.version += 1;
        Arc::new(next)
    }

    /// A sync that failed halfway opened some logs; a topic it opened and that is deleted
    /// before the next sync must still be removed (a delta against the image before the failed
    /// sync would not name it).
    #[test]
    fn a_topic_opened_by_a_failed_sync_and_then_deleted_is_removed() {
        let disk = SimDisk::new(1);
        let manager = ReplicaManager::on_storage(
            disk.storage(),
            Path::new("/data"),
            BrokerId(1),
            Clock::real(),
        );
        let none = BTreeMap::new();
        let empty = Arc::new(MetadataImage::default());
        manager.sync(&empty, &none, true).unwrap();
        let with_x = with_topic(&empty, "x", 1);
        let with_both = with_topic(&with_x, "z", 2);
        disk.fail(Fault {
            op: FsOp::Open,
            path_contains: "/z-0/".into(),
            failure: Failure::Io,
            times: 1,
        });
        assert!(manager.sync(&with_both, &none, true).is_err());
        assert!(manager.get("x", 0).is_some());
        // x is deleted (z is left as it was).
        let mut later = (*with_both).clone();
        later.apply(&MetadataRecord::RemoveTopic {
            topic_id: Uuid::from_u128(1),
        });
        later.version += 1;
        manager.sync(&Arc::new(later), &none, true).unwrap();
        assert!(
            manager.get("x", 0).is_none(),
            "the deleted topic is still hosted"
        );
        assert!(!disk.storage().exists(Path::new("/data/x-0")));
        assert!(manager.get("z", 0).is_some());
    }
}

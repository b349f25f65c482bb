//! One partition hosted by this broker: its log, its replication state, and what waits on it.
//!
//! Lock order: the log lock before the replication state's and the transaction gate's, never the
//! other way. Leadership changes under the log lock, so a deposed leader never appends in its
//! successor's epoch.

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::watch;
use uuid::Uuid;
use weir_log::{AppendInfo, Log, LogError};
use weir_types::{BrokerId, LeaderEpoch, Offset, ProducerEpoch, ProducerId};

mod fetch;
pub(crate) mod txn_gate;

pub(crate) use fetch::FetchAsk;
pub(crate) use txn_gate::Guard as TxnGuard;
use txn_gate::TxnGate;

use crate::flusher::FlushQueue;
use crate::replication::ReplicaState;
use crate::waiters::Waiters;

/// One partition hosted by this broker.
#[derive(Debug)]
pub struct Partition {
    pub topic: String,
    pub topic_id: Uuid,
    pub index: i32,
    log: Mutex<Log>,
    /// The leader's broker id, -1 for none (read through [`Partition::leader`]).
    leader: AtomicI32,
    leader_epoch: AtomicI32,
    pub isr_size: AtomicUsize,
    pub min_insync_replicas: AtomicUsize,
    /// Replication: replicas, ISR, followers' progress, high watermark. Lock order: the log lock
    /// before this one, never the other way.
    state: Mutex<ReplicaState>,
    /// Bumped on every change of the high watermark, ISR or leadership (acks=all waits on it).
    changes: watch::Sender<u64>,
    /// Long-poll fetches parked on this partition: woken by appends and by `changes`.
    fetches: Waiters,
    /// Where follower progress and leadership times come from (a simulated clock in tests).
    clock: Clock,
    /// Where appends to a durable log (`write.caching=false`) ask for their fsync.
    flush_queue: FlushQueue,
    /// KIP-890's check of first transactional batches (see `txn_gate`).
    txn_gate: Mutex<TxnGate>,
    /// What `/metrics` reads of this partition's traffic.
    pub(crate) probe: crate::metrics::PartitionProbe,
}

/// How a producer's append treats a transactional batch that would open a transaction here.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TxnCheck {
    /// `transaction.partition.verification.enable=false`: it opens one.
    Off,
    /// Only with the guard of a check its coordinator confirmed (or none, when the hint said
    /// the transaction is open already).
    On(Option<TxnGuard>),
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
    /// A partition around its opened log, leading nothing yet: [`Partition::apply_image`]
    /// starts a leadership.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        topic: String,
        topic_id: Uuid,
        index: i32,
        log: Log,
        leader_epoch: LeaderEpoch,
        min_insync_replicas: usize,
        state: ReplicaState,
        clock: Clock,
        flush_queue: FlushQueue,
        probe: crate::metrics::PartitionProbe,
    ) -> Partition {
        Partition {
            topic,
            topic_id,
            index,
            log: Mutex::new(log),
            leader: AtomicI32::new(-1),
            leader_epoch: AtomicI32::new(leader_epoch.0),
            isr_size: AtomicUsize::new(state.isr.len()),
            min_insync_replicas: AtomicUsize::new(min_insync_replicas),
            state: Mutex::new(state),
            changes: watch::channel(0).0,
            fetches: Waiters::default(),
            clock,
            flush_queue,
            txn_gate: Mutex::new(TxnGate::default()),
            probe,
        }
    }

    /// Takes the log out of a partition nobody else holds (at close).
    pub(crate) fn into_log(self) -> Log {
        self.log.into_inner().unwrap_or_else(|p| p.into_inner())
    }

    /// Locks the log. A panic while the lock was held poisons it; the log's own state is still
    /// consistent at every await-free step, so the guard is recovered rather than propagated.
    pub fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, ReplicaState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn txn_gate(&self) -> MutexGuard<'_, TxnGate> {
        self.txn_gate.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a transactional batch of `producer` must be checked with its coordinator before
    /// it is appended here (its transaction is not known to be open in this partition).
    pub(crate) fn needs_txn_check(&self, producer: ProducerId) -> bool {
        self.txn_gate().needs_check(producer)
    }

    /// Begins a check of `producer`'s transaction: the guard its append presents.
    pub(crate) fn begin_txn_check(&self, producer: ProducerId) -> TxnGuard {
        self.txn_gate().begin(producer, self.clock.now())
    }

    /// Wakes whoever waits on this partition's high watermark, ISR or leadership.
    pub(crate) fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        self.fetches.wake();
    }

    /// Parks a long-poll fetch on this partition until its next append or change.
    pub(crate) fn watch_fetch(&self, waiter: &Arc<tokio::sync::Notify>) {
        self.fetches.watch(waiter);
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        LeaderEpoch(self.leader_epoch.load(Ordering::Acquire))
    }

    /// The partition's leader, as the latest image this broker applied says.
    pub fn leader(&self) -> Option<BrokerId> {
        BrokerId::from_wire(self.leader.load(Ordering::Acquire))
    }

    pub fn is_leader(&self, node_id: BrokerId) -> bool {
        self.leader() == Some(node_id)
    }

    /// The partition leaves this broker: it leads nothing, and whoever waits on it (an acks=all
    /// produce, a commit, a fetch) hears so.
    pub(crate) fn resign(&self) {
        // Under the log lock, as every change of leadership (see `append_as_leader`).
        let log = self.log();
        self.leader.store(-1, Ordering::Release);
        drop(log);
        self.changed();
    }

    /// The high watermark: on the leader, the lowest log end offset over the ISR; on a follower,
    /// the leader's as last fetched, capped by its own log end. Consumers read below it.
    pub fn high_watermark(&self) -> Offset {
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
        node_id: BrokerId,
        records: &mut [u8],
        now_ms: i64,
    ) -> Result<Option<(AppendInfo, LeaderEpoch)>, LogError> {
        self.append_leader_with(node_id, |log, epoch| {
            log.append_as_leader(records, epoch, now_ms)
        })
    }

    /// Appends a producer's batches as [`Partition::append_as_leader`] does, where a
    /// transactional batch that would open a transaction in this partition needs `check`'s
    /// guard (INVALID_TXN_STATE without it).
    pub(crate) fn append_produce(
        self: &Arc<Self>,
        node_id: BrokerId,
        records: &mut [u8],
        now_ms: i64,
        check: TxnCheck,
    ) -> Result<Option<(AppendInfo, LeaderEpoch)>, LogError> {
        let transactional = weir_log::BatchHeader::parse(records)
            .ok()
            .filter(|h| h.is_transactional() && !h.is_control())
            .and_then(|h| h.producer());
        let bytes = records.len();
        let appended = self.append_leader_with(node_id, |log, epoch| {
            let Some((producer_id, _)) = transactional else {
                return log.append_as_leader(records, epoch, now_ms);
            };
            if let TxnCheck::On(guard) = check {
                let open = log.open_transaction(producer_id).is_some();
                if !self.txn_gate().admits(producer_id, open, guard) {
                    return Err(LogError::InvalidTxnState { producer_id });
                }
            }
            let info = log.append_as_leader(records, epoch, now_ms)?;
            if log.open_transaction(producer_id).is_some() {
                self.txn_gate().appended(producer_id);
            }
            Ok(info)
        });
        if let Ok(Some((info, _))) = &appended {
            if !info.duplicate {
                self.probe.appended(bytes, info.records);
            }
        }
        appended
    }

    /// Appends a transaction marker (the coordinator's commit or abort) as the leader, as
    /// [`Partition::append_as_leader`] appends batches.
    pub(crate) fn append_marker_as_leader(
        self: &Arc<Self>,
        node_id: BrokerId,
        producer_id: ProducerId,
        producer_epoch: ProducerEpoch,
        coordinator_epoch: i32,
        kind: weir_log::ControlType,
        now_ms: i64,
    ) -> Result<Option<(AppendInfo, LeaderEpoch)>, LogError> {
        self.append_leader_with(node_id, |log, epoch| {
            let info = log.append_marker(
                producer_id,
                producer_epoch,
                coordinator_epoch,
                kind,
                epoch,
                now_ms,
            )?;
            self.txn_gate().marked(producer_id);
            Ok(info)
        })
    }

    fn append_leader_with(
        self: &Arc<Self>,
        node_id: BrokerId,
        append: impl FnOnce(&mut Log, LeaderEpoch) -> Result<AppendInfo, LogError>,
    ) -> Result<Option<(AppendInfo, LeaderEpoch)>, LogError> {
        let mut log = self.log();
        if !self.is_leader(node_id) {
            return Ok(None);
        }
        let epoch = self.leader_epoch();
        let info = append(&mut log, epoch)?;
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
        } else {
            // Followers read up to the log end, not the high watermark.
            self.fetches.wake();
        }
        Ok(Some((info, epoch)))
    }

    /// Asks the flush thread to fsync this log.
    pub(crate) fn request_sync(self: &Arc<Self>) {
        self.flush_queue.request(self.clone());
    }

    /// Fsyncs the log up to its end (without holding its lock during the fsync) and, on the
    /// leader, moves the high watermark to what is now durable. Returns whether it moved.
    pub(crate) fn sync_log(&self, me: BrokerId) -> Result<bool, LogError> {
        let Some(target) = self.log().sync_target()? else {
            return Ok(false);
        };
        let started = Instant::now();
        let result = target.sync();
        self.probe.fsynced(started.elapsed());
        let mut log = self.log();
        log.synced(&target, result)?;
        let moved = self.is_leader(me) && {
            let mut state = self.state();
            let moved = state.advance_high_watermark(me, log.durable_end());
            debug_assert!(
                state.high_watermark <= log.log_end_offset(),
                "the high watermark passed the log end"
            );
            moved
        };
        drop(log);
        if moved {
            self.changed();
        }
        Ok(moved)
    }

    /// Whether records up to `last_offset`, written in `epoch`, are settled for acks=all: `None`
    /// while the ISR does not hold them yet, else the answer's error code (0 for success).
    pub(crate) fn replication_status(
        &self,
        me: BrokerId,
        epoch: LeaderEpoch,
        last_offset: Offset,
    ) -> Option<i16> {
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
        me: BrokerId,
        epoch: LeaderEpoch,
        last_offset: Offset,
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
    pub(crate) fn record_follower_fetch(
        &self,
        me: BrokerId,
        follower: BrokerId,
        offset: Offset,
    ) -> bool {
        let log = self.log();
        let end = log.log_end_offset();
        // Only an offset the log holds says how far the follower reached; a larger one is a
        // follower that diverged (or a client posing as one), and fails its read.
        if offset < log.log_start_offset() || offset > end || !self.is_leader(me) {
            return false;
        }
        let moved = self.state().on_follower_fetch(
            me,
            follower,
            offset,
            end,
            log.durable_end(),
            self.clock.now(),
        );
        drop(log);
        if moved {
            self.changed();
        }
        moved
    }

    /// Takes the image's view of this partition: leader, epoch, replicas and ISR. Wakes its
    /// waiters only when something changed.
    pub(crate) fn apply_image(
        self: &Arc<Self>,
        me: BrokerId,
        leader: Option<BrokerId>,
        epoch: LeaderEpoch,
        replicas: &[BrokerId],
        isr: &[BrokerId],
    ) {
        // Leadership changes under the log lock (see `append_as_leader`).
        let log = self.log();
        let was_leading = self.leader() == Some(me);
        let new_epoch = epoch != self.leader_epoch() || leader != self.leader();
        self.leader
            .store(BrokerId::to_wire(leader), Ordering::Release);
        self.leader_epoch.store(epoch.0, Ordering::Release);
        let isr_before = self.isr_size.swap(isr.len(), Ordering::AcqRel);
        if was_leading && leader == Some(me) {
            self.probe.isr_changed(isr_before, isr.len());
        }
        let end = log.log_end_offset();
        let outcome = self.state().on_image(
            me,
            leader,
            new_epoch,
            replicas,
            isr,
            log.durable_end(),
            end,
            self.clock.now(),
        );
        if outcome.began_leading {
            tracing::info!(topic = %self.topic, partition = self.index, %epoch, "leading");
        }
        if leader == Some(me) && !was_leading {
            // Appends as a follower kept no hint, and a check begun in an earlier leadership
            // missed the markers written since: start from the log. (A new epoch of the same
            // leader keeps both: every append and marker went through it.)
            self.txn_gate()
                .reset(log.open_transactions().into_iter().map(|(p, _)| p));
        }
        if leader == Some(me) && log.durable_end() < end {
            self.flush_queue.request(self.clone());
        }
        let changed = outcome.changed;
        drop(log);
        if changed {
            self.changed();
        }
    }
}

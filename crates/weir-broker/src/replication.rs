//! The leader's side of partition replication: follower progress, the high watermark, and the
//! ISR changes a leader asks the controller for.
//!
//! A follower's Fetch (with its replica id) says how far its log reaches: its fetch offset is its
//! log end offset. The leader keeps that per follower, and the high watermark is the lowest log
//! end offset over the ISR, counting members being added (Kafka's "maximal ISR"): a follower
//! joins only once it holds everything below the high watermark, and the watermark then waits
//! for it, so every ISR member always holds every record below it. The watermark never moves
//! back. Consumers read below it; acks=all produces are answered once it passes their records.
//!
//! A follower that has not caught up for `replica.lag.time.max.ms` is dropped from the ISR, and
//! one that caught up is added, each by an AlterPartition the controller commits; only the
//! committed ISR counts (a pending addition counts for the watermark only, which is the safe
//! side). "Caught up" is Kafka's rule: a fetch at or past the leader's log end as it was at the
//! follower's previous fetch.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_meta::{ControllerOp, MetaError};

use crate::broker::Broker;
use crate::replica_manager::Partition;

/// How long an ISR change whose outcome is unknown (the controller did not answer) holds back
/// the next one.
const PENDING_EXPIRY: Duration = Duration::from_secs(30);

/// How long a leader waits after the controller refused an ISR change before asking again.
const REFUSAL_BACKOFF: Duration = Duration::from_secs(1);

/// An ISR change in flight.
#[derive(Debug, Clone)]
pub(crate) struct PendingIsr {
    pub isr: Vec<i32>,
    generation: u64,
    since: Instant,
}

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FollowerProgress {
    /// The follower's log end offset, from its last fetch; -1 until it fetched in this epoch.
    pub leo: i64,
    /// The last time the follower was caught up.
    pub caught_up: Instant,
    /// When its previous fetch came, and the leader's log end offset then.
    last_fetch: Instant,
    leo_at_last_fetch: i64,
}

/// A partition's replication state, on its leader and its followers.
#[derive(Debug)]
pub(crate) struct ReplicaState {
    pub replicas: Vec<i32>,
    /// The ISR the image holds.
    pub isr: Vec<i32>,
    /// An ISR this leader asked the controller for and has not seen in the image yet. It counts
    /// for the high watermark until the image shows it, or the controller definitely refused it
    /// (a timeout may still have committed it), or it is older than [`PENDING_EXPIRY`].
    pub pending_isr: Option<PendingIsr>,
    /// No ISR change is asked for before this (after a refusal).
    pub alter_backoff_until: Option<Instant>,
    next_generation: u64,
    /// On the leader: its followers' progress in the current epoch.
    pub followers: HashMap<i32, FollowerProgress>,
    pub high_watermark: i64,
    /// On a follower: the leader epoch its log was last reconciled with (OffsetForLeaderEpoch);
    /// fetching waits until it equals the partition's epoch.
    pub truncated_for_epoch: Option<i32>,
}

impl ReplicaState {
    pub(crate) fn new(replicas: Vec<i32>, isr: Vec<i32>, high_watermark: i64) -> ReplicaState {
        ReplicaState {
            replicas,
            isr,
            pending_isr: None,
            alter_backoff_until: None,
            next_generation: 0,
            followers: HashMap::new(),
            high_watermark,
            truncated_for_epoch: None,
        }
    }

    /// Starts a leadership: every follower has `max_lag` from now to show it keeps up, and none
    /// counts for the high watermark before it fetched in this epoch.
    pub(crate) fn become_leader(&mut self, me: i32, now: Instant) {
        self.followers = self
            .replicas
            .iter()
            .filter(|b| **b != me)
            .map(|b| {
                let fresh = FollowerProgress {
                    leo: -1,
                    caught_up: now,
                    last_fetch: now,
                    leo_at_last_fetch: i64::MAX,
                };
                (*b, fresh)
            })
            .collect();
        self.pending_isr = None;
    }

    /// The members the high watermark waits for: the ISR and any member being added.
    fn maximal_isr(&self) -> Vec<i32> {
        let mut members = self.isr.clone();
        for b in self.pending_isr.iter().flat_map(|p| &p.isr) {
            if !members.contains(b) {
                members.push(*b);
            }
        }
        members
    }

    /// Moves the leader's high watermark to the lowest log end offset over the maximal ISR, never
    /// back. Returns whether it moved.
    pub(crate) fn advance_high_watermark(&mut self, me: i32, log_end: i64) -> bool {
        let mut low = log_end;
        for b in self.maximal_isr() {
            if b == me {
                continue;
            }
            match self.followers.get(&b) {
                Some(f) if f.leo >= 0 => low = low.min(f.leo),
                // A member that has not fetched in this epoch holds the watermark where it is.
                _ => return false,
            }
        }
        if low > self.high_watermark {
            self.high_watermark = low;
            true
        } else {
            false
        }
    }

    /// Records a follower's fetch at `offset` while the leader's log ends at `log_end`.
    pub(crate) fn record_fetch(&mut self, follower: i32, offset: i64, log_end: i64, now: Instant) {
        let p = self
            .followers
            .entry(follower)
            .or_insert_with(|| FollowerProgress {
                leo: -1,
                caught_up: now,
                last_fetch: now,
                leo_at_last_fetch: i64::MAX,
            });
        p.leo = offset.min(log_end);
        if offset >= log_end {
            p.caught_up = now;
        } else if offset >= p.leo_at_last_fetch {
            p.caught_up = p.caught_up.max(p.last_fetch);
        }
        p.last_fetch = now;
        p.leo_at_last_fetch = log_end;
    }

    /// The ISR this leader should ask for now, if it differs from the current one: followers
    /// that lag longer than `max_lag` leave, replicas that hold everything below the high
    /// watermark (and reached this epoch's first offset) join.
    pub(crate) fn wanted_isr(
        &self,
        me: i32,
        log_end: i64,
        epoch_start: i64,
        max_lag: Duration,
        now: Instant,
    ) -> Option<Vec<i32>> {
        let pending = self
            .pending_isr
            .as_ref()
            .is_some_and(|p| now.saturating_duration_since(p.since) < PENDING_EXPIRY);
        if pending || self.alter_backoff_until.is_some_and(|t| now < t) {
            return None;
        }
        let in_sync = |b: &i32| {
            if *b == me {
                return true;
            }
            let Some(f) = self.followers.get(b) else {
                // Not a follower in this epoch (the replica list changed): leave it be.
                return self.isr.contains(b);
            };
            if self.isr.contains(b) {
                // A follower at the log end is in sync however long ago it last fetched (an idle
                // partition's followers park their fetches).
                f.leo >= log_end || now.saturating_duration_since(f.caught_up) <= max_lag
            } else {
                f.leo >= 0 && f.leo >= self.high_watermark && f.leo >= epoch_start
            }
        };
        let wanted: Vec<i32> = self.replicas.iter().copied().filter(in_sync).collect();
        let unchanged =
            wanted.len() == self.isr.len() && wanted.iter().all(|b| self.isr.contains(b));
        // Followers unknown in this epoch are not dropped before they had max_lag to fetch.
        (!unchanged).then_some(wanted)
    }
}

/// The leader's ISR check for one partition: asks the controller for the ISR it wants, once at a
/// time. The image brings the committed ISR back through [`Partition::apply_image`].
pub(crate) fn maybe_alter_isr(broker: &Arc<Broker>, partition: &Arc<Partition>, now: Instant) {
    let me = broker.node_id();
    if !partition.is_leader(me) {
        return;
    }
    let max_lag = Duration::from_millis(broker.config.replica_lag_time_max_ms.max(1));
    let epoch = partition.leader_epoch();
    let (log_end, epoch_start) = {
        let log = partition.log();
        let start = log
            .epochs()
            .entries()
            .iter()
            .find(|(e, _)| *e == epoch)
            .map_or(log.log_end_offset(), |(_, start)| *start);
        (log.log_end_offset(), start)
    };
    let (current, wanted, generation) = {
        let mut state = partition.state();
        let Some(wanted) = state.wanted_isr(me, log_end, epoch_start, max_lag, now) else {
            return;
        };
        state.next_generation += 1;
        let generation = state.next_generation;
        state.pending_isr = Some(PendingIsr {
            isr: wanted.clone(),
            generation,
            since: now,
        });
        (state.isr.clone(), wanted, generation)
    };
    tracing::info!(topic = %partition.topic, partition = partition.index, from = ?current, to = ?wanted, "asking the controller to change the ISR");
    let op = ControllerOp::AlterPartition {
        broker_id: me,
        topic_id: partition.topic_id,
        partition: partition.index,
        leader_epoch: epoch,
        current_isr: current,
        new_isr: wanted,
    };
    let broker = broker.clone();
    let partition = partition.clone();
    tokio::spawn(async move {
        // Committed: the image brings the ISR, and apply_image drops the pending change then.
        // Unknown (no answer): it may be committed, so it keeps counting until it expires.
        let refused = match broker.controller_op(op).await {
            Ok(_) => false,
            Err(
                e @ (MetaError::StalePartitionState(_)
                | MetaError::IneligibleReplica(_)
                | MetaError::InvalidRequest(_)
                | MetaError::UnknownPartition(_)),
            ) => {
                tracing::info!(topic = %partition.topic, partition = partition.index, error = %e, "ISR change refused");
                true
            }
            Err(e) => {
                tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "ISR change got no answer");
                false
            }
        };
        if refused {
            let mut state = partition.state();
            if state
                .pending_isr
                .as_ref()
                .is_some_and(|p| p.generation == generation)
            {
                state.pending_isr = None;
                state.alter_backoff_until = Some(Instant::now() + REFUSAL_BACKOFF);
            }
        }
        partition.changed();
    });
}

/// Runs the leader's ISR check over every partition this broker leads.
pub(crate) fn check_isrs(broker: &Arc<Broker>) {
    let now = Instant::now();
    let me = broker.node_id();
    for partition in broker.replicas.all() {
        if partition.leader.load(Ordering::Acquire) == me {
            maybe_alter_isr(broker, &partition, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_high_watermark_waits_for_the_slowest_isr_member_and_never_falls() {
        let now = Instant::now();
        let mut s = ReplicaState::new(vec![1, 2, 3], vec![1, 2, 3], 0);
        s.become_leader(1, now);
        // Followers that have not fetched hold it.
        assert!(!s.advance_high_watermark(1, 10));
        s.record_fetch(2, 10, 10, now);
        assert!(!s.advance_high_watermark(1, 10));
        s.record_fetch(3, 4, 10, now);
        assert!(s.advance_high_watermark(1, 10));
        assert_eq!(s.high_watermark, 4);
        // Broker 3 leaves the ISR: the watermark follows broker 2.
        s.isr = vec![1, 2];
        assert!(s.advance_high_watermark(1, 10));
        assert_eq!(s.high_watermark, 10);
        // Broker 3 being added counts again, but the watermark does not fall.
        s.pending_isr = Some(PendingIsr {
            isr: vec![1, 2, 3],
            generation: 1,
            since: now,
        });
        assert!(!s.advance_high_watermark(1, 12));
        assert_eq!(s.high_watermark, 10);
    }

    #[test]
    fn laggards_leave_and_caught_up_replicas_join() {
        let t0 = Instant::now();
        let lag = Duration::from_secs(10);
        let mut s = ReplicaState::new(vec![1, 2, 3], vec![1, 2, 3], 0);
        s.become_leader(1, t0);
        assert_eq!(s.wanted_isr(1, 0, 0, lag, t0 + lag), None);
        s.record_fetch(2, 0, 0, t0);
        s.record_fetch(3, 0, 0, t0);
        assert_eq!(s.wanted_isr(1, 0, 0, lag, t0), None);
        // Broker 2 keeps fetching what was there at its previous fetch; broker 3 stops.
        for i in 1..=20 {
            let t = t0 + Duration::from_secs(i);
            s.record_fetch(2, (i as i64 - 1) * 10, i as i64 * 10, t);
        }
        let later = t0 + Duration::from_secs(20);
        assert_eq!(s.wanted_isr(1, 200, 0, lag, later), Some(vec![1, 2]));
        s.isr = vec![1, 2];
        s.advance_high_watermark(1, 200);
        // Broker 3 comes back behind the watermark: not yet; at it: it joins.
        s.record_fetch(3, 50, 200, later);
        assert_eq!(s.wanted_isr(1, 200, 0, lag, later), None);
        s.record_fetch(3, 200, 200, later);
        assert_eq!(s.wanted_isr(1, 200, 0, lag, later), Some(vec![1, 2, 3]));
        // One change at a time, unless the pending one is long unanswered.
        s.pending_isr = Some(PendingIsr {
            isr: vec![1, 2, 3],
            generation: 1,
            since: later,
        });
        assert_eq!(s.wanted_isr(1, 200, 0, lag, later), None);
        let much_later = later + PENDING_EXPIRY;
        assert!(s.wanted_isr(1, 200, 0, lag, much_later).is_some());
    }
}

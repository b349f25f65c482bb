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
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_meta::{ControllerOp, MetaError};
use weir_types::{BrokerId, LeaderEpoch, Offset};

use crate::broker::Broker;
use crate::replica_manager::Partition;

/// How long after sending an ISR change whose outcome is unknown (the controller did not answer)
/// the leader sends it again. Sending it twice is safe: the controller answers a change it
/// already made with success.
const RESEND_AFTER: Duration = Duration::from_millis(500);

/// How long a leader waits after the controller refused an ISR change before asking again.
const REFUSAL_BACKOFF: Duration = Duration::from_secs(1);

/// An ISR change asked for and not yet seen in the image.
#[derive(Debug, Clone)]
pub(crate) struct PendingIsr {
    /// The ISR asked for.
    pub isr: Vec<BrokerId>,
    /// The ISR it was asked from: once the image shows another, the change was made or lost.
    pub based_on: Vec<BrokerId>,
    generation: u64,
    /// When it was last sent, and whether an answer is awaited.
    sent: Instant,
    in_flight: bool,
    /// The controller refused it as stale: this leader's image is behind, and the next image
    /// decides. It keeps counting for the high watermark until then.
    stale: bool,
}

impl PendingIsr {
    /// Whether the image's ISR `isr` settles this change (made, or overtaken by another).
    pub(crate) fn settled_by(&self, isr: &[BrokerId]) -> bool {
        !same_members(isr, &self.based_on)
    }
}

/// Whether two lists of distinct broker ids hold the same brokers, in any order.
fn same_members(a: &[BrokerId], b: &[BrokerId]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FollowerProgress {
    /// The follower's log end offset, from its last fetch; none until it fetched in this epoch.
    pub leo: Option<Offset>,
    /// The last time the follower was caught up.
    pub caught_up: Instant,
    /// When its previous fetch came, and the leader's log end offset then (none before the
    /// first).
    last_fetch: Instant,
    leo_at_last_fetch: Option<Offset>,
}

impl FollowerProgress {
    /// A follower not heard from in this epoch: it counts for nothing yet, and has `max_lag`
    /// from `now` to show it keeps up.
    fn fresh(now: Instant) -> FollowerProgress {
        FollowerProgress {
            leo: None,
            caught_up: now,
            last_fetch: now,
            leo_at_last_fetch: None,
        }
    }
}

/// A partition's replication state, on its leader and its followers.
#[derive(Debug)]
pub(crate) struct ReplicaState {
    pub replicas: Vec<BrokerId>,
    /// The ISR the image holds.
    pub isr: Vec<BrokerId>,
    /// An ISR this leader asked the controller for and has not seen settled in the image. Its
    /// new members count for the high watermark until the image's ISR moves off the one it was
    /// asked from, or the controller definitely refused it; a change whose outcome is unknown
    /// (no answer) is sent again, never dropped, since it may have been made.
    pub pending_isr: Option<PendingIsr>,
    /// No ISR change is asked for before this (after a refusal).
    pub alter_backoff_until: Option<Instant>,
    next_generation: u64,
    /// On the leader: its followers' progress in the current epoch.
    pub followers: HashMap<BrokerId, FollowerProgress>,
    pub high_watermark: Offset,
    /// On a follower: the leader epoch its log was last reconciled with (OffsetForLeaderEpoch);
    /// fetching waits until it equals the partition's epoch.
    pub truncated_for_epoch: Option<LeaderEpoch>,
}

impl ReplicaState {
    pub(crate) fn new(
        replicas: Vec<BrokerId>,
        isr: Vec<BrokerId>,
        high_watermark: Offset,
    ) -> ReplicaState {
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
    pub(crate) fn become_leader(&mut self, me: BrokerId, now: Instant) {
        self.followers = self
            .replicas
            .iter()
            .filter(|b| **b != me)
            .map(|b| (*b, FollowerProgress::fresh(now)))
            .collect();
        self.pending_isr = None;
    }

    /// The members the high watermark waits for: the ISR and any member being added.
    fn maximal_isr(&self) -> impl Iterator<Item = BrokerId> + '_ {
        let pending = self.pending_isr.iter().flat_map(|p| &p.isr);
        self.isr.iter().chain(pending).copied()
    }

    /// Moves the leader's high watermark to the lowest log end offset over the maximal ISR, never
    /// back. Returns whether it moved.
    pub(crate) fn advance_high_watermark(&mut self, me: BrokerId, log_end: Offset) -> bool {
        let mut low = log_end;
        for b in self.maximal_isr() {
            if b == me {
                continue;
            }
            match self.followers.get(&b) {
                Some(FollowerProgress { leo: Some(leo), .. }) => low = low.min(*leo),
                // A member that has not fetched in this epoch holds the watermark where it is.
                _ => return false,
            }
        }
        if low > self.high_watermark {
            debug_assert!(
                low <= log_end,
                "the high watermark would pass the leader's log"
            );
            self.high_watermark = low;
            true
        } else {
            false
        }
    }

    /// Records a follower's fetch at `offset` while the leader's log ends at `log_end`.
    pub(crate) fn record_fetch(
        &mut self,
        follower: BrokerId,
        offset: Offset,
        log_end: Offset,
        now: Instant,
    ) {
        let p = self
            .followers
            .entry(follower)
            .or_insert_with(|| FollowerProgress::fresh(now));
        p.leo = Some(offset.min(log_end));
        if offset >= log_end {
            p.caught_up = now;
        } else if p.leo_at_last_fetch.is_some_and(|before| offset >= before) {
            p.caught_up = p.caught_up.max(p.last_fetch);
        }
        p.last_fetch = now;
        p.leo_at_last_fetch = Some(log_end);
    }

    /// The ISR this leader should ask for now, if it differs from the current one: followers
    /// that lag longer than `max_lag` leave, replicas that hold everything below the high
    /// watermark (and reached this epoch's first offset) join.
    pub(crate) fn wanted_isr(
        &self,
        me: BrokerId,
        log_end: Offset,
        epoch_start: Offset,
        max_lag: Duration,
        now: Instant,
    ) -> Option<Vec<BrokerId>> {
        if self.pending_isr.is_some() || self.alter_backoff_until.is_some_and(|t| now < t) {
            return None;
        }
        let in_sync = |b: &BrokerId| {
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
                f.leo.is_some_and(|leo| leo >= log_end)
                    || now.saturating_duration_since(f.caught_up) <= max_lag
            } else {
                f.leo
                    .is_some_and(|leo| leo >= self.high_watermark && leo >= epoch_start)
            }
        };
        let wanted: Vec<BrokerId> = self.replicas.iter().copied().filter(in_sync).collect();
        let unchanged = same_members(&wanted, &self.isr);
        // Followers unknown in this epoch are not dropped before they had max_lag to fetch.
        (!unchanged).then_some(wanted)
    }

    /// A follower fetched at `offset` (its log end) while the leader's log ends at `log_end`, of
    /// which `durable_end` counts: records its progress and moves the high watermark. Whether
    /// the watermark moved.
    pub(crate) fn on_follower_fetch(
        &mut self,
        me: BrokerId,
        follower: BrokerId,
        offset: Offset,
        log_end: Offset,
        durable_end: Offset,
        now: Instant,
    ) -> bool {
        if !self.replicas.contains(&follower) || follower == me {
            return false;
        }
        self.record_fetch(follower, offset, log_end, now);
        self.advance_high_watermark(me, durable_end)
    }

    /// The leader's ISR check at `now`: the change to send to the controller, if any. One change
    /// at a time; one unanswered for [`RESEND_AFTER`] is sent again (it may have been made).
    pub(crate) fn isr_check(
        &mut self,
        me: BrokerId,
        log_end: Offset,
        epoch_start: Offset,
        max_lag: Duration,
        now: Instant,
    ) -> Option<IsrAsk> {
        if let Some(p) = self.pending_isr.as_mut() {
            if !p.in_flight && !p.stale && now.saturating_duration_since(p.sent) >= RESEND_AFTER {
                p.sent = now;
                p.in_flight = true;
                return Some(IsrAsk {
                    isr: p.isr.clone(),
                    based_on: p.based_on.clone(),
                    generation: p.generation,
                    resend: true,
                });
            }
            return None;
        }
        let wanted = self.wanted_isr(me, log_end, epoch_start, max_lag, now)?;
        self.next_generation += 1;
        let generation = self.next_generation;
        self.pending_isr = Some(PendingIsr {
            isr: wanted.clone(),
            based_on: self.isr.clone(),
            generation,
            sent: now,
            in_flight: true,
            stale: false,
        });
        Some(IsrAsk {
            isr: wanted,
            based_on: self.isr.clone(),
            generation,
            resend: false,
        })
    }

    /// The request for the change of `generation` ended without a refusal: made (the image will
    /// settle it) or unanswered (timeout). Either way it stays pending, and is sent again if the
    /// image does not settle it soon.
    pub(crate) fn isr_request_done(&mut self, generation: u64) {
        if let Some(p) = self
            .pending_isr
            .as_mut()
            .filter(|p| p.generation == generation)
        {
            p.in_flight = false;
        }
    }

    /// The controller answered the change of `generation` with `refusal`. Whether anything
    /// changed.
    pub(crate) fn isr_refused(
        &mut self,
        generation: u64,
        refusal: IsrRefusal,
        now: Instant,
    ) -> bool {
        let Some(p) = self
            .pending_isr
            .as_mut()
            .filter(|p| p.generation == generation)
        else {
            return false;
        };
        p.in_flight = false;
        match refusal {
            IsrRefusal::Stale => p.stale = true,
            IsrRefusal::Definite => {
                self.pending_isr = None;
                self.alter_backoff_until = Some(now + REFUSAL_BACKOFF);
            }
            IsrRefusal::NoAnswer => {}
        }
        true
    }

    /// The metadata image's view of the partition: `leader` (in a new epoch or not), replicas
    /// and ISR. `durable_end` and `log_end` are this replica's log.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_image(
        &mut self,
        me: BrokerId,
        leader: Option<BrokerId>,
        new_epoch: bool,
        replicas: &[BrokerId],
        isr: &[BrokerId],
        durable_end: Offset,
        log_end: Offset,
        now: Instant,
    ) -> ImageOutcome {
        let before = self.high_watermark;
        let same_members = self.replicas == replicas && self.isr == isr;
        self.replicas = replicas.to_vec();
        self.isr = isr.to_vec();
        // A replica that left (a reassignment) is forgotten: if it comes back, it starts from
        // nothing, not from the log end it had.
        self.followers.retain(|b, _| replicas.contains(b));
        if self.pending_isr.as_ref().is_some_and(|p| p.settled_by(isr)) {
            self.pending_isr = None;
        }
        // A new leader or epoch: this includes this broker taking over from another.
        let leads = leader == Some(me);
        let began_leading = leads && new_epoch;
        if leads {
            if began_leading {
                self.become_leader(me, now);
            }
            self.advance_high_watermark(me, durable_end);
        } else {
            self.followers.clear();
            self.pending_isr = None;
            self.high_watermark = self.high_watermark.min(log_end);
        }
        // On a follower the watermark is capped by its log; on the leader it is the lowest log
        // end over the ISR, this replica's durable end among them.
        debug_assert!(leads || self.high_watermark <= log_end);
        ImageOutcome {
            changed: new_epoch || !same_members || self.high_watermark != before,
            began_leading,
        }
    }
}

/// An ISR change for the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IsrAsk {
    pub isr: Vec<BrokerId>,
    /// The ISR it changes.
    pub based_on: Vec<BrokerId>,
    pub generation: u64,
    /// Sent before and not answered.
    pub resend: bool,
}

/// How the controller refused an ISR change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IsrRefusal {
    /// The leader's image is behind (the change may even have been made by an earlier send): it
    /// keeps counting until the next image settles it.
    Stale,
    /// A change it could not have made (a fenced broker to add, an invalid ISR): dropped, and
    /// the next one waits a little.
    Definite,
    /// No answer (a timeout, no controller).
    NoAnswer,
}

impl IsrRefusal {
    pub(crate) fn of(e: &MetaError) -> IsrRefusal {
        match e {
            MetaError::StalePartitionState(_) => IsrRefusal::Stale,
            MetaError::IneligibleReplica(_)
            | MetaError::InvalidRequest(_)
            | MetaError::UnknownPartition(_) => IsrRefusal::Definite,
            _ => IsrRefusal::NoAnswer,
        }
    }
}

/// What applying an image did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ImageOutcome {
    /// Leadership, members or the high watermark changed: waiters are woken.
    pub changed: bool,
    pub began_leading: bool,
}

/// The ISR change this partition's leader should ask for now, if any, marked pending: the op to
/// send and its generation. One change at a time.
pub(crate) fn propose_isr(
    partition: &Partition,
    me: BrokerId,
    max_lag: Duration,
    now: Instant,
) -> Option<(ControllerOp, u64)> {
    if !partition.is_leader(me) {
        return None;
    }
    {
        // No followers, and the ISR already the leader alone: nothing to check (most
        // partitions of a one-node cluster; the log lock is not taken for them).
        let state = partition.state();
        if state.replicas.len() <= 1 && state.isr == state.replicas && state.pending_isr.is_none() {
            return None;
        }
    }
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
    let ask = partition
        .state()
        .isr_check(me, log_end, epoch_start, max_lag, now)?;
    if !ask.resend {
        tracing::info!(topic = %partition.topic, partition = partition.index, from = ?ask.based_on, to = ?ask.isr, "asking the controller to change the ISR");
    }
    let op = ControllerOp::AlterPartition {
        broker_id: me,
        topic_id: partition.topic_id,
        partition: partition.index,
        leader_epoch: epoch,
        current_isr: ask.based_on,
        new_isr: ask.isr,
    };
    Some((op, ask.generation))
}

/// The request for the ISR change of `generation` ended without a refusal (see
/// [`ReplicaState::isr_request_done`]).
pub(crate) fn isr_request_done(partition: &Partition, generation: u64) {
    partition.state().isr_request_done(generation);
}

/// The controller answered the ISR change of `generation` with `e` (see
/// [`ReplicaState::isr_refused`]).
pub(crate) fn isr_answered(partition: &Partition, generation: u64, e: &MetaError, now: Instant) {
    let changed = partition
        .state()
        .isr_refused(generation, IsrRefusal::of(e), now);
    if changed {
        partition.changed();
    }
}

/// The leader's ISR check for one partition: asks the controller for the ISR it wants, once at a
/// time. The image brings the committed ISR back through `Partition::apply_image`; an answer that
/// never comes leaves the change pending (it may be committed), and it is sent again.
pub(crate) fn maybe_alter_isr(broker: &Arc<Broker>, partition: &Arc<Partition>, now: Instant) {
    let max_lag = Duration::from_millis(broker.config.replica_lag_time_max_ms.max(1));
    let Some((op, generation)) = propose_isr(partition, broker.node_id(), max_lag, now) else {
        return;
    };
    let broker = broker.clone();
    let partition = partition.clone();
    tokio::spawn(async move {
        match broker.controller_op(op).await {
            // Made: the image brings it (the broker waited for that), and settles it.
            Ok(_) => isr_request_done(&partition, generation),
            Err(e) => {
                tracing::info!(topic = %partition.topic, partition = partition.index, error = %e, "ISR change not made");
                isr_answered(&partition, generation, &e, Instant::now());
            }
        }
    });
}

/// Runs the leader's ISR check over every partition this broker leads.
pub(crate) fn check_isrs(broker: &Arc<Broker>) {
    let now = Instant::now();
    let me = broker.node_id();
    for partition in broker.replicas.all() {
        if partition.is_leader(me) {
            maybe_alter_isr(broker, &partition, now);
        }
    }
}

#[cfg(test)]
mod tests;

//! KIP-890 part 1 on a leader: a producer's first transactional batch in this partition is
//! appended only after its transaction coordinator confirmed that the partition is in the
//! producer's open transaction, and only if no marker for that producer landed here since the
//! check began. Without it, a batch that arrives late (after its transaction's abort marker)
//! or from a client that never added the partition opens a transaction no coordinator will
//! ever end, and the last stable offset stays stuck behind it.
//!
//! Sans-IO: the leader's append path and the produce handler drive it under the partition's
//! gate lock, which is never held across I/O.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use weir_types::ProducerId;

/// A check in progress lives at most this long; a producer that never sends its batch leaves
/// nothing behind for longer.
const CHECK_LIFETIME: Duration = Duration::from_secs(120);
/// Checks in progress kept before expired ones are pruned.
const PRUNE_ABOVE: usize = 1024;

/// A handle on one check in progress: the append that follows it presents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Guard(u64);

#[derive(Debug, Default)]
pub(crate) struct TxnGate {
    /// Producers with a transaction open in the log, as of the last leader append: their
    /// batches need no check. A hint for the produce handler; the log decides at the append.
    open: HashSet<ProducerId>,
    /// Checks in progress, by producer.
    checks: HashMap<ProducerId, (Guard, Instant)>,
    next: u64,
}

impl TxnGate {
    /// Whether a transactional batch of `producer` must be checked with its coordinator first.
    pub(crate) fn needs_check(&self, producer: ProducerId) -> bool {
        !self.open.contains(&producer)
    }

    /// Begins a check (or joins the one in progress, so two requests of one producer that
    /// check at once do not void each other's guards).
    pub(crate) fn begin(&mut self, producer: ProducerId, now: Instant) -> Guard {
        if self.checks.len() > PRUNE_ABOVE {
            self.checks
                .retain(|_, (_, began)| now.duration_since(*began) < CHECK_LIFETIME);
        }
        if let Some((guard, began)) = self.checks.get_mut(&producer) {
            *began = now;
            return *guard;
        }
        self.next += 1;
        let guard = Guard(self.next);
        self.checks.insert(producer, (guard, now));
        guard
    }

    /// Whether a transactional batch of `producer` may be appended: its transaction is open in
    /// the log already, or it presents the guard of a check no marker has voided since.
    pub(crate) fn admits(
        &self,
        producer: ProducerId,
        open_in_log: bool,
        guard: Option<Guard>,
    ) -> bool {
        open_in_log
            || guard.is_some_and(|g| self.checks.get(&producer).is_some_and(|(c, _)| *c == g))
    }

    /// A transactional batch of `producer` is in the log: its transaction is open.
    pub(crate) fn appended(&mut self, producer: ProducerId) {
        self.checks.remove(&producer);
        self.open.insert(producer);
    }

    /// A marker for `producer` is in the log: its transaction is over, and a check begun
    /// before it no longer admits anything.
    pub(crate) fn marked(&mut self, producer: ProducerId) {
        self.open.remove(&producer);
        self.checks.remove(&producer);
    }

    /// A new leadership: the open transactions are the log's, and no check carries over.
    pub(crate) fn reset(&mut self, open: impl IntoIterator<Item = ProducerId>) {
        self.open = open.into_iter().collect();
        self.checks.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: ProducerId = ProducerId(7);

    #[test]
    fn a_marker_voids_a_check_in_progress() {
        let mut gate = TxnGate::default();
        let now = Instant::now();
        assert!(gate.needs_check(P));
        let guard = gate.begin(P, now);
        assert!(gate.admits(P, false, Some(guard)));
        gate.marked(P);
        assert!(
            !gate.admits(P, false, Some(guard)),
            "a late batch after its abort"
        );
        assert!(!gate.admits(P, false, None));
    }

    #[test]
    fn an_append_opens_the_transaction_until_its_marker() {
        let mut gate = TxnGate::default();
        let guard = gate.begin(P, Instant::now());
        assert!(gate.admits(P, false, Some(guard)));
        gate.appended(P);
        assert!(!gate.needs_check(P));
        assert!(gate.admits(P, true, None));
        gate.marked(P);
        assert!(gate.needs_check(P));
        assert!(
            !gate.admits(P, false, Some(guard)),
            "a guard is spent by its append"
        );
    }

    #[test]
    fn concurrent_checks_of_one_producer_share_a_guard() {
        let mut gate = TxnGate::default();
        let now = Instant::now();
        let a = gate.begin(P, now);
        let b = gate.begin(P, now);
        assert_eq!(a, b);
        let other = gate.begin(ProducerId(8), now);
        assert_ne!(a, other);
    }

    #[test]
    fn a_new_leadership_starts_from_the_log() {
        let mut gate = TxnGate::default();
        let guard = gate.begin(P, Instant::now());
        gate.reset([ProducerId(9)]);
        assert!(!gate.admits(P, false, Some(guard)));
        assert!(!gate.needs_check(ProducerId(9)));
        assert!(gate.needs_check(P));
    }

    #[test]
    fn expired_checks_are_pruned() {
        let mut gate = TxnGate::default();
        let then = Instant::now();
        for p in 0..=PRUNE_ABOVE as i64 {
            gate.begin(ProducerId(p + 100), then);
        }
        gate.begin(P, then + CHECK_LIFETIME * 2);
        assert_eq!(gate.checks.len(), 1);
    }
}

//! Offsets committed inside a transaction (TxnOffsetCommit, KIP-98 and KIP-447): written to
//! `__consumer_offsets` as transactional records, held pending by producer until the
//! transaction's marker reaches that partition, then stored (commit) or dropped (abort).
//! While a partition's offset is pending, OffsetFetch with `require_stable` answers
//! UNSTABLE_OFFSET_COMMIT for it.

use std::collections::BTreeMap;

use weir_types::ProducerId;

use super::super::records::OffsetValue;
use super::{Coordinator, Group};

/// A group's partition: `(group, topic, partition)`.
pub(crate) type GroupPartition = (String, String, i32);

impl Coordinator {
    /// Offsets a producer's transaction wrote (in log order: a later one replaces an earlier).
    pub(crate) fn stage_txn_offsets(
        &mut self,
        producer_id: ProducerId,
        offsets: Vec<(GroupPartition, OffsetValue)>,
    ) {
        let pending = self.pending_txn.entry(producer_id).or_default();
        for (key, value) in offsets {
            pending.insert(key, value);
        }
    }

    /// A producer's transaction ended in a partition of `__consumer_offsets` (`belongs` picks
    /// its groups): its offsets there are stored on commit, dropped on abort.
    pub(crate) fn complete_txn_offsets(
        &mut self,
        producer_id: ProducerId,
        commit: bool,
        belongs: impl Fn(&str) -> bool,
        now_ms: i64,
    ) {
        let Some(pending) = self.pending_txn.get_mut(&producer_id) else {
            return;
        };
        let (mine, rest): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(pending)
            .into_iter()
            .partition(|((g, _, _), _)| belongs(g));
        if rest.is_empty() {
            self.pending_txn.remove(&producer_id);
        } else {
            *pending = rest;
        }
        if !commit {
            return;
        }
        for ((group_id, topic, partition), value) in mine {
            let group = self
                .groups
                .entry(group_id.clone())
                .or_insert_with(|| Group::new(&group_id, now_ms));
            group.offsets.insert((topic, partition), value);
        }
    }

    /// Whether a transaction's offset for the partition waits for its marker.
    pub(crate) fn txn_offset_pending(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.pending_txn.values().any(|p| {
            p.keys()
                .any(|(g, t, n)| g == group && t == topic && *n == partition)
        })
    }

    /// Forgets the pending offsets of groups `belongs` picks (their partition is loaded again).
    pub(crate) fn unload_txn_offsets(&mut self, belongs: impl Fn(&str) -> bool) {
        for pending in self.pending_txn.values_mut() {
            pending.retain(|(g, _, _), _| !belongs(g));
        }
        self.pending_txn.retain(|_, p| !p.is_empty());
    }
}

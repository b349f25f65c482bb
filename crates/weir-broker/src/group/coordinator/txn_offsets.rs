//! Offsets committed inside a transaction (TxnOffsetCommit, KIP-98 and KIP-447): written to
//! `__consumer_offsets` as transactional records and staged, with the offset of their batch,
//! as that batch is appended (in log order, on the partition's I/O lane); the transaction's
//! marker in that partition then stores (commit) or drops (abort) the ones staged before it.
//! While a partition's offset is staged, OffsetFetch with `require_stable` answers
//! UNSTABLE_OFFSET_COMMIT for it.

use kafka_protocol::error::ResponseError;
use weir_types::ProducerId;

use super::super::records::OffsetValue;
use super::{Coordinator, Group, GroupState};

/// A group's partition: `(group, topic, partition)`.
pub(crate) type GroupPartition = (String, String, i32);

/// A staged offset: the offset of the batch that holds it, its key and its value.
pub(crate) type StagedOffset = (i64, GroupPartition, OffsetValue);

impl Coordinator {
    /// May this member commit offsets inside a transaction? Kafka's transactional checks: the
    /// member and generation must be current when given (KIP-447), but a rebalance in progress
    /// does not refuse it (a transaction is not tied to one generation's assignment).
    pub(crate) fn check_txn_commit(
        &mut self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        instance: Option<&str>,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        let Some(group) = self.groups.get(group_id) else {
            if member_id.is_empty() && generation_id < 0 {
                self.groups
                    .insert(group_id.to_string(), Group::new(group_id, now_ms));
                return Ok(());
            }
            return Err(ResponseError::IllegalGeneration);
        };
        if group.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if member_id.is_empty() && generation_id < 0 {
            return Ok(());
        }
        if let Some(consumer) = group.consumer.as_ref().filter(|c| !c.members.is_empty()) {
            // KIP-848 (and KIP-447): the member at its current epoch.
            return consumer.check_member_epoch(member_id, generation_id);
        }
        Self::check_member(group, member_id, instance)?;
        if generation_id != group.generation_id {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// Offsets a producer's transaction wrote in the batch at `batch_offset`.
    pub(crate) fn stage_txn_offsets(
        &mut self,
        producer_id: ProducerId,
        batch_offset: i64,
        offsets: Vec<(GroupPartition, OffsetValue)>,
    ) {
        let pending = self.pending_txn.entry(producer_id).or_default();
        pending.extend(offsets.into_iter().map(|(k, v)| (batch_offset, k, v)));
    }

    /// A producer's transaction ended with the marker at `marker_offset` in a partition of
    /// `__consumer_offsets` (`belongs` picks its groups): its offsets staged there before the
    /// marker are stored, in log order, on commit, and dropped on abort.
    pub(crate) fn complete_txn_offsets(
        &mut self,
        producer_id: ProducerId,
        commit: bool,
        marker_offset: i64,
        belongs: impl Fn(&str) -> bool,
        now_ms: i64,
    ) {
        let Some(pending) = self.pending_txn.get_mut(&producer_id) else {
            return;
        };
        let (mine, rest): (Vec<StagedOffset>, Vec<StagedOffset>) = std::mem::take(pending)
            .into_iter()
            .partition(|(at, (g, _, _), _)| *at < marker_offset && belongs(g));
        if rest.is_empty() {
            self.pending_txn.remove(&producer_id);
        } else {
            *pending = rest;
        }
        if !commit {
            return;
        }
        for (_, (group_id, topic, partition), value) in mine {
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
            p.iter()
                .any(|(_, (g, t, n), _)| g == group && t == topic && *n == partition)
        })
    }

    /// Forgets the pending offsets of groups `belongs` picks (their partition is loaded again).
    pub(crate) fn unload_txn_offsets(&mut self, belongs: impl Fn(&str) -> bool) {
        for pending in self.pending_txn.values_mut() {
            pending.retain(|(_, (g, _, _), _)| !belongs(g));
        }
        self.pending_txn.retain(|_, p| !p.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::super::CoordinatorConfig;
    use super::*;

    fn coordinator() -> Coordinator {
        Coordinator::new(CoordinatorConfig {
            min_session_timeout_ms: 1_000,
            max_session_timeout_ms: 60_000,
            initial_rebalance_delay_ms: 0,
            offsets_retention_ms: 100_000,
            random_member_ids: false,
            consumer: super::super::consumer::ConsumerConfig {
                session_timeout_ms: 45_000,
                heartbeat_interval_ms: 5_000,
                max_size: 100,
                assignors: &super::super::consumer::ASSIGNORS,
            },
        })
    }

    fn value(offset: i64) -> OffsetValue {
        OffsetValue {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp: 0,
        }
    }

    fn key() -> GroupPartition {
        ("g".into(), "t".into(), 0)
    }

    #[test]
    fn a_marker_settles_only_the_offsets_staged_before_it() {
        let mut c = coordinator();
        let p = ProducerId(7);
        c.check_txn_commit("g", -1, "", None, 0).unwrap();
        c.stage_txn_offsets(p, 10, vec![(key(), value(5))]);
        // The producer's next transaction staged after the first one's marker (at 15).
        c.stage_txn_offsets(p, 20, vec![(key(), value(9))]);
        assert!(c.txn_offset_pending("g", "t", 0));
        c.complete_txn_offsets(p, true, 15, |_| true, 0);
        assert_eq!(c.groups["g"].offsets[&("t".to_string(), 0)].offset, 5);
        assert!(
            c.txn_offset_pending("g", "t", 0),
            "the second transaction's offset waits"
        );
        c.complete_txn_offsets(p, false, 25, |_| true, 0);
        assert_eq!(c.groups["g"].offsets[&("t".to_string(), 0)].offset, 5);
        assert!(!c.txn_offset_pending("g", "t", 0));
    }

    #[test]
    fn an_unknown_member_or_generation_is_refused() {
        let mut c = coordinator();
        assert_eq!(
            c.check_txn_commit("nobody", 3, "m-1", None, 0),
            Err(ResponseError::IllegalGeneration)
        );
        c.check_txn_commit("g", -1, "", None, 0).unwrap();
        assert_eq!(
            c.check_txn_commit("g", 1, "m-1", None, 0),
            Err(ResponseError::UnknownMemberId)
        );
    }
}

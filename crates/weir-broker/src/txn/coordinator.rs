//! The transaction coordinator as a pure state machine (KIP-98): requests and `now` in, the
//! records to write and the markers to send out.
//!
//! It follows Kafka's `TransactionCoordinator` and `TransactionMetadata`. Every change of a
//! transactional id's state is first *planned* (the new state is pending, and other requests
//! for that id answer CONCURRENT_TRANSACTIONS), then written to `__transaction_state` by the
//! driver, and only takes effect when the driver reports the write done ([`TxnCoordinator::written`]).
//! A client is answered after the write, so what it was told survives a coordinator failover.
//!
//! ```text
//! Empty/Complete* --AddPartitions--> Ongoing --EndTxn--> PrepareCommit/PrepareAbort
//!       ^                               |                         | markers written in every
//!       |                               +--timeout, or a new      | partition
//!       |                                  InitProducerId: abort  v
//!       +--InitProducerId (epoch + 1)-------------------- CompleteCommit/CompleteAbort
//! ```
//!
//! A timed-out or fenced transaction is aborted with the epoch bumped, so its producer's later
//! requests, and its batches at every partition, are refused as fenced.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use weir_types::{ProducerEpoch, ProducerId};

use super::records::{TopicPartition, TxnMeta, TxnState};

/// Kafka's `transaction.max.timeout.ms` and friends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TxnConfig {
    pub(crate) max_timeout_ms: i32,
}

/// One transactional id.
#[derive(Debug, Clone)]
pub(crate) struct Txn {
    pub(crate) meta: TxnMeta,
    /// The state being written: the id is busy until the write ends.
    pub(crate) pending: Option<TxnMeta>,
    /// The leader epoch of its `__transaction_state` partition when this broker took it over:
    /// markers carry it, so partitions ignore a deposed coordinator's.
    pub(crate) coordinator_epoch: i32,
}

/// A state to write for an id (its record in `__transaction_state`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Transition {
    pub(crate) transactional_id: String,
    pub(crate) to: TxnMeta,
}

/// Markers to write: one control batch in each partition of the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Markers {
    pub(crate) transactional_id: String,
    pub(crate) producer_id: ProducerId,
    pub(crate) producer_epoch: ProducerEpoch,
    pub(crate) commit: bool,
    pub(crate) coordinator_epoch: i32,
    pub(crate) partitions: Vec<TopicPartition>,
}

/// What a request leads to: a state to write first (if any), and the answer once it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan<R> {
    pub(crate) write: Option<Transition>,
    pub(crate) reply: Result<R, ResponseError>,
}

impl<R> Plan<R> {
    fn refuse(e: ResponseError) -> Plan<R> {
        Plan {
            write: None,
            reply: Err(e),
        }
    }

    fn answer(r: R) -> Plan<R> {
        Plan {
            write: None,
            reply: Ok(r),
        }
    }
}

/// What follows a finished write.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Followup {
    pub(crate) markers: Option<Markers>,
    /// A transaction with no partitions goes straight to its complete state.
    pub(crate) write: Option<Transition>,
}

#[derive(Debug)]
pub(crate) struct TxnCoordinator {
    config: TxnConfig,
    pub(crate) txns: BTreeMap<String, Txn>,
}

/// The highest epoch a producer id may reach before a new id is needed (Kafka keeps
/// `Short.MaxValue` itself free for fencing).
const LAST_EPOCH: i16 = i16::MAX - 1;

impl TxnCoordinator {
    pub(crate) fn new(config: TxnConfig) -> TxnCoordinator {
        TxnCoordinator {
            config,
            txns: BTreeMap::new(),
        }
    }

    // ---- loading ----------------------------------------------------------------------------

    /// Restores an id from its latest record (`None`: a tombstone).
    pub(crate) fn restore(&mut self, id: &str, meta: Option<TxnMeta>, coordinator_epoch: i32) {
        match meta {
            Some(meta) => {
                self.txns.insert(
                    id.to_string(),
                    Txn {
                        meta,
                        pending: None,
                        coordinator_epoch,
                    },
                );
            }
            None => {
                self.txns.remove(id);
            }
        }
    }

    /// The markers still owed by the restored ids `belongs` picks: a coordinator that took over
    /// a transaction in PrepareCommit or PrepareAbort finishes it.
    pub(crate) fn resume(&self, belongs: impl Fn(&str) -> bool) -> Vec<Markers> {
        self.txns
            .iter()
            .filter(|(id, t)| belongs(id) && t.pending.is_none())
            .filter_map(|(id, t)| markers_for(id, t))
            .collect()
    }

    /// Forgets the ids `belongs` picks (their partition moved away).
    pub(crate) fn unload(&mut self, belongs: impl Fn(&str) -> bool) {
        self.txns.retain(|id, _| !belongs(id));
    }

    // ---- requests ---------------------------------------------------------------------------

    /// Whether [`TxnCoordinator::init_producer_id`] for `id` needs a fresh producer id: a new
    /// transactional id, or one whose epochs ran out.
    pub(crate) fn needs_producer_id(&self, id: &str) -> bool {
        self.txns
            .get(id)
            .is_none_or(|t| t.meta.producer_epoch.0 >= LAST_EPOCH)
    }

    /// InitProducerId with a transactional id: a new id starts at epoch 0; a known one has its
    /// epoch bumped, which fences the previous instance. An open transaction is aborted first
    /// (answered CONCURRENT_TRANSACTIONS; the client retries). `expected` is the producer id
    /// and epoch a client that bumps its own epoch names (KIP-360).
    pub(crate) fn init_producer_id(
        &mut self,
        id: &str,
        timeout_ms: i32,
        expected: Option<(ProducerId, ProducerEpoch)>,
        fresh: Option<ProducerId>,
        coordinator_epoch: i32,
        now_ms: i64,
    ) -> Plan<(ProducerId, ProducerEpoch)> {
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Plan::refuse(ResponseError::InvalidTransactionTimeout);
        }
        let Some(txn) = self.txns.get_mut(id) else {
            let Some(producer_id) = fresh else {
                return Plan::refuse(ResponseError::ConcurrentTransactions);
            };
            let meta = TxnMeta {
                producer_id,
                producer_epoch: ProducerEpoch(0),
                timeout_ms,
                state: TxnState::Empty,
                partitions: Default::default(),
                last_update_ms: now_ms,
                start_ms: -1,
            };
            self.txns.insert(
                id.to_string(),
                Txn {
                    meta: meta.clone(),
                    pending: Some(meta.clone()),
                    coordinator_epoch,
                },
            );
            return plan_write(id, meta, Ok((producer_id, ProducerEpoch(0))));
        };
        if txn.pending.is_some() {
            return Plan::refuse(ResponseError::ConcurrentTransactions);
        }
        let m = &txn.meta;
        if let Some((pid, epoch)) = expected {
            if pid != m.producer_id || epoch != m.producer_epoch {
                return Plan::refuse(ResponseError::ProducerFenced);
            }
        }
        match m.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
                Plan::refuse(ResponseError::ConcurrentTransactions)
            }
            TxnState::Ongoing => {
                // Abort what the previous instance left open, fencing it with a bumped epoch.
                let to = abort_fenced(m, now_ms);
                txn.pending = Some(to.clone());
                plan_write(id, to, Err(ResponseError::ConcurrentTransactions))
            }
            TxnState::Empty
            | TxnState::CompleteCommit
            | TxnState::CompleteAbort
            | TxnState::Dead => {
                let (producer_id, producer_epoch) = if m.producer_epoch.0 >= LAST_EPOCH {
                    match fresh {
                        Some(p) => (p, ProducerEpoch(0)),
                        None => return Plan::refuse(ResponseError::ConcurrentTransactions),
                    }
                } else {
                    (m.producer_id, ProducerEpoch(m.producer_epoch.0 + 1))
                };
                let to = TxnMeta {
                    producer_id,
                    producer_epoch,
                    timeout_ms,
                    state: TxnState::Empty,
                    partitions: Default::default(),
                    last_update_ms: now_ms,
                    start_ms: -1,
                };
                txn.pending = Some(to.clone());
                plan_write(id, to, Ok((producer_id, producer_epoch)))
            }
        }
    }

    /// The checks every request of a producer inside its transaction passes first.
    fn producer_txn(
        &mut self,
        id: &str,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
    ) -> Result<&mut Txn, ResponseError> {
        let txn = self
            .txns
            .get_mut(id)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        if txn.meta.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if txn.meta.producer_epoch != epoch {
            return Err(ResponseError::ProducerFenced);
        }
        if txn.pending.is_some() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        Ok(txn)
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's `__consumer_offsets`
    /// partition): the partitions join the transaction, which opens if it was not.
    pub(crate) fn add_partitions(
        &mut self,
        id: &str,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        partitions: &[TopicPartition],
        now_ms: i64,
    ) -> Plan<()> {
        let txn = match self.producer_txn(id, producer_id, epoch) {
            Ok(t) => t,
            Err(e) => return Plan::refuse(e),
        };
        let m = &txn.meta;
        match m.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
                return Plan::refuse(ResponseError::ConcurrentTransactions)
            }
            TxnState::Dead => return Plan::refuse(ResponseError::InvalidTxnState),
            TxnState::Ongoing if partitions.iter().all(|p| m.partitions.contains(p)) => {
                return Plan::answer(())
            }
            _ => {}
        }
        let mut to = m.clone();
        if m.state != TxnState::Ongoing {
            to.partitions.clear();
            to.start_ms = now_ms;
        }
        to.state = TxnState::Ongoing;
        to.partitions.extend(partitions.iter().cloned());
        to.last_update_ms = now_ms;
        txn.pending = Some(to.clone());
        plan_write(id, to, Ok(()))
    }

    /// Whether each partition is in the producer's open transaction (AddPartitionsToTxn v4+
    /// with `verify_only`, KIP-890's check before a transactional append).
    pub(crate) fn verify_partitions(
        &self,
        id: &str,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        partitions: &[TopicPartition],
    ) -> Vec<Result<(), ResponseError>> {
        let check = |p: &TopicPartition| {
            let txn = self
                .txns
                .get(id)
                .ok_or(ResponseError::InvalidProducerIdMapping)?;
            if txn.meta.producer_id != producer_id {
                return Err(ResponseError::InvalidProducerIdMapping);
            }
            if txn.meta.producer_epoch != epoch {
                return Err(ResponseError::ProducerFenced);
            }
            if matches!(
                txn.meta.state,
                TxnState::PrepareCommit | TxnState::PrepareAbort
            ) {
                // Ending: the producer retries and learns the outcome (as Kafka answers).
                return Err(ResponseError::ConcurrentTransactions);
            }
            if txn.meta.state != TxnState::Ongoing || !txn.meta.partitions.contains(p) {
                return Err(ResponseError::InvalidTxnState);
            }
            Ok(())
        };
        partitions.iter().map(check).collect()
    }

    /// EndTxn: an open transaction moves to PrepareCommit or PrepareAbort (answered once that
    /// is written; its markers follow). A retry of a finished one is answered as it ended.
    pub(crate) fn end_txn(
        &mut self,
        id: &str,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        commit: bool,
        now_ms: i64,
    ) -> Plan<()> {
        let txn = match self.producer_txn(id, producer_id, epoch) {
            Ok(t) => t,
            Err(e) => return Plan::refuse(e),
        };
        let m = &txn.meta;
        match (m.state, commit) {
            (TxnState::Ongoing, _) => {
                let mut to = m.clone();
                to.state = if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                };
                to.last_update_ms = now_ms;
                txn.pending = Some(to.clone());
                plan_write(id, to, Ok(()))
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Plan::answer(()),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Plan::refuse(ResponseError::ConcurrentTransactions)
            }
            (TxnState::PrepareEpochFence, _) => Plan::refuse(ResponseError::ConcurrentTransactions),
            _ => Plan::refuse(ResponseError::InvalidTxnState),
        }
    }

    /// Aborts the open transactions past their timeout, each with its epoch bumped (the
    /// producer is fenced): the states to write.
    pub(crate) fn tick(&mut self, now_ms: i64) -> Vec<Transition> {
        let mut out = Vec::new();
        for (id, txn) in &mut self.txns {
            let m = &txn.meta;
            let expired = m.state == TxnState::Ongoing
                && txn.pending.is_none()
                && now_ms.saturating_sub(m.start_ms) > i64::from(m.timeout_ms);
            if expired {
                let to = abort_fenced(m, now_ms);
                txn.pending = Some(to.clone());
                out.push(Transition {
                    transactional_id: id.clone(),
                    to,
                });
            }
        }
        out
    }

    /// Reports the write of a planned state: written, it takes effect (and a prepared
    /// transaction's markers are due); failed, the id stays as it was. A write that is not the
    /// id's pending one (planned before the id was loaded again, so another may be pending
    /// now) changes nothing.
    pub(crate) fn written(&mut self, t: &Transition, ok: bool) -> Followup {
        let id = t.transactional_id.as_str();
        let Some(txn) = self.txns.get_mut(id) else {
            return Followup::default();
        };
        if txn.pending.as_ref() != Some(&t.to) {
            return Followup::default();
        }
        let Some(to) = txn.pending.take() else {
            return Followup::default();
        };
        if !ok {
            // A new id that was never written is forgotten again.
            if to == txn.meta && to.state == TxnState::Empty && to.producer_epoch.0 == 0 {
                self.txns.remove(id);
            }
            return Followup::default();
        }
        txn.meta = to;
        let now_ms = txn.meta.last_update_ms;
        match markers_for(id, txn) {
            Some(m) if m.partitions.is_empty() => Followup {
                markers: None,
                write: self.markers_written(id, m.producer_id, m.producer_epoch, now_ms),
            },
            Some(m) => Followup {
                markers: Some(m),
                write: None,
            },
            None => Followup::default(),
        }
    }

    /// Every marker of a prepared transaction is written: it completes (the state to write).
    pub(crate) fn markers_written(
        &mut self,
        id: &str,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        now_ms: i64,
    ) -> Option<Transition> {
        let txn = self.txns.get_mut(id)?;
        let m = &txn.meta;
        if txn.pending.is_some() || m.producer_id != producer_id || m.producer_epoch != epoch {
            return None;
        }
        let state = match m.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            _ => return None,
        };
        let mut to = m.clone();
        to.state = state;
        to.partitions.clear();
        to.start_ms = -1;
        to.last_update_ms = now_ms;
        txn.pending = Some(to.clone());
        Some(Transition {
            transactional_id: id.to_string(),
            to,
        })
    }
}

fn plan_write<R>(id: &str, to: TxnMeta, reply: Result<R, ResponseError>) -> Plan<R> {
    Plan {
        write: Some(Transition {
            transactional_id: id.to_string(),
            to,
        }),
        reply,
    }
}

/// The abort of an open transaction with the producer's epoch bumped (so the producer is
/// fenced everywhere), when the epoch has room.
fn abort_fenced(m: &TxnMeta, now_ms: i64) -> TxnMeta {
    let mut to = m.clone();
    to.state = TxnState::PrepareAbort;
    if to.producer_epoch.0 < LAST_EPOCH {
        to.producer_epoch = ProducerEpoch(to.producer_epoch.0 + 1);
    }
    to.last_update_ms = now_ms;
    to
}

/// A prepared transaction's markers.
fn markers_for(id: &str, txn: &Txn) -> Option<Markers> {
    let commit = match txn.meta.state {
        TxnState::PrepareCommit => true,
        TxnState::PrepareAbort => false,
        _ => return None,
    };
    Some(Markers {
        transactional_id: id.to_string(),
        producer_id: txn.meta.producer_id,
        producer_epoch: txn.meta.producer_epoch,
        commit,
        coordinator_epoch: txn.coordinator_epoch,
        partitions: txn.meta.partitions.iter().cloned().collect(),
    })
}

#[cfg(test)]
#[path = "coordinator_tests.rs"]
mod tests;

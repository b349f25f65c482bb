//! The simulation's partition leaders as KIP-890 part 1 has them: a producer's first
//! transactional batch in a partition is checked with the coordinator, and appended only with
//! the guard of that check, which a marker voids. Delayed batches test it: one that arrives
//! after its transaction's abort must not open a transaction nobody will end (or, worse, one
//! the producer's next transaction would commit).

use std::time::Instant;

use rand::Rng;
use weir_log::{AppendInfo, LogError};
use weir_types::{LeaderEpoch, ProducerEpoch, ProducerId};

use super::{Sim, PARTITIONS, TOPIC};
use crate::partition::txn_gate::Guard;

/// A batch on its way to its partition, late.
#[derive(Debug)]
pub(super) struct Late {
    id: &'static str,
    pid: ProducerId,
    epoch: ProducerEpoch,
    part: i32,
    batch: Vec<u8>,
    /// The leader asked the coordinator already, and holds this guard for the append.
    checked: Option<Option<Guard>>,
}

impl Late {
    pub(super) fn new(
        id: &'static str,
        pid: ProducerId,
        epoch: ProducerEpoch,
        part: i32,
        batch: Vec<u8>,
    ) -> Late {
        Late {
            id,
            pid,
            epoch,
            part,
            batch,
            checked: None,
        }
    }
}

impl Sim {
    /// The leader's check before a transactional batch: the guard to append with (`None`
    /// when the producer's transaction is open there already, or the check is off).
    fn leader_check(
        &mut self,
        id: &str,
        pid: ProducerId,
        epoch: ProducerEpoch,
        part: i32,
    ) -> Result<Option<Guard>, LogError> {
        let gate = &mut self.gates[part as usize];
        if !self.verify || !gate.needs_check(pid) {
            return Ok(None);
        }
        let guard = gate.begin(pid, Instant::now());
        let tp = (TOPIC.to_string(), part);
        match self
            .coordinator
            .verify_partitions(id, pid, epoch, &[tp])
            .pop()
        {
            Some(Ok(())) => Ok(Some(guard)),
            _ => Err(LogError::InvalidTxnState { producer_id: pid }),
        }
    }

    /// Appends a transactional batch (fsynced) as the partition's leader does, with `guard`.
    fn append_with(
        &mut self,
        pid: ProducerId,
        part: i32,
        mut batch: Vec<u8>,
        guard: Option<Guard>,
    ) -> Result<AppendInfo, LogError> {
        let (log, gate) = (
            &mut self.logs[part as usize],
            &mut self.gates[part as usize],
        );
        if self.verify && !gate.admits(pid, log.open_transaction(pid).is_some(), guard) {
            return Err(LogError::InvalidTxnState { producer_id: pid });
        }
        let info = log.append_as_leader(&mut batch, LeaderEpoch(0), self.now)?;
        log.flush()?;
        if log.open_transaction(pid).is_some() {
            gate.appended(pid);
        }
        Ok(info)
    }

    /// A producer's batch reaching its leader on time: checked, then appended.
    pub(super) fn leader_append(
        &mut self,
        id: &str,
        pid: ProducerId,
        epoch: ProducerEpoch,
        part: i32,
        batch: Vec<u8>,
    ) -> Result<AppendInfo, LogError> {
        let guard = self.leader_check(id, pid, epoch, part)?;
        self.append_with(pid, part, batch, guard)
    }

    /// A delayed batch arrives: its check is one step, its append a later one (a marker may
    /// land between them, as on a real leader).
    pub(super) fn deliver_late(&mut self) {
        if self.late.is_empty() {
            return;
        }
        let k = self.rng.gen_range(0..self.late.len());
        let (id, pid, epoch, part) = {
            let l = &self.late[k];
            (l.id, l.pid, l.epoch, l.part)
        };
        let Some(guard) = self.late[k].checked else {
            match self.leader_check(id, pid, epoch, part) {
                Ok(guard) => self.late[k].checked = Some(guard),
                Err(e) => {
                    self.late.swap_remove(k);
                    self.events
                        .push(format!("late batch pid={} to {part} refused: {e}", pid.0));
                }
            }
            return;
        };
        let late = self.late.swap_remove(k);
        let result = self.append_with(pid, part, late.batch, guard);
        self.events.push(format!(
            "late batch pid={} epoch={} to {part}: {:?}",
            pid.0,
            epoch.0,
            result.as_ref().map(|i| i.base_offset.0)
        ));
        match result {
            Ok(_)
            | Err(LogError::InvalidTxnState { .. })
            | Err(LogError::ProducerFenced { .. })
            | Err(LogError::OutOfOrderSequence { .. }) => {}
            Err(e) => panic!("late append failed: {e}"),
        }
    }

    /// Once everything settled, no partition holds a transaction open: nothing would ever end
    /// it, and read_committed readers would wait behind it for good.
    pub(super) fn check_nothing_hangs(&self) {
        for part in 0..PARTITIONS {
            let open = self.logs[part as usize].open_transactions();
            assert!(
                open.is_empty(),
                "hanging transaction: partition {part} has {open:?} (producer, first offset) open after everything ended"
            );
        }
    }
}

/// Proof that the checkers see what the leaders' check prevents: without it, some seed ends
/// with a hanging transaction or reads a late batch of an aborted transaction.
#[test]
fn without_the_check_late_batches_hang_or_leak() {
    let mut caught = 0;
    for seed in 1..=12 {
        let mut sim = Sim::new(seed, false);
        sim.run(5_000);
        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            sim.check();
            sim.check_nothing_hangs();
        }));
        if let Err(e) = checked {
            let message = e.downcast_ref::<String>().cloned().unwrap_or_default();
            let what = ["aborted read", "hanging transaction"]
                .into_iter()
                .find(|w| message.contains(w))
                .unwrap_or(message.as_str());
            println!("seed {seed} without the check: {what}");
            caught += 1;
        }
    }
    assert!(caught > 0, "no seed caught a late batch without the check");
}

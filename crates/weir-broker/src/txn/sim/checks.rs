//! The simulation's reads and checkers: a read_committed consumer's view of a log, and the
//! checks of every read against the coordinator's written decisions (see `sim.rs`).

use std::collections::{HashMap, HashSet, VecDeque};

use bytes::Bytes;
use weir_log::{ControlType, Log};
use weir_types::ProducerId;

use super::{Sim, PARTITIONS};

/// What a read_committed consumer reads of a log from its start: records below the LSO,
/// dropping those of aborted transactions as Kafka's clients do (the aborted list from the
/// fetch, a producer marked aborted from its first aborted offset until its abort marker).
pub(super) fn read_committed(log: &Log) -> Vec<String> {
    let lso = log.last_stable_offset(log.log_end_offset());
    let start = log.log_start_offset();
    let mut aborted: VecDeque<_> = log.aborted_transactions(start, lso).into();
    let mut aborting: HashSet<ProducerId> = HashSet::new();
    let mut out = Vec::new();
    let mut offset = start;
    while offset < lso {
        let info = log.read(offset, 1 << 20, lso, true).unwrap();
        if info.slices.is_empty() {
            break;
        }
        for slice in &info.slices {
            let bytes = Bytes::from(slice.read_to_vec().unwrap());
            for (at, h) in weir_log::batch::batches_in(&bytes) {
                offset = offset.max(h.end());
                while aborted
                    .front()
                    .is_some_and(|t| t.first_offset.0 <= h.last_offset())
                {
                    let t = aborted.pop_front().unwrap();
                    aborting.insert(t.producer_id);
                }
                let pid = h.producer().map(|(p, _)| p);
                let batch = bytes.slice(at..at + h.total_size());
                if h.is_control() {
                    if weir_log::txn::control_type(&batch) == Some(ControlType::Abort) {
                        if let Some(p) = pid {
                            aborting.remove(&p);
                        }
                    }
                    continue;
                }
                if h.is_transactional() && pid.is_some_and(|p| aborting.contains(&p)) {
                    continue;
                }
                let set = weir_log::decompress::decode_batch(batch, 1 << 20).unwrap();
                for r in set.records {
                    out.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
                }
            }
        }
    }
    out
}

impl Sim {
    /// Checks every read against the truth; returns how many records were committed.
    pub(super) fn check(&mut self) -> usize {
        for part in 0..PARTITIONS {
            let last = read_committed(&self.logs[part as usize]);
            self.reads.push((part, last));
        }
        // Where each record came from: value → attempt.
        let mut origin: HashMap<&str, u64> = HashMap::new();
        for (attempt, records) in &self.appended {
            for (_, v) in records {
                origin.insert(v.as_str(), *attempt);
            }
        }
        let total_reads = self.reads.len();
        let finals: HashMap<i32, &Vec<String>> = self.reads[total_reads - PARTITIONS as usize..]
            .iter()
            .map(|(p, v)| (*p, v))
            .collect();
        for (n, (part, values)) in self.reads.iter().enumerate() {
            let which = if n + PARTITIONS as usize >= total_reads {
                "the final read".to_string()
            } else {
                format!("read {n}")
            };
            let mut once = HashSet::new();
            for v in values {
                assert!(
                    once.insert(v),
                    "duplicate: {v} seen twice in {which} of partition {part}"
                );
                let attempt = origin.get(v.as_str()).copied();
                let committed = attempt.and_then(|a| self.decided.get(&a)).copied();
                assert_eq!(
                    committed,
                    Some(true),
                    "aborted read: {v} (attempt {attempt:?}, decided {committed:?}) seen in {which} of partition {part}"
                );
            }
            // A transaction's records in the partition are seen from its first on, without a
            // gap: a read may end inside a committed transaction (the LSO is the first offset
            // of the oldest open one, which may lie between its records), never skip part of it.
            let seen: HashSet<&String> = values.iter().collect();
            let seen_attempts: HashSet<u64> = values
                .iter()
                .filter_map(|v| origin.get(v.as_str()).copied())
                .collect();
            for a in seen_attempts {
                let mine: Vec<&String> = self.appended[&a]
                    .iter()
                    .filter(|(p, _)| p == part)
                    .map(|(_, v)| v)
                    .collect();
                let shown = mine.iter().take_while(|v| seen.contains(**v)).count();
                let hidden = mine.iter().skip(shown).find(|v| seen.contains(**v));
                assert!(
                    hidden.is_none(),
                    "intermediate read: {which} of partition {part} shows {hidden:?} of attempt {a} but not {} before it: {values:?}",
                    mine[shown]
                );
            }
        }
        // A record once seen stays, at its place: each read of a partition extends the last.
        let mut last: HashMap<i32, &Vec<String>> = HashMap::new();
        for (n, (part, values)) in self.reads.iter().enumerate() {
            if let Some(before) = last.get(part) {
                assert!(
                    values.len() >= before.len() && values[..before.len()] == before[..],
                    "read {n} of partition {part} does not extend the read before it: {before:?} then {values:?}"
                );
            }
            last.insert(*part, values);
        }
        let mut committed_records = 0;
        for (attempt, records) in &self.appended {
            if self.decided.get(attempt) == Some(&true) {
                for (p, v) in records {
                    assert!(
                        finals[p].contains(v),
                        "lost committed write: {v} of attempt {attempt} not in partition {p}"
                    );
                    committed_records += 1;
                }
            }
        }
        committed_records
    }
}

//! The simulation's checkers, run after healing.

use std::collections::{BTreeMap, HashSet};

use weir_types::{LeaderEpoch, Offset};

use super::harness::{log_bytes, records_of};
use super::{Sim, NODES, TOPIC};

impl Sim {
    pub(super) fn check(&self, seed: u64) {
        let ctx = || format!("seed {seed}; faults:\n{}", self.faults.join("\n"));
        // Along the metadata log: epochs never fall, a leader is in its ISR.
        let mut epoch = LeaderEpoch(0);
        for image in &self.controller.history {
            let Some(t) = image.topic(TOPIC) else {
                continue;
            };
            let p = &t.partitions[&0];
            assert!(
                p.leader_epoch >= epoch,
                "epoch fell to {}; {}",
                p.leader_epoch,
                ctx()
            );
            epoch = p.leader_epoch;
            if let Some(leader) = p.leader {
                assert!(
                    p.isr.contains(&leader),
                    "leader {leader} outside ISR {:?}; {}",
                    p.isr,
                    ctx()
                );
            }
        }
        let last = &self.controller.image.topic(TOPIC).unwrap().partitions[&0];
        assert_eq!(
            last.isr.len(),
            3,
            "the ISR is not full after healing: {last:?}; {}",
            ctx()
        );
        let leader = self.node(last.leader.unwrap()).partition().unwrap();
        let end = leader.log().log_end_offset();
        let logs: Vec<Vec<u8>> = NODES
            .iter()
            .map(|id| {
                let p = self.node(*id).partition().unwrap();
                let end = p.log().log_end_offset();
                log_bytes(&p, end)
            })
            .collect();
        for (i, log) in logs.iter().enumerate() {
            assert!(
                *log == logs[0],
                "replica n{} differs from n1 ({} and {} bytes); {}",
                i + 1,
                log.len(),
                logs[0].len(),
                ctx()
            );
        }
        let fin: BTreeMap<Offset, u64> = records_of(&log_bytes(&leader, end)).into_iter().collect();
        let values: HashSet<u64> = fin.values().copied().collect();
        assert_eq!(
            values.len(),
            fin.len(),
            "a value is in the log twice; {}",
            ctx()
        );
        for (value, offset) in &self.acked {
            assert_eq!(
                fin.get(offset),
                Some(value),
                "acknowledged value {value} at offset {offset} is not there; {}",
                ctx()
            );
        }
        for (offset, value) in &self.seen {
            assert_eq!(
                fin.get(offset),
                Some(value),
                "the consumer saw {value} at offset {offset}, which vanished; {}",
                ctx()
            );
        }
        assert!(
            self.acked.len() > 100,
            "little progress: {} acknowledged; {}",
            self.acked.len(),
            ctx()
        );
        let count = |what: &str| self.faults.iter().filter(|f| f.contains(what)).count();
        let reopened: u64 = self
            .file_caches
            .lock()
            .map(|caches| caches.iter().map(|c| c.reopened()).sum())
            .unwrap_or(0);
        eprintln!(
            "replication seed {seed}: {} power cuts ({} of all brokers), {} kills, {} full disks, {} failed fsyncs, {reopened} files reopened",
            count("power cut n"),
            count("power cut of all"),
            count(": crash n"),
            count("disk full"),
            count("(EIO)"),
        );
        eprintln!(
            "replication seed {seed}: {} produced, {} acknowledged, {} read, final log {} records, {} metadata versions, {} faults",
            self.next_value,
            self.acked.len(),
            self.seen.len(),
            fin.len(),
            self.controller.history.len(),
            self.faults.len()
        );
    }
}

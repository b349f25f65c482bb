//! Placement of partition replicas on brokers (DESIGN.md, "Placement rule").
//!
//! Replicas of one partition go to distinct brokers; partition `p`'s leader is broker
//! `(start + p) mod B` of the sorted broker list, so no broker leads more than ⌈P/B⌉ of a topic's
//! partitions; the start position differs from topic to topic so small topics do not all lead on
//! the same broker. With racks, followers are picked to cover racks the partition has not used yet.

use crate::{MetaError, Result};
use weir_types::BrokerId;

/// A broker as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub broker_id: BrokerId,
    pub rack: Option<String>,
}

/// Replica lists for partitions `first_partition..first_partition + count` of a topic.
pub fn place(
    brokers: &[Candidate],
    first_partition: i32,
    count: i32,
    replication_factor: i16,
    start: usize,
) -> Result<Vec<Vec<BrokerId>>> {
    let mut sorted = brokers.to_vec();
    sorted.sort_by_key(|c| c.broker_id);
    sorted.dedup_by_key(|c| c.broker_id);
    let b = sorted.len();
    if replication_factor < 1 {
        return Err(MetaError::InvalidReplicationFactor(
            "replication factor must be at least 1".into(),
        ));
    }
    let r = replication_factor as usize;
    if r > b {
        return Err(MetaError::InvalidReplicationFactor(format!(
            "replication factor {r} is larger than the {b} available brokers"
        )));
    }
    let mut out = Vec::with_capacity(count.max(0) as usize);
    for p in first_partition..first_partition + count {
        let leader_at = (start + p as usize) % b;
        let mut replicas = vec![sorted[leader_at].broker_id];
        let mut racks: Vec<Option<String>> = vec![sorted[leader_at].rack.clone()];
        // Followers: walk the ring after the leader, shifted per partition so follower load spreads
        // too; prefer brokers on racks not used yet by this partition.
        let shift = (p as usize / b) % b.max(1);
        let ring: Vec<usize> = (1..b)
            .map(|i| (leader_at + 1 + (i - 1 + shift) % (b - 1).max(1)) % b)
            .collect();
        for pass in 0..2 {
            for &i in &ring {
                if replicas.len() == r {
                    break;
                }
                let c = &sorted[i];
                if replicas.contains(&c.broker_id) {
                    continue;
                }
                if pass == 0 && c.rack.is_some() && racks.contains(&c.rack) {
                    continue;
                }
                replicas.push(c.broker_id);
                racks.push(c.rack.clone());
            }
        }
        out.push(replicas);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brokers(n: usize) -> Vec<Candidate> {
        (0..n)
            .map(|i| Candidate {
                broker_id: BrokerId(i as i32 * 3 + 1),
                rack: None,
            })
            .collect()
    }

    proptest! {
        #[test]
        fn replicas_distinct_and_leaders_spread(b in 1usize..8, p in 1i32..40, r in 1i16..8, start in 0usize..100) {
            let cands = brokers(b);
            let result = place(&cands, 0, p, r, start);
            if r as usize > b {
                prop_assert!(result.is_err());
                return Ok(());
            }
            let placed = result.unwrap();
            prop_assert_eq!(placed.len(), p as usize);
            let mut leads = std::collections::HashMap::new();
            for replicas in &placed {
                prop_assert_eq!(replicas.len(), r as usize);
                let mut s = replicas.clone();
                s.sort();
                s.dedup();
                prop_assert_eq!(s.len(), r as usize);
                *leads.entry(replicas[0]).or_insert(0) += 1;
            }
            let max_leads = (p as usize).div_ceil(b);
            prop_assert!(leads.values().all(|&n| n <= max_leads));
        }
    }

    #[test]
    fn racks_are_spread() {
        let cands: Vec<Candidate> = (0..6)
            .map(|i| Candidate {
                broker_id: BrokerId(i),
                rack: Some(format!("r{}", i % 3)),
            })
            .collect();
        for replicas in place(&cands, 0, 12, 3, 0).unwrap() {
            let mut racks: Vec<i32> = replicas.iter().map(|b| b.get() % 3).collect();
            racks.sort();
            racks.dedup();
            assert_eq!(racks.len(), 3, "{replicas:?}");
        }
    }
}

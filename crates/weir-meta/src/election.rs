//! Partition leadership: which replica leads, and which replicas are in sync, given which brokers
//! are live.
//!
//! The active controller runs [`reconcile`] after every change of broker liveness (a fence, an
//! unfence, a registration) and on a timer. For each partition it:
//! - removes fenced brokers from the ISR, but never empties it: the last member stays, so the
//!   replica known to hold every committed record is the one that may lead again;
//! - keeps a live leader that is in the ISR, unless the preferred replica (the first of the
//!   replica list) is live and in the ISR, which then takes leadership back (Kafka's automatic
//!   preferred-leader rebalancing);
//! - otherwise elects the first replica, in replica-list order, that is live and in the ISR;
//! - with none, elects the first live replica only if unclean election is enabled for the
//!   topic (its ISR becomes that replica alone); else the partition is offline (leader -1).
//!
//! An empty ISR is a partition in recovery: its last in-sync replica came back from an unclean
//! shutdown and may have lost acknowledged records its followers still hold (KIP-966's case).
//! No replica is trusted blindly then: each replica's broker reports where its log ends, and once
//! every replica holding data reported, the one with the latest epoch and then the longest log
//! leads (its ISR is itself alone), so nothing any surviving replica holds is cut by the others'
//! truncation. With unclean election enabled, the best replica reported so far (or any live one)
//! leads at once.
//!
//! Every change of leader bumps the leader epoch, so epochs only grow. A leader is always a member
//! of its partition's ISR.

use uuid::Uuid;
use weir_types::BrokerId;

use crate::image::{MetadataImage, PartitionImage};
use crate::records::{ConfigResource, MetadataRecord, ReplicaLog};

/// The topic config that allows electing a replica outside the ISR.
pub const UNCLEAN_LEADER_ELECTION: &str = "unclean.leader.election.enable";

/// Whether unclean election is enabled for `topic`: its own config, else the cluster-wide
/// dynamic default, else `default` (the controller's static config).
pub fn unclean_enabled(image: &MetadataImage, topic: &str, default: bool) -> bool {
    image
        .configs(&ConfigResource::Topic(topic.to_string()))
        .get(UNCLEAN_LEADER_ELECTION)
        .or(image
            .configs(&ConfigResource::ClusterDefault)
            .get(UNCLEAN_LEADER_ELECTION))
        .map_or(default, |v| v.eq_ignore_ascii_case("true"))
}

/// A partition's next leader and ISR, or `None` when it stays as it is.
pub fn next_state(
    image: &MetadataImage,
    p: &PartitionImage,
    unclean: bool,
) -> Option<PartitionImage> {
    if p.isr.is_empty() {
        return recover(image, p, unclean);
    }
    let live = |b: &BrokerId| image.is_live(*b);
    let mut isr: Vec<BrokerId> = p.isr.iter().copied().filter(live).collect();
    if isr.is_empty() {
        // Keep the one replica that had everything: the last leader if it was in sync.
        let keep = if p.leader.is_some_and(|l| p.isr.contains(&l)) {
            p.leader
        } else {
            p.isr.first().copied()
        };
        isr.extend(keep);
    }
    let in_isr_and_live = |b: &BrokerId| isr.contains(b) && live(b);
    let preferred = p.replicas.first().copied().filter(in_isr_and_live);
    let current = p.leader.filter(in_isr_and_live);
    let mut leader = preferred
        .or(current)
        .or_else(|| p.replicas.iter().copied().find(in_isr_and_live));
    if leader.is_none() && unclean {
        if let Some(b) = holders_first(p).find(live) {
            leader = Some(b);
            isr = vec![b];
        }
    }
    let leader_epoch = if leader == p.leader {
        p.leader_epoch
    } else {
        p.leader_epoch.next()
    };
    let next = PartitionImage {
        isr,
        leader,
        leader_epoch,
        ..p.clone()
    };
    (next != *p).then_some(next)
}

/// A partition with an empty ISR: elects the replica with the best log once every replica that
/// holds data reported (any live one at once when `unclean`), else keeps it offline.
fn recover(image: &MetadataImage, p: &PartitionImage, unclean: bool) -> Option<PartitionImage> {
    let next = match recovery_pick(image, p, unclean) {
        Some(leader) => PartitionImage {
            isr: vec![leader],
            leader: Some(leader),
            leader_epoch: p.leader_epoch.next(),
            recovery: Vec::new(),
            ..p.clone()
        },
        None if p.leader.is_some() => PartitionImage {
            leader: None,
            leader_epoch: p.leader_epoch.next(),
            ..p.clone()
        },
        None => return None,
    };
    Some(next)
}

/// The leader a recovering partition (empty ISR) may take: the live replica whose current
/// incarnation reported the best log, once every replica holding data reported. With `unclean`,
/// the best reported so far, else the first live replica.
pub fn recovery_pick(image: &MetadataImage, p: &PartitionImage, unclean: bool) -> Option<BrokerId> {
    let current = |r: &&ReplicaLog| {
        r.leader_epoch == p.leader_epoch
            && image
                .brokers
                .get(&r.broker_id)
                .is_some_and(|b| !b.fenced && b.epoch == r.broker_epoch)
    };
    let holders: Vec<BrokerId> = p
        .replicas
        .iter()
        .copied()
        .filter(|b| !p.adding_replicas.contains(b))
        .collect();
    let reports: Vec<&ReplicaLog> = p
        .recovery
        .iter()
        .filter(current)
        .filter(|r| holders.contains(&r.broker_id))
        .collect();
    let all_reported = holders
        .iter()
        .all(|b| reports.iter().any(|r| r.broker_id == *b));
    // Ties go to the earlier replica in the list (the preferred one first).
    let best = reports
        .iter()
        .max_by_key(|r| {
            let position = holders.iter().position(|b| *b == r.broker_id);
            (r.rank(), std::cmp::Reverse(position))
        })
        .map(|r| r.broker_id);
    if all_reported {
        best
    } else if unclean {
        best.or_else(|| holders_first(p).find(|b| image.is_live(*b)))
    } else {
        None
    }
}

/// The replicas in order, those a move is still adding (and may hold nothing yet) last: the
/// order for an unclean election.
pub fn holders_first(p: &PartitionImage) -> impl Iterator<Item = BrokerId> + '_ {
    let adding = |b: &BrokerId| p.adding_replicas.contains(b);
    p.replicas
        .iter()
        .copied()
        .filter(move |b| !adding(b))
        .chain(p.replicas.iter().copied().filter(move |b| adding(b)))
}

/// The partition records that bring every partition in line with the brokers' liveness.
pub fn reconcile(image: &MetadataImage, unclean_default: bool) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for topic in image.topics() {
        let unclean = unclean_enabled(image, &topic.name, unclean_default);
        for (partition, p) in &topic.partitions {
            if let Some(next) = next_state(image, p, unclean) {
                out.push(partition_record(topic.topic_id, *partition, next));
            }
        }
    }
    out
}

/// The record of a partition's whole state.
pub fn partition_record(topic_id: Uuid, partition: i32, p: PartitionImage) -> MetadataRecord {
    MetadataRecord::Partition {
        topic_id,
        partition,
        replicas: p.replicas,
        isr: p.isr,
        leader: p.leader,
        leader_epoch: p.leader_epoch,
        adding_replicas: p.adding_replicas,
        removing_replicas: p.removing_replicas,
        recovery: p.recovery,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use weir_types::LeaderEpoch;

    fn ids(v: &[i32]) -> Vec<BrokerId> {
        v.iter().copied().map(BrokerId).collect()
    }

    fn image_with(
        brokers: i32,
        partitions: &[(Vec<BrokerId>, Vec<BrokerId>, Option<BrokerId>)],
    ) -> MetadataImage {
        let mut image = MetadataImage::default();
        for b in 0..brokers {
            image.apply(&MetadataRecord::RegisterBroker {
                broker_id: BrokerId(b),
                host: "127.0.0.1".into(),
                port: 9092 + b,
                endpoints: vec![],
                rack: None,
                broker_epoch: 1,
                incarnation: None,
                fenced: false,
            });
        }
        let topic_id = Uuid::from_u128(1);
        image.apply(&MetadataRecord::Topic {
            name: "t".into(),
            topic_id,
        });
        for (i, (replicas, isr, leader)) in partitions.iter().enumerate() {
            image.apply(&MetadataRecord::Partition {
                topic_id,
                partition: i as i32,
                replicas: replicas.clone(),
                isr: isr.clone(),
                leader: *leader,
                leader_epoch: LeaderEpoch(0),
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
                recovery: Vec::new(),
            });
        }
        image
    }

    fn apply_all(image: &mut MetadataImage, records: &[MetadataRecord]) {
        for r in records {
            image.apply(r);
        }
    }

    fn fence(image: &mut MetadataImage, b: BrokerId) {
        image.apply(&MetadataRecord::FenceBroker { broker_id: b });
        let records = reconcile(image, false);
        apply_all(image, &records);
    }

    fn partition(image: &MetadataImage, p: i32) -> PartitionImage {
        PartitionImage::clone(&image.topic("t").unwrap().partitions[&p])
    }

    #[test]
    fn a_fenced_leader_hands_over_to_the_isr_and_takes_back_preference_on_return() {
        let mut image = image_with(3, &[(ids(&[0, 1, 2]), ids(&[0, 1, 2]), Some(BrokerId(0)))]);
        fence(&mut image, BrokerId(0));
        let p = partition(&image, 0);
        assert_eq!(
            (p.leader, p.isr.clone(), p.leader_epoch),
            (Some(BrokerId(1)), ids(&[1, 2]), LeaderEpoch(1))
        );
        // Back, but not in the ISR: it cannot lead until it is (replication re-adds it).
        image.apply(&MetadataRecord::UnfenceBroker {
            broker_id: BrokerId(0),
        });
        assert!(reconcile(&image, false).is_empty());
        image.apply(&MetadataRecord::Partition {
            topic_id: Uuid::from_u128(1),
            partition: 0,
            replicas: ids(&[0, 1, 2]),
            isr: ids(&[1, 2, 0]),
            leader: Some(BrokerId(1)),
            leader_epoch: LeaderEpoch(1),
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
            recovery: Vec::new(),
        });
        let records = reconcile(&image, false);
        apply_all(&mut image, &records);
        let p = partition(&image, 0);
        assert_eq!(
            (p.leader, p.leader_epoch),
            (Some(BrokerId(0)), LeaderEpoch(2))
        );
    }

    #[test]
    fn the_last_isr_member_stays_and_the_partition_waits_for_it() {
        let mut image = image_with(2, &[(ids(&[0, 1]), ids(&[0]), Some(BrokerId(0)))]);
        fence(&mut image, BrokerId(0));
        let p = partition(&image, 0);
        assert_eq!(
            (p.leader, p.isr.clone(), p.leader_epoch),
            (None, ids(&[0]), LeaderEpoch(1))
        );
        image.apply(&MetadataRecord::UnfenceBroker {
            broker_id: BrokerId(0),
        });
        let records = reconcile(&image, false);
        apply_all(&mut image, &records);
        let p = partition(&image, 0);
        assert_eq!(
            (p.leader, p.isr.clone(), p.leader_epoch),
            (Some(BrokerId(0)), ids(&[0]), LeaderEpoch(2))
        );
    }

    #[test]
    fn unclean_election_takes_a_live_replica_outside_the_isr() {
        let mut image = image_with(2, &[(ids(&[0, 1]), ids(&[0]), Some(BrokerId(0)))]);
        image.apply(&MetadataRecord::Config {
            resource: ConfigResource::Topic("t".into()),
            name: UNCLEAN_LEADER_ELECTION.into(),
            value: Some("true".into()),
        });
        fence(&mut image, BrokerId(0));
        let p = partition(&image, 0);
        assert_eq!(
            (p.leader, p.isr.clone(), p.leader_epoch),
            (Some(BrokerId(1)), ids(&[1]), LeaderEpoch(1))
        );
    }

    proptest! {
        /// Any sequence of fences, unfences and ISR growth keeps: leaders in their ISR and live,
        /// ISRs non-empty and within the replicas, epochs never falling, and no partition offline
        /// while an ISR member is live.
        #[test]
        fn elections_keep_their_invariants(
            brokers in 1i32..6,
            layout in proptest::collection::vec((0usize..100, 1usize..4), 1..8),
            events in proptest::collection::vec((0u8..3, 0i32..6, 0usize..8), 0..40),
            unclean in any::<bool>(),
        ) {
            let partitions: Vec<(Vec<BrokerId>, Vec<BrokerId>, Option<BrokerId>)> = layout
                .iter()
                .map(|(start, rf)| {
                    let rf = (*rf).min(brokers as usize);
                    let replicas: Vec<BrokerId> = (0..rf)
                        .map(|i| BrokerId(((start + i) % brokers as usize) as i32))
                        .collect();
                    (replicas.clone(), replicas.clone(), Some(replicas[0]))
                })
                .collect();
            let mut image = image_with(brokers, &partitions);
            image.apply(&MetadataRecord::Config {
                resource: ConfigResource::Topic("t".into()),
                name: UNCLEAN_LEADER_ELECTION.into(),
                value: Some(unclean.to_string()),
            });
            let topic_id = Uuid::from_u128(1);
            for (kind, b, p) in events {
                let b = BrokerId(b % brokers);
                let before: Vec<PartitionImage> =
                    (0..partitions.len() as i32).map(|i| partition(&image, i)).collect();
                match kind {
                    0 => image.apply(&MetadataRecord::FenceBroker { broker_id: b }),
                    1 => image.apply(&MetadataRecord::UnfenceBroker { broker_id: b }),
                    _ => {
                        // A follower caught up: the leader adds it to the ISR.
                        let p = (p % partitions.len()) as i32;
                        let mut state = partition(&image, p);
                        if state.leader.is_some() && state.replicas.contains(&b)
                            && !state.isr.contains(&b) && image.is_live(b)
                        {
                            state.isr.push(b);
                            image.apply(&partition_record(topic_id, p, state));
                        }
                    }
                }
                let records = reconcile(&image, false);
                apply_all(&mut image, &records);
                prop_assert!(reconcile(&image, false).is_empty(), "reconcile is idempotent");
                for (i, old) in before.iter().enumerate() {
                    let now = partition(&image, i as i32);
                    prop_assert!(now.leader_epoch >= old.leader_epoch);
                    if now.leader != old.leader {
                        prop_assert!(now.leader_epoch > old.leader_epoch);
                    }
                    prop_assert!(!now.isr.is_empty());
                    prop_assert!(now.isr.iter().all(|r| now.replicas.contains(r)));
                    if let Some(leader) = now.leader {
                        prop_assert!(now.isr.contains(&leader), "{now:?}");
                        prop_assert!(image.is_live(leader));
                    } else {
                        prop_assert!(!now.isr.iter().any(|r| image.is_live(*r)), "{now:?}");
                        if unclean {
                            prop_assert!(!now.replicas.iter().any(|r| image.is_live(*r)));
                        }
                    }
                    let preferred = now.replicas[0];
                    if image.is_live(preferred) && now.isr.contains(&preferred) {
                        prop_assert_eq!(now.leader, Some(preferred));
                    }
                }
            }
        }
    }
}

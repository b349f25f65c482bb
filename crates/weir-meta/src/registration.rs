//! Broker incarnations: registration, broker epochs, and the recovery of partitions whose only
//! in-sync replica came back from an unclean shutdown.
//!
//! Every start of a broker process is a new incarnation (KRaft's broker epoch, KIP-966's unclean
//! shutdown detection). A replica's unsynced tail may be gone after a crash, so a new incarnation
//! never simply resumes: it starts fenced, which takes it out of every ISR and leadership and
//! bumps the leader epoch of what it led; it rejoins an ISR only by catching up with the leader
//! after truncating to it. When it was the only in-sync replica and did not shut down cleanly, no
//! replica is known to hold every acknowledged record: the partition's ISR becomes empty, every
//! replica reports where its log ends, and [`crate::election`] elects the best one.

use uuid::Uuid;
use weir_types::BrokerId;

use crate::election;
use crate::image::{MetadataImage, PartitionImage};
use crate::records::{Endpoint, MetadataRecord, PartitionLog, ReplicaLog};
use crate::{MetaError, Result};

/// A broker's registration, as [`ControllerOp::RegisterBroker`] carries it.
pub(crate) struct Registration<'a> {
    pub(crate) broker_id: BrokerId,
    pub(crate) host: &'a str,
    pub(crate) port: i32,
    pub(crate) endpoints: &'a [Endpoint],
    pub(crate) rack: Option<String>,
    pub(crate) incarnation: Uuid,
    pub(crate) previous_broker_epoch: Option<i64>,
}

/// Registers a broker. The incarnation that registered last registering again only updates its
/// endpoints. A new incarnation gets a new broker epoch, larger than any before (the image's
/// version grows with every commit); a known broker's new incarnation starts fenced, so the
/// reconciliation that follows takes it out of every ISR and leadership, and a partition it
/// leads gets a new leader epoch even if it leads again: a restarted replica never serves in an
/// epoch whose records it may have lost. After an unclean shutdown, partitions whose only
/// in-sync replica it was go into recovery.
pub(crate) fn plan_register_broker(
    image: &MetadataImage,
    r: Registration<'_>,
) -> Vec<MetadataRecord> {
    let known = image.brokers.get(&r.broker_id);
    let same_incarnation = known.is_some_and(|b| b.incarnation == Some(r.incarnation));
    let unchanged = known.is_some_and(|b| {
        b.host == r.host
            && b.port == r.port
            && b.endpoints == r.endpoints
            && b.rack == r.rack
            && !b.fenced
    });
    let mut records = Vec::new();
    if image.cluster_id.is_none() {
        // Kafka's cluster ids are 22 characters of base64 of a UUID; ours are hex of one.
        let id = Uuid::new_v4().simple().to_string()[..22].to_string();
        records.push(MetadataRecord::Cluster { cluster_id: id });
    }
    if same_incarnation {
        if !unchanged {
            let b = known.expect("same incarnation means registered");
            records.push(MetadataRecord::RegisterBroker {
                broker_id: r.broker_id,
                host: r.host.to_string(),
                port: r.port,
                endpoints: r.endpoints.to_vec(),
                rack: r.rack,
                broker_epoch: b.epoch,
                incarnation: Some(r.incarnation),
                fenced: b.fenced,
            });
        }
        return records;
    }
    let epoch = known
        .map_or(0, |b| b.epoch + 1)
        .max(image.version as i64 + 1);
    records.push(MetadataRecord::RegisterBroker {
        broker_id: r.broker_id,
        host: r.host.to_string(),
        port: r.port,
        endpoints: r.endpoints.to_vec(),
        rack: r.rack,
        broker_epoch: epoch,
        incarnation: Some(r.incarnation),
        fenced: known.is_some(),
    });
    let clean = known.is_some_and(|b| r.previous_broker_epoch == Some(b.epoch));
    if known.is_some() && !clean {
        records.extend(partitions_losing_their_last_in_sync_replica(
            image,
            r.broker_id,
        ));
    }
    records
}

/// The partitions whose ISR is `broker_id` alone, put into recovery: that replica came back from
/// an unclean shutdown and may have lost acknowledged records that other replicas still hold.
fn partitions_losing_their_last_in_sync_replica(
    image: &MetadataImage,
    broker_id: BrokerId,
) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for topic in image.topics() {
        for (partition, p) in &topic.partitions {
            if p.isr != [broker_id] {
                continue;
            }
            tracing::warn!(
                topic = %topic.name,
                partition,
                %broker_id,
                "the only in-sync replica restarted after an unclean shutdown; electing the replica with the longest log once all report"
            );
            let next = PartitionImage {
                isr: Vec::new(),
                leader: None,
                leader_epoch: p.leader_epoch.next(),
                recovery: Vec::new(),
                ..PartitionImage::clone(p)
            };
            out.push(election::partition_record(topic.topic_id, *partition, next));
        }
    }
    out
}

/// Records a broker's reports of its logs for recovering partitions (empty ISR), replacing any
/// earlier report of the same replica. Reports of partitions not in recovery are ignored.
pub(crate) fn plan_report_replica_logs(
    image: &MetadataImage,
    broker_id: BrokerId,
    broker_epoch: i64,
    logs: &[PartitionLog],
) -> Result<Vec<MetadataRecord>> {
    match image.brokers.get(&broker_id) {
        None => return Err(MetaError::UnknownBroker(broker_id)),
        Some(b) if b.epoch != broker_epoch => {
            return Err(MetaError::StaleBrokerEpoch(format!(
                "broker {broker_id} is in epoch {}, not {broker_epoch}",
                b.epoch
            )))
        }
        Some(_) => {}
    }
    let mut out = Vec::new();
    for log in logs {
        let Some(p) = image
            .topic_by_id(&log.topic_id)
            .and_then(|t| t.partitions.get(&log.partition))
        else {
            continue;
        };
        let current = p.isr.is_empty() && p.leader_epoch == log.leader_epoch;
        if !current || !p.replicas.contains(&broker_id) {
            continue;
        }
        let report = ReplicaLog {
            broker_id,
            broker_epoch,
            leader_epoch: log.leader_epoch,
            last_epoch: log.last_epoch,
            log_end_offset: log.log_end_offset,
        };
        if p.recovery.contains(&report) {
            continue;
        }
        let mut next = PartitionImage::clone(p);
        next.recovery.retain(|r| r.broker_id != broker_id);
        next.recovery.push(report);
        out.push(election::partition_record(
            log.topic_id,
            log.partition,
            next,
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::{ControllerOp, CreateTopic};
    use weir_types::{LeaderEpoch, Offset};

    fn ids(v: &[i32]) -> Vec<BrokerId> {
        v.iter().copied().map(BrokerId).collect()
    }

    /// Runs an op as the active controller does: its records, then the leadership changes they
    /// cause.
    fn run(image: &mut MetadataImage, op: ControllerOp) -> Result<()> {
        let moves = op.moves_leaders();
        let (_, records) = op.plan(image)?;
        for r in &records {
            image.apply(r);
        }
        image.version += 1;
        if moves && !records.is_empty() {
            for r in election::reconcile(image, false) {
                image.apply(&r);
            }
        }
        Ok(())
    }

    fn register(image: &mut MetadataImage, b: BrokerId, start: u128, previous: Option<i64>) {
        let op = ControllerOp::RegisterBroker {
            broker_id: b,
            host: "127.0.0.1".into(),
            port: 9092 + b.get(),
            endpoints: vec![],
            rack: None,
            incarnation: Uuid::from_u128(start),
            previous_broker_epoch: previous,
        };
        run(image, op).unwrap();
    }

    fn heartbeat(image: &mut MetadataImage, b: BrokerId) {
        run(image, ControllerOp::Heartbeat { broker_id: b }).unwrap();
    }

    fn report(
        image: &mut MetadataImage,
        b: BrokerId,
        last_epoch: LeaderEpoch,
        end: Offset,
    ) -> Result<()> {
        let op = ControllerOp::ReportReplicaLogs {
            broker_id: b,
            broker_epoch: image.brokers[&b].epoch,
            logs: vec![log_of(image, last_epoch, end)],
        };
        run(image, op)
    }

    fn log_of(image: &MetadataImage, last_epoch: LeaderEpoch, end: Offset) -> PartitionLog {
        PartitionLog {
            topic_id: image.topic("t").unwrap().topic_id,
            partition: 0,
            leader_epoch: partition(image).leader_epoch,
            last_epoch: Some(last_epoch),
            log_end_offset: end,
        }
    }

    fn partition(image: &MetadataImage) -> PartitionImage {
        PartitionImage::clone(&image.topic("t").unwrap().partitions[&0])
    }

    /// Three brokers and topic `t` with one partition on all three, led by broker 1.
    fn cluster() -> MetadataImage {
        let mut image = MetadataImage::default();
        for b in 1..=3 {
            register(&mut image, BrokerId(b), b as u128, None);
        }
        let op = ControllerOp::CreateTopic {
            request: CreateTopic {
                name: "t".into(),
                num_partitions: -1,
                replication_factor: -1,
                assignments: vec![(0, ids(&[1, 2, 3]))],
                configs: Vec::new(),
            },
            default_partitions: 1,
            default_replication_factor: 3,
            validate_only: false,
        };
        run(&mut image, op).unwrap();
        assert_eq!(partition(&image).leader, Some(BrokerId(1)));
        image
    }

    #[test]
    fn endpoints_are_kept_by_listener_and_a_change_is_recorded() {
        let mut image = MetadataImage::default();
        let endpoint = |listener: &str, port: i32, protocol: i16| Endpoint {
            listener: listener.into(),
            host: "127.0.0.1".into(),
            port,
            security_protocol: protocol,
        };
        let op = |endpoints: Vec<Endpoint>| ControllerOp::RegisterBroker {
            broker_id: BrokerId(0),
            host: "127.0.0.1".into(),
            port: 9092,
            endpoints,
            rack: None,
            incarnation: Uuid::from_u128(1),
            previous_broker_epoch: None,
        };
        let plain = endpoint("PLAINTEXT", 9092, 0);
        run(
            &mut image,
            op(vec![plain.clone(), endpoint("SSL", 9093, 1)]),
        )
        .unwrap();
        let b = &image.brokers[&BrokerId(0)];
        assert_eq!(b.endpoint("SSL"), Some(("127.0.0.1", 9093)));
        assert_eq!(b.endpoint("PLAINTEXT"), Some(("127.0.0.1", 9092)));
        assert_eq!(b.endpoint("EXTERNAL"), None);
        // The same incarnation with another listener: its endpoints are replaced.
        run(&mut image, op(vec![plain, endpoint("EXTERNAL", 9094, 3)])).unwrap();
        let b = &image.brokers[&BrokerId(0)];
        assert_eq!(b.endpoint("SSL"), None);
        assert_eq!(b.endpoint("EXTERNAL"), Some(("127.0.0.1", 9094)));
        // A broker registered before listeners had names serves its one endpoint to all.
        run(&mut image, op(vec![])).unwrap();
        assert_eq!(
            image.brokers[&BrokerId(0)].endpoint("ANY"),
            Some(("127.0.0.1", 9092))
        );
        // And the records carry them through a snapshot.
        let mut copy = MetadataImage::default();
        for r in image.to_records() {
            copy.apply(&r);
        }
        assert_eq!(copy.brokers, image.brokers);
    }

    #[test]
    fn a_new_incarnation_gets_a_new_epoch_and_leads_again_only_in_a_new_leader_epoch() {
        let mut image = cluster();
        let (epoch, p) = (image.brokers[&BrokerId(1)].epoch, partition(&image));
        // The same process registering again (a retried call) changes nothing.
        register(&mut image, BrokerId(1), 1, None);
        assert_eq!(image.brokers[&BrokerId(1)].epoch, epoch);
        assert_eq!(partition(&image), p);
        // A restart: a larger epoch, fenced, out of the ISR, leadership moved on.
        register(&mut image, BrokerId(1), 11, None);
        assert!(image.brokers[&BrokerId(1)].epoch > epoch);
        assert!(image.brokers[&BrokerId(1)].fenced);
        let moved = partition(&image);
        assert_eq!(
            (moved.leader, moved.isr.clone()),
            (Some(BrokerId(2)), ids(&[2, 3]))
        );
        assert!(moved.leader_epoch > p.leader_epoch);
        // Its first heartbeat unfences it; it rejoins the ISR only through its leader.
        heartbeat(&mut image, BrokerId(1));
        assert!(!image.brokers[&BrokerId(1)].fenced);
        assert_eq!(partition(&image).isr, ids(&[2, 3]));
    }

    #[test]
    fn a_lone_in_sync_replica_back_from_a_crash_waits_for_every_replica_and_the_longest_log_leads()
    {
        let mut image = cluster();
        // A whole-cluster crash: each broker comes back as a new incarnation, the old leader
        // last; none shut down cleanly.
        register(&mut image, BrokerId(2), 12, None);
        register(&mut image, BrokerId(3), 13, None);
        assert_eq!(partition(&image).isr, ids(&[1]));
        register(&mut image, BrokerId(1), 11, None);
        let p = partition(&image);
        assert!(
            p.isr.is_empty(),
            "nobody is known to hold every record: {p:?}"
        );
        assert_eq!(p.leader, None);
        for b in 1..=3 {
            heartbeat(&mut image, BrokerId(b));
        }
        assert_eq!(partition(&image).leader, None);
        // Broker 1 lost its tail; 2 and 3 hold more. Nobody leads until all three reported.
        report(&mut image, BrokerId(1), LeaderEpoch(0), Offset(10_000)).unwrap();
        report(&mut image, BrokerId(3), LeaderEpoch(0), Offset(20_000)).unwrap();
        assert_eq!(partition(&image).leader, None);
        // A report of an earlier incarnation is refused.
        let stale = ControllerOp::ReportReplicaLogs {
            broker_id: BrokerId(2),
            broker_epoch: 1,
            logs: vec![log_of(&image, LeaderEpoch(0), Offset(30_000))],
        };
        assert!(matches!(
            run(&mut image, stale),
            Err(MetaError::StaleBrokerEpoch(_))
        ));
        report(&mut image, BrokerId(2), LeaderEpoch(0), Offset(20_000)).unwrap();
        let p = partition(&image);
        // 2 and 3 tie; the earlier replica in the list wins.
        assert_eq!((p.leader, p.isr.clone()), (Some(BrokerId(2)), ids(&[2])));
        assert!(p.recovery.is_empty());
        assert!(p.leader_epoch > partition(&cluster()).leader_epoch);
    }

    #[test]
    fn a_later_epoch_beats_a_longer_log_and_a_restart_voids_a_report() {
        let mut image = cluster();
        for (b, start) in [(BrokerId(2), 12), (BrokerId(3), 13), (BrokerId(1), 11)] {
            register(&mut image, b, start, None);
            heartbeat(&mut image, b);
        }
        report(&mut image, BrokerId(1), LeaderEpoch(4), Offset(100)).unwrap();
        // Broker 3 reports, then restarts before the election: its report no longer counts.
        report(&mut image, BrokerId(3), LeaderEpoch(4), Offset(50)).unwrap();
        register(&mut image, BrokerId(3), 23, None);
        heartbeat(&mut image, BrokerId(3));
        report(&mut image, BrokerId(2), LeaderEpoch(3), Offset(900)).unwrap();
        assert_eq!(partition(&image).leader, None);
        report(&mut image, BrokerId(3), LeaderEpoch(4), Offset(50)).unwrap();
        assert_eq!(partition(&image).leader, Some(BrokerId(1)));
    }

    #[test]
    fn a_lone_in_sync_replica_back_from_a_clean_shutdown_leads_again() {
        let mut image = cluster();
        register(&mut image, BrokerId(2), 12, None);
        register(&mut image, BrokerId(3), 13, None);
        let epoch = image.brokers[&BrokerId(1)].epoch;
        register(&mut image, BrokerId(1), 11, Some(epoch));
        assert_eq!(partition(&image).isr, ids(&[1]));
        heartbeat(&mut image, BrokerId(1));
        let p = partition(&image);
        assert_eq!((p.leader, p.isr.clone()), (Some(BrokerId(1)), ids(&[1])));
    }

    #[test]
    fn unclean_election_takes_the_best_report_so_far() {
        let mut image = cluster();
        for (b, start) in [(BrokerId(2), 12), (BrokerId(3), 13), (BrokerId(1), 11)] {
            register(&mut image, b, start, None);
            heartbeat(&mut image, b);
        }
        report(&mut image, BrokerId(1), LeaderEpoch(0), Offset(10)).unwrap();
        report(&mut image, BrokerId(3), LeaderEpoch(0), Offset(30)).unwrap();
        let op = ControllerOp::ElectLeaders {
            partitions: Some(vec![("t".into(), 0)]),
            preferred: false,
        };
        run(&mut image, op).unwrap();
        let p = partition(&image);
        assert_eq!((p.leader, p.isr.clone()), (Some(BrokerId(3)), ids(&[3])));
        assert!(p.recovery.is_empty());
    }
}

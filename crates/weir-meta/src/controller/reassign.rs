//! Partition reassignments (KIP-455): moving a partition to new replicas, which copy it and
//! join the ISR before the replicas leaving go, and cancelling a move.

use weir_types::BrokerId;

use super::{Election, Outcome};
use crate::election;
use crate::image::{MetadataImage, PartitionImage};
use crate::records::MetadataRecord;
use crate::{MetaError, Result};

/// One answer per partition asked; each sees the effect of those before it.
pub(super) fn plan_reassignments(
    image: &MetadataImage,
    partitions: &[(String, i32, Option<Vec<BrokerId>>)],
    keep_replication_factor: bool,
) -> (Outcome, Vec<MetadataRecord>) {
    let mut work = image.clone();
    let mut results = Vec::with_capacity(partitions.len());
    let mut records = Vec::new();
    for (topic, partition, target) in partitions {
        let planned = plan_reassignment(
            &work,
            topic,
            *partition,
            target.as_deref(),
            keep_replication_factor,
        );
        let error = match planned {
            Ok(record) => {
                if let Some(r) = record {
                    work.apply(&r);
                    records.push(r);
                }
                None
            }
            Err(e) => Some(e),
        };
        results.push(Election {
            topic: topic.clone(),
            partition: *partition,
            error,
        });
    }
    (Outcome::Reassignments(results), records)
}

fn plan_reassignment(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    target: Option<&[BrokerId]>,
    keep_replication_factor: bool,
) -> Result<Option<MetadataRecord>> {
    let name = || format!("{topic}-{partition}");
    let t = image
        .topic(topic)
        .ok_or_else(|| MetaError::UnknownTopic(topic.to_string()))?;
    let p = t
        .partitions
        .get(&partition)
        .ok_or_else(|| MetaError::UnknownPartition(name()))?;
    // The replicas before any move in progress (what a cancel returns to, and the replication
    // factor a target must keep when asked to).
    let original: Vec<BrokerId> = p
        .replicas
        .iter()
        .copied()
        .filter(|b| !p.adding_replicas.contains(b))
        .collect();
    let next = match target {
        None => {
            if !p.reassigning() {
                return Err(MetaError::NoReassignmentInProgress(name()));
            }
            if !p.isr.iter().any(|b| original.contains(b)) {
                return Err(MetaError::InvalidReplicaAssignment(format!(
                    "{}: no replica from before the move is in sync; it cannot be cancelled now",
                    name()
                )));
            }
            finish_reassignment(image, p, original)
        }
        Some(target) => {
            let mut seen = std::collections::BTreeSet::new();
            if target.is_empty() || !target.iter().all(|b| seen.insert(*b)) {
                return Err(MetaError::InvalidReplicaAssignment(format!(
                    "{}: the target {target:?} must name distinct brokers",
                    name()
                )));
            }
            if let Some(b) = target.iter().find(|b| !image.brokers.contains_key(b)) {
                return Err(MetaError::InvalidReplicaAssignment(format!(
                    "{}: broker {b} is not registered",
                    name()
                )));
            }
            if keep_replication_factor && target.len() != original.len() {
                return Err(MetaError::InvalidReplicationFactor(format!(
                    "{}: the target has {} replicas, the partition {}",
                    name(),
                    target.len(),
                    original.len()
                )));
            }
            // From every current replica, as KRaft does: over a move in progress, the replicas
            // it was adding (which may be the only ones in sync by now) leave only when this
            // target is in sync, never before.
            let adding: Vec<BrokerId> = target
                .iter()
                .copied()
                .filter(|b| !p.replicas.contains(b))
                .collect();
            let removing: Vec<BrokerId> = p
                .replicas
                .iter()
                .copied()
                .filter(|b| !target.contains(b))
                .collect();
            let mut next = PartitionImage::clone(p);
            next.replicas = target
                .iter()
                .copied()
                .chain(removing.iter().copied())
                .collect();
            next.adding_replicas = adding;
            next.removing_replicas = removing;
            complete_reassignment(image, next)
        }
    };
    if next == **p {
        return Ok(None);
    }
    Ok(Some(election::partition_record(
        t.topic_id, partition, next,
    )))
}

/// Completes a reassignment whose target replicas are all in the ISR.
pub(super) fn complete_reassignment(image: &MetadataImage, p: PartitionImage) -> PartitionImage {
    if !p.reassigning() {
        return p;
    }
    let target: Vec<BrokerId> = p
        .replicas
        .iter()
        .copied()
        .filter(|b| !p.removing_replicas.contains(b))
        .collect();
    if target.iter().all(|b| p.isr.contains(b)) {
        finish_reassignment(image, &p, target)
    } else {
        p
    }
}

/// Ends a move on `replicas`: the ISR keeps only them, and a leader outside them hands over to
/// the first of them that is live and in sync (a new epoch).
fn finish_reassignment(
    image: &MetadataImage,
    p: &PartitionImage,
    replicas: Vec<BrokerId>,
) -> PartitionImage {
    let mut next = p.clone();
    next.isr.retain(|b| replicas.contains(b));
    next.replicas = replicas;
    next.adding_replicas.clear();
    next.removing_replicas.clear();
    keep_leader_among_replicas(image, &mut next);
    next
}

/// A leader that is no longer a replica hands over to the first replica that is live and in
/// sync (none: offline), in a new epoch.
fn keep_leader_among_replicas(image: &MetadataImage, p: &mut PartitionImage) {
    match p.leader {
        Some(leader) if !p.replicas.contains(&leader) => {}
        _ => return,
    }
    p.leader = p
        .replicas
        .iter()
        .copied()
        .find(|b| p.isr.contains(b) && image.is_live(*b));
    p.leader_epoch = p.leader_epoch.next();
}

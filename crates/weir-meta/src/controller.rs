//! The controller's decisions: each operation checked against the current image and turned into
//! the records that carry it out.
//!
//! Every change follows one path: the active controller takes the latest image, [`ControllerOp::plan`]
//! checks the operation and builds records, the records are committed through the metadata quorum,
//! and every node applies them. With `validate_only` the records are built and then dropped, so a
//! dry run checks exactly what a real run would. Planning is pure: it reads the image and nothing
//! else, which is what lets it be tested without a quorum.

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use weir_types::{BrokerId, LeaderEpoch, ProducerId};

mod reassign;
mod topics;

use self::reassign::{complete_reassignment, plan_reassignments};
pub use self::topics::validate_topic_name;
use self::topics::{
    plan_alter_topic_configs, plan_create_partitions, plan_create_topic, plan_delete_topic,
};
use crate::election;
use crate::image::{MetadataImage, PartitionImage};
use crate::records::{ConfigResource, MetadataRecord};
use crate::registration;
use crate::{MetaError, Result};

/// Producer ids are reserved from the metadata log in blocks of this size.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// A request to create one topic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateTopic {
    pub name: String,
    /// -1 for the broker default.
    pub num_partitions: i32,
    /// -1 for the broker default.
    pub replication_factor: i16,
    /// Explicit replica lists by partition, instead of placement.
    pub assignments: Vec<(i32, Vec<BrokerId>)>,
    pub configs: Vec<(String, String)>,
}

/// What brokers ask of the active controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ControllerOp {
    /// A broker starts (or restarts): record its endpoints. `incarnation` names this start of
    /// the process: the same one registering again changes nothing but endpoints; a new one gets
    /// a new broker epoch and, if the broker was known, starts fenced (out of every ISR and
    /// leadership until its first heartbeat). `previous_broker_epoch` is the epoch the broker
    /// wrote at its last clean shutdown, if that shutdown was clean: when it is not the epoch
    /// registered, the broker's logs may have lost unsynced data, and a partition whose only
    /// in-sync replica it was goes into recovery (empty ISR, KIP-966).
    RegisterBroker {
        broker_id: BrokerId,
        /// The inter-broker listener's endpoint.
        host: String,
        port: i32,
        /// Every listener's endpoint (none from a broker older than named listeners).
        #[serde(default)]
        endpoints: Vec<crate::records::Endpoint>,
        rack: Option<String>,
        incarnation: Uuid,
        previous_broker_epoch: Option<i64>,
    },
    /// A broker reports where its logs of recovering partitions (empty ISR) end, so the controller
    /// can elect the replica with the best log. Reports from an earlier incarnation are refused;
    /// a partition's report made in another leader epoch (another recovery) is ignored.
    ReportReplicaLogs {
        broker_id: BrokerId,
        broker_epoch: i64,
        logs: Vec<crate::records::PartitionLog>,
    },
    /// Makes or replaces SCRAM credentials, and removes others (AlterUserScramCredentials).
    /// The handler has checked each; removing one that is gone changes nothing.
    AlterScramCredentials {
        upsertions: Vec<(
            String,
            crate::scram::ScramMechanism,
            crate::scram::ScramCredential,
        )>,
        deletions: Vec<(String, crate::scram::ScramMechanism)>,
    },
    /// The `--add-scram` credentials of a starting broker: applied only if no broker applied
    /// its own before, and only those missing then.
    BootstrapScramCredentials {
        credentials: Vec<(
            String,
            crate::scram::ScramMechanism,
            crate::scram::ScramCredential,
        )>,
    },
    /// CreateAcls: the handler has checked each ACL; those that exist already add nothing.
    CreateAcls {
        acls: Vec<crate::acl::AclBinding>,
    },
    /// DeleteAcls: removes every ACL a filter matches.
    DeleteAcls {
        filters: Vec<crate::acl::AclFilter>,
    },
    /// AlterClientQuotas: the handler has checked each entity, key and value; `None` removes.
    AlterClientQuotas {
        entries: Vec<crate::quotas::QuotaChange>,
    },
    /// UpdateFeatures: every update is checked again against the image here; one refused
    /// refuses them all.
    UpdateFeatures {
        updates: Vec<(String, i16, crate::features::UpgradeType)>,
    },
    /// A broker is alive. A fenced broker is unfenced by it.
    Heartbeat {
        broker_id: BrokerId,
    },
    /// A broker is about to stop: move leadership away and fence it now.
    ControlledShutdown {
        broker_id: BrokerId,
    },
    CreateTopic {
        request: CreateTopic,
        default_partitions: i32,
        default_replication_factor: i16,
        validate_only: bool,
    },
    DeleteTopic {
        name: String,
    },
    /// Grows a topic to `total` partitions.
    CreatePartitions {
        name: String,
        total: i32,
        assignments: Option<Vec<Vec<BrokerId>>>,
        validate_only: bool,
    },
    /// Sets (`Some`) or removes (`None`) topic configs. With `replace_all` (legacy AlterConfigs),
    /// every config not named is removed.
    AlterTopicConfigs {
        name: String,
        changes: Vec<(String, Option<String>)>,
        replace_all: bool,
        validate_only: bool,
    },
    /// Sets (`Some`) or removes (`None`) dynamic broker configs of one broker, or of the
    /// cluster-wide default (`broker: None`). With `replace_all` (legacy AlterConfigs), every
    /// dynamic config of the resource not named is removed.
    AlterBrokerConfigs {
        broker: Option<BrokerId>,
        changes: Vec<(String, Option<String>)>,
        replace_all: bool,
        validate_only: bool,
    },
    /// Reserves a block of [`PRODUCER_ID_BLOCK_SIZE`] producer ids for a broker to hand out.
    AllocateProducerIds,
    /// ElectLeaders: elects the preferred replica (`preferred`), or for a partition without a live
    /// leader any live replica, from outside the ISR if it must (unclean), whatever the topic's
    /// config says. `None` asks for every partition; the answer then leaves out partitions where
    /// no election was needed.
    ElectLeaders {
        partitions: Option<Vec<(String, i32)>>,
        preferred: bool,
    },
    /// A partition's leader changes its ISR (Kafka's AlterPartition, KIP-497): it drops followers
    /// that fell behind and adds ones that caught up. Refused unless the sender still leads in
    /// `leader_epoch` and `current_isr` is the ISR the image holds, so a deposed leader or a
    /// stale view cannot undo a newer change.
    AlterPartition {
        broker_id: BrokerId,
        topic_id: Uuid,
        partition: i32,
        leader_epoch: LeaderEpoch,
        current_isr: Vec<BrokerId>,
        new_isr: Vec<BrokerId>,
    },
    /// AlterPartitionReassignments (KIP-455): `Some(target)` moves a partition to the target
    /// replicas (the new ones copy it, then the others leave, once every target replica is in
    /// the ISR); `None` cancels its move. With `keep_replication_factor`, a target of another
    /// size is refused.
    AlterReassignments {
        partitions: Vec<(String, i32, Option<Vec<BrokerId>>)>,
        keep_replication_factor: bool,
    },
}

/// One partition's answer to [`ControllerOp::ElectLeaders`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Election {
    pub topic: String,
    pub partition: i32,
    pub error: Option<MetaError>,
}

/// What an operation produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Done,
    TopicId(Uuid),
    /// The first id of a reserved block of [`PRODUCER_ID_BLOCK_SIZE`].
    ProducerIds(ProducerId),
    /// Per-partition results of an election, in the order asked (by name for all partitions).
    Elections(Vec<Election>),
    /// Per-partition results of AlterReassignments, in the order asked.
    Reassignments(Vec<Election>),
    /// Per filter of a DeleteAcls, in the order asked, the ACLs it removed.
    DeletedAcls(Vec<Vec<crate::acl::AclBinding>>),
}

/// The answer to an operation: its outcome, and the metadata version that holds its effects
/// (a broker waits until its image reaches it before answering its client).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControllerReply {
    pub outcome: Outcome,
    pub version: u64,
}

impl ControllerOp {
    /// Whether the op changes which brokers are live, so leadership must be reconciled after it.
    pub fn moves_leaders(&self) -> bool {
        matches!(
            self,
            ControllerOp::RegisterBroker { .. }
                | ControllerOp::ReportReplicaLogs { .. }
                | ControllerOp::Heartbeat { .. }
                | ControllerOp::ControlledShutdown { .. }
                | ControllerOp::AlterTopicConfigs { .. }
                // The cluster default of unclean.leader.election.enable.
                | ControllerOp::AlterBrokerConfigs { .. }
                // A preferred replica back in the ISR takes leadership back.
                | ControllerOp::AlterPartition { .. }
                | ControllerOp::AlterReassignments { .. }
        )
    }

    /// Checks the op against `image` and builds the records that carry it out (empty for a dry
    /// run or when nothing changes).
    pub fn plan(&self, image: &MetadataImage) -> Result<(Outcome, Vec<MetadataRecord>)> {
        match self {
            ControllerOp::RegisterBroker {
                broker_id,
                host,
                port,
                endpoints,
                rack,
                incarnation,
                previous_broker_epoch,
            } => Ok((
                Outcome::Done,
                registration::plan_register_broker(
                    image,
                    registration::Registration {
                        broker_id: *broker_id,
                        host,
                        port: *port,
                        endpoints,
                        rack: rack.clone(),
                        incarnation: *incarnation,
                        previous_broker_epoch: *previous_broker_epoch,
                    },
                ),
            )),
            ControllerOp::ReportReplicaLogs {
                broker_id,
                broker_epoch,
                logs,
            } => Ok((
                Outcome::Done,
                registration::plan_report_replica_logs(image, *broker_id, *broker_epoch, logs)?,
            )),
            ControllerOp::AlterScramCredentials {
                upsertions,
                deletions,
            } => Ok((
                Outcome::Done,
                crate::scram::plan_alter(image, upsertions, deletions),
            )),
            ControllerOp::BootstrapScramCredentials { credentials } => Ok((
                Outcome::Done,
                crate::scram::plan_bootstrap(image, credentials),
            )),
            ControllerOp::AlterBrokerConfigs {
                broker,
                changes,
                replace_all,
                validate_only,
            } => {
                let resource =
                    broker.map_or(ConfigResource::ClusterDefault, ConfigResource::Broker);
                let records =
                    crate::broker_configs::plan_alter(image, &resource, changes, *replace_all)?;
                Ok((
                    Outcome::Done,
                    if *validate_only { Vec::new() } else { records },
                ))
            }
            ControllerOp::CreateAcls { acls } => {
                Ok((Outcome::Done, crate::acl::plan_create(image, acls)))
            }
            ControllerOp::AlterClientQuotas { entries } => {
                let records = entries
                    .iter()
                    .flat_map(|(entity, ops)| crate::quotas::plan_alter(&image.quotas, entity, ops))
                    .collect();
                Ok((Outcome::Done, records))
            }
            ControllerOp::UpdateFeatures { updates } => {
                let records = updates
                    .iter()
                    .map(|(name, level, how)| {
                        crate::features::check_update(&image.features, name, *level, *how)
                    })
                    .collect::<std::result::Result<Vec<_>, String>>()
                    .map_err(MetaError::InvalidRequest)?;
                Ok((Outcome::Done, records))
            }
            ControllerOp::DeleteAcls { filters } => {
                let (matched, records) = crate::acl::plan_delete(image, filters);
                Ok((Outcome::DeletedAcls(matched), records))
            }
            ControllerOp::Heartbeat { broker_id } => match image.brokers.get(broker_id) {
                None => Err(MetaError::UnknownBroker(*broker_id)),
                Some(b) if b.fenced => Ok((
                    Outcome::Done,
                    vec![MetadataRecord::UnfenceBroker {
                        broker_id: *broker_id,
                    }],
                )),
                Some(_) => Ok((Outcome::Done, Vec::new())),
            },
            ControllerOp::ControlledShutdown { broker_id } => match image.brokers.get(broker_id) {
                None => Err(MetaError::UnknownBroker(*broker_id)),
                Some(b) if b.fenced => Ok((Outcome::Done, Vec::new())),
                Some(_) => Ok((
                    Outcome::Done,
                    vec![MetadataRecord::FenceBroker {
                        broker_id: *broker_id,
                    }],
                )),
            },
            ControllerOp::CreateTopic {
                request,
                default_partitions,
                default_replication_factor,
                validate_only,
            } => {
                let (id, records) = plan_create_topic(
                    image,
                    request,
                    *default_partitions,
                    *default_replication_factor,
                )?;
                Ok((Outcome::TopicId(id), dry(records, *validate_only)))
            }
            ControllerOp::DeleteTopic { name } => {
                let (id, records) = plan_delete_topic(image, name)?;
                Ok((Outcome::TopicId(id), records))
            }
            ControllerOp::CreatePartitions {
                name,
                total,
                assignments,
                validate_only,
            } => {
                let records = plan_create_partitions(image, name, *total, assignments.clone())?;
                Ok((Outcome::Done, dry(records, *validate_only)))
            }
            ControllerOp::AlterTopicConfigs {
                name,
                changes,
                replace_all,
                validate_only,
            } => {
                let records = plan_alter_topic_configs(image, name, changes, *replace_all)?;
                Ok((Outcome::Done, dry(records, *validate_only)))
            }
            ControllerOp::AllocateProducerIds => {
                let start = image.next_producer_id;
                Ok((
                    Outcome::ProducerIds(start),
                    vec![MetadataRecord::ProducerIds {
                        next_producer_id: ProducerId(start.0 + PRODUCER_ID_BLOCK_SIZE),
                    }],
                ))
            }
            ControllerOp::ElectLeaders {
                partitions,
                preferred,
            } => Ok(plan_elect_leaders(image, partitions.as_deref(), *preferred)),
            ControllerOp::AlterReassignments {
                partitions,
                keep_replication_factor,
            } => Ok(plan_reassignments(
                image,
                partitions,
                *keep_replication_factor,
            )),
            ControllerOp::AlterPartition {
                broker_id,
                topic_id,
                partition,
                leader_epoch,
                current_isr,
                new_isr,
            } => {
                let records = plan_alter_partition(
                    image,
                    *broker_id,
                    topic_id,
                    *partition,
                    *leader_epoch,
                    current_isr,
                    new_isr,
                )?;
                Ok((Outcome::Done, records))
            }
        }
    }
}

fn dry(records: Vec<MetadataRecord>, validate_only: bool) -> Vec<MetadataRecord> {
    if validate_only {
        Vec::new()
    } else {
        records
    }
}

/// Explicit elections (ElectLeaders), each partition on its own: one partition's failure does not
/// stop the others.
fn plan_elect_leaders(
    image: &MetadataImage,
    partitions: Option<&[(String, i32)]>,
    preferred: bool,
) -> (Outcome, Vec<MetadataRecord>) {
    let all;
    let (asked, skip_not_needed) = match partitions {
        Some(list) => {
            // A partition named twice is elected once and answered once.
            let mut seen = std::collections::BTreeSet::new();
            all = list
                .iter()
                .filter(|tp| seen.insert((*tp).clone()))
                .cloned()
                .collect::<Vec<_>>();
            (&all, false)
        }
        None => {
            all = image
                .topics()
                .flat_map(|t| t.partitions.keys().map(|p| (t.name.clone(), *p)))
                .collect();
            (&all, true)
        }
    };
    let mut results = Vec::with_capacity(asked.len());
    let mut records = Vec::new();
    for (topic, partition) in asked {
        let error = match plan_elect_leader(image, topic, *partition, preferred) {
            Ok(record) => {
                records.push(record);
                None
            }
            Err(MetaError::ElectionNotNeeded(_)) if skip_not_needed => continue,
            Err(e) => Some(e),
        };
        results.push(Election {
            topic: topic.clone(),
            partition: *partition,
            error,
        });
    }
    (Outcome::Elections(results), records)
}

/// An explicit election for one partition.
fn plan_elect_leader(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    preferred: bool,
) -> Result<MetadataRecord> {
    let t = image
        .topic(topic)
        .ok_or_else(|| MetaError::UnknownTopic(topic.to_string()))?;
    let p = t
        .partitions
        .get(&partition)
        .ok_or_else(|| MetaError::UnknownPartition(format!("{topic}-{partition}")))?;
    let live = |b: &BrokerId| image.is_live(*b);
    let mut next = PartitionImage::clone(p);
    if preferred {
        let want = p.replicas.first().copied().ok_or_else(|| {
            MetaError::PreferredLeaderNotAvailable(format!("{topic}-{partition} has no replicas"))
        })?;
        if p.leader == Some(want) {
            return Err(MetaError::ElectionNotNeeded(format!(
                "{topic}-{partition} is led by its preferred replica {want}"
            )));
        }
        if !(live(&want) && p.isr.contains(&want)) {
            return Err(MetaError::PreferredLeaderNotAvailable(format!(
                "preferred replica {want} of {topic}-{partition} is not live and in sync"
            )));
        }
        next.leader = Some(want);
    } else {
        if let Some(leader) = p.leader.filter(live) {
            return Err(MetaError::ElectionNotNeeded(format!(
                "{topic}-{partition} has a live leader, {leader}"
            )));
        }
        let pick = p
            .replicas
            .iter()
            .copied()
            .find(|b| p.isr.contains(b) && live(b))
            .or_else(|| election::recovery_pick(image, p, true))
            .or_else(|| election::holders_first(p).find(live))
            .ok_or_else(|| {
                MetaError::EligibleLeadersNotAvailable(format!(
                    "no replica of {topic}-{partition} is live"
                ))
            })?;
        if !p.isr.contains(&pick) {
            next.isr = vec![pick];
        }
        next.leader = Some(pick);
        next.recovery.clear();
    }
    next.leader_epoch = next.leader_epoch.next();
    Ok(election::partition_record(t.topic_id, partition, next))
}

fn plan_alter_partition(
    image: &MetadataImage,
    broker_id: BrokerId,
    topic_id: &Uuid,
    partition: i32,
    leader_epoch: LeaderEpoch,
    current_isr: &[BrokerId],
    new_isr: &[BrokerId],
) -> Result<Vec<MetadataRecord>> {
    let name = || format!("{topic_id}-{partition}");
    let p = image
        .topic_by_id(topic_id)
        .and_then(|t| t.partitions.get(&partition))
        .ok_or_else(|| MetaError::UnknownPartition(name()))?;
    let sorted = |v: &[BrokerId]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v
    };
    let leads = p.leader == Some(broker_id) && p.leader_epoch == leader_epoch;
    if leads && sorted(&p.isr) == sorted(new_isr) {
        // Already made (a leader sends a change again when it heard no answer).
        return Ok(Vec::new());
    }
    if !leads {
        return Err(MetaError::StalePartitionState(format!(
            "{}: broker {broker_id} in epoch {leader_epoch} does not lead it (leader {} in epoch {})",
            name(),
            BrokerId::to_wire(p.leader),
            p.leader_epoch
        )));
    }
    if sorted(&p.isr) != sorted(current_isr) {
        return Err(MetaError::StalePartitionState(format!(
            "{}: the ISR is {:?}, not {current_isr:?}",
            name(),
            p.isr
        )));
    }
    let wanted = sorted(new_isr);
    if wanted.windows(2).any(|w| w[0] == w[1])
        || !wanted.contains(&broker_id)
        || wanted.iter().any(|b| !p.replicas.contains(b))
    {
        return Err(MetaError::InvalidRequest(format!(
            "{}: ISR {new_isr:?} must hold the leader and only distinct replicas of {:?}",
            name(),
            p.replicas
        )));
    }
    if let Some(b) = wanted
        .iter()
        .find(|b| !p.isr.contains(b) && !image.is_live(**b))
    {
        return Err(MetaError::IneligibleReplica(format!(
            "{}: broker {b} is fenced and cannot join the ISR",
            name()
        )));
    }
    if wanted == sorted(&p.isr) {
        return Ok(Vec::new());
    }
    // Keep the ISR in replica order, as the rest of the image does.
    let isr: Vec<BrokerId> = p
        .replicas
        .iter()
        .copied()
        .filter(|b| wanted.contains(b))
        .collect();
    let next = crate::image::PartitionImage {
        isr,
        ..PartitionImage::clone(p)
    };
    // A reassignment whose target replicas are all in sync now completes.
    let next = complete_reassignment(image, next);
    Ok(vec![election::partition_record(*topic_id, partition, next)])
}

#[cfg(test)]
mod tests;

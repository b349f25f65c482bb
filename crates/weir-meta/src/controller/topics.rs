//! Topics: creating them (names, partition counts, replica placement or explicit
//! assignments), deleting them, adding partitions and altering their configs.

use std::collections::BTreeMap;

use uuid::Uuid;
use weir_types::{BrokerId, LeaderEpoch};

use super::CreateTopic;
use crate::configs;
use crate::image::MetadataImage;
use crate::placement::{self, Candidate};
use crate::records::{ConfigResource, MetadataRecord};
use crate::{MetaError, Result};

/// Kafka's limit on topic name length.
const MAX_TOPIC_NAME_LEN: usize = 249;
/// Upper bound on partitions per topic accepted in one request (a limit on what a client controls).
const MAX_PARTITIONS: i32 = 100_000;

/// Checks a topic name by Kafka's rules: 1 to 249 of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(MetaError::InvalidTopicName("the name is empty".into()));
    }
    if name == "." || name == ".." {
        return Err(MetaError::InvalidTopicName(format!(
            "'{name}' is not allowed"
        )));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(MetaError::InvalidTopicName(format!(
            "the name is {} characters long; at most {MAX_TOPIC_NAME_LEN} are allowed",
            name.len()
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(MetaError::InvalidTopicName(format!(
            "'{name}' contains '{c}'; only ASCII letters, digits, '.', '_' and '-' are allowed"
        )));
    }
    Ok(())
}

/// Brokers new replicas may be placed on: the live ones.
pub(super) fn candidates(image: &MetadataImage) -> Vec<Candidate> {
    image
        .live_brokers()
        .map(|b| Candidate {
            broker_id: b.broker_id,
            rack: b.rack.clone(),
        })
        .collect()
}

/// Builds a topic and its partitions, placed on the live brokers. Returns its id and records.
pub(super) fn plan_create_topic(
    image: &MetadataImage,
    request: &CreateTopic,
    default_partitions: i32,
    default_replication_factor: i16,
) -> Result<(Uuid, Vec<MetadataRecord>)> {
    {
        validate_topic_name(&request.name)?;
        if image.topic(&request.name).is_some() {
            return Err(MetaError::TopicAlreadyExists(request.name.clone()));
        }
        configs::validate_topic_configs(
            request
                .configs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )?;
        let mut seen = std::collections::HashSet::new();
        for (name, _) in &request.configs {
            if !seen.insert(name) {
                return Err(MetaError::InvalidRequest(format!(
                    "config '{name}' is given twice"
                )));
            }
        }
        let assignments = if request.assignments.is_empty() {
            let partitions = if request.num_partitions == -1 {
                default_partitions
            } else {
                request.num_partitions
            };
            let rf = if request.replication_factor == -1 {
                default_replication_factor
            } else {
                request.replication_factor
            };
            if !(1..=MAX_PARTITIONS).contains(&partitions) {
                return Err(MetaError::InvalidPartitions(format!(
                    "number of partitions must be between 1 and {MAX_PARTITIONS}, not {partitions}"
                )));
            }
            let start = image.topics().count();
            placement::place(&candidates(image), 0, partitions, rf, start)?
        } else {
            if request.num_partitions != -1 || request.replication_factor != -1 {
                return Err(MetaError::InvalidRequest(
                    "give either replica assignments or partitions and replication factor, not both".into(),
                ));
            }
            check_assignments(image, &request.assignments, 0)?
        };
        let topic_id = Uuid::new_v4();
        let mut records = vec![MetadataRecord::Topic {
            name: request.name.clone(),
            topic_id,
        }];
        for (p, replicas) in assignments.iter().enumerate() {
            records.push(MetadataRecord::Partition {
                topic_id,
                partition: p as i32,
                replicas: replicas.clone(),
                isr: replicas.clone(),
                leader: replicas.first().copied(),
                leader_epoch: LeaderEpoch(0),
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
                recovery: Vec::new(),
            });
        }
        for (name, value) in &request.configs {
            records.push(MetadataRecord::Config {
                resource: ConfigResource::Topic(request.name.clone()),
                name: name.clone(),
                value: Some(value.clone()),
            });
        }
        Ok((topic_id, records))
    }
}

/// Checks explicit replica lists: partitions numbered from `first`, consecutive, each with the
/// same replication factor, on distinct registered brokers.
pub(super) fn check_assignments(
    image: &MetadataImage,
    assignments: &[(i32, Vec<BrokerId>)],
    first: i32,
) -> Result<Vec<Vec<BrokerId>>> {
    let mut sorted: Vec<&(i32, Vec<BrokerId>)> = assignments.iter().collect();
    sorted.sort_by_key(|(p, _)| *p);
    let rf = sorted.first().map_or(0, |(_, r)| r.len());
    let mut out = Vec::new();
    for (i, (p, replicas)) in sorted.iter().enumerate() {
        if *p != first + i as i32 {
            return Err(MetaError::InvalidReplicaAssignment(format!(
                "partitions must be numbered consecutively from {first}"
            )));
        }
        if replicas.is_empty() || replicas.len() != rf {
            return Err(MetaError::InvalidReplicaAssignment(
                "every partition needs the same, non-zero number of replicas".into(),
            ));
        }
        let mut distinct = replicas.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() != replicas.len() {
            return Err(MetaError::InvalidReplicaAssignment(format!(
                "partition {p} names a broker twice"
            )));
        }
        if let Some(b) = replicas.iter().find(|b| !image.brokers.contains_key(b)) {
            return Err(MetaError::InvalidReplicaAssignment(format!(
                "broker {b} is not registered"
            )));
        }
        out.push(replicas.clone());
    }
    Ok(out)
}

pub(super) fn plan_delete_topic(
    image: &MetadataImage,
    name: &str,
) -> Result<(Uuid, Vec<MetadataRecord>)> {
    let topic_id = image
        .topic(name)
        .map(|t| t.topic_id)
        .ok_or_else(|| MetaError::UnknownTopic(name.to_string()))?;
    Ok((topic_id, vec![MetadataRecord::RemoveTopic { topic_id }]))
}

pub(super) fn plan_create_partitions(
    image: &MetadataImage,
    name: &str,
    total: i32,
    assignments: Option<Vec<Vec<BrokerId>>>,
) -> Result<Vec<MetadataRecord>> {
    {
        let topic = image
            .topic(name)
            .ok_or_else(|| MetaError::UnknownTopic(name.to_string()))?;
        let current = topic.partitions.len() as i32;
        if total <= current {
            return Err(MetaError::InvalidPartitions(format!(
                "topic '{name}' has {current} partitions; the new count {total} must be larger"
            )));
        }
        if total > MAX_PARTITIONS {
            return Err(MetaError::InvalidPartitions(format!(
                "at most {MAX_PARTITIONS} partitions are allowed"
            )));
        }
        // Replicas leaving with a move in progress do not count.
        let rf = topic
            .partitions
            .values()
            .next()
            .map_or(1, |p| p.replicas.len() - p.removing_replicas.len()) as i16;
        let topic_id = topic.topic_id;
        let start = image.topics().position(|t| t.name == name).unwrap_or(0);
        let placed = match assignments {
            Some(lists) => {
                if lists.len() as i32 != total - current {
                    return Err(MetaError::InvalidReplicaAssignment(format!(
                        "{} assignments given for {} new partitions",
                        lists.len(),
                        total - current
                    )));
                }
                let numbered: Vec<(i32, Vec<BrokerId>)> = lists
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| (current + i as i32, r))
                    .collect();
                check_assignments(image, &numbered, current)?
            }
            None => placement::place(&candidates(image), current, total - current, rf, start)?,
        };
        let records: Vec<MetadataRecord> = placed
            .into_iter()
            .enumerate()
            .map(|(i, replicas)| MetadataRecord::Partition {
                topic_id,
                partition: current + i as i32,
                isr: replicas.clone(),
                leader: replicas.first().copied(),
                replicas,
                leader_epoch: LeaderEpoch(0),
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
                recovery: Vec::new(),
            })
            .collect();
        Ok(records)
    }
}

pub(super) fn plan_alter_topic_configs(
    image: &MetadataImage,
    name: &str,
    changes: &[(String, Option<String>)],
    replace_all: bool,
) -> Result<Vec<MetadataRecord>> {
    {
        if image.topic(name).is_none() {
            return Err(MetaError::UnknownTopic(name.to_string()));
        }
        let resource = ConfigResource::Topic(name.to_string());
        for (key, value) in changes {
            let def = configs::topic_config_def(key)
                .ok_or_else(|| MetaError::InvalidConfig(format!("unknown topic config '{key}'")))?;
            if let Some(v) = value {
                configs::validate_value(def, v)?;
            }
        }
        let mut records: Vec<MetadataRecord> = changes
            .iter()
            .map(|(key, value)| MetadataRecord::Config {
                resource: resource.clone(),
                name: key.clone(),
                value: value.clone(),
            })
            .collect();
        if replace_all {
            let current: BTreeMap<String, String> = image.configs(&resource);
            for key in current.keys() {
                if !changes.iter().any(|(k, _)| k == key) {
                    records.push(MetadataRecord::Config {
                        resource: resource.clone(),
                        name: key.clone(),
                        value: None,
                    });
                }
            }
        }
        Ok(records)
    }
}

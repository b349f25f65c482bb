//! The controller: validates metadata changes, writes them as records, applies them.
//!
//! Every change follows one path: check against the current image → build records → append them
//! durably to the record log → apply them to the image. With `validate_only` the records are built
//! and then dropped, so a dry run checks exactly what a real run would.

use std::collections::BTreeMap;
use std::path::Path;

use uuid::Uuid;

use crate::configs;
use crate::image::MetadataImage;
use crate::placement::{self, Candidate};
use crate::records::{ConfigResource, MetadataRecord};
use crate::store::RecordLog;
use crate::{MetaError, Result};

/// Producer ids are reserved from the metadata log in blocks of this size.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// Kafka's limit on topic name length.
const MAX_TOPIC_NAME_LEN: usize = 249;
/// Upper bound on partitions per topic accepted in one request (a limit on what a client controls).
const MAX_PARTITIONS: i32 = 100_000;

/// A request to create one topic.
#[derive(Debug, Clone, Default)]
pub struct CreateTopic {
    pub name: String,
    /// -1 for the broker default.
    pub num_partitions: i32,
    /// -1 for the broker default.
    pub replication_factor: i16,
    /// Explicit replica lists by partition, instead of placement.
    pub assignments: Vec<(i32, Vec<i32>)>,
    pub configs: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct Controller {
    log: RecordLog,
    image: MetadataImage,
    /// Producer ids reserved in the log but not handed out yet: `next..block_end`.
    next_producer_id: i64,
    producer_block_end: i64,
}

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

impl Controller {
    /// Opens the record log in `dir` and replays it into a fresh image.
    pub fn open(dir: &Path) -> Result<Controller> {
        let (log, records) = RecordLog::open(dir)?;
        let mut image = MetadataImage::default();
        for record in &records {
            image.apply(record);
        }
        let next = image.next_producer_id;
        Ok(Controller {
            log,
            image,
            next_producer_id: next,
            producer_block_end: next,
        })
    }

    pub fn image(&self) -> &MetadataImage {
        &self.image
    }

    fn commit(&mut self, records: Vec<MetadataRecord>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.log.append(&records)?;
        for record in &records {
            self.image.apply(record);
        }
        Ok(())
    }

    /// Registers (or re-registers, with new endpoints) a broker.
    pub fn register_broker(
        &mut self,
        broker_id: i32,
        host: &str,
        port: i32,
        rack: Option<String>,
    ) -> Result<()> {
        let record = MetadataRecord::RegisterBroker {
            broker_id,
            host: host.to_string(),
            port,
            rack,
        };
        let unchanged = self.image.brokers.get(&broker_id).is_some_and(|b| {
            b.host == host
                && b.port == port
                && matches!(&record, MetadataRecord::RegisterBroker { rack, .. } if *rack == b.rack)
        });
        if unchanged {
            return Ok(());
        }
        self.commit(vec![record])
    }

    fn candidates(&self) -> Vec<Candidate> {
        self.image
            .brokers
            .values()
            .map(|b| Candidate {
                broker_id: b.broker_id,
                rack: b.rack.clone(),
            })
            .collect()
    }

    /// Creates a topic (or, with `validate_only`, checks that it could be). Returns its id.
    pub fn create_topic(
        &mut self,
        request: &CreateTopic,
        default_partitions: i32,
        default_replication_factor: i16,
        validate_only: bool,
    ) -> Result<Uuid> {
        validate_topic_name(&request.name)?;
        if self.image.topic(&request.name).is_some() {
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
            let start = self.image.topics().count();
            placement::place(&self.candidates(), 0, partitions, rf, start)?
        } else {
            if request.num_partitions != -1 || request.replication_factor != -1 {
                return Err(MetaError::InvalidRequest(
                    "give either replica assignments or partitions and replication factor, not both".into(),
                ));
            }
            self.check_assignments(&request.assignments, 0)?
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
                leader: replicas[0],
                leader_epoch: 0,
            });
        }
        for (name, value) in &request.configs {
            records.push(MetadataRecord::Config {
                resource: ConfigResource::Topic(request.name.clone()),
                name: name.clone(),
                value: Some(value.clone()),
            });
        }
        if !validate_only {
            self.commit(records)?;
        }
        Ok(topic_id)
    }

    /// Checks explicit replica lists: partitions numbered from `first`, consecutive, each with the
    /// same replication factor, on distinct registered brokers.
    fn check_assignments(
        &self,
        assignments: &[(i32, Vec<i32>)],
        first: i32,
    ) -> Result<Vec<Vec<i32>>> {
        let mut sorted: Vec<&(i32, Vec<i32>)> = assignments.iter().collect();
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
            if let Some(b) = replicas
                .iter()
                .find(|b| !self.image.brokers.contains_key(b))
            {
                return Err(MetaError::InvalidReplicaAssignment(format!(
                    "broker {b} is not registered"
                )));
            }
            out.push(replicas.clone());
        }
        Ok(out)
    }

    pub fn delete_topic(&mut self, name: &str) -> Result<Uuid> {
        let topic_id = self
            .image
            .topic(name)
            .map(|t| t.topic_id)
            .ok_or_else(|| MetaError::UnknownTopic(name.to_string()))?;
        self.commit(vec![MetadataRecord::RemoveTopic { topic_id }])?;
        Ok(topic_id)
    }

    /// Grows a topic to `total` partitions.
    pub fn create_partitions(
        &mut self,
        name: &str,
        total: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<()> {
        let topic = self
            .image
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
        let rf = topic
            .partitions
            .values()
            .next()
            .map_or(1, |p| p.replicas.len()) as i16;
        let topic_id = topic.topic_id;
        let start = self
            .image
            .topics()
            .position(|t| t.name == name)
            .unwrap_or(0);
        let placed = match assignments {
            Some(lists) => {
                if lists.len() as i32 != total - current {
                    return Err(MetaError::InvalidReplicaAssignment(format!(
                        "{} assignments given for {} new partitions",
                        lists.len(),
                        total - current
                    )));
                }
                let numbered: Vec<(i32, Vec<i32>)> = lists
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| (current + i as i32, r))
                    .collect();
                self.check_assignments(&numbered, current)?
            }
            None => placement::place(&self.candidates(), current, total - current, rf, start)?,
        };
        let records = placed
            .into_iter()
            .enumerate()
            .map(|(i, replicas)| MetadataRecord::Partition {
                topic_id,
                partition: current + i as i32,
                isr: replicas.clone(),
                leader: replicas[0],
                replicas,
                leader_epoch: 0,
            })
            .collect();
        if !validate_only {
            self.commit(records)?;
        }
        Ok(())
    }

    /// Sets (`Some`) or removes (`None`) topic configs. With `replace_all` (legacy AlterConfigs),
    /// every config not named is removed.
    pub fn alter_topic_configs(
        &mut self,
        name: &str,
        changes: &[(String, Option<String>)],
        replace_all: bool,
        validate_only: bool,
    ) -> Result<()> {
        if self.image.topic(name).is_none() {
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
            let current: BTreeMap<String, String> = self.image.configs(&resource);
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
        if !validate_only {
            self.commit(records)?;
        }
        Ok(())
    }

    /// Hands out a new producer id, reserving a new block in the log when the current one is used up.
    pub fn allocate_producer_id(&mut self) -> Result<i64> {
        if self.next_producer_id >= self.producer_block_end {
            let start = self.image.next_producer_id;
            let end = start + PRODUCER_ID_BLOCK_SIZE;
            self.commit(vec![MetadataRecord::ProducerIds {
                next_producer_id: end,
            }])?;
            self.next_producer_id = start;
            self.producer_block_end = end;
        }
        let id = self.next_producer_id;
        self.next_producer_id += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controller(dir: &Path) -> Controller {
        let mut c = Controller::open(dir).unwrap();
        c.register_broker(0, "127.0.0.1", 9092, None).unwrap();
        c
    }

    #[test]
    fn topics_persist_and_validate() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let mut c = controller(dir.path());
            let req = CreateTopic {
                name: "orders".into(),
                num_partitions: 3,
                replication_factor: 1,
                configs: vec![("retention.ms".into(), "1000".into())],
                ..Default::default()
            };
            assert!(c
                .create_topic(
                    &CreateTopic {
                        name: "dry".into(),
                        ..req.clone()
                    },
                    1,
                    1,
                    true
                )
                .is_ok());
            assert!(c.image().topic("dry").is_none());
            let id = c.create_topic(&req, 1, 1, false).unwrap();
            assert!(matches!(
                c.create_topic(&req, 1, 1, false),
                Err(MetaError::TopicAlreadyExists(_))
            ));
            let bad_rf = CreateTopic {
                name: "x".into(),
                num_partitions: 1,
                replication_factor: 3,
                ..Default::default()
            };
            assert!(matches!(
                c.create_topic(&bad_rf, 1, 1, false),
                Err(MetaError::InvalidReplicationFactor(_))
            ));
            let bad_name = CreateTopic {
                name: "a/b".into(),
                num_partitions: 1,
                replication_factor: 1,
                ..Default::default()
            };
            assert!(matches!(
                c.create_topic(&bad_name, 1, 1, false),
                Err(MetaError::InvalidTopicName(_))
            ));
            c.create_partitions("orders", 5, None, false).unwrap();
            assert!(matches!(
                c.create_partitions("orders", 2, None, false),
                Err(MetaError::InvalidPartitions(_))
            ));
            id
        };
        let mut c = Controller::open(dir.path()).unwrap();
        let topic = c.image().topic("orders").unwrap();
        assert_eq!(topic.topic_id, id);
        assert_eq!(topic.partitions.len(), 5);
        assert_eq!(
            c.image()
                .configs(&ConfigResource::Topic("orders".into()))
                .get("retention.ms")
                .unwrap(),
            "1000"
        );
        c.delete_topic("orders").unwrap();
        assert!(c.image().topic("orders").is_none());
        assert!(c
            .image()
            .configs(&ConfigResource::Topic("orders".into()))
            .is_empty());
    }

    #[test]
    fn producer_ids_never_repeat_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let first: Vec<i64> = {
            let mut c = controller(dir.path());
            (0..3).map(|_| c.allocate_producer_id().unwrap()).collect()
        };
        let mut c = Controller::open(dir.path()).unwrap();
        let next = c.allocate_producer_id().unwrap();
        assert!(first.iter().all(|&id| id < next), "{first:?} then {next}");
    }
}

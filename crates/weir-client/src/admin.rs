//! The admin client: topics, partitions, configs, consumer groups, offsets and lag.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::cluster::{ClientConfig, Cluster, TopicInfo};
use crate::error::{check, Error, Result};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A topic to create.
#[derive(Debug, Clone)]
pub struct NewTopic {
    /// The topic's name.
    pub name: String,
    /// Number of partitions;
    /// -1: the broker's default.
    pub partitions: i32,
    /// Copies of each partition;
    /// -1: the broker's default.
    pub replication_factor: i16,
    /// Topic configs as (name, value), e.g. `("cleanup.policy", "compact")`.
    pub configs: Vec<(String, String)>,
}

/// A topic with its partitions, leaders, replicas and ISR.
pub type TopicDescription = TopicInfo;

/// One config of a topic or broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The config's name, e.g. `retention.ms`.
    pub name: String,
    /// Its value; `None` when it has none or the broker hides it (sensitive).
    pub value: Option<String>,
    /// Whether the value is the built-in default (config source `DEFAULT_CONFIG`) rather than
    /// one set on the topic or the broker.
    pub is_default: bool,
    /// Whether the config cannot be changed.
    pub read_only: bool,
    /// Where the value comes from (Kafka's `ConfigSource`: 1 the topic, 2 this broker's
    /// dynamic config, 3 the cluster-wide dynamic default, 4 the static config, 5 the default).
    pub source: i8,
}

/// Which offset ListOffsets should find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset: that of the first record still kept.
    Earliest,
    /// The log end offset: the one after the last record.
    Latest,
    /// The first record at or after this time (ms since the epoch).
    Timestamp(i64),
}

/// A member of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The id the coordinator gave the member.
    pub member_id: String,
    /// The member's client id (Kafka's `client.id`).
    pub client_id: String,
    /// The host the member connects from, as the coordinator sees it.
    pub host: String,
    /// Partitions assigned to it (decoded from the consumer protocol).
    pub assignment: Vec<(String, i32)>,
}

/// A consumer group as its coordinator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group's id.
    pub group_id: String,
    /// The group's state, e.g. `Stable`, `PreparingRebalance`, `Empty` or `Dead` (classic);
    /// `Assigning` or `Reconciling` too for the consumer protocol.
    pub state: String,
    /// `classic` (JoinGroup and SyncGroup) or `consumer` (KIP-848, assigned by the broker).
    pub group_type: String,
    /// The group epoch of a `consumer` group.
    pub epoch: Option<i32>,
    /// The group's protocol type: `consumer` for consumer groups.
    pub protocol_type: String,
    /// The assignor the group chose, e.g. `range`; empty while none is chosen.
    pub protocol: String,
    /// The members, with the partitions assigned to each.
    pub members: Vec<GroupMember>,
}

/// A group's position on one partition: committed offset, log end, and the backlog between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The topic's name.
    pub topic: String,
    /// The partition's index.
    pub partition: i32,
    /// -1 when nothing was committed.
    pub committed: i64,
    /// The offset after the partition's last record.
    pub log_end_offset: i64,
    /// Records not yet consumed by the group (from the log start when nothing was committed).
    pub lag: i64,
}

/// A registered broker, as DescribeCluster lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerState {
    /// The broker's `node.id`.
    pub node_id: i32,
    /// Host clients connect to.
    pub host: String,
    /// Port clients connect to.
    pub port: i32,
    /// `broker.rack`, when set.
    pub rack: Option<String>,
    /// A fenced broker missed its heartbeats or shut down: it leads nothing.
    pub fenced: bool,
}

/// The cluster as DescribeCluster describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// The cluster id.
    pub cluster_id: String,
    /// The active controller's id; -1 when none is known.
    pub controller: i32,
    /// Every registered broker, fenced ones included, by id.
    pub brokers: Vec<BrokerState>,
}

/// The metadata quorum as DescribeQuorum describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumDescription {
    /// The active controller; -1 when none is known.
    pub leader: i32,
    /// The metadata log's leader epoch (Raft term).
    pub leader_epoch: i32,
    /// The metadata log's high watermark.
    pub high_watermark: i64,
    /// Each voter with its log end offset (-1 when the answering node does not know it).
    pub voters: Vec<(i32, i64)>,
}

/// The admin client: topics, partitions, configs, consumer groups, offsets and lag.
/// Clones share the same connections.
#[derive(Debug, Clone)]
pub struct Admin {
    cluster: Arc<Cluster>,
}

impl Admin {
    /// Connects to the cluster and loads its metadata. Fails with [`Error::NoBrokers`] when
    /// no bootstrap server can be reached.
    pub async fn new(config: ClientConfig) -> Result<Admin> {
        Ok(Admin {
            cluster: Cluster::connect(config).await?,
        })
    }

    /// [`Admin::new`] with the defaults of [`ClientConfig::new`] for `bootstrap`, a
    /// comma-separated `host:port` list.
    pub async fn connect(bootstrap: &str) -> Result<Admin> {
        Admin::new(ClientConfig::new(bootstrap)).await
    }

    /// The cluster this admin client talks to.
    pub(crate) fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    pub(crate) async fn controller(&self) -> Result<Arc<crate::connection::Connection>> {
        let id = self.cluster.controller();
        match self.cluster.broker(id).await {
            Ok(c) => Ok(c),
            Err(_) => self.cluster.any().await,
        }
    }

    /// Creates topics; returns one result per topic, in order.
    /// With `validate_only`, the broker only checks the request and creates nothing.
    pub async fn create_topics(
        &self,
        topics: &[NewTopic],
        validate_only: bool,
    ) -> Result<Vec<Result<()>>> {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_validate_only(validate_only)
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        CreatableTopic::default()
                            .with_name(TopicName(s(&t.name)))
                            .with_num_partitions(t.partitions)
                            .with_replication_factor(t.replication_factor)
                            .with_configs(
                                t.configs
                                    .iter()
                                    .map(|(k, v)| {
                                        CreatableTopicConfig::default()
                                            .with_name(s(k))
                                            .with_value(Some(s(v)))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let (response, _) = self.controller().await?.request(&request, 7).await?;
        let out = topics
            .iter()
            .map(|t| {
                match response
                    .topics
                    .iter()
                    .find(|r| &*r.name.0 == t.name.as_str())
                {
                    Some(r) if r.error_code == 0 => Ok(()),
                    Some(r) => Err(Error::from_code(
                        r.error_code,
                        r.error_message.as_ref().map(|m| m.to_string()),
                    )),
                    None => Err(Error::Protocol(format!("no answer for topic {}", t.name))),
                }
            })
            .collect();
        let _ = self.cluster.refresh(&[]).await;
        Ok(out)
    }

    /// Deletes topics by name; returns one result per topic, in order.
    pub async fn delete_topics(&self, names: &[String]) -> Result<Vec<Result<()>>> {
        let request = DeleteTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topic_names(names.iter().map(|n| TopicName(s(n))).collect())
            .with_topics(
                names
                    .iter()
                    .map(|n| {
                        delete_topics_request::DeleteTopicState::default()
                            .with_name(Some(TopicName(s(n))))
                    })
                    .collect(),
            );
        let (response, _) = self.controller().await?.request(&request, 6).await?;
        let out = names
            .iter()
            .map(|n| {
                match response
                    .responses
                    .iter()
                    .find(|r| r.name.as_ref().is_some_and(|x| &*x.0 == n.as_str()))
                {
                    Some(r) if r.error_code == 0 => Ok(()),
                    Some(r) => Err(Error::from_code(
                        r.error_code,
                        r.error_message.as_ref().map(|m| m.to_string()),
                    )),
                    None => Err(Error::Protocol(format!("no answer for topic {n}"))),
                }
            })
            .collect();
        let _ = self.cluster.refresh(&[]).await;
        Ok(out)
    }

    /// The cluster id, the active controller and every registered broker with its state.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        let request = DescribeClusterRequest::default().with_include_fenced_brokers(true);
        let (response, _) = self.cluster.any().await?.request(&request, 2).await?;
        check(response.error_code)?;
        let mut brokers: Vec<BrokerState> = response
            .brokers
            .into_iter()
            .map(|b| BrokerState {
                node_id: b.broker_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.map(|r| r.to_string()),
                fenced: b.is_fenced,
            })
            .collect();
        brokers.sort_by_key(|b| b.node_id);
        Ok(ClusterDescription {
            cluster_id: response.cluster_id.to_string(),
            controller: response.controller_id.0,
            brokers,
        })
    }

    /// ElectLeaders: a preferred (`preferred`) or unclean election for the partitions named, or
    /// for every partition (`None`; the answer then leaves out those that needed none). Returns
    /// one result per partition.
    pub async fn elect_leaders(
        &self,
        preferred: bool,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<Vec<((String, i32), Result<()>)>> {
        use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
        let topics = partitions.map(|list| {
            let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for (t, p) in list {
                by_topic.entry(t.as_str()).or_default().push(*p);
            }
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    TopicPartitions::default()
                        .with_topic(TopicName(s(t)))
                        .with_partitions(ps)
                })
                .collect()
        });
        let request = ElectLeadersRequest::default()
            .with_election_type(if preferred { 0 } else { 1 })
            .with_topic_partitions(topics)
            .with_timeout_ms(30_000);
        let (response, _) = self.controller().await?.request(&request, 2).await?;
        check(response.error_code)?;
        let out = response
            .replica_election_results
            .into_iter()
            .flat_map(|t| {
                let topic = t.topic.0.to_string();
                t.partition_result.into_iter().map(move |p| {
                    let result = if p.error_code == 0 {
                        Ok(())
                    } else {
                        Err(Error::from_code(
                            p.error_code,
                            p.error_message.map(|m| m.to_string()),
                        ))
                    };
                    ((topic.clone(), p.partition_id), result)
                })
            })
            .collect();
        let _ = self.cluster.refresh(&[]).await;
        Ok(out)
    }

    /// The metadata quorum: its voters, the active controller and the log's progress.
    pub async fn describe_quorum(&self) -> Result<QuorumDescription> {
        use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
        let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(s("__cluster_metadata")))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
        // The active controller knows every voter's progress, other voters only their own: ask
        // any broker for the leader, then ask the leader itself when it is a broker too. (A
        // broker-only node answers with the view of the voter it follows, the leader's.)
        let (first, _) = self.cluster.any().await?.request(&request, 1).await?;
        let leader = first
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| p.leader_id.0)
            .next()
            .unwrap_or(-1);
        let leading_broker = if leader >= 0 {
            self.cluster.broker(leader).await.ok()
        } else {
            None
        };
        let response = match leading_broker {
            Some(c) => c
                .request(&request, 1)
                .await
                .map(|(r, _)| r)
                .unwrap_or(first),
            None => first,
        };
        check(response.error_code)?;
        let p = response
            .topics
            .into_iter()
            .flat_map(|t| t.partitions)
            .next()
            .ok_or_else(|| Error::Protocol("DescribeQuorum answered no partition".into()))?;
        check(p.error_code)?;
        Ok(QuorumDescription {
            leader: p.leader_id.0,
            leader_epoch: p.leader_epoch,
            high_watermark: p.high_watermark,
            voters: p
                .current_voters
                .iter()
                .map(|v| (v.replica_id.0, v.log_end_offset))
                .collect(),
        })
    }

    /// Every topic (internal ones included), sorted by name.
    pub async fn list_topics(&self) -> Result<Vec<TopicDescription>> {
        self.cluster.refresh(&[]).await?;
        Ok(self.cluster.topics())
    }

    /// One topic with fresh metadata. Fails with [`Error::UnknownTopic`] if it does not exist.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        self.cluster.refresh(&[name.to_string()]).await?;
        self.cluster
            .topic(name)
            .ok_or_else(|| Error::UnknownTopic(name.to_string()))
    }

    /// Raises a topic's partition count to `total` (the new count, not the number to add).
    /// Partitions can be added, never removed.
    pub async fn create_partitions(&self, topic: &str, total: i32) -> Result<()> {
        let request = CreatePartitionsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(TopicName(s(topic)))
                .with_count(total)
                .with_assignments(None)]);
        let (response, _) = self.controller().await?.request(&request, 3).await?;
        let r = response
            .results
            .first()
            .ok_or_else(|| Error::Protocol("empty answer".into()))?;
        if r.error_code != 0 {
            return Err(Error::from_code(
                r.error_code,
                r.error_message.as_ref().map(|m| m.to_string()),
            ));
        }
        let _ = self.cluster.refresh(&[topic.to_string()]).await;
        Ok(())
    }

    /// Configs of a topic (`broker = false`) or a broker id (`""`: the cluster-wide dynamic
    /// defaults).
    pub async fn describe_configs(&self, name: &str, broker: bool) -> Result<Vec<ConfigEntry>> {
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(if broker { 4 } else { 2 })
                .with_resource_name(s(name))
                .with_configuration_keys(None),
        ]);
        // A broker describes only itself: ask the one named.
        let target = match name.parse::<i32>() {
            Ok(id) if broker => self.cluster.broker(id).await?,
            _ => self.cluster.any().await?,
        };
        let (response, _) = target.request(&request, 4).await?;
        let r = response
            .results
            .first()
            .ok_or_else(|| Error::Protocol("empty answer".into()))?;
        if r.error_code != 0 {
            return Err(Error::from_code(
                r.error_code,
                r.error_message.as_ref().map(|m| m.to_string()),
            ));
        }
        Ok(r.configs
            .iter()
            .map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.as_ref().map(|v| v.to_string()),
                is_default: c.config_source == 5,
                read_only: c.read_only,
                source: c.config_source,
            })
            .collect())
    }

    /// Sets (`Some`) or resets (`None`) topic configs.
    /// Configs not listed keep their values (IncrementalAlterConfigs).
    pub async fn alter_topic_configs(
        &self,
        topic: &str,
        changes: &[(String, Option<String>)],
    ) -> Result<()> {
        self.alter_configs(2, topic, changes).await
    }

    /// Sets (`Some`) or removes (`None`) dynamic broker configs of broker `id`, or the
    /// cluster-wide defaults with `None` (`kafka-configs --entity-default`).
    pub async fn alter_broker_configs(
        &self,
        id: Option<i32>,
        changes: &[(String, Option<String>)],
    ) -> Result<()> {
        let name = id.map(|i| i.to_string()).unwrap_or_default();
        self.alter_configs(4, &name, changes).await
    }

    async fn alter_configs(
        &self,
        resource_type: i8,
        name: &str,
        changes: &[(String, Option<String>)],
    ) -> Result<()> {
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(s(name))
                .with_configs(
                    changes
                        .iter()
                        .map(|(k, v)| {
                            AlterableConfig::default()
                                .with_name(s(k))
                                .with_config_operation(if v.is_some() { 0 } else { 1 })
                                .with_value(v.as_deref().map(s))
                        })
                        .collect(),
                ),
        ]);
        let (response, _) = self.controller().await?.request(&request, 1).await?;
        let r = response
            .responses
            .first()
            .ok_or_else(|| Error::Protocol("empty answer".into()))?;
        if r.error_code != 0 {
            return Err(Error::from_code(
                r.error_code,
                r.error_message.as_ref().map(|m| m.to_string()),
            ));
        }
        Ok(())
    }

    /// Offsets of a topic's partitions by spec: partition → (offset, timestamp).
    pub async fn list_offsets(
        &self,
        topic: &str,
        spec: OffsetSpec,
    ) -> Result<BTreeMap<i32, (i64, i64)>> {
        let info = self.describe_topic(topic).await?;
        let ts = match spec {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(t) => t,
        };
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in &info.partitions {
            by_leader.entry(p.leader).or_default().push(p.partition);
        }
        let mut out = BTreeMap::new();
        for (leader, partitions) in by_leader {
            let request = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|p| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(*p)
                                    .with_timestamp(ts)
                            })
                            .collect(),
                    )]);
            let (response, _) = self
                .cluster
                .broker(leader)
                .await?
                .request(&request, 7)
                .await?;
            for t in response.topics {
                for p in t.partitions {
                    check(p.error_code)?;
                    out.insert(p.partition_index, (p.offset, p.timestamp));
                }
            }
        }
        Ok(out)
    }

    async fn coordinator(&self, group: &str) -> Result<Arc<crate::connection::Connection>> {
        self.cluster.group_coordinator(group).await
    }

    /// Group ids with their state and type (`classic` or `consumer`, KIP-848).
    /// Asks every known broker; sorted by group id.
    pub async fn list_groups(&self) -> Result<Vec<(String, String, String)>> {
        let mut out = Vec::new();
        for b in self.cluster.brokers() {
            let (response, _) = self
                .cluster
                .broker(b.node_id)
                .await?
                .request(&ListGroupsRequest::default(), 5)
                .await?;
            check(response.error_code)?;
            out.extend(response.groups.into_iter().map(|g| {
                (
                    g.group_id.0.to_string(),
                    g.group_state.to_string(),
                    g.group_type.to_string(),
                )
            }));
        }
        out.sort();
        Ok(out)
    }

    /// A consumer group's state, assignor and members with their assignments: through
    /// ConsumerGroupDescribe for a group of the consumer protocol (KIP-848), else DescribeGroups.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let conn = self.coordinator(group).await?;
        let asked = conn
            .request(
                &ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(group))]),
                0,
            )
            .await;
        if let Ok((response, _)) = asked {
            if let Some(g) = response.groups.into_iter().find(|g| g.error_code == 0) {
                return Ok(GroupDescription {
                    group_id: g.group_id.0.to_string(),
                    state: g.group_state.to_string(),
                    group_type: "consumer".to_string(),
                    epoch: Some(g.group_epoch),
                    protocol_type: "consumer".to_string(),
                    protocol: g.assignor_name.to_string(),
                    members: g
                        .members
                        .into_iter()
                        .map(|m| GroupMember {
                            member_id: m.member_id.to_string(),
                            client_id: m.client_id.to_string(),
                            host: m.client_host.to_string(),
                            assignment: m
                                .assignment
                                .topic_partitions
                                .into_iter()
                                .flat_map(|t| {
                                    let name = t.topic_name.0.to_string();
                                    t.partitions.into_iter().map(move |p| (name.clone(), p))
                                })
                                .collect(),
                        })
                        .collect(),
                });
            }
        }
        let (response, _) = conn
            .request(
                &DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]),
                5,
            )
            .await?;
        let g = response
            .groups
            .into_iter()
            .next()
            .ok_or_else(|| Error::Protocol("empty answer".into()))?;
        check(g.error_code)?;
        Ok(GroupDescription {
            group_id: g.group_id.0.to_string(),
            state: g.group_state.to_string(),
            group_type: "classic".to_string(),
            epoch: None,
            protocol_type: g.protocol_type.to_string(),
            protocol: g.protocol_data.to_string(),
            members: g
                .members
                .into_iter()
                .map(|m| GroupMember {
                    member_id: m.member_id.to_string(),
                    client_id: m.client_id.to_string(),
                    host: m.client_host.to_string(),
                    assignment: crate::consumer::decode_assignment(m.member_assignment),
                })
                .collect(),
        })
    }

    /// Deletes a consumer group and its committed offsets; it must have no active members
    /// (else a `NonEmptyGroup` error).
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        let conn = self.coordinator(group).await?;
        let (response, _) = conn
            .request(
                &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))]),
                2,
            )
            .await?;
        let r = response
            .results
            .first()
            .ok_or_else(|| Error::Protocol("empty answer".into()))?;
        check(r.error_code)
    }

    /// Committed offsets of a group: (topic, partition) → offset.
    pub async fn group_offsets(&self, group: &str) -> Result<BTreeMap<(String, i32), i64>> {
        let conn = self.coordinator(group).await?;
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(None::<Vec<OffsetFetchRequestTopic>>);
        let (response, _) = conn.request(&request, 7).await?;
        check(response.error_code)?;
        let mut out = BTreeMap::new();
        for t in response.topics {
            for p in t.partitions {
                if p.error_code == 0 && p.committed_offset >= 0 {
                    out.insert(
                        (t.name.0.to_string(), p.partition_index),
                        p.committed_offset,
                    );
                }
            }
        }
        Ok(out)
    }

    /// Commits offsets for a group that has no active members (resetting its position).
    pub async fn set_group_offsets(
        &self,
        group: &str,
        offsets: &BTreeMap<(String, i32), i64>,
    ) -> Result<()> {
        let conn = self.coordinator(group).await?;
        let mut topics: BTreeMap<&str, Vec<offset_commit_request::OffsetCommitRequestPartition>> =
            BTreeMap::new();
        for ((t, p), o) in offsets {
            topics.entry(t.as_str()).or_default().push(
                offset_commit_request::OffsetCommitRequestPartition::default()
                    .with_partition_index(*p)
                    .with_committed_offset(*o),
            );
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(s(""))
            .with_retention_time_ms(-1)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        offset_commit_request::OffsetCommitRequestTopic::default()
                            .with_name(TopicName(s(t)))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let (response, _) = conn.request(&request, 7).await?;
        for t in response.topics {
            for p in t.partitions {
                check(p.error_code)?;
            }
        }
        Ok(())
    }

    /// Per-partition lag of a group over the topics it has committed offsets for.
    pub async fn group_lag(&self, group: &str) -> Result<Vec<PartitionLag>> {
        let committed = self.group_offsets(group).await?;
        let topics: std::collections::BTreeSet<String> =
            committed.keys().map(|(t, _)| t.clone()).collect();
        let mut out = Vec::new();
        for topic in topics {
            let ends = self.list_offsets(&topic, OffsetSpec::Latest).await?;
            let starts = self.list_offsets(&topic, OffsetSpec::Earliest).await?;
            for (partition, (end, _)) in ends {
                let c = committed
                    .get(&(topic.clone(), partition))
                    .copied()
                    .unwrap_or(-1);
                let from = if c >= 0 {
                    c
                } else {
                    starts.get(&partition).map_or(0, |s| s.0)
                };
                out.push(PartitionLag {
                    topic: topic.clone(),
                    partition,
                    committed: c,
                    log_end_offset: end,
                    lag: (end - from).max(0),
                });
            }
        }
        Ok(out)
    }

    /// The brokers as of the last metadata refresh, by id.
    pub fn brokers(&self) -> Vec<crate::cluster::BrokerInfo> {
        self.cluster.brokers()
    }

    /// The cluster's id as of the last metadata refresh; `None` if the broker sent none.
    pub fn cluster_id(&self) -> Option<String> {
        self.cluster.cluster_id()
    }
}

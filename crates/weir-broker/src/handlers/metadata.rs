//! Metadata: live brokers, the controller, and topics with their partitions, leaders, replicas and ISR.
//! Unknown topics are created here when `auto.create.topics.enable` is on and the client allows it.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use weir_meta::{CreateTopic, MetaError, MetadataImage, PartitionImage, TopicImage};
use weir_types::BrokerId;

use super::str_bytes;
use crate::broker::Broker;
use crate::errors::meta_error_code;
use crate::security::authorizer::Access;
use weir_meta::acl::{AclOperation, ResourceType, CLUSTER_NAME};

/// Kafka's internal topics (offsets, transactions).
pub(crate) fn is_internal(topic: &str) -> bool {
    topic.starts_with("__")
}

/// A partition as clients of `listener` see it: (error code, leader, offline replicas). Without a
/// live leader it says LEADER_NOT_AVAILABLE, with a leader that has no such listener
/// LISTENER_NOT_FOUND (both with no leader; before Metadata v6, which does not know
/// LISTENER_NOT_FOUND, LEADER_NOT_AVAILABLE, Kafka's rule too); replicas on fenced brokers are
/// offline.
pub(crate) fn partition_view(
    image: &MetadataImage,
    listener: &str,
    knows_listener_not_found: bool,
    p: &PartitionImage,
) -> (i16, Option<BrokerId>, Vec<BrokerId>) {
    let offline: Vec<BrokerId> = p
        .replicas
        .iter()
        .copied()
        .filter(|b| !image.is_live(*b))
        .collect();
    let live = p.leader.filter(|l| image.is_live(*l));
    let reachable = |l: &BrokerId| {
        image
            .brokers
            .get(l)
            .is_some_and(|b| b.endpoint(listener).is_some())
    };
    let leader = live.filter(reachable);
    let code = match (live, leader) {
        (None, _) => ResponseError::LeaderNotAvailable.code(),
        (Some(_), None) if knows_listener_not_found => ResponseError::ListenerNotFound.code(),
        (Some(_), None) => ResponseError::LeaderNotAvailable.code(),
        (Some(_), Some(_)) => 0,
    };
    (code, leader, offline)
}

/// A topic as clients of `listener` see it (see [`partition_view`]).
fn topic_entry(
    image: &MetadataImage,
    listener: &str,
    version: i16,
    topic: &TopicImage,
) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .map(|(index, p)| {
            let (code, leader, offline) = partition_view(image, listener, version >= 6, p);
            MetadataResponsePartition::default()
                .with_error_code(code)
                .with_partition_index(*index)
                .with_leader_id(super::wire_broker(leader))
                .with_leader_epoch(p.leader_epoch.0)
                .with_replica_nodes(super::wire_brokers(&p.replicas))
                .with_isr_nodes(super::wire_brokers(&p.isr))
                .with_offline_replicas(super::wire_brokers(&offline))
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(topic.name.clone()))))
        .with_topic_id(topic.topic_id)
        .with_is_internal(is_internal(&topic.name))
        .with_partitions(partitions)
}

fn error_entry(name: Option<String>, topic_id: uuid::Uuid, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code)
        .with_name(name.map(|n| TopicName(str_bytes(n))))
        .with_topic_id(topic_id)
}

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    listener: &str,
    version: i16,
    request: MetadataRequest,
) -> MetadataResponse {
    // Only topics the principal may describe are shown; one asked for by name or id and refused
    // is TOPIC_AUTHORIZATION_FAILED, whether it exists or not.
    let describable = |name: &str| access.topic(AclOperation::Describe, name);
    let refused = |name: Option<String>, id: uuid::Uuid| {
        error_entry(name, id, ResponseError::TopicAuthorizationFailed.code())
    };
    let may_create = |name: &str| {
        access.cluster(AclOperation::Create) || access.topic(AclOperation::Create, name)
    };
    // Before v4 every request allowed auto-creation.
    let allow_create = broker.config.auto_create_topics_enable
        && (version < 4 || request.allow_auto_topic_creation);
    let mut image: Arc<MetadataImage> = broker.image();
    let topics: Vec<MetadataResponseTopic> = match request.topics {
        // v0 sends an empty list for "all topics"; v1+ sends null.
        None => image
            .topics()
            .filter(|t| describable(&t.name))
            .map(|t| topic_entry(&image, listener, version, t))
            .collect(),
        Some(list) if list.is_empty() && version == 0 => image
            .topics()
            .filter(|t| describable(&t.name))
            .map(|t| topic_entry(&image, listener, version, t))
            .collect(),
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for requested in list {
                let name = requested.name.map(|n| n.0.to_string());
                let Some(name) = name else {
                    // Lookup by topic id (v10+).
                    match image.topic_by_id(&requested.topic_id) {
                        Some(t) if !describable(&t.name) => {
                            out.push(refused(None, requested.topic_id))
                        }
                        Some(t) => out.push(topic_entry(&image, listener, version, t)),
                        None => out.push(error_entry(
                            None,
                            requested.topic_id,
                            ResponseError::UnknownTopicId.code(),
                        )),
                    }
                    continue;
                };
                // Describe first, as Kafka asks: then Create for an auto-creation.
                let creatable = allow_create && image.topic(&name).is_none() && may_create(&name);
                if !describable(&name) {
                    out.push(refused(Some(name), uuid::Uuid::nil()));
                    continue;
                }
                if let Some(t) = image.topic(&name) {
                    out.push(topic_entry(&image, listener, version, t));
                    continue;
                }
                if !creatable {
                    if allow_create {
                        // Auto-creation is on, but this principal may not create it.
                        out.push(refused(Some(name), uuid::Uuid::nil()));
                        continue;
                    }
                    out.push(error_entry(
                        Some(name),
                        uuid::Uuid::nil(),
                        ResponseError::UnknownTopicOrPartition.code(),
                    ));
                    continue;
                }
                let request = CreateTopic {
                    name: name.clone(),
                    num_partitions: -1,
                    replication_factor: -1,
                    ..Default::default()
                };
                match broker.create_topic(&request, false).await {
                    Ok(_) | Err(MetaError::TopicAlreadyExists(_)) => {
                        tracing::info!(topic = %name, "auto-created topic");
                        image = broker.image();
                        match image.topic(&name) {
                            Some(t) => out.push(topic_entry(&image, listener, version, t)),
                            None => out.push(error_entry(
                                Some(name),
                                uuid::Uuid::nil(),
                                ResponseError::LeaderNotAvailable.code(),
                            )),
                        }
                    }
                    Err(e) => {
                        tracing::warn!(topic = %name, error = %e, "auto-creation refused");
                        out.push(error_entry(
                            Some(name),
                            uuid::Uuid::nil(),
                            meta_error_code(&e),
                        ));
                    }
                }
            }
            out
        }
    };
    // The operations the principal may perform, when asked (v8+).
    let topics = if version >= 8 && request.include_topic_authorized_operations {
        topics
            .into_iter()
            .map(|t| match &t.name {
                Some(name) if t.error_code == 0 => {
                    let ops = access.operations(ResourceType::Topic, name);
                    t.with_topic_authorized_operations(ops)
                }
                _ => t,
            })
            .collect()
    } else {
        topics
    };
    let cluster_operations =
        if !(8..=10).contains(&version) || !request.include_cluster_authorized_operations {
            i32::MIN
        } else if !access.cluster(AclOperation::Describe) {
            0
        } else {
            access.operations(ResourceType::Cluster, CLUSTER_NAME)
        };
    let brokers = image
        .live_brokers()
        .filter_map(|b| {
            let (host, port) = b.endpoint(listener)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(super::wire_broker(Some(b.broker_id)))
                    .with_host(str_bytes(host.to_string()))
                    .with_port(port)
                    .with_rack(b.rack.clone().map(str_bytes)),
            )
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(broker.cluster_id())))
        // Clients send admin requests to the controller id and cache it. Naming the active
        // controller sent them to a dead node after a failover; this broker is always reachable
        // and forwards to the active controller (KRaft names some live broker too).
        .with_controller_id(super::wire_broker(Some(broker.node_id())))
        .with_topics(topics)
        .with_cluster_authorized_operations(cluster_operations)
}

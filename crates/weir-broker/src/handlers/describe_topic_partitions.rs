//! DescribeTopicPartitions (KIP-966): topics with their partitions, a page at a time. Topics go
//! in name order and partitions in index order, from the request's cursor, at most
//! `response_partition_limit` partitions (capped at [`MAX_PARTITIONS`]); when more remain,
//! `next_cursor` names the first one left out. Weir has no eligible leader replicas (ELR), so
//! both ELR lists are empty.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};
use weir_meta::acl::{AclOperation, ResourceType};
use weir_meta::{MetadataImage, TopicImage};

use super::metadata::{is_internal, partition_view};
use super::str_bytes;
use crate::broker::Broker;
use crate::security::authorizer::Access;

/// The most partitions one answer holds (Kafka's `max.request.partition.size.limit`).
pub(crate) const MAX_PARTITIONS: usize = 2000;

fn topic_error(name: &str, error: ResponseError) -> DescribeTopicPartitionsResponseTopic {
    DescribeTopicPartitionsResponseTopic::default()
        .with_error_code(error.code())
        .with_name(Some(TopicName(str_bytes(name))))
}

/// Partitions `from` on of `topic`, at most `room` of them, as clients of `listener` see them
/// (the leader, error and offline replicas Metadata gives).
fn partitions(
    image: &MetadataImage,
    listener: &str,
    topic: &TopicImage,
    from: i32,
    room: usize,
) -> Vec<DescribeTopicPartitionsResponsePartition> {
    topic
        .partitions
        .range(from..)
        .take(room)
        .map(|(index, p)| {
            let (code, leader, offline) = partition_view(image, listener, true, p);
            DescribeTopicPartitionsResponsePartition::default()
                .with_error_code(code)
                .with_partition_index(*index)
                .with_leader_id(super::wire_broker(leader))
                .with_leader_epoch(p.leader_epoch.0)
                .with_replica_nodes(super::wire_brokers(&p.replicas))
                .with_isr_nodes(super::wire_brokers(&p.isr))
                .with_eligible_leader_replicas(Some(Vec::new()))
                .with_last_known_elr(Some(Vec::new()))
                .with_offline_replicas(super::wire_brokers(&offline))
        })
        .collect()
}

pub(crate) fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    listener: &str,
    request: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let image = broker.image();
    let all = request.topics.is_empty();
    let mut names: Vec<String> = if all {
        image
            .topics()
            .map(|t| t.name.clone())
            .filter(|n| access.topic(AclOperation::Describe, n))
            .collect()
    } else {
        request
            .topics
            .iter()
            .map(|t| t.name.0.to_string())
            .collect()
    };
    names.sort();
    names.dedup();
    let cursor = request
        .cursor
        .as_ref()
        .map(|c| (c.topic_name.0.to_string(), c.partition_index));
    if let Some((topic, partition)) = &cursor {
        // Kafka's rule: a cursor must name one of the topics asked for, and a partition.
        if (!all && !names.contains(topic)) || *partition < 0 {
            // Kafka's error answer names the topics asked for (none when asking for all).
            let asked = if all { &[][..] } else { &names[..] };
            return DescribeTopicPartitionsResponse::default().with_topics(
                asked
                    .iter()
                    .map(|n| topic_error(n, ResponseError::InvalidRequest))
                    .collect(),
            );
        }
    }
    let limit = usize::try_from(request.response_partition_limit)
        .unwrap_or(0)
        .clamp(1, MAX_PARTITIONS);
    let mut room = limit;
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in &names {
        let from = match &cursor {
            Some((topic, _)) if name < topic => continue,
            Some((topic, partition)) if name == topic => *partition,
            _ => 0,
        };
        if room == 0 {
            // The page is full: the next one starts at this topic (known or not, as Kafka's).
            next_cursor = Some((name.clone(), from));
            break;
        }
        if !all && !access.topic(AclOperation::Describe, name) {
            topics.push(topic_error(name, ResponseError::TopicAuthorizationFailed));
            continue;
        }
        let Some(topic) = image.topic(name) else {
            topics.push(topic_error(name, ResponseError::UnknownTopicOrPartition));
            continue;
        };
        let page = partitions(&image, listener, topic, from, room);
        room -= page.len();
        if let Some(next) = topic.partitions.range(from..).nth(page.len()) {
            next_cursor = Some((name.clone(), *next.0));
        }
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(TopicName(str_bytes(name))))
                .with_topic_id(topic.topic_id)
                .with_is_internal(is_internal(name))
                .with_partitions(page)
                .with_topic_authorized_operations(access.operations(ResourceType::Topic, name)),
        );
        if next_cursor.is_some() {
            break;
        }
    }
    DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next_cursor.map(|(topic, partition)| {
            Cursor::default()
                .with_topic_name(TopicName(str_bytes(topic)))
                .with_partition_index(partition)
        }))
}

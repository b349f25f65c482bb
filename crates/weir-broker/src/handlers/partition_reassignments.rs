//! AlterPartitionReassignments and ListPartitionReassignments (KIP-455): tools move replicas
//! between brokers. The active controller starts each move (the new replicas join the replica
//! list and copy the partition), completes it once every target replica is in the ISR (the
//! others leave, and their brokers delete their copies), or cancels it. Ongoing moves are read
//! from this broker's image.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use weir_meta::{ControllerOp, Election, Outcome};

use super::str_bytes;
use crate::broker::Broker;
use crate::errors::meta_error_code;

pub(crate) async fn alter(
    broker: &Arc<Broker>,
    version: i16,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let partitions: Vec<(String, i32, Option<Vec<weir_types::BrokerId>>)> = request
        .topics
        .iter()
        .flat_map(|t| {
            let name = t.name.0.to_string();
            t.partitions.iter().map(move |p| {
                let target = p.replicas.as_deref().map(super::brokers_from_wire);
                (name.clone(), p.partition_index, target)
            })
        })
        .collect();
    // v1 (KIP-860) may forbid changing the replication factor; v0 allows it.
    let keep_replication_factor = version >= 1 && !request.allow_replication_factor_change;
    let op = ControllerOp::AlterReassignments {
        partitions,
        keep_replication_factor,
    };
    let results = match broker.controller_op(op).await {
        Ok(reply) => match reply.outcome {
            Outcome::Reassignments(results) => results,
            other => {
                tracing::error!(?other, "unexpected controller answer to AlterReassignments");
                let response = AlterPartitionReassignmentsResponse::default()
                    .with_error_code(ResponseError::UnknownServerError.code());
                return with_flag(response, version, request.allow_replication_factor_change);
            }
        },
        // The controller could not be reached: the request as a whole failed.
        Err(e) => {
            let response = AlterPartitionReassignmentsResponse::default()
                .with_error_code(meta_error_code(&e))
                .with_error_message(Some(str_bytes(e.to_string())));
            return with_flag(response, version, request.allow_replication_factor_change);
        }
    };
    let response = AlterPartitionReassignmentsResponse::default().with_responses(by_topic(results));
    with_flag(response, version, request.allow_replication_factor_change)
}

/// v1 echoes `allow_replication_factor_change`; v0 has no such field.
fn with_flag(
    response: AlterPartitionReassignmentsResponse,
    version: i16,
    allow: bool,
) -> AlterPartitionReassignmentsResponse {
    if version >= 1 {
        response.with_allow_replication_factor_change(allow)
    } else {
        response
    }
}

/// Groups per-partition results by topic, in the order they came.
fn by_topic(results: Vec<Election>) -> Vec<ReassignableTopicResponse> {
    let mut topics: Vec<ReassignableTopicResponse> = Vec::new();
    for r in results {
        let answer = match r.error {
            None => ReassignablePartitionResponse::default().with_partition_index(r.partition),
            Some(e) => ReassignablePartitionResponse::default()
                .with_partition_index(r.partition)
                .with_error_code(meta_error_code(&e))
                .with_error_message(Some(str_bytes(e.to_string()))),
        };
        match topics.last_mut() {
            Some(t) if t.name.0.as_str() == r.topic => t.partitions.push(answer),
            _ => topics.push(
                ReassignableTopicResponse::default()
                    .with_name(TopicName(str_bytes(r.topic)))
                    .with_partitions(vec![answer]),
            ),
        }
    }
    topics
}

pub(crate) fn list(
    broker: &Arc<Broker>,
    request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let image = broker.image();
    let ongoing = |topic: &weir_meta::TopicImage, index: i32| {
        topic
            .partitions
            .get(&index)
            .filter(|p| p.reassigning())
            .map(|p| {
                OngoingPartitionReassignment::default()
                    .with_partition_index(index)
                    .with_replicas(super::wire_brokers(&p.replicas))
                    .with_adding_replicas(super::wire_brokers(&p.adding_replicas))
                    .with_removing_replicas(super::wire_brokers(&p.removing_replicas))
            })
    };
    let mut topics = Vec::new();
    match request.topics {
        // Every ongoing move.
        None => {
            for topic in image.topics() {
                let partitions: Vec<_> = topic
                    .partitions
                    .keys()
                    .filter_map(|i| ongoing(topic, *i))
                    .collect();
                if !partitions.is_empty() {
                    topics.push(
                        OngoingTopicReassignment::default()
                            .with_name(TopicName(str_bytes(topic.name.clone())))
                            .with_partitions(partitions),
                    );
                }
            }
        }
        // Those asked for; partitions not being moved (or unknown) are left out, as Kafka does.
        Some(asked) => {
            for t in asked {
                let Some(topic) = image.topic(&t.name.0) else {
                    continue;
                };
                let partitions: Vec<_> = t
                    .partition_indexes
                    .iter()
                    .filter_map(|i| ongoing(topic, *i))
                    .collect();
                if !partitions.is_empty() {
                    topics.push(
                        OngoingTopicReassignment::default()
                            .with_name(t.name)
                            .with_partitions(partitions),
                    );
                }
            }
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}

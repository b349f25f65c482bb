//! DescribeProducers: the producers a partition's leader knows, with their epoch, last
//! sequence and timestamp, and the first offset of their open transaction (what
//! `kafka-transactions.sh find-hanging` reads).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use weir_meta::acl::AclOperation;

use crate::broker::Broker;
use crate::security::authorizer::Access;

pub(crate) fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    request: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let readable = access.topic(AclOperation::Read, &name);
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    let base = PartitionResponse::default().with_partition_index(index);
                    if !readable {
                        return base
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    let Some(partition) = broker.replicas.get(&name, index) else {
                        return base.with_error_code(broker.not_hosted_code(&name, index));
                    };
                    if !partition.is_leader(broker.node_id()) {
                        return base.with_error_code(ResponseError::NotLeaderOrFollower.code());
                    }
                    let producers = partition
                        .log()
                        .producer_states()
                        .into_iter()
                        .map(|p| {
                            ProducerState::default()
                                .with_producer_id(ProducerId(p.producer_id.0))
                                .with_producer_epoch(i32::from(p.epoch.0))
                                .with_last_sequence(p.last_sequence)
                                .with_last_timestamp(p.last_timestamp)
                                .with_coordinator_epoch(p.coordinator_epoch)
                                .with_current_txn_start_offset(p.txn_start.map_or(-1, |o| o.0))
                        })
                        .collect();
                    base.with_active_producers(producers)
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}

//! OffsetForLeaderEpoch (KIP-101, KIP-279): where a leader epoch ended in this log, so a follower
//! or consumer can find where its copy diverges. Checks `current_leader_epoch` (KIP-320).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use weir_types::LeaderEpoch;

use crate::broker::Broker;
use crate::security::authorizer::Access;
use weir_meta::acl::AclOperation;

pub(crate) fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    // ClusterAction (a follower's), else Describe on each topic, whatever replica id is
    // claimed, as Kafka checks.
    let cluster_action = access.cluster(AclOperation::ClusterAction);
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.topic.0.to_string();
            let refused = (!cluster_action && !access.topic(AclOperation::Describe, &name))
                .then_some(ResponseError::TopicAuthorizationFailed);
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let result = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    if let Some(refused) = refused {
                        return result.with_error_code(refused.code());
                    }
                    let Some(partition) = broker.replicas.get(&name, p.partition) else {
                        return result.with_error_code(broker.not_hosted_code(&name, p.partition));
                    };
                    if !partition.is_leader(broker.node_id()) {
                        return result.with_error_code(ResponseError::NotLeaderOrFollower.code());
                    }
                    let epoch = partition.leader_epoch();
                    match LeaderEpoch::from_wire(p.current_leader_epoch) {
                        Some(asked) if asked < epoch => {
                            return result.with_error_code(ResponseError::FencedLeaderEpoch.code())
                        }
                        Some(asked) if asked > epoch => {
                            return result.with_error_code(ResponseError::UnknownLeaderEpoch.code())
                        }
                        _ => {}
                    }
                    // Epochs before the first are unknown: -1 / -1, as Kafka answers.
                    let Some(asked) = LeaderEpoch::from_wire(p.leader_epoch) else {
                        return result;
                    };
                    let log = partition.log();
                    match log.epochs().end_offset_for(asked, log.log_end_offset()) {
                        Some((leader_epoch, end_offset)) => result
                            .with_leader_epoch(leader_epoch.0)
                            .with_end_offset(end_offset.0),
                        None => result,
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

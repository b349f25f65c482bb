//! DescribeQuorum (KIP-595): the metadata quorum as this node sees it: the active controller, the
//! term (the metadata log's leader epoch), and each voter's log end where known. The only
//! partition is `__cluster_metadata-0`, as in KRaft.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_quorum_response::{PartitionData, ReplicaState, TopicData};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};

use crate::broker::Broker;

/// The name KRaft gives the metadata log.
pub(crate) const METADATA_TOPIC: &str = "__cluster_metadata";

pub(crate) fn handle(
    broker: &Arc<Broker>,
    request: DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    let view = broker.quorum().view();
    let as_id = |id: u64| BrokerId(i32::try_from(id).unwrap_or(-1));
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let known = topic.topic_name.0.as_str() == METADATA_TOPIC;
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let data = PartitionData::default().with_partition_index(p.partition_index);
                    if !known || p.partition_index != 0 {
                        return data
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_leader_id(BrokerId(-1))
                            .with_leader_epoch(-1)
                            .with_high_watermark(-1);
                    }
                    let voters = view
                        .voters
                        .iter()
                        .map(|(id, end)| {
                            ReplicaState::default()
                                .with_replica_id(as_id(*id))
                                .with_log_end_offset(end.map_or(-1, |e| e as i64 + 1))
                                .with_last_fetch_timestamp(-1)
                                .with_last_caught_up_timestamp(-1)
                        })
                        .collect();
                    data.with_leader_id(view.leader.map_or(BrokerId(-1), as_id))
                        .with_leader_epoch(i32::try_from(view.term).unwrap_or(i32::MAX))
                        .with_high_watermark(view.committed as i64 + 1)
                        .with_current_voters(voters)
                })
                .collect();
            TopicData::default()
                .with_topic_name(topic.topic_name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeQuorumResponse::default().with_topics(topics)
}

//! DeleteRecords: move a partition's log start offset forward (-1 means the high watermark).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::broker::Broker;
use crate::security::authorizer::Access;
use weir_meta::acl::AclOperation;
use weir_types::Offset;

use crate::errors::log_error_code;

pub(crate) fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let deletable = access.topic(AclOperation::Delete, &name);
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let result = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    if !deletable {
                        return result
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    let Some(partition) = broker.replicas.get(&name, p.partition_index) else {
                        return result
                            .with_error_code(broker.not_hosted_code(&name, p.partition_index));
                    };
                    if !partition.is_leader(broker.node_id()) {
                        return result.with_error_code(ResponseError::NotLeaderOrFollower.code());
                    }
                    let high_watermark = partition.high_watermark();
                    let mut log = partition.log();
                    // -1 asks for the high watermark; any other negative offset is out of range.
                    let target = match p.offset {
                        -1 => Some(high_watermark),
                        offset => Offset::from_wire(offset),
                    };
                    let Some(target) = target.filter(|t| *t <= high_watermark) else {
                        return result.with_error_code(ResponseError::OffsetOutOfRange.code());
                    };
                    match log.delete_records_before(target) {
                        Ok(low) => result.with_low_watermark(low.0),
                        Err(e) => result.with_error_code(log_error_code(&e)),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}

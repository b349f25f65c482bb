//! OffsetDelete (KIP-496): removes committed offsets of topics no member subscribes to.

use std::sync::Arc;

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use crate::broker::Broker;
use crate::security::authorizer::Access;
use kafka_protocol::error::ResponseError;
use weir_meta::acl::AclOperation;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    request: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    if !access.group(AclOperation::Delete, &request.group_id.0) {
        return OffsetDeleteResponse::default().with_error_code(
            kafka_protocol::error::ResponseError::GroupAuthorizationFailed.code(),
        );
    }
    let wanted: Vec<(String, Vec<i32>)> = request
        .topics
        .iter()
        .map(|t| {
            // A topic the principal may not read is left alone (and answered below).
            let partitions = if access.topic(AclOperation::Read, &t.name.0) {
                t.partitions.iter().map(|p| p.partition_index).collect()
            } else {
                Vec::new()
            };
            (t.name.0.to_string(), partitions)
        })
        .collect();
    match broker
        .groups
        .delete_offsets(broker, &request.group_id.0, &wanted)
        .await
    {
        Err(e) => OffsetDeleteResponse::default().with_error_code(e.code()),
        Ok(codes) => {
            let topics = request
                .topics
                .into_iter()
                .zip(codes)
                .map(|(t, codes)| {
                    let readable = access.topic(AclOperation::Read, &t.name.0);
                    let denied = ResponseError::TopicAuthorizationFailed.code();
                    let partitions = t
                        .partitions
                        .iter()
                        .enumerate()
                        .map(|(i, p)| {
                            let code = match codes.get(i) {
                                Some(code) if readable => *code,
                                _ => denied,
                            };
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect();
                    OffsetDeleteResponseTopic::default()
                        .with_name(t.name)
                        .with_partitions(partitions)
                })
                .collect();
            OffsetDeleteResponse::default().with_topics(topics)
        }
    }
}

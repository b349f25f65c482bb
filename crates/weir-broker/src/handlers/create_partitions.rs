//! CreatePartitions: grow a topic, optionally with explicit replica lists, with `validate_only`.

use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::str_bytes;
use weir_meta::ControllerOp;

use crate::broker::Broker;
use crate::errors::meta_error_code;
use crate::security::authorizer::Access;
use kafka_protocol::error::ResponseError;
use weir_meta::acl::AclOperation;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let validate_only = request.validate_only;
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let result = {
            let name = topic.name.0.to_string();
            let assignments = topic.assignments.map(|list| {
                list.into_iter()
                    .map(|a| super::brokers_from_wire(&a.broker_ids))
                    .collect()
            });
            let result = CreatePartitionsTopicResult::default().with_name(topic.name);
            if !access.topic(AclOperation::Alter, &name) {
                results
                    .push(result.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
                continue;
            }
            let op = ControllerOp::CreatePartitions {
                name,
                total: topic.count,
                assignments,
                validate_only,
            };
            match broker.controller_op(op).await {
                Ok(_) => result,
                Err(e) => result
                    .with_error_code(meta_error_code(&e))
                    .with_error_message(Some(str_bytes(e.to_string()))),
            }
        };
        results.push(result);
    }
    CreatePartitionsResponse::default().with_results(results)
}

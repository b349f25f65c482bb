//! DeleteTopics, by name (v0-v5) or by name or id (v6).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};

use super::str_bytes;
use weir_meta::{ControllerOp, ControllerReply, Outcome};

use crate::broker::Broker;
use crate::errors::meta_error_code;
use crate::security::authorizer::Access;
use weir_meta::acl::AclOperation;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    version: i16,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let targets: Vec<(Option<String>, uuid::Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let response = {
            let by_id = name.is_none();
            let name = match name {
                Some(n) => Some(n),
                None => broker.image().topic_by_id(&id).map(|t| t.name.clone()),
            };
            let result = DeletableTopicResult::default().with_topic_id(id);
            let Some(name) = name else {
                responses.push(result.with_error_code(ResponseError::UnknownTopicId.code()));
                continue;
            };
            // A topic named by id is not named back to a principal that may not describe it.
            if by_id && !access.topic(AclOperation::Describe, &name) {
                responses
                    .push(result.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
                continue;
            }
            let result = result.with_name(Some(TopicName(str_bytes(name.clone()))));
            if !access.topic(AclOperation::Delete, &name) {
                responses
                    .push(result.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
                continue;
            }
            let op = ControllerOp::DeleteTopic { name: name.clone() };
            match broker.controller_op(op).await {
                Ok(ControllerReply {
                    outcome: Outcome::TopicId(topic_id),
                    ..
                }) => {
                    tracing::info!(topic = %name, "deleted topic");
                    result.with_topic_id(topic_id)
                }
                Ok(_) => result,
                Err(e) => result
                    .with_error_code(meta_error_code(&e))
                    .with_error_message(Some(str_bytes(e.to_string()))),
            }
        };
        responses.push(response);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

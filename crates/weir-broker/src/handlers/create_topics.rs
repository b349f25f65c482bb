//! CreateTopics, with `validate_only`; v5+ answers with the partitions, replication factor and
//! effective configs of each topic.

use std::sync::Arc;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use weir_meta::configs::effective_topic_configs;
use weir_meta::CreateTopic;

use super::str_bytes;
use crate::broker::Broker;
use crate::errors::meta_error_code;
use crate::security::authorizer::Access;
use weir_meta::acl::AclOperation;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    version: i16,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    // Create on the cluster covers every topic; otherwise Create on the topic itself.
    let cluster_create = access.cluster(AclOperation::Create);
    let mut results = Vec::with_capacity(request.topics.len());
    let mut seen = std::collections::HashSet::new();
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let result = CreatableTopicResult::default().with_name(topic.name.clone());
        if !seen.insert(name.clone()) {
            results.push(
                result
                    .with_error_code(kafka_protocol::error::ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(format!(
                        "topic '{name}' appears twice in the request"
                    )))),
            );
            continue;
        }
        if !cluster_create && !access.topic(AclOperation::Create, &name) {
            results.push(result.with_error_code(
                kafka_protocol::error::ResponseError::TopicAuthorizationFailed.code(),
            ));
            continue;
        }
        let configs: Vec<(String, String)> = topic
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
            })
            .collect();
        let create = CreateTopic {
            name: name.clone(),
            num_partitions: topic.num_partitions,
            replication_factor: topic.replication_factor,
            assignments: topic
                .assignments
                .iter()
                .map(|a| (a.partition_index, super::brokers_from_wire(&a.broker_ids)))
                .collect(),
            configs: configs.clone(),
        };
        match broker.create_topic(&create, request.validate_only).await {
            Ok(topic_id) => {
                let mut result = result.with_topic_id(topic_id);
                if version >= 5 {
                    let partitions = if create.assignments.is_empty() {
                        if create.num_partitions == -1 {
                            broker.config.num_partitions
                        } else {
                            create.num_partitions
                        }
                    } else {
                        create.assignments.len() as i32
                    };
                    let rf = match create.assignments.first() {
                        Some((_, r)) => r.len() as i16,
                        None if create.replication_factor == -1 => {
                            broker.config.default_replication_factor
                        }
                        None => create.replication_factor,
                    };
                    let own: std::collections::BTreeMap<String, String> =
                        configs.into_iter().collect();
                    let effective = effective_topic_configs(&own, &broker.topic_defaults())
                        .into_iter()
                        .map(|e| {
                            CreatableTopicConfigs::default()
                                .with_name(str_bytes(e.def.name))
                                .with_value(Some(str_bytes(e.value)))
                                .with_config_source(e.source.code())
                        })
                        .collect();
                    result = result
                        .with_num_partitions(partitions)
                        .with_replication_factor(rf);
                    // The configs are told only to a principal that may describe them.
                    result = if access.topic(AclOperation::DescribeConfigs, &name) {
                        result.with_configs(Some(effective))
                    } else {
                        result.with_topic_config_error_code(
                            kafka_protocol::error::ResponseError::TopicAuthorizationFailed.code(),
                        )
                    };
                }
                tracing::info!(topic = %name, validate_only = request.validate_only, "created topic");
                results.push(result);
            }
            Err(e) => results.push(
                result
                    .with_error_code(meta_error_code(&e))
                    .with_error_message(Some(str_bytes(e.to_string())))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            ),
        }
    }
    CreateTopicsResponse::default().with_topics(results)
}

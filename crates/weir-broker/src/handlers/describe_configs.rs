//! DescribeConfigs for topics (every topic config with its effective value and source) and for
//! the broker (its static settings). Synonyms list the topic's own value, the broker default and
//! Kafka's default, in that order, as Kafka does.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use weir_meta::configs::{effective_topic_configs, ConfigSource};
use weir_meta::ConfigResource;

use super::str_bytes;
use crate::broker::Broker;

pub(crate) const RESOURCE_TOPIC: i8 = 2;
pub(crate) const RESOURCE_BROKER: i8 = 4;

pub(crate) fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let image = broker.image();
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let name = resource.resource_name.to_string();
            let wanted = |key: &str| {
                resource
                    .configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| &**k == key))
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match resource.resource_type {
                RESOURCE_TOPIC => {
                    if image.topic(&name).is_none() {
                        return result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(str_bytes(format!(
                                "unknown topic '{name}'"
                            ))));
                    }
                    let own = image.configs(&ConfigResource::Topic(name));
                    let configs = effective_topic_configs(&own, broker.topic_defaults())
                        .into_iter()
                        .filter(|e| wanted(e.def.name))
                        .map(|e| {
                            let mut synonyms = Vec::new();
                            if request.include_synonyms {
                                if let Some(v) = own.get(e.def.name) {
                                    synonyms.push(synonym(e.def.name, v, ConfigSource::Topic));
                                }
                                if let Some(b) = e.def.broker_synonym {
                                    if let Some(v) = broker.topic_defaults().get(b) {
                                        synonyms.push(synonym(b, v, ConfigSource::StaticBroker));
                                    }
                                    synonyms.push(synonym(b, e.def.default, ConfigSource::Default));
                                }
                            }
                            let mut entry = DescribeConfigsResourceResult::default()
                                .with_name(str_bytes(e.def.name))
                                .with_value(Some(str_bytes(e.value)))
                                .with_config_source(e.source.code())
                                .with_synonyms(synonyms);
                            if version >= 3 {
                                entry = entry.with_config_type(e.def.kind.describe_code());
                                if request.include_documentation {
                                    entry = entry.with_documentation(Some(str_bytes(e.def.doc)));
                                }
                            }
                            entry
                        })
                        .collect();
                    result.with_configs(configs)
                }
                RESOURCE_BROKER => {
                    if !(name.is_empty() || name == broker.node_id().to_string()) {
                        return result
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(str_bytes(format!(
                                "this is broker {}, not '{name}'",
                                broker.node_id()
                            ))));
                    }
                    let configs = broker
                        .config
                        .describe()
                        .into_iter()
                        .filter(|(k, _)| wanted(k))
                        .map(|(k, v)| {
                            DescribeConfigsResourceResult::default()
                                .with_name(str_bytes(k))
                                .with_value(Some(str_bytes(v)))
                                .with_read_only(true)
                                .with_config_source(ConfigSource::StaticBroker.code())
                        })
                        .collect();
                    result.with_configs(configs)
                }
                other => result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(format!(
                        "resource type {other} is not supported"
                    )))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn synonym(name: &str, value: &str, source: ConfigSource) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(str_bytes(name))
        .with_value(Some(str_bytes(value)))
        .with_source(source.code())
}

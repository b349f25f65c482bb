//! DescribeConfigs for topics (every topic config with its effective value and source) and for
//! the broker (its static settings). Synonyms list the topic's own value, the broker default and
//! Kafka's default, in that order, as Kafka does.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use weir_meta::broker_configs::dynamic_broker_config;
use weir_meta::configs::{effective_topic_configs, ConfigSource};
use weir_meta::ConfigResource;

use super::str_bytes;
use crate::broker::Broker;
use crate::security::authorizer::Access;
use weir_meta::acl::AclOperation;

pub(crate) const RESOURCE_TOPIC: i8 = 2;
pub(crate) const RESOURCE_BROKER: i8 = 4;

pub(crate) fn handle(
    broker: &Arc<Broker>,
    access: &Access,
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
            let refused = match resource.resource_type {
                RESOURCE_TOPIC if !access.topic(AclOperation::DescribeConfigs, &name) => {
                    Some(ResponseError::TopicAuthorizationFailed)
                }
                RESOURCE_BROKER if !access.cluster(AclOperation::DescribeConfigs) => {
                    Some(ResponseError::ClusterAuthorizationFailed)
                }
                _ => None,
            };
            if let Some(refused) = refused {
                return result.with_error_code(refused.code());
            }
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
                    let defaults = broker.topic_defaults();
                    let configs = effective_topic_configs(&own, &defaults)
                        .into_iter()
                        .filter(|e| wanted(e.def.name))
                        .map(|e| {
                            let mut synonyms = Vec::new();
                            if request.include_synonyms {
                                if let Some(v) = own.get(e.def.name) {
                                    synonyms.push(synonym(e.def.name, v, ConfigSource::Topic));
                                }
                                if let Some(b) = e.def.broker_synonym {
                                    for (v, source) in defaults.all(b) {
                                        synonyms.push(synonym(b, v, source));
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
                    let me = broker.node_id().to_string();
                    if !(name.is_empty() || name == me) {
                        return result
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(str_bytes(format!(
                                "this is broker {me}, not '{name}'"
                            ))));
                    }
                    result.with_configs(
                        broker_configs(broker, &image, name.is_empty())
                            .into_iter()
                            .filter(|(k, _, _)| wanted(k))
                            .map(|(k, v, source)| {
                                DescribeConfigsResourceResult::default()
                                    .with_read_only(dynamic_broker_config(&k).is_none())
                                    .with_name(str_bytes(k))
                                    .with_value(Some(str_bytes(v)))
                                    .with_config_source(source.code())
                            })
                            .collect(),
                    )
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

/// A broker's configs with their sources: the static ones, overridden by dynamic ones set for
/// it or as the cluster default. For the cluster-default resource (name ""), only those.
fn broker_configs(
    broker: &Broker,
    image: &weir_meta::MetadataImage,
    cluster_default: bool,
) -> Vec<(String, String, ConfigSource)> {
    let mut configs: std::collections::BTreeMap<String, (String, ConfigSource)> =
        std::collections::BTreeMap::new();
    let mut layers = vec![(
        ConfigResource::ClusterDefault,
        ConfigSource::DynamicDefaultBroker,
    )];
    if !cluster_default {
        for (k, v) in broker.config.describe() {
            configs.insert(k.to_string(), (v, ConfigSource::StaticBroker));
        }
        layers.push((
            ConfigResource::Broker(broker.node_id()),
            ConfigSource::DynamicBroker,
        ));
    }
    for (resource, source) in layers {
        for (k, v) in image.configs(&resource) {
            configs.insert(k, (v, source));
        }
    }
    configs
        .into_iter()
        .map(|(k, (v, source))| (k, v, source))
        .collect()
}

fn synonym(name: &str, value: &str, source: ConfigSource) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(str_bytes(name))
        .with_value(Some(str_bytes(value)))
        .with_source(source.code())
}

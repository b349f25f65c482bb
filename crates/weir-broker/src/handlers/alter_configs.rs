//! AlterConfigs (replace every config of a resource) and IncrementalAlterConfigs (SET, DELETE,
//! APPEND, SUBTRACT per config, KIP-339), for topics and for the dynamic configs of a broker or
//! of the cluster default (broker resource ""; see weir-meta's `broker_configs`).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use weir_meta::broker_configs::{broker_resource, dynamic_broker_config};
use weir_meta::configs::effective_topic_configs;
use weir_meta::{ConfigResource, ControllerOp, MetaError};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::str_bytes;
use crate::broker::Broker;
use crate::errors::meta_error_code;
use crate::security::authorizer::Access;
use weir_meta::acl::AclOperation;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// Whether the resource's configs may be altered: AlterConfigs on the topic, or on the cluster
/// for a broker; and broker configs are static.
fn check_resource(access: &Access, resource_type: i8, name: &str) -> Result<(), (i16, String)> {
    match resource_type {
        RESOURCE_TOPIC if !access.topic(AclOperation::AlterConfigs, name) => Err((
            ResponseError::TopicAuthorizationFailed.code(),
            format!("not authorized to alter the configs of topic '{name}'"),
        )),
        RESOURCE_BROKER if !access.cluster(AclOperation::AlterConfigs) => Err((
            ResponseError::ClusterAuthorizationFailed.code(),
            "not authorized to alter broker configs".into(),
        )),
        RESOURCE_TOPIC | RESOURCE_BROKER => Ok(()),
        other => Err((
            ResponseError::InvalidRequest.code(),
            format!("resource type {other} is not supported"),
        )),
    }
}

fn outcome<T>(result: Result<T, MetaError>) -> (i16, Option<StrBytes>) {
    match result {
        Ok(_) => (0, None),
        Err(e) => (meta_error_code(&e), Some(str_bytes(e.to_string()))),
    }
}

/// Sets or removes a topic's configs, or a broker's (or the cluster default's) dynamic
/// configs, through the controller.
async fn alter(
    broker: &Broker,
    resource_type: i8,
    name: String,
    changes: Vec<(String, Option<String>)>,
    replace_all: bool,
    validate_only: bool,
) -> (i16, Option<StrBytes>) {
    let op = if resource_type == RESOURCE_BROKER {
        let target = match broker_resource(&name) {
            Ok(ConfigResource::Broker(id)) => Some(id),
            Ok(_) => None,
            Err(e) => return outcome::<()>(Err(e)),
        };
        ControllerOp::AlterBrokerConfigs {
            broker: target,
            changes,
            replace_all,
            validate_only,
        }
    } else {
        ControllerOp::AlterTopicConfigs {
            name,
            changes,
            replace_all,
            validate_only,
        }
    };
    outcome(broker.controller_op(op).await)
}

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    request: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let validate_only = request.validate_only;
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let response = {
            let (code, message) =
                match check_resource(access, resource.resource_type, &resource.resource_name) {
                    Err((code, message)) => (code, Some(str_bytes(message))),
                    Ok(()) => {
                        let name = resource.resource_name.to_string();
                        let changes: Vec<(String, Option<String>)> = resource
                            .configs
                            .iter()
                            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                            .collect();
                        let kind = resource.resource_type;
                        alter(broker, kind, name, changes, true, validate_only).await
                    }
                };
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
        };
        responses.push(response);
    }
    AlterConfigsResponse::default().with_responses(responses)
}

pub(crate) async fn handle_incremental(
    broker: &Arc<Broker>,
    access: &Access,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let validate_only = request.validate_only;
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let response = {
            let (code, message) =
                match check_resource(access, resource.resource_type, &resource.resource_name) {
                    Err((code, message)) => (code, Some(str_bytes(message))),
                    Ok(()) => {
                        let name = resource.resource_name.to_string();
                        let kind = resource.resource_type;
                        let changes = if kind == RESOURCE_BROKER {
                            broker_changes(broker, &name, &resource.configs)
                        } else {
                            topic_changes(broker, &name, &resource.configs)
                        };
                        match changes {
                            Ok(changes) => {
                                alter(broker, kind, name, changes, false, validate_only).await
                            }
                            Err(e) => outcome::<()>(Err(e)),
                        }
                    }
                };
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
        };
        responses.push(response);
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

type AlterableConfigs =
    [kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig];

/// [`incremental_changes`] for a topic: APPEND and SUBTRACT start from its effective values.
fn topic_changes(
    broker: &Broker,
    topic: &str,
    configs: &AlterableConfigs,
) -> Result<Vec<(String, Option<String>)>, MetaError> {
    let image = broker.image();
    if image.topic(topic).is_none() {
        return Err(MetaError::UnknownTopic(topic.to_string()));
    }
    let own = image.configs(&ConfigResource::Topic(topic.to_string()));
    let effective = effective_topic_configs(&own, &broker.topic_defaults());
    incremental_changes(configs, |name| {
        let def = weir_meta::configs::topic_config_def(name)?;
        let current = effective.iter().find(|e| e.def.name == name)?;
        Some((*def, current.value.clone()))
    })
}

/// [`incremental_changes`] for a broker's dynamic configs (or the cluster default's): APPEND
/// and SUBTRACT start from the value that resource has now.
fn broker_changes(
    broker: &Broker,
    name: &str,
    configs: &AlterableConfigs,
) -> Result<Vec<(String, Option<String>)>, MetaError> {
    let resource = broker_resource(name)?;
    let set = broker.image().configs(&resource);
    // As Kafka's controller: the resource's own value, else the config's default.
    incremental_changes(configs, |config| {
        let def = dynamic_broker_config(config)?;
        let current = set.get(config).cloned();
        Some((def, current.unwrap_or_else(|| def.default.to_string())))
    })
}

/// Turns SET/DELETE/APPEND/SUBTRACT operations into plain set-or-remove changes; `lookup`
/// gives a config's definition and current value.
fn incremental_changes(
    configs: &AlterableConfigs,
    lookup: impl Fn(&str) -> Option<(weir_meta::configs::ConfigDef, String)>,
) -> Result<Vec<(String, Option<String>)>, MetaError> {
    let mut changes = Vec::with_capacity(configs.len());
    for c in configs {
        let name = c.name.to_string();
        let value = c.value.as_ref().map(|v| v.to_string());
        let change = match c.config_operation {
            OP_SET => match value {
                Some(v) => Some(v),
                None => {
                    return Err(MetaError::InvalidConfig(format!(
                        "SET of '{name}' needs a value"
                    )))
                }
            },
            OP_DELETE => None,
            OP_APPEND | OP_SUBTRACT => {
                let (def, current) = lookup(&name)
                    .ok_or_else(|| MetaError::InvalidConfig(format!("unknown config '{name}'")))?;
                if def.kind != weir_meta::configs::ConfigType::List {
                    return Err(MetaError::InvalidConfig(format!(
                        "'{name}' is not a list; APPEND and SUBTRACT need one"
                    )));
                }
                let mut items: Vec<String> = current
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                let given: Vec<String> = value
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                if c.config_operation == OP_APPEND {
                    for g in given {
                        if !items.contains(&g) {
                            items.push(g);
                        }
                    }
                } else {
                    items.retain(|i| !given.contains(i));
                }
                Some(items.join(","))
            }
            other => {
                return Err(MetaError::InvalidRequest(format!(
                    "unknown config operation {other}"
                )))
            }
        };
        changes.push((name, change));
    }
    Ok(changes)
}

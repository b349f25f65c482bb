//! AlterConfigs (replace every topic config) and IncrementalAlterConfigs (SET, DELETE, APPEND,
//! SUBTRACT per config, KIP-339). Broker configs are static in Weir and refused with a message.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use weir_meta::configs::effective_topic_configs;
use weir_meta::{ConfigResource, ControllerOp, MetaError};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::str_bytes;
use crate::broker::Broker;
use crate::errors::meta_error_code;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

fn check_resource(resource_type: i8) -> Result<(), (i16, String)> {
    match resource_type {
        RESOURCE_TOPIC => Ok(()),
        RESOURCE_BROKER => Err((
            ResponseError::InvalidRequest.code(),
            "broker configs are static in Weir: set them with flags, WEIR_* variables or the config file".into(),
        )),
        other => Err((ResponseError::InvalidRequest.code(), format!("resource type {other} is not supported"))),
    }
}

fn outcome<T>(result: Result<T, MetaError>) -> (i16, Option<StrBytes>) {
    match result {
        Ok(_) => (0, None),
        Err(e) => (meta_error_code(&e), Some(str_bytes(e.to_string()))),
    }
}

/// Sets or removes topic configs through the controller.
async fn alter(
    broker: &Broker,
    name: String,
    changes: Vec<(String, Option<String>)>,
    replace_all: bool,
    validate_only: bool,
) -> (i16, Option<StrBytes>) {
    let op = ControllerOp::AlterTopicConfigs {
        name,
        changes,
        replace_all,
        validate_only,
    };
    outcome(broker.controller_op(op).await)
}

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let validate_only = request.validate_only;
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let response = {
            let (code, message) = match check_resource(resource.resource_type) {
                Err((code, message)) => (code, Some(str_bytes(message))),
                Ok(()) => {
                    let name = resource.resource_name.to_string();
                    let changes: Vec<(String, Option<String>)> = resource
                        .configs
                        .iter()
                        .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                        .collect();
                    alter(broker, name, changes, true, validate_only).await
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
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let validate_only = request.validate_only;
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let response = {
            let (code, message) = match check_resource(resource.resource_type) {
                Err((code, message)) => (code, Some(str_bytes(message))),
                Ok(()) => {
                    let name = resource.resource_name.to_string();
                    match incremental_changes(broker, &name, &resource.configs) {
                        Ok(changes) => alter(broker, name, changes, false, validate_only).await,
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

/// Turns SET/DELETE/APPEND/SUBTRACT operations into plain set-or-remove changes.
fn incremental_changes(
    broker: &Broker,
    topic: &str,
    configs: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
) -> Result<Vec<(String, Option<String>)>, MetaError> {
    let image = broker.image();
    if image.topic(topic).is_none() {
        return Err(MetaError::UnknownTopic(topic.to_string()));
    }
    let own = image.configs(&ConfigResource::Topic(topic.to_string()));
    let effective = effective_topic_configs(&own, broker.topic_defaults());
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
                let def = weir_meta::configs::topic_config_def(&name).ok_or_else(|| {
                    MetaError::InvalidConfig(format!("unknown topic config '{name}'"))
                })?;
                if def.kind != weir_meta::configs::ConfigType::List {
                    return Err(MetaError::InvalidConfig(format!(
                        "'{name}' is not a list; APPEND and SUBTRACT need one"
                    )));
                }
                let current = effective
                    .iter()
                    .find(|e| e.def.name == name)
                    .map(|e| e.value.clone())
                    .unwrap_or_default();
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

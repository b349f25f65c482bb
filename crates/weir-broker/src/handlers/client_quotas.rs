//! DescribeClientQuotas and AlterClientQuotas (KIP-546): the quotas set on users, client ids
//! and users' client ids, as `kafka-configs.sh --entity-type users|clients` reads and writes
//! them. Describing needs DescribeConfigs on the cluster, altering AlterConfigs. Enforcement is
//! `crate::quota`.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{
    alter_client_quotas_response, AlterClientQuotasRequest, AlterClientQuotasResponse,
    DescribeClientQuotasRequest, DescribeClientQuotasResponse,
};
use weir_meta::acl::AclOperation;
use weir_meta::quotas::{check_value, EntityName, QuotaEntity, CLIENT_ID, USER};
use weir_meta::ControllerOp;

use super::str_bytes;
use crate::broker::Broker;
use crate::errors::meta_error_code;
use crate::security::authorizer::Access;

/// How a component of a describe filter matches (`match_type`).
#[derive(Debug, Clone, PartialEq)]
enum Match {
    /// The entity has this type with exactly this name.
    Exact(String),
    /// The entity has this type at its default.
    Default,
    /// The entity has this type, with any name or the default.
    Any,
}

/// A describe filter: each entity type asked about, and whether the entity may have others.
#[derive(Debug)]
struct Filter {
    user: Option<Match>,
    client_id: Option<Match>,
    strict: bool,
}

impl Filter {
    fn from_request(request: &DescribeClientQuotasRequest) -> Result<Filter, String> {
        let mut filter = Filter {
            user: None,
            client_id: None,
            strict: request.strict,
        };
        for c in &request.components {
            let slot = match c.entity_type.as_str() {
                USER => &mut filter.user,
                CLIENT_ID => &mut filter.client_id,
                "ip" => return Err("ip quotas are not supported".into()),
                other => return Err(format!("unknown entity type '{other}'")),
            };
            if slot.is_some() {
                return Err(format!(
                    "the entity type '{}' appears twice",
                    c.entity_type.as_str()
                ));
            }
            *slot = Some(match (c.match_type, &c._match) {
                (0, Some(name)) => Match::Exact(name.to_string()),
                (0, None) => return Err("an exact match needs a name".into()),
                (1, None) => Match::Default,
                (2, None) => Match::Any,
                (1 | 2, Some(_)) => return Err("a default or any match takes no name".into()),
                (other, _) => return Err(format!("unknown match type {other}")),
            });
        }
        Ok(filter)
    }

    fn matches(&self, entity: &QuotaEntity) -> bool {
        let one = |want: &Option<Match>, have: &Option<EntityName>| match (want, have) {
            (None, None) => true,
            (None, Some(_)) => !self.strict,
            (Some(_), None) => false,
            (Some(Match::Any), Some(_)) => true,
            (Some(Match::Default), Some(n)) => *n == EntityName::Default,
            (Some(Match::Exact(w)), Some(n)) => *n == EntityName::Name(w.clone()),
        };
        one(&self.user, &entity.user) && one(&self.client_id, &entity.client_id)
    }
}

pub(crate) fn describe(
    broker: &Arc<Broker>,
    access: &Access,
    request: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    let refused = |code: ResponseError, message: String| {
        DescribeClientQuotasResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(str_bytes(message)))
            .with_entries(None)
    };
    if !access.cluster(AclOperation::DescribeConfigs) {
        return refused(
            ResponseError::ClusterAuthorizationFailed,
            "DescribeConfigs on the cluster is not allowed".into(),
        );
    }
    let filter = match Filter::from_request(&request) {
        Ok(f) => f,
        Err(why) => return refused(ResponseError::InvalidRequest, why),
    };
    let image = broker.image();
    let entries = image
        .quotas
        .iter()
        .filter(|(entity, _)| filter.matches(entity))
        .map(|(entity, values)| {
            EntryData::default()
                .with_entity(
                    entity
                        .components()
                        .into_iter()
                        .map(|(kind, name)| {
                            EntityData::default()
                                .with_entity_type(str_bytes(kind))
                                .with_entity_name(name.map(str_bytes))
                        })
                        .collect(),
                )
                .with_values(
                    values
                        .iter()
                        .map(|(k, v)| ValueData::default().with_key(str_bytes(k)).with_value(*v))
                        .collect(),
                )
        })
        .collect();
    DescribeClientQuotasResponse::default().with_entries(Some(entries))
}

pub(crate) async fn alter(
    broker: &Arc<Broker>,
    access: &Access,
    request: AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    let allowed = access.cluster(AclOperation::AlterConfigs);
    let mut results = Vec::new();
    let mut valid = Vec::new();
    for entry in &request.entries {
        let result = alter_client_quotas_response::EntryData::default().with_entity(
            entry
                .entity
                .iter()
                .map(|e| {
                    alter_client_quotas_response::EntityData::default()
                        .with_entity_type(e.entity_type.clone())
                        .with_entity_name(e.entity_name.clone())
                })
                .collect(),
        );
        let checked = if allowed {
            check_entry(entry).map_err(|why| (ResponseError::InvalidRequest, why))
        } else {
            Err((
                ResponseError::ClusterAuthorizationFailed,
                "AlterConfigs on the cluster is not allowed".to_string(),
            ))
        };
        match checked {
            Ok(change) => {
                valid.push((results.len(), change));
                results.push(result);
            }
            Err((code, why)) => results.push(
                result
                    .with_error_code(code.code())
                    .with_error_message(Some(str_bytes(why))),
            ),
        }
    }
    if !valid.is_empty() && !request.validate_only {
        let entries = valid.iter().map(|(_, change)| change.clone()).collect();
        if let Err(e) = broker
            .controller_op(ControllerOp::AlterClientQuotas { entries })
            .await
        {
            for (i, _) in &valid {
                results[*i].error_code = meta_error_code(&e);
                results[*i].error_message = Some(str_bytes(e.to_string()));
            }
        }
    }
    AlterClientQuotasResponse::default().with_entries(results)
}

use weir_meta::quotas::QuotaChange as Change;

fn check_entry(
    entry: &kafka_protocol::messages::alter_client_quotas_request::EntryData,
) -> Result<Change, String> {
    let entity = QuotaEntity::from_components(
        entry
            .entity
            .iter()
            .map(|e| (e.entity_type.as_str(), e.entity_name.as_deref())),
    )?;
    let mut ops = Vec::new();
    for op in &entry.ops {
        let key = op.key.to_string();
        if ops.iter().any(|(k, _)| *k == key) {
            return Err(format!("the key '{key}' appears twice"));
        }
        if op.remove {
            if !weir_meta::quotas::QUOTA_KEYS.contains(&key.as_str()) {
                return Err(format!("unknown or unsupported quota key '{key}'"));
            }
            ops.push((key, None));
        } else {
            check_value(&key, op.value)?;
            ops.push((key, Some(op.value)));
        }
    }
    Ok((entity, ops))
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::describe_client_quotas_request::ComponentData;

    use super::*;

    fn entity(user: Option<EntityName>, client_id: Option<EntityName>) -> QuotaEntity {
        QuotaEntity { user, client_id }
    }

    #[test]
    fn filters_match_as_kafka_describes_them() {
        let component = |kind: &str, match_type: i8, name: Option<&str>| {
            ComponentData::default()
                .with_entity_type(str_bytes(kind))
                .with_match_type(match_type)
                .with_match(name.map(str_bytes))
        };
        let alice = || Some(EntityName::Name("alice".into()));
        let app = || Some(EntityName::Name("app".into()));
        let request = |components, strict| {
            DescribeClientQuotasRequest::default()
                .with_components(components)
                .with_strict(strict)
        };
        let f =
            Filter::from_request(&request(vec![component(USER, 0, Some("alice"))], false)).unwrap();
        assert!(f.matches(&entity(alice(), None)));
        assert!(
            f.matches(&entity(alice(), app())),
            "not strict: other types may be there"
        );
        assert!(!f.matches(&entity(Some(EntityName::Default), None)));
        assert!(!f.matches(&entity(None, app())));
        let f = Filter::from_request(&request(vec![component(USER, 2, None)], true)).unwrap();
        assert!(f.matches(&entity(Some(EntityName::Default), None)));
        assert!(
            !f.matches(&entity(alice(), app())),
            "strict: no other types"
        );
        let f = Filter::from_request(&request(vec![component(CLIENT_ID, 1, None)], false)).unwrap();
        assert!(f.matches(&entity(None, Some(EntityName::Default))));
        assert!(!f.matches(&entity(None, app())));
        assert!(Filter::from_request(&request(vec![component("ip", 2, None)], false)).is_err());
        assert!(Filter::from_request(&request(vec![component(USER, 0, None)], false)).is_err());
        assert!(
            Filter::from_request(&request(vec![component(USER, 1, Some("a"))], false)).is_err()
        );
        assert!(Filter::from_request(&request(
            vec![component(USER, 2, None), component(USER, 1, None)],
            false
        ))
        .is_err());
    }
}

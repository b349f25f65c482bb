//! The admin client's client quotas: DescribeClientQuotas and AlterClientQuotas (KIP-546), the
//! calls behind `kafka-configs.sh --entity-type users|clients` with quota keys
//! (`producer_byte_rate`, `consumer_byte_rate`, `request_percentage`).

use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::{AlterClientQuotasRequest, DescribeClientQuotasRequest};
use kafka_protocol::protocol::StrBytes;

use crate::admin::Admin;
use crate::error::{Error, Result};

/// One part of a quota entity: its type (`user` or `client-id`) and its name, `None` for the
/// default of that type.
pub type EntityPart = (String, Option<String>);

/// The quotas set on one entity.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientQuota {
    /// The entity the quotas are set on.
    pub entity: Vec<EntityPart>,
    /// Each key with its value.
    pub values: Vec<(String, f64)>,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

impl Admin {
    /// The quotas whose entity has exactly the parts of `entity` (as kafka-configs.sh's
    /// `--describe` with an entity asks).
    pub async fn describe_client_quotas(&self, entity: &[EntityPart]) -> Result<Vec<ClientQuota>> {
        let request = DescribeClientQuotasRequest::default()
            .with_components(
                entity
                    .iter()
                    .map(|(kind, name)| {
                        ComponentData::default()
                            .with_entity_type(s(kind))
                            .with_match_type(if name.is_some() { 0 } else { 1 })
                            .with_match(name.as_deref().map(s))
                    })
                    .collect(),
            )
            .with_strict(true);
        let (response, _) = self.cluster().any().await?.request(&request, 1).await?;
        if response.error_code != 0 {
            return Err(Error::from_code(
                response.error_code,
                response.error_message.as_ref().map(|m| m.to_string()),
            ));
        }
        Ok(response
            .entries
            .unwrap_or_default()
            .into_iter()
            .map(|e| ClientQuota {
                entity: e
                    .entity
                    .iter()
                    .map(|p| {
                        (
                            p.entity_type.to_string(),
                            p.entity_name.as_ref().map(|n| n.to_string()),
                        )
                    })
                    .collect(),
                values: e
                    .values
                    .iter()
                    .map(|v| (v.key.to_string(), v.value))
                    .collect(),
            })
            .collect())
    }

    /// Sets (`Some`) or removes (`None`) quotas of one entity.
    pub async fn alter_client_quotas(
        &self,
        entity: &[EntityPart],
        ops: &[(String, Option<f64>)],
    ) -> Result<()> {
        let request = AlterClientQuotasRequest::default().with_entries(vec![EntryData::default()
            .with_entity(
                entity
                    .iter()
                    .map(|(kind, name)| {
                        EntityData::default()
                            .with_entity_type(s(kind))
                            .with_entity_name(name.as_deref().map(s))
                    })
                    .collect(),
            )
            .with_ops(
                ops.iter()
                    .map(|(key, value)| {
                        OpData::default()
                            .with_key(s(key))
                            .with_value(value.unwrap_or(0.0))
                            .with_remove(value.is_none())
                    })
                    .collect(),
            )]);
        let (response, _) = self.controller().await?.request(&request, 1).await?;
        for e in &response.entries {
            if e.error_code != 0 {
                return Err(Error::from_code(
                    e.error_code,
                    e.error_message.as_ref().map(|m| m.to_string()),
                ));
            }
        }
        Ok(())
    }
}

//! Client quotas (KIP-546's DescribeClientQuotas and AlterClientQuotas): which entity a quota
//! is set on, which keys exist, and which setting applies to a connection, with Kafka's order
//! of precedence.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::records::MetadataRecord;

/// Bytes a second a producer may write (`producer_byte_rate`).
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
/// Bytes a second a consumer may read (`consumer_byte_rate`).
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
/// Percent of one request thread's time a client may use in each second
/// (`request_percentage`).
pub const REQUEST_PERCENTAGE: &str = "request_percentage";

/// The keys Weir enforces. Kafka's `controller_mutation_rate` and `connection_creation_rate`
/// are refused rather than stored and ignored.
pub const QUOTA_KEYS: &[&str] = &[PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE, REQUEST_PERCENTAGE];

/// Every quota, by the entity it is set on, then key.
pub type Quotas = BTreeMap<QuotaEntity, BTreeMap<String, f64>>;

/// Quotas of one entity to set (`Some`) or remove (`None`), by key.
pub type QuotaChange = (QuotaEntity, Vec<(String, Option<f64>)>);

/// One component of an entity: a name, or the default for every name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EntityName {
    Default,
    Name(String),
}

impl EntityName {
    /// The wire form: `None` for the default.
    pub fn to_wire(&self) -> Option<&str> {
        match self {
            EntityName::Default => None,
            EntityName::Name(n) => Some(n),
        }
    }

    pub fn from_wire(name: Option<&str>) -> EntityName {
        match name {
            None => EntityName::Default,
            Some(n) => EntityName::Name(n.to_string()),
        }
    }
}

/// What a quota is set on: a user, a client id, or a user's client id; each a name or the
/// default.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QuotaEntity {
    pub user: Option<EntityName>,
    pub client_id: Option<EntityName>,
}

/// The entity types of the wire, as Kafka spells them.
pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";

impl QuotaEntity {
    /// The entity from its wire components (`entity_type`, `entity_name`). `Err` says what is
    /// wrong: an unknown or repeated type, or none at all.
    pub fn from_components<'a>(
        components: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<QuotaEntity, String> {
        let mut entity = QuotaEntity {
            user: None,
            client_id: None,
        };
        for (kind, name) in components {
            let slot = match kind {
                USER => &mut entity.user,
                CLIENT_ID => &mut entity.client_id,
                "ip" => return Err("ip quotas are not supported".into()),
                other => return Err(format!("unknown entity type '{other}'")),
            };
            if slot.is_some() {
                return Err(format!("the entity type '{kind}' appears twice"));
            }
            *slot = Some(EntityName::from_wire(name));
        }
        if entity.user.is_none() && entity.client_id.is_none() {
            return Err("the entity is empty".into());
        }
        Ok(entity)
    }

    /// The wire components, user first.
    pub fn components(&self) -> Vec<(&'static str, Option<&str>)> {
        let mut out = Vec::new();
        if let Some(u) = &self.user {
            out.push((USER, u.to_wire()));
        }
        if let Some(c) = &self.client_id {
            out.push((CLIENT_ID, c.to_wire()));
        }
        out
    }
}

/// Checks one quota operation: a known key, and a value that is a rate Weir can enforce.
pub fn check_value(key: &str, value: f64) -> Result<(), String> {
    if !QUOTA_KEYS.contains(&key) {
        return Err(format!(
            "unknown or unsupported quota key '{key}' (supported: {})",
            QUOTA_KEYS.join(", ")
        ));
    }
    if !value.is_finite() || value <= 0.0 {
        return Err(format!("{key} must be a positive number, not {value}"));
    }
    if key != REQUEST_PERCENTAGE && value.fract() != 0.0 {
        return Err(format!(
            "{key} must be a whole number of bytes, not {value}"
        ));
    }
    Ok(())
}

/// The records that apply `ops` (`(key, Some(value))` sets, `(key, None)` removes) to
/// `entity`; a removal of a quota that is not set writes nothing.
pub fn plan_alter(
    quotas: &Quotas,
    entity: &QuotaEntity,
    ops: &[(String, Option<f64>)],
) -> Vec<MetadataRecord> {
    let current = quotas.get(entity);
    ops.iter()
        .filter(|(key, value)| value.is_some() || current.is_some_and(|c| c.contains_key(key)))
        .map(|(key, value)| MetadataRecord::ClientQuota {
            entity: entity.clone(),
            key: key.clone(),
            value: *value,
        })
        .collect()
}

/// The quota `key` that applies to `user` connecting as `client_id`, with the entity it was
/// set on, in Kafka's order of precedence: the user's client id, the user's default client id,
/// the user, the default user's client id, the default user's default client id, the default
/// user, the client id, the default client id.
pub fn applicable<'q>(
    quotas: &'q Quotas,
    user: &str,
    client_id: &str,
    key: &str,
) -> Option<(&'q QuotaEntity, f64)> {
    if quotas.is_empty() {
        return None;
    }
    let named = |s: &str| Some(EntityName::Name(s.to_string()));
    let default = || Some(EntityName::Default);
    let order = [
        (named(user), named(client_id)),
        (named(user), default()),
        (named(user), None),
        (default(), named(client_id)),
        (default(), default()),
        (default(), None),
        (None, named(client_id)),
        (None, default()),
    ];
    order.into_iter().find_map(|(user, client_id)| {
        let (entity, values) = quotas.get_key_value(&QuotaEntity { user, client_id })?;
        values.get(key).map(|v| (entity, *v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(user: Option<Option<&str>>, client: Option<Option<&str>>) -> QuotaEntity {
        QuotaEntity {
            user: user.map(EntityName::from_wire),
            client_id: client.map(EntityName::from_wire),
        }
    }

    #[test]
    fn the_most_specific_setting_applies() {
        let mut quotas = BTreeMap::new();
        let mut set = |e: QuotaEntity, v: f64| {
            quotas
                .entry(e)
                .or_insert_with(BTreeMap::new)
                .insert(PRODUCER_BYTE_RATE.to_string(), v);
        };
        set(entity(None, Some(None)), 1.0);
        set(entity(None, Some(Some("app"))), 2.0);
        set(entity(Some(None), None), 3.0);
        set(entity(Some(Some("alice")), None), 4.0);
        set(entity(Some(Some("alice")), Some(Some("app"))), 5.0);
        let got = |u: &str, c: &str| applicable(&quotas, u, c, PRODUCER_BYTE_RATE).map(|x| x.1);
        assert_eq!(got("alice", "app"), Some(5.0));
        assert_eq!(got("alice", "other"), Some(4.0));
        assert_eq!(
            got("bob", "app"),
            Some(3.0),
            "the default user before client ids"
        );
        assert_eq!(applicable(&quotas, "bob", "app", CONSUMER_BYTE_RATE), None);
        quotas.remove(&entity(Some(None), None));
        let got = |u: &str, c: &str| applicable(&quotas, u, c, PRODUCER_BYTE_RATE).map(|x| x.1);
        assert_eq!(got("bob", "app"), Some(2.0));
        assert_eq!(got("bob", "x"), Some(1.0));
    }

    #[test]
    fn entities_and_values_are_checked() {
        assert!(QuotaEntity::from_components([("user", Some("a")), ("client-id", None)]).is_ok());
        assert!(QuotaEntity::from_components([("user", Some("a")), ("user", None)]).is_err());
        assert!(QuotaEntity::from_components([("ip", Some("1.2.3.4"))]).is_err());
        assert!(QuotaEntity::from_components([("group", Some("g"))]).is_err());
        assert!(QuotaEntity::from_components([]).is_err());
        assert!(check_value(PRODUCER_BYTE_RATE, 1024.0).is_ok());
        assert!(check_value(PRODUCER_BYTE_RATE, 10.5).is_err());
        assert!(check_value(REQUEST_PERCENTAGE, 12.5).is_ok());
        assert!(check_value(CONSUMER_BYTE_RATE, 0.0).is_err());
        assert!(check_value(CONSUMER_BYTE_RATE, f64::NAN).is_err());
        assert!(check_value("controller_mutation_rate", 5.0).is_err());
    }

    #[test]
    fn removing_what_is_not_set_writes_nothing() {
        let e = entity(Some(Some("a")), None);
        let mut quotas = BTreeMap::new();
        let ops = [
            (PRODUCER_BYTE_RATE.to_string(), None),
            (CONSUMER_BYTE_RATE.to_string(), Some(10.0)),
        ];
        assert_eq!(plan_alter(&quotas, &e, &ops).len(), 1);
        quotas.insert(
            e.clone(),
            BTreeMap::from([(PRODUCER_BYTE_RATE.to_string(), 5.0)]),
        );
        assert_eq!(plan_alter(&quotas, &e, &ops).len(), 2);
    }
}

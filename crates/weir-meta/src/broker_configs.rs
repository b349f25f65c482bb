//! Dynamic broker configs (`kafka-configs.sh --entity-type brokers`): set for one broker
//! (`--entity-name 1`) or as the cluster-wide default (`--entity-default`), held as metadata
//! records, and layered over the static config file as Kafka layers them: this broker's
//! dynamic value, then the cluster default, then the file, then Kafka's default.
//!
//! What may be set while running: the broker-level defaults of topic configs
//! (`log.retention.ms`, `log.segment.bytes`, `compression.type`, `min.insync.replicas`,
//! `unclean.leader.election.enable`, ...), which reach every partition without a restart, and
//! the SASL/GSSAPI settings Kafka lets operators change, which Weir records and describes but
//! which change nothing, as in a Kafka broker without GSSAPI enabled.

use std::collections::BTreeMap;

use weir_types::BrokerId;

use crate::configs::{validate_value, ConfigDef, ConfigSource, ConfigType, TOPIC_CONFIGS};
use crate::image::MetadataImage;
use crate::records::{ConfigResource, MetadataRecord};
use crate::{MetaError, Result};

const GSSAPI_ONLY: &str = "GSSAPI (Kerberos) setting: recorded and described, without effect, \
                           since Weir offers no GSSAPI";

const fn gssapi(name: &'static str, kind: ConfigType, default: &'static str) -> ConfigDef {
    ConfigDef {
        name,
        kind,
        default,
        allowed: &[],
        min: None,
        broker_synonym: None,
        doc: GSSAPI_ONLY,
    }
}

/// The SASL/GSSAPI settings Kafka lets operators change while running.
const GSSAPI_CONFIGS: &[ConfigDef] = &[
    gssapi(
        "sasl.kerberos.kinit.cmd",
        ConfigType::String,
        "/usr/bin/kinit",
    ),
    gssapi(
        "sasl.kerberos.min.time.before.relogin",
        ConfigType::Long,
        "60000",
    ),
    gssapi(
        "sasl.kerberos.ticket.renew.jitter",
        ConfigType::Double,
        "0.05",
    ),
    gssapi(
        "sasl.kerberos.ticket.renew.window.factor",
        ConfigType::Double,
        "0.8",
    ),
    gssapi("sasl.kerberos.service.name", ConfigType::String, ""),
    gssapi(
        "sasl.kerberos.principal.to.local.rules",
        ConfigType::List,
        "DEFAULT",
    ),
];

/// The definition of a broker config that may be set while running: a topic config's
/// broker-level default (checked as the topic config is), or a GSSAPI setting.
pub fn dynamic_broker_config(name: &str) -> Option<ConfigDef> {
    TOPIC_CONFIGS
        .iter()
        .find_map(|def| {
            let synonym = def.broker_synonym.filter(|s| *s == name)?;
            Some(ConfigDef {
                name: synonym,
                broker_synonym: None,
                ..*def
            })
        })
        .or_else(|| GSSAPI_CONFIGS.iter().find(|d| d.name == name).copied())
}

/// The config resource a broker resource name designates: `""` is the cluster-wide default,
/// a number one broker.
pub fn broker_resource(name: &str) -> Result<ConfigResource> {
    if name.is_empty() {
        return Ok(ConfigResource::ClusterDefault);
    }
    match name.parse::<i32>() {
        Ok(id) if id >= 0 => Ok(ConfigResource::Broker(BrokerId(id))),
        _ => Err(MetaError::InvalidRequest(format!(
            "'{name}' is not a broker id (or empty, for the cluster-wide default)"
        ))),
    }
}

/// The records that set (`Some`) or remove (`None`) dynamic configs of a broker, or of the
/// cluster default; with `replace_all` (legacy AlterConfigs) every dynamic config not named is
/// removed.
pub(crate) fn plan_alter(
    image: &MetadataImage,
    resource: &ConfigResource,
    changes: &[(String, Option<String>)],
    replace_all: bool,
) -> Result<Vec<MetadataRecord>> {
    if matches!(resource, ConfigResource::Topic(_)) {
        return Err(MetaError::InvalidRequest("not a broker resource".into()));
    }
    for (name, value) in changes {
        let def = dynamic_broker_config(name).ok_or_else(|| {
            MetaError::InvalidConfig(format!(
                "'{name}' cannot be changed while the broker runs (only the broker-level \
                 defaults of topic configs, such as log.retention.ms, can)"
            ))
        })?;
        if let Some(v) = value {
            validate_value(&def, v)?;
        }
    }
    let mut records: Vec<MetadataRecord> = changes
        .iter()
        .map(|(name, value)| MetadataRecord::Config {
            resource: resource.clone(),
            name: name.clone(),
            value: value.clone(),
        })
        .collect();
    if replace_all {
        for name in image.configs(resource).keys() {
            if !changes.iter().any(|(k, _)| k == name) {
                records.push(MetadataRecord::Config {
                    resource: resource.clone(),
                    name: name.clone(),
                    value: None,
                });
            }
        }
    }
    Ok(records)
}

/// The broker-level defaults of topic configs on one broker, highest first: its own dynamic
/// configs, the cluster-wide dynamic default, its static config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopicDefaults {
    layers: Vec<(ConfigSource, BTreeMap<String, String>)>,
}

impl TopicDefaults {
    /// Defaults from the static config alone.
    pub fn from_static(defaults: &BTreeMap<String, String>) -> TopicDefaults {
        TopicDefaults {
            layers: vec![(ConfigSource::StaticBroker, defaults.clone())],
        }
    }

    /// The defaults of broker `me` under `image`, over its static ones.
    pub fn of(
        image: &MetadataImage,
        me: BrokerId,
        static_defaults: &BTreeMap<String, String>,
    ) -> TopicDefaults {
        TopicDefaults {
            layers: vec![
                (
                    ConfigSource::DynamicBroker,
                    image.configs(&ConfigResource::Broker(me)),
                ),
                (
                    ConfigSource::DynamicDefaultBroker,
                    image.configs(&ConfigResource::ClusterDefault),
                ),
                (ConfigSource::StaticBroker, static_defaults.clone()),
            ],
        }
    }

    /// The value of broker config `name`, and where it comes from.
    pub fn get(&self, name: &str) -> Option<(&str, ConfigSource)> {
        self.layers
            .iter()
            .find_map(|(source, map)| map.get(name).map(|v| (v.as_str(), *source)))
    }

    /// Every value set at each level, highest first (DescribeConfigs' synonyms).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a str, ConfigSource)> {
        self.layers
            .iter()
            .filter_map(move |(source, map)| map.get(name).map(|v| (v.as_str(), *source)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dynamic_configs_with_valid_values_are_accepted() {
        let image = MetadataImage::default();
        let set = |name: &str, value: &str| {
            plan_alter(
                &image,
                &ConfigResource::ClusterDefault,
                &[(name.to_string(), Some(value.to_string()))],
                false,
            )
        };
        assert_eq!(set("log.retention.ms", "1000").map(|r| r.len()), Ok(1));
        assert!(set("log.retention.ms", "soon").is_err());
        assert!(set("sasl.kerberos.min.time.before.relogin", "58000").is_ok());
        assert!(set("log.dirs", "/tmp").is_err());
        assert!(set("retention.ms", "1000").is_err());
        assert_eq!(broker_resource(""), Ok(ConfigResource::ClusterDefault));
        assert_eq!(
            broker_resource("3"),
            Ok(ConfigResource::Broker(BrokerId(3)))
        );
        assert!(broker_resource("three").is_err());
    }

    #[test]
    fn a_broker_value_wins_over_the_cluster_default_over_the_file() {
        let mut image = MetadataImage::default();
        let file = BTreeMap::from([("log.retention.ms".to_string(), "1".to_string())]);
        let defaults = TopicDefaults::of(&image, BrokerId(1), &file);
        assert_eq!(
            defaults.get("log.retention.ms"),
            Some(("1", ConfigSource::StaticBroker))
        );
        for (resource, value) in [
            (ConfigResource::ClusterDefault, "2"),
            (ConfigResource::Broker(BrokerId(2)), "9"),
        ] {
            image.apply(&MetadataRecord::Config {
                resource,
                name: "log.retention.ms".into(),
                value: Some(value.into()),
            });
        }
        let defaults = TopicDefaults::of(&image, BrokerId(1), &file);
        assert_eq!(
            defaults.get("log.retention.ms"),
            Some(("2", ConfigSource::DynamicDefaultBroker))
        );
        image.apply(&MetadataRecord::Config {
            resource: ConfigResource::Broker(BrokerId(1)),
            name: "log.retention.ms".into(),
            value: Some("3".into()),
        });
        let defaults = TopicDefaults::of(&image, BrokerId(1), &file);
        assert_eq!(
            defaults.get("log.retention.ms"),
            Some(("3", ConfigSource::DynamicBroker))
        );
        assert_eq!(defaults.all("log.retention.ms").count(), 3);
    }
}

//! Topic-level configs: their Kafka names, types, defaults, checks and documentation.
//!
//! Every name here is accepted by CreateTopics, AlterConfigs and IncrementalAlterConfigs and is
//! listed by DescribeConfigs. A topic's effective value is its own setting, else the broker's
//! default (the broker config named in `broker_synonym`), else Kafka's default.

use std::collections::BTreeMap;

use crate::{MetaError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean,
    Int,
    Long,
    Double,
    String,
    List,
}

impl ConfigType {
    /// The code DescribeConfigs v3+ uses for the type (Kafka's `ConfigType` enum).
    pub fn describe_code(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    pub name: &'static str,
    pub kind: ConfigType,
    pub default: &'static str,
    /// Allowed values for enumerated strings and lists.
    pub allowed: &'static [&'static str],
    /// Smallest allowed numeric value.
    pub min: Option<i64>,
    /// The broker-level config that sets this topic config's default.
    pub broker_synonym: Option<&'static str>,
    pub doc: &'static str,
}

const fn def(
    name: &'static str,
    kind: ConfigType,
    default: &'static str,
    min: Option<i64>,
    broker_synonym: Option<&'static str>,
    doc: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        kind,
        default,
        allowed: &[],
        min,
        broker_synonym,
        doc,
    }
}

use ConfigType::*;

pub const MAX_LONG: &str = "9223372036854775807";

/// The topic configs Weir knows, with Kafka's defaults.
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: "cleanup.policy",
        kind: List,
        default: "delete",
        allowed: &["delete", "compact"],
        min: None,
        broker_synonym: Some("log.cleanup.policy"),
        doc: "delete: drop old segments by retention; compact: keep the latest value per key",
    },
    ConfigDef {
        name: "compression.type",
        kind: String,
        default: "producer",
        allowed: &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"],
        min: None,
        broker_synonym: Some("compression.type"),
        doc: "compression of stored batches; 'producer' keeps the producer's codec",
    },
    def(
        "delete.retention.ms",
        Long,
        "86400000",
        Some(0),
        Some("log.cleaner.delete.retention.ms"),
        "how long tombstones are kept in compacted topics",
    ),
    def(
        "file.delete.delay.ms",
        Long,
        "60000",
        Some(0),
        Some("log.segment.delete.delay.ms"),
        "delay before a deleted segment's files are removed",
    ),
    def(
        "flush.messages",
        Long,
        MAX_LONG,
        Some(1),
        Some("log.flush.interval.messages"),
        "fsync the log after this many records",
    ),
    def(
        "flush.ms",
        Long,
        MAX_LONG,
        Some(0),
        Some("log.flush.interval.ms"),
        "fsync the log when the last fsync is older than this",
    ),
    def(
        "index.interval.bytes",
        Int,
        "4096",
        Some(0),
        Some("log.index.interval.bytes"),
        "bytes of log between two offset-index entries",
    ),
    def(
        "max.compaction.lag.ms",
        Long,
        MAX_LONG,
        Some(1),
        Some("log.cleaner.max.compaction.lag.ms"),
        "longest time a record stays uncompacted",
    ),
    def(
        "max.message.bytes",
        Int,
        "1048588",
        Some(0),
        Some("message.max.bytes"),
        "largest record batch accepted",
    ),
    ConfigDef {
        name: "message.timestamp.type",
        kind: String,
        default: "CreateTime",
        allowed: &["CreateTime", "LogAppendTime"],
        min: None,
        broker_synonym: Some("log.message.timestamp.type"),
        doc: "CreateTime keeps the producer's timestamps; LogAppendTime stamps the broker's time",
    },
    def(
        "message.timestamp.before.max.ms",
        Long,
        MAX_LONG,
        Some(0),
        Some("log.message.timestamp.before.max.ms"),
        "how far in the past a record's timestamp may be",
    ),
    def(
        "message.timestamp.after.max.ms",
        Long,
        MAX_LONG,
        Some(0),
        Some("log.message.timestamp.after.max.ms"),
        "how far in the future a record's timestamp may be",
    ),
    def(
        "min.cleanable.dirty.ratio",
        Double,
        "0.5",
        None,
        Some("log.cleaner.min.cleanable.ratio"),
        "dirty share of the log that triggers compaction",
    ),
    def(
        "min.compaction.lag.ms",
        Long,
        "0",
        Some(0),
        Some("log.cleaner.min.compaction.lag.ms"),
        "shortest time a record stays uncompacted",
    ),
    def(
        "min.insync.replicas",
        Int,
        "1",
        Some(1),
        Some("min.insync.replicas"),
        "fewest in-sync replicas that must acknowledge an acks=all write",
    ),
    def(
        "preallocate",
        Boolean,
        "false",
        None,
        Some("log.preallocate"),
        "preallocate segment files",
    ),
    def(
        "retention.bytes",
        Long,
        "-1",
        Some(-1),
        Some("log.retention.bytes"),
        "largest size of a partition's log before old segments are deleted; -1 for none",
    ),
    def(
        "retention.ms",
        Long,
        "604800000",
        Some(-1),
        Some("log.retention.ms"),
        "age after which closed segments are deleted; -1 for never",
    ),
    def(
        "segment.bytes",
        Int,
        "1073741824",
        Some(14),
        Some("log.segment.bytes"),
        "size at which a segment is rolled",
    ),
    def(
        "segment.index.bytes",
        Int,
        "10485760",
        Some(4),
        Some("log.index.size.max.bytes"),
        "largest size of an offset index",
    ),
    def(
        "segment.jitter.ms",
        Long,
        "0",
        Some(0),
        Some("log.roll.jitter.ms"),
        "random jitter subtracted from segment.ms",
    ),
    def(
        "segment.ms",
        Long,
        "604800000",
        Some(1),
        Some("log.roll.ms"),
        "age at which a segment is rolled",
    ),
    def(
        "unclean.leader.election.enable",
        Boolean,
        "false",
        None,
        Some("unclean.leader.election.enable"),
        "allow leaders from outside the ISR, at the risk of losing data",
    ),
    def(
        "write.caching",
        Boolean,
        "false",
        None,
        Some("log.write.caching"),
        "true: acknowledge acks=all once every in-sync replica holds the records in memory; \
         false: once every in-sync replica fsynced them (survives power loss of every broker)",
    ),
];

pub fn topic_config_def(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks a value against its definition; the error names the config and says why.
pub fn validate_value(def: &ConfigDef, value: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(MetaError::InvalidConfig(format!(
            "invalid value '{value}' for {}: {why}",
            def.name
        )))
    };
    match def.kind {
        Boolean => {
            if !matches!(value.to_ascii_lowercase().as_str(), "true" | "false") {
                return bad("expected true or false");
            }
        }
        Int | Long => {
            let parsed: i64 = match value.trim().parse() {
                Ok(v) => v,
                Err(_) => return bad("expected a whole number"),
            };
            if def.kind == Int && i32::try_from(parsed).is_err() {
                return bad("out of range for a 32-bit number");
            }
            if let Some(min) = def.min {
                if parsed < min {
                    return bad(&format!("must be at least {min}"));
                }
            }
        }
        Double => {
            if value.trim().parse::<f64>().is_err() {
                return bad("expected a number");
            }
        }
        String => {
            if !def.allowed.is_empty() && !def.allowed.contains(&value) {
                return bad(&format!("expected one of {}", def.allowed.join(", ")));
            }
        }
        List => {
            for item in value.split(',').map(str::trim) {
                if !def.allowed.is_empty() && !def.allowed.contains(&item) {
                    return bad(&format!("expected a list of {}", def.allowed.join(", ")));
                }
            }
        }
    }
    Ok(())
}

/// Validates a set of topic configs by name and value.
pub fn validate_topic_configs<'a>(
    configs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<()> {
    for (name, value) in configs {
        let def = topic_config_def(name)
            .ok_or_else(|| MetaError::InvalidConfig(format!("unknown topic config '{name}'")))?;
        validate_value(def, value)?;
    }
    Ok(())
}

/// Where a topic config's effective value comes from (DescribeConfigs' `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic: DYNAMIC_TOPIC_CONFIG (1).
    Topic,
    /// Set on this broker while running: DYNAMIC_BROKER_CONFIG (2).
    DynamicBroker,
    /// Set as the cluster-wide default while running: DYNAMIC_DEFAULT_BROKER_CONFIG (3).
    DynamicDefaultBroker,
    /// Set in the broker's static config: STATIC_BROKER_CONFIG (4).
    StaticBroker,
    /// Kafka's default: DEFAULT_CONFIG (5).
    Default,
}

impl ConfigSource {
    pub fn code(self) -> i8 {
        match self {
            ConfigSource::Topic => 1,
            ConfigSource::DynamicBroker => 2,
            ConfigSource::DynamicDefaultBroker => 3,
            ConfigSource::StaticBroker => 4,
            ConfigSource::Default => 5,
        }
    }
}

/// One effective config value with its source.
#[derive(Debug, Clone)]
pub struct EffectiveConfig {
    pub def: &'static ConfigDef,
    pub value: std::string::String,
    pub source: ConfigSource,
}

/// The effective configs of a topic: its own settings over the broker's defaults (dynamic,
/// then static) over Kafka's.
pub fn effective_topic_configs(
    topic: &BTreeMap<std::string::String, std::string::String>,
    broker_defaults: &crate::broker_configs::TopicDefaults,
) -> Vec<EffectiveConfig> {
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            if let Some(v) = topic.get(def.name) {
                EffectiveConfig {
                    def,
                    value: v.clone(),
                    source: ConfigSource::Topic,
                }
            } else if let Some((v, source)) =
                def.broker_synonym.and_then(|b| broker_defaults.get(b))
            {
                EffectiveConfig {
                    def,
                    value: v.to_string(),
                    source,
                }
            } else {
                EffectiveConfig {
                    def,
                    value: def.default.to_string(),
                    source: ConfigSource::Default,
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked() {
        assert!(validate_topic_configs([("retention.ms", "1000")]).is_ok());
        assert!(validate_topic_configs([("retention.ms", "-1")]).is_ok());
        assert!(validate_topic_configs([("retention.ms", "abc")]).is_err());
        assert!(validate_topic_configs([("segment.bytes", "99999999999")]).is_err());
        assert!(validate_topic_configs([("cleanup.policy", "compact,delete")]).is_ok());
        assert!(validate_topic_configs([("cleanup.policy", "shred")]).is_err());
        assert!(validate_topic_configs([("message.timestamp.type", "LogAppendTime")]).is_ok());
        assert!(validate_topic_configs([("no.such.config", "1")]).is_err());
    }

    #[test]
    fn effective_values_prefer_topic_then_broker_then_default() {
        let topic = BTreeMap::from([("retention.ms".to_string(), "5".to_string())]);
        let broker = BTreeMap::from([("log.segment.bytes".to_string(), "1000".to_string())]);
        let eff = effective_topic_configs(
            &topic,
            &crate::broker_configs::TopicDefaults::from_static(&broker),
        );
        let get = |n: &str| eff.iter().find(|e| e.def.name == n).unwrap().clone();
        assert_eq!(get("retention.ms").value, "5");
        assert_eq!(get("retention.ms").source, ConfigSource::Topic);
        assert_eq!(get("segment.bytes").value, "1000");
        assert_eq!(get("segment.bytes").source, ConfigSource::StaticBroker);
        assert_eq!(get("cleanup.policy").value, "delete");
        assert_eq!(get("cleanup.policy").source, ConfigSource::Default);
    }
}

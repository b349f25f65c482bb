//! Feature flags (KIP-584): the features Weir supports, the levels they may be finalized at,
//! and the checks of UpdateFeatures.

use std::collections::BTreeMap;

use crate::records::MetadataRecord;

/// `group.version`: 1 serves the consumer group protocol (KIP-848), 0 refuses it.
pub const GROUP_VERSION: &str = "group.version";

/// A feature this broker supports: its name, the levels it supports, and its level until an
/// UpdateFeatures finalizes another.
#[derive(Debug, Clone, Copy)]
pub struct Feature {
    pub name: &'static str,
    pub min: i16,
    pub max: i16,
    pub default: i16,
}

pub const SUPPORTED: &[Feature] = &[Feature {
    name: GROUP_VERSION,
    min: 0,
    max: 1,
    default: 1,
}];

/// The level `name` is at in an image's finalized `levels`.
pub fn level(levels: &BTreeMap<String, i16>, name: &str) -> i16 {
    levels
        .get(name)
        .copied()
        .or_else(|| SUPPORTED.iter().find(|f| f.name == name).map(|f| f.default))
        .unwrap_or(0)
}

/// How UpdateFeatures may move a level (v1's `upgrade_type`; v0's `allow_downgrade` is
/// `SafeDowngrade` when set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum UpgradeType {
    Upgrade,
    SafeDowngrade,
    UnsafeDowngrade,
}

impl UpgradeType {
    pub fn from_wire(code: i8) -> Option<UpgradeType> {
        match code {
            1 => Some(UpgradeType::Upgrade),
            2 => Some(UpgradeType::SafeDowngrade),
            3 => Some(UpgradeType::UnsafeDowngrade),
            _ => None,
        }
    }
}

/// Checks one update of `name` to `to` against the current `levels`; the record to write, or
/// why it is refused (Kafka's INVALID_UPDATE_VERSION).
pub fn check_update(
    levels: &BTreeMap<String, i16>,
    name: &str,
    to: i16,
    how: UpgradeType,
) -> Result<MetadataRecord, String> {
    let Some(feature) = SUPPORTED.iter().find(|f| f.name == name) else {
        return Err(format!("the feature '{name}' is not supported"));
    };
    if to < 0 {
        return Err(format!("{name}: a level cannot be negative ({to})"));
    }
    if to < feature.min || to > feature.max {
        return Err(format!(
            "{name} can be finalized at levels {} to {}, not {to}",
            feature.min, feature.max
        ));
    }
    let now = level(levels, name);
    if to < now && how == UpgradeType::Upgrade {
        return Err(format!(
            "{name} is at level {now}: going down to {to} is a downgrade and must be asked for as one"
        ));
    }
    if to > now && how != UpgradeType::Upgrade {
        return Err(format!(
            "{name} is at level {now}: going up to {to} is an upgrade, not a downgrade"
        ));
    }
    Ok(MetadataRecord::FeatureLevel {
        name: name.to_string(),
        level: to,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_default_until_finalized_and_moves_are_checked() {
        let mut levels = BTreeMap::new();
        assert_eq!(level(&levels, GROUP_VERSION), 1);
        assert_eq!(level(&levels, "metadata.version"), 0);
        assert!(check_update(&levels, GROUP_VERSION, 0, UpgradeType::Upgrade).is_err());
        assert!(check_update(&levels, GROUP_VERSION, 0, UpgradeType::SafeDowngrade).is_ok());
        assert!(check_update(&levels, GROUP_VERSION, 2, UpgradeType::Upgrade).is_err());
        assert!(check_update(&levels, "no.such.feature", 1, UpgradeType::Upgrade).is_err());
        assert!(check_update(&levels, GROUP_VERSION, -1, UpgradeType::UnsafeDowngrade).is_err());
        levels.insert(GROUP_VERSION.to_string(), 0);
        assert_eq!(level(&levels, GROUP_VERSION), 0);
        assert!(check_update(&levels, GROUP_VERSION, 1, UpgradeType::SafeDowngrade).is_err());
        assert_eq!(
            check_update(&levels, GROUP_VERSION, 1, UpgradeType::Upgrade),
            Ok(MetadataRecord::FeatureLevel {
                name: GROUP_VERSION.into(),
                level: 1
            })
        );
    }
}

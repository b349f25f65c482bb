//! Access control lists as metadata (KRaft's `AccessControlEntryRecord`), and the matching rules
//! of Kafka's `StandardAuthorizer`: which ACLs bear on an action, and what they decide.
//!
//! An ACL names a resource pattern (a type, a name, literal or prefixed), a principal
//! (`User:alice`, or `User:*` for everyone), a host (`*` for any), an operation and a
//! permission. For one action, the ACLs whose pattern covers the resource are consulted: a
//! matching deny wins, then a matching allow; a resource with no ACLs at all is left to the
//! caller's default (`allow.everyone.if.no.acl.found`). Allowing Read, Write, Delete or Alter
//! also allows Describe, and allowing AlterConfigs allows DescribeConfigs; a deny implies
//! nothing beyond itself.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::image::MetadataImage;
use crate::records::MetadataRecord;

/// The name of a literal pattern that matches every resource of its type.
pub const WILDCARD: &str = "*";
/// The principal that matches every principal.
pub const WILDCARD_PRINCIPAL: &str = "User:*";
/// The one cluster resource's name.
pub const CLUSTER_NAME: &str = "kafka-cluster";

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $id:literal, $text:literal;)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($variant,)*
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// Kafka's wire id.
            pub fn id(self) -> i8 {
                match self {
                    $($name::$variant => $id,)*
                }
            }

            pub fn from_id(id: i8) -> Option<$name> {
                match id {
                    $($id => Some($name::$variant),)*
                    _ => None,
                }
            }

            /// Kafka's name (as `kafka-acls.sh` prints it).
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            /// Parses Kafka's name, in any case, with `-` or `_` between words.
            pub fn from_name(s: &str) -> Option<$name> {
                let want: String = s.trim().chars().filter(|c| *c != '_' && *c != '-').collect();
                Self::ALL.iter().copied().find(|v| {
                    v.name().chars().filter(|c| *c != '_').collect::<String>()
                        .eq_ignore_ascii_case(&want)
                })
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

wire_enum! {
    /// What an ACL guards (Kafka's `ResourceType`; 0 UNKNOWN and 1 ANY are filter-only).
    ResourceType {
        Topic = 2, "TOPIC";
        Group = 3, "GROUP";
        Cluster = 4, "CLUSTER";
        TransactionalId = 5, "TRANSACTIONAL_ID";
        DelegationToken = 6, "DELEGATION_TOKEN";
        User = 7, "USER";
    }
}

wire_enum! {
    /// How an ACL's name matches resources (Kafka's `PatternType`; 1 ANY and 2 MATCH are
    /// filter-only).
    PatternType {
        Literal = 3, "LITERAL";
        Prefixed = 4, "PREFIXED";
    }
}

wire_enum! {
    /// What an ACL allows or denies (Kafka's `AclOperation`; 1 ANY is filter-only).
    AclOperation {
        All = 2, "ALL";
        Read = 3, "READ";
        Write = 4, "WRITE";
        Create = 5, "CREATE";
        Delete = 6, "DELETE";
        Alter = 7, "ALTER";
        Describe = 8, "DESCRIBE";
        ClusterAction = 9, "CLUSTER_ACTION";
        DescribeConfigs = 10, "DESCRIBE_CONFIGS";
        AlterConfigs = 11, "ALTER_CONFIGS";
        IdempotentWrite = 12, "IDEMPOTENT_WRITE";
        CreateTokens = 13, "CREATE_TOKENS";
        DescribeTokens = 14, "DESCRIBE_TOKENS";
    }
}

wire_enum! {
    /// Allow or deny (Kafka's `AclPermissionType`; 1 ANY is filter-only).
    AclPermission {
        Deny = 2, "DENY";
        Allow = 3, "ALLOW";
    }
}

impl ResourceType {
    /// The operations an ACL on this type of resource may name (Kafka's `AclEntry`
    /// `supportedOperations`).
    pub fn operations(self) -> &'static [AclOperation] {
        use AclOperation::*;
        match self {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Describe,
                Delete,
                Alter,
                DescribeConfigs,
                AlterConfigs,
            ],
            ResourceType::Group => &[Read, Describe, Delete],
            ResourceType::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
            ],
            ResourceType::TransactionalId => &[Describe, Write],
            ResourceType::DelegationToken => &[Describe],
            ResourceType::User => &[CreateTokens, DescribeTokens],
        }
    }
}

/// One ACL (Kafka's `AclBinding`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    /// `Type:name`, e.g. `User:alice`; `User:*` for every principal.
    pub principal: String,
    /// An IP address, or `*` for any.
    pub host: String,
    pub operation: AclOperation,
    pub permission: AclPermission,
}

impl AclBinding {
    /// Checks an ACL as CreateAcls receives it (the wire's ids), as Kafka's controller does.
    #[allow(clippy::too_many_arguments)]
    pub fn from_wire(
        resource_type: i8,
        resource_name: &str,
        pattern_type: i8,
        principal: &str,
        host: &str,
        operation: i8,
        permission: i8,
    ) -> Result<AclBinding, String> {
        let resource_type = ResourceType::from_id(resource_type)
            .ok_or_else(|| format!("invalid resource type {resource_type}"))?;
        let pattern_type = PatternType::from_id(pattern_type).ok_or_else(|| {
            format!("invalid pattern type {pattern_type}: an ACL is LITERAL or PREFIXED")
        })?;
        let operation = AclOperation::from_id(operation)
            .ok_or_else(|| format!("invalid operation {operation}"))?;
        let permission = AclPermission::from_id(permission)
            .ok_or_else(|| format!("invalid permission type {permission}: ALLOW or DENY"))?;
        if resource_name.is_empty() {
            return Err("the resource name is empty".into());
        }
        if pattern_type == PatternType::Prefixed && resource_name == WILDCARD {
            return Err("a PREFIXED pattern cannot be '*' (use a LITERAL '*')".into());
        }
        if resource_type == ResourceType::Cluster && resource_name != CLUSTER_NAME {
            return Err(format!(
                "the cluster resource is named '{CLUSTER_NAME}', not '{resource_name}'"
            ));
        }
        match principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => {
                return Err(format!(
                    "invalid principal '{principal}': expected TYPE:NAME, e.g. User:alice"
                ))
            }
        }
        if host.is_empty() {
            return Err("the host is empty (use '*' for any host)".into());
        }
        if operation != AclOperation::All && !resource_type.operations().contains(&operation) {
            return Err(format!(
                "operation {operation} does not apply to a {resource_type} resource"
            ));
        }
        Ok(AclBinding {
            resource_type,
            resource_name: resource_name.to_string(),
            pattern_type,
            principal: principal.to_string(),
            host: host.to_string(),
            operation,
            permission,
        })
    }
}

/// How a filter matches patterns (Kafka's `PatternType` in a filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PatternFilter {
    /// Any pattern type, with the name exactly as given.
    Any,
    /// Every pattern that would apply to a resource of the name given: the literal name, the
    /// wildcard, and prefixes of it.
    Match,
    Exactly(PatternType),
}

/// Selects ACLs (Kafka's `AclBindingFilter`): `None` fields match anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub resource_name: Option<String>,
    pub pattern: PatternFilter,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<AclOperation>,
    pub permission: Option<AclPermission>,
}

impl AclFilter {
    /// Checks a filter as DescribeAcls and DeleteAcls receive it (1 is ANY; UNKNOWN is refused).
    #[allow(clippy::too_many_arguments)]
    pub fn from_wire(
        resource_type: i8,
        resource_name: Option<&str>,
        pattern_type: i8,
        principal: Option<&str>,
        host: Option<&str>,
        operation: i8,
        permission: i8,
    ) -> Result<AclFilter, String> {
        const ANY: i8 = 1;
        const MATCH: i8 = 2;
        let resource_type = match resource_type {
            ANY => None,
            id => Some(
                ResourceType::from_id(id).ok_or_else(|| format!("invalid resource type {id}"))?,
            ),
        };
        let pattern = match pattern_type {
            ANY => PatternFilter::Any,
            MATCH => PatternFilter::Match,
            id => PatternFilter::Exactly(
                PatternType::from_id(id).ok_or_else(|| format!("invalid pattern type {id}"))?,
            ),
        };
        let operation = match operation {
            ANY => None,
            id => Some(AclOperation::from_id(id).ok_or_else(|| format!("invalid operation {id}"))?),
        };
        let permission = match permission {
            ANY => None,
            id => Some(
                AclPermission::from_id(id)
                    .ok_or_else(|| format!("invalid permission type {id}"))?,
            ),
        };
        Ok(AclFilter {
            resource_type,
            resource_name: resource_name.map(str::to_string),
            pattern,
            principal: principal.map(str::to_string),
            host: host.map(str::to_string),
            operation,
            permission,
        })
    }

    /// A filter that matches every ACL.
    pub fn any() -> AclFilter {
        AclFilter {
            resource_type: None,
            resource_name: None,
            pattern: PatternFilter::Any,
            principal: None,
            host: None,
            operation: None,
            permission: None,
        }
    }

    pub fn matches(&self, acl: &AclBinding) -> bool {
        fn field<T: PartialEq>(want: &Option<T>, have: &T) -> bool {
            want.as_ref().is_none_or(|w| w == have)
        }
        field(&self.resource_type, &acl.resource_type)
            && self.matches_pattern(acl)
            && field(&self.principal, &acl.principal)
            && field(&self.host, &acl.host)
            && field(&self.operation, &acl.operation)
            && field(&self.permission, &acl.permission)
    }

    fn matches_pattern(&self, acl: &AclBinding) -> bool {
        let Some(name) = &self.resource_name else {
            // MATCH without a name matches nothing more specific than ANY would.
            return match self.pattern {
                PatternFilter::Exactly(p) => p == acl.pattern_type,
                PatternFilter::Any | PatternFilter::Match => true,
            };
        };
        match self.pattern {
            PatternFilter::Any => acl.resource_name == *name,
            PatternFilter::Exactly(p) => p == acl.pattern_type && acl.resource_name == *name,
            PatternFilter::Match => pattern_covers(acl, name),
        }
    }
}

/// Whether `acl`'s pattern covers the resource named `name`.
fn pattern_covers(acl: &AclBinding, name: &str) -> bool {
    match acl.pattern_type {
        PatternType::Literal => acl.resource_name == name || acl.resource_name == WILDCARD,
        PatternType::Prefixed => name.starts_with(&acl.resource_name),
    }
}

/// What the ACLs say of one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    /// No ACL at all covers the resource: the authorizer's default decides.
    NoAcls,
}

/// Every ACL, by id, indexed by resource pattern for authorization.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Acls {
    by_id: BTreeMap<Uuid, AclBinding>,
    /// The ids of the ACLs of each pattern: by resource and pattern type, then by name (looked
    /// up by `&str`, without allocating).
    by_pattern: BTreeMap<(ResourceType, PatternType), BTreeMap<String, Vec<Uuid>>>,
}

impl Acls {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Uuid, &AclBinding)> {
        self.by_id.iter()
    }

    pub fn contains(&self, acl: &AclBinding) -> bool {
        self.of_pattern(acl.resource_type, acl.pattern_type, &acl.resource_name)
            .any(|a| a == acl)
    }

    pub(crate) fn insert(&mut self, id: Uuid, acl: AclBinding) {
        self.remove(id);
        self.by_pattern
            .entry((acl.resource_type, acl.pattern_type))
            .or_default()
            .entry(acl.resource_name.clone())
            .or_default()
            .push(id);
        self.by_id.insert(id, acl);
    }

    pub(crate) fn remove(&mut self, id: Uuid) {
        let Some(acl) = self.by_id.remove(&id) else {
            return;
        };
        let key = (acl.resource_type, acl.pattern_type);
        let Some(names) = self.by_pattern.get_mut(&key) else {
            return;
        };
        if let Some(ids) = names.get_mut(&acl.resource_name) {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                names.remove(&acl.resource_name);
            }
        }
        if names.is_empty() {
            self.by_pattern.remove(&key);
        }
    }

    fn of_pattern<'a>(
        &'a self,
        resource_type: ResourceType,
        pattern_type: PatternType,
        name: &str,
    ) -> impl Iterator<Item = &'a AclBinding> + 'a {
        self.by_pattern
            .get(&(resource_type, pattern_type))
            .and_then(|names| names.get(name))
            .into_iter()
            .flatten()
            .filter_map(|id| self.by_id.get(id))
    }

    /// The ACLs whose pattern covers the resource: its literal name, the wildcard, and every
    /// prefixed pattern that starts it.
    fn covering<'a>(
        &'a self,
        resource_type: ResourceType,
        name: &'a str,
    ) -> impl Iterator<Item = &'a AclBinding> + 'a {
        let literal = self.of_pattern(resource_type, PatternType::Literal, name);
        let wildcard = (name != WILDCARD)
            .then(|| self.of_pattern(resource_type, PatternType::Literal, WILDCARD))
            .into_iter()
            .flatten();
        let prefixes = name
            .char_indices()
            .map(|(i, c)| i + c.len_utf8())
            .flat_map(move |end| {
                self.of_pattern(resource_type, PatternType::Prefixed, &name[..end])
            });
        literal.chain(wildcard).chain(prefixes)
    }

    /// What the ACLs decide for `principal` (`Type:name`) from `host` doing `operation` on the
    /// resource: a matching deny wins, then a matching allow.
    pub fn decide(
        &self,
        principal: &str,
        host: &str,
        operation: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> Decision {
        let mut covered = false;
        let mut allowed = false;
        for acl in self.covering(resource_type, name) {
            covered = true;
            match applies(acl, principal, host, operation) {
                Some(AclPermission::Deny) => return Decision::Deny,
                Some(AclPermission::Allow) => allowed = true,
                None => {}
            }
        }
        match (allowed, covered) {
            (true, _) => Decision::Allow,
            (false, true) => Decision::Deny,
            (false, false) => Decision::NoAcls,
        }
    }

    /// Whether some resource of `resource_type` allows `operation` to the principal (Kafka's
    /// `authorizeByResourceType`, used where any topic will do, as for an idempotent producer):
    /// an allow counts unless a deny for everything of the type, or for a pattern that covers
    /// the allowed one, takes it back. `NoAcls` when the type has no ACLs at all.
    pub fn decide_any(
        &self,
        principal: &str,
        host: &str,
        operation: AclOperation,
        resource_type: ResourceType,
    ) -> Decision {
        let of_type: Vec<&AclBinding> = PatternType::ALL
            .iter()
            .filter_map(|p| self.by_pattern.get(&(resource_type, *p)))
            .flat_map(|names| names.values().flatten())
            .filter_map(|id| self.by_id.get(id))
            .collect();
        if of_type.is_empty() {
            return Decision::NoAcls;
        }
        let denies: Vec<&AclBinding> = of_type
            .iter()
            .copied()
            .filter(|a| applies(a, principal, host, operation) == Some(AclPermission::Deny))
            .collect();
        let denied = |allow: &AclBinding| {
            denies.iter().any(|d| match d.pattern_type {
                PatternType::Literal => {
                    d.resource_name == WILDCARD
                        || (allow.pattern_type == PatternType::Literal
                            && d.resource_name == allow.resource_name)
                }
                PatternType::Prefixed => allow.resource_name.starts_with(&d.resource_name),
            })
        };
        let allowed = of_type.iter().any(|a| {
            applies(a, principal, host, operation) == Some(AclPermission::Allow) && !denied(a)
        });
        if allowed {
            Decision::Allow
        } else {
            Decision::Deny
        }
    }
}

/// What `acl` says of the action, if it applies to it at all (its pattern already covers the
/// resource): its principal and host match, and its operation is the one asked, All, or, for an
/// allow, one that implies it.
fn applies(
    acl: &AclBinding,
    principal: &str,
    host: &str,
    operation: AclOperation,
) -> Option<AclPermission> {
    use AclOperation::*;
    if acl.principal != principal && acl.principal != WILDCARD_PRINCIPAL {
        return None;
    }
    if acl.host != WILDCARD && acl.host != host {
        return None;
    }
    let operation_matches = acl.operation == All
        || acl.operation == operation
        || (acl.permission == AclPermission::Allow
            && match operation {
                Describe => matches!(acl.operation, Read | Write | Delete | Alter),
                DescribeConfigs => acl.operation == AlterConfigs,
                _ => false,
            });
    operation_matches.then_some(acl.permission)
}

/// The records of a CreateAcls whose ACLs the broker has checked: ACLs that exist already (or
/// come twice) are accepted and add nothing, as in Kafka.
pub(crate) fn plan_create(image: &MetadataImage, acls: &[AclBinding]) -> Vec<MetadataRecord> {
    let mut seen = std::collections::BTreeSet::new();
    acls.iter()
        .filter(|acl| !image.acls.contains(acl) && seen.insert(*acl))
        .map(|acl| MetadataRecord::Acl {
            id: Uuid::new_v4(),
            acl: acl.clone(),
        })
        .collect()
}

/// The records of a DeleteAcls, and per filter the ACLs it matched (an ACL two filters match
/// is removed once and reported under both).
pub(crate) fn plan_delete(
    image: &MetadataImage,
    filters: &[AclFilter],
) -> (Vec<Vec<AclBinding>>, Vec<MetadataRecord>) {
    let mut removed = std::collections::BTreeSet::new();
    let matched = filters
        .iter()
        .map(|filter| {
            image
                .acls
                .iter()
                .filter(|(_, acl)| filter.matches(acl))
                .map(|(id, acl)| {
                    removed.insert(*id);
                    acl.clone()
                })
                .collect()
        })
        .collect();
    let records = removed
        .into_iter()
        .map(|id| MetadataRecord::RemoveAcl { id })
        .collect();
    (matched, records)
}

#[cfg(test)]
#[path = "acl_tests.rs"]
mod tests;

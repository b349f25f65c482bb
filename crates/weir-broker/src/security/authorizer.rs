//! Authorization with the semantics of Kafka's `StandardAuthorizer`: super users may do
//! anything; others what the ACLs in the metadata image allow (weir-meta's `acl` module holds
//! the matching rules); a resource without ACLs is open only with
//! `allow.everyone.if.no.acl.found`. Without an authorizer (`authorizer.class.name` unset),
//! everyone may do everything, as in Kafka.

use std::collections::BTreeSet;
use std::sync::Arc;

use weir_meta::acl::{AclOperation, Acls, Decision, ResourceType, CLUSTER_NAME};

use super::Session;

/// The class name Kafka's own authorizer goes by (KRaft's `StandardAuthorizer`), which
/// `authorizer.class.name` takes.
pub const STANDARD_AUTHORIZER: &str = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";

/// `authorizer.class.name`, `super.users` and `allow.everyone.if.no.acl.found`.
#[derive(Debug, Clone, Default)]
pub struct AuthorizerSettings {
    /// Whether an authorizer is configured. Without one every request is allowed, and the ACL
    /// APIs answer SECURITY_DISABLED.
    pub enabled: bool,
    /// Principals (`User:admin`) allowed everything.
    pub super_users: BTreeSet<String>,
    pub allow_everyone_if_no_acl_found: bool,
}

impl AuthorizerSettings {
    /// Parses `super.users`: principals separated by `;`, each `Type:name`.
    pub fn parse_super_users(list: &str) -> Result<BTreeSet<String>, String> {
        list.split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once(':') {
                Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok(p.to_string()),
                _ => Err(format!(
                    "super.users: '{p}' is not a principal (TYPE:NAME, e.g. User:admin)"
                )),
            })
            .collect()
    }
}

/// What one request may do: its connection's principal and address, against the ACLs of the
/// image current when the request arrived.
#[derive(Clone)]
pub(crate) struct Access {
    /// `None` when everything is allowed (no authorizer, or a super user).
    acls: Option<Arc<Acls>>,
    principal: String,
    host: String,
    allow_if_no_acl: bool,
}

impl Access {
    pub(crate) fn new(settings: &AuthorizerSettings, acls: Arc<Acls>, session: &Session) -> Access {
        // An IPv4 client of a dual-stack listener is named as IPv4, as Java names it.
        let host = session.peer.ip().to_canonical().to_string();
        Access::of(settings, acls, session.principal.to_string(), host)
    }

    /// What `principal` (`Type:name`) connected from `host` may do.
    fn of(
        settings: &AuthorizerSettings,
        acls: Arc<Acls>,
        principal: String,
        host: String,
    ) -> Access {
        let unrestricted = !settings.enabled || settings.super_users.contains(&principal);
        Access {
            acls: (!unrestricted).then_some(acls),
            principal,
            host,
            allow_if_no_acl: settings.allow_everyone_if_no_acl_found,
        }
    }

    pub(crate) fn allows(&self, operation: AclOperation, kind: ResourceType, name: &str) -> bool {
        let Some(acls) = &self.acls else {
            return true;
        };
        let decision = acls.decide(&self.principal, &self.host, operation, kind, name);
        self.conclude(decision, operation, kind, name)
    }

    fn conclude(
        &self,
        decision: Decision,
        operation: AclOperation,
        kind: ResourceType,
        name: &str,
    ) -> bool {
        let allowed = match decision {
            Decision::Allow => true,
            Decision::Deny => false,
            Decision::NoAcls => self.allow_if_no_acl,
        };
        if !allowed {
            tracing::debug!(
                principal = %self.principal,
                host = %self.host,
                %operation,
                resource = %kind,
                name,
                "denied"
            );
        }
        allowed
    }

    pub(crate) fn topic(&self, operation: AclOperation, name: &str) -> bool {
        self.allows(operation, ResourceType::Topic, name)
    }

    pub(crate) fn group(&self, operation: AclOperation, id: &str) -> bool {
        self.allows(operation, ResourceType::Group, id)
    }

    pub(crate) fn cluster(&self, operation: AclOperation) -> bool {
        self.allows(operation, ResourceType::Cluster, CLUSTER_NAME)
    }

    pub(crate) fn transactional_id(&self, operation: AclOperation, id: &str) -> bool {
        self.allows(operation, ResourceType::TransactionalId, id)
    }

    /// Whether some resource of the type allows the operation (Kafka's
    /// `authorizeByResourceType`): first as for a resource no ACL names (Kafka's "hardcode"
    /// probe: wildcard ACLs and `allow.everyone.if.no.acl.found` count), then any allow that
    /// no deny takes back.
    pub(crate) fn any(&self, operation: AclOperation, kind: ResourceType) -> bool {
        let Some(acls) = &self.acls else {
            return true;
        };
        if self.allows(operation, kind, "hardcode") {
            return true;
        }
        acls.decide_any(&self.principal, &self.host, operation, kind) == Decision::Allow
    }

    /// The operations allowed on a resource, as the bit field Metadata and DescribeCluster
    /// answer (bit `id` set for each allowed operation's id).
    pub(crate) fn operations(&self, kind: ResourceType, name: &str) -> i32 {
        kind.operations()
            .iter()
            .filter(|op| self.allows(**op, kind, name))
            .fold(0, |bits, op| bits | (1 << op.id()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_meta::acl::{AclBinding, AclPermission, PatternType};
    use weir_meta::MetadataRecord;

    fn acls(bindings: &[AclBinding]) -> Arc<Acls> {
        let mut image = weir_meta::MetadataImage::default();
        for (i, acl) in bindings.iter().enumerate() {
            image.apply(&MetadataRecord::Acl {
                id: uuid::Uuid::from_u128(i as u128 + 1),
                acl: acl.clone(),
            });
        }
        image.acls.clone()
    }

    fn read_topic(principal: &str, name: &str) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: name.into(),
            pattern_type: PatternType::Literal,
            principal: principal.into(),
            host: "*".into(),
            operation: AclOperation::Read,
            permission: AclPermission::Allow,
        }
    }

    fn settings(enabled: bool, allow_if_no_acl: bool) -> AuthorizerSettings {
        AuthorizerSettings {
            enabled,
            super_users: AuthorizerSettings::parse_super_users("User:admin; User:broker").unwrap(),
            allow_everyone_if_no_acl_found: allow_if_no_acl,
        }
    }

    fn access(s: &AuthorizerSettings, acls: &Arc<Acls>, principal: &str) -> Access {
        Access::of(s, acls.clone(), principal.into(), "127.0.0.1".into())
    }

    #[test]
    fn without_an_authorizer_everything_is_allowed() {
        let set = acls(&[read_topic("User:bob", "t")]);
        let a = access(&settings(false, false), &set, "User:alice");
        assert!(a.topic(AclOperation::Read, "t"));
        assert!(a.cluster(AclOperation::Alter));
    }

    #[test]
    fn super_users_may_do_anything_and_others_what_acls_allow() {
        let s = settings(true, false);
        let set = acls(&[read_topic("User:alice", "t")]);
        let admin = access(&s, &set, "User:admin");
        assert!(admin.cluster(AclOperation::Alter));
        assert!(admin.topic(AclOperation::Write, "t"));
        let alice = access(&s, &set, "User:alice");
        assert!(alice.topic(AclOperation::Read, "t"));
        assert!(alice.topic(AclOperation::Describe, "t"));
        assert!(!alice.topic(AclOperation::Write, "t"));
        assert!(!alice.topic(AclOperation::Read, "other"));
        assert!(!alice.cluster(AclOperation::Describe));
        // Describe, Read and the implied Describe are set; Write and the rest are not.
        let bits = alice.operations(ResourceType::Topic, "t");
        assert_eq!(bits, (1 << 3) | (1 << 8));
    }

    #[test]
    fn resources_without_acls_follow_allow_everyone_if_no_acl_found() {
        let set = acls(&[read_topic("User:alice", "t")]);
        let open = access(&settings(true, true), &set, "User:bob");
        assert!(open.topic(AclOperation::Write, "other"));
        assert!(
            !open.topic(AclOperation::Read, "t"),
            "t has ACLs: bob is not in them"
        );
        let closed = access(&settings(true, false), &set, "User:bob");
        assert!(!closed.topic(AclOperation::Write, "other"));
    }

    #[test]
    fn any_topic_counts_wildcards_and_the_no_acl_default_first() {
        // Some topic has ACLs (for someone else): with allow.everyone.if.no.acl.found, a
        // principal without ACLs may still write some topic, as Kafka's "hardcode" probe finds.
        let set = acls(&[read_topic("User:alice", "t")]);
        let open = access(&settings(true, true), &set, "User:bob");
        assert!(open.any(AclOperation::Write, ResourceType::Topic));
        let closed = access(&settings(true, false), &set, "User:bob");
        assert!(!closed.any(AclOperation::Write, ResourceType::Topic));
        let alice = access(&settings(true, false), &set, "User:alice");
        assert!(alice.any(AclOperation::Read, ResourceType::Topic));
    }

    #[test]
    fn bad_super_users_are_refused() {
        assert!(AuthorizerSettings::parse_super_users("admin").is_err());
        assert_eq!(
            AuthorizerSettings::parse_super_users(" User:a ;;User:b").map(|s| s.len()),
            Ok(2)
        );
    }
}

use super::*;

fn acl(
    resource_type: ResourceType,
    name: &str,
    pattern_type: PatternType,
    principal: &str,
    operation: AclOperation,
    permission: AclPermission,
) -> AclBinding {
    AclBinding {
        resource_type,
        resource_name: name.into(),
        pattern_type,
        principal: principal.into(),
        host: "*".into(),
        operation,
        permission,
    }
}

fn set(acls: &[AclBinding]) -> Acls {
    let mut set = Acls::default();
    for (i, a) in acls.iter().enumerate() {
        set.insert(Uuid::from_u128(i as u128 + 1), a.clone());
    }
    set
}

use AclOperation::*;
use AclPermission::*;
use PatternType::*;
use ResourceType::*;

const ALICE: &str = "User:alice";
const HOST: &str = "127.0.0.1";

#[test]
fn a_resource_without_acls_is_left_to_the_default() {
    let acls = set(&[acl(Topic, "other", Literal, ALICE, Read, Allow)]);
    assert_eq!(
        acls.decide(ALICE, HOST, Read, Topic, "orders"),
        Decision::NoAcls
    );
    // An ACL for someone else on the resource makes it covered: no default any more.
    let acls = set(&[acl(Topic, "orders", Literal, "User:bob", Read, Allow)]);
    assert_eq!(
        acls.decide(ALICE, HOST, Read, Topic, "orders"),
        Decision::Deny
    );
}

#[test]
fn deny_wins_over_allow_and_wildcards_apply() {
    let acls = set(&[
        acl(Topic, "*", Literal, WILDCARD_PRINCIPAL, Read, Allow),
        acl(Topic, "orders", Literal, ALICE, Read, Deny),
    ]);
    assert_eq!(
        acls.decide(ALICE, HOST, Read, Topic, "orders"),
        Decision::Deny
    );
    assert_eq!(
        acls.decide(ALICE, HOST, Read, Topic, "audit"),
        Decision::Allow
    );
    assert_eq!(
        acls.decide("User:bob", HOST, Read, Topic, "orders"),
        Decision::Allow
    );
}

#[test]
fn prefixed_patterns_cover_names_that_start_with_them() {
    let acls = set(&[acl(Topic, "app-", Prefixed, ALICE, Write, Allow)]);
    assert_eq!(
        acls.decide(ALICE, HOST, Write, Topic, "app-1"),
        Decision::Allow
    );
    assert_eq!(
        acls.decide(ALICE, HOST, Write, Topic, "app-"),
        Decision::Allow
    );
    assert_eq!(
        acls.decide(ALICE, HOST, Write, Topic, "ap"),
        Decision::NoAcls
    );
    assert_eq!(
        acls.decide(ALICE, HOST, Write, Topic, "other"),
        Decision::NoAcls
    );
    // A literal ACL never covers a longer name.
    let acls = set(&[acl(Topic, "app", Literal, ALICE, Write, Allow)]);
    assert_eq!(
        acls.decide(ALICE, HOST, Write, Topic, "app-1"),
        Decision::NoAcls
    );
}

#[test]
fn allows_imply_describe_but_denies_imply_nothing() {
    let acls = set(&[acl(Topic, "t", Literal, ALICE, Write, Allow)]);
    assert_eq!(
        acls.decide(ALICE, HOST, Describe, Topic, "t"),
        Decision::Allow
    );
    assert_eq!(acls.decide(ALICE, HOST, Read, Topic, "t"), Decision::Deny);
    let acls = set(&[acl(Topic, "t", Literal, ALICE, AlterConfigs, Allow)]);
    assert_eq!(
        acls.decide(ALICE, HOST, DescribeConfigs, Topic, "t"),
        Decision::Allow
    );
    let acls = set(&[
        acl(Topic, "t", Literal, ALICE, All, Allow),
        acl(Topic, "t", Literal, ALICE, Read, Deny),
    ]);
    assert_eq!(
        acls.decide(ALICE, HOST, Describe, Topic, "t"),
        Decision::Allow
    );
    assert_eq!(acls.decide(ALICE, HOST, Read, Topic, "t"), Decision::Deny);
    let acls = set(&[acl(Topic, "t", Literal, ALICE, All, Deny)]);
    assert_eq!(
        acls.decide(ALICE, HOST, Describe, Topic, "t"),
        Decision::Deny
    );
}

#[test]
fn hosts_must_match_unless_wildcard() {
    let mut a = acl(Group, "g", Literal, ALICE, Read, Allow);
    a.host = "10.0.0.1".into();
    let acls = set(&[a]);
    assert_eq!(
        acls.decide(ALICE, "10.0.0.1", Read, Group, "g"),
        Decision::Allow
    );
    assert_eq!(acls.decide(ALICE, HOST, Read, Group, "g"), Decision::Deny);
}

#[test]
fn any_resource_of_a_type_counts_unless_a_covering_deny_takes_it_back() {
    let acls = set(&[acl(Topic, "t", Literal, ALICE, Write, Allow)]);
    assert_eq!(acls.decide_any(ALICE, HOST, Write, Topic), Decision::Allow);
    assert_eq!(
        acls.decide_any("User:bob", HOST, Write, Topic),
        Decision::Deny
    );
    assert_eq!(acls.decide_any(ALICE, HOST, Write, Group), Decision::NoAcls);
    let acls = set(&[
        acl(Topic, "app-x", Literal, ALICE, Write, Allow),
        acl(Topic, "app-", Prefixed, ALICE, Write, Deny),
    ]);
    assert_eq!(acls.decide_any(ALICE, HOST, Write, Topic), Decision::Deny);
}

#[test]
fn removing_an_acl_unindexes_it() {
    let a = acl(Topic, "t", Literal, ALICE, Read, Allow);
    let mut acls = set(std::slice::from_ref(&a));
    assert!(acls.contains(&a));
    acls.remove(Uuid::from_u128(1));
    assert!(!acls.contains(&a));
    assert_eq!(acls.decide(ALICE, HOST, Read, Topic, "t"), Decision::NoAcls);
    assert!(acls.is_empty());
}

#[test]
fn filters_select_as_kafka_does() {
    let literal = acl(Topic, "orders", Literal, ALICE, Read, Allow);
    let prefixed = acl(Topic, "ord", Prefixed, ALICE, Read, Allow);
    let wildcard = acl(Topic, "*", Literal, ALICE, Read, Allow);
    let matching = AclFilter {
        resource_type: Some(Topic),
        resource_name: Some("orders".into()),
        pattern: PatternFilter::Match,
        ..AclFilter::any()
    };
    assert!(matching.matches(&literal));
    assert!(matching.matches(&prefixed));
    assert!(matching.matches(&wildcard));
    let exact = AclFilter {
        resource_name: Some("orders".into()),
        ..AclFilter::any()
    };
    assert!(exact.matches(&literal));
    assert!(!exact.matches(&prefixed));
    let prefixed_only = AclFilter {
        pattern: PatternFilter::Exactly(Prefixed),
        ..AclFilter::any()
    };
    assert!(prefixed_only.matches(&prefixed));
    assert!(!prefixed_only.matches(&literal));
    let bob = AclFilter {
        principal: Some("User:bob".into()),
        ..AclFilter::any()
    };
    assert!(!bob.matches(&literal));
}

#[test]
fn bad_acls_are_refused_with_a_reason() {
    let ok = AclBinding::from_wire(2, "t", 3, "User:a", "*", 3, 3);
    assert!(ok.is_ok());
    for (args, why) in [
        ((1, "t", 3, "User:a", "*", 3, 3), "resource type"),
        ((2, "t", 1, "User:a", "*", 3, 3), "pattern type"),
        ((2, "t", 3, "alice", "*", 3, 3), "principal"),
        ((2, "t", 3, "User:a", "*", 1, 3), "operation"),
        ((2, "t", 3, "User:a", "*", 3, 1), "permission"),
        ((2, "", 3, "User:a", "*", 3, 3), "empty"),
        ((4, "c", 3, "User:a", "*", 9, 3), "kafka-cluster"),
        ((3, "g", 3, "User:a", "*", 4, 3), "does not apply"),
    ] {
        let (t, n, p, pr, h, o, pe) = args;
        let err = AclBinding::from_wire(t, n, p, pr, h, o, pe).unwrap_err();
        assert!(err.contains(why), "{err} lacks {why}");
    }
    assert!(AclFilter::from_wire(0, None, 1, None, None, 1, 1).is_err());
    assert_eq!(
        AclFilter::from_wire(1, None, 1, None, None, 1, 1),
        Ok(AclFilter::any())
    );
}

#[test]
fn names_parse_as_kafka_acls_writes_them() {
    assert_eq!(
        AclOperation::from_name("IdempotentWrite"),
        Some(IdempotentWrite)
    );
    assert_eq!(
        AclOperation::from_name("describe-configs"),
        Some(DescribeConfigs)
    );
    assert_eq!(AclOperation::from_name("READ"), Some(Read));
    assert_eq!(
        ResourceType::from_name("transactional_id"),
        Some(TransactionalId)
    );
    assert_eq!(PatternType::from_name("prefixed"), Some(Prefixed));
    assert_eq!(AclOperation::from_name("fly"), None);
}

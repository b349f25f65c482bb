//! The admin client's ACL calls: CreateAcls, DescribeAcls and DeleteAcls. ACLs and filters
//! carry Kafka's wire ids (resource type 2 TOPIC, 3 GROUP, 4 CLUSTER, 5 TRANSACTIONAL_ID;
//! pattern 3 LITERAL, 4 PREFIXED; in filters 1 means ANY and pattern 2 MATCH; operations and
//! permissions as in `AclOperation` and `AclPermissionType`).

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;

use crate::admin::Admin;
use crate::error::{Error, Result};

/// One ACL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Acl {
    /// 2 TOPIC, 3 GROUP, 4 CLUSTER, 5 TRANSACTIONAL_ID.
    pub resource_type: i8,
    /// The resource's name, a prefix, or `*`; the cluster is `kafka-cluster`.
    pub resource_name: String,
    /// 3 LITERAL, 4 PREFIXED.
    pub pattern_type: i8,
    /// `User:alice`, or `User:*`.
    pub principal: String,
    /// An address, or `*`.
    pub host: String,
    /// Kafka's `AclOperation` id (2 ALL, 3 READ, 4 WRITE, ... 8 DESCRIBE, ...).
    pub operation: i8,
    /// 2 DENY, 3 ALLOW.
    pub permission: i8,
}

/// Selects ACLs: `None` strings and id 1 (ANY) match anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    /// As in [`Acl`], or 1 for any.
    pub resource_type: i8,
    /// `None` for any.
    pub resource_name: Option<String>,
    /// As in [`Acl`], 1 for any, or 2 for every pattern that matches `resource_name`.
    pub pattern_type: i8,
    /// `None` for any.
    pub principal: Option<String>,
    /// `None` for any.
    pub host: Option<String>,
    /// As in [`Acl`], or 1 for any.
    pub operation: i8,
    /// As in [`Acl`], or 1 for any.
    pub permission: i8,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn outcome(code: i16, message: Option<&StrBytes>) -> Result<()> {
    match code {
        0 => Ok(()),
        code => Err(Error::from_code(code, message.map(|m| m.to_string()))),
    }
}

impl Admin {
    /// Creates ACLs; one result per ACL, in order. An ACL that exists already is accepted.
    pub async fn create_acls(&self, acls: &[Acl]) -> Result<Vec<Result<()>>> {
        let request = CreateAclsRequest::default().with_creations(
            acls.iter()
                .map(|a| {
                    AclCreation::default()
                        .with_resource_type(a.resource_type)
                        .with_resource_name(s(&a.resource_name))
                        .with_resource_pattern_type(a.pattern_type)
                        .with_principal(s(&a.principal))
                        .with_host(s(&a.host))
                        .with_operation(a.operation)
                        .with_permission_type(a.permission)
                })
                .collect(),
        );
        let (response, _) = self.controller().await?.request(&request, 3).await?;
        if response.results.len() != acls.len() {
            return Err(Error::Protocol(format!(
                "CreateAcls answered {} results for {} ACLs",
                response.results.len(),
                acls.len()
            )));
        }
        Ok(response
            .results
            .iter()
            .map(|r| outcome(r.error_code, r.error_message.as_ref()))
            .collect())
    }

    /// The ACLs the filter matches.
    pub async fn describe_acls(&self, filter: &AclFilter) -> Result<Vec<Acl>> {
        let request = DescribeAclsRequest::default()
            .with_resource_type_filter(filter.resource_type)
            .with_resource_name_filter(filter.resource_name.as_deref().map(s))
            .with_pattern_type_filter(filter.pattern_type)
            .with_principal_filter(filter.principal.as_deref().map(s))
            .with_host_filter(filter.host.as_deref().map(s))
            .with_operation(filter.operation)
            .with_permission_type(filter.permission);
        let (response, _) = self.controller().await?.request(&request, 3).await?;
        outcome(response.error_code, response.error_message.as_ref())?;
        Ok(response
            .resources
            .iter()
            .flat_map(|r| {
                r.acls.iter().map(|a| Acl {
                    resource_type: r.resource_type,
                    resource_name: r.resource_name.to_string(),
                    pattern_type: r.pattern_type,
                    principal: a.principal.to_string(),
                    host: a.host.to_string(),
                    operation: a.operation,
                    permission: a.permission_type,
                })
            })
            .collect())
    }

    /// Deletes the ACLs each filter matches; per filter, in order, the ACLs it removed.
    pub async fn delete_acls(&self, filters: &[AclFilter]) -> Result<Vec<Result<Vec<Acl>>>> {
        let request = DeleteAclsRequest::default().with_filters(
            filters
                .iter()
                .map(|f| {
                    DeleteAclsFilter::default()
                        .with_resource_type_filter(f.resource_type)
                        .with_resource_name_filter(f.resource_name.as_deref().map(s))
                        .with_pattern_type_filter(f.pattern_type)
                        .with_principal_filter(f.principal.as_deref().map(s))
                        .with_host_filter(f.host.as_deref().map(s))
                        .with_operation(f.operation)
                        .with_permission_type(f.permission)
                })
                .collect(),
        );
        let (response, _) = self.controller().await?.request(&request, 3).await?;
        if response.filter_results.len() != filters.len() {
            return Err(Error::Protocol(format!(
                "DeleteAcls answered {} results for {} filters",
                response.filter_results.len(),
                filters.len()
            )));
        }
        Ok(response
            .filter_results
            .iter()
            .map(|r| {
                outcome(r.error_code, r.error_message.as_ref())?;
                Ok(r.matching_acls
                    .iter()
                    .map(|a| Acl {
                        resource_type: a.resource_type,
                        resource_name: a.resource_name.to_string(),
                        pattern_type: a.pattern_type,
                        principal: a.principal.to_string(),
                        host: a.host.to_string(),
                        operation: a.operation,
                        permission: a.permission_type,
                    })
                    .collect())
            })
            .collect())
    }
}

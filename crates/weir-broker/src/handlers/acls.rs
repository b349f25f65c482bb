//! CreateAcls, DescribeAcls and DeleteAcls: ACLs are metadata records, made and removed
//! through the controller and read from this broker's image. Creating and deleting need Alter
//! on the cluster, describing needs Describe; without an authorizer they answer
//! SECURITY_DISABLED, as Kafka does.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use weir_meta::acl::{AclBinding, AclFilter, AclOperation};
use weir_meta::{ControllerOp, Outcome};

use super::str_bytes;
use crate::broker::Broker;
use crate::errors::meta_error_code;
use crate::security::authorizer::Access;

const NO_AUTHORIZER: &str = "no authorizer is configured (authorizer.class.name)";

/// Why the principal may not use an ACL API: no authorizer, or no permission on the cluster.
fn refused(broker: &Broker, access: &Access, operation: AclOperation) -> Option<(i16, String)> {
    if !broker.config.authorizer.enabled {
        return Some((ResponseError::SecurityDisabled.code(), NO_AUTHORIZER.into()));
    }
    (!access.cluster(operation)).then(|| {
        (
            ResponseError::ClusterAuthorizationFailed.code(),
            format!("{operation} on the cluster is not allowed"),
        )
    })
}

fn message(text: String) -> Option<StrBytes> {
    Some(str_bytes(text))
}

pub(crate) async fn create(
    broker: &Arc<Broker>,
    access: &Access,
    request: CreateAclsRequest,
) -> CreateAclsResponse {
    let answer = |results| CreateAclsResponse::default().with_results(results);
    if let Some((code, why)) = refused(broker, access, AclOperation::Alter) {
        let result = || {
            AclCreationResult::default()
                .with_error_code(code)
                .with_error_message(message(why.clone()))
        };
        return answer(request.creations.iter().map(|_| result()).collect());
    }
    let checked: Vec<Result<AclBinding, String>> = request
        .creations
        .iter()
        .map(|c| {
            AclBinding::from_wire(
                c.resource_type,
                &c.resource_name,
                c.resource_pattern_type,
                &c.principal,
                &c.host,
                c.operation,
                c.permission_type,
            )
        })
        .collect();
    let valid: Vec<AclBinding> = checked.iter().filter_map(|c| c.clone().ok()).collect();
    let failure = if valid.is_empty() {
        None
    } else {
        broker
            .controller_op(ControllerOp::CreateAcls { acls: valid })
            .await
            .err()
    };
    let results = checked
        .into_iter()
        .map(|c| match (c, &failure) {
            (Err(why), _) => AclCreationResult::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(message(why)),
            (Ok(_), Some(e)) => AclCreationResult::default()
                .with_error_code(meta_error_code(e))
                .with_error_message(message(e.to_string())),
            (Ok(acl), None) => {
                tracing::info!(?acl, "ACL created");
                AclCreationResult::default()
            }
        })
        .collect();
    answer(results)
}

pub(crate) fn describe(
    broker: &Arc<Broker>,
    access: &Access,
    request: DescribeAclsRequest,
) -> DescribeAclsResponse {
    if let Some((code, why)) = refused(broker, access, AclOperation::Describe) {
        return DescribeAclsResponse::default()
            .with_error_code(code)
            .with_error_message(message(why));
    }
    let filter = match AclFilter::from_wire(
        request.resource_type_filter,
        request.resource_name_filter.as_deref(),
        request.pattern_type_filter,
        request.principal_filter.as_deref(),
        request.host_filter.as_deref(),
        request.operation,
        request.permission_type,
    ) {
        Ok(filter) => filter,
        Err(why) => {
            return DescribeAclsResponse::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(message(why))
        }
    };
    let image = broker.image();
    // Grouped by resource pattern, as Kafka answers.
    let mut resources: BTreeMap<_, Vec<AclDescription>> = BTreeMap::new();
    for (_, acl) in image.acls.iter().filter(|(_, a)| filter.matches(a)) {
        resources
            .entry((acl.resource_type, &acl.resource_name, acl.pattern_type))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(str_bytes(acl.principal.clone()))
                    .with_host(str_bytes(acl.host.clone()))
                    .with_operation(acl.operation.id())
                    .with_permission_type(acl.permission.id()),
            );
    }
    let resources = resources
        .into_iter()
        .map(|((kind, name, pattern), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(kind.id())
                .with_resource_name(str_bytes(name.clone()))
                .with_pattern_type(pattern.id())
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}

fn matching(acl: &AclBinding) -> DeleteAclsMatchingAcl {
    DeleteAclsMatchingAcl::default()
        .with_resource_type(acl.resource_type.id())
        .with_resource_name(str_bytes(acl.resource_name.clone()))
        .with_pattern_type(acl.pattern_type.id())
        .with_principal(str_bytes(acl.principal.clone()))
        .with_host(str_bytes(acl.host.clone()))
        .with_operation(acl.operation.id())
        .with_permission_type(acl.permission.id())
}

pub(crate) async fn delete(
    broker: &Arc<Broker>,
    access: &Access,
    request: DeleteAclsRequest,
) -> DeleteAclsResponse {
    let answer = |results| DeleteAclsResponse::default().with_filter_results(results);
    let failed = |code: i16, why: String| {
        DeleteAclsFilterResult::default()
            .with_error_code(code)
            .with_error_message(message(why))
    };
    if let Some((code, why)) = refused(broker, access, AclOperation::Alter) {
        return answer(
            request
                .filters
                .iter()
                .map(|_| failed(code, why.clone()))
                .collect(),
        );
    }
    let checked: Vec<Result<AclFilter, String>> = request
        .filters
        .iter()
        .map(|f| {
            AclFilter::from_wire(
                f.resource_type_filter,
                f.resource_name_filter.as_deref(),
                f.pattern_type_filter,
                f.principal_filter.as_deref(),
                f.host_filter.as_deref(),
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let valid: Vec<AclFilter> = checked.iter().filter_map(|f| f.clone().ok()).collect();
    let outcome = if valid.is_empty() {
        Ok(Vec::new())
    } else {
        match broker
            .controller_op(ControllerOp::DeleteAcls { filters: valid })
            .await
        {
            Ok(reply) => match reply.outcome {
                Outcome::DeletedAcls(matched) => Ok(matched),
                other => Err((
                    ResponseError::UnknownServerError.code(),
                    format!("unexpected controller outcome {other:?}"),
                )),
            },
            Err(e) => Err((meta_error_code(&e), e.to_string())),
        }
    };
    let mut matched = match &outcome {
        Ok(matched) => matched.clone().into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    let results = checked
        .into_iter()
        .map(|f| match (f, &outcome) {
            (Err(why), _) => failed(ResponseError::InvalidRequest.code(), why),
            (Ok(_), Err((code, why))) => failed(*code, why.clone()),
            (Ok(_), Ok(_)) => {
                let acls = matched.next().unwrap_or_default();
                for acl in &acls {
                    tracing::info!(?acl, "ACL deleted");
                }
                DeleteAclsFilterResult::default()
                    .with_matching_acls(acls.iter().map(matching).collect())
            }
        })
        .collect();
    answer(results)
}

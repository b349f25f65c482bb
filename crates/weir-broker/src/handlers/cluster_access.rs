//! The APIs that act on the cluster as a whole, and the permission each needs on the cluster
//! resource (as Kafka's `KafkaApis` asks): refused requests are answered here with
//! CLUSTER_AUTHORIZATION_FAILED, before their handler runs.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsResponse, AlterUserScramCredentialsResponse, DescribeQuorumResponse,
    DescribeUserScramCredentialsResponse, ElectLeadersResponse, ListPartitionReassignmentsResponse,
    RequestKind, ResponseKind,
};
use weir_meta::acl::AclOperation;

use super::str_bytes;
use crate::security::authorizer::Access;

/// The permission a cluster-wide API needs, or `None` for the others.
fn needs(request: &RequestKind) -> Option<AclOperation> {
    Some(match request {
        RequestKind::DescribeQuorum(_)
        | RequestKind::ListPartitionReassignments(_)
        | RequestKind::DescribeUserScramCredentials(_) => AclOperation::Describe,
        RequestKind::ElectLeaders(_)
        | RequestKind::AlterPartitionReassignments(_)
        | RequestKind::AlterUserScramCredentials(_) => AclOperation::Alter,
        _ => return None,
    })
}

/// The refusal of a cluster-wide request the principal may not make, if it is one.
pub(crate) fn refuse(access: &Access, request: &RequestKind) -> Option<ResponseKind> {
    let operation = needs(request)?;
    if access.cluster(operation) {
        return None;
    }
    let code = ResponseError::ClusterAuthorizationFailed.code();
    let message = || {
        Some(str_bytes(format!(
            "{operation} on the cluster is not allowed"
        )))
    };
    Some(match request {
        RequestKind::DescribeQuorum(_) => ResponseKind::DescribeQuorum(
            DescribeQuorumResponse::default()
                .with_error_code(code)
                .with_error_message(message()),
        ),
        RequestKind::ListPartitionReassignments(_) => ResponseKind::ListPartitionReassignments(
            ListPartitionReassignmentsResponse::default()
                .with_error_code(code)
                .with_error_message(message()),
        ),
        RequestKind::AlterPartitionReassignments(_) => ResponseKind::AlterPartitionReassignments(
            AlterPartitionReassignmentsResponse::default()
                .with_error_code(code)
                .with_error_message(message()),
        ),
        RequestKind::DescribeUserScramCredentials(_) => ResponseKind::DescribeUserScramCredentials(
            DescribeUserScramCredentialsResponse::default()
                .with_error_code(code)
                .with_error_message(message()),
        ),
        RequestKind::AlterUserScramCredentials(r) => {
            // No top-level error here: each user named is refused.
            let mut users: Vec<_> = r
                .upsertions
                .iter()
                .map(|u| u.name.clone())
                .chain(r.deletions.iter().map(|d| d.name.clone()))
                .collect();
            users.sort();
            users.dedup();
            ResponseKind::AlterUserScramCredentials(
                AlterUserScramCredentialsResponse::default().with_results(
                    users
                        .into_iter()
                        .map(|user| {
                            AlterUserScramCredentialsResult::default()
                                .with_user(user)
                                .with_error_code(code)
                                .with_error_message(message())
                        })
                        .collect(),
                ),
            )
        }
        RequestKind::ElectLeaders(r) => {
            // v0 has no top-level error: each partition asked for is refused too.
            let results = r
                .topic_partitions
                .iter()
                .flatten()
                .map(|t| {
                    ReplicaElectionResult::default()
                        .with_topic(t.topic.clone())
                        .with_partition_result(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    PartitionResult::default()
                                        .with_partition_id(*p)
                                        .with_error_code(code)
                                        .with_error_message(message())
                                })
                                .collect(),
                        )
                })
                .collect();
            ResponseKind::ElectLeaders(
                ElectLeadersResponse::default()
                    .with_error_code(code)
                    .with_replica_election_results(results),
            )
        }
        _ => return None,
    })
}

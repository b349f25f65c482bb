//! TxnOffsetCommit: a transactional producer commits a group's offsets inside its transaction
//! (KIP-98; KIP-447 adds the member's generation and id, checked like OffsetCommit's). The
//! offsets take effect when the transaction commits.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use weir_meta::acl::AclOperation;
use weir_types::{ProducerEpoch, ProducerId};

use crate::broker::Broker;
use crate::group::{CommitEntry, TxnCommitter};
use crate::security::authorizer::Access;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    version: i16,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let group = request.group_id.0.to_string();
    // Write on the transactional id, Read on the group, then Read on each topic.
    let refused_all = if !access.transactional_id(AclOperation::Write, &request.transactional_id.0)
    {
        Some(ResponseError::TransactionalIdAuthorizationFailed.code())
    } else if !access.group(AclOperation::Read, &group) {
        Some(ResponseError::GroupAuthorizationFailed.code())
    } else {
        None
    };
    let readable: Vec<bool> = request
        .topics
        .iter()
        .map(|t| refused_all.is_none() && access.topic(AclOperation::Read, &t.name.0))
        .collect();
    let entries: Vec<CommitEntry> = request
        .topics
        .iter()
        .zip(&readable)
        .filter(|(_, readable)| **readable)
        .flat_map(|(t, _)| {
            t.partitions.iter().map(move |p| CommitEntry {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if version >= 2 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            })
        })
        .collect();
    let who = TxnCommitter {
        producer_id: ProducerId(request.producer_id.0),
        producer_epoch: ProducerEpoch(request.producer_epoch),
        generation: if version >= 3 {
            request.generation_id
        } else {
            -1
        },
        member: if version >= 3 {
            request.member_id.to_string()
        } else {
            String::new()
        },
        instance: request
            .group_instance_id
            .as_ref()
            .filter(|_| version >= 3)
            .map(|s| s.to_string()),
    };
    let codes = if entries.is_empty() {
        Vec::new()
    } else {
        broker
            .groups
            .txn_commit(broker, &group, &who, &entries)
            .await
    };
    let mut codes = codes.into_iter();
    let refused = refused_all.unwrap_or(ResponseError::TopicAuthorizationFailed.code());
    let topics = request
        .topics
        .into_iter()
        .zip(readable)
        .map(|(t, readable)| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let code = if readable {
                        codes.next().unwrap_or(0)
                    } else {
                        refused
                    };
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

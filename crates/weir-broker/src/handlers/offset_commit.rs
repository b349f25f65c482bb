//! OffsetCommit: committed offsets (with metadata and leader epoch) go to `__consumer_offsets`,
//! and are answered once it replicated them.

use std::sync::Arc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use crate::broker::Broker;
use crate::group::CommitEntry;
use crate::security::authorizer::Access;
use kafka_protocol::error::ResponseError;
use weir_meta::acl::AclOperation;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    version: i16,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    // Read on the group, then Read on each topic; a topic refused is not committed.
    let group_allowed = access.group(AclOperation::Read, &request.group_id.0);
    let readable: Vec<bool> = request
        .topics
        .iter()
        .map(|t| group_allowed && access.topic(AclOperation::Read, &t.name.0))
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
                leader_epoch: if version >= 6 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            })
        })
        .collect();
    // Nothing left to commit (every topic refused): the coordinator is not asked, so no
    // group is made for it.
    let (mut codes, durable) =
        if !group_allowed || (entries.is_empty() && !request.topics.is_empty()) {
            (Vec::new(), None)
        } else {
            broker
                .groups
                .commit(
                    broker,
                    &request.group_id.0,
                    request.generation_id_or_member_epoch,
                    &request.member_id,
                    request.group_instance_id.as_deref(),
                    &entries,
                )
                .await
        };
    // Answered once `__consumer_offsets` replicated the commit (the group lock is not held).
    if let Some(durable) = durable {
        let code = durable.wait(broker).await;
        if code != 0 {
            for c in codes.iter_mut().filter(|c| **c == 0) {
                *c = code;
            }
        }
    }
    let mut codes = codes.into_iter();
    let refused = if group_allowed {
        ResponseError::TopicAuthorizationFailed.code()
    } else {
        ResponseError::GroupAuthorizationFailed.code()
    };
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
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// Decodes OffsetCommit v0 and v1, which `kafka-protocol` (following Kafka 4, KIP-896) no
/// longer knows but Sarama 1.22 still sends: v0 has no generation or member, v1 adds them and a
/// per-partition commit timestamp (ignored, as Kafka 2.1+ does).
pub(crate) fn decode_legacy(
    buf: &mut bytes::Bytes,
    version: i16,
) -> Result<OffsetCommitRequest, String> {
    use bytes::Buf;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{GroupId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn need(buf: &bytes::Bytes, n: usize) -> Result<(), String> {
        if buf.remaining() < n {
            return Err("request ends early".into());
        }
        Ok(())
    }
    fn string(buf: &mut bytes::Bytes) -> Result<Option<StrBytes>, String> {
        need(buf, 2)?;
        let len = buf.get_i16();
        if len < 0 {
            return Ok(None);
        }
        need(buf, len as usize)?;
        StrBytes::from_utf8(buf.split_to(len as usize))
            .map(Some)
            .map_err(|e| e.to_string())
    }
    fn count(buf: &mut bytes::Bytes, min_item: usize) -> Result<usize, String> {
        need(buf, 4)?;
        let n = buf.get_i32();
        // Never trust a count beyond what the remaining bytes could hold.
        if n < 0 || n as usize > buf.remaining() / min_item {
            return Err(format!("array length {n} is impossible"));
        }
        Ok(n as usize)
    }
    let group = string(buf)?.ok_or("null group id")?;
    let (generation, member) = if version >= 1 {
        need(buf, 4)?;
        let g = buf.get_i32();
        (g, string(buf)?.unwrap_or_default())
    } else {
        (-1, StrBytes::default())
    };
    let mut topics = Vec::new();
    for _ in 0..count(buf, 6)? {
        let name = string(buf)?.ok_or("null topic name")?;
        let mut partitions = Vec::new();
        for _ in 0..count(buf, 14)? {
            need(buf, 12)?;
            let index = buf.get_i32();
            let offset = buf.get_i64();
            if version >= 1 {
                need(buf, 8)?;
                let _commit_timestamp = buf.get_i64();
            }
            let metadata = string(buf)?;
            partitions.push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(index)
                    .with_committed_offset(offset)
                    .with_committed_metadata(metadata),
            );
        }
        topics.push(
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(name))
                .with_partitions(partitions),
        );
    }
    Ok(OffsetCommitRequest::default()
        .with_group_id(GroupId(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(member)
        .with_topics(topics))
}

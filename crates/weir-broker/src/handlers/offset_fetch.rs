//! OffsetFetch: committed offsets of one group (v1-v7) or several (v8+, KIP-709); -1 where
//! nothing was committed. With `require_stable` (v7+, KIP-447), a partition whose offset an
//! open transaction still holds answers UNSTABLE_OFFSET_COMMIT (retriable).

use std::sync::Arc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};

use super::str_bytes;
use crate::broker::Broker;
use crate::group::records::OffsetValue;
use crate::group::TopicOffsets;
use crate::security::authorizer::Access;
use kafka_protocol::error::ResponseError;
use weir_meta::acl::AclOperation;

/// One topic's answer: each partition's committed offset, or the error code refusing it.
type Fetched = Vec<(String, Vec<(i32, Option<OffsetValue>, i16)>)>;

/// The group's offsets the principal may see: Describe on the group, then Describe on each
/// topic. Topics asked for but refused are answered TOPIC_AUTHORIZATION_FAILED; when every
/// topic is asked for, refused ones are left out.
async fn fetch_allowed(
    broker: &Arc<Broker>,
    access: &Access,
    group: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Result<Fetched, i16> {
    if !access.group(AclOperation::Describe, group) {
        return Err(ResponseError::GroupAuthorizationFailed.code());
    }
    let (allowed, refused): (Option<Vec<_>>, Vec<_>) = match wanted {
        None => (None, Vec::new()),
        Some(ts) => {
            let (allowed, refused) = ts
                .into_iter()
                .partition(|(t, _)| access.topic(AclOperation::Describe, t));
            (Some(allowed), refused)
        }
    };
    let fetched: TopicOffsets = broker
        .groups
        .fetch_offsets(broker, group, allowed)
        .await
        .map_err(|e| e.code())?;
    let denied = ResponseError::TopicAuthorizationFailed.code();
    let mut out: Fetched = fetched
        .into_iter()
        .filter(|(t, _)| access.topic(AclOperation::Describe, t))
        .map(|(t, parts)| {
            let parts = parts
                .into_iter()
                .map(|(p, v)| {
                    if require_stable && broker.groups.txn_offset_pending(group, &t, p) {
                        (p, None, ResponseError::UnstableOffsetCommit.code())
                    } else {
                        (p, v, 0)
                    }
                })
                .collect();
            (t, parts)
        })
        .collect();
    out.extend(
        refused
            .into_iter()
            .map(|(t, parts)| (t, parts.into_iter().map(|p| (p, None, denied)).collect())),
    );
    Ok(out)
}

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    version: i16,
    request: OffsetFetchRequest,
) -> OffsetFetchResponse {
    // Leader epochs are in the answer from v5 on; earlier versions must leave them at -1.
    let epoch = |v: &Option<OffsetValue>| {
        if version >= 5 {
            v.as_ref().map_or(-1, |v| v.leader_epoch)
        } else {
            -1
        }
    };
    if version >= 8 {
        let mut groups = Vec::with_capacity(request.groups.len());
        for g in request.groups {
            groups.push({
                let wanted = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let result = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                // v9 (KIP-848): a member named, or an epoch given, must be current in its
                // consumer group; librdkafka sends neither.
                let fetched = fetch_allowed(
                    broker,
                    access,
                    &g.group_id.0,
                    wanted,
                    request.require_stable,
                )
                .await
                .and_then(|f| {
                    let member = g.member_id.as_deref().unwrap_or_default();
                    if version >= 9 && (g.member_id.is_some() || g.member_epoch >= 0) {
                        broker
                            .groups
                            .check_fetch_member(&g.group_id.0, member, g.member_epoch)
                            .map_err(|e| e.code())?;
                    }
                    Ok(f)
                });
                match fetched {
                    Err(code) => result.with_error_code(code),
                    Ok(fetched) => result.with_topics(
                        fetched
                            .into_iter()
                            .map(|(t, parts)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(str_bytes(t)))
                                    .with_partitions(
                                        parts
                                            .into_iter()
                                            .map(|(p, v, code)| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_error_code(code)
                                                    .with_committed_offset(
                                                        v.as_ref().map_or(-1, |v| v.offset),
                                                    )
                                                    .with_committed_leader_epoch(epoch(&v))
                                                    .with_metadata(Some(str_bytes(
                                                        v.map(|v| v.metadata).unwrap_or_default(),
                                                    )))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
                }
            });
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted: Option<Vec<(String, Vec<i32>)>> = request.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let require_stable = version >= 7 && request.require_stable;
    match fetch_allowed(
        broker,
        access,
        &request.group_id.0,
        wanted.clone(),
        require_stable,
    )
    .await
    {
        Err(code) if version >= 2 => OffsetFetchResponse::default().with_error_code(code),
        // v1 has no top-level error: each partition asked for carries it.
        Err(code) => OffsetFetchResponse::default().with_topics(
            wanted
                .unwrap_or_default()
                .into_iter()
                .map(|(t, parts)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(str_bytes(t)))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|p| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(-1)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        Ok(fetched) => OffsetFetchResponse::default().with_topics(
            fetched
                .into_iter()
                .map(|(t, parts)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(str_bytes(t)))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|(p, v, code)| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_error_code(code)
                                        .with_committed_offset(v.as_ref().map_or(-1, |v| v.offset))
                                        .with_committed_leader_epoch(epoch(&v))
                                        .with_metadata(Some(str_bytes(
                                            v.map(|v| v.metadata).unwrap_or_default(),
                                        )))
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
    }
}

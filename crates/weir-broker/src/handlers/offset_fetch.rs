//! OffsetFetch: committed offsets of one group (v1-v7) or several (v8+, KIP-709); -1 where
//! nothing was committed.

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

pub(crate) async fn handle(
    broker: &Arc<Broker>,
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
                match broker
                    .groups
                    .fetch_offsets(broker, &g.group_id.0, wanted)
                    .await
                {
                    Err(e) => result.with_error_code(e.code()),
                    Ok(fetched) => result.with_topics(
                        fetched
                            .into_iter()
                            .map(|(t, parts)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(str_bytes(t)))
                                    .with_partitions(
                                        parts
                                            .into_iter()
                                            .map(|(p, v)| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
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
    let wanted = request.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let fetched: Result<TopicOffsets, _> = broker
        .groups
        .fetch_offsets(broker, &request.group_id.0, wanted)
        .await;
    match fetched {
        Err(e) => {
            let r = OffsetFetchResponse::default();
            if version >= 2 {
                r.with_error_code(e.code())
            } else {
                r
            }
        }
        Ok(fetched) => OffsetFetchResponse::default().with_topics(
            fetched
                .into_iter()
                .map(|(t, parts)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(str_bytes(t)))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|(p, v)| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
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

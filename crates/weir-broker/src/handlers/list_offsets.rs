//! ListOffsets: earliest (-2), latest (-1, the high watermark, or the last stable offset under
//! `isolation_level=read_committed`), max timestamp (-3, KIP-734), earliest local (-4, the log
//! start here), and the first offset at or after a timestamp (below the same bound).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use weir_types::LeaderEpoch;

use crate::broker::Broker;
use crate::errors::log_error_code;
use crate::security::authorizer::Access;
use weir_meta::acl::AclOperation;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

pub(crate) fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    version: i16,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let read_committed = version >= 2 && request.isolation_level == 1;
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let describable = access.topic(AclOperation::Describe, &name);
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let base = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1);
                    if !describable {
                        return base
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    let Some(partition) = broker.replicas.get(&name, p.partition_index) else {
                        return base
                            .with_error_code(broker.not_hosted_code(&name, p.partition_index));
                    };
                    let epoch = partition.leader_epoch();
                    if !partition.is_leader(broker.node_id()) {
                        return base.with_error_code(ResponseError::NotLeaderOrFollower.code());
                    }
                    let asked = LeaderEpoch::from_wire(p.current_leader_epoch);
                    if let Some(asked) = asked.filter(|e| version >= 4 && *e != epoch) {
                        let code = if asked < epoch {
                            ResponseError::FencedLeaderEpoch
                        } else {
                            ResponseError::UnknownLeaderEpoch
                        };
                        return base.with_error_code(code.code());
                    }
                    // Consumers see only what every ISR member holds, and under read_committed
                    // only what no open transaction may still abort.
                    let high_watermark = partition.high_watermark();
                    let log = partition.log();
                    let high_watermark = if read_committed {
                        log.last_stable_offset(high_watermark)
                    } else {
                        high_watermark
                    };
                    let found = match p.timestamp {
                        LATEST => Ok(Some((-1, high_watermark))),
                        EARLIEST | EARLIEST_LOCAL => Ok(Some((-1, log.log_start_offset()))),
                        MAX_TIMESTAMP => log
                            .max_timestamp_offset()
                            .map(|o| o.map(|t| (t.timestamp, t.offset))),
                        ts if ts >= 0 => log
                            .offset_for_timestamp(ts)
                            .map(|o| o.map(|t| (t.timestamp, t.offset))),
                        ts => {
                            return base
                                .with_error_code(ResponseError::InvalidRequest.code())
                                .with_timestamp(ts);
                        }
                    };
                    let found = found
                        .map(|f| f.filter(|(ts, offset)| *ts == -1 || *offset < high_watermark));
                    match found {
                        Ok(Some((timestamp, offset))) => {
                            let found = base.with_timestamp(timestamp).with_offset(offset.0);
                            // The field exists from v4 on; earlier versions must leave it at -1.
                            if version >= 4 {
                                found.with_leader_epoch(epoch.0)
                            } else {
                                found
                            }
                        }
                        // No record at or after the timestamp: Kafka answers -1 / -1.
                        Ok(None) => base,
                        Err(e) => base.with_error_code(log_error_code(&e)),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

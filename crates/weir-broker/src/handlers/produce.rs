//! Produce: validate each partition's batches (headers and CRC, never decompressing), assign
//! offsets in place, append. acks=0 gets no answer; on one broker acks=1 and acks=all are both
//! answered after the leader's write, once `min.insync.replicas` is met for acks=all.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::errors::log_error_code;

fn partition_error(index: i32, code: i16, message: Option<String>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(message.map(str_bytes))
}

pub(crate) fn handle(
    broker: &Arc<Broker>,
    _version: i16,
    request: ProduceRequest,
) -> Option<ProduceResponse> {
    let acks = request.acks;
    let mut topics = Vec::with_capacity(request.topic_data.len());
    let mut appended = false;
    for topic in request.topic_data {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for data in topic.partition_data {
            let index = data.index;
            let response = if !matches!(acks, -1..=1) {
                partition_error(
                    index,
                    ResponseError::InvalidRequiredAcks.code(),
                    Some(format!("acks={acks} is not -1, 0 or 1")),
                )
            } else if request.transactional_id.is_some() {
                partition_error(
                    index,
                    ResponseError::TransactionalIdAuthorizationFailed.code(),
                    Some("transactions are not supported yet".into()),
                )
            } else if let Some(partition) = broker.replicas.get(&name, index) {
                if !partition.is_leader(broker.node_id()) {
                    partition_error(index, ResponseError::NotLeaderOrFollower.code(), None)
                } else if acks == -1
                    && partition.isr_size.load(Ordering::Acquire)
                        < partition.min_insync_replicas.load(Ordering::Acquire)
                {
                    partition_error(index, ResponseError::NotEnoughReplicas.code(), None)
                } else {
                    match data.records {
                        None => partition_error(
                            index,
                            ResponseError::InvalidRecord.code(),
                            Some("no records".into()),
                        ),
                        Some(records) => {
                            // The request's bytes are shared with the frame; the log patches a copy.
                            let mut bytes = records.to_vec();
                            let epoch = partition.leader_epoch();
                            let result = partition.log().append_as_leader(
                                &mut bytes,
                                epoch,
                                weir_log::now_ms(),
                            );
                            match result {
                                Ok(info) => {
                                    appended |= !info.duplicate;
                                    PartitionProduceResponse::default()
                                        .with_index(index)
                                        .with_base_offset(info.base_offset)
                                        .with_log_append_time_ms(info.log_append_time_ms)
                                        .with_log_start_offset(info.log_start_offset)
                                }
                                Err(e) => {
                                    tracing::warn!(topic = %name, partition = index, error = %e, "produce refused");
                                    partition_error(index, log_error_code(&e), Some(e.to_string()))
                                }
                            }
                        }
                    }
                }
            } else {
                partition_error(index, broker.not_hosted_code(&name, index), None)
            };
            partitions.push(response);
        }
        topics.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_partition_responses(partitions),
        );
    }
    if appended {
        broker.replicas.notify_append();
    }
    (acks != 0).then(|| ProduceResponse::default().with_responses(topics))
}

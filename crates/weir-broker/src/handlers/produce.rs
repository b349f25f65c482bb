//! Produce: validate each partition's batches (headers and CRC, never decompressing), assign
//! offsets in place, append. acks=0 gets no answer; acks=1 is answered after the leader's write;
//! acks=all needs an ISR of at least `min.insync.replicas` before the write
//! (NOT_ENOUGH_REPLICAS) and is answered once the high watermark passes the records, that is
//! once every ISR member has them. If the ISR shrinks below the minimum meanwhile, the answer is
//! NOT_ENOUGH_REPLICAS_AFTER_APPEND; if leadership moves, NOT_LEADER_OR_FOLLOWER; if
//! `timeout_ms` passes, REQUEST_TIMED_OUT. The records stay written in each case.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use weir_types::{LeaderEpoch, Offset};

use super::str_bytes;
use crate::broker::Broker;
use crate::errors::log_error_code;
use crate::replica_manager::Partition;
use crate::security::authorizer::Access;
use weir_meta::acl::AclOperation;

fn partition_error(index: i32, code: i16, message: Option<String>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(message.map(str_bytes))
}

/// An acks=all answer waiting for replication: where it sits in the response (topic, partition),
/// the partition, the epoch its batches carry, and their last offset.
type Wait = (usize, usize, Arc<Partition>, LeaderEpoch, Offset);

/// One partition's batches to append: where its answer sits in the response, and the bytes
/// (shared with the request's frame; the log patches a copy, made on the I/O thread that writes
/// it, so the copy is still in that core's cache when written).
struct Append {
    topic: usize,
    slot: usize,
    name: String,
    partition: Arc<Partition>,
    records: bytes::Bytes,
}

type Appended = (
    Append,
    Result<Option<(weir_log::AppendInfo, LeaderEpoch)>, weir_log::LogError>,
);

/// Appends every partition's batches on the broker's I/O threads, never on an async worker (a
/// write may wait for the disk: dirty-page throttling, a slow device). The request is one job,
/// queued now, in this first poll, on its connection's lane, so one connection's pipelined
/// requests append in arrival order. `held` (the request's bytes counted against
/// `queued.max.request.bytes`) goes with the job. A job that never answers leaves the
/// UNKNOWN_SERVER_ERROR in place.
fn append_all(
    broker: &Broker,
    peer: std::net::SocketAddr,
    appends: Vec<Append>,
    held: Option<crate::connection::Queued>,
) -> impl std::future::Future<Output = Vec<Appended>> {
    let me = broker.node_id();
    let job = (!appends.is_empty()).then(|| {
        broker.io.run(broker.io.lane_of(peer), move || {
            // The request's bytes count against `queued.max.request.bytes` until written.
            let _held = held;
            let now = weir_log::now_ms();
            appends
                .into_iter()
                .map(|a| {
                    let mut bytes = a.records.to_vec();
                    let result = a.partition.append_as_leader(me, &mut bytes, now);
                    (a, result)
                })
                .collect::<Vec<Appended>>()
        })
    });
    async move {
        let Some(job) = job else {
            return Vec::new();
        };
        job.await.unwrap_or_else(|| {
            tracing::error!("an append job failed");
            Vec::new()
        })
    }
}

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    _version: i16,
    request: ProduceRequest,
    peer: std::net::SocketAddr,
    held: Option<crate::connection::Queued>,
) -> Option<ProduceResponse> {
    let acks = request.acks;
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(request.timeout_ms.max(0) as u64);
    let mut appends: Vec<Append> = Vec::new();
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for topic in request.topic_data {
        let name = topic.name.0.to_string();
        let writable = access.topic(AclOperation::Write, &name);
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for data in topic.partition_data {
            let index = data.index;
            let response = if !matches!(acks, -1..=1) {
                partition_error(
                    index,
                    ResponseError::InvalidRequiredAcks.code(),
                    Some(format!("acks={acks} is not -1, 0 or 1")),
                )
            } else if !writable {
                partition_error(index, ResponseError::TopicAuthorizationFailed.code(), None)
            } else if request
                .transactional_id
                .as_ref()
                .is_some_and(|id| !access.transactional_id(AclOperation::Write, id))
                || (request.transactional_id.is_none()
                    && data.records.as_deref().is_some_and(|r| {
                        weir_log::BatchHeader::parse(r).is_ok_and(|h| h.is_transactional())
                    }))
            {
                partition_error(
                    index,
                    ResponseError::TransactionalIdAuthorizationFailed.code(),
                    None,
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
                            appends.push(Append {
                                topic: topics.len(),
                                slot: partitions.len(),
                                name: name.clone(),
                                partition,
                                records,
                            });
                            // Filled in once appended.
                            partition_error(index, ResponseError::UnknownServerError.code(), None)
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
    // acks=all answers that wait for replication.
    let mut waits: Vec<Wait> = Vec::new();
    for (a, result) in append_all(broker, peer, appends, held).await {
        let response = &mut topics[a.topic].partition_responses[a.slot];
        let index = response.index;
        *response = match result {
            Ok(None) => partition_error(index, ResponseError::NotLeaderOrFollower.code(), None),
            Ok(Some((info, epoch))) => {
                if acks == -1 {
                    waits.push((a.topic, a.slot, a.partition, epoch, info.last_offset));
                }
                PartitionProduceResponse::default()
                    .with_index(index)
                    .with_base_offset(info.base_offset.0)
                    .with_log_append_time_ms(info.log_append_time_ms)
                    .with_log_start_offset(info.log_start_offset.0)
            }
            Err(e) => {
                tracing::warn!(topic = %a.name, partition = index, error = %e, "produce refused");
                partition_error(index, log_error_code(&e), Some(e.to_string()))
            }
        };
    }
    for (t, p, partition, epoch, last_offset) in waits {
        let code = partition
            .wait_replicated(broker.node_id(), epoch, last_offset, deadline)
            .await;
        if code != 0 {
            let response = &mut topics[t].partition_responses[p];
            response.error_code = code;
            response.base_offset = -1;
        }
    }
    (acks != 0).then(|| ProduceResponse::default().with_responses(topics))
}

//! Produce: validate each partition's batches (headers and CRC, never decompressing), assign
//! offsets in place, append. acks=0 gets no answer; acks=1 is answered after the leader's write;
//! acks=all needs an ISR of at least `min.insync.replicas` before the write
//! (NOT_ENOUGH_REPLICAS) and is answered once the high watermark passes the records, that is
//! once every ISR member has them. If the ISR shrinks below the minimum meanwhile, the answer is
//! NOT_ENOUGH_REPLICAS_AFTER_APPEND; if leadership moves, NOT_LEADER_OR_FOLLOWER; if
//! `timeout_ms` passes, REQUEST_TIMED_OUT. The records stay written in each case.
//!
//! A producer's first transactional batch in a partition waits for its coordinator to confirm
//! that the partition is in its open transaction (KIP-890 part 1,
//! `transaction.partition.verification.enable`); one that is not gets INVALID_TXN_STATE, and
//! the check holds the connection's later produces back so they still append in order.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use weir_types::{LeaderEpoch, Offset};

use super::str_bytes;
use crate::broker::Broker;
use crate::connection::ProduceSlot;
use crate::errors::log_error_code;
use crate::partition::TxnCheck;
use crate::replica_manager::Partition;
use crate::security::authorizer::Access;
use crate::txn::verify;
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
    check: TxnCheck,
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
    slot: Option<ProduceSlot>,
) -> impl std::future::Future<Output = Vec<Appended>> {
    let me = broker.node_id();
    let (held, line) = slot.map(|s| (s.held, s.line)).unzip();
    let job = (!appends.is_empty()).then(|| {
        broker.io.run(broker.io.lane_of(peer), move || {
            // The request's bytes count against `queued.max.request.bytes` until written.
            let _held = held;
            let now = weir_log::now_ms();
            appends
                .into_iter()
                .map(|a| {
                    let mut bytes = a.records.to_vec();
                    let result = a.partition.append_produce(me, &mut bytes, now, a.check);
                    (a, result)
                })
                .collect::<Vec<Appended>>()
        })
    });
    // Queued: the connection may read its next request.
    drop(line);
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
    slot: Option<ProduceSlot>,
) -> Option<ProduceResponse> {
    let acks = request.acks;
    let checking = broker.config.transaction_partition_verification_enable;
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
                                check: if checking {
                                    TxnCheck::On(None)
                                } else {
                                    TxnCheck::Off
                                },
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
    if checking {
        if let Some(id) = request.transactional_id.as_ref() {
            let refused = check_transactions(broker, id, &mut appends, deadline).await;
            for (a, code) in refused {
                let response = &mut topics[a.topic].partition_responses[a.slot];
                *response = partition_error(response.index, code, None);
            }
        }
    }
    // acks=all answers that wait for replication.
    let mut waits: Vec<Wait> = Vec::new();
    for (a, result) in append_all(broker, peer, appends, slot).await {
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
    // The request waits for the ISR once, counted as parked while it waits.
    let _parked =
        (!waits.is_empty()).then(|| broker.requests.park(crate::metrics::Purgatory::Produce));
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

/// KIP-890 part 1: asks the coordinator about every partition where a producer's
/// transactional batch would open a transaction, and gives each confirmed one its guard. Returns
/// the appends refused, with their codes (they are taken out of `appends`).
async fn check_transactions(
    broker: &Arc<Broker>,
    transactional_id: &str,
    appends: &mut Vec<Append>,
    deadline: tokio::time::Instant,
) -> Vec<(Append, i16)> {
    // (producer, epoch) → the appends to check.
    let mut asks: std::collections::BTreeMap<(i64, i16), Vec<usize>> = Default::default();
    for (i, a) in appends.iter().enumerate() {
        let Ok(header) = weir_log::BatchHeader::parse(&a.records) else {
            continue; // the append refuses it
        };
        if !header.is_transactional() || header.is_control() {
            continue;
        }
        if let Some((producer_id, epoch)) = header.producer() {
            if a.partition.needs_txn_check(producer_id) {
                asks.entry((producer_id.0, epoch.0)).or_default().push(i);
            }
        }
    }
    if asks.is_empty() {
        return Vec::new();
    }
    let mut codes = vec![0i16; appends.len()];
    for ((producer_id, epoch), indexes) in asks {
        let producer_id = weir_types::ProducerId(producer_id);
        let guards: Vec<_> = indexes
            .iter()
            .map(|&i| appends[i].partition.begin_txn_check(producer_id))
            .collect();
        let partitions: Vec<(String, i32)> = indexes
            .iter()
            .map(|&i| (appends[i].name.clone(), appends[i].partition.index))
            .collect();
        let producer = verify::Producer {
            transactional_id,
            producer_id,
            epoch: weir_types::ProducerEpoch(epoch),
        };
        let answers =
            tokio::time::timeout_at(deadline, verify::check(broker, producer, &partitions))
                .await
                .unwrap_or_else(|_| vec![ResponseError::RequestTimedOut.code(); partitions.len()]);
        for ((&i, guard), code) in indexes.iter().zip(guards).zip(answers) {
            codes[i] = code;
            appends[i].check = TxnCheck::On(Some(guard));
        }
    }
    let mut refused = Vec::new();
    let mut kept = Vec::with_capacity(appends.len());
    for (a, code) in std::mem::take(appends).into_iter().zip(codes) {
        if code == 0 {
            kept.push(a);
        } else {
            tracing::debug!(topic = %a.name, partition = a.partition.index, code,
                "a transactional batch refused: its coordinator did not confirm the partition");
            refused.push((a, code));
        }
    }
    *appends = kept;
    refused
}

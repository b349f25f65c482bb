//! AddPartitionsToTxn: partitions join a producer's transaction at its coordinator (KIP-98).
//! v0-3 come from clients, one transaction each; v4 from brokers, a batch of transactions,
//! each either added or, with `verify_only`, checked (KIP-890's check before a transactional
//! append). A partition that does not exist or may not be written fails the request, and the
//! others are answered OPERATION_NOT_ATTEMPTED, as Kafka does.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
use weir_meta::acl::AclOperation;
use weir_types::{ProducerEpoch, ProducerId};

use crate::broker::Broker;
use crate::security::authorizer::Access;
use crate::txn::records::TopicPartition;

/// One transaction's answer: a code per partition, by topic.
fn results(codes: Vec<(TopicPartition, i16)>) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut topics: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for ((topic, partition), code) in codes {
        let result = AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(partition)
            .with_partition_error_code(code);
        match topics.last_mut() {
            Some(t) if t.name.0.as_str() == topic => t.results_by_partition.push(result),
            _ => topics.push(
                AddPartitionsToTxnTopicResult::default()
                    .with_name(kafka_protocol::messages::TopicName(super::str_bytes(topic)))
                    .with_results_by_partition(vec![result]),
            ),
        }
    }
    topics
}

/// Adds (or verifies) one transaction's partitions: a code per partition. A broker's batch
/// (v4+, authorized by ClusterAction) is not checked against the id's and topics' ACLs, as
/// Kafka does: the leader asking checked its client already.
#[allow(clippy::too_many_arguments)]
async fn one(
    broker: &Arc<Broker>,
    access: &Access,
    id: &str,
    producer_id: ProducerId,
    epoch: ProducerEpoch,
    topics: &[AddPartitionsToTxnTopic],
    verify_only: bool,
    from_broker: bool,
) -> Vec<(TopicPartition, i16)> {
    let partitions: Vec<TopicPartition> = topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), *p)))
        .collect();
    let all = |code: i16| partitions.iter().map(|tp| (tp.clone(), code)).collect();
    if !from_broker && !access.transactional_id(AclOperation::Write, id) {
        return all(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    let image = broker.image();
    let refused: Vec<(TopicPartition, i16)> = partitions
        .iter()
        .map(|(t, p)| {
            let code = if !from_broker && !access.topic(AclOperation::Write, t) {
                ResponseError::TopicAuthorizationFailed.code()
            } else if t == crate::group::OFFSETS_TOPIC || t == crate::txn::TXN_TOPIC {
                // Internal topics take part only through AddOffsetsToTxn.
                ResponseError::InvalidRequest.code()
            } else if !image
                .topic(t)
                .is_some_and(|tp| tp.partitions.contains_key(p))
            {
                ResponseError::UnknownTopicOrPartition.code()
            } else {
                0
            };
            ((t.clone(), *p), code)
        })
        .collect();
    if refused.iter().any(|(_, c)| *c != 0) {
        let skipped = ResponseError::OperationNotAttempted.code();
        return refused
            .into_iter()
            .map(|(tp, c)| (tp, if c == 0 { skipped } else { c }))
            .collect();
    }
    if verify_only {
        return match broker
            .txns
            .verify_partitions(broker, id, producer_id, epoch, &partitions)
            .await
        {
            Ok(checked) => partitions
                .into_iter()
                .zip(checked)
                .map(|(tp, r)| (tp, r.err().map_or(0, |e| e.code())))
                .collect(),
            Err(e) => all(e.code()),
        };
    }
    match broker
        .txns
        .add_partitions(broker, id, producer_id, epoch, &partitions)
        .await
    {
        Ok(()) => all(0),
        Err(e) => all(e.code()),
    }
}

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    version: i16,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    if version <= 3 {
        let codes = one(
            broker,
            access,
            &request.v3_and_below_transactional_id.0,
            ProducerId(request.v3_and_below_producer_id.0),
            ProducerEpoch(request.v3_and_below_producer_epoch),
            &request.v3_and_below_topics,
            false,
            false,
        )
        .await;
        return AddPartitionsToTxnResponse::default()
            .with_results_by_topic_v3_and_below(results(codes));
    }
    // v4: a broker's batch, which needs ClusterAction.
    if !access.cluster(AclOperation::ClusterAction) {
        return AddPartitionsToTxnResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let mut out = Vec::with_capacity(request.transactions.len());
    for t in &request.transactions {
        let codes = one(
            broker,
            access,
            &t.transactional_id.0,
            ProducerId(t.producer_id.0),
            ProducerEpoch(t.producer_epoch),
            &t.topics,
            t.verify_only,
            true,
        )
        .await;
        out.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id.clone())
                .with_topic_results(results(codes)),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(out)
}

//! A partition leader's question to a transaction coordinator before a producer's first
//! transactional batch in that partition (KIP-890 part 1): is the partition in the producer's
//! open transaction? Asked in-process when this broker coordinates the id, else with
//! AddPartitionsToTxn v4 `verify_only` over the inter-broker listener.
//!
//! The answers come back as Produce error codes: a coordinator that cannot answer now (moving,
//! loading, unreachable) becomes NOT_ENOUGH_REPLICAS, which every client retries, as Kafka
//! answers clients that predate the transaction-abortable error.

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, TopicName, TransactionalId};
use weir_types::{ProducerEpoch, ProducerId};

use super::records::TopicPartition;
use super::TXN_TOPIC;
use crate::broker::Broker;

/// The producer's transaction, as its batches name it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Producer<'a> {
    pub(crate) transactional_id: &'a str,
    pub(crate) producer_id: ProducerId,
    pub(crate) epoch: ProducerEpoch,
}

/// A coordinator's answer as a Produce error code (0: the partition is in the transaction).
fn produce_code(e: ResponseError) -> i16 {
    match e {
        ResponseError::NotCoordinator
        | ResponseError::CoordinatorNotAvailable
        | ResponseError::CoordinatorLoadInProgress
        | ResponseError::ConcurrentTransactions
        | ResponseError::NetworkException
        | ResponseError::RequestTimedOut
        | ResponseError::UnknownServerError => ResponseError::NotEnoughReplicas.code(),
        ResponseError::ProducerFenced => ResponseError::InvalidProducerEpoch.code(),
        e => e.code(),
    }
}

/// Asks the coordinator of `producer`'s transaction whether each partition is in it: a Produce
/// error code per partition, in order.
pub(crate) async fn check(
    broker: &Arc<Broker>,
    producer: Producer<'_>,
    partitions: &[TopicPartition],
) -> Vec<i16> {
    let all = |e: ResponseError| vec![produce_code(e); partitions.len()];
    let index = broker.txns.partition_of(producer.transactional_id);
    let leader = broker
        .image()
        .topic(TXN_TOPIC)
        .and_then(|t| t.partitions.get(&index))
        .and_then(|p| p.leader);
    let Some(leader) = leader else {
        return all(ResponseError::CoordinatorNotAvailable);
    };
    if leader == broker.node_id() {
        return match broker
            .txns
            .verify_partitions(
                broker,
                producer.transactional_id,
                producer.producer_id,
                producer.epoch,
                partitions,
            )
            .await
        {
            Ok(checked) => checked
                .into_iter()
                .map(|r| r.err().map_or(0, produce_code))
                .collect(),
            Err(e) => all(e),
        };
    }
    // In a task of its own: the produce may give up at its deadline, and a request cut off
    // midway would leave half a frame on the connection other checks and markers share.
    let asked = tokio::spawn(ask_remote(
        broker.clone(),
        leader,
        producer.transactional_id.to_string(),
        producer.producer_id,
        producer.epoch,
        partitions.to_vec(),
    ));
    match asked
        .await
        .unwrap_or(Err(ResponseError::UnknownServerError))
    {
        Ok(codes) => partitions
            .iter()
            .map(|tp| match codes.get(tp) {
                Some(0) => 0,
                Some(&code) => ResponseError::try_from_code(code)
                    .map_or(ResponseError::NotEnoughReplicas.code(), produce_code),
                None => ResponseError::NotEnoughReplicas.code(),
            })
            .collect(),
        Err(e) => all(e),
    }
}

/// AddPartitionsToTxn v4 with `verify_only` to the coordinator on `leader`: a code per
/// partition, or the error that failed the whole request.
async fn ask_remote(
    broker: Arc<Broker>,
    leader: weir_types::BrokerId,
    transactional_id: String,
    producer_id: ProducerId,
    epoch: ProducerEpoch,
    partitions: Vec<TopicPartition>,
) -> Result<HashMap<TopicPartition, i16>, ResponseError> {
    let transaction = AddPartitionsToTxnTransaction::default()
        .with_transactional_id(TransactionalId(crate::handlers::str_bytes(
            transactional_id,
        )))
        .with_producer_id(kafka_protocol::messages::ProducerId(producer_id.0))
        .with_producer_epoch(epoch.0)
        .with_verify_only(true)
        .with_topics(
            super::markers::by_topic(&partitions)
                .into_iter()
                .map(|(t, ps)| {
                    AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(crate::handlers::str_bytes(t.to_string())))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let request = AddPartitionsToTxnRequest::default().with_transactions(vec![transaction]);
    let response = broker
        .txn_channels
        .request(&broker, leader, &request, 4)
        .await?;
    if response.error_code != 0 {
        return Err(ResponseError::try_from_code(response.error_code)
            .unwrap_or(ResponseError::UnknownServerError));
    }
    let mut codes = HashMap::new();
    for t in response.results_by_transaction {
        for topic in t.topic_results {
            for p in topic.results_by_partition {
                codes.insert(
                    (topic.name.0.to_string(), p.partition_index),
                    p.partition_error_code,
                );
            }
        }
    }
    Ok(codes)
}

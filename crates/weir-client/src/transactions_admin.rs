//! The admin client's transaction calls, after Kafka's `kafka-transactions.sh`: list the
//! transactional ids every broker coordinates (ListTransactions), describe some at their
//! coordinators (DescribeTransactions), the producers a partition's leader knows with their
//! open transactions (DescribeProducers), and aborting a hanging transaction by writing its
//! abort marker at the partition's leader (WriteTxnMarkers).

use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    DescribeProducersRequest, DescribeTransactionsRequest, ListTransactionsRequest, ProducerId,
    TopicName, TransactionalId, WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::admin::Admin;
use crate::error::{check, Error, Result};

/// A transactional id as ListTransactions names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionListing {
    /// The transactional id.
    pub transactional_id: String,
    /// Its producer id.
    pub producer_id: i64,
    /// Kafka's state name: Empty, Ongoing, PrepareCommit, CompleteCommit, ...
    pub state: String,
    /// The broker coordinating it.
    pub coordinator: i32,
}

/// A transactional id's state at its coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionDescription {
    /// The transactional id.
    pub transactional_id: String,
    /// Kafka's state name.
    pub state: String,
    /// Its producer id and epoch.
    pub producer_id: i64,
    /// The producer's epoch.
    pub producer_epoch: i16,
    /// `transaction.timeout.ms`.
    pub timeout_ms: i32,
    /// When the open transaction began (ms since the epoch, -1 when none is open).
    pub start_time_ms: i64,
    /// The partitions of the open transaction.
    pub partitions: Vec<(String, i32)>,
}

/// A producer as a partition's leader knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerState {
    /// The producer id.
    pub producer_id: i64,
    /// Its epoch.
    pub producer_epoch: i32,
    /// The sequence of its last record (-1 when none).
    pub last_sequence: i32,
    /// The timestamp of its last record.
    pub last_timestamp: i64,
    /// The coordinator epoch of its last marker (-1 when none).
    pub coordinator_epoch: i32,
    /// The first offset of its open transaction in the partition, if any.
    pub current_txn_start_offset: Option<i64>,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

impl Admin {
    /// Every transactional id, from every broker (each answers for the ids it coordinates).
    pub async fn list_transactions(&self) -> Result<Vec<TransactionListing>> {
        let cluster = self.cluster();
        cluster.refresh(&[]).await?;
        let mut out = Vec::new();
        for broker in cluster.brokers() {
            let conn = cluster.broker(broker.node_id).await?;
            let (r, _) = conn
                .request(
                    &ListTransactionsRequest::default().with_duration_filter(-1),
                    1,
                )
                .await?;
            check(r.error_code)?;
            out.extend(
                r.transaction_states
                    .into_iter()
                    .map(|t| TransactionListing {
                        transactional_id: t.transactional_id.0.to_string(),
                        producer_id: t.producer_id.0,
                        state: t.transaction_state.to_string(),
                        coordinator: broker.node_id,
                    }),
            );
        }
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        Ok(out)
    }

    /// One transactional id's state, at its coordinator.
    pub async fn describe_transaction(&self, id: &str) -> Result<TransactionDescription> {
        let conn = self.cluster().coordinator(1, id).await?;
        let request = DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(s(id))]);
        let (r, _) = conn.request(&request, 0).await?;
        let t = r
            .transaction_states
            .into_iter()
            .next()
            .ok_or_else(|| Error::Protocol("DescribeTransactions answered nothing".into()))?;
        check(t.error_code)?;
        Ok(TransactionDescription {
            transactional_id: t.transactional_id.0.to_string(),
            state: t.transaction_state.to_string(),
            producer_id: t.producer_id.0,
            producer_epoch: t.producer_epoch,
            timeout_ms: t.transaction_timeout_ms,
            start_time_ms: t.transaction_start_time_ms,
            partitions: t
                .topics
                .into_iter()
                .flat_map(|topic| {
                    let name = topic.topic.0.to_string();
                    topic.partitions.into_iter().map(move |p| (name.clone(), p))
                })
                .collect(),
        })
    }

    /// The producers the leader of a partition knows.
    pub async fn describe_producers(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Vec<ProducerState>> {
        let cluster = self.cluster();
        cluster.refresh(&[topic.to_string()]).await?;
        let leader = cluster
            .leader(topic, partition)
            .ok_or_else(|| Error::UnknownTopic(format!("{topic}-{partition}")))?;
        let request = DescribeProducersRequest::default()
            .with_topics(vec![TopicRequest::default()
                .with_name(TopicName(s(topic)))
                .with_partition_indexes(vec![partition])]);
        let (r, _) = cluster.broker(leader).await?.request(&request, 0).await?;
        let p = r
            .topics
            .into_iter()
            .flat_map(|t| t.partitions)
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| Error::Protocol("DescribeProducers answered nothing".into()))?;
        check(p.error_code)?;
        Ok(p.active_producers
            .into_iter()
            .map(|a| ProducerState {
                producer_id: a.producer_id.0,
                producer_epoch: a.producer_epoch,
                last_sequence: a.last_sequence,
                last_timestamp: a.last_timestamp,
                coordinator_epoch: a.coordinator_epoch,
                current_txn_start_offset: (a.current_txn_start_offset >= 0)
                    .then_some(a.current_txn_start_offset),
            })
            .collect())
    }

    /// Aborts a producer's open transaction in one partition by writing its abort marker at
    /// the partition's leader (for a hanging transaction its coordinator no longer knows).
    pub async fn abort_transaction(
        &self,
        topic: &str,
        partition: i32,
        producer: &ProducerState,
    ) -> Result<()> {
        let cluster = self.cluster();
        let leader = cluster
            .leader(topic, partition)
            .ok_or_else(|| Error::UnknownTopic(format!("{topic}-{partition}")))?;
        let marker = WritableTxnMarker::default()
            .with_producer_id(ProducerId(producer.producer_id))
            .with_producer_epoch(producer.producer_epoch as i16)
            .with_transaction_result(false)
            .with_coordinator_epoch(producer.coordinator_epoch)
            .with_topics(vec![WritableTxnMarkerTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partition_indexes(vec![partition])]);
        let request = WriteTxnMarkersRequest::default().with_markers(vec![marker]);
        let (r, _) = cluster.broker(leader).await?.request(&request, 1).await?;
        for m in r.markers {
            for t in m.topics {
                for p in t.partitions {
                    check(p.error_code)?;
                }
            }
        }
        Ok(())
    }
}

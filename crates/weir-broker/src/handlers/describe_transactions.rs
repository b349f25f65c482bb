//! DescribeTransactions: the state of transactional ids at their coordinator (this broker):
//! state, timeout, start, producer id and epoch, and the partitions of the open transaction.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};
use weir_meta::acl::AclOperation;

use super::str_bytes;
use crate::broker::Broker;
use crate::security::authorizer::Access;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let mut out = Vec::with_capacity(request.transactional_ids.len());
    for id in request.transactional_ids {
        let base = TransactionState::default()
            .with_transactional_id(id.clone())
            .with_transaction_state(str_bytes(""))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
            .with_transaction_start_time_ms(-1);
        if !access.transactional_id(AclOperation::Describe, &id.0) {
            out.push(
                base.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code()),
            );
            continue;
        }
        if let Err(e) = broker.txns.ready_for(broker, &id.0).await {
            out.push(base.with_error_code(e.code()));
            continue;
        }
        let Some(m) = broker.txns.describe(&id.0) else {
            out.push(base.with_error_code(ResponseError::TransactionalIdNotFound.code()));
            continue;
        };
        let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (t, p) in &m.partitions {
            topics.entry(t.clone()).or_default().push(*p);
        }
        out.push(
            base.with_transaction_state(str_bytes(m.state.name()))
                .with_transaction_timeout_ms(m.timeout_ms)
                .with_transaction_start_time_ms(m.start_ms)
                .with_producer_id(ProducerId(m.producer_id.0))
                .with_producer_epoch(m.producer_epoch.0)
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(t, ps)| {
                            TopicData::default()
                                .with_topic(TopicName(str_bytes(t)))
                                .with_partitions(ps)
                        })
                        .collect(),
                ),
        );
    }
    DescribeTransactionsResponse::default().with_transaction_states(out)
}

//! ListTransactions: the transactional ids this broker coordinates (an admin client asks every
//! broker), filtered by state, producer id, and (v1+) by how long they have been open. Ids the
//! principal may not describe are left out.

use std::sync::Arc;

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};
use weir_meta::acl::AclOperation;

use super::str_bytes;
use crate::broker::Broker;
use crate::security::authorizer::Access;
use crate::txn::records::TxnState;

const STATES: [&str; 8] = [
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "CompleteCommit",
    "CompleteAbort",
    "Dead",
    "PrepareEpochFence",
];

pub(crate) fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    version: i16,
    request: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let unknown: Vec<_> = request
        .state_filters
        .iter()
        .filter(|s| !STATES.contains(&s.as_str()))
        .cloned()
        .collect();
    let now = weir_log::now_ms();
    let min_open_ms = if version >= 1 {
        request.duration_filter
    } else {
        -1
    };
    let states = broker
        .txns
        .snapshot()
        .into_iter()
        .filter(|(id, _)| access.transactional_id(AclOperation::Describe, id))
        .filter(|(_, m)| {
            request.state_filters.is_empty()
                || request
                    .state_filters
                    .iter()
                    .any(|s| s.as_str() == m.state.name())
        })
        .filter(|(_, m)| {
            request.producer_id_filters.is_empty()
                || request
                    .producer_id_filters
                    .iter()
                    .any(|p| p.0 == m.producer_id.0)
        })
        .filter(|(_, m)| {
            min_open_ms < 0
                || (m.state == TxnState::Ongoing && now.saturating_sub(m.start_ms) >= min_open_ms)
        })
        .map(|(id, m)| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(str_bytes(id)))
                .with_producer_id(ProducerId(m.producer_id.0))
                .with_transaction_state(str_bytes(m.state.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(states)
}

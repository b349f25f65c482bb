//! EndTxn: the producer commits or aborts its transaction. Answered once the coordinator has
//! written PrepareCommit or PrepareAbort; the markers follow.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};
use weir_meta::acl::AclOperation;
use weir_types::{ProducerEpoch, ProducerId};

use crate::broker::Broker;
use crate::security::authorizer::Access;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    request: EndTxnRequest,
) -> EndTxnResponse {
    let id = request.transactional_id.0.as_str();
    let code = if !access.transactional_id(AclOperation::Write, id) {
        ResponseError::TransactionalIdAuthorizationFailed.code()
    } else {
        match broker
            .txns
            .end_txn(
                broker,
                id,
                ProducerId(request.producer_id.0),
                ProducerEpoch(request.producer_epoch),
                request.committed,
            )
            .await
        {
            Ok(()) => 0,
            Err(e) => e.code(),
        }
    };
    EndTxnResponse::default()
        .with_error_code(code)
        .with_producer_id(kafka_protocol::messages::ProducerId(-1))
        .with_producer_epoch(-1)
}

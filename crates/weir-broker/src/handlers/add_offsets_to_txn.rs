//! AddOffsetsToTxn: the group's partition of `__consumer_offsets` joins the producer's
//! transaction, so that its TxnOffsetCommit is settled by the transaction's markers.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use weir_meta::acl::AclOperation;
use weir_types::{ProducerEpoch, ProducerId};

use crate::broker::Broker;
use crate::group::OFFSETS_TOPIC;
use crate::security::authorizer::Access;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let id = request.transactional_id.0.as_str();
    let group = request.group_id.0.as_str();
    let code = if !access.transactional_id(AclOperation::Write, id) {
        ResponseError::TransactionalIdAuthorizationFailed.code()
    } else if !access.group(AclOperation::Read, group) {
        ResponseError::GroupAuthorizationFailed.code()
    } else {
        let partition = (OFFSETS_TOPIC.to_string(), broker.groups.partition_of(group));
        match broker
            .txns
            .add_partitions(
                broker,
                id,
                ProducerId(request.producer_id.0),
                ProducerEpoch(request.producer_epoch),
                &[partition],
            )
            .await
        {
            Ok(()) => 0,
            Err(e) => e.code(),
        }
    };
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

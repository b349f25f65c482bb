//! InitProducerId: a new producer id for an idempotent producer (KIP-98), or its own with the
//! epoch bumped when it asks (KIP-360), and for a transactional one its id and a bumped epoch
//! from its transaction coordinator (`txn/`).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::broker::Broker;
use crate::errors::meta_error_code;
use crate::security::authorizer::Access;
use weir_meta::acl::{AclOperation, ResourceType};

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if request
        .transactional_id
        .as_ref()
        .is_some_and(|id| id.0.is_empty())
    {
        // Kafka: a transactional id is either null (idempotence only) or non-empty.
        return response.with_error_code(ResponseError::InvalidRequest.code());
    }
    if let Some(id) = &request.transactional_id {
        if !access.transactional_id(AclOperation::Write, &id.0) {
            return response
                .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
        }
    } else if !access.cluster(AclOperation::IdempotentWrite)
        && !access.any(AclOperation::Write, ResourceType::Topic)
    {
        // An idempotent producer needs IdempotentWrite on the cluster, or Write on some topic
        // (KIP-679).
        return response.with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    if let Some(id) = &request.transactional_id {
        if id.0.len() > i16::MAX as usize {
            // __transaction_state keys hold the id with a 16-bit length, as Kafka's.
            return response.with_error_code(ResponseError::InvalidRequest.code());
        }
        let expected = (request.producer_id.0 >= 0 && request.producer_epoch >= 0).then_some((
            weir_types::ProducerId(request.producer_id.0),
            weir_types::ProducerEpoch(request.producer_epoch),
        ));
        return match broker
            .txns
            .init_producer_id(broker, &id.0, request.transaction_timeout_ms, expected)
            .await
        {
            Ok((pid, epoch)) => response
                .with_producer_id(ProducerId(pid.0))
                .with_producer_epoch(epoch.0),
            Err(e) => response.with_error_code(e.code()),
        };
    }
    // An idempotent producer that asks to bump its own epoch (KIP-360) keeps its id while the
    // epoch has room. (Kafka hands out a new id instead; librdkafka's idempotent producer,
    // bumping its epoch through broker faults, then wrote duplicates in the fault suite.)
    if request.producer_id.0 >= 0
        && request.producer_epoch >= 0
        && request.producer_epoch < i16::MAX - 1
    {
        return response
            .with_producer_id(request.producer_id)
            .with_producer_epoch(request.producer_epoch + 1);
    }
    match broker.allocate_producer_id().await {
        Ok(id) => response
            .with_producer_id(ProducerId(id.0))
            .with_producer_epoch(0),
        Err(e) => response.with_error_code(meta_error_code(&e)),
    }
}

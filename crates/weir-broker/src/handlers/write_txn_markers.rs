//! WriteTxnMarkers: a transaction coordinator on another broker asks this one, the leader of
//! some of a transaction's partitions, to write its commit or abort markers there. Only a
//! principal with ClusterAction may (the brokers themselves).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use weir_meta::acl::AclOperation;
use weir_types::{ProducerEpoch, ProducerId};

use crate::broker::Broker;
use crate::security::authorizer::Access;
use crate::txn::markers::{self, MarkerAsk};

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    request: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let allowed = access.cluster(AclOperation::ClusterAction);
    let mut out = Vec::with_capacity(request.markers.len());
    for m in request.markers {
        let partitions: Vec<(String, i32)> = m
            .topics
            .iter()
            .flat_map(|t| {
                t.partition_indexes
                    .iter()
                    .map(|p| (t.name.0.to_string(), *p))
            })
            .collect();
        let codes = if allowed {
            let ask = MarkerAsk {
                producer_id: ProducerId(m.producer_id.0),
                producer_epoch: ProducerEpoch(m.producer_epoch),
                commit: m.transaction_result,
                coordinator_epoch: m.coordinator_epoch,
            };
            markers::write_local(broker, ask, &partitions).await
        } else {
            let code = ResponseError::ClusterAuthorizationFailed.code();
            partitions.into_iter().map(|tp| (tp, code)).collect()
        };
        let mut topics: Vec<WritableTxnMarkerTopicResult> = Vec::new();
        for ((topic, partition), code) in codes {
            let result = WritableTxnMarkerPartitionResult::default()
                .with_partition_index(partition)
                .with_error_code(code);
            match topics.last_mut() {
                Some(t) if t.name.0.as_str() == topic => t.partitions.push(result),
                _ => topics.push(
                    WritableTxnMarkerTopicResult::default()
                        .with_name(TopicName(super::str_bytes(topic)))
                        .with_partitions(vec![result]),
                ),
            }
        }
        out.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(topics),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(out)
}

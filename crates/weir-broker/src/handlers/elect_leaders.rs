//! ElectLeaders (KIP-183, KIP-460): a preferred or unclean election for named partitions, or for
//! every partition when none are named. The active controller decides; each partition is answered
//! on its own.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use weir_meta::{ControllerOp, Election, Outcome};

use super::str_bytes;
use crate::broker::Broker;
use crate::errors::meta_error_code;

/// `election_type` values of v1+ (v0 asks for preferred elections only).
const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: ElectLeadersRequest,
) -> ElectLeadersResponse {
    let preferred = match request.election_type {
        PREFERRED => true,
        UNCLEAN => false,
        other => {
            return refuse(
                ResponseError::InvalidRequest.code(),
                format!("unknown election type {other} (0 = preferred, 1 = unclean)"),
            )
        }
    };
    let partitions: Option<Vec<(String, i32)>> = request.topic_partitions.map(|topics| {
        topics
            .into_iter()
            .flat_map(|t| {
                let name = t.topic.0.to_string();
                t.partitions.into_iter().map(move |p| (name.clone(), p))
            })
            .collect()
    });
    let mut named = partitions.clone().unwrap_or_default();
    named.sort();
    named.dedup();
    let op = ControllerOp::ElectLeaders {
        partitions,
        preferred,
    };
    match broker.controller_op(op).await {
        Ok(reply) => match reply.outcome {
            Outcome::Elections(results) => answer(results),
            other => refuse(
                ResponseError::UnknownServerError.code(),
                format!("unexpected controller answer {other:?}"),
            ),
        },
        // The controller could not be reached: every partition named carries the error, and
        // v1+ the top-level code too (v0 has none; setting it would fail to encode).
        Err(e) => {
            let each = named
                .into_iter()
                .map(|(topic, partition)| Election {
                    topic,
                    partition,
                    error: Some(e.clone()),
                })
                .collect();
            let response = answer(each);
            if version >= 1 {
                response.with_error_code(meta_error_code(&e))
            } else {
                response
            }
        }
    }
}

/// Groups per-partition results by topic, keeping the order they came in.
fn answer(results: Vec<Election>) -> ElectLeadersResponse {
    let mut topics: Vec<ReplicaElectionResult> = Vec::new();
    for e in results {
        let result = match e.error {
            None => PartitionResult::default().with_partition_id(e.partition),
            Some(err) => PartitionResult::default()
                .with_partition_id(e.partition)
                .with_error_code(meta_error_code(&err))
                .with_error_message(Some(str_bytes(err.to_string()))),
        };
        match topics.last_mut() {
            Some(t) if t.topic.0.as_str() == e.topic => t.partition_result.push(result),
            _ => topics.push(
                ReplicaElectionResult::default()
                    .with_topic(TopicName(str_bytes(e.topic)))
                    .with_partition_result(vec![result]),
            ),
        }
    }
    ElectLeadersResponse::default().with_replica_election_results(topics)
}

/// The request itself is wrong (v1+ only: v0 cannot name an election type, so a v0 request
/// never gets here).
fn refuse(code: i16, message: String) -> ElectLeadersResponse {
    tracing::debug!(code, %message, "ElectLeaders refused");
    ElectLeadersResponse::default().with_error_code(code)
}

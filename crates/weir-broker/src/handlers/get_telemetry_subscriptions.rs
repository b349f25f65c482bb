//! GetTelemetrySubscriptions (KIP-714): Weir collects no client metrics, so every client gets a
//! subscription that requests none, which tells it not to push (PushTelemetry is not offered)
//! and to ask again after the push interval. A client without an instance id gets one.

use kafka_protocol::messages::{
    GetTelemetrySubscriptionsRequest, GetTelemetrySubscriptionsResponse,
};

/// How often a client asks again (Kafka's default push interval, 5 minutes).
const PUSH_INTERVAL_MS: i32 = 300_000;
/// Kafka's default `telemetry.max.bytes`.
const TELEMETRY_MAX_BYTES: i32 = 1024 * 1024;
/// The one (empty) subscription: it never changes.
const SUBSCRIPTION_ID: i32 = 0;

pub(crate) fn handle(
    request: GetTelemetrySubscriptionsRequest,
) -> GetTelemetrySubscriptionsResponse {
    let id = if request.client_instance_id.is_nil() {
        uuid::Uuid::new_v4()
    } else {
        request.client_instance_id
    };
    GetTelemetrySubscriptionsResponse::default()
        .with_client_instance_id(id)
        .with_subscription_id(SUBSCRIPTION_ID)
        .with_push_interval_ms(PUSH_INTERVAL_MS)
        .with_telemetry_max_bytes(TELEMETRY_MAX_BYTES)
        .with_delta_temporality(true)
        .with_requested_metrics(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_client_gets_an_id_and_no_metrics_are_requested() {
        let answer = handle(GetTelemetrySubscriptionsRequest::default());
        assert!(!answer.client_instance_id.is_nil());
        assert!(answer.requested_metrics.is_empty());
        assert_eq!(answer.error_code, 0);
        let known = uuid::Uuid::new_v4();
        let again =
            handle(GetTelemetrySubscriptionsRequest::default().with_client_instance_id(known));
        assert_eq!(again.client_instance_id, known);
        assert_eq!(again.subscription_id, answer.subscription_id);
    }
}

//! ApiVersions: the versions of every API this broker implements, from the registry (KIP-35,
//! KIP-511), and (v3) the features it supports with their finalized levels (KIP-584). Optional
//! tagged fields at their defaults are not written, which librdkafka 2.0 needs. A feature
//! finalized at level 0 is not listed as finalized, and with `group.version` at 0 the consumer
//! group protocol's APIs are not offered.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiVersionsResponse;

use kafka_protocol::messages::api_versions_response::{FinalizedFeatureKey, SupportedFeatureKey};
use kafka_protocol::messages::ApiKey;
use weir_meta::features::{self, GROUP_VERSION};
use weir_meta::MetadataImage;

use super::str_bytes;
use crate::apis::APIS;

/// Whether `api` is served under the image's feature levels.
pub(crate) fn offered(image: &MetadataImage, api: ApiKey) -> bool {
    !matches!(
        api,
        ApiKey::ConsumerGroupHeartbeat | ApiKey::ConsumerGroupDescribe
    ) || features::level(&image.features, GROUP_VERSION) >= 1
}

fn versions(image: Option<&MetadataImage>) -> Vec<ApiVersion> {
    APIS.iter()
        .filter(|s| image.is_none_or(|i| offered(i, s.key)))
        .map(|s| {
            ApiVersion::default()
                .with_api_key(s.key as i16)
                .with_min_version(s.min)
                .with_max_version(s.max)
        })
        .collect()
}

pub(crate) fn handle(image: &MetadataImage) -> ApiVersionsResponse {
    let supported = features::SUPPORTED
        .iter()
        .map(|f| {
            // Before ApiVersions v4 (KAFKA-17011) a supported range may not start at 0.
            SupportedFeatureKey::default()
                .with_name(str_bytes(f.name))
                .with_min_version(f.min.max(1))
                .with_max_version(f.max)
        })
        .collect();
    let finalized = features::SUPPORTED
        .iter()
        .map(|f| (f.name, features::level(&image.features, f.name)))
        .filter(|(_, level)| *level >= 1)
        .map(|(name, level)| {
            FinalizedFeatureKey::default()
                .with_name(str_bytes(name))
                .with_min_version_level(level)
                .with_max_version_level(level)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_api_keys(versions(Some(image)))
        .with_supported_features(supported)
        .with_finalized_features_epoch(i64::try_from(image.version).unwrap_or(i64::MAX))
        .with_finalized_features(finalized)
}

/// The answer to an ApiVersions request of a version we do not support.
pub(crate) fn unsupported() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(versions(None))
}

/// The answer to a consumer-group-protocol request while `group.version` is 0: each group
/// asked about, and the heartbeat, refused with UNSUPPORTED_VERSION.
pub(crate) fn protocol_off(
    request: kafka_protocol::messages::RequestKind,
) -> kafka_protocol::messages::ResponseKind {
    use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
    use kafka_protocol::messages::{
        ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatResponse, RequestKind, ResponseKind,
    };
    let code = ResponseError::UnsupportedVersion.code();
    let message = || {
        Some(str_bytes(
            "group.version is 0: the consumer group protocol is off",
        ))
    };
    match request {
        RequestKind::ConsumerGroupDescribe(r) => ResponseKind::ConsumerGroupDescribe(
            ConsumerGroupDescribeResponse::default().with_groups(
                r.group_ids
                    .into_iter()
                    .map(|g| {
                        DescribedGroup::default()
                            .with_group_id(g)
                            .with_error_code(code)
                            .with_error_message(message())
                    })
                    .collect(),
            ),
        ),
        _ => ResponseKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatResponse::default()
                .with_error_code(code)
                .with_error_message(message()),
        ),
    }
}

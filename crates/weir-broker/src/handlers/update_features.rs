//! UpdateFeatures (KIP-584): finalizes feature levels through the controller. Needs Alter on
//! the cluster. Every update is checked first; if one is refused, none is applied, as Kafka's
//! controller does. v0 says a downgrade with `allow_downgrade`, v1 with `upgrade_type`.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::update_features_response::UpdatableFeatureResult;
use kafka_protocol::messages::{UpdateFeaturesRequest, UpdateFeaturesResponse};
use weir_meta::acl::AclOperation;
use weir_meta::features::{check_update, UpgradeType};
use weir_meta::ControllerOp;

use super::str_bytes;
use crate::broker::Broker;
use crate::errors::meta_error_code;
use crate::security::authorizer::Access;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    version: i16,
    request: UpdateFeaturesRequest,
) -> UpdateFeaturesResponse {
    if !access.cluster(AclOperation::Alter) {
        return UpdateFeaturesResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(str_bytes("Alter on the cluster is not allowed")));
    }
    let image = broker.image();
    let mut checked = Vec::new();
    let mut results = Vec::new();
    let mut refused = false;
    for u in &request.feature_updates {
        let name = u.feature.to_string();
        let how = if version == 0 {
            Some(if u.allow_downgrade {
                UpgradeType::SafeDowngrade
            } else {
                UpgradeType::Upgrade
            })
        } else {
            UpgradeType::from_wire(u.upgrade_type)
        };
        let outcome = match how {
            None => Err(format!("unknown upgrade type {}", u.upgrade_type)),
            Some(_) if checked.iter().any(|(n, _, _)| *n == name) => {
                Err(format!("the feature '{name}' appears twice"))
            }
            Some(how) => {
                check_update(&image.features, &name, u.max_version_level, how).map(|_| how)
            }
        };
        let result = UpdatableFeatureResult::default().with_feature(u.feature.clone());
        match outcome {
            Ok(how) => {
                checked.push((name, u.max_version_level, how));
                results.push(result);
            }
            Err(why) => {
                refused = true;
                results.push(
                    result
                        .with_error_code(ResponseError::InvalidUpdateVersion.code())
                        .with_error_message(Some(str_bytes(why))),
                );
            }
        }
    }
    let (code, message) = if refused || request.validate_only || checked.is_empty() {
        (0, None)
    } else {
        match broker
            .controller_op(ControllerOp::UpdateFeatures { updates: checked })
            .await
        {
            Ok(_) => (0, None),
            Err(e) => (meta_error_code(&e), Some(e.to_string())),
        }
    };
    if refused {
        // The valid ones are not applied either.
        for r in results.iter_mut().filter(|r| r.error_code == 0) {
            r.error_code = ResponseError::InvalidUpdateVersion.code();
            r.error_message = Some(str_bytes(
                "not applied: another update of the request was refused",
            ));
        }
    } else if code != 0 {
        for r in results.iter_mut() {
            r.error_code = code;
            r.error_message = message.clone().map(str_bytes);
        }
    }
    UpdateFeaturesResponse::default()
        .with_error_code(code)
        .with_error_message(message.map(str_bytes))
        .with_results(results)
}

//! ConsumerGroupDescribe (KIP-848): a consumer group's epochs, assignor and members, each with
//! its subscription, current assignment and target. A group that is unknown or classic is
//! GROUP_ID_NOT_FOUND, as Kafka answers.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, TopicName,
};

use super::str_bytes;
use crate::broker::Broker;
use crate::group::coordinator::consumer;
use crate::security::authorizer::Access;
use weir_meta::acl::AclOperation;
use weir_meta::MetadataImage;

/// MemberType (v1): a member of the classic protocol in a consumer group, or of the new one.
const CLASSIC_MEMBER: i8 = 0;
const CONSUMER_MEMBER: i8 = 1;

fn assignment(image: &MetadataImage, a: &consumer::Assignment) -> Assignment {
    Assignment::default().with_topic_partitions(
        a.iter()
            .filter(|(_, parts)| !parts.is_empty())
            .map(|(name, parts)| {
                TopicPartitions::default()
                    .with_topic_id(image.topic(name).map(|t| t.topic_id).unwrap_or_default())
                    .with_topic_name(TopicName(str_bytes(name.clone())))
                    .with_partitions(parts.iter().copied().collect())
            })
            .collect(),
    )
}

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    version: i16,
    request: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let mut groups = Vec::with_capacity(request.group_ids.len());
    for id in request.group_ids {
        let base = DescribedGroup::default().with_group_id(id.clone());
        if !access.group(AclOperation::Describe, &id.0) {
            groups.push(
                base.with_error_code(ResponseError::GroupAuthorizationFailed.code())
                    .with_error_message(Some(str_bytes(format!(
                        "not allowed to describe group {}",
                        id.0
                    )))),
            );
            continue;
        }
        let g = match broker.groups.describe_consumer_group(broker, &id.0).await {
            Ok(g) => g,
            Err(e) => {
                let message = match e {
                    ResponseError::GroupIdNotFound => {
                        format!("group {} is not a consumer group", id.0)
                    }
                    other => format!("{other:?}"),
                };
                groups.push(
                    base.with_error_code(e.code())
                        .with_error_message(Some(str_bytes(message))),
                );
                continue;
            }
        };
        let image = broker.image();
        let members = g
            .members
            .values()
            .map(|m| {
                let target = g.target.get(&m.member_id).cloned().unwrap_or_default();
                let member = Member::default()
                    .with_member_id(str_bytes(m.member_id.clone()))
                    .with_instance_id(m.instance_id.clone().map(str_bytes))
                    .with_rack_id(m.rack_id.clone().map(str_bytes))
                    .with_member_epoch(m.epoch)
                    .with_client_id(str_bytes(m.client_id.clone()))
                    .with_client_host(str_bytes(m.client_host.clone()))
                    .with_subscribed_topic_names(
                        m.subscribed
                            .iter()
                            .map(|t| TopicName(str_bytes(t.clone())))
                            .collect(),
                    )
                    .with_subscribed_topic_regex(m.regex.clone().map(str_bytes))
                    .with_assignment(assignment(&image, &m.assigned))
                    .with_target_assignment(assignment(&image, &target));
                if version >= 1 {
                    member.with_member_type(if m.classic.is_some() {
                        CLASSIC_MEMBER
                    } else {
                        CONSUMER_MEMBER
                    })
                } else {
                    member
                }
            })
            .collect();
        groups.push(
            base.with_group_state(str_bytes(g.state_name()))
                .with_group_epoch(g.epoch)
                .with_assignment_epoch(g.assignment_epoch)
                .with_assignor_name(str_bytes(g.assignor.clone()))
                .with_members(members)
                .with_authorized_operations(i32::MIN),
        );
    }
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}

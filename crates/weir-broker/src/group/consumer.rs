//! Drives the KIP-848 side of the coordinator: ConsumerGroupHeartbeat and ConsumerGroupDescribe
//! reach the state machine (`coordinator/consumer.rs`) here, with the cluster's topics as the
//! metadata image shows them.
//!
//! What the state machine asks to persist (a consumer group's snapshot, `Output::PersistConsumer`)
//! is written to the group's partition of `__consumer_offsets` like every group record, and
//! read back by a new coordinator.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;

use super::coordinator::consumer::{ConsumerGroup, HeartbeatRequest, HeartbeatResult, Topics};
use super::GroupManager;
use crate::broker::Broker;

impl GroupManager {
    pub(crate) async fn consumer_heartbeat(
        &self,
        broker: &Arc<Broker>,
        req: HeartbeatRequest,
        version: i16,
    ) -> HeartbeatResult {
        if req.group_id.is_empty() {
            return HeartbeatResult::error(
                ResponseError::InvalidRequest,
                "GroupId can't be empty.",
            );
        }
        if let Err(e) = self.ready_for(broker, &req.group_id).await {
            return HeartbeatResult::error(e, format!("{e:?}"));
        }
        let topics = Self::topics_now(broker);
        let mut inner = self.lock();
        if let Err(e) = self.check_ready(broker, &inner, &req.group_id) {
            return HeartbeatResult::error(e, format!("{e:?}"));
        }
        inner.coordinator.set_topics(topics);
        let (result, outputs) =
            inner
                .coordinator
                .consumer_heartbeat(req, version, weir_log::now_ms());
        self.handle_outputs(broker, &mut inner, outputs);
        result
    }

    /// The cluster's topics and their partition counts, as consumer groups assign them.
    pub(super) fn topics_now(broker: &Broker) -> Topics {
        broker
            .image()
            .topics()
            .map(|t| (t.name.clone(), t.partitions.len() as i32))
            .collect()
    }

    /// A consumer group's state for ConsumerGroupDescribe: GROUP_ID_NOT_FOUND when the group
    /// is unknown or classic.
    pub(crate) async fn describe_consumer_group(
        &self,
        broker: &Arc<Broker>,
        group: &str,
    ) -> Result<ConsumerGroup, ResponseError> {
        self.ready_for(broker, group).await?;
        let inner = self.lock();
        self.check_ready(broker, &inner, group)?;
        inner
            .coordinator
            .groups
            .get(group)
            .and_then(|g| g.consumer.clone())
            .ok_or(ResponseError::GroupIdNotFound)
    }

    /// OffsetFetch v9 from a member of a consumer group: it must be there at its epoch.
    pub(crate) fn check_fetch_member(
        &self,
        group: &str,
        member_id: &str,
        epoch: i32,
    ) -> Result<(), ResponseError> {
        self.lock()
            .coordinator
            .check_fetch_member(group, member_id, epoch)
    }
}

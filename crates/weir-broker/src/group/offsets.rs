//! Committed offsets through the coordinator: OffsetCommit (checked, written to
//! `__consumer_offsets`, answered once replicated) and OffsetFetch.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use weir_types::{LeaderEpoch, Offset};

use super::coordinator::Coordinator;
use super::records::{self, OffsetValue};
use super::{AfterWrite, GroupManager, TopicOffsets, OFFSET_METADATA_MAX_BYTES};
use crate::broker::Broker;
use crate::replica_manager::Partition;

/// Records written to `__consumer_offsets` that a request waits on before its answer.
#[derive(Debug)]
pub(crate) struct Durable {
    pub(super) partition: Arc<Partition>,
    pub(super) epoch: LeaderEpoch,
    pub(super) last_offset: Offset,
}

/// How long a commit waits for `__consumer_offsets` to replicate it.
pub(super) const COMMIT_REPLICATION_TIMEOUT: Duration = Duration::from_secs(5);

impl Durable {
    /// Waits until every ISR member holds the records; the group error code if not, mapped as
    /// Kafka maps them for commits.
    pub(crate) async fn wait(&self, broker: &Broker) -> i16 {
        let deadline = tokio::time::Instant::now() + COMMIT_REPLICATION_TIMEOUT;
        let code = self
            .partition
            .wait_replicated(broker.node_id(), self.epoch, self.last_offset, deadline)
            .await;
        match code {
            0 => 0,
            c if c == ResponseError::NotLeaderOrFollower.code() => {
                ResponseError::NotCoordinator.code()
            }
            _ => ResponseError::CoordinatorNotAvailable.code(),
        }
    }
}

/// One partition's commit in an OffsetCommit request.
#[derive(Debug, Clone)]
pub(crate) struct CommitEntry {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) leader_epoch: i32,
    pub(crate) metadata: Option<String>,
}

impl GroupManager {
    /// OffsetCommit: one error code per entry, and what to wait on before answering (the
    /// commit is durable once `__consumer_offsets` replicated it, as acks=all). The offsets
    /// enter memory once written, in log order, before the answer.
    pub(crate) async fn commit(
        &self,
        broker: &Arc<Broker>,
        group: &str,
        generation: i32,
        member: &str,
        instance: Option<&str>,
        entries: &[CommitEntry],
    ) -> (Vec<i16>, Option<Durable>) {
        if let Err(e) = self.ready_for(broker, group).await {
            return (vec![e.code(); entries.len()], None);
        }
        let now = weir_log::now_ms();
        let (codes, written) = {
            let mut inner = self.lock();
            if let Err(e) = self.check_ready(broker, &inner, group).and_then(|()| {
                inner
                    .coordinator
                    .check_commit(group, generation, member, instance, now)
            }) {
                return (vec![e.code(); entries.len()], None);
            }
            let (codes, accepted) = check_entries(broker, entries, now);
            let records = accepted
                .iter()
                .map(|((t, p), v)| {
                    (
                        records::offset_key(group, t, *p),
                        Some(records::offset_value(v)),
                    )
                })
                .collect();
            let keys: Vec<(String, i32)> = accepted.iter().map(|(k, _)| k.clone()).collect();
            let token = inner.coordinator.begin_commit(group, &keys);
            let name = group.to_string();
            let store: AfterWrite = Box::new(move |c: &mut Coordinator, written| {
                c.finish_commit(&name, token, accepted, written)
            });
            // Queued under the lock: commits reach the log in the order they were checked.
            (codes, self.write(broker, group, records, Some(store)))
        };
        match written.await {
            Err(err) => {
                let codes = codes
                    .into_iter()
                    .map(|c| if c == 0 { err.code() } else { c })
                    .collect();
                (codes, None)
            }
            Ok(durable) => (codes, durable),
        }
    }

    /// Committed offsets of a group: all of them, or those asked for (-1 where none).
    pub(crate) async fn fetch_offsets(
        &self,
        broker: &Arc<Broker>,
        group: &str,
        wanted: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<TopicOffsets, ResponseError> {
        self.ready_for(broker, group).await?;
        let inner = self.lock();
        let offsets = inner
            .coordinator
            .groups
            .get(group)
            .map(|g| g.offsets.clone())
            .unwrap_or_default();
        Ok(match wanted {
            Some(topics) => topics
                .into_iter()
                .map(|(t, parts)| {
                    let list = parts
                        .into_iter()
                        .map(|p| (p, offsets.get(&(t.clone(), p)).cloned()))
                        .collect();
                    (t, list)
                })
                .collect(),
            None => {
                let mut by_topic: TopicOffsets = Vec::new();
                for ((t, p), v) in offsets {
                    match by_topic.last_mut() {
                        Some((last, list)) if *last == t => list.push((p, Some(v))),
                        _ => by_topic.push((t, vec![(p, Some(v))])),
                    }
                }
                by_topic
            }
        })
    }
}

/// A committed offset that passed the checks: its partition and stored value.
pub(crate) type AcceptedOffset = ((String, i32), OffsetValue);

/// The checks every committed offset passes (its partition exists, its metadata is within
/// `offset.metadata.max.bytes`): a code per entry, and the accepted ones as stored values.
pub(crate) fn check_entries(
    broker: &Broker,
    entries: &[CommitEntry],
    now: i64,
) -> (Vec<i16>, Vec<AcceptedOffset>) {
    let image = broker.image();
    let mut codes = Vec::with_capacity(entries.len());
    let mut accepted = Vec::new();
    for e in entries {
        let exists = image
            .topic(&e.topic)
            .is_some_and(|t| t.partitions.contains_key(&e.partition));
        let code = if !exists {
            ResponseError::UnknownTopicOrPartition.code()
        } else if e
            .metadata
            .as_ref()
            .is_some_and(|m| m.len() > OFFSET_METADATA_MAX_BYTES)
        {
            ResponseError::OffsetMetadataTooLarge.code()
        } else {
            let value = OffsetValue {
                offset: e.offset,
                leader_epoch: e.leader_epoch,
                metadata: e.metadata.clone().unwrap_or_default(),
                commit_timestamp: now,
            };
            accepted.push(((e.topic.clone(), e.partition), value));
            0
        };
        codes.push(code);
    }
    (codes, accepted)
}

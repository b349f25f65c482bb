//! TxnOffsetCommit's driver side (KIP-98, KIP-447): a transaction's offsets are written to the
//! group's `__consumer_offsets` partition as a transactional batch of the producer (so a
//! fenced producer's write is refused by the log's producer state), then held pending until
//! the transaction's marker reaches that partition ([`GroupManager::complete_txn`]).

use std::sync::Arc;

use bytes::BytesMut;
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use weir_log::LogError;
use weir_types::{ProducerEpoch, ProducerId};

use super::records::{self, OffsetValue};
use super::{CommitEntry, GroupManager, OFFSETS_TOPIC};
use crate::broker::Broker;

/// Who commits: the transaction's producer, and the group member it speaks for (KIP-447; a
/// generation of -1 and no member skip the member checks, as before KIP-447).
#[derive(Debug, Clone)]
pub(crate) struct TxnCommitter {
    pub(crate) producer_id: ProducerId,
    pub(crate) producer_epoch: ProducerEpoch,
    pub(crate) generation: i32,
    pub(crate) member: String,
    pub(crate) instance: Option<String>,
}

impl GroupManager {
    /// TxnOffsetCommit: one error code per entry.
    pub(crate) async fn txn_commit(
        &self,
        broker: &Arc<Broker>,
        group: &str,
        who: &TxnCommitter,
        entries: &[CommitEntry],
    ) -> Vec<i16> {
        if let Err(e) = self.ready_for(broker, group).await {
            return vec![e.code(); entries.len()];
        }
        let now = weir_log::now_ms();
        let (codes, accepted) = {
            let mut inner = self.lock();
            let checked = self.check_ready(broker, &inner, group).and_then(|()| {
                inner.coordinator.check_txn_commit(
                    group,
                    who.generation,
                    &who.member,
                    who.instance.as_deref(),
                    now,
                )
            });
            if let Err(e) = checked {
                return vec![e.code(); entries.len()];
            }
            let (codes, accepted) = super::check_entries(broker, entries, now);
            let accepted: Vec<_> = accepted
                .into_iter()
                .map(|((t, p), v)| ((group.to_string(), t, p), v))
                .collect();
            (codes, accepted)
        };
        if accepted.is_empty() {
            return codes;
        }
        let result = self
            .append_txn_offsets(broker, group, who, accepted, now)
            .await;
        match result {
            Ok(()) => codes,
            Err(err) => codes
                .into_iter()
                .map(|c| if c == 0 { err.code() } else { c })
                .collect(),
        }
    }

    /// Appends the offsets as one transactional batch of the producer, stages them right after
    /// the append on the partition's I/O lane (so in log order with the markers written
    /// there), and waits for the ISR.
    async fn append_txn_offsets(
        &self,
        broker: &Arc<Broker>,
        group: &str,
        who: &TxnCommitter,
        accepted: Vec<(super::coordinator::GroupPartition, OffsetValue)>,
        now: i64,
    ) -> Result<(), ResponseError> {
        let index = self.partition_of(group);
        let partition = broker
            .replicas
            .get(OFFSETS_TOPIC, index)
            .ok_or(ResponseError::NotCoordinator)?;
        let recs: Vec<Record> = accepted
            .iter()
            .enumerate()
            .map(|(i, ((g, t, p), v))| Record {
                transactional: true,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: who.producer_id.0,
                producer_epoch: who.producer_epoch.0,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // No sequence: coordinator writes are not retried by a client.
                sequence: i as i32 - 1,
                timestamp: now,
                key: Some(records::offset_key(g, t, *p)),
                value: Some(records::offset_value(v)),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &recs,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .map_err(|_| ResponseError::UnknownServerError)?;
        let mut bytes = buf.to_vec();
        let me = broker.node_id();
        let p = partition.clone();
        let b = broker.clone();
        let producer_id = who.producer_id;
        let appended = broker
            .io
            .run(Self::lane(broker, index), move || {
                let appended = p.append_as_leader(me, &mut bytes, now);
                if let Ok(Some((info, _))) = &appended {
                    b.groups.lock().coordinator.stage_txn_offsets(
                        producer_id,
                        info.base_offset.0,
                        accepted,
                    );
                }
                appended
            })
            .await
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        let (info, epoch) = match appended {
            Ok(Some(done)) => done,
            Ok(None) => return Err(ResponseError::NotCoordinator),
            Err(LogError::ProducerFenced { .. }) => return Err(ResponseError::ProducerFenced),
            Err(LogError::InvalidTxnState { .. }) => return Err(ResponseError::InvalidTxnState),
            Err(e) => {
                tracing::error!(error = %e, group, "cannot write to {OFFSETS_TOPIC}");
                return Err(ResponseError::CoordinatorNotAvailable);
            }
        };
        let deadline = tokio::time::Instant::now() + super::offsets::COMMIT_REPLICATION_TIMEOUT;
        match partition
            .wait_replicated(me, epoch, info.last_offset, deadline)
            .await
        {
            0 => Ok(()),
            c if c == ResponseError::NotLeaderOrFollower.code() => {
                Err(ResponseError::NotCoordinator)
            }
            _ => Err(ResponseError::CoordinatorNotAvailable),
        }
    }

    /// A transaction's marker is at `marker_offset` in partition `index` of
    /// `__consumer_offsets`: its offsets staged there before it are stored (commit) or dropped
    /// (abort).
    pub(crate) fn complete_txn(
        &self,
        index: i32,
        producer_id: ProducerId,
        commit: bool,
        marker_offset: i64,
    ) {
        let count = self.partitions;
        let now = weir_log::now_ms();
        self.lock().coordinator.complete_txn_offsets(
            producer_id,
            commit,
            marker_offset,
            |g| records::partition_for(g, count) == index,
            now,
        );
    }

    /// Whether a transaction's offset for the partition is still pending.
    pub(crate) fn txn_offset_pending(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.lock()
            .coordinator
            .txn_offset_pending(group, topic, partition)
    }
}

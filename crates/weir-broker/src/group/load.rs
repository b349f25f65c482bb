//! Loading a partition of `__consumer_offsets`: its records read back into the group
//! coordinator, as Kafka's coordinator loads a partition when it is elected its leader.
//!
//! The read runs on the partition's I/O lane (see `GroupManager::queue_load`), never on an
//! async worker: it reads the whole log. Only applying what it read takes the group lock.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use super::coordinator::Coordinator;
use super::records::{self, GroupValue, Key, OffsetValue};
use super::OFFSETS_TOPIC;
use crate::replica_manager::Partition;

/// One record of `__consumer_offsets` as read back: a value, or a tombstone (`None`).
#[derive(Debug)]
pub(super) enum Restored {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<OffsetValue>,
    },
    Group {
        group: String,
        value: Option<GroupValue>,
    },
    /// A consumer group's snapshot (undecoded: the coordinator reads it), or a tombstone.
    ConsumerGroup { group: String, value: Option<Bytes> },
    /// An offset a transaction wrote (in the batch at `batch_offset`): pending until its
    /// marker.
    TxnOffset {
        producer_id: weir_types::ProducerId,
        batch_offset: i64,
        group: String,
        topic: String,
        partition: i32,
        value: OffsetValue,
    },
    /// A transaction's marker, at `offset`.
    TxnEnd {
        producer_id: weir_types::ProducerId,
        commit: bool,
        offset: i64,
    },
}

/// Gives the records read back to the coordinator, in log order; `belongs` picks the groups
/// of the partition they were read from.
pub(super) fn apply(
    coordinator: &mut Coordinator,
    restored: Vec<Restored>,
    belongs: impl Fn(&str) -> bool,
    now_ms: i64,
) {
    for r in restored {
        match r {
            Restored::Offset {
                group,
                topic,
                partition,
                value,
            } => coordinator.restore_offset(&group, &topic, partition, value, now_ms),
            Restored::Group { group, value } => coordinator.restore_group(&group, value, now_ms),
            Restored::ConsumerGroup { group, value } => {
                coordinator.restore_consumer_group(&group, value.as_deref(), now_ms)
            }
            Restored::TxnOffset {
                producer_id,
                batch_offset,
                group,
                topic,
                partition,
                value,
            } => coordinator.stage_txn_offsets(
                producer_id,
                batch_offset,
                vec![((group, topic, partition), value)],
            ),
            Restored::TxnEnd {
                producer_id,
                commit,
                offset,
            } => coordinator.complete_txn_offsets(producer_id, commit, offset, &belongs, now_ms),
        }
    }
}

fn undecodable(partition: i32, group: &str, offset: i64) {
    tracing::warn!(
        partition,
        group,
        offset,
        "skipping an unreadable value in {OFFSETS_TOPIC}"
    );
}

/// Reads every record of one `__consumer_offsets` partition, from its log start to its end.
/// A value this broker cannot read is skipped, never taken for a tombstone.
pub(super) fn read_partition(partition: &Partition) -> Result<Vec<Restored>, ResponseError> {
    let partition_index = partition.index;
    let mut out = Vec::new();
    let log = partition.log();
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    while offset < end {
        let info = log.read(offset, 8 << 20, end, true).map_err(|e| {
            tracing::error!(error = %e, partition = partition.index, "cannot read {OFFSETS_TOPIC}");
            ResponseError::CoordinatorNotAvailable
        })?;
        if info.slices.is_empty() {
            break;
        }
        let before = offset;
        for slice in &info.slices {
            let bytes = Bytes::from(
                slice
                    .read_to_vec()
                    .map_err(|_| ResponseError::CoordinatorNotAvailable)?,
            );
            // Batch by batch, by their headers: a batch compaction emptied still moves on.
            for (at, header) in weir_log::batch::batches_in(&bytes) {
                offset = offset.max(header.end());
                let batch = bytes.slice(at..at + header.total_size());
                let txn_producer = header
                    .producer()
                    .filter(|_| header.is_transactional())
                    .map(|(p, _)| p);
                if header.is_control() {
                    let kind = weir_log::txn::control_type(&batch);
                    if let (Some(producer_id), Some(kind)) = (txn_producer, kind) {
                        out.push(Restored::TxnEnd {
                            producer_id,
                            commit: kind == weir_log::ControlType::Commit,
                            offset: header.base_offset,
                        });
                    }
                    continue;
                }
                let limit = weir_log::decompress::DEFAULT_MAX_DECOMPRESSED_BYTES;
                let set = match weir_log::decompress::decode_batch(batch, limit) {
                    Ok(set) => set,
                    Err(e) => {
                        tracing::error!(
                            partition = partition.index,
                            offset = header.base_offset,
                            error = %e,
                            "skipping an undecodable batch in {OFFSETS_TOPIC}"
                        );
                        continue;
                    }
                };
                for r in set.records {
                    let Some(key) = r.key.and_then(records::decode_key) else {
                        continue;
                    };
                    match key {
                        Key::Offset {
                            group,
                            topic,
                            partition,
                        } => match r.value.map(records::decode_offset_value) {
                            Some(None) => undecodable(partition_index, &group, r.offset),
                            Some(Some(value)) if txn_producer.is_some() => {
                                if let Some(producer_id) = txn_producer {
                                    out.push(Restored::TxnOffset {
                                        producer_id,
                                        batch_offset: header.base_offset,
                                        group,
                                        topic,
                                        partition,
                                        value,
                                    });
                                }
                            }
                            value => out.push(Restored::Offset {
                                group,
                                topic,
                                partition,
                                value: value.flatten(),
                            }),
                        },
                        Key::ConsumerGroup { group } => out.push(Restored::ConsumerGroup {
                            group,
                            value: r.value,
                        }),
                        Key::Group { group } => match r.value.map(records::decode_group_value) {
                            Some(None) => undecodable(partition_index, &group, r.offset),
                            value => out.push(Restored::Group {
                                group,
                                value: value.flatten(),
                            }),
                        },
                    }
                }
            }
        }
        if offset == before {
            break;
        }
    }
    Ok(out)
}

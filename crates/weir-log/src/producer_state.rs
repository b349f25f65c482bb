//! State of idempotent producers for one partition (KIP-98).
//!
//! For each producer id the log keeps its epoch and the metadata of its last five batches, as
//! Kafka's `ProducerStateManager` does: a retried batch that is already in the log is answered with
//! its original offsets instead of being written twice, and a gap in sequence numbers is refused.
//! The state is rebuilt when the log opens, so it survives restarts: from the latest snapshot
//! (written at each segment roll, see `snapshots.rs`) and the batch headers after it.
//!
//! A transactional producer also has an open transaction here from its first batch until a
//! marker ends it (`txn.rs`); the oldest open transaction's first offset bounds the last
//! stable offset.

use std::collections::{BTreeMap, HashMap, VecDeque};

use weir_types::{Offset, ProducerEpoch, ProducerId};

use crate::batch::BatchHeader;
use crate::txn::{CompletedTxn, ControlType};
use crate::LogError;

/// How many recent batches per producer are remembered for duplicate detection (Kafka: 5).
const RECENT_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_sequence: i32,
    last_sequence: i32,
    base_offset: Offset,
    last_offset: Offset,
    max_timestamp: i64,
}

#[derive(Debug, Default, Clone, PartialEq)]
struct ProducerEntry {
    epoch: ProducerEpoch,
    recent: VecDeque<BatchMeta>,
    /// The first offset of its open transaction in this partition.
    txn_first_offset: Option<Offset>,
    /// The coordinator epoch of the last marker written for it (-1: none yet).
    coordinator_epoch: i32,
}

/// What a partition knows of one producer (DescribeProducers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerSummary {
    pub producer_id: ProducerId,
    pub epoch: ProducerEpoch,
    /// The sequence of its last record (-1 when none).
    pub last_sequence: i32,
    pub last_timestamp: i64,
    /// The first offset of its open transaction here.
    pub txn_start: Option<Offset>,
    /// The coordinator epoch of its last marker here (-1: none).
    pub coordinator_epoch: i32,
}

/// What the producer state says about a batch about to be appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerAppendOutcome {
    /// A new batch: write it.
    Append,
    /// A retry of a batch already in the log at these offsets: do not write it again.
    Duplicate {
        base_offset: Offset,
        last_offset: Offset,
        max_timestamp: i64,
    },
}

#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct ProducerStateManager {
    producers: HashMap<ProducerId, ProducerEntry>,
    /// The open transactions by first offset.
    ongoing: BTreeMap<Offset, ProducerId>,
}

fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

impl ProducerStateManager {
    pub(crate) fn check(&self, header: &BatchHeader) -> Result<ProducerAppendOutcome, LogError> {
        let Some((producer_id, epoch)) = header.producer() else {
            return Ok(ProducerAppendOutcome::Append);
        };
        let Some(entry) = self.producers.get(&producer_id) else {
            // Unknown producer (new, or its state was lost): accept, as Kafka does.
            return Ok(ProducerAppendOutcome::Append);
        };
        if header.is_control() {
            // A marker carries no sequence; only an older epoch is refused.
            if epoch < entry.epoch {
                return Err(LogError::ProducerFenced {
                    producer_id,
                    epoch,
                    current: entry.epoch,
                });
            }
            return Ok(ProducerAppendOutcome::Append);
        }
        if !header.is_transactional() && entry.txn_first_offset.is_some() && epoch == entry.epoch {
            // A producer inside a transaction writes only transactional batches.
            return Err(LogError::InvalidTxnState { producer_id });
        }
        if epoch < entry.epoch {
            return Err(LogError::ProducerFenced {
                producer_id,
                epoch,
                current: entry.epoch,
            });
        }
        if header.is_transactional() && header.base_sequence < 0 {
            // A coordinator's transactional write (TxnOffsetCommit) carries no sequence: only
            // its epoch is checked.
            return Ok(ProducerAppendOutcome::Append);
        }
        if epoch > entry.epoch {
            if header.base_sequence != 0 {
                return Err(LogError::OutOfOrderSequence {
                    producer_id,
                    expected: 0,
                    got: header.base_sequence,
                });
            }
            return Ok(ProducerAppendOutcome::Append);
        }
        if let Some(dup) = entry.recent.iter().find(|b| {
            b.first_sequence == header.base_sequence && b.last_sequence == header.last_sequence()
        }) {
            return Ok(ProducerAppendOutcome::Duplicate {
                base_offset: dup.base_offset,
                last_offset: dup.last_offset,
                max_timestamp: dup.max_timestamp,
            });
        }
        let expected = entry
            .recent
            .back()
            .map_or(0, |b| next_sequence(b.last_sequence));
        if header.base_sequence != expected {
            return Err(LogError::OutOfOrderSequence {
                producer_id,
                expected,
                got: header.base_sequence,
            });
        }
        Ok(ProducerAppendOutcome::Append)
    }

    /// Records a batch that is now in the log (with its final offsets); `kind` is a control
    /// batch's marker. Returns the transaction a marker ended.
    pub(crate) fn update(
        &mut self,
        header: &BatchHeader,
        marker: Option<(ControlType, i32)>,
    ) -> Option<CompletedTxn> {
        let (producer_id, epoch) = header.producer()?;
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry {
                coordinator_epoch: -1,
                ..ProducerEntry::default()
            });
        if epoch > entry.epoch || (!header.is_control() && epoch != entry.epoch) {
            entry.epoch = epoch;
            entry.recent.clear();
        }
        if header.is_control() {
            let (kind, coordinator_epoch) = marker?;
            entry.coordinator_epoch = entry.coordinator_epoch.max(coordinator_epoch);
            let first = entry.txn_first_offset.take()?;
            self.ongoing.remove(&first);
            return Some(CompletedTxn {
                producer_id,
                first_offset: first,
                last_offset: header.first(),
                aborted: kind == ControlType::Abort,
            });
        }
        if header.is_transactional() && entry.txn_first_offset.is_none() {
            entry.txn_first_offset = Some(header.first());
            self.ongoing.insert(header.first(), producer_id);
        }
        if entry.recent.len() == RECENT_BATCHES {
            entry.recent.pop_front();
        }
        entry.recent.push_back(BatchMeta {
            first_sequence: header.base_sequence,
            last_sequence: header.last_sequence(),
            base_offset: header.first(),
            last_offset: Offset(header.last_offset()),
            max_timestamp: header.max_timestamp,
        });
        None
    }

    /// Refuses a marker from a coordinator older than the last that wrote one for the producer.
    pub(crate) fn check_coordinator_epoch(
        &self,
        producer_id: ProducerId,
        coordinator_epoch: i32,
    ) -> Result<(), LogError> {
        match self.producers.get(&producer_id) {
            Some(e) if coordinator_epoch < e.coordinator_epoch => {
                Err(LogError::CoordinatorFenced {
                    producer_id,
                    coordinator_epoch,
                    current: e.coordinator_epoch,
                })
            }
            _ => Ok(()),
        }
    }

    /// The first offset of the oldest open transaction.
    pub(crate) fn first_unstable_offset(&self) -> Option<Offset> {
        self.ongoing.keys().next().copied()
    }

    /// The same, leaving one producer's transaction out (the one a marker is about to end).
    pub(crate) fn first_unstable_offset_without(&self, producer_id: ProducerId) -> Option<Offset> {
        self.ongoing
            .iter()
            .find(|(_, p)| **p != producer_id)
            .map(|(o, _)| *o)
    }

    /// The first offset of a producer's open transaction.
    pub(crate) fn open_transaction(&self, producer_id: ProducerId) -> Option<Offset> {
        self.producers.get(&producer_id)?.txn_first_offset
    }

    /// Every open transaction: producer and first offset, oldest first.
    pub(crate) fn open_transactions(&self) -> Vec<(ProducerId, Offset)> {
        self.ongoing.iter().map(|(o, p)| (*p, *o)).collect()
    }

    /// Every known producer, in id order.
    pub(crate) fn producers(&self) -> Vec<ProducerSummary> {
        let mut all: Vec<ProducerSummary> = self
            .producers
            .iter()
            .map(|(id, e)| ProducerSummary {
                producer_id: *id,
                epoch: e.epoch,
                last_sequence: e.recent.back().map_or(-1, |b| b.last_sequence),
                last_timestamp: e.recent.back().map_or(-1, |b| b.max_timestamp),
                txn_start: e.txn_first_offset,
                coordinator_epoch: e.coordinator_epoch,
            })
            .collect();
        all.sort_unstable_by_key(|p| p.producer_id);
        all
    }

    pub(crate) fn clear(&mut self) {
        self.producers.clear();
        self.ongoing.clear();
    }

    /// The state as a snapshot file's bytes: a magic, a CRC-32C of the rest, then each
    /// producer (in id order) with its epoch and recent batches, big-endian.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut ids: Vec<&ProducerId> = self.producers.keys().collect();
        ids.sort_unstable();
        let mut body = Vec::with_capacity(4 + ids.len() * (11 + RECENT_BATCHES * 32));
        body.extend_from_slice(&(ids.len() as u32).to_be_bytes());
        for id in ids {
            let entry = &self.producers[id];
            body.extend_from_slice(&id.0.to_be_bytes());
            body.extend_from_slice(&entry.epoch.0.to_be_bytes());
            body.extend_from_slice(&entry.txn_first_offset.map_or(-1, |o| o.0).to_be_bytes());
            body.extend_from_slice(&entry.coordinator_epoch.to_be_bytes());
            body.push(entry.recent.len() as u8);
            for b in &entry.recent {
                body.extend_from_slice(&b.first_sequence.to_be_bytes());
                body.extend_from_slice(&b.last_sequence.to_be_bytes());
                body.extend_from_slice(&b.base_offset.0.to_be_bytes());
                body.extend_from_slice(&b.last_offset.0.to_be_bytes());
                body.extend_from_slice(&b.max_timestamp.to_be_bytes());
            }
        }
        let mut out = Vec::with_capacity(8 + body.len());
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// The state a snapshot file holds; `None` when it is not one, or is damaged.
    pub(crate) fn decode(bytes: &[u8]) -> Option<ProducerStateManager> {
        // Version 1 had no open transactions.
        let (rest, with_txns) = match bytes.strip_prefix(SNAPSHOT_MAGIC.as_slice()) {
            Some(rest) => (rest, true),
            None => (bytes.strip_prefix(SNAPSHOT_MAGIC_V1.as_slice())?, false),
        };
        let (crc, body) = rest.split_first_chunk::<4>()?;
        if crc32c::crc32c(body) != u32::from_be_bytes(*crc) {
            return None;
        }
        let mut r = Reader(body);
        let count = r.u32()?;
        let mut producers = HashMap::new();
        let mut ongoing = BTreeMap::new();
        for _ in 0..count {
            let id = ProducerId(r.i64()?);
            let epoch = ProducerEpoch(r.i16()?);
            let (txn_first_offset, coordinator_epoch) = if with_txns {
                (Offset::from_wire(r.i64()?), r.i32()?)
            } else {
                (None, -1)
            };
            if let Some(first) = txn_first_offset {
                ongoing.insert(first, id);
            }
            let n = usize::from(r.u8()?);
            if n > RECENT_BATCHES {
                return None;
            }
            let mut recent = VecDeque::with_capacity(n);
            for _ in 0..n {
                recent.push_back(BatchMeta {
                    first_sequence: r.i32()?,
                    last_sequence: r.i32()?,
                    base_offset: Offset(r.i64()?),
                    last_offset: Offset(r.i64()?),
                    max_timestamp: r.i64()?,
                });
            }
            producers.insert(
                id,
                ProducerEntry {
                    epoch,
                    recent,
                    txn_first_offset,
                    coordinator_epoch,
                },
            );
        }
        r.0.is_empty()
            .then_some(ProducerStateManager { producers, ongoing })
    }
}

/// The first bytes of a producer-state snapshot (version 2 of our own format: each producer's
/// open transaction and last coordinator epoch after its epoch).
const SNAPSHOT_MAGIC: &[u8; 4] = b"WPS2";
/// Version 1, without open transactions: still read.
const SNAPSHOT_MAGIC_V1: &[u8; 4] = b"WPS1";

/// Reads big-endian numbers off the front of a slice; `None` past its end.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn i16(&mut self) -> Option<i16> {
        self.take().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
}

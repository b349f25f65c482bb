//! Transactions in one partition's log (KIP-98): control batches, the last stable offset and
//! the aborted-transaction index.
//!
//! A transactional producer's batches are "open" from its first batch in this partition until
//! the transaction coordinator writes a control batch (a commit or abort marker) for it. The
//! first offset of the oldest open transaction bounds what `read_committed` consumers may read:
//! the last stable offset (LSO) is the smaller of it and the high watermark.
//!
//! Each aborted transaction is recorded as `(producer id, first offset, last offset, LSO)` in
//! the `.txnindex` file of the segment that holds its abort marker, in Kafka's format (34
//! big-endian bytes: version 0, producer id, first offset, last offset, last stable offset).
//! A fetch under `read_committed` answers the aborted transactions that overlap what it
//! returns, so the consumer can drop their records. The index is also held in memory; a
//! segment's file is rewritten whole (temporary file, fsync, rename) when an abort is added or
//! a truncation removes entries, since aborts are rare. The entries past a crash's recovered
//! end are dropped at open, and aborts the producer-state replay finds again are added back.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use weir_types::{LeaderEpoch, Offset, ProducerEpoch, ProducerId};

use crate::batch::{read_varint, BatchHeader, BATCH_HEADER_BYTES};
use crate::log::{AppendInfo, Log};
use crate::segment::file_stem;
use crate::storage::{self, Storage};
use crate::{LogError, Result};

const SUFFIX: &str = "txnindex";
const ENTRY_BYTES: usize = 34;

/// What a control record says (its key's type, Kafka's `ControlRecordType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    Abort,
    Commit,
}

/// One aborted transaction of this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: ProducerId,
    pub first_offset: Offset,
    /// The offset of its abort marker.
    pub last_offset: Offset,
    /// The LSO right after the abort (Kafka keeps it to bound index searches).
    pub last_stable_offset: Offset,
}

/// A transaction that a marker ended in this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CompletedTxn {
    pub(crate) producer_id: ProducerId,
    pub(crate) first_offset: Offset,
    pub(crate) last_offset: Offset,
    pub(crate) aborted: bool,
}

/// Reads the marker type of a control batch from its first record's key; `None` when the
/// bytes are not a well-formed, uncompressed control batch (Kafka never compresses them).
pub fn control_type(batch: &[u8]) -> Option<ControlType> {
    control_record(batch).map(|(kind, _)| kind)
}

/// A control batch's marker type and the coordinator epoch its value carries (-1 when the
/// value is missing).
pub(crate) fn control_record(batch: &[u8]) -> Option<(ControlType, i32)> {
    let header = BatchHeader::parse(batch).ok()?;
    if !header.is_control() || header.compression() != 0 || header.records_count < 1 {
        return None;
    }
    let mut at = BATCH_HEADER_BYTES;
    let varint = |at: &mut usize| {
        let (value, used) = read_varint(batch.get(*at..)?)?;
        *at += used;
        Some(value)
    };
    let _length = varint(&mut at)?;
    at += 1; // attributes
    let _timestamp_delta = varint(&mut at)?;
    let _offset_delta = varint(&mut at)?;
    let key_length = usize::try_from(varint(&mut at)?).ok()?;
    if key_length < 4 {
        return None;
    }
    let key = batch.get(at..at + 4)?;
    let kind = match i16::from_be_bytes([key[2], key[3]]) {
        0 => ControlType::Abort,
        1 => ControlType::Commit,
        _ => return None,
    };
    at += key_length;
    let coordinator_epoch = varint(&mut at)
        .and_then(|len| (len >= 6).then_some(()))
        .and_then(|()| batch.get(at + 2..at + 6))
        .map_or(-1, |b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    Some((kind, coordinator_epoch))
}

/// A control batch with one marker, as the transaction coordinator writes it: key (version 0,
/// type), value (version 0, coordinator epoch), the producer's id and epoch, no sequence.
pub fn marker_batch(
    producer_id: ProducerId,
    epoch: ProducerEpoch,
    coordinator_epoch: i32,
    kind: ControlType,
    timestamp_ms: i64,
) -> Result<Vec<u8>> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&(kind as i16).to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: producer_id.0,
        producer_epoch: epoch.0,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: timestamp_ms,
        key: Some(key.into()),
        value: Some(value.into()),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [&record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| LogError::CorruptBatch(format!("cannot encode a marker: {e}")))?;
    Ok(buf.to_vec())
}

fn index_path(dir: &Path, segment_base: i64) -> PathBuf {
    dir.join(format!("{}.{SUFFIX}", file_stem(segment_base)))
}

/// The aborted transactions of a log, by the base of the segment whose file holds them.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct TxnIndex {
    by_segment: BTreeMap<i64, Vec<AbortedTxn>>,
}

impl TxnIndex {
    /// Reads the files of the given segments, keeping entries whose marker is below
    /// `log_end_offset`; a file that lost entries that way is rewritten.
    pub(crate) fn load(
        fs: &dyn Storage,
        dir: &Path,
        bases: impl Iterator<Item = i64>,
        log_end_offset: i64,
    ) -> Result<TxnIndex> {
        let mut index = TxnIndex::default();
        for base in bases {
            let path = index_path(dir, base);
            if !fs.exists(&path) {
                continue;
            }
            let bytes = fs.read(&path)?;
            let all: Vec<AbortedTxn> = bytes.chunks_exact(ENTRY_BYTES).filter_map(decode).collect();
            let kept: Vec<AbortedTxn> = all
                .iter()
                .copied()
                .filter(|t| t.last_offset.0 < log_end_offset)
                .collect();
            if kept.len() != all.len() || bytes.len() % ENTRY_BYTES != 0 {
                write(fs, dir, base, &kept)?;
            }
            if !kept.is_empty() {
                index.by_segment.insert(base, kept);
            }
        }
        Ok(index)
    }

    /// Whether an abort with this marker offset is known.
    pub(crate) fn contains(&self, last_offset: Offset) -> bool {
        self.by_segment
            .values()
            .flatten()
            .any(|t| t.last_offset == last_offset)
    }

    /// Adds an abort to the file of the segment at `segment_base`, durably.
    pub(crate) fn add(
        &mut self,
        fs: &dyn Storage,
        dir: &Path,
        segment_base: i64,
        txn: AbortedTxn,
    ) -> Result<()> {
        let mut entries = self
            .by_segment
            .get(&segment_base)
            .cloned()
            .unwrap_or_default();
        entries.push(txn);
        write(fs, dir, segment_base, &entries)?;
        self.by_segment.insert(segment_base, entries);
        Ok(())
    }

    /// Drops the entries whose marker is at or after `offset` (a truncation).
    pub(crate) fn truncate(&mut self, fs: &dyn Storage, dir: &Path, offset: i64) -> Result<()> {
        let touched: Vec<i64> = self
            .by_segment
            .iter()
            .filter(|(_, v)| v.iter().any(|t| t.last_offset.0 >= offset))
            .map(|(b, _)| *b)
            .collect();
        for base in touched {
            let kept: Vec<AbortedTxn> = self.by_segment[&base]
                .iter()
                .copied()
                .filter(|t| t.last_offset.0 < offset)
                .collect();
            write(fs, dir, base, &kept)?;
            if kept.is_empty() {
                self.by_segment.remove(&base);
            } else {
                self.by_segment.insert(base, kept);
            }
        }
        Ok(())
    }

    /// Forgets the segments that are gone (their files went with them).
    pub(crate) fn retain_segments(&mut self, keep: impl Fn(i64) -> bool) {
        self.by_segment.retain(|base, _| keep(*base));
    }

    pub(crate) fn clear(&mut self) {
        self.by_segment.clear();
    }

    /// The aborted transactions that overlap `[from, upper)`, oldest first.
    pub(crate) fn overlapping(&self, from: Offset, upper: Offset) -> Vec<AbortedTxn> {
        let mut found: Vec<AbortedTxn> = self
            .by_segment
            .values()
            .flatten()
            .filter(|t| t.last_offset >= from && t.first_offset < upper)
            .copied()
            .collect();
        found.sort_by_key(|t| t.first_offset);
        found
    }

    /// Whether the record at `offset`, written by `producer_id`, belongs to an aborted
    /// transaction.
    pub(crate) fn is_aborted(&self, producer_id: ProducerId, offset: Offset) -> bool {
        self.by_segment.values().flatten().any(|t| {
            t.producer_id == producer_id && t.first_offset <= offset && offset < t.last_offset
        })
    }
}

fn decode(b: &[u8]) -> Option<AbortedTxn> {
    let i64_at = |at: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[at..at + 8]);
        i64::from_be_bytes(a)
    };
    if i16::from_be_bytes([b[0], b[1]]) != 0 {
        return None;
    }
    Some(AbortedTxn {
        producer_id: ProducerId(i64_at(2)),
        first_offset: Offset(i64_at(10)),
        last_offset: Offset(i64_at(18)),
        last_stable_offset: Offset(i64_at(26)),
    })
}

fn write(fs: &dyn Storage, dir: &Path, base: i64, entries: &[AbortedTxn]) -> Result<()> {
    let path = index_path(dir, base);
    if entries.is_empty() {
        if fs.exists(&path) {
            storage::remove_durably(fs, &path)?;
        }
        return Ok(());
    }
    let mut bytes = Vec::with_capacity(entries.len() * ENTRY_BYTES);
    for t in entries {
        bytes.extend_from_slice(&0i16.to_be_bytes());
        bytes.extend_from_slice(&t.producer_id.0.to_be_bytes());
        bytes.extend_from_slice(&t.first_offset.0.to_be_bytes());
        bytes.extend_from_slice(&t.last_offset.0.to_be_bytes());
        bytes.extend_from_slice(&t.last_stable_offset.0.to_be_bytes());
    }
    storage::write_atomically(fs, &path, &bytes).map_err(LogError::from_io)
}

impl Log {
    /// The first offset of the oldest open transaction, if any.
    pub fn first_unstable_offset(&self) -> Option<Offset> {
        self.producers.first_unstable_offset()
    }

    /// The last stable offset under a high watermark: `read_committed` consumers read below it.
    pub fn last_stable_offset(&self, high_watermark: Offset) -> Offset {
        self.first_unstable_offset()
            .map_or(high_watermark, |first| {
                first.max(self.log_start_offset()).min(high_watermark)
            })
    }

    /// The aborted transactions that overlap the offsets `[from, upper)`, oldest first.
    pub fn aborted_transactions(&self, from: Offset, upper: Offset) -> Vec<AbortedTxn> {
        self.txn_index.overlapping(from, upper)
    }

    /// Whether the record at `offset` by `producer_id` was part of an aborted transaction.
    pub fn is_aborted(&self, producer_id: ProducerId, offset: Offset) -> bool {
        self.txn_index.is_aborted(producer_id, offset)
    }

    /// Every producer this partition knows (DescribeProducers).
    pub fn producer_states(&self) -> Vec<crate::producer_state::ProducerSummary> {
        self.producers.producers()
    }

    /// The first offset of `producer_id`'s open transaction, if it has one here.
    pub fn open_transaction(&self, producer_id: ProducerId) -> Option<Offset> {
        self.producers.open_transaction(producer_id)
    }

    /// The producers with an open transaction, with its first offset.
    pub fn open_transactions(&self) -> Vec<(ProducerId, Offset)> {
        self.producers.open_transactions()
    }

    /// Appends a commit or abort marker for a producer's transaction as the leader (WriteTxnMarkers).
    /// A marker from an epoch older than the producer's is refused (`ProducerFenced`), and one
    /// from a coordinator older than the last that wrote a marker for it
    /// (`CoordinatorFenced`): a deposed coordinator's late marker would otherwise end the
    /// producer's next transaction.
    pub fn append_marker(
        &mut self,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        coordinator_epoch: i32,
        kind: ControlType,
        leader_epoch: LeaderEpoch,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        self.producers
            .check_coordinator_epoch(producer_id, coordinator_epoch)?;
        let mut batch = marker_batch(producer_id, epoch, coordinator_epoch, kind, now_ms)?;
        self.append_leader_batches(&mut batch, leader_epoch, now_ms, true)
    }

    /// Indexes the aborts among batches about to be written at the log end, before they are:
    /// an index that cannot be written for lack of space or descriptors refuses the append
    /// with nothing in the log, where an abort marker in the log without its index entry would
    /// show aborted records to `read_committed` consumers.
    pub(crate) fn index_aborts(&mut self, records: &[u8], headers: &[BatchHeader]) -> Result<()> {
        let base = self.segments.keys().next_back().copied().unwrap_or(0);
        // Transactions opened, and ended, by earlier batches of this same write (a follower
        // copies a whole transaction at once), before producer state hears of them.
        let mut opened: HashMap<ProducerId, Offset> = HashMap::new();
        let mut ended: HashSet<ProducerId> = HashSet::new();
        let mut at = 0usize;
        for h in headers {
            let bytes = records.get(at..at + h.total_size()).unwrap_or_default();
            at += h.total_size();
            let Some((producer_id, _)) = h.producer() else {
                continue;
            };
            if !h.is_control() {
                let open = opened.contains_key(&producer_id)
                    || (!ended.contains(&producer_id)
                        && self.producers.open_transaction(producer_id).is_some());
                if h.is_transactional() && !open {
                    opened.insert(producer_id, h.first());
                }
                continue;
            }
            let first = match opened.remove(&producer_id) {
                Some(first) => Some(first),
                None if !ended.contains(&producer_id) => {
                    self.producers.open_transaction(producer_id)
                }
                None => None,
            };
            ended.insert(producer_id);
            let Some(first_offset) = first else {
                continue;
            };
            if control_type(bytes) != Some(ControlType::Abort) {
                continue;
            }
            let last_offset = Offset(h.base_offset);
            if self.txn_index.contains(last_offset) {
                continue;
            }
            let txn = AbortedTxn {
                producer_id,
                first_offset,
                last_offset,
                last_stable_offset: self
                    .producers
                    .first_unstable_offset_without(producer_id)
                    .into_iter()
                    .chain(opened.values().copied())
                    .min()
                    .unwrap_or(last_offset.next()),
            };
            if let Err(e) = self.txn_index.add(&*self.storage, &self.dir, base, txn) {
                // Entries added for earlier batches of this write go too.
                let end = self.log_end_offset;
                let undone = self.txn_index.truncate(&*self.storage, &self.dir, end);
                self.poison(undone)?;
                return Err(crate::log::shortage(e));
            }
        }
        Ok(())
    }

    /// Brings producer state along for batches just written: a marker ends its producer's open
    /// transaction, and a transactional batch opens one.
    pub(crate) fn note_batches(&mut self, records: &[u8], headers: &[BatchHeader]) {
        let mut at = 0usize;
        for h in headers {
            let total = h.total_size();
            let marker = if h.is_control() {
                records.get(at..at + total).and_then(control_record)
            } else {
                None
            };
            at += total;
            self.producers.update(h, marker);
        }
    }

    /// Indexes an abort that the producer-state replay (at open, or after a truncation) found,
    /// unless the index has it: its entry was lost with an unsynced tail. `lso` is the first
    /// unstable offset right after it.
    pub(crate) fn index_replayed_abort(
        &mut self,
        done: CompletedTxn,
        lso: Option<Offset>,
    ) -> Result<()> {
        if self.txn_index.contains(done.last_offset) {
            return Ok(());
        }
        let base = self
            .segments
            .range(..=done.last_offset.0)
            .next_back()
            .map_or(0, |(b, _)| *b);
        let txn = AbortedTxn {
            producer_id: done.producer_id,
            first_offset: done.first_offset,
            last_offset: done.last_offset,
            last_stable_offset: lso.unwrap_or(done.last_offset.next()),
        };
        self.txn_index.add(&*self.storage, &self.dir, base, txn)
    }
}

#[cfg(test)]
#[path = "txn_tests.rs"]
mod tests;

//! Log compaction (`cleanup.policy=compact`): keep the latest record of every key.
//!
//! A pass first maps every key to the offset of its latest record, over the whole log; then each
//! closed segment is rewritten without the records that a later record of the same key
//! supersedes. Offsets never change: kept records keep theirs, and batches may now have gaps.
//! A tombstone (a record with a null value) is kept while it is younger than
//! `delete.retention.ms`, so that consumers catching up still see the delete, and dropped after.
//! Records without a key are kept. The active segment is never rewritten. Same idea as Kafka's
//! `LogCleaner`, without its dirty-ratio scheduling.
//!
//! A pass runs in three steps, so that appends to the log wait only for the first and the last,
//! each brief:
//! 1. [`Log::plan_compaction`], under the log's lock, takes the segments' files as they are.
//! 2. [`Compaction::build`], with no lock, reads them (closed segments never change; the active
//!    one is read only up to where it ended) and writes each changed closed segment's copy to
//!    `<base>.log.cleaned` and its indexes, then fsyncs them.
//! 3. [`Log::finish_compaction`], under the lock again, swaps in each copy whose segment is still
//!    there as it was (no truncation, retention or failure came in between); the rest are
//!    dropped. The old indexes are removed first and the directory synced at each step, so a
//!    crash leaves the old segment or the new one, each with its own indexes or none (rebuilt at
//!    open), never a file with the other's indexes. An open removes `.cleaned` leftovers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions};

use crate::batch::BatchHeader;
use crate::segment::{segment_paths, LogSegment, SegmentView, CLEANED_SUFFIX};
use crate::storage::Storage;
use crate::{Log, LogError, OpenSync, Result};

/// What one compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionStats {
    pub segments_rewritten: usize,
    pub records_removed: u64,
    pub tombstones_removed: u64,
}

/// A stored batch's records, or `None` when they decompress past `limit`: such a batch is kept
/// whole and its keys do not count, which only ever keeps more records than needed.
fn decode(bytes: Bytes, limit: usize) -> Result<Option<(Compression, Vec<Record>)>> {
    match crate::decompress::decode_batch(bytes, limit) {
        Ok(set) => Ok(Some((set.compression, set.records))),
        Err(LogError::DecompressionLimit { limit }) => {
            tracing::warn!(
                limit,
                "a batch decompresses past the limit; compaction keeps it whole"
            );
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// One closed segment's cleaned copy, waiting to replace it.
#[derive(Debug)]
struct Copy {
    /// The segment it replaces, and the size that segment had when read.
    base: i64,
    size: u64,
    copy: LogSegment,
    records_removed: u64,
    tombstones_removed: u64,
}

/// A compaction pass between its plan and its finish (see the module's documentation).
#[derive(Debug)]
pub struct Compaction {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    /// Records at or after the oldest open transaction may still be aborted, and aborted ones
    /// never happened: neither supersedes an older record of its key.
    first_unstable: Option<i64>,
    txns: crate::txn::TxnIndex,
    truncations: u64,
    index_interval_bytes: u64,
    limit: usize,
    now_ms: i64,
    delete_retention_ms: i64,
    /// Every segment as it was: the closed ones, then the active one (read for its keys only).
    views: Vec<SegmentView>,
    copies: Vec<Copy>,
    /// What the copies swapped in so far did.
    stats: CompactionStats,
}

impl Log {
    /// Compacts when the topic asks for it and there is something new to do: a segment closed
    /// since the last pass, or `delete.retention.ms` passed so tombstones may expire. The pass's
    /// plan, to build outside the log's lock and finish under it.
    pub fn compaction_due(&mut self, now_ms: i64) -> Result<Option<Compaction>> {
        if !self.config.cleanup_compact || self.segments.len() < 2 {
            return Ok(None);
        }
        let active = self.segments.keys().next_back().copied().unwrap_or(0);
        if let Some((base, at)) = self.last_compaction {
            if base == active && now_ms.saturating_sub(at) < self.config.delete_retention_ms {
                return Ok(None);
            }
        }
        let plan = self.plan_compaction(now_ms, self.config.delete_retention_ms)?;
        self.last_compaction = Some((active, now_ms));
        Ok(plan)
    }

    /// Takes the segments for a compaction pass; `None` with no closed segment.
    pub fn plan_compaction(
        &mut self,
        now_ms: i64,
        delete_retention_ms: i64,
    ) -> Result<Option<Compaction>> {
        self.check_writable()?;
        if self.segments.len() < 2 {
            return Ok(None);
        }
        Ok(Some(Compaction {
            storage: self.storage.clone(),
            dir: self.dir.clone(),
            first_unstable: self.first_unstable_offset().map(|o| o.0),
            txns: self.txn_index.clone(),
            truncations: self.truncations,
            index_interval_bytes: self.config.index_interval_bytes,
            limit: self.config.max_decompressed_bytes,
            now_ms,
            delete_retention_ms,
            views: self.segments.values().map(LogSegment::view).collect(),
            copies: Vec::new(),
            stats: CompactionStats::default(),
        }))
    }

    /// Swaps in the copies a built pass made whose segments are still as they were read; drops
    /// the others. A failure once a segment's files are being replaced fails the log.
    pub fn finish_compaction(&mut self, mut pass: Compaction) -> Result<CompactionStats> {
        while self.finish_next(&mut pass)? {}
        Ok(pass.stats)
    }

    /// Swaps in (or drops) the pass's next copy; whether any are left. A caller that takes the
    /// log's lock for each call lets appends in between swaps.
    pub fn finish_next(&mut self, pass: &mut Compaction) -> Result<bool> {
        if self.poisoned.is_some() || self.truncations != pass.truncations {
            pass.abandon();
            return Ok(false);
        }
        let Some(c) = pass.copies.pop() else {
            return Ok(false);
        };
        let active = self.segments.keys().next_back().copied();
        let unchanged = self.segments.get(&c.base).map(|s| s.size) == Some(c.size);
        if !unchanged || active == Some(c.base) {
            if let Err(e) = c.copy.delete_files(&*self.storage) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "removing a compacted copy failed");
            }
        } else {
            self.swap_in(c.base, c.copy)?;
            pass.stats.segments_rewritten += 1;
            pass.stats.records_removed += c.records_removed;
            pass.stats.tombstones_removed += c.tombstones_removed;
            tracing::info!(dir = %self.dir.display(), base = c.base, removed = c.records_removed, tombstones = c.tombstones_removed, "compacted a segment");
        }
        Ok(!pass.copies.is_empty())
    }

    /// Runs one whole compaction pass at once (tests, tools).
    pub fn compact(&mut self, now_ms: i64, delete_retention_ms: i64) -> Result<CompactionStats> {
        let Some(mut pass) = self.plan_compaction(now_ms, delete_retention_ms)? else {
            return Ok(CompactionStats::default());
        };
        if let Err(e) = pass.build() {
            pass.abandon();
            return Err(e);
        }
        self.finish_compaction(pass)
    }

    /// Replaces the closed segment at `base` by its cleaned copy (see the module's
    /// documentation for the order of the steps).
    fn swap_in(&mut self, base: i64, copy: LogSegment) -> Result<()> {
        // The copy's handles were opened under its temporary names.
        drop(copy);
        let [log, index, time] = segment_paths(&self.dir, base, "");
        let [clean_log, clean_index, clean_time] = segment_paths(&self.dir, base, CLEANED_SUFFIX);
        let result = (|| {
            let fs = &*self.storage;
            for path in [&index, &time] {
                match fs.remove_file(path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                    _ => {}
                }
            }
            fs.sync_dir(&self.dir)?;
            fs.rename(&clean_log, &log)?;
            fs.sync_dir(&self.dir)?;
            fs.rename(&clean_index, &index)?;
            fs.rename(&clean_time, &time)?;
            fs.sync_dir(&self.dir)?;
            let interval = self.config().index_interval_bytes;
            LogSegment::open(
                fs,
                &self.dir,
                base,
                false,
                crate::now_ms(),
                interval,
                OpenSync::Each,
            )
        })();
        // From the first removal on, whatever fails fails the log (a shortage too), rather than
        // leave a segment whose files were replaced halfway.
        let result = result.map_err(|e| match e {
            LogError::Shortage(io) => LogError::Io(io),
            other => other,
        });
        let segment = self.poison(result)?;
        self.segments.insert(base, segment);
        Ok(())
    }
}

impl Compaction {
    /// Reads the segments and writes the cleaned copies of the closed ones that change, outside
    /// the log's lock. An error leaves the log as it was (call [`Compaction::abandon`]).
    pub fn build(&mut self) -> Result<()> {
        // Latest offset of every key, over the whole log as it was.
        let mut latest: HashMap<Bytes, i64> = HashMap::new();
        for view in &self.views {
            for batch in view.batches_from(0) {
                let (position, h) = batch?;
                if h.is_control() || !self.may_supersede(&h) {
                    continue;
                }
                let raw = Bytes::from(view.read_bytes(position, h.total_size())?);
                let Some((_, records)) = decode(raw, self.limit)? else {
                    continue;
                };
                for r in records {
                    if let Some(key) = r.key {
                        latest.insert(key, r.offset);
                    }
                }
            }
        }
        let closed = self.views.len().saturating_sub(1);
        for i in 0..closed {
            let view = self.views[i].clone();
            if let Some(copy) = self.clean(&view, &latest)? {
                self.copies.push(copy);
            }
        }
        Ok(())
    }

    /// Whether a batch's records count as the latest of their keys: not when they may still be
    /// aborted or were.
    fn may_supersede(&self, h: &BatchHeader) -> bool {
        if self.first_unstable.is_some_and(|f| h.base_offset >= f) {
            return false;
        }
        match h.producer() {
            Some((producer, _)) if h.is_transactional() => {
                !self.txns.is_aborted(producer, h.first())
            }
            _ => true,
        }
    }

    /// The cleaned copy of one closed segment, written and fsynced; `None` if nothing in it is
    /// superseded or expired.
    fn clean(&self, view: &SegmentView, latest: &HashMap<Bytes, i64>) -> Result<Option<Copy>> {
        let mut copy: Option<LogSegment> = None;
        // Batches kept whole before the first change: written once a change shows a copy is due.
        let mut unchanged: Vec<(u64, BatchHeader)> = Vec::new();
        let (mut records_removed, mut tombstones_removed) = (0u64, 0u64);
        for batch in view.batches_from(0) {
            let (position, h) = batch?;
            // Shared, not copied, with the decoder.
            let raw = Bytes::from(view.read_bytes(position, h.total_size())?);
            let kept = if h.is_control() {
                None
            } else {
                match decode(raw.clone(), self.limit)? {
                    None => None,
                    Some((compression, records)) => {
                        let total = records.len();
                        let mut kept = Vec::with_capacity(total);
                        for r in records {
                            let superseded = r
                                .key
                                .as_ref()
                                .is_some_and(|k| latest.get(k).is_some_and(|&o| o > r.offset));
                            let expired_tombstone = r.value.is_none()
                                && r.key.is_some()
                                && self.delete_retention_ms >= 0
                                && self.now_ms.saturating_sub(r.timestamp)
                                    > self.delete_retention_ms;
                            if superseded {
                                records_removed += 1;
                            } else if expired_tombstone {
                                tombstones_removed += 1;
                            } else {
                                kept.push(r);
                            }
                        }
                        (kept.len() < total).then_some((compression, kept))
                    }
                }
            };
            let Some((compression, kept)) = kept else {
                // Kept whole.
                match copy.as_mut() {
                    Some(c) => c.append(&raw, &[h], self.index_interval_bytes)?,
                    None => unchanged.push((position, h)),
                }
                continue;
            };
            let c = match copy.as_mut() {
                Some(c) => c,
                None => {
                    let mut c = LogSegment::create_cleaned(
                        &*self.storage,
                        &self.dir,
                        view.base_offset,
                        self.index_interval_bytes,
                    )?;
                    for (p, uh) in unchanged.drain(..) {
                        let bytes = view.read_bytes(p, uh.total_size())?;
                        c.append(&bytes, &[uh], self.index_interval_bytes)?;
                    }
                    copy.insert(c)
                }
            };
            if kept.is_empty() {
                continue;
            }
            let bytes = encode_kept(&h, compression, kept)?;
            let header = BatchHeader::parse(&bytes)?;
            c.append(&bytes, &[header], self.index_interval_bytes)?;
        }
        let Some(copy) = copy else {
            return Ok(None);
        };
        copy.flush()?;
        Ok(Some(Copy {
            base: view.base_offset,
            size: view.size,
            copy,
            records_removed,
            tombstones_removed,
        }))
    }

    /// Removes the copies written so far.
    pub fn abandon(&mut self) {
        for c in self.copies.drain(..) {
            if let Err(e) = c.copy.delete_files(&*self.storage) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "removing a compacted copy failed");
            }
        }
    }
}

/// A batch of `kept` records in place of batch `h`, with the sequence numbers consistent with
/// the offsets, as the encoder requires.
fn encode_kept(
    h: &BatchHeader,
    compression: Compression,
    mut kept: Vec<Record>,
) -> Result<Vec<u8>> {
    for r in &mut kept {
        r.sequence = if h.base_sequence >= 0 {
            h.base_sequence
                .wrapping_add((r.offset - h.base_offset) as i32)
        } else {
            (r.offset - h.base_offset) as i32 - 1
        };
        r.partition_leader_epoch = h.partition_leader_epoch;
    }
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &kept,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|e| LogError::CorruptBatch(format!("cannot encode a compacted batch: {e}")))?;
    Ok(buf.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LogConfig;
    use kafka_protocol::records::TimestampType;
    use weir_types::{LeaderEpoch, Offset};

    fn record(offset: i64, key: &str, value: Option<&str>, ts: i64) -> Record {
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: offset as i32 - 1,
            timestamp: ts,
            key: Some(Bytes::from(key.to_string())),
            value: value.map(|v| Bytes::from(v.to_string())),
            headers: Default::default(),
        }
    }

    fn append(log: &mut Log, records: &[(&str, Option<&str>)], ts: i64, compression: Compression) {
        let rs: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, (k, v))| record(i as i64, k, *v, ts))
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &rs,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        let mut bytes = buf.to_vec();
        log.append_as_leader(&mut bytes, LeaderEpoch(0), ts)
            .unwrap();
    }

    fn contents(log: &Log) -> Vec<(i64, String, Option<String>)> {
        let mut out = Vec::new();
        let mut offset = log.log_start_offset();
        while offset < log.log_end_offset() {
            let info = log
                .read(offset, 1 << 20, log.log_end_offset(), true)
                .unwrap();
            if info.slices.is_empty() {
                break;
            }
            let mut buf = Bytes::from(info.slices[0].read_to_vec().unwrap());
            while !buf.is_empty() {
                let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).unwrap();
                for r in set.records {
                    if Offset(r.offset) >= offset {
                        out.push((
                            r.offset,
                            String::from_utf8(r.key.unwrap().to_vec()).unwrap(),
                            r.value.map(|v| String::from_utf8(v.to_vec()).unwrap()),
                        ));
                    }
                }
            }
            offset = out.last().map_or(offset.next(), |l| Offset(l.0 + 1));
        }
        out
    }

    #[test]
    fn keeps_the_latest_value_per_key_with_offsets_unchanged() {
        for compression in [Compression::None, Compression::Lz4] {
            let dir = tempfile::tempdir().unwrap();
            let config = small_segments();
            let mut log = Log::open(dir.path(), config).unwrap();
            let now = 1_000_000;
            for round in 0..6 {
                let v = format!("v{round}");
                append(
                    &mut log,
                    &[
                        ("a", Some(&v)),
                        ("b", Some(&v)),
                        (&format!("only{round}"), Some("x")),
                    ],
                    now,
                    compression,
                );
            }
            append(&mut log, &[("b", None)], now, compression); // tombstone for b
            append(&mut log, &[("c", Some("last"))], now, compression);
            assert!(log.segment_count() > 2);
            let before = contents(&log);
            let stats = log.compact(now, 86_400_000).unwrap();
            assert!(
                stats.segments_rewritten > 0 && stats.records_removed > 0,
                "{stats:?}"
            );
            let after = contents(&log);
            // Every surviving record has the offset it had before compaction.
            for r in &after {
                assert!(before.contains(r), "{r:?} changed");
            }
            let latest_a = before
                .iter()
                .filter(|r| r.1 == "a")
                .map(|r| r.0)
                .max()
                .unwrap();
            assert_eq!(
                after
                    .iter()
                    .filter(|r| r.1 == "a")
                    .map(|r| r.0)
                    .collect::<Vec<_>>(),
                vec![latest_a]
            );
            // b's tombstone is younger than delete.retention.ms: it stays, alone.
            let bs: Vec<_> = after.iter().filter(|r| r.1 == "b").collect();
            assert_eq!(bs.len(), 1);
            assert_eq!(bs[0].2, None);
            for round in 0..6 {
                assert!(after.iter().any(|r| r.1 == format!("only{round}")));
            }
            assert_eq!(log.log_end_offset(), Offset(before.last().unwrap().0 + 1));

            // Once the tombstone is older than delete.retention.ms it goes too (it must be in a
            // closed segment: roll first).
            log.roll(now).unwrap();
            let stats = log.compact(now + 2_000, 1_000).unwrap();
            assert_eq!(stats.tombstones_removed, 1);
            let after = contents(&log);
            assert!(after.iter().all(|r| r.1 != "b"));
            // The rewritten log survives a reopen, indexes rebuilt.
            let end = log.log_end_offset();
            drop(log);
            let log = Log::open(dir.path(), LogConfig::default()).unwrap();
            assert_eq!(log.log_end_offset(), end);
            assert_eq!(contents(&log), after);
        }
    }

    /// Segments of 300 bytes: a few batches each, so a handful of records roll several.
    fn small_segments() -> LogConfig {
        LogConfig {
            segment_bytes: 300,
            ..LogConfig::default()
        }
    }

    /// Batches of three records of different sizes: two keys rewritten each round (so closed
    /// segments shrink, their batches re-encoded) and one key of the round's own.
    fn filled(log: &mut Log, rounds: usize, now: i64) {
        for round in 0..rounds {
            let v = format!("v{round}{}", "x".repeat(round * 7 % 13));
            let own = format!("u{round}");
            append(
                log,
                &[("a", Some(&v)), (&own, Some("kept")), ("b", Some(&v))],
                now,
                Compression::None,
            );
        }
    }

    /// The latest value of every key in `records`.
    fn latest(records: &[(i64, String, Option<String>)]) -> HashMap<String, (i64, Option<String>)> {
        let mut m = HashMap::new();
        for (o, k, v) in records {
            m.insert(k.clone(), (*o, v.clone()));
        }
        m
    }

    /// The pass reads and writes without the log: appends (and rolls) made between its plan and
    /// its finish stay, and the copies of the segments it read are swapped in.
    #[test]
    fn appends_go_on_while_a_pass_builds() {
        let dir = tempfile::tempdir().unwrap();
        let config = small_segments();
        let mut log = Log::open(dir.path(), config).unwrap();
        let now = 1_000_000;
        filled(&mut log, 10, now);
        let segments_before = log.segment_count();
        let mut pass = log.plan_compaction(now, 86_400_000).unwrap().unwrap();
        pass.build().unwrap();
        // Meanwhile: more records, more segments.
        for round in 10..20 {
            let v = format!("v{round}");
            append(
                &mut log,
                &[("a", Some(&v)), ("c", Some(&v))],
                now,
                Compression::None,
            );
        }
        assert!(log.segment_count() > segments_before);
        let before = contents(&log);
        let end = log.log_end_offset();
        let stats = log.finish_compaction(pass).unwrap();
        assert!(stats.segments_rewritten > 0, "{stats:?}");
        let after = contents(&log);
        assert_eq!(log.log_end_offset(), end);
        for r in &after {
            assert!(before.contains(r), "{r:?} changed");
        }
        assert!(after.len() < before.len());
        assert_eq!(latest(&after), latest(&before));
    }

    /// A truncation between the plan and the finish drops the pass: nothing is swapped, and its
    /// copies are removed.
    #[test]
    fn a_truncation_meanwhile_drops_the_pass() {
        let dir = tempfile::tempdir().unwrap();
        let config = small_segments();
        let mut log = Log::open(dir.path(), config).unwrap();
        let now = 1_000_000;
        filled(&mut log, 10, now);
        let mut pass = log.plan_compaction(now, 86_400_000).unwrap().unwrap();
        pass.build().unwrap();
        let cleaned = |d: &std::path::Path| {
            std::fs::read_dir(d)
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(".cleaned")
                })
                .count()
        };
        assert!(cleaned(dir.path()) > 0);
        log.truncate_to(Offset(log.log_end_offset().0 - 3)).unwrap();
        let before = contents(&log);
        let stats = log.finish_compaction(pass).unwrap();
        assert_eq!(stats, CompactionStats::default());
        assert_eq!(contents(&log), before);
        assert_eq!(cleaned(dir.path()), 0);
    }

    /// A swap that fails halfway (a rename or a directory sync refused) fails the log; whatever
    /// a power cut then keeps, the next open finds every segment whole, old or new, with indexes
    /// that match it: every record read is one that was there, at its offset, and the latest
    /// value of every key is kept.
    #[test]
    fn a_swap_cut_short_leaves_whole_segments() {
        use crate::simfs::{Failure, Fault, FsOp, PowerLoss, SimDisk};
        let config = small_segments();
        let dir = std::path::Path::new("/data/t-0");
        for (seed, op, nth) in [
            (1, FsOp::Rename, 0),
            (2, FsOp::Rename, 1),
            (3, FsOp::Rename, 2),
            (4, FsOp::SyncDir, 0),
            (5, FsOp::SyncDir, 1),
            (6, FsOp::SyncDir, 2),
            (7, FsOp::Remove, 0),
        ] {
            for loss in [
                PowerLoss::DropUnsynced,
                PowerLoss::TornTail,
                PowerLoss::Scrambled,
            ] {
                let disk = SimDisk::new(seed);
                let mut log = Log::open_on(disk.storage(), dir, config.clone()).unwrap();
                let now = 1_000_000;
                filled(&mut log, 10, now);
                log.flush().unwrap();
                let before = contents(&log);
                let mut pass = log.plan_compaction(now, 86_400_000).unwrap().unwrap();
                pass.build().unwrap();
                // Let `nth` operations of the kind through, then refuse one.
                disk.fail_after(
                    nth,
                    Fault {
                        op,
                        path_contains: String::new(),
                        failure: Failure::Io,
                        times: 1,
                    },
                );
                let outcome = log.finish_compaction(pass);
                disk.clear_faults();
                assert!(outcome.is_err(), "{op:?}#{nth}: the swap did not fail");
                drop(log);
                disk.power_loss(loss);
                let log = Log::open_on(disk.storage(), dir, config.clone()).unwrap();
                let after = contents(&log);
                for r in &after {
                    assert!(before.contains(r), "{op:?}#{nth} {loss:?}: {r:?} changed");
                }
                assert_eq!(latest(&after), latest(&before), "{op:?}#{nth} {loss:?}");
            }
        }
    }
}

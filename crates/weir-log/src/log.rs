//! A partition's whole log: its segments, start and end offsets, epochs and producer state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use weir_types::{LeaderEpoch, Offset};

use crate::batch::{self, BatchHeader};
use crate::epoch::LeaderEpochCache;
use crate::producer_state::{ProducerAppendOutcome, ProducerStateManager};
use crate::retention::{read_log_start_offset, write_log_start_offset};
use crate::segment::LogSegment;
use crate::storage::{self, Disk, OpenMode, Storage, StoredFile};
use crate::{LogConfig, LogError, Result};

/// Marker written by a clean close; without it the active segment is recovered on open.
const CLEAN_SHUTDOWN_FILE: &str = ".clean-shutdown";
/// Holds the log start offset, which DeleteRecords and retention can move inside a segment.
pub(crate) const LOG_START_OFFSET_FILE: &str = "log-start-offset";

/// A range of bytes of a segment file: what a fetch sends, without copying it into memory.
#[derive(Debug, Clone)]
pub struct FileSlice {
    pub file: Arc<dyn StoredFile>,
    pub position: u64,
    pub len: u64,
}

impl FileSlice {
    /// Reads the slice into memory (for tests, and for listeners that cannot use sendfile).
    pub fn read_to_vec(&self) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; self.len as usize];
        self.file.read_exact_at(&mut buf, self.position)?;
        Ok(buf)
    }
}

/// The result of appending a produce request's batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: Offset,
    pub last_offset: Offset,
    /// The broker's timestamp when the topic uses LogAppendTime, else -1.
    pub log_append_time_ms: i64,
    pub log_start_offset: Offset,
    /// The batches were a retry of ones already written: nothing new was appended.
    pub duplicate: bool,
    pub records: i64,
}

/// The result of a read.
#[derive(Debug, Clone, Default)]
pub struct FetchInfo {
    pub slices: Vec<FileSlice>,
    pub bytes: u64,
    /// The offset after the last batch read (none when nothing was).
    pub end: Option<Offset>,
}

/// A record's offset and timestamp, the answer to ListOffsets by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    pub timestamp: i64,
    pub offset: Offset,
}

#[derive(Debug)]
pub struct Log {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    pub(crate) segments: BTreeMap<i64, LogSegment>,
    pub(crate) log_start_offset: i64,
    pub(crate) log_end_offset: i64,
    pub(crate) epochs: LeaderEpochCache,
    pub(crate) producers: ProducerStateManager,
    /// The aborted transactions (`txn.rs`).
    pub(crate) txn_index: crate::txn::TxnIndex,
    pub(crate) records_since_flush: u64,
    pub(crate) last_flush_ms: i64,
    /// Active segment and time of the last compaction pass, to skip passes with nothing to do.
    pub(crate) last_compaction: Option<(i64, i64)>,
    /// Set after a failed write or fsync: the log takes no more writes (see STYLE.md).
    pub(crate) poisoned: Option<String>,
    /// Raised with `poisoned`, for whoever watches many logs (see [`Log::report_failure_to`]).
    failure_flag: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// Offsets below this are known to be on disk (fsynced): Kafka's recovery point.
    pub(crate) flushed_offset: i64,
    /// Bumped whenever the log's tail is cut, so an fsync that began before a truncation does
    /// not vouch for records written after it at the same offsets.
    pub(crate) truncations: u64,
    /// Bytes of batches after the latest producer-state snapshot: what an open would scan.
    pub(crate) unsnapshotted_bytes: u64,
}

/// Who makes durable what opening a log wrote: a recovered tail cut and its rebuilt indexes, the
/// removed clean-shutdown marker, the names of a new log's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenSync {
    /// The open fsyncs each of them.
    Each,
    /// The opener does, with one [`Storage::sync_all`] after opening many logs together (a
    /// broker's start), before anything of them is served or counted as durable: one syncfs
    /// instead of several fsyncs per log.
    Deferred,
}

/// The base offset of the last segment in `dir` (0 if none can be listed): the first offset an
/// unclean open cannot take for durable.
fn last_segment_base(fs: &dyn Storage, dir: &Path) -> i64 {
    fs.list(dir)
        .ok()
        .and_then(|names| names.iter().filter_map(|n| parse_segment_base(n)).max())
        .unwrap_or(0)
}

fn parse_segment_base(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".log")?;
    (stem.len() == 20).then(|| stem.parse().ok()).flatten()
}

impl Log {
    /// Opens (or creates) the log in `dir` on the real file system, recovering the active
    /// segment after an unclean stop.
    pub fn open(dir: &Path, config: LogConfig) -> Result<Log> {
        Log::open_on(Disk::shared(), dir, config)
    }

    /// Opens (or creates) the log in `dir` of `storage`.
    pub fn open_on(storage: Arc<dyn Storage>, dir: &Path, config: LogConfig) -> Result<Log> {
        Log::open_with(storage, dir, config, OpenSync::Each)
    }

    /// Opens (or creates) the log in `dir` of `storage`; `sync` says who makes what the open
    /// wrote durable (see [`OpenSync`]).
    pub fn open_with(
        storage: Arc<dyn Storage>,
        dir: &Path,
        config: LogConfig,
        sync: OpenSync,
    ) -> Result<Log> {
        let opened = Log::open_inner(storage.clone(), dir, config, sync);
        if let Err(LogError::Io(e)) = &opened {
            // The open's own fsyncs (a recovered tail, say) may have failed: the next open must
            // not take the page cache's copy for the disk's (see `unsynced`).
            let from = last_segment_base(&*storage, dir);
            if let Err(e2) = crate::unsynced::record(&*storage, dir, from) {
                tracing::error!(dir = %dir.display(), error = %e2, open_error = %e,
                    "cannot record a failed open: if the process restarts, a power cut may cost records the log counted durable");
            }
        }
        opened
    }

    /// Records that what this log's open wrote may not have reached the disk: the fsync that was
    /// to make it durable for several logs at once (`OpenSync::Deferred`) failed.
    pub fn note_failed_sync(&self) {
        let from = self.segments.keys().next_back().copied().unwrap_or(0);
        if let Err(e) = crate::unsynced::record(&*self.storage, &self.dir, from) {
            tracing::error!(dir = %self.dir.display(), error = %e,
                "cannot record a failed sync: if the process restarts, a power cut may cost records the log counted durable");
        }
    }

    fn open_inner(
        storage: Arc<dyn Storage>,
        dir: &Path,
        config: LogConfig,
        sync: OpenSync,
    ) -> Result<Log> {
        let fs = &*storage;
        match sync {
            OpenSync::Each => storage::create_dir_durably(fs, dir)?,
            OpenSync::Deferred => fs.create_dir_all(dir)?,
        }
        let now = crate::now_ms();
        let clean_marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean = fs.exists(&clean_marker);
        let mut bases: Vec<i64> = Vec::new();
        for name in fs.list(dir)? {
            if let Some(base) = parse_segment_base(&name) {
                bases.push(base);
            } else if name.ends_with(".tmp")
                || name.ends_with(".deleted")
                || name.ends_with(".cleaned")
            {
                fs.remove_file(&dir.join(name))?;
            }
        }
        bases.sort_unstable();
        let mut segments = BTreeMap::new();
        let last = bases.last().copied();
        for base in bases {
            let recover = !clean && Some(base) == last;
            let interval = config.index_interval_bytes;
            let segment = LogSegment::open(fs, dir, base, recover, now, interval, sync)?;
            segments.insert(base, segment);
        }
        let unsynced_from = crate::unsynced::read(fs, dir).map_err(LogError::from_io)?;
        if let Some(from) = unsynced_from {
            crate::unsynced::resync_from(fs, dir, &mut segments, from)?;
        }
        // A segment whose predecessor ends after it starts would break offset order: drop it.
        let mut expected_next: Option<i64> = None;
        let mut broken: Vec<i64> = Vec::new();
        for (base, segment) in &segments {
            if expected_next.is_some_and(|n| *base < n) {
                broken.push(*base);
                continue;
            }
            expected_next = Some(segment.next_offset);
        }
        // The recovered (and fsynced) last segment may be the one dropped: its predecessor,
        // now last, is fsynced below.
        let last_dropped = !clean && broken.last().is_some_and(|b| Some(*b) == last);
        for base in broken {
            if let Some(segment) = segments.remove(&base) {
                tracing::warn!(dir = %dir.display(), base, "removing a segment that overlaps its predecessor");
                segment.delete_files(fs)?;
            }
        }
        if segments.is_empty() {
            segments.insert(0, LogSegment::create(fs, dir, 0, now, sync)?);
        }
        let first_base = segments.keys().next().copied().unwrap_or(0);
        let log_end_offset = segments.values().next_back().map_or(0, |s| s.next_offset);
        let stored_start = read_log_start_offset(fs, dir);
        let log_start_offset = stored_start
            .unwrap_or(first_base)
            .clamp(first_base, log_end_offset);
        let epochs = LeaderEpochCache::open(storage.clone(), dir)?;
        let txn_index =
            crate::txn::TxnIndex::load(fs, dir, segments.keys().copied(), log_end_offset)?;
        let mut log = Log {
            storage: storage.clone(),
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset,
            log_end_offset,
            epochs,
            producers: ProducerStateManager::default(),
            txn_index,
            records_since_flush: 0,
            last_flush_ms: now,
            last_compaction: None,
            poisoned: None,
            failure_flag: None,
            flushed_offset: log_end_offset,
            truncations: 0,
            unsnapshotted_bytes: 0,
        };
        log.epochs.truncate_from_end(Offset(log_end_offset))?;
        log.load_producer_state()?;
        match sync {
            // Durably: a marker that came back after a later power cut would vouch for a tail
            // that was never synced.
            OpenSync::Each if clean => storage::remove_durably(fs, &clean_marker)?,
            OpenSync::Each if last_dropped => log.flush()?,
            OpenSync::Each => {}
            OpenSync::Deferred if clean => fs.remove_file(&clean_marker)?,
            OpenSync::Deferred => {}
        }
        if unsynced_from.is_some() {
            crate::unsynced::clear(fs, dir)?;
        }
        // Unclean: what the crashed process wrote may still be only in the page cache. The last
        // segment was recovered and fsynced as it opened (`LogSegment::open`; with
        // `OpenSync::Deferred`, by the opener's `sync_all` before the log is used), and closed
        // ones were fsynced when they rolled, so the whole log is durable before anything counts
        // it as flushed.
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn log_start_offset(&self) -> Offset {
        Offset(self.log_start_offset)
    }

    pub fn log_end_offset(&self) -> Offset {
        Offset(self.log_end_offset)
    }

    pub fn epochs(&self) -> &LeaderEpochCache {
        &self.epochs
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn active(&mut self) -> &mut LogSegment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }

    /// Why the log takes no more writes, if a write or fsync failed (see STYLE.md).
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    /// Raises `flag` when this log fails (now, if it already has): one flag for many logs tells
    /// a broker that its log directory failed without looking at each log.
    pub fn report_failure_to(&mut self, flag: Arc<std::sync::atomic::AtomicBool>) {
        if self.poisoned.is_some() {
            flag.store(true, std::sync::atomic::Ordering::Release);
        }
        self.failure_flag = Some(flag);
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        match &self.poisoned {
            Some(why) => Err(LogError::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    pub(crate) fn poison<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(LogError::Io(e)) = &result {
            let why = format!("{}: {e}", self.dir.display());
            tracing::error!(error = %why, "write to the log failed; refusing further writes");
            if self.poisoned.is_none() {
                let from = self.flushed_offset();
                if let Err(e) = crate::unsynced::record(&*self.storage, &self.dir, from.0) {
                    tracing::error!(dir = %self.dir.display(), error = %e,
                        "cannot record the failure: if the process restarts, a power cut may cost records the log counted durable");
                }
            }
            self.poisoned = Some(why);
            if let Some(flag) = &self.failure_flag {
                flag.store(true, std::sync::atomic::Ordering::Release);
            }
        }
        result
    }

    /// Appends a produce request's record batches as the leader: validates them, assigns offsets
    /// by patching each batch in place, stamps the leader epoch, and writes them.
    pub fn append_as_leader(
        &mut self,
        records: &mut [u8],
        leader_epoch: LeaderEpoch,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        self.append_leader_batches(records, leader_epoch, now_ms, false)
    }

    /// [`Log::append_as_leader`], where control batches come only from the transaction
    /// coordinator (`from_coordinator`).
    pub(crate) fn append_leader_batches(
        &mut self,
        records: &mut [u8],
        leader_epoch: LeaderEpoch,
        now_ms: i64,
        from_coordinator: bool,
    ) -> Result<AppendInfo> {
        self.check_writable()?;
        let headers = batch::validate_batches(records)?;
        let mut at = 0usize;
        for header in &headers {
            if header.total_size() > self.config.max_message_bytes {
                return Err(LogError::RecordTooLarge {
                    size: header.total_size(),
                    max: self.config.max_message_bytes,
                });
            }
            if header.is_control() != from_coordinator {
                return Err(LogError::ControlBatchFromClient);
            }
            batch::validate_producer_batch(&records[at..at + header.total_size()], header)?;
            at += header.total_size();
        }
        // Idempotence: clients send one batch per partition; a retried one is answered, not written.
        if let Some(first) = headers.first() {
            if let ProducerAppendOutcome::Duplicate {
                base_offset,
                last_offset,
                max_timestamp,
            } = self.producers.check(first)?
            {
                return Ok(AppendInfo {
                    base_offset,
                    last_offset,
                    log_append_time_ms: if self.config.log_append_time {
                        max_timestamp
                    } else {
                        -1
                    },
                    log_start_offset: self.log_start_offset(),
                    duplicate: true,
                    records: 0,
                });
            }
        }
        for header in headers.iter().skip(1) {
            if let ProducerAppendOutcome::Duplicate { .. } = self.producers.check(header)? {
                return Err(LogError::CorruptBatch(
                    "a duplicate batch follows a new one".into(),
                ));
            }
        }
        let base_offset = self.log_end_offset;
        let mut next = base_offset;
        let mut patched = Vec::with_capacity(headers.len());
        let mut at = 0usize;
        let mut count = 0i64;
        for header in &headers {
            let total = header.total_size();
            let bytes = &mut records[at..at + total];
            batch::set_base_offset(bytes, next);
            batch::set_partition_leader_epoch(bytes, leader_epoch.0);
            if self.config.log_append_time {
                batch::set_log_append_time(bytes, now_ms);
            }
            let h = BatchHeader::parse(bytes)?;
            next = h.last_offset() + 1;
            count += i64::from(h.records_count);
            patched.push(h);
            at += total;
        }
        self.write_batches(records, &patched, next, now_ms)?;
        Ok(AppendInfo {
            base_offset: Offset(base_offset),
            last_offset: Offset(next - 1),
            log_append_time_ms: if self.config.log_append_time {
                now_ms
            } else {
                -1
            },
            log_start_offset: self.log_start_offset(),
            duplicate: false,
            records: count,
        })
    }

    /// Appends batches copied from the leader as they are: their offsets, leader epochs and
    /// timestamps stay. Each batch must start at or after the log end (a compacted leader leaves
    /// gaps) and its CRC must hold. Producer state and the leader-epoch cache follow the batches,
    /// so a follower that becomes leader still de-duplicates retries.
    pub fn append_as_follower(&mut self, records: &[u8], now_ms: i64) -> Result<AppendInfo> {
        self.check_writable()?;
        let headers = batch::validate_batches(records)?;
        // An empty log restarted at the leader's log start may begin inside the leader's first
        // batch (the start was moved by DeleteRecords): start at that batch instead.
        if let Some(first) = headers.first() {
            let empty = self.log_start_offset == self.log_end_offset;
            if empty
                && first.base_offset < self.log_end_offset
                && first.last_offset() >= self.log_end_offset
            {
                self.truncate_fully_and_start_at(first.first())?;
            }
        }
        let mut next = self.log_end_offset;
        for h in &headers {
            if h.base_offset < next || h.last_offset_delta < 0 {
                return Err(LogError::CorruptBatch(format!(
                    "a replicated batch at offset {} does not follow offset {}",
                    h.base_offset,
                    next - 1
                )));
            }
            next = h.last_offset() + 1;
        }
        let base_offset = headers.first().map_or(next, |h| h.base_offset);
        let count = self.write_batches(records, &headers, next, now_ms)?;
        Ok(AppendInfo {
            base_offset: Offset(base_offset),
            last_offset: Offset(next - 1),
            log_append_time_ms: -1,
            log_start_offset: self.log_start_offset(),
            duplicate: false,
            records: count,
        })
    }

    /// Empties the log and starts it again at `offset`: a follower whose log ends before its
    /// leader's log starts cannot catch up by fetching.
    pub fn truncate_fully_and_start_at(&mut self, offset: Offset) -> Result<()> {
        self.check_writable()?;
        let offset = offset.0.max(0);
        let result = (|| {
            self.remove_snapshots_after(i64::MIN)?;
            for (_, segment) in std::mem::take(&mut self.segments) {
                segment.delete_files(&*self.storage)?;
            }
            self.segments.insert(
                offset,
                LogSegment::create(
                    &*self.storage,
                    &self.dir,
                    offset,
                    crate::now_ms(),
                    OpenSync::Each,
                )?,
            );
            write_log_start_offset(&*self.storage, &self.dir, offset)?;
            self.epochs.clear()
        })();
        self.poison(result)?;
        self.log_start_offset = offset;
        self.log_end_offset = offset;
        self.truncations += 1;
        self.flushed_offset = self.flushed_offset.min(offset);
        self.producers.clear();
        self.txn_index.clear();
        Ok(())
    }

    /// Writes checked batches (`headers`, the last ending before `next`) at the log end, for a
    /// leader and a follower alike: rolls the segment when due, appends, moves the log end,
    /// brings producer state and the leader-epoch cache along, and flushes when due. Returns how
    /// many records were written.
    fn write_batches(
        &mut self,
        records: &[u8],
        headers: &[BatchHeader],
        next: i64,
        now_ms: i64,
    ) -> Result<i64> {
        // Offsets in a log only grow, and each batch follows the one before it: anything else
        // would give two records one offset.
        assert!(
            headers
                .first()
                .is_none_or(|h| h.base_offset >= self.log_end_offset)
                && headers
                    .windows(2)
                    .all(|w| w[1].base_offset > w[0].last_offset())
                && headers.last().is_none_or(|h| h.last_offset() < next),
            "batches to append at {} do not follow the log end {}",
            headers.first().map_or(next, |h| h.base_offset),
            self.log_end_offset
        );
        self.maybe_roll(records.len() as u64, now_ms)?;
        // The epochs first (Kafka assigns one where a leadership starts): a checkpoint that
        // cannot be written for lack of space refuses the append before any byte of it lands.
        for h in headers {
            let Some(epoch) = h.leader_epoch() else {
                continue;
            };
            let assigned = self.epochs.assign(epoch, h.first()).map_err(shortage);
            self.poison(assigned)?;
        }
        self.index_aborts(records, headers)?;
        let interval = self.config.index_interval_bytes;
        let result = self.active().append(records, headers, interval);
        if result.is_err() {
            let end = self.log_end_offset;
            let undone = self.txn_index.truncate(&*self.storage, &self.dir, end);
            self.poison(undone)?;
        }
        self.poison(result)?;
        self.log_end_offset = next;
        self.unsnapshotted_bytes += records.len() as u64;
        self.note_batches(records, headers);
        let count: i64 = headers.iter().map(|h| i64::from(h.records_count)).sum();
        self.records_since_flush += count.max(0) as u64;
        if self.records_since_flush >= self.config.flush_messages
            || now_ms.saturating_sub(self.last_flush_ms) >= self.config.flush_ms
        {
            // The records are written: out of descriptors for the fsync, they stay unflushed
            // (counted as such) rather than be refused and written again by a retry.
            match self.flush() {
                Err(LogError::Shortage(e)) => {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "fsync postponed")
                }
                other => other?,
            }
        }
        Ok(count)
    }

    fn maybe_roll(&mut self, incoming: u64, now_ms: i64) -> Result<()> {
        let config = self.config.clone();
        let log_end_offset = self.log_end_offset;
        let active = self.active();
        let too_big = active.size > 0 && active.size + incoming > config.segment_bytes;
        let too_old =
            active.size > 0 && now_ms.saturating_sub(active.created_ms) >= config.segment_ms;
        let too_far = log_end_offset - active.base_offset > i64::from(u32::MAX) - 1_000_000;
        let position_overflow = active.size + incoming > u64::from(u32::MAX);
        if too_big || too_old || too_far || position_overflow {
            self.roll(now_ms)?;
        }
        Ok(())
    }

    /// Closes the active segment (fsynced) and starts a new one at the log end offset.
    pub fn roll(&mut self, now_ms: i64) -> Result<()> {
        let base = self.log_end_offset;
        if self.segments.contains_key(&base) {
            return Ok(());
        }
        // Out of space or descriptors while sealing (the index entry is undone) or creating the
        // next segment: no roll, the active segment stays, and what a half-made segment left is
        // removed. A failed fsync is never a shortage: its pages may be gone, so it poisons.
        let sealed = self.active().seal_time_index().map_err(shortage);
        self.poison(sealed)?;
        let flushed = self.active().flush();
        self.poison(flushed)?;
        let created = LogSegment::create(&*self.storage, &self.dir, base, now_ms, OpenSync::Each)
            .map_err(shortage);
        if matches!(created, Err(LogError::Shortage(_))) {
            LogSegment::remove_files(&*self.storage, &self.dir, base);
        }
        let segment = self.poison(created)?;
        self.segments.insert(base, segment);
        self.write_producer_snapshot(base);
        Ok(())
    }

    /// Reads whole batches starting with the one holding `offset`, up to `max_bytes` (but at least
    /// one batch when `min_one_batch`, per KIP-74) and below `max_offset` (exclusive: the high
    /// watermark for consumers, the log end for followers). Reads stay within one segment.
    pub fn read(
        &self,
        offset: Offset,
        max_bytes: u64,
        max_offset: Offset,
        min_one_batch: bool,
    ) -> Result<FetchInfo> {
        if offset < self.log_start_offset() || offset > self.log_end_offset() {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: self.log_start_offset(),
                end: self.log_end_offset(),
            });
        }
        let (offset, max_offset) = (offset.0, max_offset.0);
        let mut info = FetchInfo::default();
        if offset >= max_offset {
            return Ok(info);
        }
        for (_, segment) in self
            .segments
            .range(..=offset)
            .next_back()
            .into_iter()
            .chain(self.segments.range(offset + 1..))
        {
            let Some((start, first)) = segment.find_batch(offset)? else {
                continue;
            };
            if first.base_offset >= max_offset {
                return Ok(info);
            }
            let mut end = start;
            let next = start + first.total_size() as u64;
            for batch in std::iter::once(Ok((start, first))).chain(segment.batches_from(next)) {
                let (_, h) = batch?;
                let size = h.total_size() as u64;
                if h.base_offset >= max_offset {
                    break;
                }
                if end - start + size > max_bytes && !(min_one_batch && end == start) {
                    break;
                }
                end += size;
                info.end = Some(h.end());
            }
            if end > start {
                info.bytes = end - start;
                info.slices.push(FileSlice {
                    file: segment.pinned_file()?,
                    position: start,
                    len: end - start,
                });
            }
            return Ok(info);
        }
        Ok(info)
    }

    /// Removes every batch at or after `offset` (a follower diverging from its leader). Out of
    /// descriptors before it began, that is a shortage; any failure once it began fails the log,
    /// which would otherwise be half cut.
    pub fn truncate_to(&mut self, offset: Offset) -> Result<()> {
        let offset = offset.0;
        if offset >= self.log_end_offset {
            return Ok(());
        }
        // The segment that will end the log.
        let survivor = self
            .segments
            .range(..=offset.max(0))
            .next_back()
            .or_else(|| self.segments.iter().next())
            .map(|(_, s)| s.pin())
            .transpose()?;
        let result = self.cut_tail(offset).map_err(|e| match e {
            LogError::Shortage(io) => LogError::Io(io),
            other => other,
        });
        drop(survivor);
        self.poison(result)
    }

    fn cut_tail(&mut self, offset: i64) -> Result<()> {
        // Snapshots and aborts past the cut describe batches about to go: they go first.
        self.remove_snapshots_after(offset.max(0))?;
        self.txn_index
            .truncate(&*self.storage, &self.dir, offset.max(0))?;
        let doomed: Vec<i64> = self
            .segments
            .range(offset.max(0) + 1..)
            .map(|(b, _)| *b)
            .collect();
        for base in doomed {
            if self.segments.len() > 1 {
                if let Some(segment) = self.segments.remove(&base) {
                    segment.delete_files(&*self.storage)?;
                }
            }
        }
        let active = self.active();
        active.truncate_to(offset)?;
        self.log_end_offset = active.next_offset;
        self.truncations += 1;
        self.flushed_offset = self.flushed_offset.min(self.log_end_offset);
        self.log_start_offset = self.log_start_offset.min(self.log_end_offset);
        // The cut is made durable at once: a tail that came back after a power cut would hold
        // records of an epoch the leader replaced.
        self.active().flush()?;
        self.epochs.truncate_from_end(self.log_end_offset())?;
        debug_assert!(self.log_start_offset <= self.log_end_offset);
        debug_assert!(self.log_end_offset <= offset.max(0) || self.poisoned.is_some());
        self.load_producer_state().map(|_| ())
    }

    /// Flushes everything and marks the log as cleanly closed, so the next open skips recovery.
    pub fn close(mut self) -> Result<()> {
        // A poisoned log is not clean: its next open recovers it.
        self.check_writable()?;
        self.active().seal_time_index()?;
        self.flush()?;
        if self.unsnapshotted_bytes >= crate::snapshots::AT_CLOSE_BYTES {
            self.write_producer_snapshot(self.log_end_offset);
        }
        let marker = self.dir.join(CLEAN_SHUTDOWN_FILE);
        self.storage
            .open(&marker, OpenMode::Truncate)?
            .sync_data()?;
        storage::sync_parent(&*self.storage, &marker)?;
        Ok(())
    }

    /// Deletes the log and its directory (the topic was deleted).
    pub fn delete(self) -> Result<()> {
        let (storage, dir) = (self.storage.clone(), self.dir.clone());
        drop(self);
        storage.remove_dir_all(&dir)?;
        storage::sync_parent(&*storage, &dir)?;
        Ok(())
    }
}

/// An I/O error that is a passing shortage becomes [`LogError::Shortage`].
pub(crate) fn shortage(e: LogError) -> LogError {
    match e {
        LogError::Io(io) => LogError::from_io(io),
        other => other,
    }
}

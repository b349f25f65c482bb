//! One segment of a partition log: a `.log` file of whole batches and its two sparse indexes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{self, BatchHeader, BATCH_HEADER_BYTES};
use crate::index::{Index, OffsetEntry, TimeEntry};
use crate::log::OpenSync;
use crate::storage::{OpenMode, Storage, StoredFile};
use crate::{LogError, Result};

/// File name stem of a segment: its base offset as 20 digits, as Kafka names them.
pub(crate) fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

/// What compaction appends to the names of the files it writes before they replace a segment's.
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";

/// A segment's `.log`, `.index` and `.timeindex` paths, each followed by `suffix`.
pub(crate) fn segment_paths(dir: &Path, base_offset: i64, suffix: &str) -> [PathBuf; 3] {
    let stem = file_stem(base_offset);
    ["log", "index", "timeindex"].map(|ext| dir.join(format!("{stem}.{ext}{suffix}")))
}

/// A closed segment's `.log` file as it was when taken: read outside the log's lock (by
/// compaction) while appends go on. Its bytes do not change while the segment is closed.
#[derive(Debug, Clone)]
pub(crate) struct SegmentView {
    pub(crate) base_offset: i64,
    pub(crate) size: u64,
    file: Arc<dyn StoredFile>,
    path: PathBuf,
}

impl SegmentView {
    pub(crate) fn batches_from(&self, position: u64) -> Batches<'_> {
        Batches {
            file: &*self.file,
            size: self.size,
            path: &self.path,
            position: Some(position),
        }
    }

    pub(crate) fn read_bytes(&self, position: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, position)?;
        Ok(buf)
    }
}

/// The header of the batch at `position` of a file of `size` bytes, if one starts there.
fn header_at(
    file: &dyn StoredFile,
    size: u64,
    path: &Path,
    position: u64,
) -> Result<Option<BatchHeader>> {
    if position + BATCH_HEADER_BYTES as u64 > size {
        return Ok(None);
    }
    let mut buf = [0u8; BATCH_HEADER_BYTES];
    file.read_exact_at(&mut buf, position)?;
    let header = BatchHeader::parse(&buf)?;
    if header.batch_length < batch::MIN_BATCH_LENGTH || position + header.total_size() as u64 > size
    {
        return Err(LogError::CorruptBatch(format!(
            "batch at position {position} of {} runs past the segment",
            path.display()
        )));
    }
    Ok(Some(header))
}

#[derive(Debug)]
pub(crate) struct LogSegment {
    pub(crate) base_offset: i64,
    log_path: PathBuf,
    log: Arc<dyn StoredFile>,
    /// Bytes of whole batches; writes go here.
    pub(crate) size: u64,
    offset_index: Index<OffsetEntry>,
    time_index: Index<TimeEntry>,
    bytes_since_index_entry: u64,
    /// `index.interval.bytes` in force: bytes of batches between two index entries.
    index_interval_bytes: u64,
    /// Next offset after the last batch of this segment (its base offset when empty).
    pub(crate) next_offset: i64,
    /// Largest timestamp of any batch, and the base offset of the batch that holds it.
    pub(crate) max_timestamp: i64,
    pub(crate) offset_of_max_timestamp: i64,
    /// Wall-clock time the segment was created or reopened, for `segment.ms`.
    pub(crate) created_ms: i64,
    /// Bytes the checks of the open cut off (a torn or lost tail).
    cut_on_open: u64,
}

/// A segment's open handles, held for the length of one operation: with the files it will touch
/// pinned first, an operation (and the undoing of a failed one) never has to open a file halfway
/// through, so running out of descriptors can only stop it before it changed anything.
#[must_use]
pub(crate) struct Pins {
    _files: [Option<Arc<dyn StoredFile>>; 3],
}

/// Where a segment stood before an append, to undo it.
#[derive(Debug, Clone, Copy)]
struct AppendMark {
    size: u64,
    next_offset: i64,
    bytes_since_index_entry: u64,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    offset_entries: usize,
    time_entries: usize,
}

impl LogSegment {
    /// Creates an empty segment. Its names are made durable at once (the directory is synced), so
    /// what is fsynced into it later cannot vanish with its name at a power cut; with
    /// [`OpenSync::Deferred`], by the opener's later `Storage::sync_all`.
    pub(crate) fn create(
        storage: &dyn Storage,
        dir: &Path,
        base_offset: i64,
        now_ms: i64,
        sync: OpenSync,
    ) -> Result<LogSegment> {
        LogSegment::create_named(storage, dir, base_offset, "", now_ms, sync)
    }

    /// A segment being written by compaction, under names (`<stem>.log.cleaned`, and so on)
    /// that an open ignores and removes, until it is renamed over the segment it replaces.
    pub(crate) fn create_cleaned(
        storage: &dyn Storage,
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u64,
    ) -> Result<LogSegment> {
        let mut segment = LogSegment::create_named(
            storage,
            dir,
            base_offset,
            CLEANED_SUFFIX,
            crate::now_ms(),
            OpenSync::Deferred,
        )?;
        segment.index_interval_bytes = index_interval_bytes;
        Ok(segment)
    }

    fn create_named(
        storage: &dyn Storage,
        dir: &Path,
        base_offset: i64,
        suffix: &str,
        now_ms: i64,
        sync: OpenSync,
    ) -> Result<LogSegment> {
        let [log_path, index_path, time_path] = segment_paths(dir, base_offset, suffix);
        let log = storage.open(&log_path, OpenMode::Truncate)?;
        let (mut offset_index, _) = Index::open(storage, &index_path)?;
        let (mut time_index, _) = Index::open(storage, &time_path)?;
        offset_index.reset()?;
        time_index.reset()?;
        if sync == OpenSync::Each {
            storage.sync_dir(dir)?;
        }
        Ok(LogSegment {
            base_offset,
            log_path,
            log,
            size: 0,
            offset_index,
            time_index,
            bytes_since_index_entry: 0,
            index_interval_bytes: 4096,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            created_ms: now_ms,
            cut_on_open: 0,
        })
    }

    /// Opens an existing segment. With `recover`, every batch is read and its CRC checked, a torn
    /// or corrupt tail is cut off, and the indexes are rebuilt; otherwise the indexes are trusted
    /// when they pass their sanity checks and the next offset comes from the last batch.
    /// `index_interval_bytes` is the log's: a rebuilt index has the entries appends made.
    pub(crate) fn open(
        storage: &dyn Storage,
        dir: &Path,
        base_offset: i64,
        recover: bool,
        now_ms: i64,
        index_interval_bytes: u64,
        sync: OpenSync,
    ) -> Result<LogSegment> {
        let stem = file_stem(base_offset);
        let log_path = dir.join(format!("{stem}.log"));
        let log = storage.open(&log_path, OpenMode::Existing)?;
        let size = log.size()?;
        let (offset_index, offset_valid) =
            Index::open(storage, &dir.join(format!("{stem}.index")))?;
        let (time_index, time_valid) =
            Index::open(storage, &dir.join(format!("{stem}.timeindex")))?;
        let mut segment = LogSegment {
            base_offset,
            log_path,
            log,
            size,
            offset_index,
            time_index,
            bytes_since_index_entry: 0,
            index_interval_bytes,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            created_ms: now_ms,
            cut_on_open: 0,
        };
        let indexes_fit = offset_valid
            && time_valid
            && segment
                .offset_index
                .last()
                .is_none_or(|e| u64::from(e.position) < size);
        if recover || !indexes_fit || size > u64::from(u32::MAX) {
            segment.cut_on_open = segment.recover()?;
            // The repair (a cut tail, rebuilt indexes) is made durable before anything relies
            // on it: a clean close's marker would vouch for it.
            if sync == OpenSync::Each {
                segment.flush()?;
            }
        } else {
            segment.load_tail()?;
        }
        Ok(segment)
    }

    /// Scans every batch, checking CRCs; truncates at the first bad one and rebuilds both indexes.
    /// Returns the number of bytes cut off.
    pub(crate) fn recover(&mut self) -> Result<u64> {
        // The entries are rebuilt in memory and written only where they differ from the files;
        // even a scan that failed leaves files and memory agreeing.
        self.offset_index.start_rebuild();
        self.time_index.start_rebuild();
        let scanned = self.rescan();
        let offsets = self.offset_index.finish_rebuild();
        let times = self.time_index.finish_rebuild();
        let cut = scanned?;
        offsets?;
        times?;
        Ok(cut)
    }

    fn rescan(&mut self) -> Result<u64> {
        self.bytes_since_index_entry = 0;
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = self.base_offset;
        let file_size = self.log.size()?;
        let mut position = 0u64;
        let mut buf = Vec::new();
        let mut header_buf = [0u8; BATCH_HEADER_BYTES];
        while position + BATCH_HEADER_BYTES as u64 <= file_size {
            if self.log.read_exact_at(&mut header_buf, position).is_err() {
                break;
            }
            let Ok(header) = BatchHeader::parse(&header_buf) else {
                break;
            };
            let total = header.total_size() as u64;
            // Past what an index entry can hold (a relative offset or a position beyond u32),
            // the file is not one this log wrote: the rest is cut like a corrupt tail.
            let fits_index = u32::try_from(header.base_offset - self.base_offset).is_ok()
                && u32::try_from(position).is_ok();
            if header.batch_length < batch::MIN_BATCH_LENGTH
                || position + total > file_size
                || header.base_offset < self.next_offset
                || !fits_index
            {
                break;
            }
            buf.resize(total as usize, 0);
            if self.log.read_exact_at(&mut buf, position).is_err() {
                break;
            }
            let Ok(header) = batch::validate_batch(&buf) else {
                break;
            };
            self.size = position;
            self.note_batch(&header, total)?;
            position += total;
        }
        self.size = position;
        let cut = file_size - position;
        if cut > 0 {
            tracing::warn!(
                segment = %self.log_path.display(),
                valid_bytes = position,
                cut_bytes = cut,
                "truncating a torn or corrupt tail of the log segment"
            );
            self.log.set_len(position)?;
        }
        Ok(cut)
    }

    /// Finds the next offset and newest timestamp from the last indexed batch onward.
    fn load_tail(&mut self) -> Result<()> {
        let start = self
            .offset_index
            .last()
            .map_or(0, |e| u64::from(e.position));
        let (mut max_timestamp, mut offset_of_max) = match self.time_index.last() {
            Some(t) => (t.timestamp, self.base_offset + i64::from(t.relative_offset)),
            None => (self.max_timestamp, self.offset_of_max_timestamp),
        };
        let mut next = self.next_offset;
        let mut end = start;
        let mut trusted = true;
        for batch in self.batches_from(start) {
            let header = match batch {
                Ok((_, header)) => header,
                // The index points into the middle of a batch (it is older than the file).
                Err(LogError::CorruptBatch(_)) => {
                    trusted = false;
                    break;
                }
                Err(e) => return Err(e),
            };
            if header.base_offset < next || header.last_offset_delta < 0 {
                // Offsets that do not grow.
                trusted = false;
                break;
            }
            next = header.last_offset() + 1;
            if header.max_timestamp > max_timestamp {
                max_timestamp = header.max_timestamp;
                offset_of_max = header.base_offset;
            }
            end += header.total_size() as u64;
        }
        if !trusted {
            // The file is not what the index says: trust nothing.
            self.cut_on_open = self.recover()?;
            self.flush()?;
            return Ok(());
        }
        self.next_offset = next;
        self.max_timestamp = max_timestamp;
        self.offset_of_max_timestamp = offset_of_max;
        if end != self.size {
            // The index pointed at something that is not a chain of batches: trust nothing.
            self.cut_on_open = self.recover()?;
        }
        Ok(())
    }

    /// Records a batch just written at `self.size`, updating indexes and counters.
    fn note_batch(&mut self, header: &BatchHeader, total: u64) -> Result<()> {
        // The log rolls before either leaves u32 (`Log::maybe_roll`), and recovery stops before
        // a batch where it would; an entry that wrapped would send reads to the wrong batch, so
        // a batch past them (offsets that jump by more than u32 in one step) is refused whole.
        let out_of_range = || {
            LogError::CorruptBatch(format!(
                "batch at offset {} and position {} is out of an index's reach from segment {}",
                header.base_offset, self.size, self.base_offset
            ))
        };
        let relative =
            u32::try_from(header.base_offset - self.base_offset).map_err(|_| out_of_range())?;
        let position = u32::try_from(self.size).map_err(|_| out_of_range())?;
        if self.bytes_since_index_entry >= self.index_interval_bytes
            || self.offset_index.entries().is_empty()
        {
            self.offset_index.append(OffsetEntry {
                relative_offset: relative,
                position,
            })?;
            if header.max_timestamp > self.time_index.last().map_or(i64::MIN, |t| t.timestamp) {
                self.time_index.append(TimeEntry {
                    timestamp: header.max_timestamp,
                    relative_offset: relative,
                })?;
            }
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += total;
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.base_offset;
        }
        self.next_offset = header.last_offset() + 1;
        Ok(())
    }

    /// Appends already validated and patched batches that start at `self.next_offset`. A write
    /// that fails is undone (the files end where they did, the counters are as before) before the
    /// error is returned, so a passing shortage (a full disk) leaves the segment whole; only an
    /// error while undoing leaves it in doubt.
    pub(crate) fn append(
        &mut self,
        bytes: &[u8],
        headers: &[BatchHeader],
        index_interval_bytes: u64,
    ) -> Result<()> {
        // The indexes are opened only when these batches add an entry: most appends of small
        // batches touch the `.log` file alone, so a partition whose indexes left the file cache
        // does not reopen them for each write.
        let last = headers.last().map_or(0, |h| h.total_size() as u64);
        let before_last = bytes.len() as u64 - last.min(bytes.len() as u64);
        let adds_entry = self.offset_index.entries().is_empty()
            || self.bytes_since_index_entry + before_last >= index_interval_bytes;
        let _pins = self.pin_files(adds_entry)?;
        let mark = self.mark();
        let result = (|| {
            self.log.write_all_at(bytes, self.size)?;
            self.index_interval_bytes = index_interval_bytes;
            for header in headers {
                let total = header.total_size() as u64;
                self.note_batch(header, total)?;
                self.size += total;
            }
            Ok(())
        })();
        if result.is_err() {
            // An error while undoing is never a shortage: the segment is in doubt.
            self.undo(mark).map_err(|e| {
                LogError::Io(std::io::Error::other(format!(
                    "undoing a failed append: {e}"
                )))
            })?;
        }
        result.map_err(|e| match e {
            LogError::Io(io) => LogError::from_io(io),
            other => other,
        })
    }

    fn mark(&self) -> AppendMark {
        AppendMark {
            size: self.size,
            next_offset: self.next_offset,
            bytes_since_index_entry: self.bytes_since_index_entry,
            max_timestamp: self.max_timestamp,
            offset_of_max_timestamp: self.offset_of_max_timestamp,
            offset_entries: self.offset_index.entries().len(),
            time_entries: self.time_index.entries().len(),
        }
    }

    /// Puts the segment back where `mark` was. The counters go back even if cutting a file
    /// fails (the log is poisoned then), so reads never reach past what was written whole.
    fn undo(&mut self, mark: AppendMark) -> std::io::Result<()> {
        self.size = mark.size;
        self.next_offset = mark.next_offset;
        self.bytes_since_index_entry = mark.bytes_since_index_entry;
        self.max_timestamp = mark.max_timestamp;
        self.offset_of_max_timestamp = mark.offset_of_max_timestamp;
        self.log.set_len(mark.size)?;
        // An index the append added no entry to is as it was (a failed entry write cuts itself).
        if self.offset_index.entries().len() != mark.offset_entries {
            self.offset_index.truncate_len(mark.offset_entries)?;
        }
        if self.time_index.entries().len() != mark.time_entries {
            self.time_index.truncate_len(mark.time_entries)?;
        }
        Ok(())
    }

    /// Reads the batch header at `position`, or `None` at the end of the segment.
    /// The segment's `.log` file as it is now, to read outside the log's lock.
    pub(crate) fn view(&self) -> SegmentView {
        SegmentView {
            base_offset: self.base_offset,
            size: self.size,
            file: self.log.clone(),
            path: self.log_path.clone(),
        }
    }

    /// The batches from `position` to the end of the segment: each header with its position,
    /// read one at a time. The one walk over batch headers that every reader uses; after an
    /// error (a header that is not one, or runs past the segment) it ends.
    pub(crate) fn batches_from(&self, position: u64) -> Batches<'_> {
        Batches {
            file: &*self.log,
            size: self.size,
            path: &self.log_path,
            position: Some(position),
        }
    }

    /// Position and header of the first batch whose last offset is at least `offset`.
    pub(crate) fn find_batch(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        let relative = (offset - self.base_offset).max(0);
        let start = self
            .offset_index
            .floor(relative)
            .map_or(0, |e| u64::from(e.position));
        for batch in self.batches_from(start) {
            let (position, header) = batch?;
            if header.last_offset() >= offset {
                return Ok(Some((position, header)));
            }
        }
        Ok(None)
    }

    /// Position of the first batch that may hold a record with timestamp `>= timestamp`.
    pub(crate) fn time_lookup_start(&self, timestamp: i64) -> u64 {
        match self.time_index.below(timestamp) {
            Some(entry) => self
                .offset_index
                .floor(i64::from(entry.relative_offset))
                .map_or(0, |e| u64::from(e.position)),
            None => 0,
        }
    }

    /// Reads `len` bytes at `position` (used to decode one batch for timestamp lookups).
    pub(crate) fn read_bytes(&self, position: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.log.read_exact_at(&mut buf, position)?;
        Ok(buf)
    }

    /// The `.log` file's open handle, for a reader outside the log's lock (see
    /// [`StoredFile::pinned`]).
    pub(crate) fn pinned_file(&self) -> Result<Arc<dyn StoredFile>> {
        crate::storage::pin(&self.log).map_err(LogError::from_io)
    }

    /// Pins the segment's files (see [`Pins`]); out of descriptors, a [`LogError::Shortage`].
    pub(crate) fn pin(&self) -> Result<Pins> {
        self.pin_files(true)
    }

    /// Pins the `.log` file, and the indexes too `with_indexes`.
    fn pin_files(&self, with_indexes: bool) -> Result<Pins> {
        let pin = |f: &Arc<dyn StoredFile>| crate::storage::pin(f).map_err(LogError::from_io);
        let index = |f: &Arc<dyn StoredFile>| with_indexes.then(|| pin(f)).transpose();
        Ok(Pins {
            _files: [
                Some(pin(&self.log)?),
                index(self.offset_index.file())?,
                index(self.time_index.file())?,
            ],
        })
    }

    /// Writes a final time-index entry for the newest timestamp, as Kafka does when a segment closes.
    pub(crate) fn seal_time_index(&mut self) -> Result<()> {
        let _pins = self.pin()?;
        if self.max_timestamp > self.time_index.last().map_or(i64::MIN, |t| t.timestamp) {
            let relative = (self.offset_of_max_timestamp - self.base_offset) as u32;
            self.time_index.append(TimeEntry {
                timestamp: self.max_timestamp,
                relative_offset: relative,
            })?;
        }
        Ok(())
    }

    /// Makes the segment durable after a failed fsync (see [`crate::unsynced`]): checks every
    /// batch as recovery does, writes back all it kept, and its indexes, then fsyncs. Whether
    /// this check or the open's cut bytes off (pages the disk lost: what follows the segment is
    /// not contiguous with it).
    pub(crate) fn resync(&mut self) -> Result<bool> {
        let _pins = self.pin()?;
        let cut = self.recover()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut position = 0u64;
        while position < self.size {
            let n = (self.size - position).min(buf.len() as u64) as usize;
            self.log.read_exact_at(&mut buf[..n], position)?;
            self.log.write_all_at(&buf[..n], position)?;
            position += n as u64;
        }
        self.offset_index.rewrite()?;
        self.time_index.rewrite()?;
        self.flush()?;
        Ok(cut > 0 || self.cut_on_open > 0)
    }

    /// Its files are pinned first: out of descriptors, that is a [`LogError::Shortage`] and
    /// nothing was lost; any failure of the fsync itself is not.
    pub(crate) fn flush(&self) -> Result<()> {
        let _pins = self.pin()?;
        self.log.sync_data().map_err(LogError::from_fsync)?;
        self.offset_index.sync().map_err(LogError::from_fsync)?;
        self.time_index.sync().map_err(LogError::from_fsync)?;
        Ok(())
    }

    /// Cuts the segment so that it ends before the first batch containing `offset` or later.
    pub(crate) fn truncate_to(&mut self, offset: i64) -> Result<()> {
        let mut position = 0u64;
        let mut next = self.base_offset;
        for batch in self.batches_from(0) {
            let (at, header) = batch?;
            if header.last_offset() >= offset {
                break;
            }
            next = header.last_offset() + 1;
            position = at + header.total_size() as u64;
        }
        self.log.set_len(position)?;
        self.size = position;
        self.next_offset = next;
        self.offset_index
            .truncate_while(|e| u64::from(e.position) < position)?;
        let base = self.base_offset;
        self.time_index
            .truncate_while(|e| base + i64::from(e.relative_offset) < next)?;
        self.bytes_since_index_entry = 0;
        Ok(())
    }

    /// Removes whatever files of a segment at `base_offset` exist, ignoring errors (cleaning up
    /// after a segment that could not be created).
    pub(crate) fn remove_files(storage: &dyn Storage, dir: &Path, base_offset: i64) {
        let stem = file_stem(base_offset);
        for ext in ["log", "index", "timeindex", "txnindex"] {
            let _ = storage.remove_file(&dir.join(format!("{stem}.{ext}")));
        }
    }

    pub(crate) fn delete_files(self, storage: &dyn Storage) -> Result<()> {
        let index_path = self.offset_index.path().to_path_buf();
        let time_path = self.time_index.path().to_path_buf();
        let txn_path = self.log_path.with_extension("txnindex");
        drop(self.offset_index);
        drop(self.time_index);
        for path in [&self.log_path, &index_path, &time_path, &txn_path] {
            match storage.remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Durably: a segment cut off by truncation that came back after a power cut would bring
        // back records the leader does not have.
        crate::storage::sync_parent(storage, &self.log_path)?;
        Ok(())
    }
}

/// The batch headers of a segment from a position on (see [`LogSegment::batches_from`]).
pub(crate) struct Batches<'a> {
    file: &'a dyn StoredFile,
    size: u64,
    path: &'a Path,
    /// Where the next header is; `None` once the walk ended.
    position: Option<u64>,
}

impl Iterator for Batches<'_> {
    type Item = Result<(u64, BatchHeader)>;

    fn next(&mut self) -> Option<Self::Item> {
        let position = self.position.take()?;
        match header_at(self.file, self.size, self.path, position) {
            Ok(Some(header)) => {
                self.position = Some(position + header.total_size() as u64);
                Some(Ok((position, header)))
            }
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

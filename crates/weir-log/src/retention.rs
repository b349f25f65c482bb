//! Where a log starts: DeleteRecords and retention (`retention.ms`, `retention.bytes`) move the
//! log start offset forward and delete the segments wholly below it. The start offset lives in
//! `log-start-offset`, replaced whole (temp file, fsync, rename, directory fsync) before the log
//! acts on it, so a full disk refuses the move and leaves the log as it was.

use std::path::Path;

use weir_types::Offset;

use crate::log::{shortage, LOG_START_OFFSET_FILE};
use crate::storage::{self, Storage};
use crate::{Log, LogError, Result};

impl Log {
    /// Moves the log start offset forward (DeleteRecords); whole segments below it are deleted.
    pub fn delete_records_before(&mut self, offset: Offset) -> Result<Offset> {
        self.check_writable()?;
        if offset > self.log_end_offset() || offset < Offset::ZERO {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: self.log_start_offset(),
                end: self.log_end_offset(),
            });
        }
        let offset = offset.0;
        if offset > self.log_start_offset {
            // A full disk refuses the move (the file is replaced whole or not at all).
            let result =
                write_log_start_offset(&*self.storage, &self.dir, offset).map_err(shortage);
            self.poison(result)?;
            self.log_start_offset = offset;
            self.delete_segments_below_start()?;
        }
        debug_assert!(self.log_start_offset <= self.log_end_offset);
        Ok(self.log_start_offset())
    }

    fn delete_segments_below_start(&mut self) -> Result<()> {
        let start = self.log_start_offset;
        let doomed: Vec<i64> = self
            .segments
            .iter()
            .rev()
            .skip(1)
            .filter(|(_, s)| s.next_offset <= start)
            .map(|(b, _)| *b)
            .collect();
        for base in doomed {
            if let Some(segment) = self.segments.remove(&base) {
                segment.delete_files(&*self.storage)?;
            }
        }
        self.forget_deleted_segments();
        Ok(())
    }

    /// Drops the aborted transactions of segments that are gone (their files went with them).
    fn forget_deleted_segments(&mut self) {
        let segments = &self.segments;
        self.txn_index
            .retain_segments(|base| segments.contains_key(&base));
    }

    /// Deletes whole closed segments past `retention.ms` or beyond `retention.bytes`.
    /// Returns how many segments were deleted.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<usize> {
        self.check_writable()?;
        if !self.config.cleanup_delete {
            return Ok(0);
        }
        let mut doomed = Vec::new();
        let closed: Vec<(i64, u64, i64, i64)> = self
            .segments
            .iter()
            .rev()
            .skip(1)
            .rev()
            .map(|(b, s)| (*b, s.size, s.max_timestamp, s.next_offset))
            .collect();
        let mut total = self.size_bytes() as i64;
        for (base, size, max_ts, next) in closed {
            let expired = self.config.retention_ms >= 0
                && max_ts >= 0
                && now_ms - max_ts > self.config.retention_ms;
            let oversize = self.config.retention_bytes >= 0
                && total - size as i64 >= self.config.retention_bytes;
            if !(expired || oversize) {
                break;
            }
            total -= size as i64;
            doomed.push((base, next));
        }
        if let Some(&(_, next)) = doomed.last() {
            if next > self.log_start_offset {
                let result =
                    write_log_start_offset(&*self.storage, &self.dir, next).map_err(shortage);
                self.poison(result)?;
                self.log_start_offset = next;
            }
        }
        let n = doomed.len();
        for (base, _) in doomed {
            if let Some(segment) = self.segments.remove(&base) {
                tracing::info!(dir = %self.dir.display(), base, "deleting segment by retention");
                segment.delete_files(&*self.storage)?;
            }
        }
        self.forget_deleted_segments();
        Ok(n)
    }
}

pub(crate) fn read_log_start_offset(storage: &dyn Storage, dir: &Path) -> Option<i64> {
    storage::read_text(storage, &dir.join(LOG_START_OFFSET_FILE))
        .ok()??
        .trim()
        .parse()
        .ok()
}

pub(crate) fn write_log_start_offset(storage: &dyn Storage, dir: &Path, offset: i64) -> Result<()> {
    let path = dir.join(LOG_START_OFFSET_FILE);
    storage::write_atomically(storage, &path, format!("{offset}\n").as_bytes())?;
    Ok(())
}

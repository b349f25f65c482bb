//! Making a log durable: `flush.messages`/`flush.ms`, and fsyncs run outside the log's lock
//! (the broker's flush thread takes a [`SyncTarget`], fsyncs it, and hands the result back).
//! The flushed offset is Kafka's recovery point: offsets below it are on disk.

use std::sync::Arc;

use weir_types::Offset;

use crate::storage::StoredFile;
use crate::{Log, LogError, Result};

/// An fsync to run outside the log's lock: the active segment's file, and the log end it covers.
#[derive(Debug, Clone)]
pub struct SyncTarget {
    pub(crate) file: Arc<dyn StoredFile>,
    pub(crate) end: i64,
    pub(crate) truncations: u64,
    /// The log's flushed offset when the target was taken: if this fsync fails, nothing from
    /// there on is known durable, whatever other fsyncs reported meanwhile.
    pub(crate) flushed: i64,
}

impl SyncTarget {
    /// Flushes the file's data to disk (blocking).
    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

impl Log {
    /// Whether `flush.ms` asks for an fsync now.
    pub fn flush_due(&self, now_ms: i64) -> bool {
        self.records_since_flush > 0
            && now_ms.saturating_sub(self.last_flush_ms) >= self.config.flush_ms
    }

    pub fn flush(&mut self) -> Result<()> {
        let result = self
            .segments
            .values()
            .next_back()
            .map_or(Ok(()), |s| s.flush());
        self.poison(result)?;
        self.records_since_flush = 0;
        self.last_flush_ms = crate::now_ms();
        self.flushed_offset = self.log_end_offset;
        Ok(())
    }

    /// Offsets below this are on disk.
    pub fn flushed_offset(&self) -> Offset {
        Offset(self.flushed_offset.min(self.log_end_offset))
    }

    /// How far this replica's log counts for acks=all and the high watermark: the flushed
    /// offset when writes are not cached (`write.caching=false`), else the log end.
    pub fn durable_end(&self) -> Offset {
        if self.config.write_caching {
            self.log_end_offset()
        } else {
            self.flushed_offset()
        }
    }

    /// What an fsync must cover to make the whole log durable, or `None` when it already is.
    /// The fsync itself runs without the log's lock ([`SyncTarget::sync`]); its result is given
    /// back with [`Log::synced`]. Closed segments were fsynced when they rolled.
    /// Out of descriptors for the file, it is a [`LogError::Shortage`]: try again later.
    pub fn sync_target(&self) -> Result<Option<SyncTarget>> {
        if self.flushed_offset >= self.log_end_offset || self.poisoned.is_some() {
            return Ok(None);
        }
        let Some(active) = self.segments.values().next_back() else {
            return Ok(None);
        };
        Ok(Some(SyncTarget {
            file: active.pinned_file()?,
            end: self.log_end_offset,
            truncations: self.truncations,
            flushed: self.flushed_offset().0,
        }))
    }

    /// Takes the result of an fsync begun with [`Log::sync_target`]: on success the log is
    /// flushed up to where it ended then (unless its tail was cut meanwhile); a failed fsync
    /// poisons the log, since the kernel may have dropped the unsynced pages.
    pub fn synced(&mut self, target: &SyncTarget, result: std::io::Result<()>) -> Result<()> {
        if result.is_err() && self.poisoned.is_none() {
            let from = target.flushed.min(self.flushed_offset().0);
            if let Err(e) = crate::unsynced::record(&*self.storage, &self.dir, from) {
                tracing::error!(dir = %self.dir.display(), error = %e, "cannot record a failed fsync");
            }
        }
        self.poison(result.map_err(LogError::from))?;
        if target.truncations == self.truncations {
            self.flushed_offset = self.flushed_offset.max(target.end);
            self.records_since_flush = 0;
            self.last_flush_ms = crate::now_ms();
        }
        Ok(())
    }
}

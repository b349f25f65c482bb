//! The leader-epoch cache of a partition and its `leader-epoch-checkpoint` file (KIP-101, KIP-279).
//!
//! Each entry says: from this start offset on, batches were written under this leader epoch. It
//! answers OffsetForLeaderEpoch, which followers use to find where their log diverges.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::storage::{self, Storage};
use crate::{LogError, Result};

const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

#[derive(Debug)]
pub struct LeaderEpochCache {
    storage: Arc<dyn Storage>,
    path: PathBuf,
    /// (epoch, start offset), both strictly increasing.
    entries: Vec<(i32, i64)>,
}

impl LeaderEpochCache {
    pub(crate) fn open(storage: Arc<dyn Storage>, dir: &Path) -> Result<LeaderEpochCache> {
        let path = dir.join(CHECKPOINT_FILE);
        let mut entries = Vec::new();
        if let Some(text) = storage::read_text(&*storage, &path)? {
            entries = parse_checkpoint(&text).unwrap_or_else(|| {
                tracing::warn!(file = %path.display(), "ignoring a malformed leader-epoch-checkpoint");
                Vec::new()
            });
        }
        Ok(LeaderEpochCache {
            storage,
            path,
            entries,
        })
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.0)
    }

    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    /// Records that batches from `start_offset` on carry `epoch`; older or equal epochs are ignored.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<()> {
        if epoch < 0 || self.latest_epoch().is_some_and(|latest| epoch <= latest) {
            return Ok(());
        }
        self.entries.push((epoch, start_offset));
        let written = self.write();
        if written.is_err() {
            // Memory stays as the file is.
            self.entries.pop();
        }
        written
    }

    /// Drops entries at or after `end_offset` (after the log was truncated there).
    pub(crate) fn truncate_from_end(&mut self, end_offset: i64) -> Result<()> {
        let before = self.entries.len();
        self.entries.retain(|&(_, start)| start < end_offset);
        if self.entries.len() != before {
            self.write()?;
        }
        Ok(())
    }

    /// Forgets every entry (the log was emptied).
    pub(crate) fn clear(&mut self) -> Result<()> {
        self.entries.clear();
        self.write()
    }

    /// For OffsetForLeaderEpoch: the largest epoch at most `epoch`, and the offset where it ended
    /// (the start of the next epoch, or `log_end_offset` for the latest). `(-1, -1)` when unknown.
    pub fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> (i32, i64) {
        let n = self.entries.partition_point(|&(e, _)| e <= epoch);
        match n.checked_sub(1) {
            None => (-1, -1),
            Some(i) if i + 1 == self.entries.len() => (self.entries[i].0, log_end_offset),
            Some(i) => (self.entries[i].0, self.entries[i + 1].1),
        }
    }

    /// Written to a temporary file, fsynced, then renamed over the old one.
    fn write(&self) -> Result<()> {
        let mut text = format!("0\n{}\n", self.entries.len());
        for (epoch, offset) in &self.entries {
            text.push_str(&format!("{epoch} {offset}\n"));
        }
        storage::write_atomically(&*self.storage, &self.path, text.as_bytes())
            .map_err(LogError::from)
    }
}

fn parse_checkpoint(text: &str) -> Option<Vec<(i32, i64)>> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut entries = Vec::with_capacity(count.min(1024));
    for line in lines.take(count) {
        let mut parts = line.split_whitespace();
        let epoch = parts.next()?.parse().ok()?;
        let offset = parts.next()?.parse().ok()?;
        entries.push((epoch, offset));
    }
    (entries.len() == count).then_some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_offsets_follow_kafka_semantics_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = LeaderEpochCache::open(crate::Disk::shared(), dir.path()).unwrap();
        cache.assign(0, 0).unwrap();
        cache.assign(2, 10).unwrap();
        cache.assign(1, 5).unwrap(); // older than the latest: ignored
        cache.assign(5, 30).unwrap();
        let cache = LeaderEpochCache::open(crate::Disk::shared(), dir.path()).unwrap();
        assert_eq!(cache.entries(), &[(0, 0), (2, 10), (5, 30)]);
        assert_eq!(cache.end_offset_for(0, 40), (0, 10));
        assert_eq!(cache.end_offset_for(1, 40), (0, 10));
        assert_eq!(cache.end_offset_for(3, 40), (2, 30));
        assert_eq!(cache.end_offset_for(5, 40), (5, 40));
        assert_eq!(cache.end_offset_for(9, 40), (5, 40));
        assert_eq!(cache.end_offset_for(-1, 40), (-1, -1));
    }
}

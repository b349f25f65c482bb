//! The leader-epoch cache of a partition and its `leader-epoch-checkpoint` file (KIP-101, KIP-279).
//!
//! Each entry says: from this start offset on, batches were written under this leader epoch. It
//! answers OffsetForLeaderEpoch, which followers use to find where their log diverges.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use weir_types::{LeaderEpoch, Offset};

use crate::storage::{self, Storage};
use crate::{LogError, Result};

const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

#[derive(Debug)]
pub struct LeaderEpochCache {
    storage: Arc<dyn Storage>,
    path: PathBuf,
    /// (epoch, start offset), both strictly increasing.
    entries: Vec<(LeaderEpoch, Offset)>,
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

    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.entries.last().map(|e| e.0)
    }

    pub fn entries(&self) -> &[(LeaderEpoch, Offset)] {
        &self.entries
    }

    /// Records that batches from `start_offset` on carry `epoch`; older or equal epochs are ignored.
    pub(crate) fn assign(&mut self, epoch: LeaderEpoch, start_offset: Offset) -> Result<()> {
        if self.latest_epoch().is_some_and(|latest| epoch <= latest) {
            return Ok(());
        }
        debug_assert!(
            self.entries
                .last()
                .is_none_or(|&(_, start)| start <= start_offset),
            "a leader epoch starting before the previous one"
        );
        self.entries.push((epoch, start_offset));
        let written = self.write();
        if written.is_err() {
            // Memory stays as the file is.
            self.entries.pop();
        }
        written
    }

    /// Drops entries at or after `end_offset` (after the log was truncated there).
    pub(crate) fn truncate_from_end(&mut self, end_offset: Offset) -> Result<()> {
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
    /// (the start of the next epoch, or `log_end_offset` for the latest). `None` when unknown.
    pub fn end_offset_for(
        &self,
        epoch: LeaderEpoch,
        log_end_offset: Offset,
    ) -> Option<(LeaderEpoch, Offset)> {
        let n = self.entries.partition_point(|&(e, _)| e <= epoch);
        let i = n.checked_sub(1)?;
        let end = match self.entries.get(i + 1) {
            None => log_end_offset,
            Some(&(_, next_start)) => next_start,
        };
        Some((self.entries[i].0, end))
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

fn parse_checkpoint(text: &str) -> Option<Vec<(LeaderEpoch, Offset)>> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut entries = Vec::with_capacity(count.min(1024));
    for line in lines.take(count) {
        let mut parts = line.split_whitespace();
        let epoch = LeaderEpoch(parts.next()?.parse().ok()?);
        let offset = Offset(parts.next()?.parse().ok()?);
        entries.push((epoch, offset));
    }
    (entries.len() == count).then_some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_offsets_follow_kafka_semantics_and_survive_reopen() {
        let (e, o) = (LeaderEpoch, Offset);
        let dir = tempfile::tempdir().unwrap();
        let mut cache = LeaderEpochCache::open(crate::Disk::shared(), dir.path()).unwrap();
        cache.assign(e(0), o(0)).unwrap();
        cache.assign(e(2), o(10)).unwrap();
        cache.assign(e(1), o(5)).unwrap(); // older than the latest: ignored
        cache.assign(e(5), o(30)).unwrap();
        let cache = LeaderEpochCache::open(crate::Disk::shared(), dir.path()).unwrap();
        assert_eq!(
            cache.entries(),
            &[(e(0), o(0)), (e(2), o(10)), (e(5), o(30))]
        );
        let end = |epoch| cache.end_offset_for(e(epoch), o(40));
        assert_eq!(end(0), Some((e(0), o(10))));
        assert_eq!(end(1), Some((e(0), o(10))));
        assert_eq!(end(3), Some((e(2), o(30))));
        assert_eq!(end(5), Some((e(5), o(40))));
        assert_eq!(end(9), Some((e(5), o(40))));
    }

    #[test]
    fn an_epoch_older_than_every_entry_is_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = LeaderEpochCache::open(crate::Disk::shared(), dir.path()).unwrap();
        assert_eq!(cache.end_offset_for(LeaderEpoch(0), Offset(9)), None);
        cache.assign(LeaderEpoch(3), Offset(4)).unwrap();
        assert_eq!(cache.end_offset_for(LeaderEpoch(2), Offset(9)), None);
    }
}

//! Producer-state snapshots (Kafka's `<offset>.snapshot` files): the idempotent producers'
//! state as of an offset, written when the log rolls (at the new segment's base) and when it
//! closes (at its end). Opening or truncating a log then reads the latest usable snapshot and
//! scans only the batch headers after it, so the time either takes no longer grows with the
//! bytes the log holds; after a clean close it scans none.
//!
//! A snapshot is written atomically (temp file, fsync, rename, directory fsync) after the
//! batches before it were fsynced. It is usable if its offset is within the log and starts a
//! batch (or is the log end), and its CRC holds; otherwise the next older one is tried, and with
//! none the whole log is scanned. A truncation removes the snapshots past its cut first (they would describe
//! batches that are gone), and an open removes those past the log end (a tail lost in a crash).
//! The newest [`KEEP`] are kept.

use std::path::{Path, PathBuf};

use crate::log::Log;
use crate::producer_state::ProducerStateManager;
use crate::storage::{self, Storage};
use crate::Result;

const SUFFIX: &str = ".snapshot";

/// Snapshots kept per log: the newest, and one more in case it is damaged.
const KEEP: usize = 2;

/// A closing log writes a snapshot at its end when an open would otherwise scan this many bytes
/// of batches: a broker with many small logs does not pay three fsyncs per log at shutdown.
pub(crate) const AT_CLOSE_BYTES: u64 = 16 << 20;

fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}{SUFFIX}"))
}

/// The offsets of the snapshots in `dir`, oldest first.
fn snapshot_offsets(fs: &dyn Storage, dir: &Path) -> std::io::Result<Vec<i64>> {
    let mut offsets: Vec<i64> = fs
        .list(dir)?
        .iter()
        .filter_map(|name| name.strip_suffix(SUFFIX))
        .filter(|stem| stem.len() == 20)
        .filter_map(|stem| stem.parse().ok())
        .collect();
    offsets.sort_unstable();
    Ok(offsets)
}

impl Log {
    /// Writes the producer state as of `offset`, the base of the segment just started, and
    /// removes all but the newest snapshots. A failure is logged, not returned: the log is
    /// whole without it, and opening falls back to an older snapshot or a full scan.
    pub(crate) fn write_producer_snapshot(&mut self, offset: i64) {
        let fs = &*self.storage;
        let path = snapshot_path(&self.dir, offset);
        if let Err(e) = storage::write_atomically(fs, &path, &self.producers.encode()) {
            tracing::warn!(file = %path.display(), error = %e, "writing a producer-state snapshot failed");
            return;
        }
        self.unsnapshotted_bytes = self.size_after(offset);
        let Ok(offsets) = snapshot_offsets(fs, &self.dir) else {
            return;
        };
        // Durably: one that came back after a power cut could outlive a later truncation that
        // no longer saw it.
        let old: Vec<i64> = offsets.iter().rev().skip(KEEP).copied().collect();
        if old.is_empty() {
            return;
        }
        let removed = old
            .iter()
            .try_for_each(|o| fs.remove_file(&snapshot_path(&self.dir, *o)))
            .and_then(|()| fs.sync_dir(&self.dir));
        if let Err(e) = removed {
            tracing::warn!(error = %e, "removing old producer-state snapshots failed");
        }
    }

    /// Removes, durably, the snapshots past `end`: the batches they describe are being cut.
    /// Returns the offsets of those left, oldest first.
    pub(crate) fn remove_snapshots_after(&self, end: i64) -> Result<Vec<i64>> {
        let fs = &*self.storage;
        let (kept, past): (Vec<i64>, Vec<i64>) = snapshot_offsets(fs, &self.dir)?
            .into_iter()
            .partition(|offset| *offset <= end);
        for offset in past {
            storage::remove_durably(fs, &snapshot_path(&self.dir, offset))?;
        }
        Ok(kept)
    }

    /// Rebuilds the producer state, and the leader epochs the scanned batches carry, from the
    /// latest usable snapshot and the batch headers after it (all of them without one). Returns
    /// the offset the scan began at.
    pub(crate) fn load_producer_state(&mut self) -> Result<i64> {
        let mut snapshots = self.remove_snapshots_after(self.log_end_offset)?;
        let fs = &*self.storage;
        let mut loaded: Option<(i64, (i64, u64), ProducerStateManager)> = None;
        // Without an epoch cache (its checkpoint lost or unreadable), the whole log is scanned:
        // the scan also rebuilds the epochs its batches carry.
        if self.epochs.entries().is_empty() && self.log_end_offset > 0 {
            snapshots.clear();
        }
        for offset in snapshots.into_iter().rev() {
            let Some(at) = self.batch_boundary(offset)? else {
                continue;
            };
            let path = snapshot_path(&self.dir, offset);
            match fs
                .read(&path)
                .ok()
                .and_then(|b| ProducerStateManager::decode(&b))
            {
                Some(state) => {
                    loaded = Some((offset, at, state));
                    break;
                }
                None => {
                    tracing::warn!(file = %path.display(), "skipping a damaged producer-state snapshot")
                }
            }
        }
        // Where the scan begins: a segment, and a position in it.
        let (from, (first, position)) = match loaded {
            Some((offset, at, state)) => {
                self.producers = state;
                (offset, at)
            }
            None => {
                self.producers.clear();
                (i64::MIN, (i64::MIN, 0))
            }
        };
        self.unsnapshotted_bytes = 0;
        // Aborts found on the way, with the LSO right after each (indexed below if missing).
        let mut aborts = Vec::new();
        for (base, segment) in self.segments.range(first..) {
            let start = if *base == first { position } else { 0 };
            self.unsnapshotted_bytes += segment.size.saturating_sub(start);
            for batch in segment.batches_from(start) {
                let (at, header) = batch?;
                // A marker's type is in its record; markers are small and rare.
                let marker = if header.is_control() {
                    let len = header.total_size().min(256);
                    crate::txn::control_record(&segment.read_bytes(at, len)?)
                } else {
                    None
                };
                if let Some(done) = self.producers.update(&header, marker) {
                    if done.aborted {
                        aborts.push((done, self.producers.first_unstable_offset()));
                    }
                }
                if let Some(epoch) = header.leader_epoch() {
                    self.epochs.assign(epoch, header.first())?;
                }
            }
        }
        for (done, lso) in aborts {
            self.index_replayed_abort(done, lso)?;
        }
        Ok(from)
    }

    /// Bytes of the segments from `offset`'s on (whole segments: a bound, for the close check).
    fn size_after(&self, offset: i64) -> u64 {
        let first = self
            .segments
            .range(..=offset)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        self.segments
            .range(first..)
            .map(|(_, s)| s.size)
            .sum::<u64>()
    }

    /// Where `offset` is as the start of a batch: its segment's base and its position there
    /// (the end of the segment for the log end offset). `None` when it is outside the log or
    /// inside a batch.
    fn batch_boundary(&self, offset: i64) -> Result<Option<(i64, u64)>> {
        if offset > self.log_end_offset {
            return Ok(None);
        }
        let Some((base, segment)) = self.segments.range(..=offset).next_back() else {
            return Ok(None);
        };
        Ok(match segment.find_batch(offset)? {
            Some((position, header)) => (header.base_offset == offset).then_some((*base, position)),
            None => (offset == segment.next_offset).then_some((*base, segment.size)),
        })
    }
}

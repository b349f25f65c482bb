//! Failed writes and fsyncs, remembered on the disk.
//!
//! When an fsync fails, Linux marks the pages it could not write clean: they stay readable in
//! the page cache, and later fsyncs succeed without writing them. A process that restarts then
//! finds its log whole, counts it durable and goes on past it, and a later power cut takes those
//! pages: a hole before records that did reach the disk. So a log whose write or fsync fails
//! records in [`UNSYNCED_FILE`] the offset from which nothing is known durable. The next open
//! checks every segment from there, writes back what it reads (making the page cache's copy
//! durable), drops whatever follows a segment found cut short, and only then removes the file.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use crate::segment::LogSegment;
use crate::storage::{self, Storage};
use crate::Result;

/// The file, in the log's directory, that names the first offset not known durable.
pub(crate) const UNSYNCED_FILE: &str = "unsynced-from";

/// Records that nothing from `from` on is known durable (keeping an earlier record's offset if
/// lower), durably.
pub(crate) fn record(fs: &dyn Storage, dir: &Path, from: i64) -> io::Result<()> {
    let from = match read(fs, dir) {
        Ok(Some(old)) => old.min(from),
        Ok(None) => from,
        // An earlier record may be there: the whole log, to be safe.
        Err(_) => 0,
    };
    storage::write_atomically(fs, &dir.join(UNSYNCED_FILE), format!("{from}\n").as_bytes())
}

/// The recorded offset, if any. A record that cannot be parsed names the whole log; one that
/// cannot be read (out of descriptors, say) is an error, and the open fails and is tried again.
pub(crate) fn read(fs: &dyn Storage, dir: &Path) -> io::Result<Option<i64>> {
    Ok(storage::read_text(fs, &dir.join(UNSYNCED_FILE))?
        .map(|text| text.trim().parse().unwrap_or(0)))
}

/// Removes the record once the open made everything durable: what the open removed is made
/// durable first, so a power cut cannot bring back a dropped segment without the record.
pub(crate) fn clear(fs: &dyn Storage, dir: &Path) -> io::Result<()> {
    fs.sync_dir(dir)?;
    storage::remove_durably(fs, &dir.join(UNSYNCED_FILE))
}

/// Makes every segment that may hold offsets from `from` on durable again
/// ([`LogSegment::resync`]). When one of them turns out cut short, the segments after it are
/// removed: the log stays one contiguous run of offsets, and what it lost is fetched again from
/// the leader.
pub(crate) fn resync_from(
    fs: &dyn Storage,
    dir: &Path,
    segments: &mut BTreeMap<i64, LogSegment>,
    from: i64,
) -> Result<()> {
    let bases: Vec<i64> = segments.keys().copied().collect();
    let mut cut_short = None;
    for (i, base) in bases.iter().enumerate() {
        let next_base = bases.get(i + 1).copied().unwrap_or(i64::MAX);
        if next_base <= from {
            continue;
        }
        let Some(segment) = segments.get_mut(base) else {
            continue;
        };
        if segment.resync()? && next_base != i64::MAX {
            cut_short = Some(*base);
            break;
        }
    }
    tracing::warn!(dir = %dir.display(), from, "rewrote the log after a failed write or fsync");
    let Some(cut) = cut_short else {
        return Ok(());
    };
    for base in bases.into_iter().filter(|b| *b > cut) {
        if let Some(segment) = segments.remove(&base) {
            tracing::warn!(dir = %dir.display(), base, "removing a segment after a hole the disk left");
            segment.delete_files(fs)?;
        }
    }
    Ok(())
}

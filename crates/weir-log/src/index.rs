//! Sparse offset and time indexes of one segment (`.index`, `.timeindex`).
//!
//! Kafka memory-maps preallocated index files; we keep the entries in memory and append them to a
//! plain file, which needs no `unsafe` and keeps a crash from leaving zero-filled tails. An index
//! that fails its sanity check on open is rebuilt from the segment (Kafka's `LogLoader` does the
//! same).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::storage::{OpenMode, Storage, StoredFile};

/// One fixed-size entry of an index file.
pub(crate) trait IndexEntry: Copy + PartialEq {
    const SIZE: usize;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(bytes: &[u8]) -> Self;
    /// The value the entries are sorted by.
    fn key(&self) -> i64;
}

/// `.index` entry: offset relative to the segment's base, and the byte position of that batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub(crate) relative_offset: u32,
    pub(crate) position: u32,
}

/// `.timeindex` entry: the largest timestamp so far, and the relative offset of the batch holding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub(crate) timestamp: i64,
    pub(crate) relative_offset: u32,
}

impl IndexEntry for OffsetEntry {
    const SIZE: usize = 8;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            position: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
    fn key(&self) -> i64 {
        i64::from(self.relative_offset)
    }
}

impl IndexEntry for TimeEntry {
    const SIZE: usize = 12;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[..8]);
        TimeEntry {
            timestamp: i64::from_be_bytes(ts),
            relative_offset: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        }
    }
    fn key(&self) -> i64 {
        self.timestamp
    }
}

/// An append-only index file and its entries in memory.
#[derive(Debug)]
pub(crate) struct Index<E: IndexEntry> {
    path: PathBuf,
    file: Arc<dyn StoredFile>,
    entries: Vec<E>,
    /// While a recovery rebuilds the entries: what the file holds. Entries appended meanwhile
    /// stay in memory, and [`Index::finish_rebuild`] writes only where they differ.
    rebuilding: Option<Vec<E>>,
}

impl<E: IndexEntry> Index<E> {
    /// Opens the index; returns `None` as the entries when the file is missing or malformed, in
    /// which case the caller rebuilds it.
    pub(crate) fn open(storage: &dyn Storage, path: &Path) -> std::io::Result<(Self, bool)> {
        let existed = storage.exists(path);
        let file = storage.open(path, OpenMode::Create)?;
        let len = usize::try_from(file.size()?).map_err(std::io::Error::other)?;
        let mut raw = vec![0u8; len];
        file.read_exact_at(&mut raw, 0)?;
        let mut entries = Vec::with_capacity(raw.len() / E::SIZE);
        let mut valid = existed && raw.len() % E::SIZE == 0;
        if valid {
            for chunk in raw.chunks_exact(E::SIZE) {
                let e = E::decode(chunk);
                if entries.last().is_some_and(|last: &E| last.key() > e.key()) {
                    valid = false;
                    break;
                }
                entries.push(e);
            }
        }
        let mut index = Index {
            path: path.to_path_buf(),
            file,
            entries,
            rebuilding: None,
        };
        if !valid {
            index.reset()?;
        }
        Ok((index, valid))
    }

    pub(crate) fn entries(&self) -> &[E] {
        &self.entries
    }

    pub(crate) fn last(&self) -> Option<E> {
        self.entries.last().copied()
    }

    pub(crate) fn append(&mut self, entry: E) -> std::io::Result<()> {
        // A lookup is a binary search: keys never fall (offsets rise, timestamps are the
        // largest so far).
        debug_assert!(
            self.entries
                .last()
                .is_none_or(|last| last.key() <= entry.key()),
            "an index entry below the last one"
        );
        if self.rebuilding.is_some() {
            self.entries.push(entry);
            return Ok(());
        }
        let mut buf = Vec::with_capacity(E::SIZE);
        entry.encode(&mut buf);
        let end = (self.entries.len() * E::SIZE) as u64;
        if let Err(e) = self.file.write_all_at(&buf, end) {
            // Part of the entry may have landed: cut it, so the file stays whole entries.
            self.file.set_len((self.entries.len() * E::SIZE) as u64)?;
            return Err(e);
        }
        self.entries.push(entry);
        Ok(())
    }

    /// Starts rebuilding the entries from scratch (a segment's recovery), leaving the file alone
    /// until [`Index::finish_rebuild`].
    pub(crate) fn start_rebuild(&mut self) {
        if self.rebuilding.is_none() {
            self.rebuilding = Some(std::mem::take(&mut self.entries));
        }
    }

    /// Makes the file hold the rebuilt entries, writing only from the first that differs: a
    /// recovery that found what the file says (the usual case after a crash) writes nothing.
    pub(crate) fn finish_rebuild(&mut self) -> std::io::Result<()> {
        let Some(stored) = self.rebuilding.take() else {
            return Ok(());
        };
        let same = stored
            .iter()
            .zip(&self.entries)
            .take_while(|(a, b)| a == b)
            .count();
        if same < stored.len() {
            self.file.set_len((same * E::SIZE) as u64)?;
        }
        if same < self.entries.len() {
            let mut buf = Vec::with_capacity((self.entries.len() - same) * E::SIZE);
            for e in &self.entries[same..] {
                e.encode(&mut buf);
            }
            if let Err(e) = self.file.write_all_at(&buf, (same * E::SIZE) as u64) {
                // Whole entries only, as `append` leaves them.
                self.entries.truncate(same);
                self.file.set_len((same * E::SIZE) as u64)?;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Keeps the first `n` entries (the file too).
    pub(crate) fn truncate_len(&mut self, n: usize) -> std::io::Result<()> {
        self.entries.truncate(n);
        self.file.set_len((self.entries.len() * E::SIZE) as u64)
    }

    /// Drops every entry and empties the file (an already empty file is left alone: a
    /// truncation costs a journal update, and recovery resets every active segment's indexes).
    pub(crate) fn reset(&mut self) -> std::io::Result<()> {
        self.entries.clear();
        if self.file.size()? == 0 {
            return Ok(());
        }
        self.file.set_len(0)
    }

    /// Keeps only the entries for which `keep` holds (a prefix) and rewrites the file to match.
    pub(crate) fn truncate_while(&mut self, keep: impl Fn(&E) -> bool) -> std::io::Result<()> {
        let n = self.entries.iter().take_while(|e| keep(e)).count();
        if n < self.entries.len() {
            self.truncate_len(n)?;
        }
        Ok(())
    }

    /// The last entry whose key is at most `key`.
    pub(crate) fn floor(&self, key: i64) -> Option<E> {
        let n = self.entries.partition_point(|e| e.key() <= key);
        n.checked_sub(1).map(|i| self.entries[i])
    }

    /// The last entry whose key is strictly below `key`.
    pub(crate) fn below(&self, key: i64) -> Option<E> {
        let n = self.entries.partition_point(|e| e.key() < key);
        n.checked_sub(1).map(|i| self.entries[i])
    }

    pub(crate) fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    /// Writes every entry again (after a failed fsync, pages the page cache shows may never have
    /// reached the disk, and only a write makes them dirty again).
    pub(crate) fn rewrite(&self) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(self.entries.len() * E::SIZE);
        for e in &self.entries {
            e.encode(&mut buf);
        }
        self.file.write_all_at(&buf, 0)?;
        self.file.set_len(buf.len() as u64)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn file(&self) -> &Arc<dyn StoredFile> {
        &self.file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_reopen_and_garbage_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        {
            let (mut idx, valid) = Index::<OffsetEntry>::open(&crate::Disk, &path).unwrap();
            assert!(!valid);
            for i in 0..10u32 {
                idx.append(OffsetEntry {
                    relative_offset: i * 10,
                    position: i * 100,
                })
                .unwrap();
            }
        }
        let (idx, valid) = Index::<OffsetEntry>::open(&crate::Disk, &path).unwrap();
        assert!(valid);
        assert_eq!(idx.entries().len(), 10);
        assert_eq!(idx.floor(55).unwrap().relative_offset, 50);
        assert_eq!(idx.below(50).unwrap().relative_offset, 40);
        assert!(idx.below(0).is_none());
        std::fs::write(&path, [1u8, 2, 3]).unwrap();
        let (idx, valid) = Index::<OffsetEntry>::open(&crate::Disk, &path).unwrap();
        assert!(!valid);
        assert!(idx.entries().is_empty());
    }
}

//! The Raft log on disk, under `<data>/meta/raft/`.
//!
//! - `log`: entries appended as `length: u32 BE | crc32c: u32 BE | JSON entry`, fsynced before
//!   openraft is told they are durable. On open, entries are read until the first torn or corrupt
//!   frame and the file is cut there, as the partition logs do.
//! - `vote`, `committed`, `purged`: small JSON files replaced atomically (temporary name, fsync,
//!   rename).
//!
//! Truncation (a leader overwriting a follower's uncommitted suffix) cuts the file at the first
//! removed entry. Purging (after a snapshot) records the purge point and, once most of the file
//! is purged, rewrites the file with the remaining entries.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, LogState, RaftLogReader, StorageError, Vote,
};

use super::{io_err, write_atomically, NodeId, TypeConfig};
use crate::framing::{frame, intact_frames};

/// Longest entry accepted on replay; a longer length field means corruption.
const MAX_ENTRY_BYTES: usize = 64 * 1024 * 1024;

type Result<T> = std::result::Result<T, StorageError<NodeId>>;

/// The durable Raft log of one voter. Clones share the same log (openraft reads through a clone).
#[derive(Debug, Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    file: File,
    /// Entries after the purge point, by index, with their byte position in `file`.
    entries: BTreeMap<u64, (u64, Entry<TypeConfig>)>,
    /// Bytes of `file`; the next entry goes here.
    end: u64,
    /// Bytes at the start of `file` that hold purged entries only.
    purged_bytes: u64,
    last_purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn frame_entry(entry: &Entry<TypeConfig>) -> std::io::Result<Vec<u8>> {
    let body = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
    Ok(frame(&body))
}

impl LogStore {
    /// Opens (or creates) the log in `dir`.
    pub fn open(dir: &Path) -> std::io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("log");
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let last_purged: Option<LogId<NodeId>> = read_json(&dir.join("purged"))?;
        let vote = read_json(&dir.join("vote"))?;
        let committed = read_json(&dir.join("committed"))?;
        let mut raw = Vec::new();
        file.read_to_end(&mut raw)?;
        let (frames, at) = intact_frames(&raw, MAX_ENTRY_BYTES);
        let mut entries = BTreeMap::new();
        let mut purged_bytes = 0u64;
        for (pos, body) in frames {
            let entry: Entry<TypeConfig> = serde_json::from_slice(body).map_err(|e| {
                std::io::Error::other(format!(
                    "entry at byte {pos} of {} has a good checksum but cannot be read: {e}",
                    path.display()
                ))
            })?;
            if last_purged.is_some_and(|p| entry.log_id.index <= p.index) {
                purged_bytes = (pos + 8 + body.len()) as u64;
            } else {
                entries.insert(entry.log_id.index, (pos as u64, entry));
            }
        }
        if at < raw.len() {
            tracing::warn!(file = %path.display(), valid_bytes = at, cut_bytes = raw.len() - at,
                "truncating a torn tail of the Raft log");
            file.set_len(at as u64)?;
            file.sync_all()?;
        }
        Ok(LogStore {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_path_buf(),
                file,
                entries,
                end: at as u64,
                purged_bytes,
                last_purged,
                vote,
                committed,
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    /// Rewrites the file with only the live entries, once purged entries fill most of it.
    fn maybe_compact(&mut self) -> std::io::Result<()> {
        if self.purged_bytes < 1024 * 1024 || self.purged_bytes < self.end / 2 {
            return Ok(());
        }
        let path = self.dir.join("log");
        let mut buf = Vec::new();
        let mut entries = BTreeMap::new();
        for (index, (_, entry)) in std::mem::take(&mut self.entries) {
            let at = buf.len() as u64;
            buf.extend_from_slice(&frame_entry(&entry)?);
            entries.insert(index, (at, entry));
        }
        write_atomically(&path, &buf)?;
        self.file = OpenOptions::new().read(true).append(true).open(&path)?;
        self.entries = entries;
        self.end = buf.len() as u64;
        self.purged_bytes = 0;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>> {
        let inner = self.lock();
        Ok(inner
            .entries
            .range(range)
            .map(|(_, (_, e))| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>> {
        let inner = self.lock();
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|(_, e)| e.log_id)
            .or(inner.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<()> {
        let mut inner = self.lock();
        let bytes = serde_json::to_vec(vote)
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        write_atomically(&inner.dir.join("vote"), &bytes)
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<()> {
        let mut inner = self.lock();
        let bytes = serde_json::to_vec(&committed)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
        write_atomically(&inner.dir.join("committed"), &bytes)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
        inner.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>> {
        Ok(self.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.lock();
        let mut buf = Vec::new();
        let mut added = Vec::new();
        for entry in entries {
            let at = inner.end + buf.len() as u64;
            buf.extend_from_slice(
                &frame_entry(&entry)
                    .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?,
            );
            added.push((at, entry));
        }
        let written = inner
            .file
            .write_all(&buf)
            .and_then(|_| inner.file.sync_data());
        if let Err(e) = written {
            let message = e.to_string();
            callback.log_io_completed(Err(e));
            return Err(io_err(ErrorSubject::Logs, ErrorVerb::Write, message));
        }
        inner.end += buf.len() as u64;
        for (at, entry) in added {
            inner.entries.insert(entry.log_id.index, (at, entry));
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        let mut inner = self.lock();
        let Some(cut) = inner
            .entries
            .range(log_id.index..)
            .next()
            .map(|(_, (at, _))| *at)
        else {
            return Ok(());
        };
        inner
            .file
            .set_len(cut)
            .and_then(|_| inner.file.sync_all())
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        inner.end = cut;
        inner.entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        let mut inner = self.lock();
        let bytes = serde_json::to_vec(&log_id)
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        write_atomically(&inner.dir.join("purged"), &bytes)
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        inner.last_purged = Some(log_id);
        let keep = inner.entries.split_off(&(log_id.index + 1));
        let dropped = std::mem::replace(&mut inner.entries, keep);
        if let Some((_, (at, _))) = inner.entries.iter().next() {
            inner.purged_bytes = *at;
        } else if !dropped.is_empty() {
            inner.purged_bytes = inner.end;
        }
        inner
            .maybe_compact()
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        Ok(())
    }
}

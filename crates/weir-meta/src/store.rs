//! The local metadata record log: `<data>/meta/records.log`.
//!
//! Each entry is `length: u32 BE | crc32c: u32 BE | JSON of one record`. An append is written and
//! fsynced before the record is applied. On open, entries are replayed until the first torn or
//! corrupt one, and the file is cut there (the same rule as the partition logs).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::framing::{frame, intact_frames};
use crate::records::MetadataRecord;
use crate::{MetaError, Result};

/// Largest record accepted on replay; a longer length field means corruption.
const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug)]
pub struct RecordLog {
    path: PathBuf,
    file: File,
}

impl RecordLog {
    /// Opens the log in `dir` and returns it with every intact record, in order.
    pub fn open(dir: &Path) -> Result<(RecordLog, Vec<MetadataRecord>)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("records.log");
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let mut raw = Vec::new();
        file.read_to_end(&mut raw)?;
        let (frames, at) = intact_frames(&raw, MAX_RECORD_BYTES);
        let mut records = Vec::with_capacity(frames.len());
        for (pos, body) in frames {
            match serde_json::from_slice::<MetadataRecord>(body) {
                Ok(record) => records.push(record),
                Err(e) => {
                    return Err(MetaError::Corrupt(format!(
                        "record at byte {pos} of {} has a good checksum but cannot be read: {e}",
                        path.display()
                    )))
                }
            }
        }
        if at < raw.len() {
            tracing::warn!(file = %path.display(), valid_bytes = at, cut_bytes = raw.len() - at, "truncating a torn tail of the metadata log");
            file.set_len(at as u64)?;
        }
        Ok((RecordLog { path, file }, records))
    }

    /// Appends records durably (one fsync for all of them).
    pub fn append(&mut self, records: &[MetadataRecord]) -> Result<()> {
        let mut buf = Vec::new();
        for record in records {
            let body = serde_json::to_vec(record).map_err(|e| MetaError::Corrupt(e.to_string()))?;
            buf.extend_from_slice(&frame(&body));
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let r1 = MetadataRecord::ProducerIds {
            next_producer_id: 1000,
        };
        let r2 = MetadataRecord::ProducerIds {
            next_producer_id: 2000,
        };
        {
            let (mut log, old) = RecordLog::open(dir.path()).unwrap();
            assert!(old.is_empty());
            log.append(&[r1.clone(), r2.clone()]).unwrap();
        }
        let path = dir.path().join("records.log");
        let len = std::fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        let (mut log, records) = RecordLog::open(dir.path()).unwrap();
        assert_eq!(records, vec![r1.clone()]);
        log.append(std::slice::from_ref(&r2)).unwrap();
        let (_, records) = RecordLog::open(dir.path()).unwrap();
        assert_eq!(records, vec![r1, r2]);
    }
}

//! Log compaction (`cleanup.policy=compact`): keep the latest record of every key.
//!
//! A pass first maps every key to the offset of its latest record, over the whole log; then each
//! closed segment is rewritten without the records that a later record of the same key
//! supersedes. Offsets never change: kept records keep theirs, and batches may now have gaps.
//! A tombstone (a record with a null value) is kept while it is younger than
//! `delete.retention.ms`, so that consumers catching up still see the delete, and dropped after.
//! Records without a key are kept. The active segment is never rewritten. A rewritten segment is
//! written to `<base>.log.cleaned`, fsynced, and renamed over the old file; its indexes are
//! rebuilt. Same idea as Kafka's `LogCleaner`, without its dirty-ratio scheduling.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions};

use crate::batch::BatchHeader;
use crate::segment::{file_stem, LogSegment};
use crate::storage::OpenMode;
use crate::{Log, LogError, OpenSync, Result};

/// What one compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionStats {
    pub segments_rewritten: usize,
    pub records_removed: u64,
    pub tombstones_removed: u64,
}

/// A stored batch's records, or `None` when they decompress past `limit`: such a batch is kept
/// whole and its keys do not count, which only ever keeps more records than needed.
fn decode(bytes: Vec<u8>, limit: usize) -> Result<Option<(Compression, Vec<Record>)>> {
    match crate::decompress::decode_batch(Bytes::from(bytes), limit) {
        Ok(set) => Ok(Some((set.compression, set.records))),
        Err(LogError::DecompressionLimit { limit }) => {
            tracing::warn!(
                limit,
                "a batch decompresses past the limit; compaction keeps it whole"
            );
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Every batch of a segment, with its position.
fn batches(segment: &LogSegment) -> Result<Vec<(u64, BatchHeader)>> {
    segment.batches_from(0).collect()
}

impl Log {
    /// Runs one compaction pass over the closed segments.
    pub fn compact(&mut self, now_ms: i64, delete_retention_ms: i64) -> Result<CompactionStats> {
        self.check_writable()?;
        let limit = self.config().max_decompressed_bytes;
        let mut stats = CompactionStats::default();
        // Latest offset of every key, over the whole log.
        let mut latest: HashMap<Bytes, i64> = HashMap::new();
        for segment in self.segments.values() {
            for (position, h) in batches(segment)? {
                if h.is_control() {
                    continue;
                }
                let raw = segment.read_bytes(position, h.total_size())?;
                let Some((_, records)) = decode(raw, limit)? else {
                    continue;
                };
                for r in records {
                    if let Some(key) = r.key {
                        latest.insert(key, r.offset);
                    }
                }
            }
        }
        let closed: Vec<i64> = self.segments.keys().rev().skip(1).copied().collect();
        for base in closed.into_iter().rev() {
            let Some(segment) = self.segments.get(&base) else {
                continue;
            };
            let mut out: Vec<u8> = Vec::with_capacity(segment.size as usize);
            let mut changed = false;
            for (position, h) in batches(segment)? {
                let raw = segment.read_bytes(position, h.total_size())?;
                if h.is_control() {
                    out.extend_from_slice(&raw);
                    continue;
                }
                let Some((compression, records)) = decode(raw.clone(), limit)? else {
                    out.extend_from_slice(&raw);
                    continue;
                };
                let total = records.len();
                let mut kept = Vec::with_capacity(total);
                for r in records {
                    let superseded = r
                        .key
                        .as_ref()
                        .is_some_and(|k| latest.get(k).is_some_and(|&o| o > r.offset));
                    let expired_tombstone = r.value.is_none()
                        && r.key.is_some()
                        && delete_retention_ms >= 0
                        && now_ms.saturating_sub(r.timestamp) > delete_retention_ms;
                    if superseded {
                        stats.records_removed += 1;
                    } else if expired_tombstone {
                        stats.tombstones_removed += 1;
                    } else {
                        kept.push(r);
                    }
                }
                if kept.len() == total {
                    out.extend_from_slice(&raw);
                    continue;
                }
                changed = true;
                if kept.is_empty() {
                    continue;
                }
                // Keep the sequence numbers consistent with the offsets, as the encoder requires.
                for r in &mut kept {
                    r.sequence = if h.base_sequence >= 0 {
                        h.base_sequence
                            .wrapping_add((r.offset - h.base_offset) as i32)
                    } else {
                        (r.offset - h.base_offset) as i32 - 1
                    };
                    r.partition_leader_epoch = h.partition_leader_epoch;
                }
                let mut buf = BytesMut::new();
                RecordBatchEncoder::encode(
                    &mut buf,
                    &kept,
                    &RecordEncodeOptions {
                        version: 2,
                        compression,
                    },
                )
                .map_err(|e| {
                    LogError::CorruptBatch(format!("cannot encode a compacted batch: {e}"))
                })?;
                out.extend_from_slice(&buf);
            }
            if !changed {
                continue;
            }
            self.replace_segment(base, &out)?;
            stats.segments_rewritten += 1;
        }
        if stats.segments_rewritten > 0 {
            tracing::info!(dir = %self.dir.display(), ?stats, "compacted log");
        }
        Ok(stats)
    }

    /// Swaps a closed segment's contents for `bytes` (whole batches) and rebuilds its indexes.
    fn replace_segment(&mut self, base: i64, bytes: &[u8]) -> Result<()> {
        let stem = file_stem(base);
        let cleaned = self.dir.join(format!("{stem}.log.cleaned"));
        let result = (|| {
            let fs = &*self.storage;
            let written = (|| {
                let f = fs.open(&cleaned, OpenMode::Truncate)?;
                f.write_all_at(bytes, 0)?;
                f.sync_data()
            })();
            if let Err(e) = written {
                // Out of space, say: leave no half-written file behind. The old segment is
                // whole, so a shortage does not fail the log.
                let _ = fs.remove_file(&cleaned);
                return Err(LogError::from_io(e));
            }
            fs.rename(&cleaned, &self.dir.join(format!("{stem}.log")))?;
            // From here the old segment's name holds the new file: whatever fails now fails the
            // log (a shortage too), rather than leave a segment whose file was replaced.
            let reopened = (|| {
                fs.sync_dir(&self.dir)?;
                // Recovery rebuilds the indexes and fsyncs them, so stale ones never outlive a
                // power cut next to the new file.
                let interval = self.config().index_interval_bytes;
                LogSegment::open(
                    fs,
                    &self.dir,
                    base,
                    true,
                    crate::now_ms(),
                    interval,
                    OpenSync::Each,
                )
            })();
            reopened.map_err(|e| match e {
                LogError::Shortage(io) => LogError::Io(io),
                other => other,
            })
        })();
        let segment = self.poison(result)?;
        self.segments.insert(base, segment);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LogConfig;
    use kafka_protocol::records::TimestampType;

    fn record(offset: i64, key: &str, value: Option<&str>, ts: i64) -> Record {
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: offset as i32 - 1,
            timestamp: ts,
            key: Some(Bytes::from(key.to_string())),
            value: value.map(|v| Bytes::from(v.to_string())),
            headers: Default::default(),
        }
    }

    fn append(log: &mut Log, records: &[(&str, Option<&str>)], ts: i64, compression: Compression) {
        let rs: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, (k, v))| record(i as i64, k, *v, ts))
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &rs,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        let mut bytes = buf.to_vec();
        log.append_as_leader(&mut bytes, 0, ts).unwrap();
    }

    fn contents(log: &Log) -> Vec<(i64, String, Option<String>)> {
        let mut out = Vec::new();
        let mut offset = log.log_start_offset();
        while offset < log.log_end_offset() {
            let info = log
                .read(offset, 1 << 20, log.log_end_offset(), true)
                .unwrap();
            if info.slices.is_empty() {
                break;
            }
            let mut buf = Bytes::from(info.slices[0].read_to_vec().unwrap());
            while !buf.is_empty() {
                let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).unwrap();
                for r in set.records {
                    if r.offset >= offset {
                        out.push((
                            r.offset,
                            String::from_utf8(r.key.unwrap().to_vec()).unwrap(),
                            r.value.map(|v| String::from_utf8(v.to_vec()).unwrap()),
                        ));
                    }
                }
            }
            offset = out.last().map_or(offset + 1, |l| l.0 + 1);
        }
        out
    }

    #[test]
    fn keeps_the_latest_value_per_key_with_offsets_unchanged() {
        for compression in [Compression::None, Compression::Lz4] {
            let dir = tempfile::tempdir().unwrap();
            let config = LogConfig {
                segment_bytes: 300,
                ..LogConfig::default()
            };
            let mut log = Log::open(dir.path(), config).unwrap();
            let now = 1_000_000;
            for round in 0..6 {
                let v = format!("v{round}");
                append(
                    &mut log,
                    &[
                        ("a", Some(&v)),
                        ("b", Some(&v)),
                        (&format!("only{round}"), Some("x")),
                    ],
                    now,
                    compression,
                );
            }
            append(&mut log, &[("b", None)], now, compression); // tombstone for b
            append(&mut log, &[("c", Some("last"))], now, compression);
            assert!(log.segment_count() > 2);
            let before = contents(&log);
            let stats = log.compact(now, 86_400_000).unwrap();
            assert!(
                stats.segments_rewritten > 0 && stats.records_removed > 0,
                "{stats:?}"
            );
            let after = contents(&log);
            // Every surviving record has the offset it had before compaction.
            for r in &after {
                assert!(before.contains(r), "{r:?} changed");
            }
            let latest_a = before
                .iter()
                .filter(|r| r.1 == "a")
                .map(|r| r.0)
                .max()
                .unwrap();
            assert_eq!(
                after
                    .iter()
                    .filter(|r| r.1 == "a")
                    .map(|r| r.0)
                    .collect::<Vec<_>>(),
                vec![latest_a]
            );
            // b's tombstone is younger than delete.retention.ms: it stays, alone.
            let bs: Vec<_> = after.iter().filter(|r| r.1 == "b").collect();
            assert_eq!(bs.len(), 1);
            assert_eq!(bs[0].2, None);
            for round in 0..6 {
                assert!(after.iter().any(|r| r.1 == format!("only{round}")));
            }
            assert_eq!(log.log_end_offset(), before.last().unwrap().0 + 1);

            // Once the tombstone is older than delete.retention.ms it goes too (it must be in a
            // closed segment: roll first).
            log.roll(now).unwrap();
            let stats = log.compact(now + 2_000, 1_000).unwrap();
            assert_eq!(stats.tombstones_removed, 1);
            let after = contents(&log);
            assert!(after.iter().all(|r| r.1 != "b"));
            // The rewritten log survives a reopen, indexes rebuilt.
            let end = log.log_end_offset();
            drop(log);
            let log = Log::open(dir.path(), LogConfig::default()).unwrap();
            assert_eq!(log.log_end_offset(), end);
            assert_eq!(contents(&log), after);
        }
    }
}

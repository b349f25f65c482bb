//! Lookups by timestamp (ListOffsets by time, and by the largest timestamp): the time index
//! narrows the search to a batch, which is decoded (bounded) to find the record.

use weir_types::Offset;

use crate::batch::{self, BatchHeader};
use crate::log::TimestampOffset;
use crate::segment::LogSegment;
use crate::{Log, Result};

impl Log {
    /// The first record with a timestamp at or after `timestamp` (ListOffsets by time).
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<TimestampOffset>> {
        for segment in self.segments.values() {
            if segment.max_timestamp < timestamp || segment.size == 0 {
                continue;
            }
            for batch in segment.batches_from(segment.time_lookup_start(timestamp)) {
                let (position, header) = batch?;
                if header.max_timestamp >= timestamp
                    && header.last_offset() >= self.log_start_offset
                {
                    let found =
                        self.find_record(segment, position, &header, |ts| ts >= timestamp)?;
                    if let Some(found) = found {
                        return Ok(Some(found));
                    }
                }
            }
        }
        Ok(None)
    }

    /// The record with the largest timestamp (ListOffsets with MAX_TIMESTAMP, KIP-734).
    pub fn max_timestamp_offset(&self) -> Result<Option<TimestampOffset>> {
        let Some(segment) = self
            .segments
            .values()
            .filter(|s| s.size > 0)
            .max_by_key(|s| s.max_timestamp)
        else {
            return Ok(None);
        };
        let max = segment.max_timestamp;
        let Some((position, header)) = segment.find_batch(segment.offset_of_max_timestamp)? else {
            return Ok(None);
        };
        self.find_record(segment, position, &header, |ts| ts == max)
    }

    /// Decodes one batch to find the first record (at or after the log start) matching `wanted`.
    fn find_record(
        &self,
        segment: &LogSegment,
        position: u64,
        header: &BatchHeader,
        wanted: impl Fn(i64) -> bool,
    ) -> Result<Option<TimestampOffset>> {
        if header.attributes & batch::ATTR_LOG_APPEND_TIME != 0 {
            let offset = header.first().max(self.log_start_offset());
            return Ok(wanted(header.max_timestamp).then_some(TimestampOffset {
                timestamp: header.max_timestamp,
                offset,
            }));
        }
        let raw = segment.read_bytes(position, header.total_size())?;
        let set =
            crate::decompress::decode_batch(raw.into(), self.config().max_decompressed_bytes)?;
        Ok(set
            .records
            .iter()
            .find(|r| r.offset >= self.log_start_offset && wanted(r.timestamp))
            .map(|r| TimestampOffset {
                timestamp: r.timestamp,
                offset: Offset(r.offset),
            }))
    }
}

//! RecordBatch v2 headers: parsing, validation and the in-place patches the broker makes.
//!
//! The broker never decodes records on the produce path. It reads the fixed 61-byte header of each
//! batch, checks the CRC-32C over everything after the CRC field, and patches the two fields that lie
//! outside the CRC (base offset and partition leader epoch). See the "Record Batch" section of
//! Kafka's protocol documentation (KIP-98 introduced the format).

use weir_types::{LeaderEpoch, Offset, ProducerEpoch, ProducerId};

use crate::LogError;

/// Size of the RecordBatch v2 header, up to and including the record count.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Size of the "log overhead": base offset plus batch length.
pub const LOG_OVERHEAD: usize = 12;
/// The smallest value a valid batch length field can hold (header without the log overhead).
pub const MIN_BATCH_LENGTH: i32 = (BATCH_HEADER_BYTES - LOG_OVERHEAD) as i32;

const BASE_OFFSET_AT: usize = 0;
const LENGTH_AT: usize = 8;
const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORDS_COUNT_AT: usize = 57;

/// Attribute bit: timestamps are the broker's append time.
pub const ATTR_LOG_APPEND_TIME: i16 = 0x08;
/// Attribute bit: the batch belongs to a transaction.
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
/// Attribute bit: the batch is a control batch (transaction markers).
pub const ATTR_CONTROL: i16 = 0x20;
/// Mask of the compression codec bits.
pub const ATTR_COMPRESSION_MASK: i16 = 0x07;

/// The fields of one batch header, read from its first 61 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Length of the batch after the length field; the batch occupies `batch_length + 12` bytes.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Reads the header fields from the start of `bytes`. Checks that enough bytes are present,
    /// and that the length and base offset are ones offset and size arithmetic can take (from
    /// the disk or the wire, anything else is corruption): the length at least a header's, the
    /// base offset within ±2^62.
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, LogError> {
        if bytes.len() < BATCH_HEADER_BYTES {
            return Err(LogError::CorruptBatch(
                "batch shorter than its header".into(),
            ));
        }
        let batch_length = be_i32(bytes, LENGTH_AT);
        if batch_length < MIN_BATCH_LENGTH {
            return Err(LogError::CorruptBatch(format!(
                "batch length {batch_length} is shorter than a header"
            )));
        }
        let base_offset = be_i64(bytes, BASE_OFFSET_AT);
        if base_offset.unsigned_abs() > 1 << 62 {
            return Err(LogError::CorruptBatch(format!(
                "base offset {base_offset} is out of range"
            )));
        }
        Ok(BatchHeader {
            base_offset,
            batch_length,
            partition_leader_epoch: be_i32(bytes, LEADER_EPOCH_AT),
            magic: bytes[MAGIC_AT] as i8,
            crc: be_i32(bytes, CRC_AT) as u32,
            attributes: be_i16(bytes, ATTRIBUTES_AT),
            last_offset_delta: be_i32(bytes, LAST_OFFSET_DELTA_AT),
            base_timestamp: be_i64(bytes, BASE_TIMESTAMP_AT),
            max_timestamp: be_i64(bytes, MAX_TIMESTAMP_AT),
            producer_id: be_i64(bytes, PRODUCER_ID_AT),
            producer_epoch: be_i16(bytes, PRODUCER_EPOCH_AT),
            base_sequence: be_i32(bytes, BASE_SEQUENCE_AT),
            records_count: be_i32(bytes, RECORDS_COUNT_AT),
        })
    }

    /// Total size of the batch on disk and on the wire.
    pub fn total_size(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Sequence number of the last record, wrapping as Kafka does at `i32::MAX`.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        if last > i64::from(i32::MAX) {
            (last - i64::from(i32::MAX) - 1) as i32
        } else {
            last as i32
        }
    }

    pub fn compression(&self) -> i16 {
        self.attributes & ATTR_COMPRESSION_MASK
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// The idempotent producer that wrote the batch, with its epoch, if any.
    pub fn producer(&self) -> Option<(ProducerId, ProducerEpoch)> {
        ProducerId::from_wire(self.producer_id).map(|id| (id, ProducerEpoch(self.producer_epoch)))
    }

    /// The leader epoch the batch was written in, if it carries one.
    pub fn leader_epoch(&self) -> Option<LeaderEpoch> {
        LeaderEpoch::from_wire(self.partition_leader_epoch)
    }

    /// The batch's first offset.
    pub fn first(&self) -> Offset {
        Offset(self.base_offset)
    }

    /// The offset after the batch's last record.
    pub fn end(&self) -> Offset {
        Offset(self.last_offset()).next()
    }

    /// The timestamp that represents this batch in the time index.
    pub fn timestamp_for_index(&self) -> i64 {
        self.max_timestamp
    }
}

/// CRC-32C of the batch bytes covered by the CRC field.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_AT..])
}

/// Checks one whole batch (exactly `header.total_size()` bytes): magic, lengths, CRC.
pub fn validate_batch(batch: &[u8]) -> Result<BatchHeader, LogError> {
    let header = BatchHeader::parse(batch)?;
    if header.magic != 2 {
        return Err(LogError::UnsupportedMagic(header.magic));
    }
    if header.batch_length < MIN_BATCH_LENGTH || header.total_size() != batch.len() {
        return Err(LogError::CorruptBatch(format!(
            "batch length {} does not match the {} bytes given",
            header.batch_length,
            batch.len()
        )));
    }
    if header.last_offset_delta < 0 || header.records_count < 0 {
        return Err(LogError::CorruptBatch(
            "negative record count or offset delta".into(),
        ));
    }
    let crc = compute_crc(batch);
    if crc != header.crc {
        return Err(LogError::CorruptBatch(format!(
            "CRC mismatch: header says {:#010x}, bytes give {:#010x}",
            header.crc, crc
        )));
    }
    Ok(header)
}

/// Checks a producer's batch beyond its framing: its records are numbered densely (count = last
/// offset delta + 1, not empty; only compaction leaves gaps), and, when uncompressed, their
/// length prefixes fill its records section exactly. `batch` is the whole batch.
pub fn validate_producer_batch(batch: &[u8], header: &BatchHeader) -> Result<(), LogError> {
    if header.records_count == 0
        || i64::from(header.last_offset_delta) + 1 != i64::from(header.records_count)
    {
        return Err(LogError::CorruptBatch(format!(
            "{} records but offset deltas up to {}",
            header.records_count, header.last_offset_delta
        )));
    }
    if header.compression() == 0 {
        let records = batch.get(BATCH_HEADER_BYTES..).unwrap_or_default();
        check_record_lengths(records, header.records_count)?;
    }
    Ok(())
}

/// Walks the length prefixes of an uncompressed batch's records: exactly `count` records must
/// fill the records section, none reaching past it. (A compressed batch's records are checked
/// where they are decompressed.)
fn check_record_lengths(mut records: &[u8], count: i32) -> Result<(), LogError> {
    for i in 0..count {
        let (length, used) = read_varint(records).ok_or_else(|| {
            LogError::CorruptBatch(format!("record {i} of {count} has no length"))
        })?;
        let end = usize::try_from(length)
            .ok()
            .and_then(|l| l.checked_add(used))
            .filter(|end| *end <= records.len())
            .ok_or_else(|| {
                LogError::CorruptBatch(format!(
                    "record {i} of {count} claims {length} bytes, past the end of its batch"
                ))
            })?;
        records = &records[end..];
    }
    if !records.is_empty() {
        return Err(LogError::CorruptBatch(format!(
            "{} bytes follow the {count} records the batch counts",
            records.len()
        )));
    }
    Ok(())
}

/// A zig-zag varint (Kafka's record fields) and the bytes it took.
pub(crate) fn read_varint(bytes: &[u8]) -> Option<(i64, usize)> {
    let mut value: u64 = 0;
    for (i, b) in bytes.iter().take(10).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let decoded = (value >> 1) as i64 ^ -((value & 1) as i64);
            return Some((decoded, i + 1));
        }
    }
    None
}

/// The whole batches at the front of `bytes`, each with where it starts: the walk over batches
/// in memory (a segment walks its file with `segment::Batches`). It stops at the first partial
/// or unreadable header, so a caller reading a fetched or stored chunk never indexes past it.
pub fn batches_in(bytes: &[u8]) -> impl Iterator<Item = (usize, BatchHeader)> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let header = BatchHeader::parse(bytes.get(at..)?).ok()?;
        let start = at;
        at = at
            .checked_add(header.total_size())
            .filter(|end| *end <= bytes.len())?;
        Some((start, header))
    })
}

/// Splits a produce request's records into batches and validates each.
///
/// Returns the headers in order; rejects trailing partial batches and an empty set.
pub fn validate_batches(records: &[u8]) -> Result<Vec<BatchHeader>, LogError> {
    let mut headers = Vec::new();
    let mut at = 0usize;
    while at < records.len() {
        let rest = &records[at..];
        if rest.len() < LOG_OVERHEAD + 5 {
            return Err(LogError::CorruptBatch(
                "trailing bytes after the last batch".into(),
            ));
        }
        let magic = rest[MAGIC_AT] as i8;
        if magic != 2 {
            return Err(LogError::UnsupportedMagic(magic));
        }
        let length = be_i32(rest, LENGTH_AT);
        if length < MIN_BATCH_LENGTH {
            return Err(LogError::CorruptBatch(format!(
                "batch length {length} is too small"
            )));
        }
        let total = length as usize + LOG_OVERHEAD;
        if total > rest.len() {
            return Err(LogError::CorruptBatch(format!(
                "batch claims {total} bytes but only {} remain",
                rest.len()
            )));
        }
        headers.push(validate_batch(&rest[..total])?);
        at += total;
    }
    if headers.is_empty() {
        return Err(LogError::CorruptBatch(
            "no record batch in the request".into(),
        ));
    }
    Ok(headers)
}

/// Writes the base offset into a batch; the field is outside the CRC.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Writes the partition leader epoch into a batch; the field is outside the CRC.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Marks a batch as using log-append time with the given timestamp, then rewrites its CRC.
///
/// Kafka sets the timestamp type bit and the max timestamp for `message.timestamp.type=LogAppendTime`;
/// both lie inside the CRC, so the CRC is computed again.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attributes = be_i16(batch, ATTRIBUTES_AT) | ATTR_LOG_APPEND_TIME;
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    /// Encodes one batch of `count` records with the given first timestamp, as a client would.
    pub(crate) fn make_batch(count: usize, first_ts: i64, compression: Compression) -> Vec<u8> {
        make_batch_with_producer(count, first_ts, compression, -1, -1, -1)
    }

    pub(crate) fn make_batch_with_producer(
        count: usize,
        first_ts: i64,
        compression: Compression,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> Vec<u8> {
        let records: Vec<Record> = (0..count)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id,
                producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder starts a new batch when offset minus sequence changes; a batch
                // without a producer gets base sequence -1.
                sequence: base_sequence + i as i32,
                timestamp: first_ts + i as i64,
                key: Some(bytes::Bytes::from(format!("k{i}"))),
                value: Some(bytes::Bytes::from(format!("value-{i}"))),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.to_vec()
    }

    #[test]
    fn valid_batch_parses_and_patches_keep_crc() {
        let mut b = make_batch(3, 1000, Compression::None);
        let h = validate_batch(&b).unwrap();
        assert_eq!(h.records_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        set_base_offset(&mut b, 42);
        set_partition_leader_epoch(&mut b, 7);
        let h = validate_batch(&b).unwrap();
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.partition_leader_epoch, 7);
        assert_eq!(h.last_offset(), 44);
        set_log_append_time(&mut b, 99);
        let h = validate_batch(&b).unwrap();
        assert_eq!(h.max_timestamp, 99);
        assert_ne!(h.attributes & ATTR_LOG_APPEND_TIME, 0);
    }

    #[test]
    fn batches_in_memory_are_walked_up_to_the_first_partial_one() {
        let one = make_batch(3, 0, Compression::None);
        let two = make_batch(2, 0, Compression::None);
        let mut bytes = one.clone();
        bytes.extend_from_slice(&two);
        bytes.extend_from_slice(&one[..one.len() - 1]);
        let found: Vec<(usize, i32)> = batches_in(&bytes)
            .map(|(at, h)| (at, h.records_count))
            .collect();
        assert_eq!(found, vec![(0, 3), (one.len(), 2)]);
        assert_eq!(batches_in(&[]).count(), 0);
        assert_eq!(batches_in(&one[..10]).count(), 0);
    }

    #[test]
    fn corrupt_crc_is_rejected() {
        let mut b = make_batch(2, 0, Compression::None);
        let last = b.len() - 1;
        b[last] ^= 0xff;
        assert!(matches!(
            validate_batches(&b),
            Err(LogError::CorruptBatch(_))
        ));
    }

    #[test]
    fn truncated_and_empty_inputs_are_rejected() {
        let b = make_batch(2, 0, Compression::None);
        for cut in [0, 1, 11, 20, 60, b.len() - 1] {
            assert!(validate_batches(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut two = b.clone();
        two.extend_from_slice(&b);
        assert_eq!(validate_batches(&two).unwrap().len(), 2);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = validate_batches(&bytes);
        }

        #[test]
        fn flipping_any_covered_byte_fails_crc(at in 21usize..80) {
            let mut b = make_batch(2, 5, Compression::None);
            let at = at % b.len();
            if at >= 21 {
                b[at] ^= 0x01;
                proptest::prop_assert!(validate_batches(&b).is_err());
            }
        }
    }

    /// Rewrites a batch's CRC after a test changed bytes it covers.
    fn recrc(batch: &mut [u8]) {
        let crc = compute_crc(batch);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn record_counts_and_lengths_must_fit_the_batch() {
        let good = make_batch(3, 1000, Compression::None);
        let check = |b: &[u8]| validate_producer_batch(b, &validate_batch(b)?);
        assert!(check(&good).is_ok());
        // One record more or less than the records section holds.
        for count in [2i32, 4, i32::MAX] {
            let mut bad = good.clone();
            bad[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&count.to_be_bytes());
            recrc(&mut bad);
            let refused = check(&bad);
            assert!(
                matches!(refused, Err(LogError::CorruptBatch(_))),
                "count {count}: {refused:?}"
            );
        }
        // A record whose length reaches past the batch.
        let mut bad = good.clone();
        bad[BATCH_HEADER_BYTES] = 0x7e; // zig-zag 63: more than the bytes left
        recrc(&mut bad);
        assert!(matches!(check(&bad), Err(LogError::CorruptBatch(_))));
        // Compressed batches are left to decompression.
        assert!(check(&make_batch(3, 1000, Compression::Zstd)).is_ok());
    }
}

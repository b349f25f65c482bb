//! Decoding stored record batches with a bound on what decompression may produce.
//!
//! A compressed batch small enough to pass `max.message.bytes` can expand to gigabytes (a zstd
//! or gzip "bomb"). Everything the broker decodes from a log (ListOffsets by time, compaction,
//! group and offset loading) goes through [`decode_batch`], which stops any codec once it has
//! produced more than the limit and answers [`LogError::DecompressionLimit`], a per-request
//! error: the log itself is fine. The codecs are the ones `kafka-protocol` uses, driven as
//! streams (snappy's block lengths are checked before anything is allocated).

use std::io::Read;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::records::{Compression, RecordBatchDecoder, RecordSet};

use crate::{LogError, Result};

/// The bound on one stored batch's decompressed records, and on the records decoded from it.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 64 * 1024 * 1024;

/// Kafka's framing of snappy (xerial's): a magic header, then length-prefixed blocks.
const SNAPPY_MAGIC: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

/// The fewest bytes a record takes (seven one-byte varints: length, attributes, timestamp
/// delta, offset delta, key length, value length, header count).
const MIN_RECORD_BYTES: usize = 7;

/// Decodes one stored batch, refusing to decompress more than `limit` bytes of records or to
/// hold more than `limit` bytes of decoded records: the decoder reserves room for the count the
/// header claims, so the count is checked first against the limit, then against the bytes
/// decompressed.
pub fn decode_batch(bytes: Bytes, limit: usize) -> Result<RecordSet> {
    let header = crate::batch::BatchHeader::parse(&bytes)?;
    let count = usize::try_from(header.records_count)
        .map_err(|_| LogError::CorruptBatch("a negative record count".into()))?;
    if count > limit / std::mem::size_of::<kafka_protocol::records::Record>() {
        return Err(LogError::DecompressionLimit { limit });
    }
    let mut buf = bytes;
    let decompress = |compressed: &mut Bytes, compression: Compression| {
        let records = decompress(compressed, compression, limit)?;
        if count > records.len() / MIN_RECORD_BYTES {
            return Err(anyhow::Error::new(LogError::CorruptBatch(format!(
                "{count} records claimed in {} bytes",
                records.len()
            ))));
        }
        Ok(records)
    };
    RecordBatchDecoder::decode_with_custom_compression(&mut buf, Some(decompress)).map_err(|e| {
        match e.downcast::<LogError>() {
            Ok(e) => e,
            Err(e) => LogError::CorruptBatch(format!("cannot decode a stored batch: {e}")),
        }
    })
}

/// Decompresses one batch's records, at most `limit` bytes of them.
pub fn decompress(compressed: &mut Bytes, compression: Compression, limit: usize) -> Result<Bytes> {
    let input = compressed.split_to(compressed.len());
    match compression {
        Compression::None => {
            check(input.len(), limit)?;
            Ok(input)
        }
        Compression::Gzip => read_bounded(flate2::read::GzDecoder::new(input.reader()), limit),
        Compression::Lz4 => {
            let decoder = lz4::Decoder::new(input.reader()).map_err(corrupt)?;
            read_bounded(decoder, limit)
        }
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(input.reader()).map_err(corrupt)?;
            read_bounded(decoder, limit)
        }
        Compression::Snappy => snappy(input, limit),
    }
}

fn corrupt(e: impl std::fmt::Display) -> LogError {
    LogError::CorruptBatch(format!("cannot decompress a stored batch: {e}"))
}

fn check(len: usize, limit: usize) -> Result<()> {
    if len > limit {
        return Err(LogError::DecompressionLimit { limit });
    }
    Ok(())
}

/// Reads a decoder to its end, but never more than `limit` bytes.
fn read_bounded(decoder: impl Read, limit: usize) -> Result<Bytes> {
    let mut out = Vec::new();
    let read = decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(corrupt)?;
    check(read, limit)?;
    Ok(out.into())
}

/// Kafka's snappy: xerial's framing, or raw snappy without its magic header.
fn snappy(input: Bytes, limit: usize) -> Result<Bytes> {
    let decode_block = |block: &[u8], out: &mut BytesMut| -> Result<()> {
        let len = snap::raw::decompress_len(block).map_err(corrupt)?;
        check(out.len().saturating_add(len), limit)?;
        let start = out.len();
        out.resize(start + len, 0);
        snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .map_err(corrupt)?;
        Ok(())
    };
    let mut out = BytesMut::new();
    if !input.starts_with(SNAPPY_MAGIC) {
        decode_block(&input, &mut out)?;
        return Ok(out.freeze());
    }
    let mut rest = input.slice(SNAPPY_MAGIC.len()..);
    while rest.has_remaining() {
        if rest.remaining() < 4 {
            return Err(corrupt("a snappy block length is cut short"));
        }
        let len = rest.get_u32() as usize;
        if len > rest.remaining() {
            return Err(corrupt("a snappy block is cut short"));
        }
        let block = rest.split_to(len);
        decode_block(&block, &mut out)?;
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

    fn batch(compression: Compression, value_len: usize, records: usize) -> Bytes {
        let records: Vec<Record> = (0..records)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: i as i32,
                timestamp: 0,
                key: None,
                value: Some(Bytes::from(vec![b'a'; value_len])),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encodes");
        buf.freeze()
    }

    #[test]
    fn every_codec_decodes_within_the_limit_and_stops_past_it() {
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let small = decode_batch(batch(compression, 100, 10), 1 << 20).expect("decodes");
            assert_eq!(small.records.len(), 10, "{compression:?}");
            // About 4 MiB of records, compressed to a few KiB (bar `None`): refused at 1 MiB.
            let big = batch(compression, 1 << 20, 4);
            assert!(
                big.len() < (1 << 20) || compression == Compression::None,
                "{compression:?}"
            );
            let refused = decode_batch(big, 1 << 20);
            assert!(
                matches!(refused, Err(LogError::DecompressionLimit { .. })),
                "{compression:?}: {refused:?}"
            );
        }
    }

    #[test]
    fn garbage_is_a_corrupt_batch_not_a_panic() {
        for compression in [Compression::Gzip, Compression::Lz4, Compression::Zstd] {
            let mut bytes = batch(compression, 100, 10).to_vec();
            // The codec's own header begins right after the 61-byte batch header.
            for b in &mut bytes[61..65] {
                *b ^= 0x5a;
            }
            let result = decode_batch(Bytes::from(bytes), 1 << 20);
            assert!(
                matches!(result, Err(LogError::CorruptBatch(_))),
                "{compression:?}: {result:?}"
            );
        }
    }
}

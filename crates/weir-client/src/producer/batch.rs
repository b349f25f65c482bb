//! A record batch (format v2) built as records arrive: `send` encodes each record into its
//! batch's buffer at once, so no record is kept as an object, and sealing a batch only
//! compresses the records (when a codec is set) and writes the 61-byte header with its CRC,
//! on the sender's side, off the path of `send`.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{self as codec, Compressor};
use kafka_protocol::records::Compression;

use crate::error::{Error, Result};

/// The header's size, before the records.
const HEADER: usize = 61;

/// Zig-zag varint (the record format's signed variable-length integers).
fn put_varlong(buf: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    buf.put_u8(z as u8);
}

fn varlong_len(v: i64) -> usize {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

fn bytes_len(b: Option<&[u8]>) -> usize {
    match b {
        None => varlong_len(-1),
        Some(b) => varlong_len(b.len() as i64) + b.len(),
    }
}

fn put_bytes(buf: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        None => put_varlong(buf, -1),
        Some(b) => {
            put_varlong(buf, b.len() as i64);
            buf.put_slice(b);
        }
    }
}

/// The records of one batch, encoded as they came.
#[derive(Debug, Default)]
pub(super) struct RecordsBuilder {
    /// The header's room, then the records.
    records: BytesMut,
    count: i32,
    first_timestamp: i64,
    max_timestamp: i64,
}

/// Who wrote a sealed batch, and in which transaction state.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stamp {
    pub(super) producer_id: i64,
    pub(super) producer_epoch: i16,
    pub(super) base_sequence: i32,
    pub(super) transactional: bool,
}

impl RecordsBuilder {
    pub(super) fn with_capacity(bytes: usize) -> RecordsBuilder {
        // Room for the header first: an uncompressed batch is sealed in place.
        let mut records = BytesMut::with_capacity(HEADER + bytes);
        records.put_bytes(0, HEADER);
        RecordsBuilder {
            records,
            ..RecordsBuilder::default()
        }
    }

    pub(super) fn count(&self) -> i32 {
        self.count
    }

    /// Encodes one record at the next offset delta.
    pub(super) fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(String, Option<Bytes>)],
    ) {
        if self.count == 0 {
            self.first_timestamp = timestamp;
            self.max_timestamp = timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp);
        let delta = timestamp.wrapping_sub(self.first_timestamp);
        let offset = i64::from(self.count);
        let mut body = 1 + varlong_len(delta) + varlong_len(offset);
        body += bytes_len(key) + bytes_len(value);
        body += varlong_len(headers.len() as i64);
        for (k, v) in headers {
            body += bytes_len(Some(k.as_bytes())) + bytes_len(v.as_deref());
        }
        let buf = &mut self.records;
        buf.reserve(body + 5);
        put_varlong(buf, body as i64);
        buf.put_i8(0); // attributes
        put_varlong(buf, delta);
        put_varlong(buf, offset);
        put_bytes(buf, key);
        put_bytes(buf, value);
        put_varlong(buf, headers.len() as i64);
        for (k, v) in headers {
            put_bytes(buf, Some(k.as_bytes()));
            put_bytes(buf, v.as_deref());
        }
        self.count += 1;
    }

    /// The whole batch: the records compressed with `compression`, behind the header.
    pub(super) fn seal(self, stamp: Stamp, compression: Compression) -> Result<Bytes> {
        let mut records = self.records;
        if records.len() < HEADER {
            records = BytesMut::zeroed(HEADER);
        }
        let mut out = if compression == Compression::None {
            records
        } else {
            let mut out = BytesMut::with_capacity(HEADER + records.len() / 2);
            out.put_bytes(0, HEADER);
            let body = &records[HEADER..];
            let put = |b: &mut BytesMut| -> anyhow::Result<()> {
                b.put_slice(body);
                Ok(())
            };
            let compressed = match compression {
                Compression::Gzip => codec::Gzip::compress(&mut out, put),
                Compression::Snappy => codec::Snappy::compress(&mut out, put),
                Compression::Lz4 => codec::Lz4::compress(&mut out, put),
                Compression::Zstd => codec::Zstd::compress(&mut out, put),
                Compression::None => Ok(()),
            };
            compressed.map_err(|e| Error::Protocol(format!("cannot compress a batch: {e}")))?;
            out
        };
        let codec_id: i16 = match compression {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        };
        let attributes = codec_id | if stamp.transactional { 0x10 } else { 0 };
        let length = (out.len() - 12) as i32;
        let mut h = &mut out[..HEADER];
        h.put_i64(0); // base offset: the broker assigns it
        h.put_i32(length);
        h.put_i32(-1); // partition leader epoch
        h.put_i8(2); // magic
        h.put_u32(0); // crc, below
        h.put_i16(attributes);
        h.put_i32(self.count - 1);
        h.put_i64(self.first_timestamp);
        h.put_i64(self.max_timestamp);
        h.put_i64(stamp.producer_id);
        h.put_i16(stamp.producer_epoch);
        h.put_i32(stamp.base_sequence);
        h.put_i32(self.count);
        let crc = crc32c::crc32c(&out[21..]);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        Ok(out.freeze())
    }
}

/// A sealed batch with another base sequence (its CRC made again).
pub(super) fn renumber(batch: &Bytes, base_sequence: i32) -> Bytes {
    let mut b = BytesMut::from(&batch[..]);
    if b.len() >= HEADER {
        b[53..57].copy_from_slice(&base_sequence.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{RecordBatchDecoder, TimestampType};

    fn decode(bytes: Bytes) -> Vec<kafka_protocol::records::Record> {
        let mut b = bytes;
        RecordBatchDecoder::decode(&mut b).unwrap().records
    }

    #[test]
    fn kafka_protocol_reads_what_is_built_with_every_codec() {
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut b = RecordsBuilder::with_capacity(64);
            b.push(1_000, Some(b"k1"), Some(b"v1"), &[]);
            b.push(
                1_005,
                None,
                None,
                &[
                    ("h".to_string(), Some(Bytes::from_static(b"x"))),
                    ("n".to_string(), None),
                ],
            );
            b.push(999, Some(b""), Some(&[7u8; 300]), &[]);
            let stamp = Stamp {
                producer_id: 42,
                producer_epoch: 3,
                base_sequence: 17,
                transactional: true,
            };
            let records = decode(b.seal(stamp, compression).unwrap());
            assert_eq!(records.len(), 3, "{compression:?}");
            let r = &records[1];
            assert_eq!(r.offset, 1);
            assert_eq!(r.timestamp, 1_005);
            assert_eq!(r.key, None);
            assert_eq!(r.value, None);
            assert_eq!(r.headers.len(), 2);
            assert_eq!(r.sequence, 18);
            assert_eq!(r.producer_id, 42);
            assert_eq!(r.producer_epoch, 3);
            assert!(r.transactional);
            assert_eq!(r.timestamp_type, TimestampType::Creation);
            assert_eq!(records[0].key.as_deref(), Some(&b"k1"[..]));
            assert_eq!(records[2].timestamp, 999);
            assert_eq!(records[2].value.as_ref().map(|v| v.len()), Some(300));
        }
    }

    #[test]
    fn a_renumbered_batch_reads_back_with_its_new_numbers() {
        let mut b = RecordsBuilder::with_capacity(64);
        b.push(1, Some(b"k"), Some(b"v"), &[]);
        b.push(2, Some(b"k"), Some(b"w"), &[]);
        let stamp = Stamp {
            producer_id: 7,
            producer_epoch: 0,
            base_sequence: 40,
            transactional: false,
        };
        let sealed = b.seal(stamp, Compression::None).unwrap();
        let records = decode(renumber(&sealed, 38));
        assert_eq!(records[0].sequence, 38);
        assert_eq!(records[1].sequence, 39);
    }

    #[test]
    fn varints_are_zigzag() {
        for v in [
            0i64,
            -1,
            1,
            63,
            -64,
            64,
            300,
            i64::from(i32::MAX),
            i64::MIN,
            i64::MAX,
        ] {
            let mut b = BytesMut::new();
            put_varlong(&mut b, v);
            assert_eq!(b.len(), varlong_len(v), "{v}");
        }
        let mut b = BytesMut::new();
        put_varlong(&mut b, -1);
        assert_eq!(&b[..], &[1]);
        b.clear();
        put_varlong(&mut b, 150);
        assert_eq!(&b[..], &[0xac, 0x02]);
    }
}

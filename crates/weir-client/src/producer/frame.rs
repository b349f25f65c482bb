//! A Produce request framed without copying its record batches: the frame is a list of byte
//! chunks, the small encoded fields between the batches' own buffers, written with one
//! vectored write. Byte for byte what `kafka-protocol` encodes (checked below at every
//! version the sender uses, v3 to v9: plain before v9, flexible from v9).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader};
use kafka_protocol::protocol::Encodable;

use crate::error::{Error, Result};

/// The first flexible Produce version (compact strings, arrays and bytes, tagged fields).
const FLEXIBLE: i16 = 9;

fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// A length-prefixed field: compact (length + 1, unsigned varint) when flexible, else `i16`
/// (strings) or `i32` (bytes, arrays); `None` is null.
fn put_len(buf: &mut BytesMut, len: Option<usize>, flexible: bool, wide: bool) {
    match (flexible, len) {
        (true, None) => put_uvarint(buf, 0),
        (true, Some(n)) => put_uvarint(buf, n as u64 + 1),
        (false, None) if wide => buf.put_i32(-1),
        (false, None) => buf.put_i16(-1),
        (false, Some(n)) if wide => buf.put_i32(n as i32),
        (false, Some(n)) => buf.put_i16(n as i16),
    }
}

fn put_str(buf: &mut BytesMut, s: Option<&str>, flexible: bool) {
    put_len(buf, s.map(str::len), flexible, false);
    if let Some(s) = s {
        buf.put_slice(s.as_bytes());
    }
}

/// The whole frame (size, header, body) as chunks to write in order.
pub(crate) fn encode(
    request: &ProduceRequest,
    version: i16,
    header: &RequestHeader,
) -> Result<Vec<Bytes>> {
    if !(3..=FLEXIBLE).contains(&version) {
        return Err(Error::Protocol(format!(
            "Produce v{version} is not framed here"
        )));
    }
    let flexible = version >= FLEXIBLE;
    let mut parts: Vec<Bytes> = Vec::new();
    let mut cur = BytesMut::with_capacity(128);
    put_str(
        &mut cur,
        request.transactional_id.as_ref().map(|t| &*t.0),
        flexible,
    );
    cur.put_i16(request.acks);
    cur.put_i32(request.timeout_ms);
    put_len(&mut cur, Some(request.topic_data.len()), flexible, true);
    for topic in &request.topic_data {
        put_str(&mut cur, Some(&topic.name.0), flexible);
        put_len(&mut cur, Some(topic.partition_data.len()), flexible, true);
        for p in &topic.partition_data {
            cur.put_i32(p.index);
            put_len(&mut cur, p.records.as_ref().map(Bytes::len), flexible, true);
            if let Some(records) = p.records.as_ref().filter(|r| !r.is_empty()) {
                parts.push(cur.split().freeze());
                parts.push(records.clone());
            }
            if flexible {
                put_uvarint(&mut cur, 0);
            }
        }
        if flexible {
            put_uvarint(&mut cur, 0);
        }
    }
    if flexible {
        put_uvarint(&mut cur, 0);
    }
    parts.push(cur.freeze());
    let mut head = BytesMut::with_capacity(64);
    head.put_i32(0);
    header
        .encode(&mut head, ApiKey::Produce.request_header_version(version))
        .map_err(|e| Error::Protocol(e.to_string()))?;
    let size = head.len() - 4 + parts.iter().map(Bytes::len).sum::<usize>();
    let size =
        i32::try_from(size).map_err(|_| Error::Protocol("Produce frame too large".into()))?;
    head[..4].copy_from_slice(&size.to_be_bytes());
    parts.insert(0, head.freeze());
    parts.retain(|p| !p.is_empty());
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{TopicName, TransactionalId};
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    fn request(txn: Option<&str>, topics: &[(&str, &[Option<usize>])]) -> ProduceRequest {
        ProduceRequest::default()
            .with_transactional_id(txn.map(|t| TransactionalId(StrBytes::from_string(t.into()))))
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(
                topics
                    .iter()
                    .map(|(name, parts)| {
                        TopicProduceData::default()
                            .with_name(TopicName(StrBytes::from_string(name.to_string())))
                            .with_partition_data(
                                parts
                                    .iter()
                                    .enumerate()
                                    .map(|(i, len)| {
                                        PartitionProduceData::default()
                                            .with_index(i as i32)
                                            .with_records(len.map(|n| {
                                                Bytes::from(
                                                    (0..n).map(|b| b as u8).collect::<Vec<_>>(),
                                                )
                                            }))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
    }

    #[test]
    fn frames_as_kafka_protocol_encodes() {
        let header = RequestHeader::default()
            .with_request_api_key(0)
            .with_correlation_id(42)
            .with_client_id(Some(StrBytes::from_static_str("weir")));
        let cases = [
            request(None, &[("t", &[Some(100)])]),
            request(
                Some("txn-1"),
                &[("a", &[Some(3), None, Some(0)]), ("bb", &[Some(300)])],
            ),
            request(None, &[]),
            request(
                None,
                &[("x".repeat(200).as_str(), &[Some(70_000), Some(5)])],
            ),
        ];
        for version in 3..=FLEXIBLE {
            for r in &cases {
                let header = header.clone().with_request_api_version(version);
                let mut want = BytesMut::new();
                want.put_i32(0);
                header
                    .encode(&mut want, ApiKey::Produce.request_header_version(version))
                    .unwrap();
                r.encode(&mut want, version).unwrap();
                let size = (want.len() - 4) as i32;
                want[..4].copy_from_slice(&size.to_be_bytes());
                let got: Vec<u8> = encode(r, version, &header).unwrap().concat();
                assert_eq!(got, want.to_vec(), "v{version}: {r:?}");
            }
        }
        assert!(encode(&cases[0], 2, &header).is_err());
    }
}

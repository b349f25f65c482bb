//! The records of `__transaction_state`, in Kafka's key and value formats
//! (`TransactionLogKey` v0: the transactional id; `TransactionLogValue` v0), so that tools that
//! read that topic from Kafka read Weir's too. A null value is a tombstone (an expired id).

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use weir_types::{ProducerEpoch, ProducerId};

const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 0;

/// Where a transaction is (Kafka's `TransactionState`, with its stored byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub(crate) fn byte(self) -> i8 {
        self as i8
    }

    pub(crate) fn from_byte(b: i8) -> Option<TxnState> {
        Some(match b {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            7 => TxnState::PrepareEpochFence,
            _ => return None,
        })
    }

    /// Kafka's names, as DescribeTransactions and ListTransactions answer them.
    pub(crate) fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }
}

/// A partition a transaction wrote to.
pub(crate) type TopicPartition = (String, i32);

/// A transactional id's durable state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TxnMeta {
    pub(crate) producer_id: ProducerId,
    pub(crate) producer_epoch: ProducerEpoch,
    pub(crate) timeout_ms: i32,
    pub(crate) state: TxnState,
    pub(crate) partitions: BTreeSet<TopicPartition>,
    pub(crate) last_update_ms: i64,
    /// When the open transaction began (-1 when none is open).
    pub(crate) start_ms: i64,
}

fn put_string(buf: &mut BytesMut, s: &str) {
    buf.put_i16(s.len() as i16);
    buf.put_slice(s.as_bytes());
}

fn get_string(buf: &mut Bytes) -> Option<String> {
    if buf.remaining() < 2 {
        return None;
    }
    let len = usize::try_from(buf.get_i16()).ok()?;
    if buf.remaining() < len {
        return None;
    }
    String::from_utf8(buf.split_to(len).to_vec()).ok()
}

pub(crate) fn key(transactional_id: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + transactional_id.len());
    buf.put_i16(KEY_VERSION);
    put_string(&mut buf, transactional_id);
    buf.freeze()
}

pub(crate) fn value(m: &TxnMeta) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(VALUE_VERSION);
    buf.put_i64(m.producer_id.0);
    buf.put_i16(m.producer_epoch.0);
    buf.put_i32(m.timeout_ms);
    buf.put_i8(m.state.byte());
    // Kafka writes the partitions grouped by topic.
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (topic, partition) in &m.partitions {
        match topics.last_mut() {
            Some((t, ps)) if *t == topic.as_str() => ps.push(*partition),
            _ => topics.push((topic.as_str(), vec![*partition])),
        }
    }
    buf.put_i32(topics.len() as i32);
    for (topic, partitions) in topics {
        put_string(&mut buf, topic);
        buf.put_i32(partitions.len() as i32);
        for p in partitions {
            buf.put_i32(p);
        }
    }
    buf.put_i64(m.last_update_ms);
    buf.put_i64(m.start_ms);
    buf.freeze()
}

pub(crate) fn decode_key(mut buf: Bytes) -> Option<String> {
    if buf.remaining() < 2 || buf.get_i16() != KEY_VERSION {
        return None;
    }
    get_string(&mut buf)
}

pub(crate) fn decode_value(mut buf: Bytes) -> Option<TxnMeta> {
    if buf.remaining() < 2 + 8 + 2 + 4 + 1 + 4 {
        return None;
    }
    // Version 1 (flexible, Kafka 4) is not written by Weir; only version 0 is read.
    if buf.get_i16() != VALUE_VERSION {
        return None;
    }
    let producer_id = ProducerId(buf.get_i64());
    let producer_epoch = ProducerEpoch(buf.get_i16());
    let timeout_ms = buf.get_i32();
    let state = TxnState::from_byte(buf.get_i8())?;
    let topics = buf.get_i32();
    let mut partitions = BTreeSet::new();
    for _ in 0..topics.max(0) {
        let topic = get_string(&mut buf)?;
        if buf.remaining() < 4 {
            return None;
        }
        let n = buf.get_i32();
        if n < 0 || buf.remaining() < 4 * n as usize {
            return None;
        }
        for _ in 0..n {
            partitions.insert((topic.clone(), buf.get_i32()));
        }
    }
    if buf.remaining() < 16 {
        return None;
    }
    let last_update_ms = buf.get_i64();
    let start_ms = buf.get_i64();
    Some(TxnMeta {
        producer_id,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        last_update_ms,
        start_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        assert_eq!(decode_key(key("app-1")).as_deref(), Some("app-1"));
        let meta = TxnMeta {
            producer_id: ProducerId(4000),
            producer_epoch: ProducerEpoch(3),
            timeout_ms: 60_000,
            state: TxnState::PrepareCommit,
            partitions: [
                ("a".to_string(), 0),
                ("a".to_string(), 2),
                ("b".to_string(), 1),
            ]
            .into_iter()
            .collect(),
            last_update_ms: 17,
            start_ms: 11,
        };
        let bytes = value(&meta);
        assert_eq!(decode_value(bytes.clone()), Some(meta));
        // Kafka's layout: version, producer id, epoch, timeout, state, then the partitions.
        assert_eq!(&bytes[..2], &[0, 0]);
        assert_eq!(bytes[16], 2);
        for cut in 0..bytes.len() {
            assert_eq!(decode_value(bytes.slice(..cut)), None, "cut at {cut}");
        }
    }
}

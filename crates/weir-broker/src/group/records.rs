//! The records of `__consumer_offsets`, in Kafka's own key and value formats, so that tools that
//! read that topic from Kafka read Weir's too.
//!
//! Keys: `OffsetCommitKey` (version 1: group, topic, partition) and `GroupMetadataKey` (version 2:
//! group). Values: `OffsetCommitValue` v3 and `GroupMetadataValue` v3. A null value is a
//! tombstone: the offset or the group was deleted (and compaction will drop both in time).
//! One key of Weir's own: a consumer group's KIP-848 snapshot (version 10000: group), its value
//! written and read by `coordinator/consumer/durable.rs`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;
/// Weir's own record: a consumer group's KIP-848 state (`coordinator/consumer/durable.rs`).
/// Kafka uses key versions 3 to 8 for its consumer-group records and skips unknown ones.
pub(crate) const CONSUMER_GROUP_KEY_VERSION: i16 = 10_000;

/// A committed offset, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OffsetValue {
    pub(crate) offset: i64,
    pub(crate) leader_epoch: i32,
    pub(crate) metadata: String,
    pub(crate) commit_timestamp: i64,
}

/// The durable part of a group: what survives a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupValue {
    pub(crate) protocol_type: String,
    pub(crate) generation: i32,
    pub(crate) protocol: Option<String>,
    pub(crate) leader: Option<String>,
    pub(crate) state_timestamp: i64,
    /// The members of the generation, with their assignments (empty for an Empty group).
    pub(crate) members: Vec<MemberValue>,
}

/// A member as `GroupMetadataValue` stores it: its subscription to the chosen protocol and the
/// assignment the leader gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberValue {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) session_timeout_ms: i32,
    pub(crate) subscription: Bytes,
    pub(crate) assignment: Bytes,
}

/// A decoded key of `__consumer_offsets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
    ConsumerGroup {
        group: String,
    },
}

fn put_string(buf: &mut BytesMut, s: &str) {
    buf.put_i16(s.len() as i16);
    buf.put_slice(s.as_bytes());
}

fn put_nullable_string(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_string(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

fn get_i32(buf: &mut Bytes) -> Option<i32> {
    (buf.remaining() >= 4).then(|| buf.get_i32())
}

/// Bytes with an `i32` length; null reads as empty.
fn get_bytes(buf: &mut Bytes) -> Option<Bytes> {
    let len = get_i32(buf)?;
    if len < 0 {
        return Some(Bytes::new());
    }
    let len = len as usize;
    (buf.remaining() >= len).then(|| buf.split_to(len))
}

fn get_string(buf: &mut Bytes) -> Option<String> {
    get_nullable_string(buf)?
}

fn get_nullable_string(buf: &mut Bytes) -> Option<Option<String>> {
    if buf.remaining() < 2 {
        return None;
    }
    let len = buf.get_i16();
    if len < 0 {
        return Some(None);
    }
    let len = len as usize;
    if buf.remaining() < len {
        return None;
    }
    let s = buf.split_to(len);
    String::from_utf8(s.to_vec()).ok().map(Some)
}

pub(crate) fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(OFFSET_KEY_VERSION);
    put_string(&mut buf, group);
    put_string(&mut buf, topic);
    buf.put_i32(partition);
    buf.freeze()
}

pub(crate) fn group_key(group: &str) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(GROUP_KEY_VERSION);
    put_string(&mut buf, group);
    buf.freeze()
}

pub(crate) fn consumer_group_key(group: &str) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(CONSUMER_GROUP_KEY_VERSION);
    put_string(&mut buf, group);
    buf.freeze()
}

pub(crate) fn offset_value(v: &OffsetValue) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(OFFSET_VALUE_VERSION);
    buf.put_i64(v.offset);
    buf.put_i32(v.leader_epoch);
    put_string(&mut buf, &v.metadata);
    buf.put_i64(v.commit_timestamp);
    buf.freeze()
}

/// Group metadata with its members, so that a new coordinator (after a restart or a failover)
/// knows them and they carry on without a rebalance, as with Kafka.
pub(crate) fn group_value(v: &GroupValue) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(GROUP_VALUE_VERSION);
    put_string(&mut buf, &v.protocol_type);
    buf.put_i32(v.generation);
    put_nullable_string(&mut buf, v.protocol.as_deref());
    put_nullable_string(&mut buf, v.leader.as_deref());
    buf.put_i64(v.state_timestamp);
    buf.put_i32(v.members.len() as i32);
    for m in &v.members {
        put_string(&mut buf, &m.member_id);
        put_nullable_string(&mut buf, m.group_instance_id.as_deref());
        put_string(&mut buf, &m.client_id);
        put_string(&mut buf, &m.client_host);
        buf.put_i32(m.rebalance_timeout_ms);
        buf.put_i32(m.session_timeout_ms);
        put_bytes(&mut buf, &m.subscription);
        put_bytes(&mut buf, &m.assignment);
    }
    buf.freeze()
}

pub(crate) fn decode_key(mut buf: Bytes) -> Option<Key> {
    if buf.remaining() < 2 {
        return None;
    }
    match buf.get_i16() {
        0 | 1 => {
            let group = get_string(&mut buf)?;
            let topic = get_string(&mut buf)?;
            if buf.remaining() < 4 {
                return None;
            }
            Some(Key::Offset {
                group,
                topic,
                partition: buf.get_i32(),
            })
        }
        2 => Some(Key::Group {
            group: get_string(&mut buf)?,
        }),
        CONSUMER_GROUP_KEY_VERSION => Some(Key::ConsumerGroup {
            group: get_string(&mut buf)?,
        }),
        _ => None,
    }
}

pub(crate) fn decode_offset_value(mut buf: Bytes) -> Option<OffsetValue> {
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16();
    if !(0..=4).contains(&version) || buf.remaining() < 8 {
        return None;
    }
    let offset = buf.get_i64();
    let leader_epoch = if version >= 3 {
        if buf.remaining() < 4 {
            return None;
        }
        buf.get_i32()
    } else {
        -1
    };
    let metadata = get_string(&mut buf)?;
    if buf.remaining() < 8 {
        return None;
    }
    let commit_timestamp = buf.get_i64();
    Some(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
    })
}

pub(crate) fn decode_group_value(mut buf: Bytes) -> Option<GroupValue> {
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16();
    // Version 4 is a flexible version (compact strings), which Weir never writes.
    if !(0..=3).contains(&version) {
        return None;
    }
    let protocol_type = get_string(&mut buf)?;
    let generation = get_i32(&mut buf)?;
    let protocol = get_nullable_string(&mut buf)?;
    let leader = get_nullable_string(&mut buf)?;
    let state_timestamp = if version >= 2 {
        if buf.remaining() < 8 {
            return None;
        }
        buf.get_i64()
    } else {
        -1
    };
    let count = get_i32(&mut buf)?.max(0);
    let mut members = Vec::new();
    for _ in 0..count {
        let member_id = get_string(&mut buf)?;
        let group_instance_id = if version >= 3 {
            get_nullable_string(&mut buf)?
        } else {
            None
        };
        let client_id = get_string(&mut buf)?;
        let client_host = get_string(&mut buf)?;
        let rebalance_timeout_ms = if version >= 1 { get_i32(&mut buf)? } else { -1 };
        let session_timeout_ms = get_i32(&mut buf)?;
        let rebalance_timeout_ms = if rebalance_timeout_ms < 0 {
            session_timeout_ms
        } else {
            rebalance_timeout_ms
        };
        members.push(MemberValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription: get_bytes(&mut buf)?,
            assignment: get_bytes(&mut buf)?,
        });
    }
    Some(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        state_timestamp,
        members,
    })
}

/// Java's `String.hashCode`, which Kafka uses to map a group to its `__consumer_offsets`
/// partition (`abs(hash) % partitions`), so groups land where Kafka would put them.
pub(crate) fn partition_for(group: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    // Kafka's Utils.abs maps i32::MIN to 0.
    let h = if h == i32::MIN { 0 } else { h.abs() };
    h % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        let k = offset_key("g", "t", 3);
        assert_eq!(
            decode_key(k),
            Some(Key::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 3
            })
        );
        assert_eq!(
            decode_key(group_key("g")),
            Some(Key::Group { group: "g".into() })
        );
        let v = OffsetValue {
            offset: 42,
            leader_epoch: 1,
            metadata: "m".into(),
            commit_timestamp: 9,
        };
        assert_eq!(decode_offset_value(offset_value(&v)), Some(v));
        let g = GroupValue {
            protocol_type: "consumer".into(),
            generation: 4,
            protocol: Some("range".into()),
            leader: None,
            state_timestamp: 5,
            members: Vec::new(),
        };
        assert_eq!(decode_group_value(group_value(&g)), Some(g));
        let g = GroupValue {
            protocol_type: "consumer".into(),
            generation: 7,
            protocol: Some("range".into()),
            leader: Some("a-1".into()),
            state_timestamp: 5,
            members: vec![
                MemberValue {
                    member_id: "a-1".into(),
                    group_instance_id: None,
                    client_id: "a".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 30_000,
                    session_timeout_ms: 10_000,
                    subscription: Bytes::from_static(b"sub"),
                    assignment: Bytes::from_static(b"assign"),
                },
                MemberValue {
                    member_id: "i-2".into(),
                    group_instance_id: Some("i".into()),
                    client_id: "b".into(),
                    client_host: "/127.0.0.2".into(),
                    rebalance_timeout_ms: 5_000,
                    session_timeout_ms: 6_000,
                    subscription: Bytes::new(),
                    assignment: Bytes::new(),
                },
            ],
        };
        let encoded = group_value(&g);
        assert_eq!(decode_group_value(encoded.clone()), Some(g));
        // Cut anywhere, it is refused rather than read short.
        for cut in 0..encoded.len() {
            assert_eq!(
                decode_group_value(encoded.slice(..cut)),
                None,
                "cut at {cut}"
            );
        }
        assert_eq!(decode_key(Bytes::from_static(&[0, 1, 0x7f, 0xff])), None);
    }

    #[test]
    fn partition_matches_java_string_hash() {
        // "my-group".hashCode() is -1906497762 in Java; abs % 50 is 12.
        assert_eq!(partition_for("my-group", 50), 12);
        assert_eq!(partition_for("", 50), 0);
    }
}

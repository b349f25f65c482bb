//! The consumer protocol's embedded messages (a version, then the message), which classic
//! members exchange inside JoinGroup and SyncGroup: subscriptions and assignments.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::Assignment;

/// The highest version of both messages this broker reads.
const MAX_VERSION: i16 = 3;

/// A subscription's topics and the partitions the member says it owns (v1+); `None` when it
/// does not decode.
pub(crate) fn decode_subscription(meta: &Bytes) -> Option<(Vec<String>, Assignment)> {
    let mut buf = meta.clone();
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16().clamp(0, MAX_VERSION);
    let sub = ConsumerProtocolSubscription::decode(&mut buf, version).ok()?;
    let topics = sub.topics.into_iter().map(|t| t.to_string()).collect();
    let mut owned = Assignment::new();
    for tp in sub.owned_partitions {
        owned
            .entry(tp.topic.0.to_string())
            .or_default()
            .extend(tp.partitions);
    }
    Some((topics, owned))
}

/// An assignment's partitions; empty when it does not decode.
pub(crate) fn decode_assignment(bytes: &Bytes) -> Assignment {
    let mut buf = bytes.clone();
    let mut out = Assignment::new();
    if buf.remaining() < 2 {
        return out;
    }
    let version = buf.get_i16().clamp(0, MAX_VERSION);
    if let Ok(a) = ConsumerProtocolAssignment::decode(&mut buf, version) {
        for t in a.assigned_partitions {
            out.entry(t.topic.0.to_string())
                .or_default()
                .extend(t.partitions);
        }
    }
    out
}

/// An assignment as SyncGroup hands it to a classic member (version 0, which every client
/// reads).
pub(crate) fn encode_assignment(a: &Assignment) -> Bytes {
    let message = ConsumerProtocolAssignment::default().with_assigned_partitions(
        a.iter()
            .filter(|(_, ps)| !ps.is_empty())
            .map(|(t, ps)| {
                AssignedTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(t.clone())))
                    .with_partitions(ps.iter().copied().collect())
            })
            .collect(),
    );
    versioned(&message, 0)
}

/// A subscription to `topics` (version 0), as DescribeGroups shows a member's metadata.
pub(crate) fn encode_subscription<'a>(topics: impl Iterator<Item = &'a String>) -> Bytes {
    let message = ConsumerProtocolSubscription::default()
        .with_topics(topics.map(|t| StrBytes::from_string(t.clone())).collect());
    versioned(&message, 0)
}

fn versioned<M: Encodable>(message: &M, version: i16) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    // Built from memory, within every field's bounds: encoding cannot fail.
    if message.encode(&mut buf, version).is_err() {
        return Bytes::new();
    }
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_and_subscriptions_round_trip() {
        let mut a = Assignment::new();
        a.insert("t".into(), [0, 2].into());
        assert_eq!(decode_assignment(&encode_assignment(&a)), a);
        let topics = ["x".to_string(), "y".to_string()];
        let (decoded, owned) = decode_subscription(&encode_subscription(topics.iter())).unwrap();
        assert_eq!(decoded, topics);
        assert!(owned.is_empty());
        assert!(decode_subscription(&Bytes::from_static(&[0, 1, 0xff])).is_none());
        assert!(decode_assignment(&Bytes::from_static(&[9])).is_empty());
    }
}

//! Partitioners: which partition a record goes to.
//!
//! The default is the Java client's: a keyed record goes to `murmur2(key) & 0x7fffffff % n`
//! (byte for byte Kafka's `Utils.murmur2`, so Weir and Java producers agree on where a key lives);
//! a keyless record sticks to one partition until its batch is sent (KIP-480).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Chooses a partition for a record. Implement it for a strategy of your own.
pub trait Partitioner: Send + Sync + std::fmt::Debug {
    /// The partition, in `0..partitions`, for a record of `topic` with `key` (`None`: keyless).
    /// `partitions` is at least 1.
    fn partition(&self, topic: &str, key: Option<&[u8]>, partitions: i32) -> i32;
    /// Called when the batch of a topic's sticky partition has been handed to the network.
    /// Does nothing by default.
    fn on_new_batch(&self, _topic: &str) {}
}

/// Kafka's murmur2 (from `org.apache.kafka.common.utils.Utils`), with its seed and constants.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java client's default partitioner picks for a key.
pub fn murmur2_partition(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// Keyed records by murmur2 (as Java), keyless records sticky per topic (KIP-480).
#[derive(Debug, Default)]
pub struct DefaultPartitioner {
    sticky: Mutex<HashMap<String, i32, foldhash::fast::RandomState>>,
}

impl Partitioner for DefaultPartitioner {
    fn partition(&self, topic: &str, key: Option<&[u8]>, partitions: i32) -> i32 {
        match key {
            Some(k) => murmur2_partition(k, partitions),
            None => {
                let mut sticky = self.sticky.lock().unwrap_or_else(|p| p.into_inner());
                let p = match sticky.get(topic) {
                    Some(p) => *p,
                    None => *sticky
                        .entry(topic.to_string())
                        .or_insert_with(|| rand::random::<u32>() as i32 & 0x7fff_ffff),
                };
                p % partitions.max(1)
            }
        }
    }

    fn on_new_batch(&self, topic: &str) {
        let mut sticky = self.sticky.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = sticky.get_mut(topic) {
            *p = p.wrapping_add(1 + (rand::random::<u8>() % 3) as i32) & 0x7fff_ffff;
        }
    }
}

/// Every record to the next partition in turn, keys ignored.
#[derive(Debug, Default)]
pub struct RoundRobinPartitioner {
    next: AtomicUsize,
}

impl Partitioner for RoundRobinPartitioner {
    fn partition(&self, _topic: &str, _key: Option<&[u8]>, partitions: i32) -> i32 {
        (self.next.fetch_add(1, Ordering::Relaxed) % partitions.max(1) as usize) as i32
    }
}

/// Every record to a random partition, keys ignored.
#[derive(Debug, Default)]
pub struct RandomPartitioner;

impl Partitioner for RandomPartitioner {
    fn partition(&self, _topic: &str, _key: Option<&[u8]>, partitions: i32) -> i32 {
        (rand::random::<u32>() % partitions.max(1) as u32) as i32
    }
}

/// Keyed records by murmur2, keyless ones to a random partition each (no stickiness).
#[derive(Debug, Default)]
pub struct KeyHashPartitioner;

impl Partitioner for KeyHashPartitioner {
    fn partition(&self, topic: &str, key: Option<&[u8]>, partitions: i32) -> i32 {
        match key {
            Some(k) => murmur2_partition(k, partitions),
            None => RandomPartitioner.partition(topic, None, partitions),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from Kafka's own `UtilsTest.testMurmur2`.
    #[test]
    fn murmur2_matches_the_java_client() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(
                murmur2(input),
                expected,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn partitions_are_in_range() {
        let p = DefaultPartitioner::default();
        for n in 1..20 {
            for k in 0..50 {
                let key = format!("key-{k}");
                let a = p.partition("t", Some(key.as_bytes()), n);
                assert!((0..n).contains(&a));
                assert_eq!(a, murmur2_partition(key.as_bytes(), n));
                assert!((0..n).contains(&p.partition("t", None, n)));
            }
        }
        let rr = RoundRobinPartitioner::default();
        let seq: Vec<i32> = (0..6).map(|_| rr.partition("t", None, 3)).collect();
        assert_eq!(seq, vec![0, 1, 2, 0, 1, 2]);
    }
}

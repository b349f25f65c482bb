//! The producer's batches, per partition: filled by `send`, sealed and handed to the sender,
//! retried, completed. Sans-IO: the sender drives it with the time and the brokers' answers.
//!
//! Up to `max_in_flight` batches of a partition are in flight at once; their sequence numbers
//! (fixed when a batch is sealed) keep them in order at the broker, which refuses a batch out of
//! order. When one fails and is retried, the partition recovers: nothing more is sent until
//! every batch in flight has answered, then one batch at a time from the oldest unanswered,
//! until one succeeds. A batch refused as out of order behind one that failed is retried
//! without counting an attempt: the earlier failure explains it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::batch::RecordsBuilder;
use super::delivery::{DeliveryFuture, Settle};
use super::ProducerRecord;

/// A partition: topic and index.
pub(super) type Tp = (String, i32);

/// A batch being filled, or sealed: sent, awaiting its answer, or waiting to be sent again.
pub(super) struct Batch {
    pub(super) id: u64,
    /// Settles its records' futures.
    pub(super) settle: Settle,
    /// Its records.
    count: i32,
    /// Buffer memory its records hold.
    pub(super) permits: usize,
    records: RecordsBuilder,
    bytes: usize,
    created: Instant,
    /// Closed to new records, its sequence numbers fixed.
    sealed: bool,
    /// Encoded once, so that a retry resends the same sequence numbers.
    encoded: Option<Bytes>,
    in_flight: bool,
    attempts: u32,
    retry_at: Option<Instant>,
    /// Its first record's sequence number, once sealed.
    base_sequence: i32,
    /// Renumbered while a copy with its old numbers was in flight: that copy's refusal as out
    /// of order is expected.
    renumbered: bool,
}

#[derive(Default)]
struct PartitionQueue {
    batches: VecDeque<Batch>,
    next_sequence: i32,
    recovering: bool,
}

/// The settings the accumulator needs.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) batch_size: usize,
    pub(super) linger: Duration,
    pub(super) max_in_flight: usize,
    pub(super) retries: u32,
    pub(super) retry_backoff: Duration,
    pub(super) delivery_timeout: Duration,
}

/// A batch for the sender.
pub(super) enum ToSend {
    /// Sealed now: its records, to seal (outside the producer's lock) with this base
    /// sequence, then give back encoded with [`Accumulator::encoded`].
    New {
        tp: Tp,
        id: u64,
        base_sequence: i32,
        records: RecordsBuilder,
    },
    /// Sent before: the same bytes again.
    Again { tp: Tp, id: u64, bytes: Bytes },
}

/// What became of a batch the broker refused.
pub(super) enum Refused {
    /// It stays, to be sent again.
    Retried,
    /// Out of retries or time, or not retriable: its records fail.
    GaveUp(Batch),
}

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Default)]
pub(super) struct Accumulator {
    topics: FastMap<String, FastMap<i32, PartitionQueue>>,
    pub(super) flush_requested: bool,
    pub(super) closed: bool,
    next_id: u64,
}

impl Accumulator {
    fn queue(&mut self, tp: &Tp) -> Option<&mut PartitionQueue> {
        self.topics.get_mut(&tp.0)?.get_mut(&tp.1)
    }

    /// Encodes a record into its partition's open batch (a new one when there is none, or it
    /// is sealed or would grow past `batch_size`). Returns the record's future, and whether the
    /// sender should look now: that batch is full, or new (its linger starts, which the sender
    /// must time).
    pub(super) fn append(
        &mut self,
        record: &ProducerRecord,
        partition: i32,
        timestamp: i64,
        size: usize,
        limits: &Limits,
    ) -> Option<(DeliveryFuture, bool)> {
        let topic = record.topic.as_str();
        if !self.topics.contains_key(topic) {
            self.topics.insert(topic.to_string(), FastMap::default());
        }
        let queues = self.topics.get_mut(topic)?;
        let queue = queues.entry(partition).or_default();
        let need_new = queue
            .batches
            .back()
            .is_none_or(|b| b.sealed || b.bytes + size > limits.batch_size);
        if need_new {
            self.next_id += 1;
            queue.batches.push_back(Batch {
                id: self.next_id,
                settle: Settle::new((topic.to_string(), partition)),
                count: 0,
                permits: 0,
                records: RecordsBuilder::with_capacity(limits.batch_size.max(size).min(1 << 20)),
                bytes: 0,
                created: Instant::now(),
                sealed: false,
                encoded: None,
                in_flight: false,
                attempts: 0,
                retry_at: None,
                base_sequence: -1,
                renumbered: false,
            });
        }
        let batch = queue.batches.back_mut()?;
        batch.bytes += size;
        batch.permits += size;
        batch.records.push(
            timestamp,
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
        );
        let future = batch.settle.future(batch.count, timestamp);
        batch.count += 1;
        Some((future, need_new || batch.bytes >= limits.batch_size))
    }

    /// Whether nothing is queued or in flight.
    pub(super) fn is_empty(&self) -> bool {
        self.topics
            .values()
            .all(|t| t.values().all(|q| q.batches.is_empty()))
    }

    /// The batches to send now, in each partition's order, each marked in flight; and the
    /// earliest time a batch not ready yet will be (linger or retry backoff).
    pub(super) fn drain(
        &mut self,
        now: Instant,
        limits: &Limits,
    ) -> (Vec<ToSend>, Option<Instant>) {
        let flush = self.flush_requested || self.closed;
        let mut out = Vec::new();
        let mut wake: Option<Instant> = None;
        let mut later = |at: Instant| wake = Some(wake.map_or(at, |w| w.min(at)));
        for (topic, queues) in self.topics.iter_mut() {
            for (&partition, queue) in queues.iter_mut() {
                let cap = if queue.recovering {
                    1
                } else {
                    limits.max_in_flight.max(1)
                };
                let mut in_flight = queue.batches.iter().filter(|b| b.in_flight).count();
                let count = queue.batches.len();
                for (i, batch) in queue.batches.iter_mut().enumerate() {
                    if batch.in_flight {
                        continue;
                    }
                    if in_flight >= cap {
                        break;
                    }
                    if let Some(at) = batch.retry_at.filter(|at| *at > now) {
                        later(at);
                        break;
                    }
                    if batch.sealed {
                        let Some(bytes) = batch.encoded.clone() else {
                            break; // being encoded
                        };
                        batch.in_flight = true;
                        in_flight += 1;
                        out.push(ToSend::Again {
                            tp: (topic.clone(), partition),
                            id: batch.id,
                            bytes,
                        });
                        continue;
                    }
                    let lingered = batch.created + limits.linger;
                    let ready = flush
                        || i + 1 < count
                        || batch.bytes >= limits.batch_size
                        || lingered <= now;
                    if !ready {
                        later(lingered);
                        break;
                    }
                    let base_sequence = queue.next_sequence;
                    queue.next_sequence =
                        base_sequence.wrapping_add(batch.records.count()) & i32::MAX;
                    batch.sealed = true;
                    batch.base_sequence = base_sequence;
                    batch.in_flight = true;
                    in_flight += 1;
                    out.push(ToSend::New {
                        tp: (topic.clone(), partition),
                        id: batch.id,
                        base_sequence,
                        records: std::mem::take(&mut batch.records),
                    });
                }
            }
        }
        (out, wake)
    }

    fn batch(&mut self, tp: &Tp, id: u64) -> Option<&mut Batch> {
        self.queue(tp)?.batches.iter_mut().find(|b| b.id == id)
    }

    /// A sealed batch's encoding.
    pub(super) fn encoded(&mut self, tp: &Tp, id: u64, bytes: Bytes) {
        if let Some(b) = self.batch(tp, id) {
            b.encoded = Some(bytes);
        }
    }

    /// A batch that could not be sent after all (its leader is busy): it goes again later, in
    /// its place.
    pub(super) fn unsend(&mut self, tp: &Tp, id: u64) {
        if let Some(b) = self.batch(tp, id) {
            b.in_flight = false;
        }
    }

    /// Takes a batch out (answered, or failed for good). A partition recovers once its oldest
    /// batch is answered with nothing else in flight.
    pub(super) fn remove(&mut self, tp: &Tp, id: u64) -> Option<Batch> {
        let queue = self.queue(tp)?;
        let at = queue.batches.iter().position(|b| b.id == id)?;
        let batch = queue.batches.remove(at)?;
        if at == 0 && !queue.batches.iter().any(|b| b.in_flight) {
            queue.recovering = false;
        }
        Some(batch)
    }

    /// Takes out a batch the broker certainly did not write (refused for good, or never
    /// encoded), and closes the gap its sequence numbers would leave: every sealed batch behind
    /// it is renumbered down (its bytes patched), so the broker's next expected number is
    /// still the next one sent. Without this, every later batch would be refused out of order.
    pub(super) fn remove_unwritten(&mut self, tp: &Tp, id: u64) -> Option<Batch> {
        let batch = self.remove(tp, id)?;
        if !batch.sealed || batch.base_sequence < 0 {
            return Some(batch);
        }
        let count = batch.count;
        let queue = self.queue(tp)?;
        for later in queue.batches.iter_mut().filter(|b| b.sealed) {
            later.base_sequence = later.base_sequence.wrapping_sub(count) & i32::MAX;
            if let Some(bytes) = &later.encoded {
                later.encoded = Some(super::batch::renumber(bytes, later.base_sequence));
            }
            later.renumbered |= later.in_flight;
        }
        queue.next_sequence = queue.next_sequence.wrapping_sub(count) & i32::MAX;
        Some(batch)
    }

    /// The broker refused a batch: a retriable refusal (`retriable`) keeps it for another
    /// attempt after the backoff, unless attempts or time ran out. `out_of_order`: refused as
    /// out of sequence, which behind an earlier batch still unanswered is that batch's doing,
    /// so retried without counting.
    pub(super) fn refused(
        &mut self,
        tp: &Tp,
        id: u64,
        retriable: bool,
        out_of_order: bool,
        now: Instant,
        limits: &Limits,
    ) -> Refused {
        let Some(queue) = self.queue(tp) else {
            return Refused::Retried;
        };
        let Some(at) = queue.batches.iter().position(|b| b.id == id) else {
            return Refused::Retried;
        };
        let behind_another = at > 0;
        let Some(batch) = queue.batches.get_mut(at) else {
            return Refused::Retried;
        };
        batch.in_flight = false;
        let explained = out_of_order && (behind_another || batch.renumbered);
        batch.renumbered = false;
        if !explained {
            batch.attempts += 1;
        }
        if !(retriable || explained) {
            // Refused for good: not written.
            return match self.remove_unwritten(tp, id) {
                Some(b) => Refused::GaveUp(b),
                None => Refused::Retried,
            };
        }
        if batch.attempts > limits.retries || batch.created.elapsed() > limits.delivery_timeout {
            // Out of retries or time with the outcome unknown: it may have been written, so
            // the numbers behind it stay (see ARCHITECTURE: no epoch bump yet).
            return match self.remove(tp, id) {
                Some(b) => Refused::GaveUp(b),
                None => Refused::Retried,
            };
        }
        batch.retry_at = Some(now + limits.retry_backoff);
        queue.recovering = true;
        Refused::Retried
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            batch_size: 100,
            linger: Duration::from_millis(5),
            max_in_flight: 5,
            retries: 3,
            retry_backoff: Duration::from_millis(10),
            delivery_timeout: Duration::from_secs(60),
        }
    }

    /// Appends a record of `size` bytes to partition 0; returns whether the sender should look.
    fn append(acc: &mut Accumulator, size: usize) -> bool {
        acc.append(&record(), 0, 0, size, &limits())
            .is_some_and(|(_, look)| look)
    }

    fn record() -> ProducerRecord {
        ProducerRecord::new("t", "v")
    }

    /// Fills `n` full batches of partition 0.
    fn filled(n: usize) -> Accumulator {
        let mut acc = Accumulator::default();
        for _ in 0..n {
            assert!(append(&mut acc, 100));
        }
        acc
    }

    /// Sends what is ready: (id, base sequence or -1 for a resend).
    fn send(acc: &mut Accumulator, now: Instant) -> Vec<(u64, i32)> {
        let (out, _) = acc.drain(now, &limits());
        out.into_iter()
            .map(|t| match t {
                ToSend::New {
                    tp,
                    id,
                    base_sequence,
                    ..
                } => {
                    acc.encoded(&tp, id, Bytes::from_static(b"x"));
                    (id, base_sequence)
                }
                ToSend::Again { id, .. } => (id, -1),
            })
            .collect()
    }

    fn tp() -> Tp {
        ("t".to_string(), 0)
    }

    #[test]
    fn up_to_max_in_flight_batches_go_at_once_in_sequence_order() {
        let mut acc = filled(7);
        let now = Instant::now();
        let sent = send(&mut acc, now);
        assert_eq!(sent, vec![(1, 0), (2, 1), (3, 2), (4, 3), (5, 4)]);
        assert!(send(&mut acc, now).is_empty(), "five in flight already");
        assert!(acc.remove(&tp(), 1).is_some());
        assert_eq!(send(&mut acc, now), vec![(6, 5)]);
    }

    #[test]
    fn a_lingering_batch_waits_and_says_until_when() {
        let mut acc = Accumulator::default();
        append(&mut acc, 10);
        let now = Instant::now();
        let (out, wake) = acc.drain(now, &limits());
        assert!(out.is_empty());
        assert!(wake.is_some_and(|w| w > now));
        assert_eq!(send(&mut acc, now + Duration::from_millis(6)).len(), 1);
    }

    #[test]
    fn a_failed_batch_is_resent_alone_before_the_ones_behind_it() {
        let mut acc = filled(3);
        let now = Instant::now();
        assert_eq!(send(&mut acc, now).len(), 3);
        // The first fails (retriable), the two behind it are refused as out of order.
        assert!(matches!(
            acc.refused(&tp(), 1, true, false, now, &limits()),
            Refused::Retried
        ));
        for id in [2, 3] {
            assert!(matches!(
                acc.refused(&tp(), id, false, true, now, &limits()),
                Refused::Retried
            ));
        }
        assert!(send(&mut acc, now).is_empty(), "backing off");
        let later = now + Duration::from_millis(11);
        assert_eq!(send(&mut acc, later), vec![(1, -1)], "one at a time");
        assert!(send(&mut acc, later).is_empty());
        assert!(acc.remove(&tp(), 1).is_some());
        assert_eq!(
            send(&mut acc, later),
            vec![(2, -1), (3, -1)],
            "pipelined again"
        );
    }

    #[test]
    fn the_first_batch_out_of_order_is_not_excused() {
        let mut acc = filled(1);
        let now = Instant::now();
        send(&mut acc, now);
        assert!(matches!(
            acc.refused(&tp(), 1, false, true, now, &limits()),
            Refused::GaveUp(_)
        ));
        assert!(acc.is_empty());
    }

    #[test]
    fn a_batch_refused_for_good_leaves_no_gap_in_the_numbers() {
        let mut acc = filled(3);
        let now = Instant::now();
        assert_eq!(send(&mut acc, now), vec![(1, 0), (2, 1), (3, 2)]);
        // The first is refused for good (say, too large); the two behind it out of order.
        assert!(matches!(
            acc.refused(&tp(), 1, false, false, now, &limits()),
            Refused::GaveUp(_)
        ));
        for id in [2, 3] {
            assert!(matches!(
                acc.refused(&tp(), id, false, true, now, &limits()),
                Refused::Retried
            ));
        }
        let seqs: Vec<i32> = acc.topics["t"][&0]
            .batches
            .iter()
            .map(|b| b.base_sequence)
            .collect();
        assert_eq!(seqs, vec![0, 1], "renumbered down");
        let later = now + Duration::from_millis(11);
        assert_eq!(send(&mut acc, later), vec![(2, -1)]);
        assert!(acc.remove(&tp(), 2).is_some());
        assert_eq!(send(&mut acc, later), vec![(3, -1)]);
        append(&mut acc, 100);
        assert_eq!(
            send(&mut acc, later),
            vec![(4, 2)],
            "the next number follows"
        );
    }

    #[test]
    fn retries_run_out() {
        let mut acc = filled(1);
        let mut now = Instant::now();
        for _ in 0..3 {
            send(&mut acc, now);
            assert!(matches!(
                acc.refused(&tp(), 1, true, false, now, &limits()),
                Refused::Retried
            ));
            now += Duration::from_millis(11);
        }
        send(&mut acc, now);
        assert!(matches!(
            acc.refused(&tp(), 1, true, false, now, &limits()),
            Refused::GaveUp(_)
        ));
    }

    #[test]
    fn a_sealed_batch_takes_no_more_records() {
        let mut acc = Accumulator::default();
        append(&mut acc, 10);
        acc.flush_requested = true;
        assert_eq!(send(&mut acc, Instant::now()).len(), 1);
        append(&mut acc, 10);
        assert_eq!(send(&mut acc, Instant::now()), vec![(2, 1)]);
    }
}

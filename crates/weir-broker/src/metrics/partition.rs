//! The partition's probe: the traffic of one partition, and what all of a broker's partitions
//! share (fsync times, ISR changes). Plain atomics on the hot path; `/metrics` reads them at
//! each scrape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

/// Upper bounds of the millisecond histograms: 0.05 ms to about 26 s, doubling.
pub(crate) fn millisecond_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.05, 2.0, 20)
}

/// What every partition of one broker adds to.
#[derive(Debug)]
pub(crate) struct ReplicaProbe {
    /// Time of each log fsync (Kafka's `LogFlushRateAndTimeMs`).
    pub(crate) fsync_ms: Histogram,
    /// The leader's ISR got smaller or larger (Kafka's `IsrShrinksPerSec`, `IsrExpandsPerSec`).
    pub(crate) isr_shrinks: Counter,
    pub(crate) isr_expands: Counter,
    /// Every partition's traffic since the broker started, kept here too so the broker's
    /// totals never go down when a partition leaves.
    totals: Counts,
}

impl Default for ReplicaProbe {
    fn default() -> ReplicaProbe {
        ReplicaProbe {
            fsync_ms: Histogram::new(millisecond_buckets()),
            isr_shrinks: Counter::default(),
            isr_expands: Counter::default(),
            totals: Counts::default(),
        }
    }
}

impl ReplicaProbe {
    /// Every partition's traffic since the broker started.
    pub(crate) fn totals(&self) -> Traffic {
        self.totals.read()
    }
}

/// Traffic counts, as atomics.
#[derive(Debug, Default)]
struct Counts {
    bytes_in: AtomicU64,
    records_in: AtomicU64,
    bytes_out: AtomicU64,
    records_out: AtomicU64,
    replication_bytes_out: AtomicU64,
}

impl Counts {
    fn appended(&self, bytes: u64, records: u64) {
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
        self.records_in.fetch_add(records, Ordering::Relaxed);
    }

    fn read(&self) -> Traffic {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Traffic {
            bytes_in: get(&self.bytes_in),
            records_in: get(&self.records_in),
            bytes_out: get(&self.bytes_out),
            records_out: get(&self.records_out),
            replication_bytes_out: get(&self.replication_bytes_out),
        }
    }

    fn sent(&self, bytes: u64, offsets: u64, follower: bool) {
        if follower {
            self.replication_bytes_out
                .fetch_add(bytes, Ordering::Relaxed);
        } else {
            self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
            self.records_out.fetch_add(offsets, Ordering::Relaxed);
        }
    }
}

/// One partition's counts since it was opened on this broker.
#[derive(Debug, Default)]
pub(crate) struct PartitionProbe {
    counts: Counts,
    shared: Arc<ReplicaProbe>,
}

/// A partition's counts as a scrape reads them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Traffic {
    pub(crate) bytes_in: u64,
    pub(crate) records_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) records_out: u64,
    pub(crate) replication_bytes_out: u64,
}

impl std::ops::AddAssign for Traffic {
    fn add_assign(&mut self, t: Traffic) {
        self.bytes_in += t.bytes_in;
        self.records_in += t.records_in;
        self.bytes_out += t.bytes_out;
        self.records_out += t.records_out;
        self.replication_bytes_out += t.replication_bytes_out;
    }
}

impl PartitionProbe {
    pub(crate) fn new(shared: Arc<ReplicaProbe>) -> PartitionProbe {
        PartitionProbe {
            shared,
            ..PartitionProbe::default()
        }
    }

    /// A producer's batches were appended (a duplicate of ones already written adds nothing).
    pub(crate) fn appended(&self, bytes: usize, records: i64) {
        let (bytes, records) = (bytes as u64, records.max(0) as u64);
        self.counts.appended(bytes, records);
        self.shared.totals.appended(bytes, records);
    }

    /// A fetch answer carried `bytes` of this partition, `offsets` offsets past its fetch
    /// offset; a follower's fetch counts as replication.
    pub(crate) fn read(&self, bytes: u64, offsets: u64, follower: bool) {
        self.counts.sent(bytes, offsets, follower);
        self.shared.totals.sent(bytes, offsets, follower);
    }

    pub(crate) fn fsynced(&self, took: Duration) {
        self.shared.fsync_ms.observe(took.as_secs_f64() * 1e3);
    }

    /// The ISR a leader holds went from `before` replicas to `after`.
    pub(crate) fn isr_changed(&self, before: usize, after: usize) {
        if after < before {
            self.shared.isr_shrinks.inc();
        } else if after > before {
            self.shared.isr_expands.inc();
        }
    }

    pub(crate) fn traffic(&self) -> Traffic {
        self.counts.read()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_counts_its_traffic_and_shares_isr_changes() {
        let shared = Arc::new(ReplicaProbe::default());
        let a = PartitionProbe::new(shared.clone());
        let b = PartitionProbe::new(shared.clone());
        a.appended(100, 3);
        a.appended(50, 2);
        a.read(70, 4, false);
        a.read(1_000, 5, true);
        b.isr_changed(3, 2);
        a.isr_changed(2, 3);
        a.isr_changed(3, 3);
        assert_eq!(
            a.traffic(),
            Traffic {
                bytes_in: 150,
                records_in: 5,
                bytes_out: 70,
                records_out: 4,
                replication_bytes_out: 1_000,
            }
        );
        assert_eq!(b.traffic(), Traffic::default());
        b.appended(1, 1);
        drop(a);
        let totals = shared.totals();
        assert_eq!(
            (totals.bytes_in, totals.records_in, totals.bytes_out),
            (151, 6, 70)
        );
        assert_eq!((shared.isr_shrinks.get(), shared.isr_expands.get()), (1, 1));
    }
}

//! Group commit for durable partitions (`write.caching=false`).
//!
//! A leader's append to a durable partition asks for an fsync here instead of doing one itself.
//! One thread per broker takes every request that piled up while its previous round of fsyncs
//! ran, fsyncs each partition's log once (outside the log's lock, see
//! `weir_log::Log::sync_target`), and moves each high watermark to what is now on disk: the
//! acks=all produces and consumers waiting on it wake. Many produce requests, over many
//! partitions, share one round, and the fsync never runs on an async worker thread.
//!
//! Followers fsync what they copied before their next fetch (`fetcher.rs`), so the fetch offset
//! a leader counts for the high watermark is on the follower's disk too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use weir_types::BrokerId;

use crate::replica_manager::Partition;

#[derive(Debug, Default)]
struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct Pending {
    partitions: Vec<Arc<Partition>>,
    closed: bool,
}

/// Where durable appends ask for their fsync. Cloning gives another handle to the same queue.
#[derive(Debug, Clone, Default)]
pub(crate) struct FlushQueue(Arc<Shared>);

impl FlushQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.0.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks for `partition`'s log to be fsynced soon.
    pub(crate) fn request(&self, partition: Arc<Partition>) {
        let mut pending = self.lock();
        if !pending
            .partitions
            .iter()
            .any(|p| Arc::ptr_eq(p, &partition))
        {
            pending.partitions.push(partition);
        }
        drop(pending);
        self.0.wake.notify_one();
    }

    /// Takes every request made so far, waiting up to `wait` for one; `None` once closed.
    fn take(&self, wait: Duration) -> Option<Vec<Arc<Partition>>> {
        let mut pending = self.lock();
        if pending.partitions.is_empty() && !pending.closed {
            pending = self
                .0
                .wake
                .wait_timeout(pending, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if pending.closed {
            return None;
        }
        Some(std::mem::take(&mut pending.partitions))
    }

    /// Fsyncs every partition asked for so far, on the calling thread. Returns whether a high
    /// watermark moved.
    #[cfg(test)]
    pub(crate) fn run_pending(&self, me: BrokerId) -> bool {
        let partitions = std::mem::take(&mut self.lock().partitions);
        sync_all(me, &partitions)
    }

    /// Starts the broker's flush thread: it runs until [`FlushQueue::close`]. A partition whose
    /// high watermark moved wakes its own waiters.
    pub(crate) fn start(&self, me: BrokerId) -> std::io::Result<()> {
        let queue = self.clone();
        std::thread::Builder::new()
            .name(format!("weir-flush-{me}"))
            .spawn(move || {
                while let Some(partitions) = queue.take(Duration::from_secs(1)) {
                    sync_all(me, &partitions);
                }
            })?;
        Ok(())
    }

    /// Stops the flush thread after the round it is in.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.0.wake.notify_all();
    }
}

/// How long an fsync postponed for lack of descriptors waits before it is tried again.
const SHORTAGE_PAUSE: Duration = Duration::from_millis(20);

/// Partitions fsynced at once in one round: devices serve concurrent flushes better than a
/// queue of them, and each waits on the disk, not the CPU.
const PARALLEL_FSYNCS: usize = 4;

/// One round of group commit: one fsync per partition, up to [`PARALLEL_FSYNCS`] at a time.
/// Returns whether a high watermark moved.
pub(crate) fn sync_all(me: BrokerId, partitions: &[Arc<Partition>]) -> bool {
    let short = AtomicBool::new(false);
    let sync = |p: &Arc<Partition>| match p.sync_log(me) {
        Ok(moved) => moved,
        Err(weir_log::LogError::Shortage(e)) => {
            // Out of descriptors for the file: nothing was lost; the fsync is asked for again
            // (after this round's pause), so waiting acks=all produces are answered once it passes.
            tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "fsync postponed");
            short.store(true, Ordering::Relaxed);
            p.request_sync();
            false
        }
        Err(e) => {
            tracing::error!(topic = %p.topic, partition = p.index, error = %e, "fsync of the log failed");
            false
        }
    };
    let moved = if partitions.len() <= 1 {
        partitions.iter().any(sync)
    } else {
        let per_thread = partitions.len().div_ceil(PARALLEL_FSYNCS);
        let sync_chunk = |chunk: &[Arc<Partition>]| chunk.iter().fold(false, |m, p| sync(p) | m);
        std::thread::scope(|scope| {
            let mut moved = false;
            let mut workers = Vec::new();
            for chunk in partitions.chunks(per_thread) {
                // No thread to be had: this one does the chunk itself.
                match std::thread::Builder::new().spawn_scoped(scope, move || sync_chunk(chunk)) {
                    Ok(worker) => workers.push(worker),
                    Err(_) => moved |= sync_chunk(chunk),
                }
            }
            workers
                .into_iter()
                .fold(moved, |moved, w| w.join().unwrap_or(false) | moved)
        })
    };
    if short.load(Ordering::Relaxed) {
        std::thread::sleep(SHORTAGE_PAUSE);
    }
    moved
}

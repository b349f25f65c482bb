//! Parked operations, keyed by partition (Kafka's `DelayedOperationPurgatory` as the model).
//!
//! A long-poll fetch that found too little registers one [`Notify`] with every partition it
//! reads, then waits on it. An append to a partition, or a change of its high watermark or
//! leadership, wakes only the fetches registered with that partition. Registering comes before
//! reading, and a wake with nobody waiting yet leaves a permit behind, so no append between a
//! fetch's read and its wait is missed.
//!
//! A partition holds weak references only: a fetch that answered drops its `Notify`, and the
//! dead entry goes at the partition's next wake or when its list has doubled since the last
//! sweep.

use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

/// The smallest list that is swept for dead entries when it grows.
const SWEEP_FLOOR: usize = 16;

/// The operations parked on one partition.
#[derive(Debug, Default)]
pub(crate) struct Waiters(Mutex<List>);

#[derive(Debug, Default)]
struct List {
    waiters: Vec<Weak<Notify>>,
    /// The length at which the list is next swept for entries whose operation is gone.
    sweep_at: usize,
}

impl Waiters {
    fn list(&self) -> std::sync::MutexGuard<'_, List> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `waiter` to be woken by this partition's next change.
    pub(crate) fn watch(&self, waiter: &Arc<Notify>) {
        let mut list = self.list();
        if list.waiters.len() >= list.sweep_at.max(SWEEP_FLOOR) {
            list.waiters.retain(|w| w.strong_count() > 0);
            list.sweep_at = list.waiters.len() * 2;
        }
        list.waiters.push(Arc::downgrade(waiter));
    }

    /// Wakes every operation parked here. Each stays registered until it is gone, since one
    /// fetch may wait for several wakes before it has enough bytes.
    pub(crate) fn wake(&self) {
        let mut list = self.list();
        if list.waiters.is_empty() {
            return;
        }
        list.waiters.retain(|w| match w.upgrade() {
            Some(waiter) => {
                waiter.notify_one();
                true
            }
            None => false,
        });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.list().waiters.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wake_before_the_wait_is_not_lost() {
        let waiters = Waiters::default();
        let fetch = Arc::new(Notify::new());
        waiters.watch(&fetch);
        waiters.wake();
        tokio::time::timeout(std::time::Duration::from_secs(5), fetch.notified())
            .await
            .expect("the permit left by the wake");
    }

    #[test]
    fn operations_that_finished_are_swept_and_live_ones_stay() {
        let waiters = Waiters::default();
        let live = Arc::new(Notify::new());
        waiters.watch(&live);
        for _ in 0..1000 {
            let gone = Arc::new(Notify::new());
            waiters.watch(&gone);
        }
        // Swept each time the list doubles: never more than twice the live ones plus the floor.
        assert!(waiters.len() <= 2 * SWEEP_FLOOR, "{}", waiters.len());
        waiters.wake();
        assert_eq!(waiters.len(), 1);
    }
}

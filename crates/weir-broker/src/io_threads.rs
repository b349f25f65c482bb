//! Disk work off the async workers: `num.io.threads` threads, each with a queue of jobs.
//!
//! Jobs of one key (a connection) always go to the same thread (its lane: a hash of the key), and
//! a job is queued at once, in the caller's poll. So jobs queued in order for one key run in that
//! order: the appends of one connection's pipelined produce requests keep their arrival order,
//! as they did when they ran on the async worker itself. Each produce request is one job. A job's answer comes back
//! through a oneshot channel the async caller awaits; no lock is held across it.
//!
//! The threads end when the broker drops the last handle to them ([`IoThreads::close`] joins
//! them), before the logs close.

use std::hash::{Hash, Hasher};
use std::sync::{mpsc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Debug)]
pub(crate) struct IoThreads {
    lanes: Mutex<Vec<mpsc::Sender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl IoThreads {
    /// Starts `n` threads (at least one).
    pub(crate) fn start(n: usize) -> std::io::Result<IoThreads> {
        let mut lanes = Vec::new();
        let mut threads = Vec::new();
        for i in 0..n.max(1) {
            let (tx, rx) = mpsc::channel::<Job>();
            let thread = std::thread::Builder::new()
                .name(format!("weir-io-{i}"))
                .spawn(move || {
                    for job in rx {
                        // A job that panics answers nothing (its caller sees `None`); the thread
                        // goes on serving its lane.
                        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        if ran.is_err() {
                            tracing::error!(thread = i, "an I/O job panicked");
                        }
                    }
                })?;
            lanes.push(tx);
            threads.push(thread);
        }
        Ok(IoThreads {
            lanes: Mutex::new(lanes),
            threads: Mutex::new(threads),
        })
    }

    /// The lane of `key` (a connection, a partition).
    pub(crate) fn lane_of(&self, key: impl Hash) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let n = self
            .lanes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
            .max(1);
        (h.finish() % n as u64) as usize
    }

    /// Queues `job` on `lane` now, behind the jobs queued there before it; its answer, or
    /// `None` if the threads are closed or the job panicked.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        lane: usize,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> impl std::future::Future<Output = Option<T>> {
        let (tx, rx) = oneshot::channel();
        let queued = {
            let lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
            match lanes.get(lane % lanes.len().max(1)) {
                Some(lane) => lane
                    .send(Box::new(move || {
                        let _ = tx.send(job());
                    }))
                    .is_ok(),
                None => false,
            }
        };
        async move {
            if !queued {
                return None;
            }
            rx.await.ok()
        }
    }

    /// Stops taking jobs and waits for the queued ones to finish.
    pub(crate) fn close(&self) {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Jobs queued on one lane run in the order they were queued, whatever the order their
    /// answers are awaited in.
    #[tokio::test]
    async fn one_lane_runs_its_jobs_in_order() {
        let io = IoThreads::start(3).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let lane = io.lane_of(("t", 7));
        let answers: Vec<_> = (0..100)
            .map(|i| {
                let seen = seen.clone();
                io.run(lane, move || {
                    seen.lock().unwrap().push(i);
                    i * 2
                })
            })
            .collect();
        for (i, a) in answers.into_iter().enumerate().rev() {
            assert_eq!(a.await, Some(i * 2));
        }
        assert_eq!(*seen.lock().unwrap(), (0..100).collect::<Vec<_>>());
        // A job that panics answers nothing, and its lane goes on.
        assert_eq!(io.run(lane, || -> i32 { panic!("boom") }).await, None);
        assert_eq!(io.run(lane, || 2).await, Some(2));
        io.close();
        assert_eq!(io.run(lane, || 1).await, None);
    }
}

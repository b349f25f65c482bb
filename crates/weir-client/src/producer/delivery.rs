//! Record delivery futures, settled per batch: a batch's records share one outcome, written once
//! by the sender, and each record's future reads its own offset from it. One allocation per
//! batch rather than a channel per record (Kafka's producer does the same with its
//! `ProduceRequestResult`); a future polled before its batch settles allocates its wait then.
//! `try_take` may be called again after it answered, and gives the same answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use kafka_protocol::error::ResponseError;
use tokio::sync::Notify;

use super::accumulator::Tp;
use super::RecordMetadata;
use crate::error::{Error, Result};

/// What became of a batch.
#[derive(Debug)]
enum Outcome {
    Written {
        base_offset: i64,
        log_append_time: i64,
    },
    /// A Kafka error code, with the broker's message.
    Refused {
        error: ResponseError,
        message: Option<String>,
    },
    /// Anything else, as its message.
    Failed(String),
    /// The producer stopped before the batch was answered.
    Dropped,
}

#[derive(Debug)]
struct Shared {
    tp: Tp,
    outcome: OnceLock<Outcome>,
    settled: Notify,
}

/// A batch's side: settles its records' futures once. Dropped unsettled (the producer went
/// away), they fail with [`Error::ProducerClosed`].
#[derive(Debug)]
pub(super) struct Settle(Arc<Shared>);

impl Settle {
    pub(super) fn new(tp: Tp) -> Settle {
        Settle(Arc::new(Shared {
            tp,
            outcome: OnceLock::new(),
            settled: Notify::new(),
        }))
    }

    /// The future of the batch's record at `index`, sent with `timestamp`.
    pub(super) fn future(&self, index: i32, timestamp: i64) -> DeliveryFuture {
        DeliveryFuture {
            batch: self.0.clone(),
            index,
            timestamp,
            wait: None,
        }
    }

    /// The batch was written from `base_offset` (-1 when unknown, with acks 0);
    /// `log_append_time` is -1 unless the topic stamps records itself.
    pub(super) fn written(self, base_offset: i64, log_append_time: i64) {
        let _ = self.0.outcome.set(Outcome::Written {
            base_offset,
            log_append_time,
        });
    }

    /// The batch failed for good with `error`.
    pub(super) fn refused(self, error: &Error) {
        let _ = self.0.outcome.set(match error {
            Error::Kafka { error, message } => Outcome::Refused {
                error: *error,
                message: message.clone(),
            },
            other => Outcome::Failed(other.to_string()),
        });
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        let _ = self.0.outcome.set(Outcome::Dropped);
        self.0.settled.notify_waiters();
    }
}

/// Resolves when the record is acknowledged (or has failed).
/// Fails with [`Error::ProducerClosed`] if the producer stopped before answering.
pub struct DeliveryFuture {
    batch: Arc<Shared>,
    index: i32,
    timestamp: i64,
    /// Waiting for the batch to settle, once polled before it did.
    wait: Option<Pin<Box<dyn Future<Output = ()> + Send + Sync>>>,
}

impl std::fmt::Debug for DeliveryFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryFuture")
            .field("tp", &self.batch.tp)
            .field("index", &self.index)
            .field("outcome", &self.batch.outcome.get())
            .finish()
    }
}

impl DeliveryFuture {
    /// The outcome if it is known already, without waiting (a loop sending many records
    /// reaps finished ones this way).
    pub fn try_take(&mut self) -> Option<Result<RecordMetadata>> {
        let (topic, partition) = &self.batch.tp;
        Some(match self.batch.outcome.get()? {
            Outcome::Written {
                base_offset,
                log_append_time,
            } => Ok(RecordMetadata {
                topic: topic.clone(),
                partition: *partition,
                offset: if *base_offset >= 0 {
                    base_offset.wrapping_add(i64::from(self.index))
                } else {
                    -1
                },
                timestamp: if *log_append_time >= 0 {
                    *log_append_time
                } else {
                    self.timestamp
                },
            }),
            Outcome::Refused { error, message } => Err(Error::Kafka {
                error: *error,
                message: message.clone(),
            }),
            Outcome::Failed(message) => Err(Error::Protocol(message.clone())),
            Outcome::Dropped => Err(Error::ProducerClosed),
        })
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            if let Some(outcome) = self.try_take() {
                return Poll::Ready(outcome);
            }
            let batch = self.batch.clone();
            let wait = self.wait.get_or_insert_with(|| {
                Box::pin(async move {
                    loop {
                        // Registered before the outcome is read, so a settle in between wakes it.
                        let settled = batch.settled.notified();
                        tokio::pin!(settled);
                        settled.as_mut().enable();
                        if batch.outcome.get().is_some() {
                            return;
                        }
                        settled.await;
                    }
                })
            });
            match wait.as_mut().poll(cx) {
                Poll::Ready(()) => self.wait = None,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

// A public future, sent across tasks and kept in collections: as the channel it replaced was.
const _: fn() = || {
    fn bounds<T: Send + Sync + Unpin>() {}
    bounds::<DeliveryFuture>();
};

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> Tp {
        ("t".to_string(), 3)
    }

    #[tokio::test]
    async fn each_record_reads_its_own_offset_and_timestamp() {
        let settle = Settle::new(tp());
        let (mut a, b) = (settle.future(0, 10), settle.future(1, 11));
        assert!(a.try_take().is_none());
        let waiting = tokio::spawn(b);
        tokio::task::yield_now().await;
        settle.written(100, -1);
        let a = a.try_take().and_then(|r| r.ok());
        assert_eq!(
            a.map(|m| (m.partition, m.offset, m.timestamp)),
            Some((3, 100, 10))
        );
        let b = waiting.await.ok().and_then(|r| r.ok());
        assert_eq!(b.map(|m| (m.offset, m.timestamp)), Some((101, 11)));
    }

    #[tokio::test]
    async fn log_append_time_and_unknown_offsets() {
        let settle = Settle::new(tp());
        let mut f = settle.future(2, 10);
        settle.written(-1, 77);
        let m = f.try_take().and_then(|r| r.ok());
        assert_eq!(m.map(|m| (m.offset, m.timestamp)), Some((-1, 77)));
    }

    #[tokio::test]
    async fn a_refusal_reaches_every_record() {
        let settle = Settle::new(tp());
        let (a, b) = (settle.future(0, 0), settle.future(1, 0));
        settle.refused(&Error::Kafka {
            error: ResponseError::MessageTooLarge,
            message: Some("too big".into()),
        });
        for f in [a, b] {
            match f.await {
                Err(Error::Kafka { error, message }) => {
                    assert_eq!(error, ResponseError::MessageTooLarge);
                    assert_eq!(message.as_deref(), Some("too big"));
                }
                other => panic!("expected MESSAGE_TOO_LARGE, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_failure_without_a_kafka_code_is_a_protocol_error() {
        let settle = Settle::new(tp());
        let mut f = settle.future(0, 0);
        settle.refused(&Error::Closed("127.0.0.1:9092".into()));
        match f.try_take() {
            Some(Err(Error::Protocol(m))) => assert!(m.contains("127.0.0.1:9092"), "{m}"),
            other => panic!("expected a protocol error, got {other:?}"),
        }
        // Asked again, the same answer.
        assert!(matches!(f.try_take(), Some(Err(Error::Protocol(_)))));
    }

    #[tokio::test]
    async fn a_batch_dropped_unsettled_fails_its_records_as_closed() {
        let settle = Settle::new(tp());
        let f = settle.future(0, 0);
        let waiting = tokio::spawn(f);
        tokio::task::yield_now().await;
        drop(settle);
        assert!(matches!(waiting.await, Ok(Err(Error::ProducerClosed))));
    }
}

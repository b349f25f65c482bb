//! The producer's sender: a background task that drains ready batches from the accumulator,
//! encodes new ones outside its lock, writes one Produce request per leader at once (up to
//! `max_in_flight` requests in flight per broker, pipelined on its connection in write order),
//! and applies the answers as they come back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName, TransactionalId};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::mpsc;

use super::accumulator::{Batch, Refused, ToSend, Tp};
use super::batch::Stamp;
use super::{Acks, Inner};
use crate::error::Error;

/// What the broker said of one batch.
pub(super) enum Outcome {
    Done {
        base_offset: i64,
        log_append_time: i64,
    },
    Retry(Error),
    Fail(Error),
    OutOfOrder(Error),
}

/// Answers of one request: (leader, each batch's outcome).
type Answers = (i32, Vec<(Tp, u64, Outcome)>);

/// Who writes a batch: the producer id and epoch, and its first record's sequence number
/// (none without idempotence).
fn stamp(inner: &Inner, base_sequence: i32) -> Stamp {
    let idempotent = inner.producer_id >= 0;
    Stamp {
        producer_id: inner.producer_id,
        producer_epoch: inner.producer_epoch,
        base_sequence: if idempotent { base_sequence } else { -1 },
        transactional: inner.transactional,
    }
}

/// Fails every record of a batch with `error`, and notes the first failure. Called with the
/// accumulator's lock held (it takes the failure's lock after it), so that the batch leaves the
/// accumulator and its failure is noted at once.
pub(super) fn fail(inner: &Inner, batch: Batch, error: &Error) {
    let message = error.to_string();
    inner
        .failure
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert(message);
    inner.memory.add_permits(batch.permits);
    batch.settle.refused(error);
}

fn complete(inner: &Inner, batch: Batch, base_offset: i64, log_append_time: i64) {
    inner.memory.add_permits(batch.permits);
    batch.settle.written(base_offset, log_append_time);
}

pub(super) async fn sender_loop(inner: Arc<Inner>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Answers>();
    let mut requests: HashMap<i32, usize> = HashMap::new();
    let mut last_refresh: Option<Instant> = None;
    let mut refresh = false;
    loop {
        while let Ok(answers) = rx.try_recv() {
            refresh |= apply(&inner, answers, &mut requests);
        }
        if refresh && last_refresh.is_none_or(|t| t.elapsed() >= inner.limits.retry_backoff) {
            refresh = false;
            last_refresh = Some(Instant::now());
            let cluster = inner.cluster.clone();
            tokio::spawn(async move {
                let _ = cluster.refresh(&[]).await;
            });
        }
        let (ready, wake_at, done) = {
            let mut acc = inner.lock();
            let (ready, wake_at) = acc.drain(Instant::now(), &inner.limits);
            let done = acc.closed && acc.is_empty();
            (ready, wake_at, done)
        };
        if done && requests.values().all(|n| *n == 0) {
            return;
        }
        if !ready.is_empty() {
            send_ready(&inner, ready, &mut requests, &tx).await;
        }
        let nap = wake_at
            .map(|w| w.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(100))
            .max(Duration::from_micros(200));
        tokio::select! {
            Some(answers) = rx.recv() => refresh |= apply(&inner, answers, &mut requests),
            _ = inner.wake.notified() => {}
            _ = tokio::time::sleep(nap) => {}
        }
    }
}

/// Applies one request's answers; returns whether metadata should be refreshed.
fn apply(inner: &Inner, (leader, answers): Answers, requests: &mut HashMap<i32, usize>) -> bool {
    if let Some(n) = requests.get_mut(&leader) {
        *n = n.saturating_sub(1);
    }
    let mut refresh = false;
    let now = Instant::now();
    for (tp, id, outcome) in answers {
        let mut acc = inner.lock();
        let (retriable, out_of_order, error) = match outcome {
            Outcome::Done {
                base_offset,
                log_append_time,
            } => {
                let batch = acc.remove(&tp, id);
                drop(acc);
                if let Some(batch) = batch {
                    complete(inner, batch, base_offset, log_append_time);
                }
                continue;
            }
            Outcome::Retry(e) => (true, false, e),
            Outcome::Fail(e) => (false, false, e),
            Outcome::OutOfOrder(e) => (false, true, e),
        };
        refresh |= retriable;
        match acc.refused(&tp, id, retriable, out_of_order, now, &inner.limits) {
            Refused::Retried => {
                tracing::debug!(topic = %tp.0, partition = tp.1, error = %error, "retrying a batch");
            }
            Refused::GaveUp(batch) => {
                // Noted before the lock goes: a flush that finds the producer empty must also
                // find the failure (a transaction may not commit over it).
                fail(inner, batch, &error);
                drop(acc);
            }
        }
    }
    refresh
}

/// Encodes the new batches, groups them by leader, and writes one request per leader.
async fn send_ready(
    inner: &Arc<Inner>,
    ready: Vec<ToSend>,
    requests: &mut HashMap<i32, usize>,
    tx: &mpsc::UnboundedSender<Answers>,
) {
    let mut by_leader: HashMap<i32, Vec<(Tp, u64, Bytes)>> = HashMap::new();
    for item in ready {
        let (tp, id, bytes) = match item {
            ToSend::Again { tp, id, bytes } => (tp, id, bytes),
            ToSend::New {
                tp,
                id,
                base_sequence,
                records,
            } => match records.seal(stamp(inner, base_sequence), inner.config.compression) {
                Ok(bytes) => {
                    inner.config.partitioner.on_new_batch(&tp.0);
                    inner.lock().encoded(&tp, id, bytes.clone());
                    (tp, id, bytes)
                }
                Err(e) => {
                    tracing::error!(error = %e, "dropping a batch that cannot be encoded");
                    let mut acc = inner.lock();
                    if let Some(batch) = acc.remove_unwritten(&tp, id) {
                        fail(inner, batch, &e);
                    }
                    drop(acc);
                    continue;
                }
            },
        };
        match inner.cluster.leader(&tp.0, tp.1) {
            Some(leader) => by_leader.entry(leader).or_default().push((tp, id, bytes)),
            None => {
                let error = Error::UnknownTopic(format!("{}-{}", tp.0, tp.1));
                let _ = tx.send((-1, vec![(tp, id, Outcome::Retry(error))]));
            }
        }
    }
    for (leader, batches) in by_leader {
        // A request carries one batch per partition (its answer names partitions, not
        // batches): a partition's second batch goes in the next request, and so on.
        let mut rounds: Vec<Vec<(Tp, u64, Bytes)>> = Vec::new();
        let mut seen: HashMap<Tp, usize> = HashMap::new();
        for batch in batches {
            let round = seen.entry(batch.0.clone()).or_default();
            if rounds.len() <= *round {
                rounds.push(Vec::new());
            }
            rounds[*round].push(batch);
            *round += 1;
        }
        let mut reached = true;
        for round in rounds {
            if !reached {
                // The leader could not be reached a moment ago: these wait for the next turn.
                let error = Error::Protocol(format!("broker {leader} unreachable"));
                let answers = round
                    .iter()
                    .map(|(tp, id, _)| {
                        (
                            tp.clone(),
                            *id,
                            Outcome::Retry(Error::Protocol(error.to_string())),
                        )
                    })
                    .collect();
                let _ = tx.send((-1, answers));
                continue;
            }
            let busy = requests.get(&leader).copied().unwrap_or(0) >= inner.limits.max_in_flight;
            if busy {
                let mut acc = inner.lock();
                for (tp, id, _) in &round {
                    acc.unsend(tp, *id);
                }
                continue;
            }
            *requests.entry(leader).or_default() += 1;
            reached = write_request(inner, leader, round, tx).await;
        }
    }
}

fn produce_request(inner: &Inner, batches: &[(Tp, u64, Bytes)]) -> ProduceRequest {
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for ((topic, partition), _, bytes) in batches {
        let data = PartitionProduceData::default()
            .with_index(*partition)
            .with_records(Some(bytes.clone()));
        match topics.iter_mut().find(|t| &*t.name.0 == topic.as_str()) {
            Some(t) => t.partition_data.push(data),
            None => topics.push(
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partition_data(vec![data]),
            ),
        }
    }
    ProduceRequest::default()
        .with_transactional_id(
            inner
                .config
                .transactional_id
                .as_ref()
                .map(|id| TransactionalId(StrBytes::from_string(id.clone()))),
        )
        .with_acks(inner.config.acks.code())
        .with_timeout_ms(inner.config.client.request_timeout.as_millis() as i32)
        .with_topic_data(topics)
}

/// Writes one request to `leader` now (so requests reach a connection in the order they were
/// made), and answers through `tx` once its response is in. Returns whether the leader was
/// reached.
async fn write_request(
    inner: &Arc<Inner>,
    leader: i32,
    batches: Vec<(Tp, u64, Bytes)>,
    tx: &mpsc::UnboundedSender<Answers>,
) -> bool {
    let all = |batches: &[(Tp, u64, Bytes)], outcome: &dyn Fn() -> Outcome| {
        batches
            .iter()
            .map(|(tp, id, _)| (tp.clone(), *id, outcome()))
            .collect::<Vec<_>>()
    };
    let retry = |e: &Error| {
        let m = e.to_string();
        move || Outcome::Retry(Error::Protocol(m.clone()))
    };
    let conn = match inner.cluster.broker(leader).await {
        Ok(c) => c,
        Err(e) => {
            let _ = tx.send((leader, all(&batches, &retry(&e))));
            return false;
        }
    };
    let request = produce_request(inner, &batches);
    if inner.config.acks == Acks::None {
        let sent = match conn.version_for::<ProduceRequest>(9) {
            Ok(v) => conn.send_only(&request, v).await,
            Err(e) => Err(e),
        };
        let answers = match sent {
            Ok(()) => all(&batches, &|| Outcome::Done {
                base_offset: -1,
                log_append_time: -1,
            }),
            Err(e) => all(&batches, &retry(&e)),
        };
        let _ = tx.send((leader, answers));
        return true;
    }
    let answer = match conn.start_produce(&request, 9).await {
        Ok(answer) => answer,
        Err(e) => {
            let _ = tx.send((leader, all(&batches, &retry(&e))));
            return false;
        }
    };
    let tx = tx.clone();
    tokio::spawn(async move {
        let answers = match answer.await {
            Ok(response) => outcomes(&batches, &response),
            Err(e) => all(&batches, &retry(&e)),
        };
        let _ = tx.send((leader, answers));
    });
    true
}

fn outcomes(batches: &[(Tp, u64, Bytes)], response: &ProduceResponse) -> Vec<(Tp, u64, Outcome)> {
    let mut out = Vec::with_capacity(batches.len());
    for ((topic, partition), id, _) in batches {
        let found = response
            .responses
            .iter()
            .find(|t| &*t.name.0 == topic.as_str())
            .and_then(|t| t.partition_responses.iter().find(|p| p.index == *partition));
        let outcome = match found {
            None => Outcome::Retry(Error::Protocol(
                "the broker did not answer for a partition".into(),
            )),
            Some(p) if p.error_code == 0 => Outcome::Done {
                base_offset: p.base_offset,
                log_append_time: p.log_append_time_ms,
            },
            Some(p) => {
                let error = Error::from_code(
                    p.error_code,
                    p.error_message.as_ref().map(|m| m.to_string()),
                );
                let code = ResponseError::try_from_code(p.error_code);
                if code == Some(ResponseError::DuplicateSequenceNumber) {
                    // Written before (Kafka's brokers answer a retry so): done, offsets unknown.
                    Outcome::Done {
                        base_offset: -1,
                        log_append_time: -1,
                    }
                } else if code == Some(ResponseError::OutOfOrderSequenceNumber) {
                    Outcome::OutOfOrder(error)
                } else if error.is_retriable() {
                    Outcome::Retry(error)
                } else {
                    Outcome::Fail(error)
                }
            }
        };
        out.push(((topic.clone(), *partition), *id, outcome));
    }
    out
}

//! The producer: per-partition batching with `linger` and `batch_size`, compression, `acks`,
//! idempotence (on by default: KIP-98 producer ids and sequence numbers, so retries never
//! duplicate), bounded memory with back-pressure, and a delivery future per record.
//!
//! `send` places a record in its partition's open batch and returns at once (waiting only for
//! buffer memory). A background task drains batches that are full, lingered long enough, or
//! flushed, sends one Produce request per leader, and resolves the records' futures. Each
//! partition has at most one batch in flight, so retries keep the order within a partition.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    InitProducerIdRequest, ProduceRequest, ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::sync::{oneshot, Notify, Semaphore};

use crate::cluster::{ClientConfig, Cluster};
use crate::error::{Error, Result};
use crate::partitioner::{DefaultPartitioner, Partitioner};

/// How many replicas must have a record before it is acknowledged.
/// Kafka's `acks`: `0`, `1` or `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// No answer is awaited: a record may be lost without anyone knowing.
    None,
    /// The leader has written it.
    Leader,
    /// Every in-sync replica has it.
    All,
}

impl Acks {
    fn code(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// Producer settings; [`ProducerConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Connection settings, shared with the consumer and the admin client.
    pub client: ClientConfig,
    /// What a record's acknowledgement waits for. Default [`Acks::All`] (Kafka's `acks`).
    pub acks: Acks,
    /// How long a batch waits for more records before it is sent.
    /// Default 5 ms (Kafka's `linger.ms`).
    pub linger: Duration,
    /// A batch is sent once it holds this many bytes.
    /// Default 16 KiB (Kafka's `batch.size`). A record counts as its key, value and headers
    /// plus 64 bytes.
    pub batch_size: usize,
    /// Codec for record batches. Default [`Compression::None`] (Kafka's `compression.type`).
    pub compression: Compression,
    /// Idempotent delivery (requires `acks = All`).
    /// Default `true` (Kafka's `enable.idempotence`); with other acks, [`Producer::new`]
    /// fails with [`Error::Config`].
    pub idempotence: bool,
    /// Bytes of records waiting to be sent; `send` waits when they are used up.
    /// Default 32 MiB (Kafka's `buffer.memory`); a larger record fails with
    /// [`Error::Config`].
    pub buffer_memory: usize,
    /// Give up on a record this long after `send`.
    /// Checked when a batch is retried, from the time its batch was opened. Default 120 s
    /// (Kafka's `delivery.timeout.ms`).
    pub delivery_timeout: Duration,
    /// Picks the partition of records that name none. Default [`DefaultPartitioner`]
    /// (Kafka's `partitioner.class`).
    pub partitioner: Arc<dyn Partitioner>,
    /// Kafka's `transactional.id`: set, the producer is transactional (use
    /// [`crate::TransactionalProducer`]). Default none.
    pub transactional_id: Option<String>,
    /// Kafka's `transaction.timeout.ms`: the coordinator aborts a transaction open longer.
    /// Default 60 s.
    pub transaction_timeout: Duration,
}

impl ProducerConfig {
    /// The defaults (see each field) for `bootstrap`, a comma-separated `host:port` list.
    pub fn new(bootstrap: &str) -> ProducerConfig {
        ProducerConfig {
            client: ClientConfig::new(bootstrap),
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 16 * 1024,
            compression: Compression::None,
            idempotence: true,
            buffer_memory: 32 * 1024 * 1024,
            delivery_timeout: Duration::from_secs(120),
            partitioner: Arc::new(DefaultPartitioner::default()),
            transactional_id: None,
            transaction_timeout: Duration::from_secs(60),
        }
    }
}

/// A record to send.
#[derive(Debug, Clone, Default)]
pub struct ProducerRecord {
    /// The topic to send to.
    pub topic: String,
    /// Chosen by the partitioner when `None`.
    pub partition: Option<i32>,
    /// The record's key; the default partitioner sends equal keys to the same partition.
    pub key: Option<Bytes>,
    /// The record's value; `None` is a null value (a tombstone in a compacted topic).
    pub value: Option<Bytes>,
    /// Headers as (name, value), in order; a value may be null.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Milliseconds since the epoch; now when `None`.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record with this value, no key, and the rest unset.
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> ProducerRecord {
        ProducerRecord {
            topic: topic.into(),
            value: Some(value.into()),
            ..Default::default()
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> ProducerRecord {
        self.key = Some(key.into());
        self
    }

    /// Sends the record to this partition instead of the partitioner's choice.
    pub fn with_partition(mut self, partition: i32) -> ProducerRecord {
        self.partition = Some(partition);
        self
    }

    /// Appends a header; a `None` value is null.
    pub fn with_header(mut self, name: impl Into<String>, value: Option<Bytes>) -> ProducerRecord {
        self.headers.push((name.into(), value));
        self
    }

    fn size(&self) -> usize {
        64 + self.key.as_ref().map_or(0, |k| k.len())
            + self.value.as_ref().map_or(0, |v| v.len())
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, |v| v.len()))
                .sum::<usize>()
    }
}

/// Where a record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The topic written to.
    pub topic: String,
    /// The partition written to.
    pub partition: i32,
    /// -1 with `acks = None`.
    pub offset: i64,
    /// Milliseconds since the epoch: the broker's log-append time when the topic uses it,
    /// else the record's own timestamp.
    pub timestamp: i64,
}

/// Resolves when the record is acknowledged (or has failed).
/// Fails with [`Error::ProducerClosed`] if the producer stopped before answering.
#[derive(Debug)]
pub struct DeliveryFuture {
    rx: oneshot::Receiver<Result<RecordMetadata>>,
}

impl std::future::Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::ProducerClosed)))
    }
}

struct Pending {
    record: ProducerRecord,
    timestamp: i64,
    tx: oneshot::Sender<Result<RecordMetadata>>,
    permits: u32,
}

/// A batch being filled, or sent and awaiting its answer.
struct Batch {
    records: Vec<Pending>,
    bytes: usize,
    created: Instant,
    /// Encoded once, so that a retry resends the same sequence numbers.
    encoded: Option<Bytes>,
    attempts: u32,
}

#[derive(Default)]
struct PartitionQueue {
    batches: VecDeque<Batch>,
    in_flight: bool,
    next_sequence: i32,
}

#[derive(Default)]
struct Accumulator {
    queues: HashMap<(String, i32), PartitionQueue>,
    flush_requested: bool,
    closed: bool,
}

struct Inner {
    config: ProducerConfig,
    cluster: Arc<Cluster>,
    acc: Mutex<Accumulator>,
    wake: Notify,
    memory: Semaphore,
    producer_id: i64,
    producer_epoch: i16,
    /// Batches are written inside transactions (`transactional.id`).
    transactional: bool,
    /// The first failure of a batch since it was last taken (a transaction cannot commit
    /// over one).
    failure: Mutex<Option<String>>,
}

/// An async producer; cheap to clone.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("producer_id", &self.inner.producer_id)
            .finish()
    }
}

impl Producer {
    /// Connects to the cluster (and, with idempotence, obtains a producer id).
    /// Fails with [`Error::Config`] when idempotence is on without [`Acks::All`], or with a
    /// `transactional_id` (a [`crate::TransactionalProducer`] is made for those).
    pub async fn new(config: ProducerConfig) -> Result<Producer> {
        if config.transactional_id.is_some() {
            return Err(Error::Config(
                "a transactional producer is made with TransactionalProducer::new".into(),
            ));
        }
        if config.idempotence && config.acks != Acks::All {
            return Err(Error::Config("idempotence needs acks=all".into()));
        }
        let cluster = Cluster::connect(config.client.clone()).await?;
        let (producer_id, producer_epoch) = if config.idempotence {
            let conn = cluster.any().await?;
            let (resp, _) = conn
                .request(
                    &InitProducerIdRequest::default()
                        .with_transactional_id(None)
                        .with_transaction_timeout_ms(60_000)
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1),
                    4,
                )
                .await?;
            crate::error::check(resp.error_code)?;
            (resp.producer_id.0, resp.producer_epoch)
        } else {
            (-1, -1)
        };
        Ok(Self::start(config, cluster, producer_id, producer_epoch))
    }

    /// A producer with an id already obtained (a transactional one's, from its coordinator).
    pub(crate) fn start(
        config: ProducerConfig,
        cluster: Arc<Cluster>,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Producer {
        let memory = Semaphore::new(config.buffer_memory.min(Semaphore::MAX_PERMITS));
        let transactional = config.transactional_id.is_some();
        let inner = Arc::new(Inner {
            config,
            cluster,
            acc: Mutex::new(Accumulator::default()),
            wake: Notify::new(),
            memory,
            producer_id,
            producer_epoch,
            transactional,
            failure: Mutex::new(None),
        });
        tokio::spawn(sender_loop(inner.clone()));
        Producer { inner }
    }

    /// The partition a record goes to: its own, or the partitioner's choice.
    pub(crate) async fn partition_for(&self, record: &ProducerRecord) -> Result<i32> {
        let inner = &self.inner;
        let topic = inner.cluster.topic_or_refresh(&record.topic).await?;
        let partitions = topic.partitions.len() as i32;
        if partitions == 0 {
            return Err(Error::UnknownTopic(record.topic.clone()));
        }
        match record.partition {
            Some(p) if (0..partitions).contains(&p) => Ok(p),
            Some(p) => Err(Error::UnknownTopic(format!("{}-{p}", record.topic))),
            None => Ok(inner.config.partitioner.partition(
                &record.topic,
                record.key.as_deref(),
                partitions,
            )),
        }
    }

    /// The first failure of a batch since the last call, if any.
    pub(crate) fn take_failure(&self) -> Option<String> {
        self.inner
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Queues a record; resolves its future when acknowledged. Waits while the buffer is full.
    /// Fails with [`Error::UnknownTopic`] for an unknown topic or partition, with
    /// [`Error::Config`] for a record larger than `buffer_memory`, and with
    /// [`Error::ProducerClosed`] after [`Producer::close`].
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        let inner = &self.inner;
        let partition = self.partition_for(&record).await?;
        let size = record.size();
        if size > inner.config.buffer_memory {
            return Err(Error::Config(format!(
                "a record of {size} bytes exceeds buffer_memory"
            )));
        }
        let permits = size as u32;
        inner
            .memory
            .acquire_many(permits)
            .await
            .map_err(|_| Error::ProducerClosed)?
            .forget();
        let (tx, rx) = oneshot::channel();
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let full = {
            let mut acc = inner.acc.lock().unwrap_or_else(|p| p.into_inner());
            if acc.closed {
                inner.memory.add_permits(permits as usize);
                return Err(Error::ProducerClosed);
            }
            let queue = acc
                .queues
                .entry((record.topic.clone(), partition))
                .or_default();
            let need_new = queue
                .batches
                .back()
                .is_none_or(|b| b.encoded.is_some() || b.bytes + size > inner.config.batch_size);
            if need_new {
                queue.batches.push_back(Batch {
                    records: Vec::new(),
                    bytes: 0,
                    created: Instant::now(),
                    encoded: None,
                    attempts: 0,
                });
            }
            let batch = queue.batches.back_mut().expect("pushed above");
            batch.bytes += size;
            batch.records.push(Pending {
                record,
                timestamp,
                tx,
                permits,
            });
            batch.bytes >= inner.config.batch_size
        };
        if full || inner.config.linger.is_zero() {
            inner.wake.notify_one();
        }
        Ok(DeliveryFuture { rx })
    }

    /// Sends every queued record now and waits until all are acknowledged or failed.
    pub async fn flush(&self) {
        loop {
            {
                let mut acc = self.inner.acc.lock().unwrap_or_else(|p| p.into_inner());
                if acc.queues.values().all(|q| q.batches.is_empty()) {
                    acc.flush_requested = false;
                    return;
                }
                acc.flush_requested = true;
            }
            self.inner.wake.notify_one();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Flushes, then stops the producer.
    pub async fn close(&self) {
        self.flush().await;
        self.inner
            .acc
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .closed = true;
        self.inner.wake.notify_one();
    }

    /// The producer id the broker assigned (KIP-98); -1 without idempotence.
    pub fn producer_id(&self) -> i64 {
        self.inner.producer_id
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn encode_batch(inner: &Inner, batch: &Batch, base_sequence: i32) -> Result<Bytes> {
    let idempotent = inner.producer_id >= 0;
    let records: Vec<Record> = batch
        .records
        .iter()
        .enumerate()
        .map(|(i, p)| Record {
            transactional: inner.transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: inner.producer_id,
            producer_epoch: inner.producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // Non-idempotent batches carry base sequence -1; the encoder needs offset - sequence constant.
            sequence: if idempotent {
                base_sequence.wrapping_add(i as i32)
            } else {
                i as i32 - 1
            },
            timestamp: p.timestamp,
            key: p.record.key.clone(),
            value: p.record.value.clone(),
            headers: p
                .record
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                .collect(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: inner.config.compression,
        },
    )
    .map_err(|e| Error::Protocol(format!("cannot encode a batch: {e}")))?;
    Ok(buf.freeze())
}

/// A partition and the encoded batch to send to it.
type ReadyBatch = ((String, i32), Bytes);

/// Takes the first batch of every partition that is ready and not already in flight.
fn drain_ready(inner: &Inner) -> (Vec<ReadyBatch>, bool) {
    let mut acc = inner.acc.lock().unwrap_or_else(|p| p.into_inner());
    let flush = acc.flush_requested || acc.closed;
    let mut out = Vec::new();
    for ((topic, partition), queue) in acc.queues.iter_mut() {
        if queue.in_flight {
            continue;
        }
        let ready_count = queue.batches.len();
        let Some(batch) = queue.batches.front_mut() else {
            continue;
        };
        let ready = batch.encoded.is_some()
            || flush
            || ready_count > 1
            || batch.bytes >= inner.config.batch_size
            || batch.created.elapsed() >= inner.config.linger;
        if !ready {
            continue;
        }
        if batch.encoded.is_none() {
            let seq = queue.next_sequence;
            match encode_batch(inner, batch, seq) {
                Ok(bytes) => {
                    batch.encoded = Some(bytes);
                    queue.next_sequence = seq.wrapping_add(batch.records.len() as i32) & i32::MAX;
                    inner.config.partitioner.on_new_batch(topic);
                }
                Err(e) => {
                    tracing::error!(error = %e, "dropping a batch that cannot be encoded");
                    let batch = queue.batches.pop_front().expect("front exists");
                    fail(inner, batch, Error::Protocol(e.to_string()));
                    continue;
                }
            }
        }
        queue.in_flight = true;
        out.push((
            (topic.clone(), *partition),
            batch.encoded.clone().expect("encoded above"),
        ));
    }
    let closed = acc.closed && acc.queues.values().all(|q| q.batches.is_empty());
    (out, closed)
}

fn fail(inner: &Inner, batch: Batch, error: Error) {
    let message = error.to_string();
    inner
        .failure
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(|| message.clone());
    for p in batch.records {
        inner.memory.add_permits(p.permits as usize);
        let _ = p.tx.send(Err(match &error {
            Error::Kafka { error, message } => Error::Kafka {
                error: *error,
                message: message.clone(),
            },
            _ => Error::Protocol(message.clone()),
        }));
    }
}

/// The outcome for one partition's batch.
enum Outcome {
    Done {
        base_offset: i64,
        log_append_time: i64,
    },
    Retry(Error),
    Fail(Error),
}

async fn sender_loop(inner: Arc<Inner>) {
    loop {
        let (ready, closed) = drain_ready(&inner);
        if closed {
            return;
        }
        if ready.is_empty() {
            let _ = tokio::time::timeout(
                inner.config.linger.max(Duration::from_millis(1)),
                inner.wake.notified(),
            )
            .await;
            continue;
        }
        // One request per leader, all leaders at once.
        let mut by_leader: HashMap<i32, Vec<ReadyBatch>> = HashMap::new();
        let mut outcomes: Vec<((String, i32), Outcome)> = Vec::new();
        for (tp, bytes) in ready {
            match inner.cluster.leader(&tp.0, tp.1) {
                Some(leader) => by_leader.entry(leader).or_default().push((tp, bytes)),
                None => outcomes.push((
                    tp.clone(),
                    Outcome::Retry(Error::UnknownTopic(format!("{}-{}", tp.0, tp.1))),
                )),
            }
        }
        let requests = by_leader
            .into_iter()
            .map(|(leader, batches)| send_to(inner.clone(), leader, batches));
        for result in futures_join_all(requests).await {
            outcomes.extend(result);
        }
        let mut refresh = false;
        for ((topic, partition), outcome) in outcomes {
            let mut acc = inner.acc.lock().unwrap_or_else(|p| p.into_inner());
            let Some(queue) = acc.queues.get_mut(&(topic.clone(), partition)) else {
                continue;
            };
            queue.in_flight = false;
            match outcome {
                Outcome::Done {
                    base_offset,
                    log_append_time,
                } => {
                    if let Some(batch) = queue.batches.pop_front() {
                        for (i, p) in batch.records.into_iter().enumerate() {
                            inner.memory.add_permits(p.permits as usize);
                            let offset = if base_offset >= 0 {
                                base_offset + i as i64
                            } else {
                                -1
                            };
                            let timestamp = if log_append_time >= 0 {
                                log_append_time
                            } else {
                                p.timestamp
                            };
                            let _ = p.tx.send(Ok(RecordMetadata {
                                topic: topic.clone(),
                                partition,
                                offset,
                                timestamp,
                            }));
                        }
                    }
                }
                Outcome::Retry(e) => {
                    refresh = true;
                    let give_up = queue.batches.front_mut().is_some_and(|b| {
                        b.attempts += 1;
                        b.attempts > inner.config.client.retries
                            || b.created.elapsed() > inner.config.delivery_timeout
                    });
                    if give_up {
                        if let Some(batch) = queue.batches.pop_front() {
                            fail(&inner, batch, e);
                        }
                    } else {
                        tracing::debug!(%topic, partition, error = %e, "retrying a batch");
                    }
                }
                Outcome::Fail(e) => {
                    if let Some(batch) = queue.batches.pop_front() {
                        fail(&inner, batch, e);
                    }
                }
            }
        }
        if refresh {
            tokio::time::sleep(inner.config.client.retry_backoff).await;
            let _ = inner.cluster.refresh(&[]).await;
        }
    }
}

/// Awaits every future (sequential polling is enough: they run on the runtime via spawn).
async fn futures_join_all<F, T>(futures: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

async fn send_to(
    inner: Arc<Inner>,
    leader: i32,
    batches: Vec<((String, i32), Bytes)>,
) -> Vec<((String, i32), Outcome)> {
    let retry_all = |e: &Error, batches: &[ReadyBatch]| {
        batches
            .iter()
            .map(|(tp, _)| (tp.clone(), Outcome::Retry(Error::Protocol(e.to_string()))))
            .collect()
    };
    let conn = match inner.cluster.broker(leader).await {
        Ok(c) => c,
        Err(e) => return retry_all(&e, &batches),
    };
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for ((topic, partition), bytes) in &batches {
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
    let request = ProduceRequest::default()
        .with_transactional_id(
            inner
                .config
                .transactional_id
                .as_ref()
                .map(|id| TransactionalId(StrBytes::from_string(id.clone()))),
        )
        .with_acks(inner.config.acks.code())
        .with_timeout_ms(inner.config.client.request_timeout.as_millis() as i32)
        .with_topic_data(topics);
    if inner.config.acks == Acks::None {
        let version = match conn.version_for::<ProduceRequest>(9) {
            Ok(v) => v,
            Err(e) => {
                return batches
                    .iter()
                    .map(|(tp, _)| (tp.clone(), Outcome::Fail(Error::Protocol(e.to_string()))))
                    .collect()
            }
        };
        return match conn.send_only(&request, version).await {
            Ok(()) => batches
                .iter()
                .map(|(tp, _)| {
                    (
                        tp.clone(),
                        Outcome::Done {
                            base_offset: -1,
                            log_append_time: -1,
                        },
                    )
                })
                .collect(),
            Err(e) => retry_all(&e, &batches),
        };
    }
    let response = match conn.request(&request, 9).await {
        Ok((r, _)) => r,
        Err(e) => return retry_all(&e, &batches),
    };
    let mut out = Vec::with_capacity(batches.len());
    for ((topic, partition), _) in &batches {
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
                let retriable = error.is_retriable()
                    && !matches!(
                        ResponseError::try_from_code(p.error_code),
                        Some(ResponseError::OutOfOrderSequenceNumber)
                    );
                if retriable {
                    Outcome::Retry(error)
                } else {
                    Outcome::Fail(error)
                }
            }
        };
        out.push(((topic.clone(), *partition), outcome));
    }
    out
}

//! The producer: per-partition batching with `linger` and `batch_size`, compression, `acks`,
//! idempotence (on by default: KIP-98 producer ids and sequence numbers, so retries never
//! duplicate), bounded memory with back-pressure, and a delivery future per record.
//!
//! `send` places a record in its partition's open batch and returns at once (waiting only for
//! buffer memory). A background task ([`sender`]) drains batches that are full, lingered long
//! enough, or flushed, writes one Produce request per leader without waiting for the answers
//! of earlier ones (up to `max_in_flight` per broker and per partition, as Kafka's
//! `max.in.flight.requests.per.connection`), and resolves the records' futures as answers come
//! back. Sequence numbers keep a partition's batches in order at the broker, and a failed batch
//! is retried before any behind it ([`accumulator`]).

mod accumulator;
mod batch;
mod delivery;
pub(crate) mod frame;
mod sender;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{InitProducerIdRequest, ProducerId};
use kafka_protocol::records::Compression;
use tokio::sync::{Notify, Semaphore};

use self::accumulator::{Accumulator, Limits};
pub use self::delivery::DeliveryFuture;
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
    /// Connection settings, shared with the consumer and the admin client. Its `retries` is
    /// unbounded here by default (Kafka's producer default): `delivery_timeout` bounds them.
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
    /// Produce requests in flight per broker, and batches per partition, before the producer
    /// waits for an answer. Default 5 (Kafka's `max.in.flight.requests.per.connection`); at
    /// most 5 with idempotence (the broker remembers a producer's last five batches).
    pub max_in_flight: usize,
}

impl ProducerConfig {
    /// The defaults (see each field) for `bootstrap`, a comma-separated `host:port` list.
    pub fn new(bootstrap: &str) -> ProducerConfig {
        let mut client = ClientConfig::new(bootstrap);
        // As Kafka's producer: a retriable failure is retried until `delivery_timeout`.
        client.retries = u32::MAX;
        ProducerConfig {
            client,
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
            max_in_flight: 5,
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

struct Inner {
    config: ProducerConfig,
    limits: Limits,
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

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Accumulator> {
        self.acc.lock().unwrap_or_else(|p| p.into_inner())
    }
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
        if config.idempotence && !(1..=5).contains(&config.max_in_flight) {
            return Err(Error::Config(
                "idempotence needs max_in_flight between 1 and 5".into(),
            ));
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
        let limits = Limits {
            batch_size: config.batch_size,
            linger: config.linger,
            max_in_flight: config.max_in_flight.max(1),
            retries: config.client.retries,
            retry_backoff: config.client.retry_backoff,
            delivery_timeout: config.delivery_timeout,
        };
        let inner = Arc::new(Inner {
            limits,
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
        tokio::spawn(sender::sender_loop(inner.clone()));
        Producer { inner }
    }

    /// The partition a record goes to: its own, or the partitioner's choice.
    pub(crate) async fn partition_for(&self, record: &ProducerRecord) -> Result<i32> {
        let inner = &self.inner;
        let partitions = match inner.cluster.partition_count(&record.topic) {
            Some(n) => n,
            None => inner
                .cluster
                .topic_or_refresh(&record.topic)
                .await?
                .partitions
                .len(),
        } as i32;
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
        match inner.memory.try_acquire_many(permits) {
            Ok(p) => p.forget(),
            Err(tokio::sync::TryAcquireError::Closed) => return Err(Error::ProducerClosed),
            Err(tokio::sync::TryAcquireError::NoPermits) => inner
                .memory
                .acquire_many(permits)
                .await
                .map_err(|_| Error::ProducerClosed)?
                .forget(),
        }
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let look = {
            let mut acc = inner.lock();
            if acc.closed {
                inner.memory.add_permits(permits as usize);
                return Err(Error::ProducerClosed);
            }
            acc.append(&record, partition, timestamp, size, &inner.limits)
        };
        let Some((future, look)) = look else {
            inner.memory.add_permits(permits as usize);
            return Err(Error::Protocol(format!(
                "no batch for {}-{partition}",
                record.topic
            )));
        };
        if look || inner.config.linger.is_zero() {
            inner.wake.notify_one();
        }
        Ok(future)
    }

    /// Sends every queued record now and waits until all are acknowledged or failed.
    pub async fn flush(&self) {
        loop {
            {
                let mut acc = self.inner.lock();
                if acc.is_empty() {
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
        self.inner.lock().closed = true;
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

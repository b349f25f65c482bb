//! The transaction coordinator's driver: transactional ids and their state, stored in
//! `__transaction_state`.
//!
//! [`coordinator`] is the pure state machine; this module drives it, as `group/mod.rs` drives
//! the group coordinator. A transactional id belongs to partition
//! `abs(javaHash(id)) % transaction.state.log.num.partitions` of `__transaction_state`, and the
//! leader of that partition coordinates it. The first request for an id in a leadership epoch
//! loads the partition (on its I/O lane); a state the machine plans is written there (acks=all)
//! before it takes effect and before the client is answered; markers of a prepared
//! transaction are then written to every partition it touched ([`markers`]), and the
//! transaction completes. A tick aborts transactions past `transaction.timeout.ms`.

pub(crate) mod coordinator;
pub(crate) mod markers;
pub(crate) mod records;
#[cfg(test)]
mod sim;
pub(crate) mod verify;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use weir_meta::{CreateTopic, MetaError};
use weir_types::{LeaderEpoch, ProducerEpoch, ProducerId};

use self::coordinator::{Followup, Plan, Transition, TxnConfig, TxnCoordinator};
use self::records::TopicPartition;
use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::replica_manager::Partition;

/// The internal topic of transactional ids' states.
pub(crate) const TXN_TOPIC: &str = "__transaction_state";
/// Kafka's `transaction.state.log.segment.bytes`.
const TXN_SEGMENT_BYTES: &str = "104857600";
/// How long a state's write may wait for `__transaction_state` to replicate it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Inner {
    coordinator: TxnCoordinator,
    /// The leader epoch of each partition when its ids were loaded.
    loaded_epochs: HashMap<i32, LeaderEpoch>,
    /// Partitions whose load is queued.
    loading: HashSet<i32>,
}

#[derive(Debug)]
pub(crate) struct TxnManager {
    inner: Mutex<Inner>,
    partitions: i32,
    /// Woken whenever a written state takes effect: a request refused only because its id is
    /// busy waits for this (briefly) instead of sending the client into a retry backoff.
    changed: tokio::sync::Notify,
}

/// How long a request for a busy id (a write or the markers of the last transaction still
/// under way) waits for it before answering CONCURRENT_TRANSACTIONS.
const BUSY_WAIT: Duration = Duration::from_millis(1000);

fn record(key: Bytes, value: Bytes, now_ms: i64) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: now_ms,
        key: Some(key),
        value: Some(value),
        headers: Default::default(),
    }
}

impl TxnManager {
    pub(crate) fn new(config: &BrokerConfig) -> TxnManager {
        TxnManager {
            inner: Mutex::new(Inner {
                coordinator: TxnCoordinator::new(TxnConfig {
                    max_timeout_ms: config.transaction_max_timeout_ms,
                }),
                loaded_epochs: HashMap::new(),
                loading: HashSet::new(),
            }),
            partitions: config.transaction_state_log_num_partitions,
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Plans with `make` and carries the plan out; a plan refused only because the id is busy
    /// (CONCURRENT_TRANSACTIONS with nothing to write) is made again once a written state takes
    /// effect, for up to [`BUSY_WAIT`]. Kafka answers at once and the client backs off; waiting
    /// here saves the client its retry backoff between transactions.
    async fn plan_and_execute<R: Send + 'static>(
        &self,
        broker: &Arc<Broker>,
        mut make: impl FnMut(&mut TxnCoordinator, i64) -> Plan<R>,
    ) -> Result<R, ResponseError> {
        let deadline = tokio::time::Instant::now() + BUSY_WAIT;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let plan = make(&mut self.lock().coordinator, weir_log::now_ms());
            let busy = plan.write.is_none()
                && plan.reply.as_ref().err() == Some(&ResponseError::ConcurrentTransactions);
            if !busy || tokio::time::Instant::now() >= deadline {
                return self.execute(broker, plan).await;
            }
            let _ = tokio::time::timeout_at(deadline, changed).await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The partition of `__transaction_state` that holds `id`.
    pub(crate) fn partition_of(&self, id: &str) -> i32 {
        crate::group::records::partition_for(id, self.partitions)
    }

    /// Creates `__transaction_state` when it does not exist yet (FindCoordinator does, as
    /// Kafka's brokers do).
    pub(crate) async fn create_topic(&self, broker: &Arc<Broker>) -> Result<(), ResponseError> {
        if broker.image().topic(TXN_TOPIC).is_none() {
            let brokers = broker.image().live_brokers().count().max(1) as i16;
            let replication_factor = broker
                .config
                .transaction_state_log_replication_factor
                .min(brokers);
            let min_isr = broker
                .config
                .transaction_state_log_min_isr
                .min(replication_factor);
            let create = CreateTopic {
                name: TXN_TOPIC.to_string(),
                num_partitions: self.partitions,
                replication_factor,
                assignments: Vec::new(),
                configs: vec![
                    ("cleanup.policy".into(), "compact".into()),
                    ("segment.bytes".into(), TXN_SEGMENT_BYTES.into()),
                    ("compression.type".into(), "uncompressed".into()),
                    ("min.insync.replicas".into(), min_isr.to_string()),
                ],
            };
            match broker.create_topic(&create, false).await {
                Ok(_) | Err(MetaError::TopicAlreadyExists(_)) => {}
                Err(e) => {
                    tracing::error!(error = %e, "cannot create {TXN_TOPIC}");
                    return Err(ResponseError::CoordinatorNotAvailable);
                }
            }
        }
        broker.catch_up_to_image().await;
        Ok(())
    }

    fn lane(broker: &Broker, index: i32) -> usize {
        broker.io.lane_of((TXN_TOPIC, index))
    }

    /// Ready to serve `id`: this broker leads its partition, loaded in the current epoch (a
    /// load runs first when not). The coordinator epoch (the partition's leader epoch).
    pub(crate) async fn ready_for(
        &self,
        broker: &Arc<Broker>,
        id: &str,
    ) -> Result<LeaderEpoch, ResponseError> {
        let index = self.partition_of(id);
        let Some(partition) = broker.replicas.get(TXN_TOPIC, index) else {
            let named = broker
                .image()
                .topic(TXN_TOPIC)
                .and_then(|t| t.partitions.get(&index))
                .is_some_and(|p| p.leader == Some(broker.node_id()));
            return Err(if named {
                ResponseError::CoordinatorLoadInProgress
            } else {
                ResponseError::NotCoordinator
            });
        };
        if !partition.is_leader(broker.node_id()) {
            return Err(ResponseError::NotCoordinator);
        }
        let epoch = partition.leader_epoch();
        {
            let mut inner = self.lock();
            if inner.loaded_epochs.get(&index) == Some(&epoch) {
                return Ok(epoch);
            }
            if !inner.loading.insert(index) {
                return Err(ResponseError::CoordinatorLoadInProgress);
            }
        }
        self.load(broker, partition).await?;
        Ok(epoch)
    }

    /// Reads one partition's states back (on its I/O lane) and puts them in place of what
    /// memory held of it; then finishes the transactions it finds prepared.
    async fn load(
        &self,
        broker: &Arc<Broker>,
        partition: Arc<Partition>,
    ) -> Result<(), ResponseError> {
        let b = broker.clone();
        let index = partition.index;
        let job = broker.io.run(Self::lane(broker, index), move || {
            let epoch = partition.leader_epoch();
            let read = markers::read_states(&partition);
            let txns = &b.txns;
            let mut inner = txns.lock();
            inner.loading.remove(&index);
            let restored = read?;
            let count = txns.partitions;
            let of = |id: &str| crate::group::records::partition_for(id, count) == index;
            inner.coordinator.unload(of);
            let n = restored.len();
            for (id, meta) in restored {
                inner.coordinator.restore(&id, meta, epoch.0);
            }
            inner.loaded_epochs.insert(index, epoch);
            let owed = inner.coordinator.resume(of);
            tracing::info!(partition = index, %epoch, records = n, "transactional ids of a {TXN_TOPIC} partition loaded");
            Ok(owed)
        });
        // The rest runs in a task of its own: a request that goes away midway (a produce's
        // check past its deadline, a client that hangs up) must not leave the markers owed
        // unsent.
        let broker = broker.clone();
        let finish = tokio::spawn(async move {
            let owed = match job.await {
                Some(result) => result?,
                None => {
                    broker.txns.lock().loading.remove(&index);
                    return Err(ResponseError::CoordinatorNotAvailable);
                }
            };
            for m in owed {
                markers::spawn_send(broker.clone(), m);
            }
            Ok(())
        });
        finish
            .await
            .unwrap_or(Err(ResponseError::CoordinatorNotAvailable))
    }

    /// Carries out a plan: writes its state (if any), and answers once it is written. The
    /// write and what follows it run in a task of their own, so a client that goes away
    /// midway does not leave the id busy.
    async fn execute<R: Send + 'static>(
        &self,
        broker: &Arc<Broker>,
        plan: Plan<R>,
    ) -> Result<R, ResponseError> {
        let Some(transition) = plan.write else {
            return plan.reply;
        };
        let written = tokio::spawn(write_state(broker.clone(), transition));
        match written.await {
            Ok(Ok(())) => plan.reply,
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ResponseError::CoordinatorNotAvailable),
        }
    }

    pub(crate) async fn init_producer_id(
        &self,
        broker: &Arc<Broker>,
        id: &str,
        timeout_ms: i32,
        expected: Option<(ProducerId, ProducerEpoch)>,
    ) -> Result<(ProducerId, ProducerEpoch), ResponseError> {
        let epoch = self.ready_for(broker, id).await?;
        let fresh = if self.lock().coordinator.needs_producer_id(id) {
            let allocated = broker.allocate_producer_id().await;
            Some(allocated.map_err(|_| ResponseError::CoordinatorNotAvailable)?)
        } else {
            None
        };
        let fresh = fresh.map(|p| ProducerId(p.0));
        self.plan_and_execute(broker, |c, now| {
            c.init_producer_id(id, timeout_ms, expected, fresh, epoch.0, now)
        })
        .await
    }

    pub(crate) async fn add_partitions(
        &self,
        broker: &Arc<Broker>,
        id: &str,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        partitions: &[TopicPartition],
    ) -> Result<(), ResponseError> {
        self.ready_for(broker, id).await?;
        self.plan_and_execute(broker, |c, now| {
            c.add_partitions(id, producer_id, epoch, partitions, now)
        })
        .await
    }

    pub(crate) async fn verify_partitions(
        &self,
        broker: &Arc<Broker>,
        id: &str,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        partitions: &[TopicPartition],
    ) -> Result<Vec<Result<(), ResponseError>>, ResponseError> {
        self.ready_for(broker, id).await?;
        Ok(self
            .lock()
            .coordinator
            .verify_partitions(id, producer_id, epoch, partitions))
    }

    pub(crate) async fn end_txn(
        &self,
        broker: &Arc<Broker>,
        id: &str,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        commit: bool,
    ) -> Result<(), ResponseError> {
        self.ready_for(broker, id).await?;
        self.plan_and_execute(broker, |c, now| {
            c.end_txn(id, producer_id, epoch, commit, now)
        })
        .await
    }

    /// One transactional id's state, if this broker holds it.
    pub(crate) fn describe(&self, id: &str) -> Option<records::TxnMeta> {
        self.lock().coordinator.txns.get(id).map(|t| t.meta.clone())
    }

    /// Every transactional id this broker coordinates, with its state (for the admin APIs).
    pub(crate) fn snapshot(&self) -> Vec<(String, records::TxnMeta)> {
        self.lock()
            .coordinator
            .txns
            .iter()
            .map(|(id, t)| (id.clone(), t.meta.clone()))
            .collect()
    }

    /// Aborts the transactions past their timeout (the server ticks it).
    pub(crate) fn tick(&self, broker: &Arc<Broker>) {
        let now = weir_log::now_ms();
        let due = {
            let mut inner = self.lock();
            // Only ids of partitions still led in the epoch they were loaded in.
            let led: HashSet<i32> = inner
                .loaded_epochs
                .iter()
                .filter(|(index, epoch)| {
                    broker.replicas.get(TXN_TOPIC, **index).is_some_and(|p| {
                        p.is_leader(broker.node_id()) && p.leader_epoch() == **epoch
                    })
                })
                .map(|(i, _)| *i)
                .collect();
            let gone: Vec<i32> = inner
                .loaded_epochs
                .keys()
                .filter(|i| !led.contains(i))
                .copied()
                .collect();
            for index in gone {
                inner.loaded_epochs.remove(&index);
                let count = self.partitions;
                inner
                    .coordinator
                    .unload(|id| crate::group::records::partition_for(id, count) == index);
            }
            inner.coordinator.tick(now)
        };
        // Partitions led and not loaded in their epoch are loaded without waiting for a
        // client: a transaction prepared before a failover still gets its markers.
        let unloaded: Vec<Arc<Partition>> = {
            let inner = self.lock();
            broker
                .replicas
                .all()
                .into_iter()
                .filter(|p| p.topic == TXN_TOPIC && p.is_leader(broker.node_id()))
                .filter(|p| {
                    inner.loaded_epochs.get(&p.index) != Some(&p.leader_epoch())
                        && !inner.loading.contains(&p.index)
                })
                .collect()
        };
        for p in unloaded {
            let index = p.index;
            if !self.lock().loading.insert(index) {
                continue;
            }
            let b = broker.clone();
            tokio::spawn(async move {
                if let Err(e) = b.txns.load(&b, p).await {
                    tracing::debug!(partition = index, error = ?e, "loading transactional ids failed");
                }
            });
        }
        for t in due {
            tracing::info!(transactional_id = %t.transactional_id, "aborting a transaction past its timeout");
            tokio::spawn(write_state(broker.clone(), t));
        }
    }
}

/// Writes a state to `__transaction_state` and waits for it to be replicated; then reports it
/// to the state machine and starts what follows (markers, or a completion).
async fn write_state(broker: Arc<Broker>, transition: Transition) -> Result<(), ResponseError> {
    let id = transition.transactional_id.clone();
    let result = append_state(&broker, &transition).await;
    let follow = broker
        .txns
        .lock()
        .coordinator
        .written(&transition, result.is_ok());
    broker.txns.changed.notify_waiters();
    if let Err(e) = &result {
        tracing::warn!(transactional_id = %id, error = ?e, "a transaction state was not written");
        if matches!(
            transition.to.state,
            records::TxnState::CompleteCommit | records::TxnState::CompleteAbort
        ) {
            // No client waits for a completion: it is tried again while this broker still
            // coordinates the id, or the id would stay prepared (and busy) until a failover.
            tokio::spawn(retry_completion(broker.clone(), transition));
        }
    }
    follow_up(broker, follow);
    result
}

/// Plans a failed completion again after a pause and writes it, until one is written or the id
/// moved on (another state, or no longer loaded here).
async fn retry_completion(broker: Arc<Broker>, failed: Transition) {
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let again = broker.txns.lock().coordinator.markers_written(
            &failed.transactional_id,
            failed.to.producer_id,
            failed.to.producer_epoch,
            weir_log::now_ms(),
        );
        let Some(t) = again else {
            return;
        };
        let result = append_state(&broker, &t).await;
        let follow = broker.txns.lock().coordinator.written(&t, result.is_ok());
        broker.txns.changed.notify_waiters();
        if result.is_ok() {
            follow_up(broker, follow);
            return;
        }
    }
}

/// Starts what follows a written state.
fn follow_up(broker: Arc<Broker>, follow: Followup) {
    if let Some(m) = follow.markers {
        markers::spawn_send(broker.clone(), m);
    }
    if let Some(t) = follow.write {
        tokio::spawn(write_state(broker, t));
    }
}

async fn append_state(broker: &Arc<Broker>, t: &Transition) -> Result<(), ResponseError> {
    let index = broker.txns.partition_of(&t.transactional_id);
    let partition = broker
        .replicas
        .get(TXN_TOPIC, index)
        .ok_or(ResponseError::NotCoordinator)?;
    let now = weir_log::now_ms();
    let rec = record(
        records::key(&t.transactional_id),
        records::value(&t.to),
        now,
    );
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [&rec],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|_| ResponseError::UnknownServerError)?;
    let mut bytes = buf.to_vec();
    let me = broker.node_id();
    let p = partition.clone();
    let appended = broker
        .io
        .run(TxnManager::lane(broker, index), move || {
            p.append_as_leader(me, &mut bytes, now)
        })
        .await
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let (info, epoch) = match appended {
        Ok(Some(done)) => done,
        Ok(None) => return Err(ResponseError::NotCoordinator),
        Err(e) => {
            tracing::error!(error = %e, "cannot write to {TXN_TOPIC}");
            return Err(ResponseError::CoordinatorNotAvailable);
        }
    };
    let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
    match partition
        .wait_replicated(me, epoch, info.last_offset, deadline)
        .await
    {
        0 => Ok(()),
        c if c == ResponseError::NotLeaderOrFollower.code() => Err(ResponseError::NotCoordinator),
        _ => Err(ResponseError::CoordinatorNotAvailable),
    }
}

//! The transactional producer (KIP-98, KIP-447): records sent between
//! [`TransactionalProducer::begin_transaction`] and
//! [`TransactionalProducer::commit_transaction`] become visible to `read_committed`
//! consumers together, or (after [`TransactionalProducer::abort_transaction`]) never.
//!
//! It talks to the transaction coordinator of its `transactional.id` as Kafka's clients do:
//! InitProducerId (which fences any earlier instance with the same id), AddPartitionsToTxn
//! before the first record to each partition, AddOffsetsToTxn and TxnOffsetCommit for
//! consumed offsets, and EndTxn. Requests the coordinator answers with a retriable error
//! (CONCURRENT_TRANSACTIONS, COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR, ...) are retried
//! until `request_timeout`. A fencing error (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH,
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED, ...) is fatal, as in Kafka's clients: every later
//! call returns it, and a new producer must be made.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, EndTxnRequest, GroupId,
    InitProducerIdRequest, ProducerId, TopicName, TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::Cluster;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::producer::{DeliveryFuture, Producer, ProducerConfig, ProducerRecord};

const KEY_TYPE_TRANSACTION: i8 = 1;

/// A consumer's place in its group, sent with offsets so that the group coordinator checks the
/// member is current (KIP-447). From [`crate::Consumer::group_metadata`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadata {
    /// The group id.
    pub group_id: String,
    /// The generation the member's assignment is from (-1: none).
    pub generation: i32,
    /// The member id ("" when not a member).
    pub member_id: String,
}

#[derive(Debug, Default)]
struct State {
    in_transaction: bool,
    /// Partitions added to the open transaction.
    added: BTreeSet<(String, i32)>,
    /// A fatal error: the producer is fenced or refused for good.
    fatal: Option<String>,
}

/// A transactional producer (Kafka's `transactional.id`); see the module docs.
#[derive(Debug)]
pub struct TransactionalProducer {
    producer: Producer,
    cluster: Arc<Cluster>,
    id: String,
    producer_id: i64,
    epoch: i16,
    state: Mutex<State>,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Whether an error ends the producer (Kafka's fatal errors for a transactional producer).
fn is_fatal(e: &Error) -> bool {
    matches!(
        e,
        Error::Kafka {
            error: ResponseError::ProducerFenced
                | ResponseError::InvalidProducerEpoch
                | ResponseError::TransactionalIdAuthorizationFailed
                | ResponseError::InvalidProducerIdMapping
                | ResponseError::TransactionCoordinatorFenced
                | ResponseError::InvalidTransactionTimeout
                | ResponseError::ClusterAuthorizationFailed,
            ..
        }
    )
}

/// Whether a coordinator's answer is worth retrying after a pause (a new coordinator lookup
/// for NOT_COORDINATOR and the like).
fn retry_later(e: &Error) -> bool {
    e.is_retriable()
        || matches!(
            e,
            Error::Kafka {
                error: ResponseError::ConcurrentTransactions
                    | ResponseError::CoordinatorLoadInProgress
                    | ResponseError::CoordinatorNotAvailable
                    | ResponseError::NotCoordinator,
                ..
            }
        )
}

impl TransactionalProducer {
    /// Connects, finds the coordinator of `config.transactional_id` and obtains a producer id
    /// and epoch there (Kafka's `initTransactions`), fencing earlier instances with the id.
    pub async fn new(config: ProducerConfig) -> Result<TransactionalProducer> {
        let Some(id) = config.transactional_id.clone() else {
            return Err(Error::Config(
                "a transactional producer needs a transactional_id".into(),
            ));
        };
        if id.is_empty() {
            return Err(Error::Config(
                "the transactional_id must not be empty".into(),
            ));
        }
        let mut config = config;
        config.idempotence = true;
        config.acks = crate::producer::Acks::All;
        let cluster = Cluster::connect(config.client.clone()).await?;
        let timeout_ms = config.transaction_timeout.as_millis().min(i32::MAX as u128) as i32;
        let deadline = Instant::now() + config.client.request_timeout;
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(s(&id))))
            .with_transaction_timeout_ms(timeout_ms)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let (producer_id, epoch) = with_coordinator(&cluster, &id, deadline, |conn| {
            let request = request.clone();
            async move {
                let (r, _) = conn.request(&request, 4).await?;
                crate::error::check(r.error_code)?;
                Ok((r.producer_id.0, r.producer_epoch))
            }
        })
        .await?;
        let producer = Producer::start(config, cluster.clone(), producer_id, epoch);
        Ok(TransactionalProducer {
            producer,
            cluster,
            id,
            producer_id,
            epoch,
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_usable(&self) -> Result<()> {
        match &self.state().fatal {
            Some(why) => Err(Error::Config(format!(
                "the transactional producer is unusable: {why}"
            ))),
            None => Ok(()),
        }
    }

    /// Records `e` as fatal when it is, and returns it.
    fn note(&self, e: Error) -> Error {
        if is_fatal(&e) {
            self.state().fatal.get_or_insert_with(|| e.to_string());
        }
        e
    }

    /// The producer id and epoch the coordinator gave this instance.
    pub fn producer_id_and_epoch(&self) -> (i64, i16) {
        (self.producer_id, self.epoch)
    }

    /// Opens a transaction (locally, as in Kafka's clients; the coordinator learns of it with
    /// the first partition).
    pub fn begin_transaction(&self) -> Result<()> {
        self.check_usable()?;
        let mut state = self.state();
        if state.in_transaction {
            return Err(Error::Config("a transaction is already open".into()));
        }
        state.in_transaction = true;
        state.added.clear();
        Ok(())
    }

    /// Sends a record inside the open transaction; its partition is added to the transaction
    /// first if new to it.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        self.check_usable()?;
        if !self.state().in_transaction {
            return Err(Error::Config("send outside a transaction".into()));
        }
        let partition = self.producer.partition_for(&record).await?;
        let tp = (record.topic.clone(), partition);
        if !self.state().added.contains(&tp) {
            self.add_partitions(std::slice::from_ref(&tp))
                .await
                .map_err(|e| self.note(e))?;
            self.state().added.insert(tp);
        }
        self.producer.send(record.with_partition(partition)).await
    }

    async fn add_partitions(&self, partitions: &[(String, i32)]) -> Result<()> {
        let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in partitions {
            topics.entry(t.as_str()).or_default().push(*p);
        }
        let request = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(s(&self.id)))
            .with_v3_and_below_producer_id(ProducerId(self.producer_id))
            .with_v3_and_below_producer_epoch(self.epoch)
            .with_v3_and_below_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        AddPartitionsToTxnTopic::default()
                            .with_name(TopicName(s(t)))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        self.coordinated(|conn| {
            let request = request.clone();
            async move {
                let (r, _) = conn.request(&request, 3).await?;
                for t in r.results_by_topic_v3_and_below {
                    for p in t.results_by_partition {
                        crate::error::check(p.partition_error_code)?;
                    }
                }
                Ok(())
            }
        })
        .await
    }

    /// Commits consumed offsets inside the open transaction (Kafka's
    /// `sendOffsetsToTransaction`): they take effect only if the transaction commits.
    /// `offsets` are next offsets to read, by topic and partition.
    pub async fn send_offsets_to_transaction(
        &self,
        offsets: &BTreeMap<(String, i32), i64>,
        group: &GroupMetadata,
    ) -> Result<()> {
        self.check_usable()?;
        if !self.state().in_transaction {
            return Err(Error::Config("offsets sent outside a transaction".into()));
        }
        let add = AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(s(&self.id)))
            .with_producer_id(ProducerId(self.producer_id))
            .with_producer_epoch(self.epoch)
            .with_group_id(GroupId(s(&group.group_id)));
        self.coordinated(|conn| {
            let add = add.clone();
            async move {
                let (r, _) = conn.request(&add, 3).await?;
                crate::error::check(r.error_code)
            }
        })
        .await
        .map_err(|e| self.note(e))?;
        let mut topics: BTreeMap<&str, Vec<TxnOffsetCommitRequestPartition>> = BTreeMap::new();
        for ((t, p), o) in offsets {
            topics.entry(t.as_str()).or_default().push(
                TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(*p)
                    .with_committed_offset(*o)
                    .with_committed_leader_epoch(-1),
            );
        }
        let commit = TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(s(&self.id)))
            .with_group_id(GroupId(s(&group.group_id)))
            .with_producer_id(ProducerId(self.producer_id))
            .with_producer_epoch(self.epoch)
            .with_generation_id(group.generation)
            .with_member_id(s(&group.member_id))
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        TxnOffsetCommitRequestTopic::default()
                            .with_name(TopicName(s(t)))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let deadline = Instant::now() + self.cluster.config.request_timeout;
        let group_id = group.group_id.clone();
        retry(deadline, || {
            let commit = commit.clone();
            let group_id = group_id.clone();
            async move {
                let conn = self.cluster.group_coordinator(&group_id).await?;
                let (r, _) = conn.request(&commit, 3).await?;
                for t in r.topics {
                    for p in t.partitions {
                        crate::error::check(p.error_code)?;
                    }
                }
                Ok(())
            }
        })
        .await
        .map_err(|e| self.note(e))
    }

    /// Sends every record, then commits the transaction. Fails (and the transaction must be
    /// aborted) when a record of it could not be written.
    pub async fn commit_transaction(&self) -> Result<()> {
        self.end(true).await
    }

    /// Drops what was sent (unsent records are still sent, then aborted) and aborts the
    /// transaction.
    pub async fn abort_transaction(&self) -> Result<()> {
        self.end(false).await
    }

    async fn end(&self, commit: bool) -> Result<()> {
        self.check_usable()?;
        if !self.state().in_transaction {
            return Err(Error::Config("no transaction is open".into()));
        }
        self.producer.flush().await;
        let failed = self.producer.take_failure();
        if commit {
            if let Some(why) = failed {
                return Err(Error::Config(format!(
                    "a record of the transaction failed ({why}): abort it"
                )));
            }
        }
        if !self.state().added.is_empty() {
            let request = EndTxnRequest::default()
                .with_transactional_id(TransactionalId(s(&self.id)))
                .with_producer_id(ProducerId(self.producer_id))
                .with_producer_epoch(self.epoch)
                .with_committed(commit);
            self.coordinated(|conn| {
                let request = request.clone();
                async move {
                    let (r, _) = conn.request(&request, 3).await?;
                    crate::error::check(r.error_code)
                }
            })
            .await
            .map_err(|e| self.note(e))?;
        }
        let mut state = self.state();
        state.in_transaction = false;
        state.added.clear();
        Ok(())
    }

    /// Runs a request at this id's coordinator, retrying retriable answers.
    async fn coordinated<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn(Arc<Connection>) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let deadline = Instant::now() + self.cluster.config.request_timeout;
        with_coordinator(&self.cluster, &self.id, deadline, f).await
    }

    /// Flushes and stops the producer (an open transaction is left to the coordinator, which
    /// aborts it at its timeout or when a new instance starts).
    pub async fn close(&self) {
        self.producer.close().await;
    }
}

/// Runs `f` at the coordinator of transactional id `id`, looking the coordinator up again and
/// retrying on retriable answers until `deadline`.
async fn with_coordinator<T, F, Fut>(
    cluster: &Arc<Cluster>,
    id: &str,
    deadline: Instant,
    f: F,
) -> Result<T>
where
    F: Fn(Arc<Connection>) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    retry(deadline, || async {
        let conn = cluster.coordinator(KEY_TYPE_TRANSACTION, id).await?;
        f(conn).await
    })
    .await
}

/// Retries `f` while its error is retriable, with a short pause, until `deadline`.
async fn retry<T, F, Fut>(deadline: Instant, f: F) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut pause = std::time::Duration::from_millis(10);
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if retry_later(&e) && Instant::now() + pause < deadline => {
                tracing::debug!(error = %e, "retrying a transaction request");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_millis(500));
            }
            Err(e) => return Err(e),
        }
    }
}

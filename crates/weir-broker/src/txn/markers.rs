//! Transaction markers: the coordinator's side (sending a prepared transaction's markers to the
//! leaders of its partitions, WriteTxnMarkers between brokers) and the partition's side
//! (appending one, acks=all), and reading `__transaction_state` back at a load.
//!
//! A marker is retried until its partition's leader wrote it, or the partition is gone, or this
//! broker stops coordinating the id in the epoch that planned it (its successor sends the
//! markers again when it loads the id in PrepareCommit or PrepareAbort). Markers written to a
//! `__consumer_offsets` partition also settle the group coordinator's pending transactional
//! offsets (KIP-447).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{TopicName, WriteTxnMarkersRequest};
use weir_log::ControlType;
use weir_types::{BrokerId, LeaderEpoch, ProducerEpoch, ProducerId};

use super::coordinator::Markers;
use super::records::{self, TopicPartition, TxnMeta};
use super::TXN_TOPIC;
use crate::broker::Broker;
use crate::replica_manager::Partition;

/// How long one marker waits for its partition's followers.
const MARKER_REPLICATION_TIMEOUT: Duration = Duration::from_secs(5);

/// One transaction's marker for partitions of one leader.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MarkerAsk {
    pub(crate) producer_id: ProducerId,
    pub(crate) producer_epoch: ProducerEpoch,
    pub(crate) commit: bool,
    pub(crate) coordinator_epoch: i32,
}

/// Reads every record of one `__transaction_state` partition, in log order. A value this
/// broker cannot read is skipped, never taken for a tombstone.
pub(super) fn read_states(
    partition: &Partition,
) -> Result<Vec<(String, Option<TxnMeta>)>, ResponseError> {
    let mut out = Vec::new();
    let log = partition.log();
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    while offset < end {
        let info = log.read(offset, 8 << 20, end, true).map_err(|e| {
            tracing::error!(error = %e, partition = partition.index, "cannot read {TXN_TOPIC}");
            ResponseError::CoordinatorNotAvailable
        })?;
        if info.slices.is_empty() {
            break;
        }
        let before = offset;
        for slice in &info.slices {
            let bytes = Bytes::from(
                slice
                    .read_to_vec()
                    .map_err(|_| ResponseError::CoordinatorNotAvailable)?,
            );
            for (at, header) in weir_log::batch::batches_in(&bytes) {
                offset = offset.max(header.end());
                if header.is_control() {
                    continue;
                }
                let batch = bytes.slice(at..at + header.total_size());
                let limit = weir_log::decompress::DEFAULT_MAX_DECOMPRESSED_BYTES;
                let Ok(set) = weir_log::decompress::decode_batch(batch, limit) else {
                    tracing::error!(
                        partition = partition.index,
                        offset = header.base_offset,
                        "skipping an undecodable batch in {TXN_TOPIC}"
                    );
                    continue;
                };
                for r in set.records {
                    let Some(id) = r.key.and_then(records::decode_key) else {
                        continue;
                    };
                    match r.value.map(records::decode_value) {
                        Some(None) => tracing::warn!(
                            partition = partition.index,
                            offset = r.offset,
                            "skipping an unreadable value in {TXN_TOPIC}"
                        ),
                        value => out.push((id, value.flatten())),
                    }
                }
            }
        }
        if offset == before {
            break;
        }
    }
    Ok(out)
}

pub(super) fn spawn_send(broker: Arc<Broker>, markers: Markers) {
    tokio::spawn(send(broker, markers));
}

/// Whether this broker still coordinates the markers' id in the epoch that planned them.
fn still_coordinating(broker: &Broker, m: &Markers) -> bool {
    let index = broker.txns.partition_of(&m.transactional_id);
    let epoch = LeaderEpoch(m.coordinator_epoch);
    broker
        .replicas
        .get(TXN_TOPIC, index)
        .is_some_and(|p| p.is_leader(broker.node_id()) && p.leader_epoch() == epoch)
}

/// Sends a prepared transaction's markers until every partition has one, then completes it.
async fn send(broker: Arc<Broker>, m: Markers) {
    let ask = MarkerAsk {
        producer_id: m.producer_id,
        producer_epoch: m.producer_epoch,
        commit: m.commit,
        coordinator_epoch: m.coordinator_epoch,
    };
    let mut remaining: BTreeSet<TopicPartition> = m.partitions.iter().cloned().collect();
    let mut backoff = Duration::from_millis(20);
    loop {
        if !still_coordinating(&broker, &m) {
            tracing::info!(transactional_id = %m.transactional_id, "markers left to the next coordinator");
            return;
        }
        let image = broker.image();
        let mut by_leader: BTreeMap<BrokerId, Vec<TopicPartition>> = BTreeMap::new();
        for tp in remaining.clone() {
            match image.topic(&tp.0).and_then(|t| t.partitions.get(&tp.1)) {
                // The topic was deleted: nothing is left to mark.
                None => {
                    remaining.remove(&tp);
                }
                Some(p) => {
                    if let Some(leader) = p.leader {
                        by_leader.entry(leader).or_default().push(tp);
                    }
                }
            }
        }
        for (leader, tps) in by_leader {
            let results = if leader == broker.node_id() {
                write_local(&broker, ask, &tps).await
            } else {
                write_remote(&broker, leader, ask, &tps).await
            };
            for (tp, code) in results {
                let fenced = code == ResponseError::InvalidProducerEpoch.code()
                    || code == ResponseError::ProducerFenced.code()
                    || code == ResponseError::TransactionCoordinatorFenced.code();
                if code == 0 || fenced {
                    if fenced {
                        // The partition knows a newer epoch of this producer: a later
                        // coordinator decision superseded this one there.
                        tracing::warn!(topic = %tp.0, partition = tp.1, "a marker was refused as fenced");
                    }
                    remaining.remove(&tp);
                } else {
                    tracing::debug!(topic = %tp.0, partition = tp.1, code, "a marker will be retried");
                }
            }
        }
        if remaining.is_empty() {
            break;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
    let now = weir_log::now_ms();
    let done = broker.txns.lock().coordinator.markers_written(
        &m.transactional_id,
        m.producer_id,
        m.producer_epoch,
        now,
    );
    if let Some(t) = done {
        let _ = super::write_state(broker, t).await;
    }
}

/// Writes markers to partitions this broker leads (a WriteTxnMarkers request's, or the local
/// coordinator's) and waits for their followers: an error code per partition.
pub(crate) async fn write_local(
    broker: &Arc<Broker>,
    ask: MarkerAsk,
    partitions: &[TopicPartition],
) -> Vec<(TopicPartition, i16)> {
    let mut out = Vec::with_capacity(partitions.len());
    let mut waits = Vec::new();
    for tp in partitions {
        let Some(partition) = broker.replicas.get(&tp.0, tp.1) else {
            out.push((tp.clone(), broker.not_hosted_code(&tp.0, tp.1)));
            continue;
        };
        let me = broker.node_id();
        let p = partition.clone();
        let lane = broker.io.lane_of((tp.0.as_str(), tp.1));
        let now = weir_log::now_ms();
        let kind = if ask.commit {
            ControlType::Commit
        } else {
            ControlType::Abort
        };
        let appended = broker
            .io
            .run(lane, move || {
                p.append_marker_as_leader(
                    me,
                    ask.producer_id,
                    ask.producer_epoch,
                    ask.coordinator_epoch,
                    kind,
                    now,
                )
            })
            .await;
        match appended {
            Some(Ok(Some((info, epoch)))) => waits.push((tp.clone(), partition, epoch, info)),
            Some(Ok(None)) => out.push((tp.clone(), ResponseError::NotLeaderOrFollower.code())),
            Some(Err(e)) => out.push((tp.clone(), crate::errors::log_error_code(&e))),
            None => out.push((tp.clone(), ResponseError::KafkaStorageError.code())),
        }
    }
    for (tp, partition, epoch, info) in waits {
        let deadline = tokio::time::Instant::now() + MARKER_REPLICATION_TIMEOUT;
        let code = partition
            .wait_replicated(broker.node_id(), epoch, info.last_offset, deadline)
            .await;
        if code == 0 && tp.0 == crate::group::OFFSETS_TOPIC {
            broker
                .groups
                .complete_txn(tp.1, ask.producer_id, ask.commit, info.base_offset.0);
        }
        out.push((tp, code));
    }
    out
}

/// Sends markers to another leader with WriteTxnMarkers; every partition fails alike when the
/// request does.
async fn write_remote(
    broker: &Arc<Broker>,
    leader: BrokerId,
    ask: MarkerAsk,
    partitions: &[TopicPartition],
) -> Vec<(TopicPartition, i16)> {
    let failed = |code: i16| partitions.iter().map(|tp| (tp.clone(), code)).collect();
    let marker = WritableTxnMarker::default()
        .with_producer_id(kafka_protocol::messages::ProducerId(ask.producer_id.0))
        .with_producer_epoch(ask.producer_epoch.0)
        .with_transaction_result(ask.commit)
        .with_coordinator_epoch(ask.coordinator_epoch)
        .with_topics(
            by_topic(partitions)
                .into_iter()
                .map(|(t, ps)| {
                    WritableTxnMarkerTopic::default()
                        .with_name(TopicName(crate::handlers::str_bytes(t.to_string())))
                        .with_partition_indexes(ps)
                })
                .collect(),
        );
    let request = WriteTxnMarkersRequest::default().with_markers(vec![marker]);
    let response = match broker
        .txn_channels
        .request(broker, leader, &request, 1)
        .await
    {
        Ok(r) => r,
        Err(e) => return failed(e.code()),
    };
    let mut codes: HashMap<TopicPartition, i16> = HashMap::new();
    for m in response.markers {
        for t in m.topics {
            for p in t.partitions {
                codes.insert((t.name.0.to_string(), p.partition_index), p.error_code);
            }
        }
    }
    partitions
        .iter()
        .map(|tp| {
            let code = codes
                .get(tp)
                .copied()
                .unwrap_or(ResponseError::UnknownServerError.code());
            (tp.clone(), code)
        })
        .collect()
}

/// Connections to other brokers' inter-broker listeners, for WriteTxnMarkers and a leader's
/// checks of transactions (multiplexed: one per broker). The lock is never held while connecting.
#[derive(Debug, Default)]
pub(crate) struct Channels {
    open: std::sync::Mutex<HashMap<BrokerId, Arc<weir_client::Connection>>>,
}

/// Partitions grouped by topic, as requests list them.
pub(crate) fn by_topic(partitions: &[TopicPartition]) -> BTreeMap<&str, Vec<i32>> {
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        topics.entry(t.as_str()).or_default().push(*p);
    }
    topics
}

impl Channels {
    /// Sends `request` to broker `to` over the inter-broker listener and waits for its answer;
    /// a connection that fails is dropped, to be opened afresh next time. Any failure to get
    /// an answer is NETWORK_EXCEPTION.
    pub(crate) async fn request<R: kafka_protocol::protocol::Request>(
        &self,
        broker: &Broker,
        to: BrokerId,
        request: &R,
        version: i16,
    ) -> Result<R::Response, ResponseError>
    where
        R::Response: Send + 'static,
    {
        let connection = self.get(broker, to).await.map_err(|e| {
            tracing::debug!(broker = to.0, error = %e, "cannot reach a broker");
            ResponseError::NetworkException
        })?;
        match connection.request(request, version).await {
            Ok((r, _)) => Ok(r),
            Err(e) => {
                self.forget(to);
                tracing::debug!(broker = to.0, error = %e, "an inter-broker request failed");
                Err(ResponseError::NetworkException)
            }
        }
    }

    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<BrokerId, Arc<weir_client::Connection>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) async fn get(
        &self,
        broker: &Broker,
        leader: BrokerId,
    ) -> Result<Arc<weir_client::Connection>, String> {
        if let Some(c) = self.open().get(&leader).filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let image = broker.image();
        let info = image
            .brokers
            .get(&leader)
            .ok_or_else(|| format!("broker {leader} is not registered"))?;
        let listener = broker.inter_broker_listener();
        let (host, port) = info
            .endpoint(listener)
            .ok_or_else(|| format!("broker {leader} has no listener {listener}"))?;
        let addr = format!("{host}:{port}");
        let client_id = format!("weir-txn-markers-{}", broker.node_id());
        let c = weir_client::Connection::connect_with(
            &addr,
            &client_id,
            Duration::from_secs(10),
            &broker.inter_broker_security,
        )
        .await
        .map_err(|e| e.to_string())?;
        let c = Arc::new(c);
        self.open().insert(leader, c.clone());
        Ok(c)
    }

    pub(super) fn forget(&self, leader: BrokerId) {
        self.open().remove(&leader);
    }
}

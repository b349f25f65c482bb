//! The active controller: the quorum leader's side of every metadata change, and the client that
//! brokers use to reach it.
//!
//! Only the Raft leader decides. Each operation is serialized behind one lock: confirm leadership
//! and wait until every earlier entry is applied (openraft's linearizable read), plan the op on
//! that image, commit its records, answer with the version that holds them. Broker sessions
//! (last heartbeat per broker) live only in the active controller's memory, as in KRaft; a new
//! active controller gives every broker a full session before fencing it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weir_types::BrokerId;

use tokio::time::Instant;

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::Raft;
use tokio::sync::watch;

use super::network;
use super::transport::Net;
use super::{Batch, NodeId, TypeConfig};
use crate::controller::{ControllerOp, ControllerReply};
use crate::election;
use crate::image::MetadataImage;
use crate::records::MetadataRecord;
use crate::MetaError;

/// Longest wait for leadership to be confirmed before an operation gives up.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest one attempt at one voter may take: a hung (paused) voter still accepts connections,
/// and a client stuck on it would miss heartbeats to the voter that replaced it.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1500);

/// The controller logic of one voter; it acts only while that voter leads.
pub struct ActiveController {
    node_id: NodeId,
    raft: Raft<TypeConfig>,
    image: watch::Receiver<Arc<MetadataImage>>,
    sessions: tokio::sync::Mutex<Sessions>,
    session_timeout: Duration,
    unclean_default: bool,
}

impl std::fmt::Debug for ActiveController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveController")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// Broker sessions as this controller has seen them during `term`.
#[derive(Debug, Default)]
struct Sessions {
    term: u64,
    last_seen: HashMap<BrokerId, Instant>,
    /// The image version a tick last found nothing to reconcile in: leadership is a function of
    /// the image alone, so the next tick skips the walk over every partition until it changes.
    settled: Option<u64>,
}

impl ActiveController {
    pub(crate) fn new(
        node_id: NodeId,
        raft: Raft<TypeConfig>,
        image: watch::Receiver<Arc<MetadataImage>>,
        session_timeout: Duration,
        unclean_default: bool,
    ) -> ActiveController {
        ActiveController {
            node_id,
            raft,
            image,
            sessions: tokio::sync::Mutex::new(Sessions::default()),
            session_timeout,
            unclean_default,
        }
    }

    /// This voter's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// What this voter knows of the quorum now.
    pub fn view(&self) -> super::QuorumView {
        super::node::view_of(&self.raft, self.node_id)
    }

    /// The image this voter applied last, as it changes.
    pub(crate) fn images(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.clone()
    }

    fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.node_id)
    }

    /// Confirms leadership, waits for every committed entry to be applied, and returns the image
    /// to plan on. Starts fresh sessions when the term changed.
    async fn prepare(&self, sessions: &mut Sessions) -> Result<Arc<MetadataImage>, MetaError> {
        let confirmed = tokio::time::timeout(CONFIRM_TIMEOUT, self.raft.ensure_linearizable())
            .await
            .map_err(|_| MetaError::Unavailable("leadership not confirmed in time".into()))?;
        confirmed.map_err(|e| match e {
            RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => {
                MetaError::NotController {
                    leader: f.leader_id,
                }
            }
            other => MetaError::Unavailable(other.to_string()),
        })?;
        let term = self.raft.metrics().borrow().current_term;
        let image = self.image.borrow().clone();
        if sessions.term != term {
            let now = Instant::now();
            sessions.term = term;
            sessions.last_seen = image.brokers.keys().map(|b| (*b, now)).collect();
        }
        Ok(image)
    }

    /// Leadership changes that follow from `records` applied to `image`.
    fn reconciled(&self, image: &MetadataImage, records: &[MetadataRecord]) -> Vec<MetadataRecord> {
        let mut next = image.clone();
        for r in records {
            next.apply(r);
        }
        election::reconcile(&next, self.unclean_default)
    }

    async fn commit(
        &self,
        image: &MetadataImage,
        records: Vec<MetadataRecord>,
    ) -> Result<u64, MetaError> {
        if records.is_empty() {
            return Ok(image.version);
        }
        match self.raft.client_write(Batch { records }).await {
            Ok(r) => Ok(r.data.version),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(MetaError::NotController {
                    leader: f.leader_id,
                })
            }
            Err(e) => Err(MetaError::Unavailable(e.to_string())),
        }
    }

    /// Runs one operation; `NotController` unless this voter leads.
    pub async fn execute(&self, op: ControllerOp) -> Result<ControllerReply, MetaError> {
        if !self.is_leader() {
            return Err(MetaError::NotController {
                leader: self.raft.metrics().borrow().current_leader,
            });
        }
        let mut sessions = self.sessions.lock().await;
        let image = self.prepare(&mut sessions).await?;
        let (outcome, mut records) = op.plan(&image)?;
        match &op {
            ControllerOp::RegisterBroker { broker_id, .. }
            | ControllerOp::Heartbeat { broker_id } => {
                sessions.last_seen.insert(*broker_id, Instant::now());
            }
            _ => {}
        }
        if op.moves_leaders() && !records.is_empty() {
            let follow = self.reconciled(&image, &records);
            records.extend(follow);
        }
        let version = self.commit(&image, records).await?;
        Ok(ControllerReply { outcome, version })
    }

    /// Fences brokers whose sessions expired and brings leadership in line. Does nothing unless
    /// this voter leads.
    pub async fn tick(&self) {
        if !self.is_leader() {
            return;
        }
        let mut sessions = self.sessions.lock().await;
        let Ok(image) = self.prepare(&mut sessions).await else {
            return;
        };
        let now = Instant::now();
        let mut records = Vec::new();
        for b in image.live_brokers() {
            let seen = *sessions.last_seen.entry(b.broker_id).or_insert(now);
            if now.duration_since(seen) > self.session_timeout {
                tracing::warn!(
                    broker = %b.broker_id,
                    "broker missed its heartbeats for {:?}; fencing it",
                    self.session_timeout
                );
                records.push(MetadataRecord::FenceBroker {
                    broker_id: b.broker_id,
                });
            }
        }
        if records.is_empty() && sessions.settled == Some(image.version) {
            return;
        }
        let follow = self.reconciled(&image, &records);
        records.extend(follow);
        if records.is_empty() {
            sessions.settled = Some(image.version);
        }
        if let Err(e) = self.commit(&image, records).await {
            tracing::debug!(error = %e, "controller tick could not commit");
        }
    }
}

/// How a broker reaches the active controller: directly when it runs in the same process and
/// leads, else over the voters' RPC, following `NotController` hints.
#[derive(Debug)]
pub struct ControllerClient {
    voters: BTreeMap<NodeId, String>,
    local: Option<Arc<ActiveController>>,
    hint: Mutex<Option<NodeId>>,
    timeout: Duration,
    net: Net,
}

impl ControllerClient {
    /// A client of the quorum `voters`; `local` is this process's own voter, if it is one.
    /// Each call keeps trying for up to `timeout` while no controller is active.
    pub fn new(
        voters: BTreeMap<NodeId, String>,
        local: Option<Arc<ActiveController>>,
        timeout: Duration,
    ) -> ControllerClient {
        ControllerClient {
            voters,
            local,
            hint: Mutex::new(None),
            timeout,
            net: Net::Tcp,
        }
    }

    /// The same client over mutual TLS (a CONTROLLER listener mapped to SSL).
    pub fn with_tls(self, tls: Option<Arc<super::QuorumTls>>) -> ControllerClient {
        self.over(Net::from(tls))
    }

    /// The same client over another network (the simulation's, or TLS).
    pub(crate) fn over(mut self, net: Net) -> ControllerClient {
        self.net = net;
        self
    }

    fn hint(&self) -> std::sync::MutexGuard<'_, Option<NodeId>> {
        self.hint.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `op` to the active controller and returns its answer. Errors of the op itself come
    /// back at once; a missing controller is retried until the timeout.
    pub async fn call(&self, op: ControllerOp) -> Result<ControllerReply, MetaError> {
        let deadline = Instant::now() + self.timeout;
        let ids: Vec<NodeId> = self.voters.keys().copied().collect();
        let mut round = 0usize;
        let mut last = MetaError::Unavailable("no voters configured".into());
        while !ids.is_empty() {
            // This process's own voter, when it leads, needs no network at all.
            let local_leader = self
                .local
                .as_ref()
                .filter(|l| l.is_leader())
                .map(|l| l.node_id());
            let hinted = *self.hint();
            let target = local_leader.or(hinted).unwrap_or(ids[round % ids.len()]);
            round += 1;
            let result = match &self.local {
                Some(local) if local.node_id() == target => local.execute(op.clone()).await,
                _ => match self.voters.get(&target) {
                    Some(addr) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        let attempt = left.clamp(Duration::from_millis(100), ATTEMPT_TIMEOUT);
                        network::call_controller(self.net.clone(), addr, &op, attempt)
                            .await
                            .unwrap_or_else(|e| Err(MetaError::Unavailable(e.to_string())))
                    }
                    None => Err(MetaError::Unavailable(format!("unknown voter {target}"))),
                },
            };
            match result {
                Ok(reply) => {
                    *self.hint() = Some(target);
                    return Ok(reply);
                }
                Err(MetaError::NotController { leader }) => {
                    let moved = leader.is_some() && leader != Some(target);
                    *self.hint() = leader.filter(|_| moved);
                    last = MetaError::Unavailable(format!(
                        "voter {target} is not the active controller"
                    ));
                    if !moved {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                Err(MetaError::Unavailable(reason)) => {
                    *self.hint() = None;
                    last = MetaError::Unavailable(format!("voter {target}: {reason}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(other) => return Err(other),
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        Err(last)
    }
}

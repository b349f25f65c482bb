//! One voter of the metadata quorum: its Raft instance, its RPC listener and its image.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Config, Raft, SnapshotPolicy};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::controller::{ActiveController, ControllerClient};
use super::network::{serve, Network};
use super::transport::{Net, QuorumTls};
use super::{Batch, LogStore, NodeId, StateMachine, TypeConfig};
use crate::image::MetadataImage;
use crate::records::MetadataRecord;

/// How one voter runs.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    /// This voter's id (Kafka's `node.id`).
    pub node_id: NodeId,
    /// Where this voter listens for its peers.
    pub listener: SocketAddr,
    /// Every voter, this one included, with the `host:port` it listens on (Kafka's
    /// `controller.quorum.voters`). Used to form the quorum the first time it starts.
    pub voters: BTreeMap<NodeId, String>,
    /// Where the Raft log, vote and snapshot live (`<data>/meta/raft`).
    pub dir: PathBuf,
    /// How often the leader heartbeats; elections start after 3 to 6 times this without one.
    pub heartbeat_interval: Duration,
    /// A snapshot is taken after this many entries since the last one; older entries are purged.
    pub snapshot_every: u64,
    /// `broker.session.timeout.ms`: a broker without a heartbeat for this long is fenced.
    pub session_timeout: Duration,
    /// `unclean.leader.election.enable` for topics that do not set it.
    pub unclean_default: bool,
    /// Mutual TLS on the quorum's connections (a CONTROLLER listener mapped to SSL): peers must
    /// present a trusted certificate whose principal is admitted.
    pub tls: Option<Arc<QuorumTls>>,
}

impl QuorumConfig {
    /// A one-voter quorum: the default of `weir server`.
    pub fn single(node_id: NodeId, listener: SocketAddr, dir: PathBuf) -> QuorumConfig {
        QuorumConfig {
            node_id,
            listener,
            voters: BTreeMap::from([(node_id, listener.to_string())]),
            dir,
            heartbeat_interval: Duration::from_millis(100),
            snapshot_every: 1000,
            session_timeout: Duration::from_secs(9),
            unclean_default: false,
            tls: None,
        }
    }
}

/// Why a quorum operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    /// Writes go to the leader; this voter is not it. `leader` is the leader when known.
    #[error("not the active controller (leader: {leader:?})")]
    NotLeader {
        /// The current leader's id, when this voter knows it.
        leader: Option<NodeId>,
    },
    /// Starting the voter failed: its files or its listener.
    #[error("metadata quorum I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Raft stopped or refused (a storage failure shuts the voter down).
    #[error("metadata quorum: {0}")]
    Raft(String),
}

/// What one voter knows of the quorum (DescribeQuorum).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QuorumView {
    /// The leader (active controller) this voter knows of.
    pub leader: Option<NodeId>,
    /// The current Raft term (KRaft's leader epoch of the metadata log).
    pub term: u64,
    /// The index of the last committed entry: the metadata log's high watermark.
    pub committed: u64,
    /// Every voter with the last log index it is known to hold: all of them on the leader,
    /// only this voter's own elsewhere.
    pub voters: Vec<(NodeId, Option<u64>)>,
}

/// What voter `node_id` (running `raft`) knows of the quorum now.
pub(crate) fn view_of(raft: &Raft<TypeConfig>, node_id: NodeId) -> QuorumView {
    let m = raft.metrics().borrow().clone();
    let replication = m.replication.clone();
    let voters = m
        .membership_config
        .membership()
        .voter_ids()
        .map(|id| {
            let matched = match &replication {
                Some(r) => r.get(&id).copied().flatten().map(|l| l.index),
                None if id == node_id => m.last_log_index,
                None => None,
            };
            (id, matched)
        })
        .collect();
    QuorumView {
        leader: m.current_leader,
        term: m.current_term,
        committed: m.last_applied.map_or(0, |l| l.index),
        voters,
    }
}

/// A running voter.
pub struct MetaQuorum {
    node_id: NodeId,
    raft: Raft<TypeConfig>,
    image: watch::Receiver<Arc<MetadataImage>>,
    server: JoinHandle<()>,
    ticker: JoinHandle<()>,
    controller: Arc<ActiveController>,
    voters: BTreeMap<NodeId, String>,
    local_addr: SocketAddr,
    net: Net,
}

impl std::fmt::Debug for MetaQuorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaQuorum")
            .field("node_id", &self.node_id)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl MetaQuorum {
    /// Opens this voter's log and state machine, starts listening for peers, and forms the
    /// quorum from `voters` when the log is new (every voter may do so with the same voters).
    pub async fn start(config: QuorumConfig) -> Result<MetaQuorum, QuorumError> {
        let net = Net::from(config.tls.clone());
        MetaQuorum::start_on(config, net).await
    }

    /// [`MetaQuorum::start`] over the network `net`.
    pub(crate) async fn start_on(
        config: QuorumConfig,
        net: Net,
    ) -> Result<MetaQuorum, QuorumError> {
        if !config.voters.contains_key(&config.node_id) {
            return Err(QuorumError::Raft(format!(
                "node {} is not among the voters {:?}",
                config.node_id, config.voters
            )));
        }
        let log = LogStore::open(&config.dir)?;
        let sm = StateMachine::open(&config.dir)?;
        let image = sm.subscribe();
        let heartbeat = config.heartbeat_interval.as_millis().max(10) as u64;
        let raft_config = Config {
            cluster_name: "weir".into(),
            heartbeat_interval: heartbeat,
            election_timeout_min: heartbeat * 3,
            election_timeout_max: heartbeat * 6,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
            max_in_snapshot_log_to_keep: config.snapshot_every / 2,
            ..Default::default()
        }
        .validate()
        .map_err(|e| QuorumError::Raft(e.to_string()))?;
        let listener = net.bind(config.listener).await?;
        let local_addr = listener.local_addr()?;
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            Network { net: net.clone() },
            log,
            sm,
        )
        .await
        .map_err(|e| QuorumError::Raft(e.to_string()))?;
        let controller = Arc::new(ActiveController::new(
            config.node_id,
            raft.clone(),
            image.clone(),
            config.session_timeout,
            config.unclean_default,
        ));
        let tls = match &net {
            Net::Tls(tls) => Some(tls.clone()),
            _ => None,
        };
        let server = tokio::spawn(serve(listener, tls, raft.clone(), controller.clone()));
        let ticker = tokio::spawn({
            let controller = controller.clone();
            let every = (config.session_timeout / 4).max(Duration::from_millis(50));
            async move {
                let mut interval = tokio::time::interval(every);
                loop {
                    interval.tick().await;
                    controller.tick().await;
                }
            }
        });
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| QuorumError::Raft(e.to_string()))?;
        if !initialized {
            let voters: BTreeMap<NodeId, BasicNode> = config
                .voters
                .iter()
                .map(|(id, addr)| (*id, BasicNode::new(addr)))
                .collect();
            match raft.initialize(voters).await {
                Ok(()) => {}
                // Another voter's initialization reached this one first.
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(QuorumError::Raft(e.to_string())),
            }
        }
        Ok(MetaQuorum {
            node_id: config.node_id,
            raft,
            image,
            server,
            ticker,
            controller,
            voters: config.voters,
            local_addr,
            net,
        })
    }

    /// Appends records through Raft and returns once they are committed and applied here, with
    /// the image version after them. Only the leader accepts writes.
    pub async fn write(&self, records: Vec<MetadataRecord>) -> Result<u64, QuorumError> {
        match self.raft.client_write(Batch { records }).await {
            Ok(r) => Ok(r.data.version),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(QuorumError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Err(e) => Err(QuorumError::Raft(e.to_string())),
        }
    }

    /// openraft's view of this voter (the simulation watches it for leadership).
    #[cfg(test)]
    pub(crate) fn metrics(&self) -> watch::Receiver<openraft::RaftMetrics<NodeId, BasicNode>> {
        self.raft.metrics()
    }

    /// This voter's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The controller logic of this voter (it acts while this voter leads).
    pub fn controller(&self) -> Arc<ActiveController> {
        self.controller.clone()
    }

    /// A client for the active controller that calls this voter directly when it leads.
    pub fn client(&self, timeout: Duration) -> ControllerClient {
        ControllerClient::new(self.voters.clone(), Some(self.controller.clone()), timeout)
            .over(self.net.clone())
    }

    /// Every voter with its address.
    pub fn voters(&self) -> &BTreeMap<NodeId, String> {
        &self.voters
    }

    /// The latest applied image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// Follows the applied image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.clone()
    }

    /// The leader this voter knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// What this voter knows of the quorum now.
    pub fn view(&self) -> QuorumView {
        view_of(&self.raft, self.node_id)
    }

    /// Whether this voter is the leader (the active controller).
    pub fn is_leader(&self) -> bool {
        self.leader() == Some(self.node_id)
    }

    /// The current Raft term, which only grows.
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    /// Where this voter listens for peers.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until some voter is known as leader, or `timeout` passes.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<NodeId> {
        let mut metrics = self.raft.metrics();
        let wait = async {
            loop {
                if let Some(l) = metrics.borrow().current_leader {
                    return l;
                }
                if metrics.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok()
    }

    /// Takes a snapshot now (and purges the log before it).
    pub async fn snapshot(&self) -> Result<(), QuorumError> {
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| QuorumError::Raft(e.to_string()))
    }

    /// Stops Raft and the listener.
    pub async fn shutdown(&self) {
        self.ticker.abort();
        self.server.abort();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "metadata quorum did not shut down cleanly");
        }
    }
}

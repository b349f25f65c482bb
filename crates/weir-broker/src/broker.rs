//! The broker's shared state: its config, its part in the metadata quorum (a voter, or a follower
//! of the voters on a broker-only node), the controller client, the replica manager and the group
//! coordinator.
//!
//! Metadata flows one way: an operation goes to the active controller (this process's own voter
//! when it leads, another voter otherwise), is committed through the quorum, and comes back as a
//! new image on every node. A follower task turns each new image into local actions (open,
//! reconfigure or delete logs, take or drop leadership). A broker answers an admin request only
//! once its own image and logs hold the change, so its next Metadata answer shows it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;
use weir_meta::quorum::{
    ControllerClient, MetaQuorum, MetadataFollower, NodeId, QuorumError, QuorumView,
};
use weir_meta::{
    ControllerOp, ControllerReply, CreateTopic, Endpoint, MetaError, MetadataImage, Outcome,
    PRODUCER_ID_BLOCK_SIZE,
};
use weir_types::{BrokerId, ProducerId};

use crate::config::BrokerConfig;
use crate::fetcher::Fetchers;
use crate::group::{GroupManager, OFFSETS_TOPIC};
use crate::io_threads::IoThreads;
use crate::replica_manager::ReplicaManager;

/// How long a broker waits for its own image to reach a change it asked for.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(10);

/// Written in the data directory after every log closed cleanly, with the broker epoch of the
/// incarnation that closed them; removed at start. Its absence at start means the last
/// incarnation crashed and its logs may have lost unsynced data (KIP-966's unclean shutdown).
const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";

/// This process's part in the metadata quorum.
#[derive(Debug)]
pub enum MetaRole {
    /// A voter: the node is a controller too (the default).
    Voter(MetaQuorum),
    /// A broker-only node (`process.roles=broker`), following the voters' image.
    Follower(MetadataFollower),
}

impl MetaRole {
    /// The quorum as this node knows it: its own view as a voter, else the view of the voter it
    /// polled last.
    pub fn view(&self) -> QuorumView {
        match self {
            MetaRole::Voter(q) => q.view(),
            MetaRole::Follower(f) => f.view(),
        }
    }

    /// The active controller this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        match self {
            MetaRole::Voter(q) => q.leader(),
            MetaRole::Follower(f) => f.view().leader,
        }
    }

    fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        match self {
            MetaRole::Voter(q) => q.subscribe(),
            MetaRole::Follower(f) => f.subscribe(),
        }
    }

    pub async fn shutdown(&self) {
        match self {
            MetaRole::Voter(q) => q.shutdown().await,
            MetaRole::Follower(f) => f.shutdown(),
        }
    }
}

#[derive(Debug)]
pub struct Broker {
    pub config: BrokerConfig,
    /// Where clients of each listener reach this broker (its advertised endpoints).
    pub endpoints: Vec<Endpoint>,
    /// How this broker's followers connect to leaders: as the inter-broker listener's protocol
    /// says, with this broker's truststore and its keystore as the client certificate.
    pub(crate) inter_broker_security: weir_client::Security,

    quorum: MetaRole,
    controller: ControllerClient,
    image: watch::Receiver<Arc<MetadataImage>>,
    /// The image version the partition logs have been brought in line with.
    synced: watch::Sender<u64>,
    /// Producer ids reserved for this broker and not handed out yet: `next..end`.
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    pub replicas: ReplicaManager,
    /// Replica fetchers, one per leader this broker follows partitions of.
    pub(crate) fetchers: Fetchers,
    pub(crate) groups: GroupManager,
    /// The transaction coordinator of the ids whose `__transaction_state` partitions it leads.
    pub(crate) txns: crate::txn::TxnManager,
    /// Connections to other brokers for transaction markers.
    pub(crate) txn_channels: crate::txn::markers::Channels,
    /// Threads for the logs' disk work (appends), off the async workers.
    pub(crate) io: IoThreads,
    /// Requests, connections and parked operations, for `/metrics`.
    pub(crate) requests: crate::metrics::RequestProbe,
    /// Clients' use of their quotas.
    pub(crate) quotas: crate::quota::QuotaManager,
    /// Set once a controlled shutdown began: heartbeats stop so the broker stays fenced.
    stopping: Mutex<bool>,
    /// This start of the process: a new incarnation gets a new broker epoch from the controller.
    incarnation: Uuid,
    /// The broker epoch of the last clean shutdown, if the last shutdown was clean.
    previous_broker_epoch: Option<i64>,
    /// This incarnation's broker epoch, once registered (-1 before).
    broker_epoch: AtomicI64,
    /// A report of recovering partitions' logs is on its way to the controller.
    reporting: AtomicBool,
    /// The log directory failed (a write or fsync failed): this broker serves no partition.
    log_dir_failed: AtomicBool,
}

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot use data directory {dir}: {source}")]
    DataDir { dir: String, source: std::io::Error },
    #[error("metadata: {0}")]
    Meta(#[from] MetaError),
    #[error("metadata quorum: {0}")]
    Quorum(#[from] QuorumError),
    #[error("partition logs: {0}")]
    Log(#[from] weir_log::LogError),
}

/// How replica fetchers connect to leaders, after the inter-broker listener's protocol: with
/// TLS, leaders' certificates are checked against `ssl.truststore.location` and the keystore
/// is presented (for listeners that require client certificates); with SASL, the broker logs
/// in with `inter_broker_sasl`.
fn inter_broker_security(config: &BrokerConfig) -> Result<weir_client::Security, StartError> {
    let invalid = |why: String| StartError::Meta(MetaError::InvalidConfig(why));
    let Some(listener) = config.listeners.get(config.inter_broker_index()) else {
        return Ok(weir_client::Security::plaintext());
    };
    let mut security = weir_client::Security::plaintext();
    if listener.protocol.tls() {
        let truststore = config.tls.truststore.as_deref().ok_or_else(|| {
            invalid("a TLS inter-broker listener needs ssl.truststore.location, to check leaders' certificates".into())
        })?;
        let keystore = config.tls.keystore.as_deref();
        security = weir_client::Security::tls(truststore, keystore.map(|k| (k, k)))
            .map_err(|e| invalid(format!("inter-broker TLS: {e}")))?;
    }
    if listener.protocol.sasl() {
        let sasl = config.inter_broker_sasl.clone().ok_or_else(|| {
            invalid(format!(
                "the inter-broker listener '{}' uses {}: set sasl.mechanism.inter.broker.protocol and the broker's credentials",
                listener.name,
                listener.protocol.name()
            ))
        })?;
        security = security.with_sasl(sasl);
    }
    Ok(security)
}

impl Broker {
    /// Opens the broker whose listeners (`config.listeners`, in order) were bound to `bound`.
    pub async fn open(
        config: BrokerConfig,
        bound: &[SocketAddr],
    ) -> Result<Arc<Broker>, StartError> {
        let dir_err = |source| StartError::DataDir {
            dir: config.log_dir.display().to_string(),
            source,
        };
        if !config.broker_role {
            return Err(StartError::Meta(MetaError::InvalidConfig(
                "process.roles has no broker: run the controller alone (weir server does)".into(),
            )));
        }
        // The data directory's own name is made durable (once per start), so the logs under it
        // cannot vanish with it at a power cut.
        std::fs::create_dir_all(&config.log_dir)
            .and_then(|()| weir_log::storage::sync_parent(&weir_log::Disk, &config.log_dir))
            .map_err(dir_err)?;
        let previous_broker_epoch = take_clean_shutdown(&config.log_dir).map_err(dir_err)?;
        let timeout = Duration::from_millis(config.controller_request_timeout_ms);
        let quorum_tls = crate::security::quorum_tls::quorum_tls(&config)
            .map_err(|e| StartError::Meta(MetaError::InvalidConfig(e)))?;
        let (quorum, controller) = if config.controller_role {
            let mut quorum_config = config.quorum_config();
            quorum_config.tls = quorum_tls;
            let voter = MetaQuorum::start(quorum_config).await?;
            let client = voter.client(timeout);
            (MetaRole::Voter(voter), client)
        } else {
            let voters = config.controller_quorum_voters.clone();
            let client =
                ControllerClient::new(voters.clone(), None, timeout).with_tls(quorum_tls.clone());
            let follower = MetadataFollower::start(voters, quorum_tls);
            (MetaRole::Follower(follower), client)
        };
        let image = quorum.subscribe();
        let open_files = config.log_open_files();
        tracing::info!(open_files, "log files open at once, at most");
        let replicas = ReplicaManager::new(&config.log_dir, BrokerId(config.node_id), open_files);
        replicas.start_flusher().map_err(dir_err)?;
        let groups = GroupManager::new(&config);
        let txns = crate::txn::TxnManager::new(&config);
        let io = IoThreads::start(config.num_io_threads).map_err(dir_err)?;
        let (synced, _) = watch::channel(0);
        let endpoints = config
            .listeners
            .iter()
            .zip(bound)
            .filter(|(l, _)| l.advertise)
            .map(|(l, bound)| {
                let (host, port) = l.advertised_endpoint(*bound);
                Endpoint {
                    listener: l.name.clone(),
                    host,
                    port: i32::from(port),
                    security_protocol: l.protocol.id(),
                }
            })
            .collect();
        let inter_broker_security = inter_broker_security(&config)?;
        let broker = Arc::new(Broker {
            config,
            endpoints,
            inter_broker_security,
            quorum,
            controller,
            image,
            synced,
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            replicas,
            fetchers: Fetchers::default(),
            groups,
            txns,
            txn_channels: Default::default(),
            io,
            requests: Default::default(),
            quotas: Default::default(),
            stopping: Mutex::new(false),
            incarnation: Uuid::new_v4(),
            previous_broker_epoch,
            broker_epoch: AtomicI64::new(-1),
            reporting: AtomicBool::new(false),
            log_dir_failed: AtomicBool::new(false),
        });
        tokio::spawn(follow_metadata(
            Arc::downgrade(&broker),
            broker.image.clone(),
        ));
        // A broker of a cluster may start before a quorum of controllers does: wait for one.
        loop {
            match broker.register().await {
                Ok(()) => break,
                Err(e @ (MetaError::Unavailable(_) | MetaError::NotController { .. })) => {
                    tracing::warn!(error = %e, "waiting for an active controller to register with")
                }
                Err(e) => return Err(e.into()),
            }
        }
        tokio::spawn(heartbeat(Arc::downgrade(&broker)));
        broker.add_initial_credentials().await?;
        // Groups and offsets come back with the broker, not with the first group request.
        if broker.image().topic(OFFSETS_TOPIC).is_some()
            && broker.groups.ensure_ready(&broker).await.is_err()
        {
            tracing::error!("could not load consumer groups from {OFFSETS_TOPIC}");
        }
        Ok(broker)
    }

    /// This broker's inter-broker endpoint (always advertised: the listener settings check it).
    fn inter_broker_endpoint(&self) -> Result<Endpoint, MetaError> {
        let name = self.inter_broker_listener();
        self.endpoints
            .iter()
            .find(|e| e.listener == name)
            .cloned()
            .ok_or_else(|| {
                MetaError::InvalidConfig(format!(
                    "the inter-broker listener {name} is not advertised"
                ))
            })
    }

    /// The name of the listener followers fetch from.
    pub(crate) fn inter_broker_listener(&self) -> &str {
        self.config
            .listeners
            .get(self.config.inter_broker_index())
            .map_or("PLAINTEXT", |l| l.name.as_str())
    }

    /// Applies the `--add-scram` credentials if the cluster has not had its first ones yet
    /// (the controller decides, once for the cluster; see `BootstrapScramCredentials`).
    async fn add_initial_credentials(&self) -> Result<(), StartError> {
        let wanted = self.config.sasl.initial_credentials.clone();
        if wanted.is_empty() || self.image().scram_bootstrapped {
            return Ok(());
        }
        let credentials = tokio::task::spawn_blocking(move || {
            wanted
                .into_iter()
                .map(|(user, m, password)| {
                    let salt = crate::security::sasl::random_nonce().into_bytes();
                    let c = crate::security::sasl::credential(m, password.as_bytes(), salt, 4096);
                    (user, m, c)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| StartError::Meta(MetaError::InvalidConfig(format!("--add-scram: {e}"))))?;
        let before = self.image();
        self.controller_op(ControllerOp::BootstrapScramCredentials { credentials })
            .await?;
        let after = self.image();
        for (user, m) in after
            .scram
            .keys()
            .filter(|k| !before.scram.contains_key(*k))
        {
            tracing::info!(user = ?user, mechanism = m.name(), "SCRAM credential created (--add-scram)");
        }
        Ok(())
    }

    /// The cluster id the first active controller chose.
    pub fn cluster_id(&self) -> String {
        self.image().cluster_id.clone().unwrap_or_default()
    }

    pub fn node_id(&self) -> BrokerId {
        BrokerId(self.config.node_id)
    }

    /// The latest metadata image this broker has applied.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// What a request on `session`'s connection may do, against the ACLs of the current image.
    pub(crate) fn access(
        &self,
        session: &crate::security::Session,
    ) -> crate::security::authorizer::Access {
        let acls = if self.config.authorizer.enabled {
            self.image.borrow().acls.clone()
        } else {
            Default::default()
        };
        crate::security::authorizer::Access::new(&self.config.authorizer, acls, session)
    }

    /// This process's part in the metadata quorum.
    pub fn quorum(&self) -> &MetaRole {
        &self.quorum
    }

    /// The broker-level defaults of topic configs: dynamic ones from the image over the
    /// static config.
    pub fn topic_defaults(&self) -> weir_meta::broker_configs::TopicDefaults {
        weir_meta::broker_configs::TopicDefaults::of(
            &self.image(),
            self.node_id(),
            &self.config.topic_defaults,
        )
    }

    /// Registers this incarnation, then heartbeats once: a restarted broker registers fenced
    /// (out of every ISR and leadership), and serves once unfenced.
    async fn register(&self) -> Result<(), MetaError> {
        let me = self.node_id();
        let inter_broker = self.inter_broker_endpoint()?;
        let op = ControllerOp::RegisterBroker {
            broker_id: me,
            host: inter_broker.host,
            port: inter_broker.port,
            endpoints: self.endpoints.clone(),
            rack: self.config.rack.clone(),
            incarnation: self.incarnation,
            previous_broker_epoch: self.previous_broker_epoch,
        };
        let reply = self.controller.call(op).await?;
        self.catch_up(reply.version).await;
        self.note_broker_epoch(&self.image());
        let reply = self
            .controller
            .call(ControllerOp::Heartbeat { broker_id: me })
            .await?;
        self.catch_up(reply.version).await;
        Ok(())
    }

    /// Takes this incarnation's broker epoch from an image that shows its registration.
    fn note_broker_epoch(&self, image: &MetadataImage) {
        if let Some(b) = image
            .brokers
            .get(&self.node_id())
            .filter(|b| b.incarnation == Some(self.incarnation))
        {
            self.broker_epoch.store(b.epoch, Ordering::Release);
        }
    }

    /// Whether the broker serves its partitions: registered with the controller, unfenced,
    /// not shutting down, and its log directory sound. `Err` says why not.
    pub fn ready(&self) -> Result<(), &'static str> {
        if self.log_dir_failed.load(Ordering::Acquire) {
            return Err("the log directory failed");
        }
        if *self.stopping.lock().unwrap_or_else(|p| p.into_inner()) {
            return Err("shutting down");
        }
        if self.broker_epoch() < 0 {
            return Err("not registered with the controller yet");
        }
        match self.image().brokers.get(&self.node_id()) {
            Some(b) if !b.fenced => Ok(()),
            Some(_) => Err("fenced by the controller (catching up or recovering its logs)"),
            None => Err("not in the cluster's metadata yet"),
        }
    }

    /// This incarnation's broker epoch (-1 before it registered).
    pub fn broker_epoch(&self) -> i64 {
        self.broker_epoch.load(Ordering::Acquire)
    }

    /// Tells the controller where this broker's logs of recovering partitions end (see
    /// `weir_meta::election`), once per incarnation and partition; one report at a time.
    fn report_recovering(self: &Arc<Self>) {
        let epoch = self.broker_epoch();
        if epoch < 0 || self.reporting.swap(true, Ordering::AcqRel) {
            return;
        }
        let logs = self.replicas.recovery_reports(&self.image(), epoch);
        if logs.is_empty() {
            self.reporting.store(false, Ordering::Release);
            return;
        }
        let broker = self.clone();
        tokio::spawn(async move {
            let op = ControllerOp::ReportReplicaLogs {
                broker_id: broker.node_id(),
                broker_epoch: epoch,
                logs,
            };
            if let Err(e) = broker.controller.call(op).await {
                tracing::warn!(error = %e, "reporting recovering logs to the controller failed");
            }
            broker.reporting.store(false, Ordering::Release);
        });
    }

    /// Records that every log closed cleanly in this incarnation, so the next start is known to
    /// have lost nothing.
    pub fn mark_clean_shutdown(&self) {
        let epoch = self.broker_epoch();
        if epoch < 0 {
            return;
        }
        let path = self.config.log_dir.join(CLEAN_SHUTDOWN_FILE);
        let text = format!("broker_epoch: {epoch}\n");
        if let Err(e) = weir_log::checkpoint::write_atomically(&path, text.as_bytes()) {
            tracing::error!(error = %e, "writing {CLEAN_SHUTDOWN_FILE} failed");
        }
    }

    /// Brings the partition logs in line with `image`. Only the metadata follower task calls
    /// this, so two syncs never race to create one partition's directory.
    fn sync(&self, image: &Arc<MetadataImage>) {
        if self.log_dir_failed.load(Ordering::Acquire) {
            // Nothing is written to a failed directory; requests still see the image.
            self.synced.send_replace(image.version);
            return;
        }
        let registered = image
            .brokers
            .get(&self.node_id())
            .is_some_and(|b| b.incarnation == Some(self.incarnation));
        match self
            .replicas
            .sync(image, &self.config.topic_defaults, registered)
        {
            Ok(()) => {
                self.synced.send_replace(image.version);
            }
            Err(e) => {
                tracing::error!(error = %e, "applying a metadata change to the partition logs failed")
            }
        }
    }

    /// Waits until this broker's logs reflect the image it holds now: an image is applied before
    /// the logs follow it, and a request must not act on the one without the other.
    pub async fn catch_up_to_image(&self) {
        self.catch_up(self.image().version).await;
    }

    /// Waits until this broker's logs reflect metadata `version` (or a timeout passes).
    async fn catch_up(&self, version: u64) {
        let mut synced = self.synced.subscribe();
        let reached = tokio::time::timeout(CATCH_UP_TIMEOUT, synced.wait_for(|v| *v >= version));
        if reached.await.is_err() {
            tracing::warn!(version, "metadata did not reach this broker in time");
        }
    }

    /// Runs an operation on the active controller and waits until this broker has applied it.
    pub async fn controller_op(&self, op: ControllerOp) -> Result<ControllerReply, MetaError> {
        let reply = self.controller.call(op).await?;
        self.catch_up(reply.version).await;
        Ok(reply)
    }

    pub async fn create_topic(
        &self,
        request: &CreateTopic,
        validate_only: bool,
    ) -> Result<Uuid, MetaError> {
        let reply = self
            .controller_op(ControllerOp::CreateTopic {
                request: request.clone(),
                default_partitions: self.config.num_partitions,
                default_replication_factor: self.config.default_replication_factor,
                validate_only,
            })
            .await?;
        match reply.outcome {
            Outcome::TopicId(id) => Ok(id),
            other => Err(MetaError::Unavailable(format!(
                "unexpected controller answer {other:?}"
            ))),
        }
    }

    /// Hands out a producer id from this broker's block, reserving a new block when it is used up.
    pub async fn allocate_producer_id(&self) -> Result<ProducerId, MetaError> {
        let mut block = self.producer_ids.lock().await;
        if block.0 >= block.1 {
            let reply = self
                .controller
                .call(ControllerOp::AllocateProducerIds)
                .await?;
            let Outcome::ProducerIds(start) = reply.outcome else {
                return Err(MetaError::Unavailable(format!(
                    "unexpected controller answer {:?}",
                    reply.outcome
                )));
            };
            *block = (start.0, start.0 + PRODUCER_ID_BLOCK_SIZE);
        }
        let id = ProducerId(block.0);
        block.0 += 1;
        Ok(id)
    }

    /// The error for a partition this broker does not host: NOT_LEADER_OR_FOLLOWER when it
    /// exists elsewhere (the client's metadata is stale), else UNKNOWN_TOPIC_OR_PARTITION.
    pub fn not_hosted_code(&self, topic: &str, partition: i32) -> i16 {
        use kafka_protocol::error::ResponseError;
        let exists = self
            .image()
            .topic(topic)
            .is_some_and(|t| t.partitions.contains_key(&partition));
        if exists {
            ResponseError::NotLeaderOrFollower.code()
        } else {
            ResponseError::UnknownTopicOrPartition.code()
        }
    }

    /// Controlled shutdown: asks the controller to move leadership away and fence this broker,
    /// then stops heartbeating. Best effort within `timeout`.
    pub async fn controlled_shutdown(&self, timeout: Duration) {
        *self.stopping.lock().unwrap_or_else(|p| p.into_inner()) = true;
        let op = ControllerOp::ControlledShutdown {
            broker_id: self.node_id(),
        };
        match tokio::time::timeout(timeout, self.controller.call(op)).await {
            Ok(Ok(_)) => tracing::info!("controlled shutdown: leadership moved away"),
            Ok(Err(e)) => tracing::warn!(error = %e, "controlled shutdown refused"),
            Err(_) => tracing::warn!("controlled shutdown timed out"),
        }
    }

    /// Takes the log directory offline once a write or fsync in it failed, as Kafka does with a
    /// failed log directory (with a single one, the broker's whole share): it stops following
    /// leaders, stops heartbeating, and asks the controller to move its leaderships away and
    /// fence it, so clients move to the other replicas (NOT_LEADER_OR_FOLLOWER; writes to the
    /// failed logs meanwhile get KAFKA_STORAGE_ERROR). A full disk is not a failure: such a write
    /// is undone and refused, and the log takes writes again once space returns.
    pub fn check_log_dir(self: &Arc<Self>) {
        if self.log_dir_failed.load(Ordering::Acquire) {
            return;
        }
        let Some(why) = self.replicas.failed_log_dir() else {
            return;
        };
        self.log_dir_failed.store(true, Ordering::Release);
        tracing::error!(dir = %self.config.log_dir.display(), error = %why, "the log directory failed; moving leadership away and serving no partition until restarted");
        self.fetchers.shutdown();
        // Lead nothing from now on: the images that move leadership are no longer applied.
        self.replicas.resign_all();
        let broker = self.clone();
        tokio::spawn(async move {
            broker.controlled_shutdown(Duration::from_secs(30)).await;
        });
    }

    fn stopping(&self) -> bool {
        *self.stopping.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reads and removes the clean-shutdown marker: the broker epoch of the last clean shutdown, or
/// `None` when the last incarnation did not close its logs cleanly.
fn take_clean_shutdown(dir: &std::path::Path) -> std::io::Result<Option<i64>> {
    let path = dir.join(CLEAN_SHUTDOWN_FILE);
    let epoch = match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .strip_prefix("broker_epoch: ")
            .and_then(|e| e.parse().ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    weir_log::checkpoint::remove_durably(&path)?;
    Ok(epoch)
}

/// Applies each new image to the partition logs, for as long as the broker exists.
async fn follow_metadata(
    broker: std::sync::Weak<Broker>,
    mut image: watch::Receiver<Arc<MetadataImage>>,
) {
    loop {
        let current = image.borrow_and_update().clone();
        match broker.upgrade() {
            Some(b) => {
                b.note_broker_epoch(&current);
                // Opening, recovering and removing logs is disk work: on a blocking thread,
                // never on an async worker.
                let (syncing, image) = (b.clone(), current.clone());
                if let Err(e) = tokio::task::spawn_blocking(move || syncing.sync(&image)).await {
                    tracing::error!(error = %e, "applying a metadata change to the partition logs failed");
                }
                if !b.log_dir_failed.load(Ordering::Acquire) {
                    b.fetchers.update(&b);
                    b.report_recovering();
                }
            }
            None => return,
        }
        if image.changed().await.is_err() {
            return;
        }
    }
}

/// Heartbeats to the active controller every `broker.heartbeat.interval.ms`; registers again when
/// the controller has no registration for this broker.
async fn heartbeat(broker: std::sync::Weak<Broker>) {
    loop {
        let Some(b) = broker.upgrade() else { return };
        let every = Duration::from_millis(b.config.broker_heartbeat_interval_ms.max(10));
        if !b.stopping() {
            let op = ControllerOp::Heartbeat {
                broker_id: b.node_id(),
            };
            match b.controller.call(op).await {
                Ok(_) => {}
                Err(MetaError::UnknownBroker(_)) => {
                    if let Err(e) = b.register().await {
                        tracing::warn!(error = %e, "registering with the controller failed");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "heartbeat to the controller failed"),
            }
            b.report_recovering();
        }
        drop(b);
        tokio::time::sleep(every).await;
    }
}

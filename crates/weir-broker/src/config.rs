//! The broker's settings, with Kafka's names.
//!
//! The `weir` binary fills this from flags, `WEIR_*` variables and a TOML file; the broker only
//! reads it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use weir_meta::quorum::QuorumConfig;

use crate::security::{ListenerConfig, SaslSettings, TlsSettings};

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `node.id`
    pub node_id: i32,
    /// `listeners` (the broker's; the controller's is `controller_listener`), each with its
    /// name, security protocol and `advertised.listeners` entry.
    pub listeners: Vec<ListenerConfig>,
    /// `inter.broker.listener.name`: the listener other brokers' followers fetch from; the
    /// first listener when unset.
    pub inter_broker_listener: Option<String>,
    /// `ssl.*`: the TLS settings of SSL and SASL_SSL listeners.
    pub tls: TlsSettings,
    /// `sasl.*`: the SASL settings of SASL_PLAINTEXT and SASL_SSL listeners.
    pub sasl: SaslSettings,
    /// `authorizer.class.name`, `super.users`, `allow.everyone.if.no.acl.found`.
    pub authorizer: crate::security::AuthorizerSettings,
    /// How followers log in to leaders when the inter-broker listener uses SASL
    /// (`sasl.mechanism.inter.broker.protocol` and its JAAS credentials).
    pub inter_broker_sasl: Option<weir_client::Sasl>,
    /// Whether the metadata quorum's connections use mutual TLS (the CONTROLLER listener is
    /// mapped to SSL).
    pub controller_tls: bool,
    /// `log.dirs`
    pub log_dir: PathBuf,
    /// `num.partitions`
    pub num_partitions: i32,
    /// `default.replication.factor`
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable`
    pub auto_create_topics_enable: bool,
    /// `socket.request.max.bytes`
    pub socket_request_max_bytes: usize,
    /// Limits on client connections, with Kafka's names.
    pub connections: ConnectionConfig,
    /// `log.retention.check.interval.ms`
    pub log_retention_check_interval_ms: u64,
    /// `log.cleaner.backoff.ms`: how often compacted logs are checked for cleaning.
    pub log_cleaner_backoff_ms: u64,
    /// `num.io.threads`: threads that do the logs' disk work (appends) off the async workers.
    pub num_io_threads: usize,
    /// `group.initial.rebalance.delay.ms`: a new group waits this long for more members.
    pub group_initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms` and `group.max.session.timeout.ms`.
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    /// `group.consumer.session.timeout.ms`: a KIP-848 member silent this long is removed.
    pub group_consumer_session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`: how often KIP-848 members heartbeat.
    pub group_consumer_heartbeat_interval_ms: i32,
    /// `group.consumer.max.size`: members of one KIP-848 group at most.
    pub group_consumer_max_size: usize,
    /// `group.consumer.assignors`: `uniform`, `range`, or both in either order (the first is
    /// the default); see [`BrokerConfig::consumer_assignors_valid`].
    pub group_consumer_assignors: String,
    /// `offsets.topic.num.partitions`
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.replication.factor` (capped at the number of brokers).
    pub offsets_topic_replication_factor: i16,
    /// `offsets.retention.minutes`
    pub offsets_retention_minutes: i64,
    /// `transaction.state.log.num.partitions`
    pub transaction_state_log_num_partitions: i32,
    /// `transaction.state.log.replication.factor` (capped at the number of brokers).
    pub transaction_state_log_replication_factor: i16,
    /// `transaction.state.log.min.isr` (capped at the replication factor).
    pub transaction_state_log_min_isr: i16,
    /// `transaction.max.timeout.ms`: a longer `transaction.timeout.ms` is refused.
    pub transaction_max_timeout_ms: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`
    pub transaction_abort_timed_out_transaction_cleanup_interval_ms: u64,
    /// `transaction.partition.verification.enable` (KIP-890 part 1): a leader asks the
    /// coordinator before a producer's first transactional batch in a partition.
    pub transaction_partition_verification_enable: bool,
    /// `broker.rack`
    pub rack: Option<String>,
    /// Broker-level defaults of topic configs, by their broker names (`log.retention.ms`, ...).
    pub topic_defaults: BTreeMap<String, String>,
    /// `controller.quorum.voters`: node id → `host:port` of each controller's listener. Empty
    /// means a one-voter quorum of this node alone.
    pub controller_quorum_voters: BTreeMap<u64, String>,
    /// Where this node's controller listens (its `CONTROLLER` listener). When unset: its entry in
    /// the voters, or any free port on the listener's address for a one-voter quorum.
    pub controller_listener: Option<SocketAddr>,
    /// `broker.heartbeat.interval.ms`
    pub broker_heartbeat_interval_ms: u64,
    /// `broker.session.timeout.ms`: a broker without heartbeats for this long is fenced.
    pub broker_session_timeout_ms: u64,
    /// How long a metadata operation waits for an active controller.
    pub controller_request_timeout_ms: u64,
    /// `process.roles`: whether this node runs a voter of the metadata quorum (a controller).
    /// A broker that is not a controller follows the voters' image instead.
    pub controller_role: bool,
    /// `process.roles`: whether this node serves clients and hosts partitions (a broker). A
    /// node that is only a controller is started without the broker (`weir server` does that).
    pub broker_role: bool,
    /// A follower that has not caught up with its leader for this long leaves the ISR.
    pub replica_lag_time_max_ms: u64,
    /// How long a follower's fetch waits at the leader for new records.
    pub replica_fetch_wait_max_ms: u64,
    /// How many bytes a follower asks for per partition in one fetch.
    pub replica_fetch_max_bytes: i32,
    /// `log.max.open.files`: files of the logs open at once, whatever the partition count;
    /// `None` for a quarter of the process's open-files limit (see [`Self::log_open_files`]).
    pub log_max_open_files: Option<usize>,
    /// `http.listeners`: where `/metrics`, `/health` and `/ready` are served. `None` for the
    /// default ([`crate::http::DEFAULT_ADDR`], or a free port when that is taken); empty for
    /// none.
    pub http_listeners: Option<Vec<SocketAddr>>,
    /// `console.writes.enable`: whether the console may send test messages (never while an
    /// authorizer is configured).
    pub console_writes_enable: bool,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 0,
            listeners: vec![ListenerConfig::plaintext(SocketAddr::from((
                [127, 0, 0, 1],
                9092,
            )))],
            inter_broker_listener: None,
            tls: TlsSettings::default(),
            sasl: SaslSettings::default(),
            authorizer: Default::default(),
            inter_broker_sasl: None,
            controller_tls: false,
            log_dir: PathBuf::from("weir-data"),
            num_partitions: 1,
            default_replication_factor: 1,
            auto_create_topics_enable: true,
            socket_request_max_bytes: 104_857_600,
            connections: ConnectionConfig::default(),
            log_retention_check_interval_ms: 300_000,
            log_cleaner_backoff_ms: 15_000,
            num_io_threads: 8,
            group_initial_rebalance_delay_ms: 3_000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_consumer_session_timeout_ms: 45_000,
            group_consumer_heartbeat_interval_ms: 5_000,
            group_consumer_max_size: i32::MAX as usize,
            group_consumer_assignors: "uniform,range".to_string(),
            offsets_topic_num_partitions: 50,
            offsets_topic_replication_factor: 3,
            offsets_retention_minutes: 10_080,
            transaction_state_log_num_partitions: 50,
            transaction_state_log_replication_factor: 3,
            transaction_state_log_min_isr: 2,
            transaction_max_timeout_ms: 900_000,
            transaction_abort_timed_out_transaction_cleanup_interval_ms: 10_000,
            transaction_partition_verification_enable: true,
            rack: None,
            topic_defaults: BTreeMap::new(),
            controller_quorum_voters: BTreeMap::new(),
            controller_listener: None,
            broker_heartbeat_interval_ms: 2_000,
            broker_session_timeout_ms: 9_000,
            controller_request_timeout_ms: 30_000,
            controller_role: true,
            broker_role: true,
            replica_lag_time_max_ms: 30_000,
            replica_fetch_wait_max_ms: 500,
            replica_fetch_max_bytes: 1_048_576,
            log_max_open_files: None,
            http_listeners: None,
            console_writes_enable: false,
        }
    }
}

impl BrokerConfig {
    /// Whether `list` is a valid `group.consumer.assignors`.
    pub fn consumer_assignors_valid(list: &str) -> bool {
        crate::group::coordinator::consumer::parse_assignors(list).is_some()
    }

    /// How many files of the logs may be open at once: `log.max.open.files`, or a quarter of the
    /// process's open-files limit (`ulimit -n`), between 64 and 10,000. The rest of the limit is
    /// left to connections, the metadata quorum and files opened for a moment.
    pub fn log_open_files(&self) -> usize {
        self.log_max_open_files.unwrap_or_else(|| {
            let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
                .current
                .unwrap_or(u64::MAX);
            (limit / 4).clamp(64, 10_000) as usize
        })
    }

    /// How this node's voter of the metadata quorum runs, its files under `<data>/meta`.
    pub fn quorum_config(&self) -> QuorumConfig {
        let node_id = self.node_id.max(0) as u64;
        let dir = self.log_dir.join("meta");
        let mut config = if self.controller_quorum_voters.is_empty() {
            let listener = self
                .controller_listener
                .unwrap_or(SocketAddr::new(self.first_listener_ip(), 0));
            QuorumConfig::single(node_id, listener, dir)
        } else {
            let listener = self.controller_listener.unwrap_or_else(|| {
                self.controller_quorum_voters
                    .get(&node_id)
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(SocketAddr::new(self.first_listener_ip(), 0))
            });
            let mut c = QuorumConfig::single(node_id, listener, dir);
            c.voters = self.controller_quorum_voters.clone();
            c
        };
        config.session_timeout = Duration::from_millis(self.broker_session_timeout_ms);
        config.unclean_default = self
            .topic_defaults
            .get("unclean.leader.election.enable")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        config
    }

    /// The address of the first listener: where a controller without a listener of its own
    /// binds, on any free port.
    fn first_listener_ip(&self) -> std::net::IpAddr {
        self.listeners
            .first()
            .map_or([127, 0, 0, 1].into(), |l| l.addr.ip())
    }

    /// The inter-broker listener's index in `listeners`.
    pub fn inter_broker_index(&self) -> usize {
        self.inter_broker_listener
            .as_ref()
            .and_then(|name| self.listeners.iter().position(|l| &l.name == name))
            .unwrap_or(0)
    }

    /// The broker's own settings as DescribeConfigs lists them for a BROKER resource.
    pub fn describe(&self) -> Vec<(String, String)> {
        let mut out = vec![
            ("node.id".to_string(), self.node_id.to_string()),
            ("broker.id".to_string(), self.node_id.to_string()),
            (
                "listeners".to_string(),
                self.listeners
                    .iter()
                    .map(|l| format!("{}://{}", l.name, l.addr))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("log.dirs".to_string(), self.log_dir.display().to_string()),
            (
                "num.partitions".to_string(),
                self.num_partitions.to_string(),
            ),
            (
                "default.replication.factor".to_string(),
                self.default_replication_factor.to_string(),
            ),
            (
                "auto.create.topics.enable".to_string(),
                self.auto_create_topics_enable.to_string(),
            ),
            (
                "socket.request.max.bytes".to_string(),
                self.socket_request_max_bytes.to_string(),
            ),
            (
                "log.retention.check.interval.ms".to_string(),
                self.log_retention_check_interval_ms.to_string(),
            ),
            (
                "max.connections".to_string(),
                self.connections.max_connections.to_string(),
            ),
            (
                "max.connections.per.ip".to_string(),
                self.connections.max_connections_per_ip.to_string(),
            ),
            (
                "connections.max.idle.ms".to_string(),
                self.connections.connections_max_idle_ms.to_string(),
            ),
            (
                "queued.max.request.bytes".to_string(),
                self.connections
                    .queued_max_request_bytes
                    .map_or(-1, |n| n as i64)
                    .to_string(),
            ),
            (
                "replica.lag.time.max.ms".to_string(),
                self.replica_lag_time_max_ms.to_string(),
            ),
            (
                "replica.fetch.wait.max.ms".to_string(),
                self.replica_fetch_wait_max_ms.to_string(),
            ),
            (
                "replica.fetch.max.bytes".to_string(),
                self.replica_fetch_max_bytes.to_string(),
            ),
        ];
        if let Some(rack) = &self.rack {
            out.push(("broker.rack".to_string(), rack.clone()));
        }
        for def in weir_meta::configs::TOPIC_CONFIGS {
            if let Some(name) = def.broker_synonym {
                if out.iter().any(|(n, _)| n == name) {
                    continue;
                }
                let value = self
                    .topic_defaults
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| def.default.to_string());
                out.push((name.to_string(), value));
            }
        }
        out
    }
}

/// Limits on client connections (Kafka's names and meanings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// `max.connections`: connections open at once; one more is closed as soon as accepted.
    pub max_connections: usize,
    /// `max.connections.per.ip`: the same, per client address.
    pub max_connections_per_ip: usize,
    /// `connections.max.idle.ms`: a connection with no request for this long is closed.
    pub connections_max_idle_ms: u64,
    /// `queued.max.request.bytes`: bytes of requests read and not yet answered, over all
    /// connections, beyond which no more requests are read (`None`: no limit, Kafka's -1).
    pub queued_max_request_bytes: Option<usize>,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            max_connections: i32::MAX as usize,
            max_connections_per_ip: i32::MAX as usize,
            connections_max_idle_ms: 600_000,
            queued_max_request_bytes: None,
        }
    }
}

//! What the client knows of the cluster: brokers, topics, partition leaders, and one connection
//! per broker. Metadata is refreshed on demand (after NOT_LEADER_OR_FOLLOWER, unknown topics,
//! closed connections) and at most as often as `metadata_min_refresh`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::Mutex;

use crate::connection::Connection;
use crate::error::{Error, Result};

/// Settings shared by the producer, consumer and admin client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of one or more brokers to start from.
    /// Kafka's `bootstrap.servers`.
    pub bootstrap_servers: Vec<String>,
    /// Names this client in every request header (Kafka's `client.id`). Default `weir-client`.
    pub client_id: String,
    /// How long one request may take.
    /// Also bounds connecting, and is the broker's time limit for a Produce request.
    /// Default 30 s (Kafka's `request.timeout.ms`).
    pub request_timeout: Duration,
    /// Retries of a retriable failure, with `retry_backoff` between them.
    /// Default 10 (Kafka's `retries`).
    pub retries: u32,
    /// Pause before retrying after a retriable failure. Default 100 ms (Kafka's
    /// `retry.backoff.ms`).
    pub retry_backoff: Duration,
    /// `security.protocol` with its settings. Default PLAINTEXT.
    pub security: crate::Security,
}

impl ClientConfig {
    /// Default settings for `bootstrap`, a comma-separated `host:port` list (entries
    /// trimmed, empty ones dropped). Connecting fails with [`Error::Config`] if none is left.
    pub fn new(bootstrap: &str) -> ClientConfig {
        ClientConfig {
            bootstrap_servers: bootstrap
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            client_id: "weir-client".to_string(),
            request_timeout: Duration::from_secs(30),
            retries: 10,
            retry_backoff: Duration::from_millis(100),
            security: crate::Security::plaintext(),
        }
    }
}

/// One partition as metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The partition's index.
    pub partition: i32,
    /// Broker id of the leader; -1 when there is none.
    pub leader: i32,
    /// The leader's epoch, raised at every change of leader.
    pub leader_epoch: i32,
    /// Broker ids of the replicas.
    pub replicas: Vec<i32>,
    /// Broker ids of the in-sync replicas.
    pub isr: Vec<i32>,
    /// The partition's error code in the metadata answer; 0 when none.
    pub error_code: i16,
}

/// One topic as metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic's name.
    pub name: String,
    /// The topic's id (KIP-516); nil when the broker does not send one.
    pub topic_id: uuid::Uuid,
    /// Whether it is an internal topic, such as `__consumer_offsets`.
    pub internal: bool,
    /// Its partitions, sorted by index.
    pub partitions: Vec<PartitionInfo>,
    /// The topic's error code in the metadata answer; always 0, as topics with an error are
    /// left out.
    pub error_code: i16,
}

/// A broker as metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// The broker's id (Kafka's `node.id`).
    pub node_id: i32,
    /// The host name or address the broker advertises.
    pub host: String,
    /// The port the broker advertises.
    pub port: i32,
    /// The broker's rack (Kafka's `broker.rack`), if it has one.
    pub rack: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    brokers: BTreeMap<i32, BrokerInfo>,
    topics: HashMap<String, TopicInfo>,
    controller: i32,
    cluster_id: Option<String>,
    refreshed: Option<Instant>,
}

#[derive(Debug)]
pub(crate) struct Cluster {
    pub(crate) config: ClientConfig,
    state: std::sync::Mutex<State>,
    connections: Mutex<HashMap<String, Arc<Connection>>>,
}

impl Cluster {
    pub(crate) async fn connect(config: ClientConfig) -> Result<Arc<Cluster>> {
        if config.bootstrap_servers.is_empty() {
            return Err(Error::Config("no bootstrap servers given".into()));
        }
        let cluster = Arc::new(Cluster {
            config,
            state: Default::default(),
            connections: Mutex::new(HashMap::new()),
        });
        cluster.refresh(&[]).await?;
        Ok(cluster)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection to `addr`, reused while it stays open.
    pub(crate) async fn connection(&self, addr: &str) -> Result<Arc<Connection>> {
        let mut conns = self.connections.lock().await;
        if let Some(c) = conns.get(addr) {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let c = Arc::new(
            Connection::connect_with(
                addr,
                &self.config.client_id,
                self.config.request_timeout,
                &self.config.security,
            )
            .await?,
        );
        conns.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// A connection to a broker by id.
    pub(crate) async fn broker(&self, node_id: i32) -> Result<Arc<Connection>> {
        let addr = {
            let state = self.state();
            let b = state
                .brokers
                .get(&node_id)
                .ok_or_else(|| Error::Protocol(format!("unknown broker {node_id}")))?;
            format!("{}:{}", b.host, b.port)
        };
        self.connection(&addr).await
    }

    /// A connection to any broker: a known one, else a bootstrap server.
    pub(crate) async fn any(&self) -> Result<Arc<Connection>> {
        let mut addrs: Vec<String> = self
            .state()
            .brokers
            .values()
            .map(|b| format!("{}:{}", b.host, b.port))
            .collect();
        addrs.extend(self.config.bootstrap_servers.iter().cloned());
        let mut last = None;
        for addr in addrs {
            match self.connection(&addr).await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(Error::NoBrokers(
            last.map(|e| e.to_string()).unwrap_or_default(),
        ))
    }

    /// Fetches metadata for `topics` (all topics when empty) and merges it into the cache.
    pub(crate) async fn refresh(&self, topics: &[String]) -> Result<()> {
        let conn = self.any().await?;
        let request = MetadataRequest::default()
            .with_topics(if topics.is_empty() {
                None
            } else {
                Some(
                    topics
                        .iter()
                        .map(|t| {
                            MetadataRequestTopic::default()
                                .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                        })
                        .collect(),
                )
            })
            .with_allow_auto_topic_creation(false);
        let (response, _) = conn.request(&request, 12).await?;
        let mut state = self.state();
        state.brokers = response
            .brokers
            .iter()
            .map(|b| {
                (
                    b.node_id.0,
                    BrokerInfo {
                        node_id: b.node_id.0,
                        host: b.host.to_string(),
                        port: b.port,
                        rack: b.rack.as_ref().map(|r| r.to_string()),
                    },
                )
            })
            .collect();
        state.controller = response.controller_id.0;
        state.cluster_id = response.cluster_id.as_ref().map(|c| c.to_string());
        if topics.is_empty() {
            state.topics.clear();
        }
        for t in response.topics {
            let Some(name) = t.name.map(|n| n.0.to_string()) else {
                continue;
            };
            let mut partitions: Vec<PartitionInfo> = t
                .partitions
                .iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    error_code: p.error_code,
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            if t.error_code != 0 {
                state.topics.remove(&name);
                continue;
            }
            state.topics.insert(
                name.clone(),
                TopicInfo {
                    name,
                    topic_id: t.topic_id,
                    internal: t.is_internal,
                    partitions,
                    error_code: t.error_code,
                },
            );
        }
        state.refreshed = Some(Instant::now());
        Ok(())
    }

    pub(crate) fn topic(&self, name: &str) -> Option<TopicInfo> {
        self.state().topics.get(name).cloned()
    }

    pub(crate) fn topics(&self) -> Vec<TopicInfo> {
        let mut t: Vec<TopicInfo> = self.state().topics.values().cloned().collect();
        t.sort_by(|a, b| a.name.cmp(&b.name));
        t
    }

    pub(crate) fn brokers(&self) -> Vec<BrokerInfo> {
        self.state().brokers.values().cloned().collect()
    }

    pub(crate) fn controller(&self) -> i32 {
        self.state().controller
    }

    pub(crate) fn cluster_id(&self) -> Option<String> {
        self.state().cluster_id.clone()
    }

    /// How many partitions the topic has, if known (no copy of its metadata).
    pub(crate) fn partition_count(&self, name: &str) -> Option<usize> {
        self.state().topics.get(name).map(|t| t.partitions.len())
    }

    /// The topic's metadata, refreshing it once if unknown.
    pub(crate) async fn topic_or_refresh(&self, name: &str) -> Result<TopicInfo> {
        if let Some(t) = self.topic(name) {
            return Ok(t);
        }
        self.refresh(&[name.to_string()]).await?;
        self.topic(name)
            .ok_or_else(|| Error::UnknownTopic(name.to_string()))
    }

    /// A connection to the coordinator of a consumer group (FindCoordinator, batched from v4).
    pub(crate) async fn group_coordinator(&self, group: &str) -> Result<Arc<Connection>> {
        self.coordinator(0, group).await
    }

    /// A connection to the coordinator of a key: a group (`key_type` 0) or a transactional
    /// id (1).
    pub(crate) async fn coordinator(&self, key_type: i8, key: &str) -> Result<Arc<Connection>> {
        use kafka_protocol::messages::FindCoordinatorRequest;
        let conn = self.any().await?;
        let version = conn.version_for::<FindCoordinatorRequest>(4)?;
        let key = StrBytes::from_string(key.to_string());
        let request = if version >= 4 {
            FindCoordinatorRequest::default()
                .with_key_type(key_type)
                .with_coordinator_keys(vec![key])
        } else {
            FindCoordinatorRequest::default()
                .with_key_type(key_type)
                .with_key(key)
        };
        let response = conn.request_at(&request, version).await?;
        let (code, host, port) = if version >= 4 {
            let c = response
                .coordinators
                .first()
                .ok_or_else(|| Error::Protocol("no coordinator in the answer".into()))?;
            (c.error_code, c.host.to_string(), c.port)
        } else {
            (
                response.error_code,
                response.host.to_string(),
                response.port,
            )
        };
        crate::error::check(code)?;
        self.connection(&format!("{host}:{port}")).await
    }

    /// The leader of a partition.
    pub(crate) fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        let state = self.state();
        let t = state.topics.get(topic)?;
        t.partitions
            .iter()
            .find(|p| p.partition == partition)
            .map(|p| p.leader)
            .filter(|l| *l >= 0)
    }
}

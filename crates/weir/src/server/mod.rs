//! `weir server`: settings from flags, then `WEIR_*` variables, then a TOML file, then defaults.
//!
//! Every setting has Kafka's name; as a flag its dots become dashes (`node.id` → `--node-id`), as a
//! variable it is upper-cased with underscores (`WEIR_NODE_ID`), and in the file it keeps its name
//! (`"node.id" = 0`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use weir_broker::BrokerConfig;

mod security;
mod settings;

use settings::{parse_roles, parse_voters, read_file, Roles, Settings, KNOWN_KEYS};

#[derive(Debug, Args)]
#[command(
    after_help = "Settings are read from flags, then WEIR_* environment variables, then the --config file."
)]
pub(crate) struct ServerArgs {
    /// TOML file of settings with Kafka's names, e.g. `"log.dirs" = "/var/lib/weir"`.
    #[arg(long, env = "WEIR_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// node.id: this broker's id [default: 0].
    #[arg(long, env = "WEIR_NODE_ID")]
    node_id: Option<i32>,
    /// listeners: where to listen, as NAME://HOST:PORT,... where NAME is PLAINTEXT, SSL, CONTROLLER
    /// or a name in listener.security.protocol.map [default: PLAINTEXT://127.0.0.1:9092].
    #[arg(long, env = "WEIR_LISTENERS")]
    listeners: Option<String>,
    /// advertised.listeners: the addresses given to clients, as NAME://HOST:PORT,... [default: each listener's].
    #[arg(long, env = "WEIR_ADVERTISED_LISTENERS")]
    advertised_listeners: Option<String>,
    /// log.dirs: the data directory [default: ./weir-data].
    #[arg(long, env = "WEIR_LOG_DIRS")]
    log_dirs: Option<PathBuf>,
    /// num.partitions: partitions of auto-created topics and of topics created without a count [default: 1].
    #[arg(long, env = "WEIR_NUM_PARTITIONS")]
    num_partitions: Option<i32>,
    /// default.replication.factor [default: 1].
    #[arg(long, env = "WEIR_DEFAULT_REPLICATION_FACTOR")]
    default_replication_factor: Option<i16>,
    /// auto.create.topics.enable: create unknown topics on metadata requests [default: true].
    #[arg(long, env = "WEIR_AUTO_CREATE_TOPICS_ENABLE")]
    auto_create_topics_enable: Option<bool>,
    /// socket.request.max.bytes: the largest request accepted [default: 104857600].
    #[arg(long, env = "WEIR_SOCKET_REQUEST_MAX_BYTES")]
    socket_request_max_bytes: Option<usize>,
    /// log.retention.check.interval.ms: how often retention runs [default: 300000].
    #[arg(long, env = "WEIR_LOG_RETENTION_CHECK_INTERVAL_MS")]
    log_retention_check_interval_ms: Option<u64>,
    /// log.cleaner.backoff.ms: how often compacted topics are checked for cleaning [default: 15000].
    #[arg(long, env = "WEIR_LOG_CLEANER_BACKOFF_MS")]
    log_cleaner_backoff_ms: Option<u64>,
    /// num.io.threads: threads that write the logs, off the network threads [default: 8].
    #[arg(long, env = "WEIR_NUM_IO_THREADS")]
    num_io_threads: Option<usize>,
    /// group.initial.rebalance.delay.ms: how long a new group waits for more members [default: 3000].
    #[arg(long, env = "WEIR_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    group_initial_rebalance_delay_ms: Option<u64>,
    /// group.min.session.timeout.ms [default: 6000].
    #[arg(long, env = "WEIR_GROUP_MIN_SESSION_TIMEOUT_MS")]
    group_min_session_timeout_ms: Option<i32>,
    /// group.max.session.timeout.ms [default: 1800000].
    #[arg(long, env = "WEIR_GROUP_MAX_SESSION_TIMEOUT_MS")]
    group_max_session_timeout_ms: Option<i32>,
    /// group.consumer.session.timeout.ms: a KIP-848 consumer silent this long leaves its group [default: 45000].
    #[arg(long, env = "WEIR_GROUP_CONSUMER_SESSION_TIMEOUT_MS")]
    group_consumer_session_timeout_ms: Option<i32>,
    /// group.consumer.heartbeat.interval.ms: how often KIP-848 consumers heartbeat [default: 5000].
    #[arg(long, env = "WEIR_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS")]
    group_consumer_heartbeat_interval_ms: Option<i32>,
    /// group.consumer.max.size: members of one KIP-848 group at most [default: 2147483647].
    #[arg(long, env = "WEIR_GROUP_CONSUMER_MAX_SIZE")]
    group_consumer_max_size: Option<usize>,
    /// group.consumer.assignors: server-side assignors offered, the first the default [default: uniform,range].
    #[arg(long, env = "WEIR_GROUP_CONSUMER_ASSIGNORS")]
    group_consumer_assignors: Option<String>,
    /// offsets.topic.num.partitions: partitions of __consumer_offsets [default: 50].
    #[arg(long, env = "WEIR_OFFSETS_TOPIC_NUM_PARTITIONS")]
    offsets_topic_num_partitions: Option<i32>,
    /// offsets.topic.replication.factor [default: 3, capped at the live brokers].
    #[arg(long, env = "WEIR_OFFSETS_TOPIC_REPLICATION_FACTOR")]
    offsets_topic_replication_factor: Option<i16>,
    /// offsets.retention.minutes: how long the offsets of an empty group are kept [default: 10080].
    #[arg(long, env = "WEIR_OFFSETS_RETENTION_MINUTES")]
    offsets_retention_minutes: Option<i64>,
    /// broker.rack: this broker's rack, for rack-aware placement.
    #[arg(long, env = "WEIR_BROKER_RACK")]
    broker_rack: Option<String>,
    /// log.retention.ms: default retention.ms of topics [default: 604800000].
    #[arg(long, env = "WEIR_LOG_RETENTION_MS")]
    log_retention_ms: Option<i64>,
    /// log.retention.hours: the same in hours, used when log.retention.ms is not set [default: 168].
    #[arg(long, env = "WEIR_LOG_RETENTION_HOURS")]
    log_retention_hours: Option<i64>,
    /// log.retention.bytes: default retention.bytes of topics [default: -1].
    #[arg(long, env = "WEIR_LOG_RETENTION_BYTES")]
    log_retention_bytes: Option<i64>,
    /// log.segment.bytes: default segment.bytes of topics [default: 1073741824].
    #[arg(long, env = "WEIR_LOG_SEGMENT_BYTES")]
    log_segment_bytes: Option<i64>,
    /// log.roll.ms: default segment.ms of topics [default: 604800000].
    #[arg(long, env = "WEIR_LOG_ROLL_MS")]
    log_roll_ms: Option<i64>,
    /// message.max.bytes: default max.message.bytes of topics [default: 1048588].
    #[arg(long, env = "WEIR_MESSAGE_MAX_BYTES")]
    message_max_bytes: Option<i64>,
    /// log.flush.interval.messages: default flush.messages of topics [default: never forced].
    #[arg(long, env = "WEIR_LOG_FLUSH_INTERVAL_MESSAGES")]
    log_flush_interval_messages: Option<i64>,
    /// log.flush.interval.ms: default flush.ms of topics [default: never forced].
    #[arg(long, env = "WEIR_LOG_FLUSH_INTERVAL_MS")]
    log_flush_interval_ms: Option<i64>,
    /// log.cleanup.policy: default cleanup.policy of topics [default: delete].
    #[arg(long, env = "WEIR_LOG_CLEANUP_POLICY")]
    log_cleanup_policy: Option<String>,
    /// min.insync.replicas: default min.insync.replicas of topics [default: 1].
    #[arg(long, env = "WEIR_MIN_INSYNC_REPLICAS")]
    min_insync_replicas: Option<i64>,
    /// log.message.timestamp.type: CreateTime or LogAppendTime [default: CreateTime].
    #[arg(long, env = "WEIR_LOG_MESSAGE_TIMESTAMP_TYPE")]
    log_message_timestamp_type: Option<String>,
    /// process.roles: broker, controller, or broker,controller [default: broker,controller].
    /// A controller-only node runs a voter of the metadata quorum and serves no clients; a
    /// broker-only node follows the voters of controller.quorum.voters.
    #[arg(long, env = "WEIR_ROLES", value_name = "ROLES")]
    roles: Option<String>,
    /// controller.quorum.voters: the metadata quorum, as ID@HOST:PORT,... of each controller's
    /// CONTROLLER listener [default: this node alone].
    #[arg(long, env = "WEIR_CONTROLLER_QUORUM_VOTERS")]
    controller_quorum_voters: Option<String>,
    /// broker.heartbeat.interval.ms: how often the broker heartbeats to the controller [default: 2000].
    #[arg(long, env = "WEIR_BROKER_HEARTBEAT_INTERVAL_MS")]
    broker_heartbeat_interval_ms: Option<u64>,
    /// broker.session.timeout.ms: a broker silent this long is fenced [default: 9000].
    #[arg(long, env = "WEIR_BROKER_SESSION_TIMEOUT_MS")]
    broker_session_timeout_ms: Option<u64>,
    /// replica.lag.time.max.ms: a follower not caught up with its leader for this long leaves
    /// the ISR [default: 30000].
    #[arg(long, env = "WEIR_REPLICA_LAG_TIME_MAX_MS")]
    replica_lag_time_max_ms: Option<u64>,
    /// replica.fetch.wait.max.ms: how long a follower's fetch waits for new records at its
    /// leader [default: 500].
    #[arg(long, env = "WEIR_REPLICA_FETCH_WAIT_MAX_MS")]
    replica_fetch_wait_max_ms: Option<u64>,
    /// unclean.leader.election.enable: elect a replica outside the ISR when no ISR member is
    /// live, at the risk of losing records [default: false].
    #[arg(long, env = "WEIR_UNCLEAN_LEADER_ELECTION_ENABLE")]
    unclean_leader_election_enable: Option<bool>,
    /// log.write.caching: default write.caching of topics. false answers acks=all only once
    /// every in-sync replica fsynced the records; true once they hold them in memory
    /// [default: false].
    #[arg(long, env = "WEIR_LOG_WRITE_CACHING")]
    log_write_caching: Option<bool>,
    /// max.connections: client connections open at once; more are closed when accepted
    /// [default: 2147483647].
    #[arg(long, env = "WEIR_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// max.connections.per.ip: the same, per client address [default: 2147483647].
    #[arg(long, env = "WEIR_MAX_CONNECTIONS_PER_IP")]
    max_connections_per_ip: Option<usize>,
    /// connections.max.idle.ms: close connections idle this long [default: 600000].
    #[arg(long, env = "WEIR_CONNECTIONS_MAX_IDLE_MS")]
    connections_max_idle_ms: Option<u64>,
    /// queued.max.request.bytes: bytes of requests read and not yet answered beyond which no
    /// more are read, -1 for no limit [default: -1].
    #[arg(
        long,
        env = "WEIR_QUEUED_MAX_REQUEST_BYTES",
        allow_negative_numbers = true
    )]
    queued_max_request_bytes: Option<i64>,
    /// log.max.open.files: files of the logs open at once, however many partitions there are
    /// [default: a quarter of the open-files limit, from 64 to 10000].
    #[arg(long, env = "WEIR_LOG_MAX_OPEN_FILES")]
    log_max_open_files: Option<usize>,
    /// http.listeners: where /metrics, /health and /ready are served, as http://HOST:PORT,...;
    /// empty for none [default: http://127.0.0.1:8090, or a free port when that is taken].
    #[arg(long, env = "WEIR_HTTP_LISTENERS")]
    http_listeners: Option<String>,
    /// console.writes.enable: let the console send test messages (never with an authorizer) [default: false].
    #[arg(long, env = "WEIR_CONSOLE_WRITES_ENABLE")]
    console_writes_enable: Option<bool>,
    /// Any setting by its Kafka name, as NAME=VALUE, over the file's (as kafka-server-start's
    /// --override); for example --override ssl.keystore.location=/etc/weir/broker.pem.
    #[arg(long = "override", value_name = "NAME=VALUE")]
    overrides: Vec<String>,
    /// A SCRAM credential to create at start if the user has none for that mechanism, as
    /// kafka-storage format's --add-scram: 'SCRAM-SHA-256=[name=admin,password=admin-secret]'.
    /// Repeatable.
    #[arg(long, value_name = "CREDENTIAL")]
    add_scram: Vec<String>,
}

pub(crate) fn config_from(args: ServerArgs) -> Result<BrokerConfig> {
    let file = match &args.config {
        Some(path) => read_file(path)?,
        None => BTreeMap::new(),
    };
    let mut file = file;
    for o in &args.overrides {
        let (key, value) = o
            .split_once('=')
            .ok_or_else(|| anyhow!("--override '{o}' is not NAME=VALUE"))?;
        file.insert(key.trim().to_string(), value.to_string());
    }
    let known =
        |k: &str| KNOWN_KEYS.contains(&k) || security::KEYS.contains(&k) || security::known(k);
    if let Some(unknown) = file.keys().find(|k| !known(k)) {
        bail!("config file: unknown setting '{unknown}'");
    }
    let s = Settings { file };
    let mut config = BrokerConfig::default();
    if let Some(v) = s
        .pick(args.node_id, "node.id")?
        .or(s.pick(None, "broker.id")?)
    {
        config.node_id = v;
    }
    if config.node_id < 0 {
        bail!("node.id must be 0 or more, not {}", config.node_id);
    }
    let listeners = s.pick::<String>(args.listeners, "listeners")?;
    let advertised = s.pick::<String>(args.advertised_listeners, "advertised.listeners")?;
    if let Some(dir) = s
        .pick::<PathBuf>(args.log_dirs, "log.dirs")?
        .or(s.pick(None, "log.dir")?)
    {
        config.log_dir = dir;
    }
    if let Some(n) = s.pick(args.num_partitions, "num.partitions")? {
        if n < 1 {
            bail!("num.partitions must be at least 1, not {n}");
        }
        config.num_partitions = n;
    }
    if let Some(n) = s.pick(
        args.default_replication_factor,
        "default.replication.factor",
    )? {
        if n < 1 {
            bail!("default.replication.factor must be at least 1, not {n}");
        }
        config.default_replication_factor = n;
    }
    if let Some(b) = s.pick(args.auto_create_topics_enable, "auto.create.topics.enable")? {
        config.auto_create_topics_enable = b;
    }
    if let Some(n) = s.pick(args.socket_request_max_bytes, "socket.request.max.bytes")? {
        if n == 0 || n > i32::MAX as usize {
            bail!(
                "socket.request.max.bytes must be between 1 and {}",
                i32::MAX
            );
        }
        config.socket_request_max_bytes = n;
    }
    if let Some(n) = s.pick(args.max_connections, "max.connections")? {
        if n == 0 {
            bail!("max.connections must be at least 1");
        }
        config.connections.max_connections = n;
    }
    if let Some(n) = s.pick(args.max_connections_per_ip, "max.connections.per.ip")? {
        if n == 0 {
            bail!("max.connections.per.ip must be at least 1");
        }
        config.connections.max_connections_per_ip = n;
    }
    if let Some(n) = s.pick(args.connections_max_idle_ms, "connections.max.idle.ms")? {
        config.connections.connections_max_idle_ms = n;
    }
    if let Some(n) = s.pick::<i64>(args.queued_max_request_bytes, "queued.max.request.bytes")? {
        config.connections.queued_max_request_bytes = match n {
            -1 => None,
            n if n > 0 => Some(n as usize),
            n => bail!("queued.max.request.bytes must be -1 or positive, not {n}"),
        };
    }
    if let Some(n) = s.pick(
        args.log_retention_check_interval_ms,
        "log.retention.check.interval.ms",
    )? {
        config.log_retention_check_interval_ms = n;
    }
    if let Some(n) = s.pick(args.log_cleaner_backoff_ms, "log.cleaner.backoff.ms")? {
        config.log_cleaner_backoff_ms = n;
    }
    if let Some(n) = s.pick(args.num_io_threads, "num.io.threads")? {
        if !(1..=256).contains(&n) {
            bail!("num.io.threads must be between 1 and 256, not {n}");
        }
        config.num_io_threads = n;
    }
    if let Some(n) = s.pick(
        args.group_initial_rebalance_delay_ms,
        "group.initial.rebalance.delay.ms",
    )? {
        config.group_initial_rebalance_delay_ms = n;
    }
    if let Some(n) = s.pick(
        args.group_min_session_timeout_ms,
        "group.min.session.timeout.ms",
    )? {
        config.group_min_session_timeout_ms = n;
    }
    if let Some(n) = s.pick(
        args.group_max_session_timeout_ms,
        "group.max.session.timeout.ms",
    )? {
        config.group_max_session_timeout_ms = n;
    }
    if let Some(n) = s.pick(
        args.group_consumer_session_timeout_ms,
        "group.consumer.session.timeout.ms",
    )? {
        if n < 1 {
            bail!("group.consumer.session.timeout.ms must be positive, not {n}");
        }
        config.group_consumer_session_timeout_ms = n;
    }
    if let Some(n) = s.pick(
        args.group_consumer_heartbeat_interval_ms,
        "group.consumer.heartbeat.interval.ms",
    )? {
        if n < 1 {
            bail!("group.consumer.heartbeat.interval.ms must be positive, not {n}");
        }
        config.group_consumer_heartbeat_interval_ms = n;
    }
    if config.group_consumer_heartbeat_interval_ms >= config.group_consumer_session_timeout_ms {
        bail!(
            "group.consumer.heartbeat.interval.ms must be below group.consumer.session.timeout.ms"
        );
    }
    if let Some(n) = s.pick(args.group_consumer_max_size, "group.consumer.max.size")? {
        if n < 1 {
            bail!("group.consumer.max.size must be at least 1");
        }
        config.group_consumer_max_size = n;
    }
    if let Some(list) = s.pick(
        args.group_consumer_assignors.clone(),
        "group.consumer.assignors",
    )? {
        if !weir_broker::BrokerConfig::consumer_assignors_valid(&list) {
            bail!("group.consumer.assignors must list uniform and/or range, not {list:?}");
        }
        config.group_consumer_assignors = list;
    }
    if config.group_min_session_timeout_ms > config.group_max_session_timeout_ms {
        bail!("group.min.session.timeout.ms must not exceed group.max.session.timeout.ms");
    }
    if let Some(n) = s.pick(
        args.offsets_topic_num_partitions,
        "offsets.topic.num.partitions",
    )? {
        if n < 1 {
            bail!("offsets.topic.num.partitions must be at least 1, not {n}");
        }
        config.offsets_topic_num_partitions = n;
    }
    if let Some(n) = s.pick(
        args.offsets_topic_replication_factor,
        "offsets.topic.replication.factor",
    )? {
        if n < 1 {
            bail!("offsets.topic.replication.factor must be at least 1, not {n}");
        }
        config.offsets_topic_replication_factor = n;
    }
    if let Some(n) = s.pick(args.offsets_retention_minutes, "offsets.retention.minutes")? {
        if n < 1 {
            bail!("offsets.retention.minutes must be at least 1, not {n}");
        }
        config.offsets_retention_minutes = n;
    }
    transaction_settings(&s, &mut config)?;
    config.rack = s.pick(args.broker_rack, "broker.rack")?;
    let roles = match s.pick::<String>(args.roles, "process.roles")? {
        Some(r) => parse_roles(&r)?,
        None => Roles {
            broker: true,
            controller: true,
        },
    };
    config.controller_role = roles.controller;
    config.broker_role = roles.broker;
    security::listeners(
        &s,
        &mut config,
        listeners.as_deref(),
        advertised.as_deref(),
        roles.broker,
    )?;
    security::tls_settings(&s, &mut config)?;
    security::sasl_settings(&s, &mut config, &args.add_scram)?;
    security::authorizer_settings(&s, &mut config)?;
    security::inter_broker_sasl(&s, &mut config)?;
    let voters = s.pick::<String>(args.controller_quorum_voters, "controller.quorum.voters")?;
    match &voters {
        Some(v) => {
            let voters = parse_voters(v)?;
            let listed = voters.contains_key(&(config.node_id as u64));
            if roles.controller && !listed {
                bail!(
                    "node.id {} is a controller but not among controller.quorum.voters ({v})",
                    config.node_id
                );
            }
            if !roles.controller && listed {
                bail!(
                    "node.id {} is among controller.quorum.voters ({v}) but process.roles has no controller",
                    config.node_id
                );
            }
            config.controller_quorum_voters = voters;
        }
        None if !(roles.broker && roles.controller) => {
            bail!("process.roles other than broker,controller needs controller.quorum.voters")
        }
        None => {}
    }
    if let Some(n) = s.pick(
        args.broker_heartbeat_interval_ms,
        "broker.heartbeat.interval.ms",
    )? {
        if n < 10 {
            bail!("broker.heartbeat.interval.ms must be at least 10, not {n}");
        }
        config.broker_heartbeat_interval_ms = n;
    }
    if let Some(n) = s.pick(args.broker_session_timeout_ms, "broker.session.timeout.ms")? {
        config.broker_session_timeout_ms = n;
    }
    if let Some(n) = s.pick(args.replica_lag_time_max_ms, "replica.lag.time.max.ms")? {
        if n < 100 {
            bail!("replica.lag.time.max.ms must be at least 100, not {n}");
        }
        config.replica_lag_time_max_ms = n;
    }
    if let Some(n) = s.pick(args.replica_fetch_wait_max_ms, "replica.fetch.wait.max.ms")? {
        config.replica_fetch_wait_max_ms = n.min(30_000);
    }
    if let Some(n) = s.pick(args.log_max_open_files, "log.max.open.files")? {
        if n < 16 {
            bail!("log.max.open.files must be at least 16, not {n}");
        }
        config.log_max_open_files = Some(n);
    }
    if let Some(v) = s.pick::<String>(args.http_listeners, "http.listeners")? {
        config.http_listeners = Some(settings::parse_http_listeners(&v)?);
    }
    if let Some(b) = s.pick(args.console_writes_enable, "console.writes.enable")? {
        config.console_writes_enable = b;
    }
    if let Some(n) = s.pick(None::<i32>, "replica.fetch.max.bytes")? {
        if n < 1 {
            bail!("replica.fetch.max.bytes must be positive, not {n}");
        }
        config.replica_fetch_max_bytes = n;
    }
    if config.broker_session_timeout_ms <= config.broker_heartbeat_interval_ms {
        bail!(
            "broker.session.timeout.ms ({}) must be larger than broker.heartbeat.interval.ms ({})",
            config.broker_session_timeout_ms,
            config.broker_heartbeat_interval_ms
        );
    }

    let mut defaults = BTreeMap::new();
    let retention_ms = match s.pick(args.log_retention_ms, "log.retention.ms")? {
        Some(ms) => Some(ms),
        None => s
            .pick::<i64>(args.log_retention_hours, "log.retention.hours")?
            .map(|h| h.saturating_mul(3_600_000)),
    };
    let topic_defaults: [(&str, Option<String>); 9] = [
        ("log.retention.ms", retention_ms.map(|v| v.to_string())),
        (
            "log.retention.bytes",
            s.pick(args.log_retention_bytes, "log.retention.bytes")?
                .map(|v: i64| v.to_string()),
        ),
        (
            "log.segment.bytes",
            s.pick(args.log_segment_bytes, "log.segment.bytes")?
                .map(|v: i64| v.to_string()),
        ),
        (
            "log.roll.ms",
            s.pick(args.log_roll_ms, "log.roll.ms")?
                .map(|v: i64| v.to_string()),
        ),
        (
            "message.max.bytes",
            s.pick(args.message_max_bytes, "message.max.bytes")?
                .map(|v: i64| v.to_string()),
        ),
        (
            "log.flush.interval.messages",
            s.pick(
                args.log_flush_interval_messages,
                "log.flush.interval.messages",
            )?
            .map(|v: i64| v.to_string()),
        ),
        (
            "log.flush.interval.ms",
            s.pick(args.log_flush_interval_ms, "log.flush.interval.ms")?
                .map(|v: i64| v.to_string()),
        ),
        (
            "log.cleanup.policy",
            s.pick(args.log_cleanup_policy, "log.cleanup.policy")?,
        ),
        (
            "min.insync.replicas",
            s.pick(args.min_insync_replicas, "min.insync.replicas")?
                .map(|v: i64| v.to_string()),
        ),
    ];
    for (name, value) in topic_defaults {
        if let Some(v) = value {
            defaults.insert(name.to_string(), v);
        }
    }
    if let Some(v) = s.pick::<bool>(
        args.unclean_leader_election_enable,
        "unclean.leader.election.enable",
    )? {
        defaults.insert("unclean.leader.election.enable".to_string(), v.to_string());
    }
    if let Some(v) = s.pick::<bool>(args.log_write_caching, "log.write.caching")? {
        defaults.insert("log.write.caching".to_string(), v.to_string());
    }
    if let Some(t) = s.pick::<String>(
        args.log_message_timestamp_type,
        "log.message.timestamp.type",
    )? {
        defaults.insert("log.message.timestamp.type".to_string(), t);
    }
    // Check each broker default against the topic config it stands for.
    for (broker_name, value) in &defaults {
        if let Some(def) = weir_meta::configs::TOPIC_CONFIGS
            .iter()
            .find(|d| d.broker_synonym == Some(broker_name.as_str()))
        {
            weir_meta::configs::validate_value(def, value)
                .map_err(|e| anyhow!("{broker_name}: {e}"))?;
        }
    }
    config.topic_defaults = defaults;
    Ok(config)
}

pub(crate) fn run(args: ServerArgs) -> Result<()> {
    crate::init_logging("info");
    let config = config_from(args)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        if !config.broker_role {
            return run_controller_only(config).await;
        }
        let handle = weir_broker::run(config).await?;
        wait_for_signal().await?;
        tracing::info!("shutting down");
        handle.shutdown().await;
        Ok::<(), anyhow::Error>(())
    })
}

/// A node with `process.roles=controller`: a voter of the metadata quorum and nothing else.
async fn run_controller_only(config: BrokerConfig) -> Result<()> {
    let meta = config.log_dir.join("meta");
    std::fs::create_dir_all(&meta)
        .with_context(|| format!("cannot create data directory {}", meta.display()))?;
    let mut quorum_config = config.quorum_config();
    quorum_config.tls =
        weir_broker::security::quorum_tls::quorum_tls(&config).map_err(|e| anyhow!(e))?;
    let quorum = weir_meta::quorum::MetaQuorum::start(quorum_config).await?;
    tracing::info!(
        local_addr = %quorum.local_addr(),
        node_id = config.node_id,
        data = %config.log_dir.display(),
        "weir controller listening"
    );
    wait_for_signal().await?;
    tracing::info!("shutting down");
    quorum.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot watch SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// The transaction coordinator's settings, under Kafka's names (config file or `--override`).
fn transaction_settings(s: &settings::Settings, config: &mut BrokerConfig) -> Result<()> {
    let positive = |name: &str, n: i64| -> Result<()> {
        if n < 1 {
            bail!("{name} must be at least 1, not {n}");
        }
        Ok(())
    };
    if let Some(n) = s.pick::<i32>(None, "transaction.state.log.num.partitions")? {
        positive("transaction.state.log.num.partitions", n.into())?;
        config.transaction_state_log_num_partitions = n;
    }
    if let Some(n) = s.pick::<i16>(None, "transaction.state.log.replication.factor")? {
        positive("transaction.state.log.replication.factor", n.into())?;
        config.transaction_state_log_replication_factor = n;
    }
    if let Some(n) = s.pick::<i16>(None, "transaction.state.log.min.isr")? {
        positive("transaction.state.log.min.isr", n.into())?;
        config.transaction_state_log_min_isr = n;
    }
    if let Some(n) = s.pick::<i32>(None, "transaction.max.timeout.ms")? {
        positive("transaction.max.timeout.ms", n.into())?;
        config.transaction_max_timeout_ms = n;
    }
    let cleanup = "transaction.abort.timed.out.transaction.cleanup.interval.ms";
    if let Some(n) = s.pick::<u64>(None, cleanup)? {
        positive(cleanup, n as i64)?;
        config.transaction_abort_timed_out_transaction_cleanup_interval_ms = n;
    }
    if let Some(v) = s.pick::<bool>(None, "transaction.partition.verification.enable")? {
        config.transaction_partition_verification_enable = v;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ServerArgs,
    }

    fn parse(argv: &[&str]) -> Result<BrokerConfig> {
        let w = Wrapper::try_parse_from(std::iter::once("weir").chain(argv.iter().copied()))?;
        config_from(w.args)
    }

    /// One test, so that no other test sees the variable it sets.
    #[test]
    fn flags_override_variables_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("weir.toml");
        std::fs::write(
            &file,
            "\"node.id\" = 4\n\"num.partitions\" = 7\n\"log.dirs\" = \"/from/file\"\n\"log.retention.hours\" = 2\n\"listeners\" = \"PLAINTEXT://127.0.0.1:9999\"\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let c = parse(&["--config", path]).unwrap();
        assert_eq!((c.node_id, c.num_partitions), (4, 7));
        assert_eq!(c.log_dir, PathBuf::from("/from/file"));
        assert_eq!(c.listeners[0].addr.port(), 9999);
        assert_eq!(c.topic_defaults.get("log.retention.ms").unwrap(), "7200000");

        std::env::set_var("WEIR_NUM_PARTITIONS", "9");
        let c = parse(&["--config", path]).unwrap();
        assert_eq!(c.num_partitions, 9, "the variable beats the file");
        let c = parse(&["--config", path, "--num-partitions", "11"]).unwrap();
        assert_eq!(c.num_partitions, 11, "the flag beats the variable");
        std::env::remove_var("WEIR_NUM_PARTITIONS");

        let c = parse(&[]).unwrap();
        assert_eq!((c.node_id, c.num_partitions), (0, 1));
        assert_eq!(c.listeners[0].addr.to_string(), "127.0.0.1:9092");
        assert_eq!(c.log_dir, PathBuf::from("weir-data"));

        let c = parse(&[
            "--node-id",
            "2",
            "--listeners",
            "PLAINTEXT://127.0.0.2:9092,CONTROLLER://127.0.0.2:9093",
            "--controller-quorum-voters",
            "1@127.0.0.1:9093,2@127.0.0.2:9093,3@127.0.0.3:9093",
        ])
        .unwrap();
        assert_eq!(c.controller_listener.unwrap().to_string(), "127.0.0.2:9093");
        assert_eq!(c.listeners[0].addr.to_string(), "127.0.0.2:9092");
        assert_eq!(c.controller_quorum_voters.len(), 3);
        assert!(c.controller_role && c.broker_role);
        assert!(parse(&["--controller-quorum-voters", "1@127.0.0.1:9093"]).is_err());

        // Roles: a broker-only node is not a voter; a controller-only node needs no client
        // listener; either needs voters.
        let voters = "1@127.0.0.1:9093";
        let c = parse(&[
            "--node-id",
            "5",
            "--roles",
            "broker",
            "--controller-quorum-voters",
            voters,
        ])
        .unwrap();
        assert!(c.broker_role && !c.controller_role);
        let c = parse(&[
            "--node-id",
            "1",
            "--roles",
            "controller",
            "--listeners",
            "CONTROLLER://127.0.0.1:9093",
            "--controller-quorum-voters",
            voters,
        ])
        .unwrap();
        assert!(!c.broker_role && c.controller_role);
        assert_eq!(c.controller_listener.unwrap().to_string(), "127.0.0.1:9093");
        let bad: &[&[&str]] = &[
            &["--roles", "broker"],
            &["--roles", "gardener", "--controller-quorum-voters", voters],
            &[
                "--node-id",
                "1",
                "--roles",
                "broker",
                "--controller-quorum-voters",
                voters,
            ],
            &[
                "--node-id",
                "2",
                "--roles",
                "controller",
                "--controller-quorum-voters",
                voters,
            ],
            &[
                "--node-id",
                "1",
                "--listeners",
                "CONTROLLER://127.0.0.1:9093",
                "--controller-quorum-voters",
                voters,
            ],
        ];
        for args in bad {
            assert!(parse(args).is_err(), "{args:?} was accepted");
        }
        assert!(parse(&["--controller-quorum-voters", "x@127.0.0.1:9093"]).is_err());
        assert!(parse(&["--controller-quorum-voters", "0@127.0.0.1"]).is_err());
        assert!(parse(&["--broker-session-timeout-ms", "100"]).is_err());
        assert!(parse(&["--num-partitions", "0"]).is_err());
        assert!(parse(&["--listeners", "SSL://127.0.0.1:1"]).is_err());
        // Listener and TLS settings by their Kafka names, through --override.
        let two = "PLAINTEXT://127.0.0.1:1,INTERNAL://127.0.0.1:2";
        let map = "listener.security.protocol.map=INTERNAL:PLAINTEXT";
        let c = parse(&["--listeners", two, "--override", map]).unwrap();
        assert_eq!(c.listeners.len(), 2);
        let inter = "inter.broker.listener.name=internal";
        let c = parse(&["--listeners", two, "--override", map, "--override", inter]).unwrap();
        assert_eq!(c.inter_broker_index(), 1);
        for bad in [
            "ssl.keystore.type=JKS",
            "ssl.client.auth=sometimes",
            "ssl.principal.mapping.rules=RULE:x",
            "no.such.setting=1",
            "nonsense",
        ] {
            assert!(parse(&["--override", bad]).is_err(), "{bad} was accepted");
        }
        assert!(parse(&["--log-cleanup-policy", "shred"]).is_err());
        std::fs::write(&file, "\"no.such.setting\" = 1\n").unwrap();
        assert!(parse(&["--config", path]).is_err());
    }
}

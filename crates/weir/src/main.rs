//! `weir`: the command line. Parses, wires and prints; the work is in the library crates.
//!
//! Flags follow Kafka's shell tools (`--bootstrap-server`, `--topic`, `--partitions`,
//! `--replication-factor`, `--config k=v`, `--group`, `--from-beginning`, `--property k=v`).
//! Every failure is one line on stderr and a non-zero exit code.

mod acls;
mod advise;
mod cluster;
mod command_config;
mod configs;
mod consume;
mod groups;
mod perf;
mod perf_chart;
mod perf_txn;
mod produce;
mod server;
mod topics;
mod transactions;
mod users;

use clap::{Args, Parser, Subcommand};

/// Weir: a Kafka-compatible message broker and its tools.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the cluster is.
#[derive(Debug, Clone, Args)]
pub(crate) struct Connect {
    /// Broker(s) to connect to, as host:port[,host:port].
    #[arg(long, env = "WEIR_BOOTSTRAP_SERVER", default_value = "127.0.0.1:9092")]
    bootstrap_server: String,
    /// How long one request to the cluster may take, in milliseconds.
    #[arg(long, default_value_t = 15_000)]
    request_timeout_ms: u64,
    /// Kafka client properties for TLS and SASL (security.protocol, ssl.ca.location,
    /// sasl.mechanism, sasl.username, sasl.password or sasl.jaas.config, ...).
    #[arg(long, value_name = "FILE")]
    command_config: Option<std::path::PathBuf>,
}

impl Connect {
    pub(crate) fn client(&self) -> anyhow::Result<weir_client::ClientConfig> {
        let mut c = weir_client::ClientConfig::new(&self.bootstrap_server);
        c.client_id = "weir-cli".into();
        c.request_timeout = std::time::Duration::from_millis(self.request_timeout_ms);
        c.retries = 3;
        if let Some(path) = &self.command_config {
            c.security = command_config::read(path)?;
        }
        Ok(c)
    }

    pub(crate) async fn admin(&self) -> anyhow::Result<weir_client::Admin> {
        weir_client::Admin::new(self.client()?)
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach {}: {e}", self.bootstrap_server))
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a broker. With no arguments: a one-node cluster, broker id 0, on 127.0.0.1:9092,
    /// with its data in ./weir-data.
    Server(Box<server::ServerArgs>),
    /// Create, list, describe, alter and delete topics.
    #[command(subcommand)]
    Topics(topics::TopicsCommand),
    /// Describe and alter topic and broker configs (like kafka-configs.sh).
    Configs(configs::ConfigsArgs),
    /// SCRAM users: list, set a password, delete a credential.
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// Add, remove and list ACLs (like kafka-acls.sh).
    Acls(acls::AclsArgs),
    /// Produce records from standard input or a file, one per line.
    Produce(produce::ProduceArgs),
    /// Print records of a topic.
    Consume(consume::ConsumeArgs),
    /// List, describe (with lag), reset and delete consumer groups.
    #[command(subcommand)]
    Groups(groups::GroupsCommand),
    /// The controllers, the brokers and their state, and leadership per broker.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Load generators: produce, consume and end-to-end throughput and latency.
    #[command(subcommand)]
    Perf(perf::PerfCommand),
    /// List and describe transactions and their producers; abort a hanging one (like
    /// kafka-transactions.sh).
    #[command(subcommand)]
    Transactions(transactions::TransactionsCommand),
}

/// Runs an async command on a fresh runtime.
pub(crate) fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(
    f: F,
) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?
        .block_on(f)
}

/// Logs to stderr at `default` level; `RUST_LOG` overrides.
pub(crate) fn init_logging(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .init();
}

fn main() {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Server(_)) {
        // Client commands log warnings (e.g. a failed commit on revoke). The server sets up its
        // own logging, at info.
        init_logging("warn");
    }
    let result = match cli.command {
        Command::Server(args) => server::run(*args),
        Command::Topics(cmd) => block_on(topics::run(cmd)),
        Command::Produce(args) => block_on(produce::run(args)),
        Command::Acls(args) => block_on(acls::run(args)),
        Command::Configs(args) => block_on(configs::run(args)),
        Command::Users(cmd) => block_on(users::run(cmd)),
        Command::Transactions(cmd) => block_on(transactions::run(cmd)),
        Command::Consume(args) => block_on(consume::run(args)),
        Command::Groups(cmd) => block_on(groups::run(cmd)),
        Command::Cluster(cmd) => block_on(cluster::run(cmd)),
        Command::Perf(cmd) => block_on(perf::run(cmd)),
    };
    if let Err(e) = result {
        // One line: the chain of causes joined, never a backtrace.
        let msg = format!("{e:#}").replace('\n', " ");
        eprintln!("weir: {msg}");
        std::process::exit(1);
    }
}

/// Parses `k=v`.
pub(crate) fn key_value(s: &str) -> anyhow::Result<(String, String)> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .ok_or_else(|| anyhow::anyhow!("expected key=value, got '{s}'"))
}

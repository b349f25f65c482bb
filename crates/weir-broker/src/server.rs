//! The listener, the accept loop and the broker's housekeeping; each connection is served by
//! `connection.rs`. A frame that cannot be parsed closes only its own connection, with one log
//! line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::broker::{Broker, StartError};
use crate::config::BrokerConfig;
use crate::connection::{self, ConnectionLimits};
use crate::security::{tls, Listener};

/// A running broker: its address, and the way to stop it.
#[derive(Debug)]
pub struct ServerHandle {
    /// The first listener's bound address.
    pub local_addr: SocketAddr,
    /// Every listener's name and bound address, in the order configured.
    pub listeners: Vec<(String, SocketAddr)>,
    /// Where the HTTP listeners (`/metrics`, `/health`, `/ready`) are bound.
    pub http: Vec<SocketAddr>,
    pub broker: Arc<Broker>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl ServerHandle {
    /// The bound address of the listener called `name`.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, a)| *a)
    }

    /// Stops accepting, ends every connection, and closes the logs cleanly.
    pub async fn shutdown(mut self) {
        self.broker
            .controlled_shutdown(Duration::from_secs(5))
            .await;
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        self.broker.fetchers.shutdown();
        self.broker.quorum().shutdown().await;
        // Appends queued before the connections ended finish before the logs close.
        let broker = self.broker.clone();
        let _ = tokio::task::spawn_blocking(move || broker.io.close()).await;
        if self.broker.replicas.close_all() {
            self.broker.mark_clean_shutdown();
        }
        tracing::info!("broker stopped; logs flushed and closed");
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Start(#[from] StartError),
}

/// Opens the broker's data and starts serving on its listeners.
pub async fn run(config: BrokerConfig) -> Result<ServerHandle, ServeError> {
    if config.listeners.is_empty() {
        return Err(ServeError::Config(
            "listeners: the broker has no listener".into(),
        ));
    }
    let contexts = listener_contexts(&config)?;
    let mut bound = Vec::new();
    for l in &config.listeners {
        let bind_err = |source| ServeError::Bind {
            addr: l.addr,
            source,
        };
        let listener = TcpListener::bind(l.addr).await.map_err(bind_err)?;
        let addr = listener.local_addr().map_err(bind_err)?;
        bound.push((listener, addr));
    }
    let mut http = Vec::new();
    let (http_addrs, default) = match &config.http_listeners {
        Some(addrs) => (addrs.clone(), false),
        None => {
            let addr = crate::http::DEFAULT_ADDR
                .parse()
                .map_err(|e| ServeError::Config(format!("http.listeners default: {e}")))?;
            (vec![addr], true)
        }
    };
    for addr in http_addrs {
        let bind_err = |source| ServeError::Bind { addr, source };
        let listener = crate::http::bind(addr, default).await.map_err(bind_err)?;
        let local = listener.local_addr().map_err(bind_err)?;
        http.push((listener, local));
    }
    let addrs: Vec<SocketAddr> = bound.iter().map(|(_, a)| *a).collect();
    let broker = Broker::open(config, &addrs).await?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let limits = ConnectionLimits::new(broker.config.connections.clone());
    let mut listeners = Vec::new();
    for ((listener, addr), context) in bound.into_iter().zip(contexts) {
        tracing::info!(listener = %context.name, protocol = context.protocol.name(), %addr, "listening");
        listeners.push((context.name.clone(), addr));
        tasks.spawn(accept_loop(
            listener,
            Arc::new(context),
            broker.clone(),
            limits.clone(),
            shutdown_rx.clone(),
        ));
    }
    let mut http_bound = Vec::new();
    for (listener, addr) in http {
        tracing::info!(%addr, "HTTP listening: http://{addr}/metrics, /health, /ready");
        http_bound.push(addr);
        tasks.spawn(crate::http::serve(
            listener,
            broker.clone(),
            shutdown_rx.clone(),
        ));
    }
    tasks.spawn(housekeeping(broker.clone(), shutdown_rx));
    let local_addr = addrs[0];
    tracing::info!(%local_addr, node_id = %broker.node_id(), data = %broker.config.log_dir.display(), "weir broker listening");
    Ok(ServerHandle {
        local_addr,
        listeners,
        http: http_bound,
        broker,
        shutdown,
        tasks,
    })
}

/// Each listener as its connections see it; the TLS settings are read once, for every TLS
/// listener, and refused at start when they cannot be used.
fn listener_contexts(config: &BrokerConfig) -> Result<Vec<Listener>, ServeError> {
    let tls = if config.listeners.iter().any(|l| l.protocol.tls()) {
        let server = tls::server_config(&config.tls).map_err(ServeError::Config)?;
        Some(tokio_rustls::TlsAcceptor::from(server))
    } else {
        None
    };
    let mut out = Vec::new();
    for l in &config.listeners {
        out.push(Listener {
            name: l.name.clone(),
            protocol: l.protocol,
            tls: tls.clone().filter(|_| l.protocol.tls()),
            principal_rules: config.tls.principal_rules.clone(),
        });
    }
    Ok(out)
}

async fn accept_loop(
    listener: TcpListener,
    context: Arc<Listener>,
    broker: Arc<Broker>,
    limits: Arc<ConnectionLimits>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let open = broker.requests.connections(&context.name);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Beyond max.connections (per IP): closed as soon as accepted.
                    let Some(slot) = limits.admit(peer) else { continue };
                    let _ = stream.set_nodelay(true);
                    let counted = crate::metrics::Counted::new(open.clone());
                    let serve = connection::serve(
                        stream,
                        peer,
                        broker.clone(),
                        context.clone(),
                        limits.clone(),
                        slot,
                        shutdown.clone(),
                    );
                    connections.spawn(async move {
                        serve.await;
                        drop(counted);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    connections.shutdown().await;
}

/// How often the high watermarks are checkpointed (Kafka's
/// `replica.high.watermark.checkpoint.interval.ms` default).
const HW_CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

/// The broker's clockwork on the runtime: the leader's ISR checks, the group coordinator's
/// clock, and the watch for a failed log directory. Disk upkeep runs on a thread of its own
/// ([`disk_upkeep`]), which this task stops and waits for when the server shuts down.
async fn housekeeping(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let upkeep = {
        let broker = broker.clone();
        std::thread::Builder::new()
            .name("weir-disk-upkeep".into())
            .spawn(move || disk_upkeep(&broker, &stopped))
    };
    if let Err(e) = &upkeep {
        tracing::error!(error = %e, "no thread for retention, compaction and checkpoints");
    }
    let mut log_dir = tokio::time::interval(Duration::from_secs(1));
    let mut groups = tokio::time::interval(Duration::from_millis(100));
    // transaction.abort.timed.out.transaction.cleanup.interval.ms
    let mut txns = tokio::time::interval(Duration::from_millis(
        broker
            .config
            .transaction_abort_timed_out_transaction_cleanup_interval_ms
            .max(10),
    ));
    // Kafka checks the ISR at half the lag it allows.
    let mut isr = tokio::time::interval(Duration::from_millis(
        (broker.config.replica_lag_time_max_ms / 2).clamp(50, 5_000),
    ));
    loop {
        tokio::select! {
            _ = log_dir.tick() => broker.check_log_dir(),
            _ = isr.tick() => crate::replication::check_isrs(&broker),
            _ = groups.tick() => broker.groups.tick(&broker),
            _ = txns.tick() => broker.txns.tick(&broker),
            _ = shutdown.changed() => break,
        }
    }
    drop(stop);
    if let Ok(upkeep) = upkeep {
        // The logs close after this: no retention or compaction may still hold one.
        let _ = tokio::task::spawn_blocking(move || upkeep.join()).await;
    }
}

/// Disk upkeep, off the async workers: time-based flushes at each tick (a second at most), the
/// high-watermark checkpoint every [`HW_CHECKPOINT_EVERY`], retention and compaction at their
/// configured intervals. Ends when `stop`'s sender is dropped.
fn disk_upkeep(broker: &Broker, stop: &std::sync::mpsc::Receiver<()>) {
    use std::sync::mpsc::RecvTimeoutError;
    use std::time::Instant;
    let every = |ms: u64| Duration::from_millis(ms.max(100));
    let retention_every = every(broker.config.log_retention_check_interval_ms);
    let cleaner_every = every(broker.config.log_cleaner_backoff_ms);
    let tick = Duration::from_secs(1)
        .min(retention_every)
        .min(cleaner_every);
    let start = Instant::now();
    let (mut retention, mut cleaner, mut checkpoint) = (start, start, start);
    loop {
        match stop.recv_timeout(tick) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        broker.replicas.flush_due(weir_log::now_ms());
        if now >= checkpoint {
            broker.replicas.checkpoint_high_watermarks();
            checkpoint = now + HW_CHECKPOINT_EVERY;
        }
        if now >= retention {
            broker.replicas.enforce_retention(weir_log::now_ms());
            retention = now + retention_every;
        }
        if now >= cleaner {
            broker.replicas.compact_due(weir_log::now_ms());
            cleaner = now + cleaner_every;
        }
    }
}

//! Listener and connections.
//!
//! Each connection reads one request at a time and answers it before reading the next, so
//! pipelined requests are answered in order (Kafka mutes a channel the same way). A frame that
//! cannot be parsed closes only its own connection, with one log line.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::apis;
use crate::broker::{Broker, StartError};
use crate::config::BrokerConfig;
use crate::frame::{self, Chunk, FrameError};

/// A running broker: its address, and the way to stop it.
#[derive(Debug)]
pub struct ServerHandle {
    pub local_addr: SocketAddr,
    pub broker: Arc<Broker>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl ServerHandle {
    /// Stops accepting, ends every connection, and closes the logs cleanly.
    pub async fn shutdown(mut self) {
        self.broker
            .controlled_shutdown(Duration::from_secs(5))
            .await;
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        self.broker.fetchers.shutdown();
        self.broker.quorum().shutdown().await;
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
    #[error(transparent)]
    Start(#[from] StartError),
}

/// Opens the broker's data and starts serving on its listener.
pub async fn run(config: BrokerConfig) -> Result<ServerHandle, ServeError> {
    let listener = TcpListener::bind(config.listener)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listener,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.listener,
        source,
    })?;
    let broker = Broker::open(config, local_addr).await?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tasks.spawn(accept_loop(listener, broker.clone(), shutdown_rx.clone()));
    tasks.spawn(housekeeping(broker.clone(), shutdown_rx));
    tracing::info!(%local_addr, node_id = broker.node_id(), data = %broker.config.log_dir.display(), "weir broker listening");
    Ok(ServerHandle {
        local_addr,
        broker,
        shutdown,
        tasks,
    })
}

async fn accept_loop(
    listener: TcpListener,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(connection(stream, peer, broker.clone(), shutdown.clone()));
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

/// Retention, compaction, time-based flushes, high-watermark checkpoints, the leader's ISR
/// checks, and the group coordinator's clock.
async fn housekeeping(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let retention_every =
        Duration::from_millis(broker.config.log_retention_check_interval_ms.max(100));
    let mut retention = tokio::time::interval(retention_every);
    let mut flush = tokio::time::interval(Duration::from_secs(1));
    let mut groups = tokio::time::interval(Duration::from_millis(100));
    // Kafka checks the ISR at half the lag it allows.
    let mut isr = tokio::time::interval(Duration::from_millis(
        (broker.config.replica_lag_time_max_ms / 2).clamp(50, 5_000),
    ));
    let mut cleaner = tokio::time::interval(Duration::from_millis(
        broker.config.log_cleaner_backoff_ms.max(100),
    ));
    loop {
        tokio::select! {
            _ = retention.tick() => broker.replicas.enforce_retention(weir_log::now_ms()),
            _ = cleaner.tick() => broker.replicas.compact_due(weir_log::now_ms()),
            _ = flush.tick() => {
                broker.replicas.flush_due(weir_log::now_ms());
                broker.replicas.checkpoint_high_watermarks();
            }
            _ = isr.tick() => crate::replication::check_isrs(&broker),
            _ = groups.tick() => broker.groups.tick(&broker),
            _ = shutdown.changed() => break,
        }
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let max = broker.config.socket_request_max_bytes;
    loop {
        let frame = tokio::select! {
            frame = frame::read_frame(&mut stream, max) => frame,
            _ = shutdown.changed() => return,
        };
        let request = match frame.and_then(frame::parse_request) {
            Ok(request) => request,
            Err(FrameError::Closed) => return,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection");
                return;
            }
        };
        let api = request.api;
        let version = request.header.request_api_version;
        let correlation_id = request.header.correlation_id;
        let body = tokio::select! {
            body = apis::dispatch(&broker, request, peer) => body,
            _ = shutdown.changed() => return,
        };
        let body = match body {
            Ok(Some(body)) => body,
            Ok(None) => continue, // acks=0: no answer
            Err(e) => {
                tracing::warn!(%peer, ?api, version, error = %e, "closing connection");
                return;
            }
        };
        // An ApiVersions request of a version we do not know is answered in v0 (KIP-511).
        let unsupported = apis::spec(api).is_none_or(|s| version > s.max);
        let version = if api == ApiKey::ApiVersions && unsupported {
            0
        } else {
            version
        };
        let chunks = match frame::encode_response(api, version, correlation_id, body) {
            Ok(chunks) => chunks,
            Err(e) => {
                tracing::error!(%peer, error = %e, "cannot encode a response; closing connection");
                return;
            }
        };
        if let Err(e) = write_chunks(&mut stream, &chunks).await {
            tracing::debug!(%peer, error = %e, "write failed; closing connection");
            return;
        }
    }
}

async fn write_chunks(stream: &mut TcpStream, chunks: &[Chunk]) -> std::io::Result<()> {
    for chunk in chunks {
        match chunk {
            Chunk::Bytes(bytes) => stream.write_all(bytes).await?,
            Chunk::File(slice) => send_file(stream, slice).await?,
        }
    }
    Ok(())
}

/// Sends a range of a segment file to the socket with sendfile(2): the bytes never enter user space.
async fn send_file(stream: &TcpStream, slice: &weir_log::FileSlice) -> std::io::Result<()> {
    let mut offset = slice.position;
    let end = slice.position + slice.len;
    while offset < end {
        stream.writable().await?;
        let remaining = (end - offset) as usize;
        let sent = stream.try_io(Interest::WRITABLE, || {
            rustix::fs::sendfile(
                stream.as_fd(),
                slice.file.as_fd(),
                Some(&mut offset),
                remaining,
            )
            .map_err(std::io::Error::from)
        });
        match sent {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "segment file ended before the promised bytes were sent",
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

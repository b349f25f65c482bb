//! One client connection: frames in, answers out, in the order the requests came.
//!
//! Produce requests are pipelined: each is dispatched as soon as it is read (its appends run at
//! once, in arrival order: everything a produce does before its first await runs in the first
//! poll), and its answer, which may wait for replication and fsync, is queued. A produce that
//! must first ask a transaction coordinator (KIP-890) holds its place in line: nothing more is
//! read until its appends are queued. The connection
//! keeps reading the next produce requests meanwhile, up to [`MAX_PIPELINED`], so one producer's
//! requests share a group commit instead of each waiting out its own. Any other request waits
//! until every earlier answer is out, and nothing more is read until it is answered, as Kafka
//! mutes a channel. Answers are written strictly in request order.
//!
//! Limits, with Kafka's meanings: `max.connections` and `max.connections.per.ip` (a connection
//! beyond them is closed as soon as it is accepted, and logged at most once a second),
//! `connections.max.idle.ms` (a connection with nothing in flight and no request for that long
//! is closed), and `queued.max.request.bytes` (no connection reads a new request while the
//! requests read and not yet answered, over the whole broker, hold that many bytes).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch, Notify};

use crate::apis::{self, DispatchError};
use crate::broker::Broker;
use crate::config::ConnectionConfig;
use crate::frame::{self, Body, FrameError, FrameReader};
use crate::security::{Listener, Session};
use transport::Writer;

mod authenticate;
mod transport;

/// Produce requests one connection may have read and not yet answered.
pub(crate) const MAX_PIPELINED: usize = 8;

/// The connections open now, by client address, against `max.connections` and
/// `max.connections.per.ip`.
#[derive(Debug)]
pub(crate) struct ConnectionLimits {
    config: ConnectionConfig,
    open: Mutex<HashMap<IpAddr, usize>>,
    total: AtomicUsize,
    last_warning: Mutex<Option<Instant>>,
    /// Bytes of requests read and not yet answered, over every connection.
    queued: AtomicUsize,
    answered: Notify,
}

/// A connection's place under the limits, given back when the connection ends.
#[derive(Debug)]
pub(crate) struct Slot {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.limits.lock_open();
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
        self.limits.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Bytes of one request counted against `queued.max.request.bytes` until it is answered.
#[derive(Debug)]
pub(crate) struct Queued {
    limits: Arc<ConnectionLimits>,
    bytes: usize,
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.limits.queued.fetch_sub(self.bytes, Ordering::AcqRel);
        self.limits.answered.notify_waiters();
    }
}

impl ConnectionLimits {
    pub(crate) fn new(config: ConnectionConfig) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            config,
            open: Mutex::new(HashMap::new()),
            total: AtomicUsize::new(0),
            last_warning: Mutex::new(None),
            queued: AtomicUsize::new(0),
            answered: Notify::new(),
        })
    }

    fn lock_open(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a new connection from `ip`, or `None` when a limit is reached (the refusal is
    /// logged at most once a second).
    pub(crate) fn admit(self: &Arc<Self>, peer: SocketAddr) -> Option<Slot> {
        let ip = peer.ip();
        let mut open = self.lock_open();
        let from_ip = open.get(&ip).copied().unwrap_or(0);
        let total = self.total.load(Ordering::Acquire);
        let refused = if total >= self.config.max_connections {
            Some(("max.connections", self.config.max_connections))
        } else if from_ip >= self.config.max_connections_per_ip {
            Some(("max.connections.per.ip", self.config.max_connections_per_ip))
        } else {
            None
        };
        if let Some((limit, value)) = refused {
            drop(open);
            self.warn_refused(peer, limit, value);
            return None;
        }
        open.insert(ip, from_ip + 1);
        self.total.fetch_add(1, Ordering::AcqRel);
        Some(Slot {
            limits: self.clone(),
            ip,
        })
    }

    fn warn_refused(&self, peer: SocketAddr, limit: &str, value: usize) {
        let mut last = self.last_warning.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
            *last = Some(now);
            tracing::warn!(%peer, "refusing a connection: {limit} ({value}) reached");
        }
    }

    /// Waits until the requests read and not yet answered hold fewer bytes than
    /// `queued.max.request.bytes`.
    async fn room_for_requests(&self) {
        let Some(limit) = self.config.queued_max_request_bytes else {
            return;
        };
        loop {
            let answered = self.answered.notified();
            if self.queued.load(Ordering::Acquire) < limit {
                return;
            }
            answered.await;
        }
    }

    fn queue(self: &Arc<Self>, bytes: usize) -> Queued {
        self.queued.fetch_add(bytes, Ordering::AcqRel);
        Queued {
            limits: self.clone(),
            bytes,
        }
    }
}

type Answer<'a> = Pin<Box<dyn Future<Output = Result<Option<Body>, DispatchError>> + Send + 'a>>;

/// A request read and dispatched, whose answer is not written yet.
/// A produce's place in its connection's line: the connection reads no further request until
/// this is dropped, which the produce does once its appends are queued on its I/O lane.
#[derive(Debug)]
pub(crate) struct InLine(#[allow(dead_code)] oneshot::Sender<()>);

/// What a produce holds of its connection: its bytes against `queued.max.request.bytes`, and
/// its place in line.
#[derive(Debug)]
pub(crate) struct ProduceSlot {
    pub(crate) held: Queued,
    pub(crate) line: InLine,
}

struct InFlight<'a> {
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    answer: Answer<'a>,
    /// The request's bytes against `queued.max.request.bytes`, until it has run (its first
    /// poll). A produce's go with its append job instead and come back once its appends are done
    /// on the I/O thread, not when replication answers it, so parked produces never keep replica
    /// fetches from being read.
    queued: Option<Queued>,
    /// When the request was read, and the probe its answer is counted by.
    started: Instant,
    requests: &'a crate::metrics::RequestProbe,
    /// Time spent handling it on this thread (its polls), for the request quota.
    spent: Arc<AtomicU64>,
    broker: &'a Broker,
    session: &'a Session,
    client_id: Option<kafka_protocol::protocol::StrBytes>,
}

impl InFlight<'_> {
    /// Counts the request's handling time against its client's request quota; how long the
    /// client must wait (the connection is throttled that long).
    fn charge_request_time(&self) -> Duration {
        let spent = Duration::from_nanos(self.spent.load(Ordering::Relaxed));
        let image = self.broker.image();
        // Replication and the controller's transaction markers are never throttled.
        let exempt =
            self.api == ApiKey::WriteTxnMarkers || self.session.replication.load(Ordering::Relaxed);
        if image.quotas.is_empty() || exempt {
            return Duration::ZERO;
        }
        let client_id = self.client_id.as_deref().unwrap_or("");
        let wait = self.broker.quotas.record(
            &image.quotas,
            crate::quota::Kind::Request,
            self.session.quota_client(client_id),
            spent.as_secs_f64(),
            Instant::now(),
        );
        self.session.throttle(wait);
        wait
    }
}

/// A future with the time spent in its polls added up.
struct Timed<F> {
    inner: Pin<Box<F>>,
    spent: Arc<AtomicU64>,
}

impl<F: Future> Future for Timed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let began = Instant::now();
        let out = self.inner.as_mut().poll(cx);
        let took = began.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        self.spent.fetch_add(took, Ordering::Relaxed);
        out
    }
}

/// Serves one connection until the client leaves, a frame is malformed, it idles too long, or
/// the broker shuts down.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    listener: Arc<Listener>,
    limits: Arc<ConnectionLimits>,
    _slot: Slot,
    mut shutdown: watch::Receiver<bool>,
) {
    let opened = tokio::select! {
        _ = shutdown.changed() => return,
        opened = transport::open(stream, peer, &listener) => opened,
    };
    let Some((mut read, mut write, principal)) = opened else {
        return;
    };
    let mut session = Session {
        peer,
        listener,
        principal,
        throttled_until: Default::default(),
        replication: Default::default(),
    };
    let socket_max = broker.config.socket_request_max_bytes;
    let mut reader = FrameReader::new(socket_max.min(authenticate::MAX_AUTH_FRAME));
    // When the SASL session ends (connections.max.reauth.ms), unless renewed.
    let mut expires: Option<tokio::time::Instant> = None;
    // The SASL mechanism the connection logged in with.
    let mut mechanism: Option<crate::security::sasl::Mechanism> = None;
    if session.listener.protocol.sasl() {
        // The whole exchange within connections.max.idle.ms.
        let limit = Duration::from_millis(limits.config.connections_max_idle_ms.max(1));
        let authenticated = tokio::select! {
            _ = shutdown.changed() => return,
            done = tokio::time::timeout(
                limit,
                authenticate::authenticate(&broker, &session, None, &mut reader, &mut read, &mut write),
            ) => done,
        };
        match authenticated {
            Ok(Some(done)) => {
                session.principal = done.principal;
                expires = done.expires;
                mechanism = Some(done.mechanism);
            }
            Ok(None) => return,
            Err(_) => {
                tracing::warn!(%peer, "closing connection: no SASL authentication within connections.max.idle.ms");
                return;
            }
        }
    }
    reader.set_max(socket_max);
    let idle = Duration::from_millis(limits.config.connections_max_idle_ms.max(1));
    // Past what a deadline can hold (a huge setting means no limit): never idle out.
    let idle_deadline =
        |since: tokio::time::Instant| since.checked_add(idle).unwrap_or_else(far_future);
    let mut in_flight: VecDeque<InFlight<'_>> = VecDeque::new();
    // A request other than Produce, read while answers were still in flight: it runs once they
    // are out.
    let mut held: Option<(frame::RequestFrame, Queued)> = None;
    // A produce that has not queued its appends yet (it asks a transaction coordinator
    // first), driven on its own until it has, then put in line: nothing more is read meanwhile.
    let mut checking: Option<(InFlight<'_>, oneshot::Receiver<()>)> = None;
    let mut last_request = tokio::time::Instant::now();
    loop {
        if held.is_some() && in_flight.is_empty() && checking.is_none() {
            let Some((request, queued)) = held.take() else {
                continue;
            };
            // A session that ended closes the connection, even for a late re-authentication.
            if session_over(expires, &session) {
                return;
            }
            if request.api == ApiKey::SaslHandshake && session.listener.protocol.sasl() {
                let renewed = tokio::select! {
                    _ = shutdown.changed() => return,
                    renewed = reauthenticate(
                        &broker, &session, mechanism, request, &mut reader, &mut read, &mut write,
                    ) => renewed,
                };
                match renewed {
                    Some(until) => expires = until,
                    None => return,
                }
                reader.set_max(socket_max);
                last_request = tokio::time::Instant::now();
                continue;
            }
            let (mut entry, _line) = dispatch(&broker, request, &session, queued);
            let result = (&mut entry.answer).await;
            if !answer(&mut write, peer, entry, result).await {
                return;
            }
            last_request = tokio::time::Instant::now();
            continue;
        }
        // Only produces run side by side: behind anything else, nothing more is read.
        let can_read = held.is_none()
            && checking.is_none()
            && in_flight.len() < MAX_PIPELINED
            && in_flight.iter().all(|e| e.api == ApiKey::Produce);
        tokio::select! {
            _ = shutdown.changed() => return,
            done = drive_check(&mut checking), if checking.is_some() => {
                if let Some((mut entry, _)) = checking.take() {
                    if let Some(result) = done {
                        entry.answer = Box::pin(std::future::ready(result));
                    }
                    in_flight.push_back(entry);
                }
            }
            result = head(&mut in_flight), if !in_flight.is_empty() => {
                let Some(entry) = in_flight.pop_front() else { continue };
                if !answer(&mut write, peer, entry, result).await {
                    return;
                }
                last_request = tokio::time::Instant::now();
            }
            frame = async {
                limits.room_for_requests().await;
                session.throttled().await;
                reader.next(&mut read).await
            }, if can_read => {
                let request = match frame.and_then(frame::parse_request) {
                    Ok(request) => request,
                    Err(FrameError::Closed) => return,
                    Err(e) => {
                        tracing::warn!(%peer, principal = %session.principal, error = %e, "closing connection");
                        return;
                    }
                };
                last_request = tokio::time::Instant::now();
                let queued = limits.queue(request.body.len());
                // A re-authentication, like any request but a produce, waits for the answers
                // in flight: it runs alone.
                if request.api != ApiKey::Produce
                    && (!in_flight.is_empty() || request.api == ApiKey::SaslHandshake)
                {
                    held = Some((request, queued));
                    continue;
                }
                if session_over(expires, &session) {
                    return;
                }
                let (mut entry, mut line) = dispatch(&broker, request, &session, queued);
                // The first poll runs the produce's appends now, in arrival order.
                let first = poll_once(&mut entry.answer).await;
                entry.queued = None;
                let line = line
                    .as_mut()
                    .is_some_and(|l| l.try_recv() == Err(oneshot::error::TryRecvError::Empty))
                    .then_some(line)
                    .flatten();
                match first {
                    Poll::Pending if line.is_some() => {
                        checking = line.map(|l| (entry, l));
                    }
                    Poll::Ready(result) if in_flight.is_empty() => {
                        if !answer(&mut write, peer, entry, result).await {
                            return;
                        }
                    }
                    Poll::Ready(result) => {
                        entry.answer = Box::pin(std::future::ready(result));
                        in_flight.push_back(entry);
                    }
                    Poll::Pending => in_flight.push_back(entry),
                }
            }
            _ = tokio::time::sleep_until(idle_deadline(last_request)), if in_flight.is_empty() && held.is_none() && checking.is_none() => {
                tracing::debug!(%peer, "closing a connection idle for connections.max.idle.ms");
                return;
            }
        }
    }
}

/// Whether the SASL session ran out (`connections.max.reauth.ms`) without a re-authentication:
/// the connection closes at its next request, as Kafka closes it.
fn session_over(expires: Option<tokio::time::Instant>, session: &Session) -> bool {
    let over = expires.is_some_and(|e| tokio::time::Instant::now() >= e);
    if over {
        tracing::info!(peer = %session.peer, principal = %session.principal,
            "closing connection: its SASL session expired without re-authentication (connections.max.reauth.ms)");
    }
    over
}

/// A re-authentication (KIP-368) started by `handshake`: it must succeed, within
/// connections.max.idle.ms, with the mechanism of the first login, and name the connection's
/// principal again. The session's new end, or `None` when the connection must close.
async fn reauthenticate(
    broker: &Arc<Broker>,
    session: &Session,
    mechanism: Option<crate::security::sasl::Mechanism>,
    handshake: frame::RequestFrame,
    reader: &mut FrameReader,
    read: &mut transport::Reader,
    write: &mut transport::Writer,
) -> Option<Option<tokio::time::Instant>> {
    reader.set_max(
        broker
            .config
            .socket_request_max_bytes
            .min(authenticate::MAX_AUTH_FRAME),
    );
    let limit = Duration::from_millis(broker.config.connections.connections_max_idle_ms.max(1));
    let done = tokio::time::timeout(
        limit,
        authenticate::authenticate(broker, session, Some(handshake), reader, read, write),
    )
    .await
    .ok()??;
    if Some(done.mechanism) != mechanism {
        tracing::warn!(peer = %session.peer, principal = %session.principal,
            "closing connection: a re-authentication may not change the SASL mechanism");
        return None;
    }
    if done.principal != session.principal {
        tracing::warn!(peer = %session.peer, from = %session.principal, to = %done.principal,
            "closing connection: a re-authentication may not change the principal");
        return None;
    }
    tracing::info!(peer = %session.peer, principal = %session.principal, "re-authenticated");
    Some(done.expires)
}

/// Starts a request; for a produce, also the end of its place in line (see [`InLine`]).
fn dispatch<'a>(
    broker: &'a Arc<Broker>,
    request: frame::RequestFrame,
    session: &'a Session,
    queued: Queued,
) -> (InFlight<'a>, Option<oneshot::Receiver<()>>) {
    let (api, version, correlation_id) = (
        request.api,
        request.header.request_api_version,
        request.header.correlation_id,
    );
    let (slot, queued, line) = if api == ApiKey::Produce {
        let (tx, rx) = oneshot::channel();
        let slot = ProduceSlot {
            held: queued,
            line: InLine(tx),
        };
        (Some(slot), None, Some(rx))
    } else {
        (None, Some(queued), None)
    };
    let client_id = request.header.client_id.clone();
    let spent = Arc::new(AtomicU64::new(0));
    let entry = InFlight {
        api,
        version,
        correlation_id,
        answer: Box::pin(Timed {
            inner: Box::pin(apis::dispatch(broker, request, session, slot)),
            spent: spent.clone(),
        }),
        queued,
        started: Instant::now(),
        requests: &broker.requests,
        spent,
        broker,
        session,
        client_id,
    };
    (entry, line)
}

/// A deadline no connection reaches.
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}

/// Polls a future once, with this task's waker.
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx))).await
}

/// Drives a produce that holds its place in line until it has queued its appends (`None`) or
/// answered (`Some`).
async fn drive_check(
    checking: &mut Option<(InFlight<'_>, oneshot::Receiver<()>)>,
) -> Option<Result<Option<Body>, DispatchError>> {
    let Some((entry, line)) = checking.as_mut() else {
        return std::future::pending().await;
    };
    std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = entry.answer.as_mut().poll(cx) {
            return Poll::Ready(Some(result));
        }
        Pin::new(&mut *line).poll(cx).map(|_| None)
    })
    .await
}

/// The answer of the oldest request in flight.
async fn head(in_flight: &mut VecDeque<InFlight<'_>>) -> Result<Option<Body>, DispatchError> {
    match in_flight.front_mut() {
        Some(entry) => (&mut entry.answer).await,
        None => std::future::pending().await,
    }
}

/// Writes one request's answer; returns whether the connection stays open.
async fn answer(
    write: &mut Writer,
    peer: SocketAddr,
    entry: InFlight<'_>,
    result: Result<Option<Body>, DispatchError>,
) -> bool {
    let (api, version) = (entry.api, entry.version);
    let mut body = match result {
        Ok(Some(body)) => body,
        Ok(None) => {
            // acks=0: no answer
            entry.requests.answered(api, entry.started.elapsed());
            entry.charge_request_time();
            return true;
        }
        Err(e) => {
            tracing::warn!(%peer, ?api, version, error = %e, "closing connection");
            return false;
        }
    };
    let wait = entry.charge_request_time();
    if !wait.is_zero() {
        body.throttle(api, wait.as_millis().min(i32::MAX as u128) as i32);
    }
    // An ApiVersions request of a version we do not know is answered in v0 (KIP-511).
    let unsupported = apis::spec(api).is_none_or(|s| version > s.max);
    let version = if api == ApiKey::ApiVersions && unsupported {
        0
    } else {
        version
    };
    let chunks = match frame::encode_response(api, version, entry.correlation_id, body) {
        Ok(chunks) => chunks,
        Err(e) => {
            tracing::error!(%peer, error = %e, "cannot encode a response; closing connection");
            return false;
        }
    };
    if let Err(e) = write.write_chunks(&chunks).await {
        tracing::debug!(%peer, error = %e, "write failed; closing connection");
        return false;
    }
    entry.requests.answered(api, entry.started.elapsed());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_connections_in_total_and_per_address() {
        let limits = ConnectionLimits::new(ConnectionConfig {
            max_connections: 3,
            max_connections_per_ip: 2,
            ..ConnectionConfig::default()
        });
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.2:1000".parse().unwrap();
        let a1 = limits.admit(a).expect("first from a");
        let _a2 = limits.admit(a).expect("second from a");
        assert!(limits.admit(a).is_none(), "a third from one address");
        let _b1 = limits.admit(b).expect("first from b");
        assert!(limits.admit(b).is_none(), "a fourth in total");
        drop(a1);
        assert!(limits.admit(b).is_some(), "a slot came free");
    }
}

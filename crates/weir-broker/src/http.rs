//! The broker's HTTP listener (`http.listeners`): `/metrics` for Prometheus, `/health` (the
//! process answers), `/ready` (the broker serves its partitions), and the console (`/`, with
//! `/api/cluster`, see `console.rs`). HTTP/1.1 through `hyper`.
//!
//! Limits: [`MAX_CONNECTIONS`] at once (more are closed as accepted), a request's head within
//! [`HEAD_TIMEOUT`], and a connection closed after [`CONNECTION_LIFETIME`] (a scraper opens a
//! new one).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::broker::Broker;

/// HTTP connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a request's head may take to arrive.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one connection is kept, however busy.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);

/// The default of `http.listeners`: loopback only. When its port is taken, the broker listens
/// on a free port instead and says where.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8090";

/// Binds `addr`; for the default address, a taken port falls back to a free one.
pub(crate) async fn bind(addr: SocketAddr, default: bool) -> std::io::Result<TcpListener> {
    match TcpListener::bind(addr).await {
        Err(e) if default && e.kind() == std::io::ErrorKind::AddrInUse => {
            let any = SocketAddr::new(addr.ip(), 0);
            let listener = TcpListener::bind(any).await?;
            tracing::warn!(taken = %addr, instead = ?listener.local_addr().ok(),
                "the default HTTP port is taken; listening on a free port instead");
            Ok(listener)
        }
        other => other,
    }
}

/// Serves HTTP on `listener` until `shutdown`.
pub(crate) async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let local = listener.local_addr().ok();
    // One scrape renders at a time: each reads every partition, on the blocking threads that
    // fetches read on too.
    let rendering = Arc::new(tokio::sync::Mutex::new(()));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        continue; // over the limit: closed as accepted
                    };
                    let broker = broker.clone();
                    let rendering = rendering.clone();
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let (broker, rendering) = (broker.clone(), rendering.clone());
                            async move {
                                let answer = match foreign(local, &req) {
                                    Some(why) => text(StatusCode::FORBIDDEN, why),
                                    None => route(&broker, &rendering, req).await,
                                };
                                Ok::<_, Infallible>(answer)
                            }
                        });
                        let connection = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(HEAD_TIMEOUT)
                            .serve_connection(TokioIo::new(stream), service);
                        let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    connections.shutdown().await;
}

/// Why a request from a browser is refused, if it is: on a loopback listener, a `Host` that is
/// not a loopback name (a DNS-rebinding page's), and for the console's POST, an `Origin` other
/// than the page's own or a body that is not declared JSON (a cross-site form's).
fn foreign(local: Option<SocketAddr>, req: &Request<Incoming>) -> Option<&'static str> {
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    let host = header(hyper::header::HOST);
    if local.is_some_and(|l| l.ip().is_loopback()) {
        let name = host.map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name));
        let loopback = name.is_some_and(|n| {
            n.eq_ignore_ascii_case("localhost")
                || n.trim_matches(|c| c == '[' || c == ']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        if !loopback {
            return Some("this listener answers only requests addressed to loopback\n");
        }
    }
    if req.method() == Method::POST && req.uri().path() == "/api/messages" {
        let json =
            header(hyper::header::CONTENT_TYPE).is_some_and(|t| t.starts_with("application/json"));
        if !json {
            return Some("a POST must carry application/json\n");
        }
        if let (Some(origin), Some(host)) = (header(hyper::header::ORIGIN), host) {
            let same = origin
                .strip_prefix("http://")
                .is_some_and(|o| o.eq_ignore_ascii_case(host));
            if !same {
                return Some("a POST from another origin is refused\n");
            }
        }
    }
    None
}

async fn route(
    broker: &Arc<Broker>,
    rendering: &tokio::sync::Mutex<()>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if req.method() == Method::POST && req.uri().path() == "/api/messages" {
        return send_message(broker, req).await;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    }
    match req.uri().path() {
        "/metrics" if req.method() == Method::HEAD => Response::builder()
            .header("content-type", crate::metrics::CONTENT_TYPE)
            .body(Full::new(Bytes::new()))
            .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "")),
        "/metrics" => {
            let broker = broker.clone();
            let _one = rendering.lock().await;
            match tokio::task::spawn_blocking(move || crate::metrics::render(&broker)).await {
                Ok(body) => Response::builder()
                    .header("content-type", crate::metrics::CONTENT_TYPE)
                    .body(Full::new(Bytes::from(body)))
                    .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "")),
                Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "metrics failed\n"),
            }
        }
        "/health" => text(StatusCode::OK, "ok\n"),
        "/ready" => match broker.ready() {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("not ready: {why}\n"),
            ),
        },
        "/api/groups" => {
            // The coordinator's and partitions' locks: off the async workers.
            let broker = broker.clone();
            match tokio::task::spawn_blocking(move || crate::console::groups(&broker)).await {
                Ok(groups) => json(&groups),
                Err(_) => error_json(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the groups"),
            }
        }
        // The console has no login: where clients must, it shows no records.
        "/api/messages" if crate::console::secured(broker).is_some() => error_json(
            StatusCode::FORBIDDEN,
            &format!(
                "message browsing is off: {}",
                crate::console::secured(broker).unwrap_or_default()
            ),
        ),
        "/api/messages" => {
            let query = match crate::console::MessagesQuery::parse(req.uri().query().unwrap_or(""))
            {
                Ok(q) => q,
                Err(why) => return error_json(StatusCode::BAD_REQUEST, &why),
            };
            let broker = broker.clone();
            let read =
                tokio::task::spawn_blocking(move || crate::console::read_messages(&broker, &query))
                    .await;
            match read {
                Ok(Ok(messages)) => json(&messages),
                Ok(Err(why)) => error_json(StatusCode::NOT_FOUND, &why),
                Err(_) => error_json(StatusCode::INTERNAL_SERVER_ERROR, "the read failed"),
            }
        }
        "/api/cluster" => {
            // Sizes come from the logs' locks: off the async workers.
            let broker = broker.clone();
            match tokio::task::spawn_blocking(move || crate::console::cluster(&broker)).await {
                Ok(cluster) => json(&cluster),
                Err(_) => error_json(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the cluster"),
            }
        }
        path => match crate::console::FILES.iter().find(|(p, _, _)| *p == path) {
            Some((_, content_type, body)) => Response::builder()
                .header("content-type", *content_type)
                .header("x-frame-options", "DENY")
                .header(
                    "content-security-policy",
                    "default-src 'self'; frame-ancestors 'none'",
                )
                .body(Full::new(Bytes::from_static(body.as_bytes())))
                .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "")),
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        },
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json(value: &impl serde::Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_vec(value) {
        Ok(body) => Response::builder()
            .header("content-type", "application/json")
            .header("cache-control", "no-store")
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "")),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "cannot write JSON\n"),
    }
}

fn error_json(status: StatusCode, why: &str) -> Response<Full<Bytes>> {
    let mut response = json(&serde_json::json!({ "error": why }));
    *response.status_mut() = status;
    response
}

/// `POST /api/messages`: the console's test message (see `console::send`).
async fn send_message(broker: &Arc<Broker>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    use crate::console::Refused;
    use http_body_util::BodyExt;
    let body = match http_body_util::Limited::new(req.into_body(), crate::console::MAX_BODY)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            return error_json(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("cannot read the body: {e}"),
            )
        }
    };
    match crate::console::send(broker, &body).await {
        Ok(sent) => json(&sent),
        Err(Refused::Forbidden(why)) => error_json(StatusCode::FORBIDDEN, &why),
        Err(Refused::Bad(why)) => error_json(StatusCode::BAD_REQUEST, &why),
        Err(Refused::Failed(why)) => error_json(StatusCode::BAD_GATEWAY, &why),
    }
}

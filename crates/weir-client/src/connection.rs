//! One TCP connection to one broker: framing, correlation ids, pipelined requests, and the
//! version negotiation of KIP-35 (ApiVersions on connect; every request then uses the highest
//! version both sides support).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes, VersionRange};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::security::Security;

/// The write side of a connection, plain or TLS.
struct Writer(Box<dyn AsyncWrite + Send + Unpin>);

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

impl Writer {
    /// Writes one whole frame and flushes it (TLS holds bytes back until flushed).
    async fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        self.0.write_all(frame).await?;
        self.0.flush().await
    }

    /// Writes a frame given as chunks (vectored, so no chunk is copied) and flushes it.
    async fn send_parts(&mut self, parts: &[Bytes]) -> std::io::Result<()> {
        let mut slices: Vec<std::io::IoSlice<'_>> = parts
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| std::io::IoSlice::new(p))
            .collect();
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            let n = self.0.write_vectored(slices).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            std::io::IoSlice::advance_slices(&mut slices, n);
        }
        self.0.flush().await
    }
}

/// Largest response accepted from a broker.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

type Pending = Arc<Mutex<HashMap<i32, oneshot::Sender<Result<Bytes>>>>>;

/// A raw connection, for callers that speak the protocol themselves (a broker's replica
/// fetcher); applications use the producer, consumer and admin clients.
#[derive(Debug)]
pub struct Connection {
    addr: String,
    client_id: StrBytes,
    writer: tokio::sync::Mutex<Writer>,
    pending: Pending,
    next_correlation: AtomicI32,
    closed: Arc<AtomicBool>,
    versions: HashMap<i16, VersionRange>,
    timeout: Duration,
}

fn io(addr: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        addr: addr.to_string(),
        source,
    }
}

impl Connection {
    /// Connects over plain TCP and negotiates API versions.
    pub async fn connect(addr: &str, client_id: &str, timeout: Duration) -> Result<Connection> {
        Self::connect_with(addr, client_id, timeout, &Security::plaintext()).await
    }

    /// Connects with `security` (TLS when it says so, verifying the broker's certificate for
    /// `addr`'s host) and negotiates API versions.
    pub async fn connect_with(
        addr: &str,
        client_id: &str,
        timeout: Duration,
        security: &Security,
    ) -> Result<Connection> {
        let connector = security.connector(addr)?;
        let expired = |_| Error::Timeout(timeout.as_millis() as u64);
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(expired)?
            .map_err(io(addr))?;
        let _ = stream.set_nodelay(true);
        let (mut reader, writer): (Box<dyn AsyncRead + Send + Unpin>, Writer) = match connector {
            None => {
                let (r, w) = stream.into_split();
                (Box::new(r), Writer(Box::new(w)))
            }
            Some((connector, name)) => {
                let tls = tokio::time::timeout(timeout, connector.connect(name, stream))
                    .await
                    .map_err(expired)?
                    .map_err(|e| Error::Tls {
                        addr: addr.to_string(),
                        reason: e.to_string(),
                    })?;
                let (r, w) = tokio::io::split(tls);
                (Box::new(r), Writer(Box::new(w)))
            }
        };
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let closed = Arc::new(AtomicBool::new(false));
        {
            let pending = pending.clone();
            let closed = closed.clone();
            let addr = addr.to_string();
            tokio::spawn(async move {
                let why = loop {
                    let mut size = [0u8; 4];
                    if let Err(e) = reader.read_exact(&mut size).await {
                        break e.to_string();
                    }
                    let size = i32::from_be_bytes(size);
                    if size < 4 || size as usize > MAX_RESPONSE_BYTES {
                        break format!("bad response size {size}");
                    }
                    let mut buf = vec![0u8; size as usize];
                    if let Err(e) = reader.read_exact(&mut buf).await {
                        break e.to_string();
                    }
                    let correlation = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                    let tx = pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&correlation);
                    if let Some(tx) = tx {
                        let _ = tx.send(Ok(Bytes::from(buf)));
                    }
                };
                closed.store(true, Ordering::Release);
                tracing::debug!(%addr, reason = %why, "connection closed");
                for (_, tx) in pending.lock().unwrap_or_else(|p| p.into_inner()).drain() {
                    let _ = tx.send(Err(Error::Closed(addr.clone())));
                }
            });
        }
        let mut conn = Connection {
            addr: addr.to_string(),
            client_id: StrBytes::from_string(client_id.to_string()),
            writer: tokio::sync::Mutex::new(writer),
            pending,
            next_correlation: AtomicI32::new(1),
            closed,
            versions: HashMap::new(),
            timeout,
        };
        let response: ApiVersionsResponse = conn
            .request_at(
                &ApiVersionsRequest::default()
                    .with_client_software_name(StrBytes::from_static_str("weir-client"))
                    .with_client_software_version(StrBytes::from_static_str(env!(
                        "CARGO_PKG_VERSION"
                    ))),
                3,
            )
            .await?;
        let response = if response.error_code != 0 {
            // The broker answered in v0 with the versions it knows (KIP-511); try v0.
            conn.request_at::<ApiVersionsRequest>(&ApiVersionsRequest::default(), 0)
                .await?
        } else {
            response
        };
        conn.versions = response
            .api_keys
            .iter()
            .map(|k| {
                (
                    k.api_key,
                    VersionRange {
                        min: k.min_version,
                        max: k.max_version,
                    },
                )
            })
            .collect();
        if let Some(sasl) = security.sasl() {
            crate::sasl::authenticate(&conn, sasl).await?;
        }
        Ok(conn)
    }

    /// Whether the broker closed the connection (it must be opened again).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The highest version of `R` both this client and the broker support.
    pub(crate) fn version_for<R: Request>(&self, max_wanted: i16) -> Result<i16> {
        let ours = VersionRange {
            min: R::VERSIONS.min,
            max: R::VERSIONS.max.min(max_wanted),
        };
        let api = ApiKey::try_from(R::KEY)
            .map(|k| format!("{k:?}"))
            .unwrap_or_else(|_| R::KEY.to_string());
        let theirs = self
            .versions
            .get(&R::KEY)
            .ok_or_else(|| Error::UnsupportedApi { api: api.clone() })?;
        let both = ours.intersect(theirs);
        if both.is_empty() {
            return Err(Error::UnsupportedApi { api });
        }
        Ok(both.max)
    }

    /// Sends a request at the best common version (capped at `max_wanted`) and waits for its answer.
    pub async fn request<R: Request>(&self, req: &R, max_wanted: i16) -> Result<(R::Response, i16)>
    where
        R::Response: Send + 'static,
    {
        let version = self.version_for::<R>(max_wanted)?;
        Ok((self.request_at(req, version).await?, version))
    }

    fn header<R: Request>(&self, version: i16, correlation: i32) -> RequestHeader {
        RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(self.client_id.clone()))
    }

    fn encode<R: Request>(&self, req: &R, version: i16, correlation: i32) -> Result<Bytes> {
        let api = ApiKey::try_from(R::KEY)
            .map_err(|_| Error::Protocol(format!("unknown api key {}", R::KEY)))?;
        let header = self.header::<R>(version, correlation);
        // Sized once: a produce request carries its batches, which growing by doubling
        // would copy again and again.
        let body = req.compute_size(version).unwrap_or(0);
        let mut buf = BytesMut::with_capacity(64 + body);
        buf.put_i32(0);
        header
            .encode(&mut buf, api.request_header_version(version))
            .map_err(|e| Error::Protocol(e.to_string()))?;
        req.encode(&mut buf, version)
            .map_err(|e| Error::Protocol(e.to_string()))?;
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        Ok(buf.freeze())
    }

    pub(crate) async fn request_at<R: Request>(&self, req: &R, version: i16) -> Result<R::Response>
    where
        R::Response: Send + 'static,
    {
        self.write_request(req, version).await?.await
    }

    /// Writes a request at the best common version (capped at `max_wanted`) now; the future
    /// returned resolves to its answer. Requests written one after another reach the broker,
    /// and are answered, in that order.
    pub(crate) async fn start_request<R: Request>(
        &self,
        req: &R,
        max_wanted: i16,
    ) -> Result<impl std::future::Future<Output = Result<R::Response>> + Send + 'static>
    where
        R::Response: Send + 'static,
    {
        let version = self.version_for::<R>(max_wanted)?;
        self.write_request(req, version).await
    }

    /// A Produce request written now without copying its batches (`producer/frame.rs`); the
    /// future returned resolves to its answer, as with [`Connection::start_request`].
    pub(crate) async fn start_produce(
        &self,
        req: &kafka_protocol::messages::ProduceRequest,
        max_wanted: i16,
    ) -> Result<
        impl std::future::Future<Output = Result<kafka_protocol::messages::ProduceResponse>>
            + Send
            + 'static,
    > {
        use kafka_protocol::messages::ProduceRequest;
        let version = self.version_for::<ProduceRequest>(max_wanted)?;
        if self.is_closed() {
            return Err(Error::Closed(self.addr.clone()));
        }
        let correlation = self.next_correlation.fetch_add(1, Ordering::Relaxed);
        let header = self.header::<ProduceRequest>(version, correlation);
        let parts = crate::producer::frame::encode(req, version, &header)?;
        self.write_frame::<ProduceRequest>(&parts, correlation, version)
            .await
    }

    async fn write_request<R: Request>(
        &self,
        req: &R,
        version: i16,
    ) -> Result<impl std::future::Future<Output = Result<R::Response>> + Send + 'static>
    where
        R::Response: Send + 'static,
    {
        if self.is_closed() {
            return Err(Error::Closed(self.addr.clone()));
        }
        let correlation = self.next_correlation.fetch_add(1, Ordering::Relaxed);
        let frame = self.encode(req, version, correlation)?;
        self.write_frame::<R>(std::slice::from_ref(&frame), correlation, version)
            .await
    }

    /// Writes a frame (chunks, in order) and hands back the future of its answer.
    async fn write_frame<R: Request>(
        &self,
        parts: &[Bytes],
        correlation: i32,
        version: i16,
    ) -> Result<impl std::future::Future<Output = Result<R::Response>> + Send + 'static>
    where
        R::Response: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(correlation, tx);
        {
            let mut writer = self.writer.lock().await;
            // A broker that stops reading must not hold the writer (and whoever waits on it)
            // for good. A frame cut off midway leaves the stream unusable: the connection is
            // closed, and opened afresh by the next request.
            let sent = tokio::time::timeout(self.timeout, writer.send_parts(parts)).await;
            let failed = match sent {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(io(&self.addr)(e)),
                Err(_) => Some(Error::Timeout(self.timeout.as_millis() as u64)),
            };
            if let Some(e) = failed {
                self.closed.store(true, Ordering::Release);
                self.pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&correlation);
                return Err(e);
            }
        }
        let (timeout, pending, addr) = (self.timeout, self.pending.clone(), self.addr.clone());
        Ok(async move {
            let answer = tokio::time::timeout(timeout, rx).await;
            let mut bytes = match answer {
                Err(_) => {
                    pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&correlation);
                    return Err(Error::Timeout(timeout.as_millis() as u64));
                }
                Ok(Err(_)) => return Err(Error::Closed(addr)),
                Ok(Ok(result)) => result?,
            };
            let api =
                ApiKey::try_from(R::KEY).map_err(|_| Error::Protocol("unknown api key".into()))?;
            let _header = ResponseHeader::decode(&mut bytes, api.response_header_version(version))
                .map_err(|e| Error::Protocol(e.to_string()))?;
            let response = R::Response::decode(&mut bytes, version)
                .map_err(|e| Error::Protocol(format!("{api:?} v{version}: {e}")))?;
            Ok(response)
        })
    }

    /// Sends a request that gets no answer (Produce with acks=0).
    pub(crate) async fn send_only<R: Request>(&self, req: &R, version: i16) -> Result<()> {
        let correlation = self.next_correlation.fetch_add(1, Ordering::Relaxed);
        let frame = self.encode(req, version, correlation)?;
        let mut writer = self.writer.lock().await;
        writer.send(&frame).await.map_err(io(&self.addr))
    }
}

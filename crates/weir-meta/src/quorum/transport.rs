//! The byte streams the quorum's RPC runs on: TCP, or TLS with certificates required on both
//! sides, in every real process, and (in tests only) turmoil's simulated network, so the
//! controller can be run under seeded network faults and crashes in one thread
//! ([`super::sim`]).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How long a TLS handshake on the quorum's port may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who may check a peer's certificate chain (already verified against the trusted CAs) and
/// say which principal it is, or why it may not talk to the quorum.
pub type Admit = dyn Fn(&[CertificateDer<'static>]) -> Result<String, String> + Send + Sync;

/// TLS for the quorum's connections (a CONTROLLER listener mapped to SSL): every connection
/// is mutual TLS, and `admit` decides which peers are served.
pub struct QuorumTls {
    /// This node's server side; it must require client certificates.
    pub server: Arc<rustls::ServerConfig>,
    /// This node's client side: the CAs that sign peers, and this node's certificate.
    pub client: Arc<rustls::ClientConfig>,
    pub admit: Box<Admit>,
}

impl std::fmt::Debug for QuorumTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QuorumTls")
    }
}

/// Which network the quorum talks over.
#[derive(Debug, Clone, Default)]
pub(crate) enum Net {
    #[default]
    Tcp,
    Tls(Arc<QuorumTls>),
    #[cfg(test)]
    Sim,
}

impl From<Option<Arc<QuorumTls>>> for Net {
    fn from(tls: Option<Arc<QuorumTls>>) -> Net {
        tls.map_or(Net::Tcp, Net::Tls)
    }
}

/// One connection.
#[derive(Debug)]
pub(crate) enum Conn {
    Tcp(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::TlsStream<tokio::net::TcpStream>>),
    #[cfg(test)]
    Sim(turmoil::net::TcpStream),
}

/// A peer's connection after the handshake, and the principal `admit` named.
pub(crate) async fn accept_tls(tls: &QuorumTls, conn: Conn) -> io::Result<(Conn, String)> {
    let Conn::Tcp(tcp) = conn else {
        return Err(io::Error::other("TLS runs over TCP only"));
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    let chain = stream
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.to_vec())
        .unwrap_or_default();
    if chain.is_empty() {
        return Err(io::Error::other("the peer presented no certificate"));
    }
    let principal = (tls.admit)(&chain).map_err(io::Error::other)?;
    Ok((
        Conn::Tls(Box::new(tokio_rustls::TlsStream::Server(stream))),
        principal,
    ))
}

/// A listening socket.
pub(crate) enum Listener {
    Tcp(tokio::net::TcpListener),
    #[cfg(test)]
    Sim(turmoil::net::TcpListener),
}

impl Net {
    /// Connects to `addr` (`host:port`; an IP address for TCP, a host name in simulation).
    pub(crate) async fn connect(&self, addr: &str) -> io::Result<Conn> {
        let tcp = |addr: &str| {
            let addr = addr.to_string();
            async move {
                let parsed: SocketAddr = addr
                    .parse()
                    .map_err(|e| io::Error::other(format!("bad address {addr}: {e}")))?;
                let stream = tokio::net::TcpStream::connect(parsed).await?;
                stream.set_nodelay(true)?;
                Ok::<_, io::Error>(stream)
            }
        };
        match self {
            Net::Tcp => Ok(Conn::Tcp(tcp(addr).await?)),
            Net::Tls(tls) => {
                let stream = tcp(addr).await?;
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = ServerName::try_from(host.to_string())
                    .map_err(|e| io::Error::other(format!("bad host {host}: {e}")))?;
                let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
                let stream =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, stream))
                        .await
                        .map_err(|_| {
                            io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
                        })??;
                Ok(Conn::Tls(Box::new(tokio_rustls::TlsStream::Client(stream))))
            }
            #[cfg(test)]
            Net::Sim => Ok(Conn::Sim(turmoil::net::TcpStream::connect(addr).await?)),
        }
    }

    /// How long a connection may take to open: `tcp` for TCP, longer with a TLS handshake.
    pub(crate) fn connect_timeout(&self, tcp: Duration) -> Duration {
        match self {
            Net::Tls(_) => tcp + HANDSHAKE_TIMEOUT.min(Duration::from_secs(3)),
            _ => tcp,
        }
    }

    pub(crate) async fn bind(&self, addr: SocketAddr) -> io::Result<Listener> {
        match self {
            Net::Tcp | Net::Tls(_) => Ok(Listener::Tcp(tokio::net::TcpListener::bind(addr).await?)),
            #[cfg(test)]
            Net::Sim => Ok(Listener::Sim(turmoil::net::TcpListener::bind(addr).await?)),
        }
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}

impl Listener {
    pub(crate) async fn accept(&self) -> io::Result<(Conn, SocketAddr)> {
        match self {
            Listener::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                stream.set_nodelay(true)?;
                Ok((Conn::Tcp(stream), peer))
            }
            #[cfg(test)]
            Listener::Sim(l) => {
                let (stream, peer) = l.accept().await?;
                Ok((Conn::Sim(stream), peer))
            }
        }
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr(),
            #[cfg(test)]
            Listener::Sim(l) => l.local_addr(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            #[cfg(test)]
            Conn::Sim(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            #[cfg(test)]
            Conn::Sim(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            #[cfg(test)]
            Conn::Sim(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            #[cfg(test)]
            Conn::Sim(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

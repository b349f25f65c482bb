//! The byte streams the quorum's RPC runs on: TCP in every real process, and (in tests only)
//! turmoil's simulated network, so the controller can be run under seeded network faults and
//! crashes in one thread ([`super::sim`]).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Which network the quorum talks over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Net {
    #[default]
    Tcp,
    #[cfg(test)]
    Sim,
}

/// One connection.
#[derive(Debug)]
pub(crate) enum Conn {
    Tcp(tokio::net::TcpStream),
    #[cfg(test)]
    Sim(turmoil::net::TcpStream),
}

/// A listening socket.
pub(crate) enum Listener {
    Tcp(tokio::net::TcpListener),
    #[cfg(test)]
    Sim(turmoil::net::TcpListener),
}

impl Net {
    /// Connects to `addr` (`host:port`; an IP address for TCP, a host name in simulation).
    pub(crate) async fn connect(self, addr: &str) -> io::Result<Conn> {
        match self {
            Net::Tcp => {
                let addr: SocketAddr = addr
                    .parse()
                    .map_err(|e| io::Error::other(format!("bad address {addr}: {e}")))?;
                let stream = tokio::net::TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                Ok(Conn::Tcp(stream))
            }
            #[cfg(test)]
            Net::Sim => Ok(Conn::Sim(turmoil::net::TcpStream::connect(addr).await?)),
        }
    }

    pub(crate) async fn bind(self, addr: SocketAddr) -> io::Result<Listener> {
        match self {
            Net::Tcp => Ok(Listener::Tcp(tokio::net::TcpListener::bind(addr).await?)),
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
            #[cfg(test)]
            Conn::Sim(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_flush(cx),
            #[cfg(test)]
            Conn::Sim(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(test)]
            Conn::Sim(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

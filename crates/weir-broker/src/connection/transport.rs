//! A connection's bytes: plain TCP, or TLS over it. Plain connections send fetched segment
//! bytes with sendfile(2); TLS must encrypt them, so they are read into memory first, on the
//! blocking pool.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWriteExt, Interest, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::frame::Chunk;
use crate::security::{tls, Listener, Principal};

/// How much of a segment a TLS connection reads into memory at a time.
const TLS_READ_PIECE: u64 = 256 * 1024;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

type Tls = TlsStream<TcpStream>;

/// The read side of a connection.
pub(crate) enum Reader {
    Plain(OwnedReadHalf),
    Tls(ReadHalf<Tls>),
}

/// The write side of a connection.
pub(crate) enum Writer {
    Plain(OwnedWriteHalf),
    Tls(WriteHalf<Tls>),
}

/// Opens a connection accepted on `listener`: the TLS handshake if it has one, and the
/// principal the connection speaks for (a client certificate's mapped subject, or
/// `User:ANONYMOUS`). `None` when the handshake fails, takes too long, or the certificate's
/// subject maps to no name; the reason is logged with the peer's address.
pub(crate) async fn open(
    stream: TcpStream,
    peer: SocketAddr,
    listener: &Listener,
) -> Option<(Reader, Writer, Principal)> {
    let Some(acceptor) = &listener.tls else {
        let (read, write) = stream.into_split();
        return Some((
            Reader::Plain(read),
            Writer::Plain(write),
            Principal::anonymous(),
        ));
    };
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::warn!(%peer, listener = %listener.name, error = %e, "TLS handshake failed; closing connection");
            return None;
        }
        Err(_) => {
            tracing::warn!(%peer, listener = %listener.name, "TLS handshake took over {HANDSHAKE_TIMEOUT:?}; closing connection");
            return None;
        }
    };
    let principal = match stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
    {
        None => Principal::anonymous(),
        Some(cert) => {
            let named = tls::subject_name(cert).and_then(|subject| {
                listener.principal_rules.apply(&subject).ok_or_else(|| {
                    format!("no ssl.principal.mapping.rules rule matches '{subject}'")
                })
            });
            match named {
                Ok(name) => Principal::user(&name),
                Err(why) => {
                    tracing::warn!(%peer, listener = %listener.name, "TLS client refused: {why}");
                    return None;
                }
            }
        }
    };
    tracing::debug!(%peer, listener = %listener.name, %principal, "TLS connection");
    let (read, write) = tokio::io::split(stream);
    Some((Reader::Tls(read), Writer::Tls(write), principal))
}

impl AsyncRead for Reader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Reader::Plain(r) => Pin::new(r).poll_read(cx, buf),
            Reader::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl Writer {
    /// Writes one answer's chunks.
    pub(crate) async fn write_chunks(&mut self, chunks: &[Chunk]) -> std::io::Result<()> {
        match self {
            Writer::Plain(stream) => {
                for chunk in chunks {
                    match chunk {
                        Chunk::Bytes(bytes) => stream.write_all(bytes).await?,
                        Chunk::File(slice) => match slice.file.os_file() {
                            Some(file) => send_file(stream.as_ref(), file, slice).await?,
                            // A file in memory (a simulated disk): its bytes are written as they are.
                            None => stream.write_all(&slice.read_to_vec()?).await?,
                        },
                    }
                }
                Ok(())
            }
            Writer::Tls(stream) => {
                for chunk in chunks {
                    match chunk {
                        Chunk::Bytes(bytes) => stream.write_all(bytes).await?,
                        Chunk::File(slice) => {
                            // In pieces: a fetch may name up to its whole size limit.
                            let mut position = slice.position;
                            let end = slice.position + slice.len;
                            while position < end {
                                let piece = weir_log::FileSlice {
                                    file: slice.file.clone(),
                                    position,
                                    len: (end - position).min(TLS_READ_PIECE),
                                };
                                position += piece.len;
                                let bytes =
                                    tokio::task::spawn_blocking(move || piece.read_to_vec())
                                        .await
                                        .map_err(std::io::Error::other)??;
                                stream.write_all(&bytes).await?;
                            }
                        }
                    }
                }
                stream.flush().await
            }
        }
    }
}

/// Sends a range of a segment file to the socket with sendfile(2): the bytes never enter user space.
async fn send_file(
    stream: &TcpStream,
    file: &std::fs::File,
    slice: &weir_log::FileSlice,
) -> std::io::Result<()> {
    let mut offset = slice.position;
    let end = slice.position + slice.len;
    while offset < end {
        stream.writable().await?;
        let remaining = (end - offset) as usize;
        let sent = stream.try_io(Interest::WRITABLE, || {
            rustix::fs::sendfile(stream.as_fd(), file.as_fd(), Some(&mut offset), remaining)
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

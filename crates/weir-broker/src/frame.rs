//! Framing: 4-byte size prefixes, request headers, and response encoding.
//!
//! A frame is read into memory only as its bytes arrive, never allocated up front from the size
//! field, and a size above `socket.request.max.bytes` closes the connection, as Kafka does.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseKind};
use kafka_protocol::protocol::Decodable;
use tokio::io::{AsyncRead, AsyncReadExt};
use weir_log::FileSlice;

/// Why a connection is closed instead of answered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("request size {size} is outside 0..={max} (socket.request.max.bytes)")]
    TooLarge { size: i64, max: usize },
    #[error("request of {0} bytes is too short for a request header")]
    TooShort(usize),
    #[error("unknown API key {key} (correlation id {correlation_id})")]
    UnknownApi { key: i16, correlation_id: i32 },
    #[error("malformed request header for {api:?} v{version}: {reason}")]
    BadHeader {
        api: ApiKey,
        version: i16,
        reason: String,
    },
}

/// Reads size-prefixed frames from one connection. A frame is read into memory only as its
/// bytes arrive (64 KiB at a time), never allocated up front from the size field.
/// [`FrameReader::next`] is cancel-safe: what was read before a cancellation stays here, so the
/// connection can wait for a frame and for answers at once.
#[derive(Debug)]
pub(crate) struct FrameReader {
    buf: BytesMut,
    max: usize,
}

impl FrameReader {
    /// A reader refusing frames above `max` bytes (`socket.request.max.bytes`).
    pub(crate) fn new(max: usize) -> FrameReader {
        FrameReader {
            buf: BytesMut::new(),
            max,
        }
    }

    /// Changes the largest frame accepted (after authentication, which reads small ones).
    pub(crate) fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// The next frame. `Closed` on a clean end of stream between frames.
    pub(crate) async fn next<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
    ) -> Result<Bytes, FrameError> {
        loop {
            if let Some(frame) = self.take()? {
                return Ok(frame);
            }
            let want = match self.frame_size()? {
                Some(size) => (size + 4 - self.buf.len()).min(64 * 1024),
                None => 4 - self.buf.len(),
            };
            self.buf.reserve(want);
            let read = match reader.read_buf(&mut self.buf).await {
                // A TLS peer that leaves without close_notify, between frames: a plain close.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && self.buf.is_empty() => 0,
                other => other?,
            };
            if read == 0 {
                return Err(if self.buf.is_empty() {
                    FrameError::Closed
                } else {
                    FrameError::Io(std::io::ErrorKind::UnexpectedEof.into())
                });
            }
        }
    }

    /// Adds bytes as if read from the connection (for the fuzz target).
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The size of the frame being read, once its prefix is in.
    fn frame_size(&self) -> Result<Option<usize>, FrameError> {
        let Some(prefix) = self.buf.get(..4) else {
            return Ok(None);
        };
        let size = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if size < 0 || size as usize > self.max {
            return Err(FrameError::TooLarge {
                size: i64::from(size),
                max: self.max,
            });
        }
        Ok(Some(size as usize))
    }

    /// A whole frame, if one is in.
    pub(crate) fn take(&mut self) -> Result<Option<Bytes>, FrameError> {
        match self.frame_size()? {
            Some(size) if self.buf.len() >= size + 4 => {
                self.buf.advance(4);
                Ok(Some(self.buf.split_to(size).freeze()))
            }
            _ => Ok(None),
        }
    }
}

/// A decoded request header and the API it names; `body` holds the rest of the frame.
#[derive(Debug)]
pub(crate) struct RequestFrame {
    pub(crate) api: ApiKey,
    pub(crate) header: RequestHeader,
    pub(crate) body: Bytes,
}

pub(crate) fn parse_request(mut frame: Bytes) -> Result<RequestFrame, FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::TooShort(frame.len()));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api = ApiKey::try_from(key).map_err(|_| FrameError::UnknownApi {
        key,
        correlation_id,
    })?;
    let header_version = api.request_header_version(version);
    let header =
        RequestHeader::decode(&mut frame, header_version).map_err(|e| FrameError::BadHeader {
            api,
            version,
            reason: e.to_string(),
        })?;
    Ok(RequestFrame {
        api,
        header,
        body: frame,
    })
}

/// One piece of a response: bytes in memory, or a range of a segment file sent with sendfile.
#[derive(Debug)]
pub(crate) enum Chunk {
    Bytes(Bytes),
    File(FileSlice),
}

impl Chunk {
    pub(crate) fn len(&self) -> u64 {
        match self {
            Chunk::Bytes(b) => b.len() as u64,
            Chunk::File(f) => f.len,
        }
    }
}

/// A response body: a message encoded by `kafka-protocol`, or pre-framed chunks (Fetch).
#[derive(Debug)]
pub(crate) enum Body {
    Message(Box<ResponseKind>),
    Chunks(Vec<Chunk>),
}

impl Body {
    /// Raises the answer's `throttle_time_ms` to at least `ms` (a quota's throttle, KIP-219),
    /// for the answers a throttled client gets most: produce, fetch (whose framed body starts
    /// with it), metadata, offsets and group heartbeats. Others keep theirs; the connection is
    /// throttled all the same.
    pub(crate) fn throttle(&mut self, api: ApiKey, ms: i32) {
        macro_rules! raise {
            ($kind:expr, $($variant:ident),*) => {
                match $kind {
                    $(ResponseKind::$variant(r) => r.throttle_time_ms = r.throttle_time_ms.max(ms),)*
                    _ => {}
                }
            };
        }
        match self {
            Body::Message(kind) => raise!(
                &mut **kind,
                Produce,
                Metadata,
                ListOffsets,
                OffsetCommit,
                OffsetFetch,
                Heartbeat,
                ConsumerGroupHeartbeat,
                FindCoordinator,
                JoinGroup,
                SyncGroup
            ),
            Body::Chunks(chunks) if api == ApiKey::Fetch => {
                if let Some(Chunk::Bytes(first)) = chunks.first_mut() {
                    if first.len() >= 4 {
                        let was = i32::from_be_bytes([first[0], first[1], first[2], first[3]]);
                        let mut raised = bytes::BytesMut::from(&first[..]);
                        raised[..4].copy_from_slice(&was.max(ms).to_be_bytes());
                        *first = raised.freeze();
                    }
                }
            }
            Body::Chunks(_) => {}
        }
    }
}

/// Encodes the response header and body into chunks, with the size prefix first.
pub(crate) fn encode_response(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: Body,
) -> Result<Vec<Chunk>, String> {
    let header_version = api.response_header_version(version);
    let mut head = BytesMut::with_capacity(16);
    head.put_i32(0); // size, filled in below
    head.put_i32(correlation_id);
    if header_version >= 1 {
        head.put_u8(0); // no tagged fields
    }
    let mut chunks = match body {
        Body::Message(message) => {
            let mut buf = BytesMut::new();
            message
                .encode(&mut buf, version)
                .map_err(|e| format!("cannot encode {api:?} v{version}: {e}"))?;
            vec![Chunk::Bytes(buf.freeze())]
        }
        Body::Chunks(chunks) => chunks,
    };
    let size = (head.len() as u64 - 4) + chunks.iter().map(Chunk::len).sum::<u64>();
    let size = i32::try_from(size).map_err(|_| format!("response of {size} bytes is too large"))?;
    head[..4].copy_from_slice(&size.to_be_bytes());
    chunks.insert(0, Chunk::Bytes(head.freeze()));
    Ok(chunks)
}

#[cfg(test)]
mod reader_tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    #[tokio::test]
    async fn frames_survive_cancellation_and_split_reads() {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        let mut reader = FrameReader::new(1024);
        let first = framed(b"hello, weir");
        client.write_all(&first[..6]).await.unwrap();
        // Cancelled halfway through a frame: nothing read so far is lost.
        let waited = tokio::time::timeout(Duration::from_millis(50), reader.next(&mut server));
        assert!(waited.await.is_err());
        let mut rest = first[6..].to_vec();
        rest.extend(framed(b"second"));
        client.write_all(&rest).await.unwrap();
        assert_eq!(&reader.next(&mut server).await.unwrap()[..], b"hello, weir");
        assert_eq!(&reader.next(&mut server).await.unwrap()[..], b"second");
        // A size above the limit is refused before anything is allocated for it.
        client.write_all(&4096i32.to_be_bytes()).await.unwrap();
        assert!(matches!(
            reader.next(&mut server).await,
            Err(FrameError::TooLarge { size: 4096, .. })
        ));
    }

    #[tokio::test]
    async fn the_end_of_the_stream_between_frames_is_a_clean_close() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let mut reader = FrameReader::new(1024);
        client.write_all(&framed(b"x")).await.unwrap();
        drop(client);
        assert_eq!(&reader.next(&mut server).await.unwrap()[..], b"x");
        assert!(matches!(
            reader.next(&mut server).await,
            Err(FrameError::Closed)
        ));
    }
}

//! Framing: 4-byte size prefixes, request headers, and response encoding.
//!
//! A frame is read into memory only as its bytes arrive, never allocated up front from the size
//! field, and a size above `socket.request.max.bytes` closes the connection, as Kafka does.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseKind};
use kafka_protocol::protocol::Decodable;
use tokio::io::AsyncReadExt;
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

/// Reads one size-prefixed frame. Returns `Closed` on a clean end of stream between frames.
pub(crate) async fn read_frame<R: AsyncReadExt + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Bytes, FrameError> {
    let mut size_buf = [0u8; 4];
    match reader.read_exact(&mut size_buf).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let size = i32::from_be_bytes(size_buf);
    if size < 0 || size as usize > max {
        return Err(FrameError::TooLarge {
            size: i64::from(size),
            max,
        });
    }
    let size = size as usize;
    // Grow with the bytes actually received, 64 KiB at a time.
    let mut buf = BytesMut::with_capacity(size.min(64 * 1024));
    while buf.len() < size {
        let want = (size - buf.len()).min(64 * 1024);
        buf.reserve(want);
        let mut limited = (&mut *reader).take(want as u64);
        let n = limited.read_buf(&mut buf).await?;
        if n == 0 {
            return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
    Ok(buf.freeze())
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

//! The client's errors: one enum, small precise variants.

use kafka_protocol::error::ResponseError;

/// Everything that can go wrong in the client; Kafka error codes arrive as [`Error::Kafka`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A socket error on the connection to a broker.
    #[error("I/O error talking to {addr}: {source}")]
    Io {
        /// The broker's `host:port`.
        addr: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The TLS handshake with a broker failed (an untrusted or expired certificate, a name
    /// that does not match, a broker that does not speak TLS).
    #[error("TLS handshake with {addr} failed: {reason}")]
    Tls {
        /// The broker's `host:port`.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// The broker refused the SASL login, or the client refused the broker's proof.
    #[error("SASL authentication failed: {0}")]
    Authentication(String),
    /// No bootstrap server or known broker could be connected to; holds the last error.
    #[error("cannot reach any bootstrap server ({0})")]
    NoBrokers(String),
    /// The connection to this broker (`host:port`) is closed, or closed before answering.
    #[error("the connection to {0} is closed")]
    Closed(String),
    /// A request or response that cannot be encoded or decoded, an answer missing a part, or
    /// an unknown broker id. A failed producer batch also reports non-Kafka errors this way.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The broker supports no version of this API that the client speaks (KIP-35).
    #[error("the broker does not support {api} in any version this client speaks")]
    UnsupportedApi {
        /// The API's name, e.g. `Produce` (its numeric key when the client does not know it).
        api: String,
    },
    /// An error code sent by the broker.
    #[error("{error}{}", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka {
        /// What the code stands for (`ResponseError::Unknown` for codes this client does not know).
        error: ResponseError,
        /// The broker's error message, when it sent one.
        message: Option<String>,
    },
    /// A connect or request got no answer in time; holds the timeout in ms
    /// (`ClientConfig::request_timeout`).
    #[error("timed out after {0} ms")]
    Timeout(u64),
    /// The topic does not exist, or has no such partition (then written `topic-partition`).
    #[error("unknown topic or partition: {0}")]
    UnknownTopic(String),
    /// A setting or argument that cannot work, e.g. idempotence without `acks = All`.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The producer was closed before the record could be queued or acknowledged.
    #[error("the producer is closed")]
    ProducerClosed,
}

impl Error {
    /// An error for a non-zero Kafka error code.
    pub fn from_code(code: i16, message: Option<String>) -> Error {
        Error::Kafka {
            error: ResponseError::try_from_code(code).unwrap_or(ResponseError::Unknown(code)),
            message,
        }
    }

    /// Whether retrying (after a metadata refresh) may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Io { .. } | Error::Closed(_) | Error::Timeout(_) => true,
            Error::Kafka { error, .. } => error.is_retriable(),
            _ => false,
        }
    }
}

/// Turns an error code into `Ok(())` or the matching error.
pub(crate) fn check(code: i16) -> Result<(), Error> {
    if code == 0 {
        Ok(())
    } else {
        Err(Error::from_code(code, None))
    }
}

/// The client's result type, with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

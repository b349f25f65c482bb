//! The client's errors: one enum, small precise variants.

use kafka_protocol::error::ResponseError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error talking to {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot reach any bootstrap server ({0})")]
    NoBrokers(String),
    #[error("the connection to {0} is closed")]
    Closed(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("the broker does not support {api} in any version this client speaks")]
    UnsupportedApi { api: String },
    #[error("{error}{}", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka {
        error: ResponseError,
        message: Option<String>,
    },
    #[error("timed out after {0} ms")]
    Timeout(u64),
    #[error("unknown topic or partition: {0}")]
    UnknownTopic(String),
    #[error("invalid configuration: {0}")]
    Config(String),
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

pub type Result<T, E = Error> = std::result::Result<T, E>;

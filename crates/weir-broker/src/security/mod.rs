//! Who a connection is and how it got here: listeners with their security protocols, TLS, and
//! the principal each connection speaks for. Handlers never look at credentials; they get a
//! [`Session`].

pub mod authorizer;
mod listeners;
mod principal_rules;
pub mod quorum_tls;
pub mod sasl;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

pub use authorizer::{AuthorizerSettings, STANDARD_AUTHORIZER};
pub use listeners::{
    parse_listeners, split_host_port, ListenerConfig, ListenerSettings, Listeners, SecurityProtocol,
};
pub use principal_rules::PrincipalRules;
pub use tls::{ClientAuth, TlsSettings};

/// SASL settings, with Kafka's names.
#[derive(Debug, Clone)]
pub struct SaslSettings {
    /// `sasl.enabled.mechanisms`: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 by default.
    pub mechanisms: Vec<sasl::Mechanism>,
    /// `connection.failed.authentication.delay.ms`: how long a failed authentication waits
    /// before its answer (Kafka's default, 100 ms).
    pub failed_authentication_delay_ms: u64,
    /// `connections.max.reauth.ms` (KIP-368): how long a SASL session lasts before the client
    /// must authenticate again on its connection; 0 (Kafka's default) for ever.
    pub max_reauth_ms: u64,
    /// Credentials to create at start when the user has none for the mechanism (the
    /// `--add-scram` of `kafka-storage format`): user, mechanism, password.
    pub initial_credentials: Vec<(String, weir_meta::scram::ScramMechanism, String)>,
}

impl Default for SaslSettings {
    fn default() -> Self {
        use weir_meta::scram::ScramMechanism;
        SaslSettings {
            mechanisms: vec![
                sasl::Mechanism::Plain,
                sasl::Mechanism::Scram(ScramMechanism::Sha256),
                sasl::Mechanism::Scram(ScramMechanism::Sha512),
            ],
            failed_authentication_delay_ms: 100,
            max_reauth_ms: 0,
            initial_credentials: Vec::new(),
        }
    }
}

/// Who a connection speaks for (Kafka's `KafkaPrincipal`): a type and a name, written
/// `User:alice`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    pub kind: String,
    pub name: String,
}

impl Principal {
    /// A connection that has not authenticated (Kafka's `User:ANONYMOUS`).
    pub fn anonymous() -> Principal {
        Principal::user("ANONYMOUS")
    }

    pub fn user(name: &str) -> Principal {
        Principal {
            kind: "User".into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// A listener as connections see it: its name, its protocol and, for TLS, its acceptor.
#[derive(Clone)]
pub(crate) struct Listener {
    pub(crate) name: String,
    pub(crate) protocol: SecurityProtocol,
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    /// `ssl.principal.mapping.rules`, for client certificates.
    pub(crate) principal_rules: PrincipalRules,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("name", &self.name)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// One connection's identity: where it came from, on which listener, and for whom it speaks.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) peer: SocketAddr,
    pub(crate) listener: Arc<Listener>,
    pub(crate) principal: Principal,
    /// Until when the connection reads no request: a client over a quota is throttled (KIP-219).
    pub(crate) throttled_until: Arc<std::sync::Mutex<Option<tokio::time::Instant>>>,
    /// A follower fetched on this connection (with ClusterAction): its requests are exempt
    /// from request quotas, as Kafka exempts replication.
    pub(crate) replication: Arc<std::sync::atomic::AtomicBool>,
}

impl Session {
    /// Reads no further request of this connection for `wait` (or until an earlier throttle
    /// ends, if later).
    pub(crate) fn throttle(&self, wait: std::time::Duration) {
        if wait.is_zero() {
            return;
        }
        let until = tokio::time::Instant::now() + wait;
        let mut slot = self
            .throttled_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *slot = Some(slot.map_or(until, |u| u.max(until)));
    }

    /// Waits out the connection's throttle, if any.
    pub(crate) async fn throttled(&self) {
        let until = *self
            .throttled_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
    }

    /// The connection as quotas see it: its user and the request's client id.
    pub(crate) fn quota_client<'a>(&'a self, client_id: &'a str) -> crate::quota::Client<'a> {
        crate::quota::Client {
            user: &self.principal.name,
            client_id,
        }
    }
}

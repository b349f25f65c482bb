//! How a client secures its connections: Kafka's `security.protocol` with its `ssl.*`
//! settings. PLAINTEXT by default; SSL verifies the broker's certificate against
//! `ssl.ca.location` and, for mutual TLS, presents `ssl.certificate.location` with
//! `ssl.key.location`.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use crate::error::{Error, Result};

/// A client's security: plain TCP or TLS, and SASL authentication or none (Kafka's four
/// `security.protocol`s).
#[derive(Clone, Default)]
pub struct Security {
    tls: Option<Arc<ClientConfig>>,
    sasl: Option<Sasl>,
}

/// SASL credentials: a mechanism, a user and a password.
#[derive(Clone)]
pub struct Sasl {
    /// The mechanism.
    pub mechanism: SaslMechanism,
    /// Kafka's `sasl.username`.
    pub username: String,
    /// Kafka's `sasl.password`.
    pub password: String,
}

/// The SASL mechanisms the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// PLAIN (RFC 4616): the password goes to the broker, so use it over TLS.
    Plain,
    /// SCRAM-SHA-256 (RFC 7677).
    ScramSha256,
    /// SCRAM-SHA-512.
    ScramSha512,
}

impl SaslMechanism {
    /// The mechanism's SASL name.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism named `s` (Kafka's `sasl.mechanism`), if the client speaks it.
    pub fn from_name(s: &str) -> Option<SaslMechanism> {
        [
            SaslMechanism::Plain,
            SaslMechanism::ScramSha256,
            SaslMechanism::ScramSha512,
        ]
        .into_iter()
        .find(|m| m.name().eq_ignore_ascii_case(s.trim()))
    }
}

/// The mechanism and user, never the password.
impl std::fmt::Debug for Sasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match (self.tls.is_some(), &self.sasl) {
            (false, None) => "PLAINTEXT",
            (true, None) => "SSL",
            (false, Some(_)) => "SASL_PLAINTEXT",
            (true, Some(_)) => "SASL_SSL",
        };
        f.write_str(name)
    }
}

impl Security {
    /// Plain TCP (Kafka's PLAINTEXT).
    pub fn plaintext() -> Security {
        Security::default()
    }

    /// TLS (Kafka's SSL): brokers' certificates must chain to a CA in the PEM file `ca`; with
    /// `identity` (PEM files of the certificate chain and of the private key, which may be one
    /// file), the client presents it for mutual TLS.
    pub fn tls(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Security> {
        let bad = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
            Error::Config(format!("{what}: cannot read {}: {e}", path.display()))
        };
        let mut roots = RootCertStore::empty();
        let cas = CertificateDer::pem_file_iter(ca)
            .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(|e| bad("ssl.ca.location", ca, &e))?;
        if cas.is_empty() {
            return Err(Error::Config(format!(
                "ssl.ca.location: no certificate in {}",
                ca.display()
            )));
        }
        for cert in cas {
            roots
                .add(cert)
                .map_err(|e| bad("ssl.ca.location", ca, &e))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("TLS: {e}")))?
            .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
                    .map_err(|e| bad("ssl.certificate.location", cert, &e))?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| bad("ssl.key.location", key, &e))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| Error::Config(format!("ssl.key.location: {e}")))?
            }
        };
        Ok(Security {
            tls: Some(Arc::new(config)),
            sasl: None,
        })
    }

    /// The rustls client configuration, when TLS is on (for other connections made with the
    /// same trust and identity, such as the metadata quorum's).
    pub fn client_config(&self) -> Option<Arc<ClientConfig>> {
        self.tls.clone()
    }

    /// Whether connections use TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The same, authenticating every connection with SASL.
    pub fn with_sasl(mut self, sasl: Sasl) -> Security {
        self.sasl = Some(sasl);
        self
    }

    pub(crate) fn sasl(&self) -> Option<&Sasl> {
        self.sasl.as_ref()
    }

    /// The TLS connector and the name to verify for `addr` (`host:port`), if TLS is on.
    pub(crate) fn connector(
        &self,
        addr: &str,
    ) -> Result<Option<(tokio_rustls::TlsConnector, ServerName<'static>)>> {
        let Some(config) = &self.tls else {
            return Ok(None);
        };
        let host = addr
            .rsplit_once(':')
            .map_or(addr, |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| Error::Config(format!("cannot verify TLS for host '{host}': {e}")))?;
        Ok(Some((
            tokio_rustls::TlsConnector::from(config.clone()),
            name,
        )))
    }
}
